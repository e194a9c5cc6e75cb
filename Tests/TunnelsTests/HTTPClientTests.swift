import FerryTestSupport
import Foundation
import TunnelsTestSupport
import Testing
import Tunnels

@Suite struct HTTPClientTests {
    @Test func getsAPageFromALocalServer() throws {
        let server = try TinyHTTPServer(routes: ["/hello": .init(body: "{\"hello\":\"world\"}")])
        defer { server.stop() }
        let (status, body) = try HTTPClient.get(server.baseURL + "/hello")
        #expect(status == 200)
        #expect(String(decoding: body, as: UTF8.self) == "{\"hello\":\"world\"}")
        let missing = try HTTPClient.get(server.baseURL + "/nope")
        #expect(missing.status == 404)
    }

    @Test func refusedPortIsAnError() throws {
        let server = try TinyHTTPServer(routes: [:])
        let port = server.port
        server.stop()
        #expect(throws: TunnelError.self) { _ = try HTTPClient.get("http://127.0.0.1:\(port)/", timeoutSeconds: 2) }
    }
}
