import Foundation

// State the signal handlers read. A C signal handler can take no lock, so these are plain globals:
// written only while no handler is installed (before `install`, after `uninstall`), read-only while
// one is. `nonisolated(unsafe)` is the honest spelling of that rule.
nonisolated(unsafe) private var savedTermios = termios()
nonisolated(unsafe) private var savedTermiosFD: Int32 = -1
nonisolated(unsafe) private var winchPipeWrite: Int32 = -1

/// The local terminal in raw mode for an interactive session, restored on every way out: normal
/// return, thrown error (`restore()` in a defer), and SIGINT/TERM/HUP/QUIT/ABRT (the handler restores
/// the saved mode, then lets the signal do what it would have done).
final class RawTerminal {
    private let fd: Int32
    private var restored = false
    private var oldActions: [Int32: sigaction] = [:]
    private static let fatalSignals: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGABRT]

    init(fd: Int32) throws {
        self.fd = fd
        var current = termios()
        guard tcgetattr(fd, &current) == 0 else { throw SSHError.terminalUnavailable(reason: "tcgetattr: \(String(cString: strerror(errno)))") }
        savedTermios = current
        savedTermiosFD = fd
        let handler: @convention(c) (Int32) -> Void = { signal in
            if savedTermiosFD >= 0 { _ = tcsetattr(savedTermiosFD, TCSANOW, &savedTermios) }
            var dfl = sigaction()
            dfl.__sigaction_handler.sa_handler = SIG_DFL
            _ = sigaction(signal, &dfl, nil)
            _ = raise(signal)
        }
        for s in RawTerminal.fatalSignals {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = handler
            sigemptyset(&action.sa_mask)
            var old = sigaction()
            _ = sigaction(s, &action, &old)
            oldActions[s] = old
        }
        var raw = current
        cfmakeraw(&raw)
        guard tcsetattr(fd, TCSADRAIN, &raw) == 0 else {
            let reason = String(cString: strerror(errno))
            restore()
            throw SSHError.terminalUnavailable(reason: "tcsetattr: \(reason)")
        }
    }

    func restore() {
        guard !restored else { return }
        restored = true
        _ = tcsetattr(fd, TCSADRAIN, &savedTermios)
        for (s, old) in oldActions { var o = old; _ = sigaction(s, &o, nil) }
        savedTermiosFD = -1
    }

    deinit { restore() }

    /// The terminal's size (columns, rows), when `fd` is one.
    static func size(of fd: Int32) -> (columns: Int, rows: Int)? {
        var ws = winsize()
        guard ioctl(fd, UInt(TIOCGWINSZ), &ws) == 0, ws.ws_col > 0, ws.ws_row > 0 else { return nil }
        return (Int(ws.ws_col), Int(ws.ws_row))
    }
}

/// SIGWINCH turned into a readable pipe the session loop can poll.
final class WindowChangeSignal {
    let readFD: Int32
    private let writeFD: Int32
    private var old = sigaction()

    init() throws {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw SSHError.terminalUnavailable(reason: "pipe: \(String(cString: strerror(errno)))") }
        for fd in fds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        readFD = fds[0]; writeFD = fds[1]
        winchPipeWrite = writeFD
        let handler: @convention(c) (Int32) -> Void = { _ in
            var byte: UInt8 = 1
            _ = write(winchPipeWrite, &byte, 1)
        }
        var action = sigaction()
        action.__sigaction_handler.sa_handler = handler
        action.sa_flags = SA_RESTART
        sigemptyset(&action.sa_mask)
        _ = sigaction(SIGWINCH, &action, &old)
    }

    /// Empties the pipe; true when a signal had arrived.
    func drain() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 64)
        var any = false
        while read(readFD, &buffer, buffer.count) > 0 { any = true }
        return any
    }

    func uninstall() {
        _ = sigaction(SIGWINCH, &old, nil)
        winchPipeWrite = -1
        close(readFD); close(writeFD)
    }
}

#if canImport(Glibc)
import Glibc
#endif
