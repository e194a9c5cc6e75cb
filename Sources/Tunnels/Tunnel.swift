import Foundation
import SSH

/// Where clients reach the host's sshd once a tunnel is up.
public struct TunnelEndpoint: Sendable, Equatable, CustomStringConvertible {
    /// The address clients connect to (through `jump` when set).
    public var host: String
    public var port: Int
    /// The relay clients go through (reverse SSH).
    public var jump: SSHTarget?
    /// The relay's host key, as this machine verified it.
    public var jumpHostKey: String?
    /// A ProxyCommand clients use instead of TCP.
    public var proxyCommand: String?

    public init(host: String, port: Int, jump: SSHTarget? = nil, jumpHostKey: String? = nil, proxyCommand: String? = nil) {
        self.host = host; self.port = port; self.jump = jump; self.jumpHostKey = jumpHostKey; self.proxyCommand = proxyCommand
    }

    public var description: String {
        var s = SSHTarget(host: host, port: port).description
        if let jump { s += " via \(jump)" }
        if let proxyCommand { s += " through `\(proxyCommand)`" }
        return s
    }

    /// The connection string for `user` with the host's key pinned.
    public func connectionString(user: String, hostKey: String) -> ConnectionString {
        ConnectionString(user: user, host: host, port: port, hostKey: hostKey, jump: jump, jumpHostKey: jumpHostKey,
                         proxyCommand: proxyCommand)
    }
}

/// A way to make the host's sshd reachable: opened once per attempt by `TunnelSupervisor`.
public protocol Tunnel: Sendable {
    /// For messages: `reverse SSH via relay.example.com:22`.
    var summary: String { get }
    /// Opens the tunnel and returns once clients can use it.
    func open() async throws -> any TunnelConnection
}

/// One open tunnel.
public protocol TunnelConnection: Sendable {
    var endpoint: TunnelEndpoint { get }
    /// Returns why the tunnel went down; returns early (with "stopped") when the task is cancelled.
    func waitUntilClosed() async -> String
    /// Takes it down (idempotent).
    func close() async
}

/// What a supervisor says as it keeps a tunnel up.
public enum TunnelEvent: Sendable, Equatable {
    case opening(summary: String, attempt: Int)
    case up(TunnelEndpoint, afterDrop: Bool)
    case dropped(reason: String)
    case retrying(reason: String, inSeconds: Double)
    case gaveUp(reason: String)

    /// One line for a person.
    public var message: String {
        switch self {
        case .opening(let summary, let attempt):
            return attempt == 1 ? "tunnel: opening \(summary)" : "tunnel: opening \(summary) (attempt \(attempt))"
        case .up(let endpoint, let again):
            return again ? "tunnel: up again at \(endpoint)" : "tunnel: up at \(endpoint)"
        case .dropped(let reason):
            return "tunnel: dropped: \(reason)"
        case .retrying(let reason, let seconds):
            return "tunnel: \(reason) — retrying in \(Backoff.format(seconds))"
        case .gaveUp(let reason):
            return "tunnel: giving up: \(reason)"
        }
    }
}

/// Exponential backoff: `initial`, doubling, at most `maximum` seconds.
public struct Backoff: Sendable, Equatable {
    public var initial: Double
    public var maximum: Double
    public var factor: Double

    public init(initial: Double = 1, maximum: Double = 60, factor: Double = 2) {
        self.initial = initial; self.maximum = max(initial, maximum); self.factor = factor
    }

    /// The wait after `failures` failures in a row (1 or more).
    public func delay(afterFailures failures: Int) -> Double {
        let exponent = Double(max(0, failures - 1))
        return min(maximum, initial * pow(factor, min(exponent, 30)))
    }

    static func format(_ seconds: Double) -> String {
        seconds == seconds.rounded() ? "\(Int(seconds)) s" : String(format: "%.1f s", seconds)
    }
}

/// Keeps a tunnel up: opens it, waits for it to drop, opens it again with backoff, and says each
/// step through `onEvent`. Errors that retrying cannot fix (a wrong relay host key, a missing ngrok
/// token) end it with that error; cancelling the task closes the tunnel and returns.
public final class TunnelSupervisor: Sendable {
    public typealias Sleep = @Sendable (Double) async throws -> Void

    public let tunnel: any Tunnel
    public let backoff: Backoff
    /// A connection that stayed up this long resets the backoff.
    public let stableAfter: Double
    private let sleep: Sleep
    private let onEvent: @Sendable (TunnelEvent) -> Void

    public init(tunnel: any Tunnel, backoff: Backoff = Backoff(), stableAfter: Double = 60,
                sleep: @escaping Sleep = { try await Task.sleep(for: .milliseconds(Int64($0 * 1000))) },
                onEvent: @escaping @Sendable (TunnelEvent) -> Void) {
        self.tunnel = tunnel; self.backoff = backoff; self.stableAfter = stableAfter
        self.sleep = sleep; self.onEvent = onEvent
    }

    /// Whether an error ends supervision instead of being retried.
    public static func isPermanent(_ error: any Error) -> Bool {
        if let error = error as? TunnelError { return error.isPermanent }
        if let error = error as? SSHError {
            switch error {
            // Someone may be in the middle; or nobody vouched for the relay's key yet.
            case .hostKeyMismatch, .hostKeyUnknown, .hostKeyCheckFailed, .invalidTarget, .configInvalid, .keyUnreadable:
                return true
            default:
                return false
            }
        }
        return error is CancellationError
    }

    /// Runs until cancelled (returns) or a permanent error (throws it).
    public func run() async throws {
        var failures = 0
        var attempt = 0
        var wasUp = false
        while !Task.isCancelled {
            attempt += 1
            onEvent(.opening(summary: tunnel.summary, attempt: attempt))
            let connection: any TunnelConnection
            do {
                connection = try await tunnel.open()
            } catch {
                if Task.isCancelled { return }
                if TunnelSupervisor.isPermanent(error) {
                    onEvent(.gaveUp(reason: "\(error)"))
                    throw error
                }
                failures += 1
                let delay = backoff.delay(afterFailures: failures)
                onEvent(.retrying(reason: "\(error)", inSeconds: delay))
                do { try await sleep(delay) } catch { return }
                continue
            }
            if Task.isCancelled { await connection.close(); return }
            onEvent(.up(connection.endpoint, afterDrop: wasUp))
            wasUp = true
            let opened = ContinuousClock.now
            let reason = await connection.waitUntilClosed()
            await connection.close()
            if Task.isCancelled { return }
            let lasted = ContinuousClock.now - opened
            if lasted >= .seconds(stableAfter) { failures = 0 }
            failures += 1
            let delay = backoff.delay(afterFailures: failures)
            onEvent(.dropped(reason: reason))
            onEvent(.retrying(reason: "reconnecting", inSeconds: delay))
            do { try await sleep(delay) } catch { return }
        }
    }
}

/// Polls `isDone` every `interval` seconds until it says yes or the task is cancelled.
func poll(every interval: Double, until isDone: () async -> Bool) async -> Bool {
    while !Task.isCancelled {
        if await isDone() { return true }
        try? await Task.sleep(for: .milliseconds(Int64(interval * 1000)))
    }
    return false
}
