import Foundation
import SSH

/// Any program that carries connections to the host's sshd (e.g. `cloudflared tunnel run NAME`), run
/// through `/bin/sh -c` and restarted when it exits. `%p` in the command is the sshd's port. Clients
/// reach the endpoint given here — usually with a ProxyCommand such as
/// `cloudflared access ssh --hostname %h`, which goes into the connection string.
public struct CommandTunnel: Tunnel {
    public var command: String
    public var localPort: Int
    public var endpoint: TunnelEndpoint
    public var environment: [String: String]
    public var logFile: String
    /// Seconds the command must stay up before the tunnel counts as open.
    public var settleTime: Double

    public init(command: String, localPort: Int, endpoint: TunnelEndpoint, environment: [String: String], logFile: String,
                settleTime: Double = 1) {
        self.command = command; self.localPort = localPort; self.endpoint = endpoint
        self.environment = environment; self.logFile = logFile; self.settleTime = settleTime
    }

    public var expandedCommand: String {
        command.replacingOccurrences(of: "%%", with: "\u{0}").replacingOccurrences(of: "%p", with: String(localPort))
            .replacingOccurrences(of: "\u{0}", with: "%")
    }

    public var summary: String { "`\(expandedCommand)`" }

    public func open() async throws -> any TunnelConnection {
        let process = try ChildProcess.spawn("/bin/sh", ["-c", expandedCommand], environment: environment, logFile: logFile)
        if let status = await process.waitForExit(timeout: settleTime) {
            throw TunnelError.commandExited(command: expandedCommand, status: status, log: process.logTail(lines: 10))
        }
        return CommandConnection(process: process, endpoint: endpoint, command: expandedCommand)
    }
}

/// No tunnel: clients reach the sshd's own address (a LAN, a VPN, a public VM).
public struct DirectEndpoint: Tunnel {
    public var endpoint: TunnelEndpoint
    public init(endpoint: TunnelEndpoint) { self.endpoint = endpoint }
    public var summary: String { "no tunnel (\(endpoint))" }
    public func open() async throws -> any TunnelConnection { DirectConnection(endpoint: endpoint) }
}

final class DirectConnection: TunnelConnection {
    let endpoint: TunnelEndpoint
    init(endpoint: TunnelEndpoint) { self.endpoint = endpoint }
    func waitUntilClosed() async -> String {
        _ = await poll(every: 3600) { false }
        return "stopped"
    }
    func close() async {}
}

final class CommandConnection: TunnelConnection {
    let process: ChildProcess
    let endpoint: TunnelEndpoint
    let command: String

    init(process: ChildProcess, endpoint: TunnelEndpoint, command: String) {
        self.process = process; self.endpoint = endpoint; self.command = command
    }

    func waitUntilClosed() async -> String {
        var reason = "stopped"
        _ = await poll(every: 0.5) {
            guard let status = process.exitStatus else { return false }
            reason = "`\(command)` exited with status \(status): \(process.logTail(lines: 3))"
            return true
        }
        return reason
    }

    func close() async { await process.terminate() }
}
