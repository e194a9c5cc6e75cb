import FerryTestSupport
import Foundation
import Jobs
import JobsTestSupport
import Testing

/// Ctrl-C on the commands that wait on a host: ferry stops at once with status 130 and leaves the
/// job alone; a host that does not answer cannot hold it longer than the 3 s watchdog.
@Suite(.serialized) struct JobsInterruptCLITests {
    /// Starts `ferry ARGS`, sends SIGINT after `after` seconds and waits for the exit (at most 15 s);
    /// the status as a shell shows it.
    func interrupt(_ arguments: [String], sandbox box: Sandbox, after: Double) throws -> (status: Int32, seconds: Double, stderr: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: TestFerry.binary)
        process.arguments = arguments
        process.environment = TestFerry.environment(box)
        process.currentDirectoryURL = URL(fileURLWithPath: box.project)
        let errPath = box.root + "/stderr-\(UUID().uuidString)"
        FileManager.default.createFile(atPath: errPath, contents: nil)
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        process.standardOutput = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        Thread.sleep(forTimeInterval: after)
        let sent = Date()
        process.interrupt()
        while process.isRunning && Date().timeIntervalSince(sent) < 15 { Thread.sleep(forTimeInterval: 0.02) }
        let seconds = Date().timeIntervalSince(sent)
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        // As a shell reports it: killed by a signal is 128 + the signal.
        let status = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
        return (status, seconds, (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
    }

    @Test func ctrlCStopsFollowingAndLeavesTheJobRunning() throws {
        let box = try Sandbox(); defer { box.remove() }
        let launched = try TestFerry.run(["launch", "--host", "local", "-d", "--", "sleep", "30"], sandbox: box)
        #expect(launched.status == 0, "\(launched.stderr)")
        let id = try #require(Registry(home: box.home).jobs().first?.id)
        let followed = try interrupt(["logs", "-f", id], sandbox: box, after: 1.0)
        #expect(followed.status == 130, "\(followed.stderr)")
        #expect(followed.seconds < 2, "Ctrl-C took \(followed.seconds) s")
        let status = try TestFerry.run(["status", id], sandbox: box)
        #expect(status.stdout.contains("running"), "\(status.stdout)\(status.stderr)")
        _ = try TestFerry.run(["cancel", id], sandbox: box)
    }

    @Test func aHostThatNeverAnswersCannotHoldCtrlC() throws {
        let box = try Sandbox(); defer { box.remove() }
        let silent = try SilentServer(); defer { silent.stop() }
        let add = try TestFerry.run(["hosts", "add", "mute", "me@127.0.0.1:\(silent.port)",
                                     "--host-key", "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"], sandbox: box)
        #expect(add.status == 0, "\(add.stderr)")
        // A job of that host, as an earlier launch recorded it.
        let record = #"{"id": "mute-job-1", "name": "mute-job", "host": "mute", "kind": "command", "command": ["true"], "created_at": "2026-12-01T10:00:00Z"}"#
        let decoder = JSONDecoder(); decoder.keyDecodingStrategy = .convertFromSnakeCase; decoder.dateDecodingStrategy = .iso8601
        try Registry(home: box.home).saveJob(try decoder.decode(JobRecord.self, from: Data(record.utf8)))
        for command in [["launch", "--host", "mute", "--", "true"], ["ssh", "mute", "--", "true"],
                        ["logs", "-f", "mute-job-1"], ["fetch", "mute-job-1", "--dest", box.root + "/fetched"]] {
            let result = try interrupt(command, sandbox: box, after: 1.0)
            #expect(result.status == 130, "\(command): \(result.stderr)")
            #expect(result.seconds < 4.5, "\(command): Ctrl-C took \(result.seconds) s")
        }
    }
}
