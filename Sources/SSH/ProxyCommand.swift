import CLibSSH
import Foundation
import System

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
        // Its stdin and stdout on the socket, nothing else of ours, its own process group (so
        // terminate() reaches what it started in the background too), signals as a fresh program
        // expects them, this process's environment.
        let pid: pid_t
        do throws(SystemError) {
            pid = try Spawn.start(["/bin/sh", "-c", command], stdin: .fd(pair[1]), stdout: .fd(pair[1]), newGroup: true)
        } catch {
            close(pair[0]); close(pair[1])
            throw SSHError.proxyFailed(via: "ProxyCommand \(command)", reason: error.reason)
        }
        close(pair[1])
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
        Thread.detachNewThread { Spawn.wait(pid) }
    }
}

#if canImport(Glibc)
import Glibc
#endif
