// libssh 0.10 (Debian libssh-dev). server.h declares ssh_send_keepalive, which clients need too.
#ifndef FERRY_CLIBSSH_SHIM_H
#define FERRY_CLIBSSH_SHIM_H
#include <libssh/libssh.h>
#include <libssh/callbacks.h>
#include <libssh/sftp.h>
#include <libssh/server.h>

// ssh_options_set takes a void*; these keep Swift's pointer juggling in one place.
static inline int ferry_ssh_set_int(ssh_session s, enum ssh_options_e o, int v) { return ssh_options_set(s, o, &v); }
static inline int ferry_ssh_set_long(ssh_session s, enum ssh_options_e o, long v) { return ssh_options_set(s, o, &v); }
static inline int ferry_ssh_set_uint(ssh_session s, enum ssh_options_e o, unsigned int v) { return ssh_options_set(s, o, &v); }
static inline int ferry_ssh_set_string(ssh_session s, enum ssh_options_e o, const char *v) { return ssh_options_set(s, o, v); }
static inline int ferry_ssh_set_fd(ssh_session s, int fd) { socket_t f = fd; return ssh_options_set(s, SSH_OPTIONS_FD, &f); }

#endif
