import Foundation
import Testing
@testable import Jobs

/// `ferry status` names the device a run trains on (the trainer's `start` event carries it).
@Suite struct JobProgressDeviceTests {
    @Test func theStartEventsDeviceIsShown() {
        let events = """
        {"event":"start","time":1.0,"total_epochs":2,"start_epoch":1,"steps_per_epoch":10,"run_id":"r","run_dir":"quick/r","device":"cuda:0"}
        {"event":"step","time":2.0,"epoch":1,"step":5,"loss":0.5}

        """
        let p = JobProgress.parse(Data(events.utf8))
        #expect(p.device == "cuda:0")
        #expect(p.line.hasSuffix("  on cuda:0"), "\(p.line)")
        let cpu = JobProgress.parse(Data(events.replacingOccurrences(of: "cuda:0", with: "cpu").utf8))
        #expect(cpu.device == "cpu" && !cpu.line.contains(" on "), "\(cpu.line)")
    }
}
