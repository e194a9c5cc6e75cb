import CLibSSH
import Foundation

/// The local terminal wired to a remote shell or command, as `ssh host [command]` does: stdin to the
/// remote, its stdout and stderr to ours, a PTY with our TERM and window size (SIGWINCH forwarded)
/// and our terminal in raw mode, restored on every exit path.
public enum TerminalSession {
    public struct Options: Sendable {
        /// A command line for the remote shell; nil starts a login shell.
        public var command: String?
        /// Change to this remote directory first.
        public var directory: String?
        /// Ask for a PTY: nil means "when stdin is a terminal and no command is given" (ssh's rule).
        public var pty: Bool?
        /// TERM for the PTY; the environment's, else xterm-256color.
        public var term: String?
        /// The size when the local side is not a terminal (tests drive it this way).
        public var fallbackSize: (columns: Int, rows: Int)

        public init(command: String? = nil, directory: String? = nil, pty: Bool? = nil, term: String? = nil) {
            self.command = command; self.directory = directory; self.pty = pty; self.term = term
            fallbackSize = (80, 24)
        }
    }

    /// The remote command line `options` amount to (nil: a plain login shell).
    static func commandLine(_ options: Options) -> String? {
        guard let directory = options.directory else { return options.command }
        return "cd -- \(ShellQuote.quote(directory)) && " + (options.command ?? "exec \"${SHELL:-/bin/sh}\" -l")
    }

    /// Runs until the remote side ends and returns how it ended.
    public static func run(_ session: SSHSession, options: Options = Options()) async throws -> SSHExitStatus {
        let stdinIsTTY = isatty(0) != 0
        let usePTY = options.pty ?? (options.command == nil && stdinIsTTY)
        let size = RawTerminal.size(of: 1) ?? RawTerminal.size(of: 0) ?? options.fallbackSize
        let term = options.term ?? session.environment.term ?? "xterm-256color"
        let command = commandLine(options)
        guard !(command?.utf8.contains(0) ?? false) else {
            throw SSHError.channelFailed(host: session.core.label, operation: "exec", reason: "the command contains a NUL byte")
        }

        var raw: RawTerminal?
        var winch: WindowChangeSignal?
        defer {
            raw?.restore()
            winch?.uninstall()
        }
        if usePTY && stdinIsTTY { raw = try RawTerminal(fd: 0) }
        if usePTY { winch = try WindowChangeSignal() }
        let winchBox = winch.map { LoopBoundValue($0) }

        let pump = try await session.core.submit { core -> LoopBound<FDPump> in
            let channel = try core.openSessionChannel()
            do {
                if usePTY {
                    guard ssh_channel_request_pty_size(channel, term, Int32(size.columns), Int32(size.rows)) == SSH_OK else {
                        throw core.channelError("PTY request")
                    }
                }
                let started = command.map { ssh_channel_request_exec(channel, $0) } ?? ssh_channel_request_shell(channel)
                guard started == SSH_OK else { throw core.channelError(command == nil ? "shell" : "exec") }
            } catch {
                ssh_channel_free(channel)
                throw error
            }
            let pump = FDPump(core: core, channel: channel, inFD: 0, outFD: 1, errFD: 2, ownsFDs: false, halfClose: false,
                              inIsBlocking: true)
            if let winch = winchBox?.value {
                pump.extraWatches = [(winch.readFD, { [weak pump] in
                    guard winch.drain(), let pump, let channel = pump.channel,
                          let now = RawTerminal.size(of: 1) ?? RawTerminal.size(of: 0) else { return }
                    _ = ssh_channel_change_pty_size(channel, Int32(now.columns), Int32(now.rows))
                })]
            }
            core.add(pump)
            return LoopBound(pump)
        }
        return try await pump.value.completion.value()
    }
}
