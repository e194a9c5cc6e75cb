import Foundation
import SSH

/// Reading the ngrok agent's local API (`GET /api/tunnels`, documented at
/// https://ngrok.com/docs/agent/api/): `{"tunnels":[{"name","uri","public_url":"tcp://HOST:PORT",
/// "proto":"tcp","config":{"addr":"localhost:22",...},"metrics":{...}}],"uri":"/api/tunnels"}`.
public enum NgrokAgentAPI {
    public static let defaultURL = "http://127.0.0.1:4040/api/tunnels"

    struct TunnelList: Decodable {
        struct Entry: Decodable {
            struct Config: Decodable { var addr: String? }
            var name: String?
            var public_url: String?
            var proto: String?
            var config: Config?
        }
        var tunnels: [Entry]?
    }

    /// The public TCP endpoint for `localPort` (any TCP tunnel when nil) from the API's answer.
    public static func endpoint(fromTunnelsJSON data: Data, localPort: Int?, url: String = defaultURL) throws -> TunnelEndpoint {
        let list: TunnelList
        do { list = try JSONDecoder().decode(TunnelList.self, from: data) } catch {
            throw TunnelError.ngrokBadResponse(url: url, reason: "not the JSON of /api/tunnels: \(error)")
        }
        guard let tunnels = list.tunnels else { throw TunnelError.ngrokBadResponse(url: url, reason: "no \"tunnels\" field") }
        let ours = tunnels.filter { entry in
            guard let localPort else { return true }
            return entry.config?.addr.flatMap(port(ofAddress:)) == localPort
        }
        guard !ours.isEmpty else {
            throw TunnelError.ngrokNoTunnel(url: url, localPort: localPort,
                                            others: tunnels.map { "\($0.public_url ?? "?") → \($0.config?.addr ?? "?")" })
        }
        // A TCP tunnel if there is one; otherwise say what the first one is.
        if let tcp = ours.first(where: { $0.proto == "tcp" || ($0.public_url ?? "").hasPrefix("tcp://") }) {
            guard let publicURL = tcp.public_url, let endpoint = parseTCP(publicURL) else {
                throw TunnelError.ngrokBadResponse(url: url, reason: "public_url \((tcp.public_url ?? "missing").debugDescription) is not tcp://HOST:PORT")
            }
            return endpoint
        }
        throw TunnelError.ngrokNotTCP(url: url, publicURL: ours[0].public_url ?? "?", proto: ours[0].proto ?? "unknown")
    }

    /// `tcp://0.tcp.ngrok.io:12345` as host and port.
    static func parseTCP(_ publicURL: String) -> TunnelEndpoint? {
        guard publicURL.hasPrefix("tcp://"), let target = try? SSHTarget(parsing: String(publicURL.dropFirst(6))),
              target.user == nil, let port = target.port else { return nil }
        return TunnelEndpoint(host: target.host, port: port)
    }

    /// The port of `localhost:22`, `127.0.0.1:2222`, `tcp://localhost:2222` or `2222`.
    static func port(ofAddress address: String) -> Int? {
        var a = Substring(address)
        if let scheme = a.range(of: "://") { a = a[scheme.upperBound...] }
        if let colon = a.lastIndex(of: ":") { a = a[a.index(after: colon)...] }
        return Int(a)
    }

    /// Asks the agent once.
    public static func fetchEndpoint(url: String = defaultURL, localPort: Int?) throws -> TunnelEndpoint {
        let status: Int, body: Data
        do { (status, body) = try HTTPClient.get(url, timeoutSeconds: 5) } catch let TunnelError.httpFailed(_, reason) {
            throw TunnelError.ngrokAPIUnreachable(url: url, reason: reason)
        }
        guard status == 200 else {
            throw TunnelError.ngrokBadResponse(url: url, reason: "HTTP \(status): \(String(decoding: body.prefix(200), as: UTF8.self))")
        }
        return try endpoint(fromTunnelsJSON: body, localPort: localPort, url: url)
    }
}

