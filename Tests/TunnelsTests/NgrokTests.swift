import FerryTestSupport
import Foundation
import Testing
import Tunnels
import TunnelsTestSupport

@Suite struct NgrokTests {
    @Test func readsThePublicTCPEndpointFromTheAgentAPI() throws {
        let server = try TinyHTTPServer(routes: ["/api/tunnels": .init(body: NgrokFixture.tcp())])
        defer { server.stop() }
        let endpoint = try NgrokAgentAPI.fetchEndpoint(url: server.baseURL + "/api/tunnels", localPort: 2222)
        #expect(endpoint == TunnelEndpoint(host: "4.tcp.eu.ngrok.io", port: 17341))
        // Without a port filter, the first TCP tunnel; config.addr forms ngrok prints are all understood.
        for addr in ["localhost:2222", "tcp://localhost:2222", "2222"] {
            let json = NgrokFixture.list([NgrokFixture.tunnel(name: "t", publicURL: "tcp://0.tcp.ngrok.io:10001", proto: "tcp", addr: addr)])
            #expect(try NgrokAgentAPI.endpoint(fromTunnelsJSON: Data(json.utf8), localPort: 2222).port == 10001)
        }
    }

    @Test func anEmptyListIsAnError() throws {
        let server = try TinyHTTPServer(routes: ["/api/tunnels": .init(body: NgrokFixture.list([]))])
        defer { server.stop() }
        #expect {
            _ = try NgrokAgentAPI.fetchEndpoint(url: server.baseURL + "/api/tunnels", localPort: 2222)
        } throws: { error in
            guard case TunnelError.ngrokNoTunnel(_, 2222, let others) = error else { return false }
            return others.isEmpty && "\(error)".contains("the list is empty")
        }
        // Tunnels, but none for our port: named in the message.
        #expect {
            _ = try NgrokAgentAPI.endpoint(fromTunnelsJSON: Data(NgrokFixture.tcp(port: 22).utf8), localPort: 2222)
        } throws: { error in
            guard case TunnelError.ngrokNoTunnel(_, _, let others) = error else { return false }
            return others.count == 2 && "\(error)".contains("tcp://4.tcp.eu.ngrok.io:17341")
        }
    }

    @Test func aNonTCPTunnelIsAnError() throws {
        let json = NgrokFixture.list([NgrokFixture.tunnel(name: "command_line", publicURL: "https://abcd.ngrok-free.app", proto: "https", addr: "localhost:2222")])
        #expect {
            _ = try NgrokAgentAPI.endpoint(fromTunnelsJSON: Data(json.utf8), localPort: 2222)
        } throws: { error in
            guard case TunnelError.ngrokNotTCP(_, let url, let proto) = error else { return false }
            return url == "https://abcd.ngrok-free.app" && proto == "https" && "\(error)".contains("ngrok tcp")
        }
        #expect(throws: TunnelError.self) { _ = try NgrokAgentAPI.endpoint(fromTunnelsJSON: Data("<html>".utf8), localPort: 2222) }
    }

    @Test func aRefusedPortIsAnError() throws {
        let server = try TinyHTTPServer(routes: [:])
        let url = server.baseURL + "/api/tunnels"
        server.stop()
        #expect {
            _ = try NgrokAgentAPI.fetchEndpoint(url: url, localPort: 2222)
        } throws: { error in
            guard case TunnelError.ngrokAPIUnreachable(let u, _) = error else { return false }
            return u == url && "\(error)".contains("is the agent running")
        }
    }

    // MARK: - The agent process (a stand-in script: no ngrok account or network needed)

    /// Writes a fake `ngrok` that records its argv and whether NGROK_AUTHTOKEN reached it, then runs `body`.
    func fakeAgent(_ box: Sandbox, body: String) throws -> String {
        try box.write("bin/ngrok", """
            #!/bin/sh
            printf '%s' "${NGROK_AUTHTOKEN:-}" > "\(box.path("token-seen"))"
            printf '%s\\n' "$@" > "\(box.path("argv.tmp"))" && mv "\(box.path("argv.tmp"))" "\(box.path("argv"))"
            \(body)
            """, mode: 0o755)
    }

    @Test func startsTheAgentWithTheTokenInItsEnvironmentOnly() async throws {
        let box = try Sandbox(); defer { box.remove() }
        let server = try TinyHTTPServer(routes: ["/api/tunnels": .init(body: NgrokFixture.tcp(port: 2345))])
        defer { server.stop() }
        let binary = try fakeAgent(box, body: "exec sleep 600")
        let token = "2abcSECRETtoken_\(UUID().uuidString.prefix(6))"
        let tunnel = NgrokTunnel(.init(binary: binary, localPort: 2345, apiURL: server.baseURL + "/api/tunnels",
                                       environment: ["HOME": box.home, "PATH": "/usr/bin:/bin", "NGROK_AUTHTOKEN": token],
                                       logFile: box.path("ngrok.log"), startTimeout: 10))
        let connection = try await tunnel.open()
        #expect(connection.endpoint == TunnelEndpoint(host: "4.tcp.eu.ngrok.io", port: 17341))
        // The stand-in API answers at once; give the script its moment to record what it got.
        #expect(await eventually(5) { FileManager.default.fileExists(atPath: box.path("argv")) })
        let argv = box.read(box.path("argv"))
        #expect(argv.split(separator: "\n") == ["tcp", "127.0.0.1:2345", "--log", "stdout", "--log-format", "json"])
        #expect(!argv.contains(token), "the token must never be in argv")
        #expect(box.read(box.path("token-seen")) == token)
        await connection.close()
    }

    @Test func aMissingBinaryOrTokenIsSaidPlainly() async throws {
        let box = try Sandbox(); defer { box.remove() }
        let missing = NgrokTunnel(.init(localPort: 2222, environment: ["HOME": box.home, "PATH": box.path("nothing")], logFile: box.path("log")))
        await #expect {
            _ = try await missing.open()
        } throws: { error in
            guard let e = error as? TunnelError, case .ngrokNotInstalled = e else { return false }
            return e.isPermanent && "\(e)".contains("https://ngrok.com/download")
        }
        let binary = try fakeAgent(box, body: "exec sleep 600")
        let noToken = NgrokTunnel(.init(binary: binary, localPort: 2222, environment: ["HOME": box.home, "PATH": "/usr/bin:/bin"], logFile: box.path("log")))
        await #expect {
            _ = try await noToken.open()
        } throws: { error in
            guard let e = error as? TunnelError, case .ngrokTokenMissing = e else { return false }
            return e.isPermanent && "\(e)".contains("NGROK_AUTHTOKEN") && "\(e)".contains("never")
        }
        #expect(!FileManager.default.fileExists(atPath: box.path("argv")), "the agent must not start without a token")
        // A token in ngrok's own config file is enough.
        _ = try box.write("home/.config/ngrok/ngrok.yml", "version: \"2\"\nauthtoken: 2abcdefFromConfig\n")
        #expect(NgrokTunnel.hasToken(environment: ["HOME": box.home]))
    }

    @Test func freePlanRefusalsAreExplained() async throws {
        let box = try Sandbox(); defer { box.remove() }
        // What ngrok v3 logs (JSON) when a free account without a card asks for TCP.
        let line = #"{"addr":"127.0.0.1:2222","err":"failed to start tunnel: You must add a credit or debit card before you can use TCP endpoints on a free account. We require a valid card as a way to combat abuse and keep the internet a safe place. This card will NOT be charged.\r\n\r\nAdd a card to your account here: https://dashboard.ngrok.com/settings#id-verification\r\n\r\nERR_NGROK_8013\r\n","lvl":"crit","msg":"command failed","t":"2025-01-01T00:00:00Z"}"#
        let binary = try fakeAgent(box, body: "printf '%s\\n' '\(line)'\nexit 1")
        let tunnel = NgrokTunnel(.init(binary: binary, localPort: 2222, apiURL: "http://127.0.0.1:9/api/tunnels",
                                       environment: ["HOME": box.home, "PATH": "/usr/bin:/bin", "NGROK_AUTHTOKEN": "x"],
                                       logFile: box.path("ngrok.log"), startTimeout: 10))
        await #expect {
            _ = try await tunnel.open()
        } throws: { error in
            guard let e = error as? TunnelError, case .ngrokFailed(let code, let message) = e else { return false }
            return code == "ERR_NGROK_8013" && message.contains("credit or debit card") && e.isPermanent
                && "\(e)".contains("--tunnel ssh://")
        }
        // The terminal log format, and the one-agent limit (not permanent: the other agent may stop).
        let text = "ERROR:  authentication failed: Your account is limited to 1 simultaneous ngrok agent sessions.\nERROR:  \nERROR:  ERR_NGROK_108\n"
        let reported = try #require(NgrokTunnel.reportedError(inLog: text))
        #expect(reported.code == "ERR_NGROK_108" && reported.message.contains("simultaneous"))
        #expect(!TunnelError.ngrokFailed(code: "ERR_NGROK_108", message: "").isPermanent)
        #expect("\(TunnelError.ngrokFailed(code: "ERR_NGROK_4018", message: "x"))".contains("verified account"))
    }
}
