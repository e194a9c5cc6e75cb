import FerryTestSupport
import Foundation
@testable import Jobs
import JobsTestSupport
import Testing

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
