import FerryTestSupport
import Foundation
@testable import Jobs
import JobsTestSupport
import Testing

/// A sweep on a plain host: one job a combination, all started at once, `ls` groups them and
/// `ferry status SWEEP` tables their overrides and states.
@Suite struct JobsSweepCLITests {
    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") || TestPaths.isCI))
    func aSweepRunsEveryCombination() async throws {
        let box = try Sandbox(); defer { box.remove() }
        try box.write("tiny.json", TrainJobConfig.text(limit: 300, epochs: 1, hidden: 16))
        let launched = try TestFerry.run(["launch", "--sweep", "optimizer.args.lr=1e-3,3e-4", "--sweep", "trainer.epochs=[1]", "tiny.json"], sandbox: box)
        #expect(launched.status == 0, "\(launched.stderr)")
        let line = try #require(launched.stderr.split(separator: "\n").first { $0.hasPrefix("sweep ") }, "\(launched.stderr)")
        let sweep = String(line.dropFirst(6).prefix { $0 != ":" })
        #expect(try await eventually(120) {
            let s = try TestFerry.run(["status", sweep], sandbox: box).stdout
            return s.components(separatedBy: "succeeded").count - 1 == 2
        })
        let table = try TestFerry.run(["status", sweep], sandbox: box)
        #expect(table.stdout.contains("\(sweep)-0  optimizer.args.lr=1e-3 trainer.epochs=1"), "\(table.stdout)")
        #expect(table.stdout.contains("\(sweep)-1  optimizer.args.lr=3e-4 trainer.epochs=1"), "\(table.stdout)")
        #expect(table.stdout.contains("val_accuracy"), "\(table.stdout)")
        let ls = try TestFerry.run(["ls"], sandbox: box)
        #expect(ls.stdout.contains("sweep \(sweep): 2 runs"), "\(ls.stdout)")
        let env = fileText(box.localJob(sweep + "-1").spec)
        #expect(env.contains("FERRY_RUN_INDEX") && env.contains("FERRY_SWEEP_ID"))
    }
}

/// `--time` on a plain host: the supervisor sends SIGTERM at the limit and the job ends as timeout.
@Suite struct JobsTimeLimitCLITests {
    @Test func thePlainHostsSupervisorEnforcesTime() throws {
        let box = try Sandbox(); defer { box.remove() }
        try box.write("loop.sh", "trap 'echo stopping at TERM; exit 75' TERM\necho looping\nwhile :; do sleep 0.1; done\n")
        let started = Date()
        let launched = try TestFerry.run(["launch", "--time", "0:02", "--", "sh", "loop.sh"], sandbox: box)
        #expect(launched.status == 75, "\(launched.stdout)\n\(launched.stderr)")
        #expect(launched.stdout.contains("time limit reached") && launched.stdout.contains("stopping at TERM"), "\(launched.stdout)")
        #expect(launched.stderr.contains("timeout"), "\(launched.stderr)")
        #expect(Date().timeIntervalSince(started) < 30)
        let bad = try TestFerry.run(["launch", "--time", "soon", "--", "true"], sandbox: box)
        #expect(bad.status == 2 && bad.stderr.contains("--time soon"), "\(bad.stderr)")
    }
}
