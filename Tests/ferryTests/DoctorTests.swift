import FerryTestSupport
import Foundation
import Testing

@Suite struct DoctorTests {
    @Test func doctorReportsEveryCheckAsJSON() throws {
        let result = try runProcess(TestPaths.ferryBinary.path, ["doctor", "--json"])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        let checks = try #require(object["checks"] as? [[String: Any]])
        let names = Set(checks.compactMap { $0["name"] as? String })
        #expect(names.isSuperset(of: ["libssh", "libcurl", "oneDNN", "Fashion-MNIST", "ssh", "sshd", "CUDA", "disk"]))
        let onednn = try #require(checks.first { $0["name"] as? String == "oneDNN" })
        #expect(onednn["status"] as? String == "ok", "oneDNN must load here: \(onednn)")
        // Exit status follows the required checks.
        let ok = try #require(object["ok"] as? Bool)
        #expect(result.status == (ok ? 0 : 1))
    }
}

@Suite struct ExitCodeTests {
    @Test func badUsageExitsWithTwo() throws {
        let bad = try runProcess(TestPaths.ferryBinary.path, ["train", "--bs", "abc", "config.json"])
        #expect(bad.status == 2, "usage errors must exit 2 (nothing was run): \(bad.stderr)")
        #expect(bad.stderr.contains("--bs"))
        let unknown = try runProcess(TestPaths.ferryBinary.path, ["no-such-command"])
        #expect(unknown.status == 2)
        let version = try runProcess(TestPaths.ferryBinary.path, ["--version"])
        #expect(version.status == 0 && !version.stdout.isEmpty)
    }
}
