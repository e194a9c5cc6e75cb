// libssh 0.10 (Debian libssh-dev). server.h declares ssh_send_keepalive, which clients need too.
#ifndef FERRY_CLIBSSH_SHIM_H
#define FERRY_CLIBSSH_SHIM_H
#include <libssh/libssh.h>
#include <libssh/callbacks.h>
#include <libssh/sftp.h>
#include <libssh/server.h>
#include <stdlib.h>
#include <string.h>

// ssh_options_set takes a void*; these keep Swift's pointer juggling in one place.
static inline int ferry_ssh_set_int(ssh_session s, enum ssh_options_e o, int v) { return ssh_options_set(s, o, &v); }
static inline int ferry_ssh_set_long(ssh_session s, enum ssh_options_e o, long v) { return ssh_options_set(s, o, &v); }
static inline int ferry_ssh_set_uint(ssh_session s, enum ssh_options_e o, unsigned int v) { return ssh_options_set(s, o, &v); }
static inline int ferry_ssh_set_string(ssh_session s, enum ssh_options_e o, const char *v) { return ssh_options_set(s, o, v); }
static inline int ferry_ssh_set_fd(ssh_session s, int fd) { socket_t f = fd; return ssh_options_set(s, SSH_OPTIONS_FD, &f); }

// A channel's stderr, read as it arrives and its last bytes kept. libssh 0.10's SFTP reads spin at
// 100 % CPU when the server side ends after writing to stderr (an sftp-server that cannot start):
// sftp_packet_read loops while stdout reads return 0 and ssh_channel_is_eof stays false because
// the stderr buffer, which nobody reads, is not empty. Drained here, the EOF is seen and the call
// fails instead, and the text says why.
struct ferry_stderr_sink {
    struct ssh_channel_callbacks_struct callbacks;
    char text[512];
    size_t length;
};

static inline int ferry_stderr_sink_data(ssh_session session, ssh_channel channel, void *data, uint32_t len,
                                         int is_stderr, void *userdata) {
    (void)session; (void)channel;
    if (!is_stderr) return 0;   // stdout stays buffered for SFTP's reads
    struct ferry_stderr_sink *sink = (struct ferry_stderr_sink *)userdata;
    const char *bytes = (const char *)data;
    size_t n = len, room = sizeof(sink->text) - 1;
    if (n >= room) { bytes += n - room; n = room; sink->length = 0; }
    if (sink->length + n > room) {
        size_t drop = sink->length + n - room;
        memmove(sink->text, sink->text + drop, sink->length - drop);
        sink->length -= drop;
    }
    memcpy(sink->text + sink->length, bytes, n);
    sink->length += n;
    sink->text[sink->length] = 0;
    return (int)len;
}

/// Drains `channel`'s stderr into a new sink (free it after the channel); NULL when that failed.
static inline struct ferry_stderr_sink *ferry_drain_stderr(ssh_channel channel) {
    struct ferry_stderr_sink *sink = (struct ferry_stderr_sink *)calloc(1, sizeof(struct ferry_stderr_sink));
    if (sink == NULL) return NULL;
    sink->callbacks.userdata = sink;
    sink->callbacks.channel_data_function = ferry_stderr_sink_data;
    ssh_callbacks_init(&sink->callbacks);
    if (ssh_set_channel_callbacks(channel, &sink->callbacks) != SSH_OK) { free(sink); return NULL; }
    // What came before the callback was set (in the same read as the subsystem's reply) is buffered.
    char buffer[256];
    int n;
    while ((n = ssh_channel_read_nonblocking(channel, buffer, sizeof(buffer), 1)) > 0) {
        ferry_stderr_sink_data(NULL, channel, buffer, (uint32_t)n, 1, sink);
    }
    return sink;
}

/// The SFTP session's channel (the struct is public in libssh 0.10).
static inline ssh_channel ferry_sftp_channel(sftp_session sftp) { return sftp->channel; }

#endif
