import FerryTestSupport
import Foundation
import SSH

// Shared by TunnelsTests and ferryTests (`ferry host up` end to end).

/// A private HOME and FERRY_HOME per test, so parallel tests never share state.
public struct Sandbox {
    public let root: URL
    public var home: String { root.appendingPathComponent("home").path }
    public var ferryHome: String { root.appendingPathComponent("home/.ferry").path }

    public init(_ name: String = #function) throws {
        let clean = name.filter { $0.isLetter || $0.isNumber }.prefix(24)
        root = URL(fileURLWithPath: "/tmp").appendingPathComponent("ferry-tun-\(clean)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(atPath: root.appendingPathComponent("home/.ssh").path, withIntermediateDirectories: true)
    }

    public func environment(agent: String? = nil) -> SSHEnvironment {
        SSHEnvironment(home: home, ferryHome: ferryHome, agentSocket: agent, password: nil, localUser: "nobody-local")
    }

    /// The process environment for a `ferry` run in this sandbox.
    public func processEnvironment(_ extra: [String: String] = [:]) -> [String: String] {
        var env = ["HOME": home, "FERRY_HOME": ferryHome, "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin",
                   "LANG": "C.UTF-8"]
        for (k, v) in extra { env[k] = v }
        return env
    }

    public func path(_ name: String) -> String { root.appendingPathComponent(name).path }

    public func write(_ name: String, _ text: String, mode: Int = 0o644) throws -> String {
        let p = path(name)
        try FileManager.default.createDirectory(atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: p, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: p)
        return p
    }

    public func read(_ path: String) -> String {
        FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) } ?? ""
    }

    /// A new ed25519 key pair; returns the private key's path.
    public func makeKey(_ name: String) throws -> String {
        let p = path(name)
        let r = try runProcess("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "ferry-test-\(name)", "-f", p])
        precondition(r.status == 0, r.stderr)
        return p
    }

    public func remove() { try? FileManager.default.removeItem(at: root) }
}

/// Runs the built `ferry` with `arguments` to completion.
@discardableResult
public func ferry(_ arguments: [String], environment: [String: String]) throws -> (status: Int32, stdout: String, stderr: String) {
    try runProcess(TestPaths.ferryBinary.path, arguments, environment: environment)
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
public func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// Whether something accepts TCP connections on 127.0.0.1:port.
public func isListening(_ port: Int, host: String = "127.0.0.1") -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = UInt16(port).bigEndian
    addr.sin_addr.s_addr = inet_addr(host)
    return withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0
}

/// Polls `condition` every 100 ms for up to `seconds`.
public func eventually(_ seconds: Double, _ condition: () -> Bool) async -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(100))
    }
    return condition()
}

/// A fingerprint nobody has.
public let bogusFingerprint = "SHA256:" + String(repeating: "A", count: 43)

/// The first JSON object line of `text`.
public func firstJSON(_ text: String) -> [String: Any]? {
    if let whole = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] { return whole }
    for line in text.split(separator: "\n") where line.hasPrefix("{") {
        if let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] { return object }
    }
    return nil
}

/// The agent API's answers, shaped like ngrok's documented `GET /api/tunnels`
/// (https://ngrok.com/docs/agent/api/): name, uri, public_url, proto, config{addr, inspect}, metrics.
public enum NgrokFixture {
    public static let metrics = #""metrics":{"conns":{"count":0,"gauge":0,"rate1":0,"rate5":0,"rate15":0,"p50":0,"p90":0,"p95":0,"p99":0},"http":{"count":0,"rate1":0,"rate5":0,"rate15":0,"p50":0,"p90":0,"p95":0,"p99":0}}"#

    public static func tunnel(name: String, publicURL: String, proto: String, addr: String) -> String {
        #"{"name":"\#(name)","uri":"/api/tunnels/\#(name)","public_url":"\#(publicURL)","proto":"\#(proto)","config":{"addr":"\#(addr)","inspect":false},\#(metrics)}"#
    }

    public static func list(_ tunnels: [String]) -> String { #"{"tunnels":[\#(tunnels.joined(separator: ","))],"uri":"/api/tunnels"}"# }

    /// An HTTP tunnel of someone else's, and ours: TCP to local port 2222.
    public static func tcp(port: Int = 2222) -> String {
        list([tunnel(name: "website", publicURL: "https://9f2a-203-0-113-9.ngrok-free.app", proto: "https", addr: "http://localhost:8080"),
              tunnel(name: "command_line", publicURL: "tcp://4.tcp.eu.ngrok.io:17341", proto: "tcp", addr: "127.0.0.1:\(port)")])
    }
}
