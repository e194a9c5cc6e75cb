import Foundation
import TunnelsTestSupport
import SSH
import Synchronization
import Testing
import Tunnels

/// A tunnel whose attempts follow a script: fail with an error, or open and stay up until `drop()`.
final class ScriptedTunnel: Tunnel, Sendable {
    enum Step: @unchecked Sendable { case fail(any Error); case open(TunnelEndpoint) }
    private let steps: Mutex<[Step]>
    private let connections = Mutex<[ScriptedConnection]>([])
    init(_ steps: [Step]) { self.steps = Mutex(steps) }

    var summary: String { "scripted" }

    func open() async throws -> any TunnelConnection {
        let step = steps.withLock { $0.isEmpty ? Step.fail(TunnelError.relayUnreachable(relay: "scripted", reason: "no more steps")) : $0.removeFirst() }
        switch step {
        case .fail(let error): throw error
        case .open(let endpoint):
            let c = ScriptedConnection(endpoint: endpoint)
            connections.withLock { $0.append(c) }
            return c
        }
    }

    var openConnections: [ScriptedConnection] { connections.withLock { $0 } }
}

final class ScriptedConnection: TunnelConnection, Sendable {
    let endpoint: TunnelEndpoint
    private let dropped = Mutex(false)
    private let closedFlag = Mutex(false)
    init(endpoint: TunnelEndpoint) { self.endpoint = endpoint }
    func drop() { dropped.withLock { $0 = true } }
    var isClosed: Bool { closedFlag.withLock { $0 } }
    func waitUntilClosed() async -> String {
        while !Task.isCancelled {
            if dropped.withLock({ $0 }) { return "link lost" }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return "stopped"
    }
    func close() async { closedFlag.withLock { $0 = true } }
}

/// Events and requested sleeps, recorded; sleeps return at once.
final class Recorder: Sendable {
    let events = Mutex<[TunnelEvent]>([])
    let sleeps = Mutex<[Double]>([])
    func upCount() -> Int { events.withLock { $0.filter { if case .up = $0 { return true }; return false }.count } }
}

@Suite struct SupervisorTests {
    @Test func backoffDoublesUpToItsCeiling() {
        let b = Backoff(initial: 1, maximum: 10)
        #expect((1...6).map { b.delay(afterFailures: $0) } == [1, 2, 4, 8, 10, 10])
        #expect(Backoff(initial: 0.5, maximum: 2).delay(afterFailures: 100) == 2)
    }

    @Test func failuresAreRetriedWithBackoffAndSaid() async throws {
        let endpoint = TunnelEndpoint(host: "127.0.0.1", port: 40022)
        let busy = TunnelError.relayPortRefused(relay: "relay", port: 40022, reason: "request denied")
        let tunnel = ScriptedTunnel([.fail(busy), .fail(busy), .fail(TunnelError.relayUnreachable(relay: "relay", reason: "timeout")), .open(endpoint)])
        let rec = Recorder()
        let supervisor = TunnelSupervisor(tunnel: tunnel, backoff: Backoff(initial: 1, maximum: 3),
                                          sleep: { s in rec.sleeps.withLock { $0.append(s) } },
                                          onEvent: { e in rec.events.withLock { $0.append(e) } })
        let task = Task { try await supervisor.run() }
        #expect(await eventually(5) { rec.upCount() == 1 })
        #expect(rec.sleeps.withLock { $0 } == [1, 2, 3])
        let events = rec.events.withLock { $0 }
        #expect(events.first == .opening(summary: "scripted", attempt: 1))
        #expect(events.contains(.up(endpoint, afterDrop: false)))
        let retries = events.compactMap { if case .retrying(let reason, _) = $0 { return reason }; return nil }
        #expect(retries.count == 3 && retries[0].contains("ClientAliveInterval"), "a refused bind says why it is retried")
        task.cancel()
        try await task.value
        #expect(tunnel.openConnections.allSatisfy { $0.isClosed }, "cancelling closes the open tunnel")
    }

    @Test func aDropIsReportedAndTheTunnelReopened() async throws {
        let first = TunnelEndpoint(host: "0.tcp.ngrok.io", port: 10001)
        let second = TunnelEndpoint(host: "0.tcp.ngrok.io", port: 10002)
        let tunnel = ScriptedTunnel([.open(first), .fail(TunnelError.relayUnreachable(relay: "r", reason: "down")), .open(second)])
        let rec = Recorder()
        let supervisor = TunnelSupervisor(tunnel: tunnel, backoff: Backoff(initial: 1, maximum: 8),
                                          sleep: { s in rec.sleeps.withLock { $0.append(s) } },
                                          onEvent: { e in rec.events.withLock { $0.append(e) } })
        let task = Task { try await supervisor.run() }
        #expect(await eventually(5) { rec.upCount() == 1 })
        tunnel.openConnections[0].drop()
        #expect(await eventually(5) { rec.upCount() == 2 })
        let events = rec.events.withLock { $0 }
        #expect(events.contains(.dropped(reason: "link lost")))
        #expect(events.contains(.up(second, afterDrop: true)))
        #expect(events.last?.message == "tunnel: up again at 0.tcp.ngrok.io:10002")
        // Drop, then a failed attempt: 1 s, then 2 s (a drop right after opening does not reset the backoff).
        #expect(rec.sleeps.withLock { $0 } == [1, 2])
        #expect(tunnel.openConnections[0].isClosed)
        task.cancel()
        try await task.value
    }

    @Test func errorsRetryingCannotFixEndIt() async throws {
        let mismatch = SSHError.hostKeyMismatch(host: "relay", expected: "SHA256:a", presented: "SHA256:b")
        for error in [mismatch, TunnelError.ngrokTokenMissing(configFiles: []), TunnelError.ngrokFailed(code: "ERR_NGROK_8013", message: "card")] as [any Error] {
            let rec = Recorder()
            let supervisor = TunnelSupervisor(tunnel: ScriptedTunnel([.fail(error)]), sleep: { s in rec.sleeps.withLock { $0.append(s) } },
                                              onEvent: { e in rec.events.withLock { $0.append(e) } })
            await #expect(throws: (any Error).self) { try await supervisor.run() }
            #expect(rec.sleeps.withLock { $0 }.isEmpty)
            guard case .gaveUp(let reason) = rec.events.withLock({ $0.last }) else { Issue.record("no gaveUp event"); continue }
            #expect(reason == "\(error)")
        }
    }
}
