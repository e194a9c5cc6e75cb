import FerryTestSupport
import Foundation
import Testing

/// Every command's exit statuses, from the one place they are decided (RunContract's ExitStatus,
/// each module's error mapped to it): 0 done, 1 failed, 2 usage (nothing was run), 130/141 from
/// signals (tested beside the commands), 255 a connection that failed.
@Suite struct ExitStatusTests {
    static func ferry(_ arguments: [String], home: String) throws -> (status: Int32, stdout: String, stderr: String) {
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("FERRY_") }
        env["FERRY_HOME"] = home + "/.ferry"
        env["HOME"] = home
        return try runProcess(TestPaths.ferryBinary.path, arguments, environment: env, currentDirectory: URL(fileURLWithPath: home))
    }

    @Test func everyCommandsStatuses() throws {
        let home = NSTemporaryDirectory() + "ferry-exit-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: home + "/existing", withIntermediateDirectories: true)
        try Data("x".utf8).write(to: URL(fileURLWithPath: home + "/existing/file"))
        defer { try? FileManager.default.removeItem(atPath: home) }
        let unknownJob = "nojob-20250101-000000-0000"
        let cases: [([String], Int32)] = [
            (["launch", "--", "true"], 0),                                     // the job succeeded
            (["launch", "--", "sh", "-c", "exit 3"], 1),                       // the job failed
            (["launch", "--host", "nowhere", "--", "true"], 2),                // unknown host: nothing was run
            (["launch", "--gpus", "all", "--", "true"], 2),                    // a flag's value
            (["launch", "--env", "FERRY_TEST_UNSET_VARIABLE", "--", "true"], 2),
            (["train", "missing.json"], 2),                                    // config unreadable
            (["train", "--device", "cuda", "missing.json"], 2),                // a device this engine lacks
            (["train", "--run-id", "../x", "missing.json"], 2),
            (["logs", unknownJob], 2),                                         // unknown job
            (["status", unknownJob], 2),
            (["fetch", unknownJob], 2),
            (["cancel", unknownJob], 2),
            (["logs", "not a job id"], 2),
            (["hosts", "forget", "ghost"], 2),
            (["new", "existing"], 2),                                          // would overwrite
            (["ssh", "nobody@127.0.0.1:1", "--", "true"], 255),                // the connection fails (nothing listens on port 1)
            (["ssh", "-G", "somewhere"], 0),                                   // nothing to connect to
            (["host", "down"], 0),                                             // nothing was running: said, not failed
            (["agent", "no-such-verb"], 1),                                    // the agent's answer: an error
        ]
        for (arguments, expected) in cases {
            let r = try Self.ferry(arguments, home: home)
            #expect(r.status == expected, "ferry \(arguments.joined(separator: " ")) exited \(r.status), expected \(expected): \(r.stderr.prefix(300))")
            // A failure says why: on stderr, or (the agent, which the client reads) as a JSON error on stdout.
            if expected != 0 { #expect(!r.stderr.isEmpty || r.stdout.contains("\"error\""), "ferry \(arguments.joined(separator: " ")) failed without a word") }
        }
    }
}
