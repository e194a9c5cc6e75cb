import FerryTestSupport
import Foundation
import TunnelsTestSupport
import SSH
import Synchronization
import Testing
import Tunnels

/// The reverse tunnel lives on keepalives: an idle one must stay up, a dead relay must be noticed.
@Suite struct KeepaliveTests {
    /// Children of `parent` (the sshd sessions of a test sshd we started).
    func children(of parent: pid_t) -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { pid_t($0) }.filter { pid in
            guard let stat = FileManager.default.contents(atPath: "/proc/\(pid)/stat").map({ String(decoding: $0, as: UTF8.self) }),
                  let close = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 2 && pid_t(fields[1]) == parent
        }
    }

    @Test func anIdleTunnelStaysUpAndAFrozenRelayIsNoticed() async throws {
        guard (try TestSSHD.shared()) != nil else { return }
        let box = try Sandbox(); defer { box.remove() }
        let relay = try TestSSHD.start(directory: box.path("relay"))
        defer { relay.stop() }
        let tunnel = ReverseSSHTunnel(.init(relay: SSHTarget(user: relay.user, host: relay.host, port: relay.port),
                                            relayHostKey: relay.hostKeyFingerprint, identityFiles: [relay.clientKey],
                                            environment: box.environment(), remotePort: freePort(), localPort: 9,
                                            keepaliveInterval: 1, keepaliveCountMax: 2))
        let connection = try await tunnel.open()
        let finished = Mutex(false)
        let waiter = Task {
            let reason = await connection.waitUntilClosed()
            finished.withLock { $0 = true }
            return reason
        }
        // Idle for several keepalive rounds: the answers (consumed inside libssh) must count.
        try await Task.sleep(for: .seconds(5))
        let droppedWhileIdle = finished.withLock { $0 }
        let early = droppedWhileIdle ? await waiter.value : ""
        #expect(!droppedWhileIdle, "an idle tunnel dropped: \(early)")
        if droppedWhileIdle { await connection.close(); return }
        // Freeze the relay's session process: no answers any more, nothing closes either.
        let listener = pid_t(box.read(relay.directory + "/sshd.pid").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        let sessions = children(of: listener)
        #expect(!sessions.isEmpty)
        for pid in sessions { kill(pid, SIGSTOP) }
        defer { for pid in sessions { kill(pid, SIGCONT) } }
        let started = ContinuousClock.now
        let reason = await waiter.value
        let took = ContinuousClock.now - started
        #expect(reason.contains("no answer to 2 keepalives"), "\(reason)")
        // Two missed 1 s keepalives notice it in about 3 s; the bound leaves room for a loaded 2-core
        // machine (12 s seen in a full network round), far below TCP's own hours.
        #expect(took < .seconds(20), "took \(took) to notice")
        await connection.close()
    }
}
