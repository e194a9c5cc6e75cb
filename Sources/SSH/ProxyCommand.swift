import CLibSSH
import Foundation

/// A ProxyCommand run through `/bin/sh -c` with its stdin and stdout on one end of a socketpair;
/// libssh talks SSH over the other end (SSH_OPTIONS_FD). `%h %p %r %n` are expanded and quoted.
final class ProxyCommand: @unchecked Sendable {
    // Immutable after spawn; terminate() is idempotent behind the lock.
    let command: String
    let pid: pid_t
    /// Our end, for libssh.
    let fd: Int32
    private let lock = NSLock()
    private var terminated = false

    private init(command: String, pid: pid_t, fd: Int32) {
        self.command = command; self.pid = pid; self.fd = fd
    }

    static func expand(_ command: String, config: SSHHostConfig) -> String {
        SSHConfigFile.expandTokens(command, ["h": ShellQuote.quote(config.hostName), "p": String(config.port),
                                              "r": ShellQuote.quote(config.user), "n": ShellQuote.quote(config.alias), "%": "%"])
    }

    static func spawn(_ template: String, config: SSHHostConfig) throws -> ProxyCommand {
        let command = expand(template, config: config)
        var pair: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw SSHError.proxyFailed(via: "ProxyCommand \(command)", reason: String(cString: strerror(errno)))
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, pair[1], 0)
        posix_spawn_file_actions_adddup2(&actions, pair[1], 1)
        // Nothing of ours leaks into the command (a lock file it keeps open would outlive us).
        _ = ferry_spawn_closefrom(&actions, 3)
        // Its own process group, so terminate() reaches what it started in the background too.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Signals as a fresh program expects them, whatever the spawning thread had blocked.
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        posix_spawnattr_setpgroup(&attributes, 0)
        let argv = ["/bin/sh", "-c", command]
        var cArgs = argv.map { strdup($0) }
        cArgs.append(nil)
        defer { for p in cArgs { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, "/bin/sh", &actions, &attributes, &cArgs, environ)
        close(pair[1])
        guard rc == 0 else {
            close(pair[0])
            throw SSHError.proxyFailed(via: "ProxyCommand \(command)", reason: String(cString: strerror(rc)))
        }
        return ProxyCommand(command: command, pid: pid, fd: pair[0])
    }

    /// Ends the command and its process group (SIGTERM) and reaps it in the background. The caller closes `fd`.
    func terminate() {
        lock.lock()
        defer { lock.unlock() }
        guard !terminated else { return }
        terminated = true
        kill(-pid, SIGTERM)
        let pid = self.pid
        Thread.detachNewThread {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