/// The ngrok agent as a tunnel: `ngrok tcp 127.0.0.1:PORT`, its public address read from its local
/// API. The authtoken reaches the agent the ways ngrok itself reads it — `NGROK_AUTHTOKEN` in its
/// environment or its config file — never its command line, where `ps` would show it.
public struct NgrokTunnel: Tunnel {
    public struct Configuration: Sendable {
        /// The agent binary; found on PATH when nil.
        public var binary: String?
        public var localPort: Int
        public var apiURL: String
        /// The environment the agent runs with (where NGROK_AUTHTOKEN comes from).
        public var environment: [String: String]
        /// Where the agent's own log goes.
        public var logFile: String
        /// Seconds to wait for the tunnel to appear.
        public var startTimeout: Double

        public init(binary: String? = nil, localPort: Int, apiURL: String = NgrokAgentAPI.defaultURL,
                    environment: [String: String], logFile: String, startTimeout: Double = 30) {
            self.binary = binary; self.localPort = localPort; self.apiURL = apiURL
            self.environment = environment; self.logFile = logFile; self.startTimeout = startTimeout
        }
    }

    public let configuration: Configuration
    public init(_ configuration: Configuration) { self.configuration = configuration }

    public var summary: String { "ngrok tcp 127.0.0.1:\(configuration.localPort)" }

    /// Where ngrok keeps its config (and so its authtoken), newest layout first.
    public static func configFiles(environment env: [String: String]) -> [String] {
        let home = env["HOME"] ?? NSHomeDirectory()
        var files: [String] = []
        if let explicit = env["NGROK_CONFIG"], !explicit.isEmpty { files.append(explicit) }
        let xdg = env["XDG_CONFIG_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? (home + "/.config")
        files.append(xdg + "/ngrok/ngrok.yml")
        files.append(home + "/Library/Application Support/ngrok/ngrok.yml")
        files.append(home + "/.ngrok2/ngrok.yml")
        return files
    }

    /// Whether the agent will find a token: in the environment, or an `authtoken:` in a config file.
    public static func hasToken(environment env: [String: String]) -> Bool {
        if let token = env["NGROK_AUTHTOKEN"], !token.isEmpty { return true }
        for file in configFiles(environment: env) {
            guard let data = FileManager.default.contents(atPath: file) else { continue }
            for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
                let t = line.trimmingCharacters(in: .whitespaces)
                if t.hasPrefix("authtoken:") && t.count > "authtoken:".count + 1 { return true }
            }
        }
        return false
    }

