import FerryTestSupport
import Foundation
import TunnelsTestSupport
import Tunnels

/// Three network namespaces made for one test, joined by veth pairs, on private addresses only:
///
///     client 10.200.1.1 ──── 10.200.1.2 relay 10.200.2.2 ──── 10.200.2.1 host
///
/// The host reaches the relay's 10.200.1.2 through a route via 10.200.2.2 (an address of the relay
/// itself, so nothing is forwarded); the relay does not forward between its links, so the client
/// cannot reach the host at all — only through the relay's sshd. Names are unique per run;
/// `teardown()` kills whatever runs inside and deletes them, also after a failure.
final class NetworkLab: @unchecked Sendable {
    static let clientAddress = "10.200.1.1"
    static let relayAddress = "10.200.1.2"
    static let relayHostSideAddress = "10.200.2.2"
    static let hostAddress = "10.200.2.1"
    /// The relay's interface towards the host: `ip link set` it down to cut the host off.
    static let relayToHostLink = "r1"

    let id: String
    let client: String
    let relay: String
    let host: String
    let ip: String
    private var created: [String] = []

    enum Unavailable: Error, CustomStringConvertible {
        case cannot(String)
        var description: String { switch self { case .cannot(let why): return "network namespaces unavailable: \(why)" } }
    }

    /// Whether this run may build namespaces at all (root with iproute2).
    static var mayTry: Bool { geteuid() == 0 && ChildProcess.find("ip") != nil }

    init() throws {
        id = String(UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(6)).lowercased()
        client = "ferry-c-\(id)"; relay = "ferry-r-\(id)"; host = "ferry-h-\(id)"
        guard let ip = ChildProcess.find("ip") else { throw Unavailable.cannot("iproute2's ip is not installed") }
        self.ip = ip
        do { try build() } catch { teardown(); throw error }
    }

    private func build() throws {
        for ns in [client, relay, host] {
            try ipCommand(["netns", "add", ns])
            created.append(ns)
            try ipCommand(["-n", ns, "link", "set", "lo", "up"])
        }
        try ipCommand(["-n", client, "link", "add", "c0", "type", "veth", "peer", "name", "r0", "netns", relay])
        try ipCommand(["-n", relay, "link", "add", "r1", "type", "veth", "peer", "name", "h0", "netns", host])
        for (ns, dev, cidr) in [(client, "c0", "\(Self.clientAddress)/24"), (relay, "r0", "\(Self.relayAddress)/24"),
                                (relay, "r1", "\(Self.relayHostSideAddress)/24"), (host, "h0", "\(Self.hostAddress)/24")] {
            try ipCommand(["-n", ns, "addr", "add", cidr, "dev", dev])
            try ipCommand(["-n", ns, "link", "set", dev, "up"])
        }
        try ipCommand(["-n", host, "route", "add", "\(Self.relayAddress)/32", "via", Self.relayHostSideAddress])
        // The relay is no router: whatever the defaults, nothing crosses it but SSH.
        _ = try? run(relay, ["/usr/sbin/sysctl", "-q", "-w", "net.ipv4.ip_forward=0"])
    }

    @discardableResult
    func ipCommand(_ arguments: [String]) throws -> String {
        let r = try runProcess(ip, arguments)
        guard r.status == 0 else { throw Unavailable.cannot("ip \(arguments.joined(separator: " ")): \(r.stderr)") }
        return r.stdout
    }

    /// Runs a program inside `namespace` to completion.
    @discardableResult
    func run(_ namespace: String, _ command: [String], environment: [String: String]? = nil) throws -> (status: Int32, stdout: String, stderr: String) {
        try runProcess(ip, ["netns", "exec", namespace] + command, environment: environment)
    }

    /// Cuts (or restores) the host's only link: to the relay.
    func setHostLink(up: Bool) throws {
        try ipCommand(["-n", relay, "link", "set", Self.relayToHostLink, up ? "up" : "down"])
    }

    /// Whether a TCP connection from `namespace` to `address:port` succeeds within 3 s.
    func canConnect(from namespace: String, to address: String, port: Int) -> Bool {
        let script = "exec 3<>/dev/tcp/\(address)/\(port)"
        return (try? run(namespace, ["/usr/bin/timeout", "3", "/bin/bash", "-c", script]))?.status == 0
    }

    func teardown() {
        for ns in created.reversed() {
            // Daemons (sshd, a detached host up) live on in a deleted namespace unless killed.
            for _ in 0..<3 {
                let pids = ((try? runProcess(ip, ["netns", "pids", ns]))?.stdout ?? "").split(separator: "\n").compactMap { pid_t($0) }
                if pids.isEmpty { break }
                for pid in pids { kill(pid, SIGKILL) }
                usleep(100_000)
            }
            _ = try? runProcess(ip, ["netns", "del", ns])
        }
        created.removeAll()
    }

    deinit { teardown() }
}