    /// The first `ERR_NGROK_…` in the agent's output, with the message around it.
    public static func reportedError(inLog text: String) -> (code: String?, message: String)? {
        let lines = text.split(separator: "\n").map(String.init)
        var code: String?
        if let range = text.range(of: #"ERR_NGROK_[0-9]+"#, options: .regularExpression) { code = String(text[range]) }
        // JSON log records carry the reason in "err"; the terminal format prints "ERROR:  ..." lines.
        for line in lines where line.hasPrefix("{") {
            guard let data = line.data(using: .utf8), let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { continue }
            if let err = object["err"] as? String, err != "<nil>", (code == nil || err.contains(code!) || object["lvl"] as? String == "crit") {
                let first = err.split(separator: "\n").first.map(String.init) ?? err
                return (code, first.trimmingCharacters(in: .whitespacesAndNewlines))
            }
        }
        let errorLines = lines.filter { $0.hasPrefix("ERROR:") }.map { $0.dropFirst(6).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty && !$0.hasPrefix("ERR_NGROK") }
        if let first = errorLines.first { return (code, first) }
        if let code { return (code, "the agent reported \(code)") }
        return nil
    }

    public func open() async throws -> any TunnelConnection {
        let c = configuration
        let binary: String
        if let explicit = c.binary {
            guard let found = ChildProcess.find(explicit, path: c.environment["PATH"]) else { throw TunnelError.ngrokNotInstalled(searched: [explicit]) }
            binary = found
        } else {
            guard let found = ChildProcess.find("ngrok", path: c.environment["PATH"]) else {
                throw TunnelError.ngrokNotInstalled(searched: ["PATH", "/usr/local/sbin", "/usr/sbin"])
            }
            binary = found
        }
        guard NgrokTunnel.hasToken(environment: c.environment) else {
            throw TunnelError.ngrokTokenMissing(configFiles: NgrokTunnel.configFiles(environment: c.environment))
        }
        let start = (try? FileManager.default.attributesOfItem(atPath: c.logFile)[.size] as? Int) ?? 0
        let process = try ChildProcess.spawn(binary, ["tcp", "127.0.0.1:\(c.localPort)", "--log", "stdout", "--log-format", "json"],
                                             environment: c.environment, logFile: c.logFile)
        let deadline = Date().addingTimeInterval(c.startTimeout)
        var lastError: any Error = TunnelError.ngrokNoTunnel(url: c.apiURL, localPort: c.localPort, others: [])
        // The checks run once more after the deadline: a sleep that overslept it (a busy machine)
        // must not turn an agent that already exited with a reason into "does not answer".
        var lastRound = false
        while true {
            if Task.isCancelled { await process.terminate(); throw CancellationError() }
            let log = NgrokTunnel.logSince(c.logFile, offset: start)
            if let status = process.exitStatus {
                if let reported = NgrokTunnel.reportedError(inLog: log) {
                    throw TunnelError.ngrokFailed(code: reported.code, message: reported.message)
                }
                throw TunnelError.ngrokExited(status: status, log: ChildProcess.tail(of: c.logFile, lines: 15))
            }
            if let reported = NgrokTunnel.reportedError(inLog: log), reported.code != nil {
                await process.terminate()
                throw TunnelError.ngrokFailed(code: reported.code, message: reported.message)
            }
            do {
                let endpoint = try NgrokAgentAPI.fetchEndpoint(url: c.apiURL, localPort: c.localPort)
                return NgrokConnection(process: process, endpoint: endpoint, apiURL: c.apiURL, localPort: c.localPort)
            } catch let error as TunnelError {
                lastError = error
                if case .ngrokNotTCP = error { await process.terminate(); throw error }
            }
            if lastRound { break }
            try? await Task.sleep(for: .milliseconds(300))
            lastRound = Date() >= deadline
        }
        await process.terminate()
        throw lastError
    }

    static func logSince(_ file: String, offset: Int) -> String {
        guard let data = FileManager.default.contents(atPath: file) else { return "" }
        return String(decoding: data.dropFirst(min(offset, data.count)), as: UTF8.self)
    }
}

final class NgrokConnection: TunnelConnection {
    let process: ChildProcess
    let endpoint: TunnelEndpoint
    let apiURL: String
    let localPort: Int

    init(process: ChildProcess, endpoint: TunnelEndpoint, apiURL: String, localPort: Int) {
        self.process = process; self.endpoint = endpoint; self.apiURL = apiURL; self.localPort = localPort
    }

    func waitUntilClosed() async -> String {
        var checks = 0
        var reason = "stopped"
        _ = await poll(every: 0.5) {
            if let status = process.exitStatus {
                reason = "the ngrok agent exited with status \(status): \(process.logTail(lines: 3))"
                return true
            }
            checks += 1
            // Every 10 s: is our tunnel still there, at the same address?
            if checks % 20 == 0 {
                do {
                    let now = try NgrokAgentAPI.fetchEndpoint(url: apiURL, localPort: localPort)
                    if now != endpoint { reason = "ngrok moved the tunnel to \(now)"; return true }
                } catch {
                    reason = "\(error)"
                    return true
                }
            }
            return false
        }
        return reason
    }

    func close() async { await process.terminate() }
}
