import FerryTestSupport
import Foundation
import System
@testable import Jobs
import JobsTestSupport
import Testing

/// How the Slurm launcher reads a job's state, with Slurm's commands stood in: squeue first, then
/// sacct when accounting exists, then scontrol, then the exit file the batch script wrote.
@Suite struct SlurmStateTests {
    typealias Answers = [String: (Int32, String)]   // command name → status, output

    /// A submitted job (Slurm id 77) in a fresh store, and a launcher whose commands answer `answers`.
    func launcher(_ box: Sandbox, _ answers: Answers, exit: String? = nil, time: String? = nil, cancelled: Bool = false) throws -> (SlurmLauncher, String) {
        let layout = HostLayout(home: box.root + "/host")
        let store = JobStore(layout: layout)
        let id = "s-20250101-000000-abcd"
        let paths = layout.job(id)
        try FileManager.default.createDirectory(atPath: paths.output, withIntermediateDirectories: true)
        var spec = JobSpec(id: id, name: "s", kind: "command", command: ["true"])
        spec.slurm = SlurmJob(time: time)
        try JSON.write(spec, to: paths.spec)
        var status = JobStatus(id: id, state: .pending)
        status.schedulerJobId = "77"
        try store.write(status, paths)
        if let exit { try Data(exit.utf8).write(to: URL(fileURLWithPath: paths.directory + "/" + SlurmBatchScript.exitFile)) }
        if cancelled { try Data("{}".utf8).write(to: URL(fileURLWithPath: paths.cancel)) }
        var launcher = SlurmLauncher(store: store, home: layout.home, binary: "/bin/ferry")
        launcher.run = { arguments, _, _ in
            let (status, text) = answers[arguments[0]] ?? (1, "\(arguments[0]): not answered")
            return Subprocess.Result(status: status, output: Data(text.utf8))
        }
        return (launcher, id)
    }

    static let forgotten: (Int32, String) = (0, "")
    static let noAccounting: (Int32, String) = (1, "Slurm accounting storage is disabled")

    @Test func queuedAndRunningComeFromSqueue() throws {
        let box = try Sandbox(); defer { box.remove() }
        let (pending, id) = try launcher(box, ["squeue": (0, "PENDING|Resources||2031-01-01T10:00:00\n")])
        let p = try pending.status(id)
        #expect(p.state == .pending && p.pendingReason == "Resources" && p.expectedStart != nil)
        #expect(p.summary.hasPrefix("pending (Resources, expected to start"))
        let box2 = try Sandbox(); defer { box2.remove() }
        let (running, id2) = try launcher(box2, ["squeue": (0, "RUNNING|None|node7|2025-01-01T10:00:00\n")])
        let r = try running.status(id2)
        #expect(r.state == .running && r.nodes == "node7" && r.summary == "running on node7")
    }

    @Test(arguments: [
        ("COMPLETED|0:0", JobState.succeeded), ("FAILED|3:0", .failed), ("TIMEOUT|0:15", .timeout), ("OUT_OF_MEMORY|0:125", .outOfMemory),
        ("NODE_FAIL|0:0", .nodeFailed), ("PREEMPTED|0:15", .preempted), ("CANCELLED by 0|0:15", .cancelled),
    ])
    func endedJobsComeFromSacct(line: String, state: JobState) throws {
        let box = try Sandbox(); defer { box.remove() }
        let (launcher, id) = try launcher(box, ["squeue": Self.forgotten, "sacct": (0, line + "\n")])
        let s = try launcher.status(id)
        #expect(s.state == state, "\(line)")
        if state == .failed { #expect(s.exitCode == 3 && s.summary == "failed (exit 3)") }
        // Written once: later reads ask nobody.
        var silent = launcher
        silent.run = { _, _, _ in Issue.record("asked Slurm about a finished job"); return Subprocess.Result(status: 1, output: Data()) }
        #expect(try silent.status(id).state == state)
    }

    /// The engine check failed on the compute node: final, failed with its reason (not an exit
    /// code, not a requeue), whatever Slurm says of the script's exit.
    @Test func aFailedNodeCheckIsFinalWithItsReason() throws {
        let box = try Sandbox(); defer { box.remove() }
        let (launcher, id) = try launcher(box, ["squeue": Self.forgotten, "sacct": (0, "FAILED|1:0\n")],
                                          exit: #"{"code":1,"signal":"","restart":0,"started":1,"ended":2,"requeued":false,"check_failed":true}"#)
        let paths = try JobStore(layout: HostLayout(home: box.root + "/host")).paths(id)
        try Data("on node n1: the job asks for 1 GPU but ferry's engine cannot use CUDA here: libcuda.so.1 missing\n".utf8)
            .write(to: URL(fileURLWithPath: paths.directory + "/" + SlurmBatchScript.checkFile))
        let s = try launcher.status(id)
        #expect(s.state == .failed && s.exitCode == nil, "\(s)")
        #expect(s.summary == "failed (engine check failed at job start, nothing ran: on node n1: the job asks for 1 GPU but ferry's engine cannot use CUDA here: libcuda.so.1 missing)", "\(s.summary)")
        // An exit record from before the check existed decodes as it did.
        let old = try JSONCoding.decoder().decode(SlurmExitRecord.self, from: Data(#"{"code":0,"signal":"","restart":0,"started":1,"ended":2,"requeued":false}"#.utf8))
        #expect(old.checkFailed == nil)
    }

    @Test func withoutAccountingScontrolThenTheExitFile() throws {
        let box = try Sandbox(); defer { box.remove() }
        let (a, id) = try launcher(box, ["squeue": Self.forgotten, "sacct": Self.noAccounting,
                                         "scontrol": (0, "JobId=77 JobState=FAILED Reason=NonZeroExitCode ExitCode=4:0 NodeList=n1\n")],
                                   exit: #"{"code":4,"signal":"","restart":0,"started":1,"ended":2,"requeued":false}"#)
        let s = try a.status(id)
        #expect(s.state == .failed && s.exitCode == 4)

        let box2 = try Sandbox(); defer { box2.remove() }
        let (b, id2) = try launcher(box2, ["squeue": Self.forgotten, "sacct": Self.noAccounting, "scontrol": (1, "Invalid job id specified")],
                                    exit: #"{"code":0,"signal":"","restart":1,"started":1,"ended":2,"requeued":false}"#)
        #expect(try b.status(id2).state == .succeeded)

        let box3 = try Sandbox(); defer { box3.remove() }
        let (c, id3) = try launcher(box3, ["squeue": Self.forgotten, "sacct": Self.noAccounting, "scontrol": (1, "Invalid job id specified")])
        let lost = try c.status(id3)
        #expect(lost.state == .lost && (lost.message ?? "").contains("Slurm no longer knows job 77"))
    }

    @Test func aRequeueInProgressIsNotOver() throws {
        let box = try Sandbox(); defer { box.remove() }
        let (a, id) = try launcher(box, ["squeue": Self.forgotten, "sacct": Self.noAccounting,
                                         "scontrol": (0, "JobId=77 JobState=PENDING Reason=BeginTime ExitCode=0:0\n")],
                                   exit: #"{"code":75,"signal":"USR2","restart":0,"started":1,"ended":2,"requeued":true}"#)
        let s = try a.status(id)
        #expect(s.state == .pending && s.pendingReason == "BeginTime")
        // Slurm ended it before the script ran again: failed, saying so, not preempted.
        let box2 = try Sandbox(); defer { box2.remove() }
        let (b, id2) = try launcher(box2, ["squeue": Self.forgotten, "sacct": (0, "FAILED|1:0\n")],
                                    exit: #"{"code":75,"signal":"USR2","restart":0,"started":1,"ended":2,"requeued":true}"#)
        let f = try b.status(id2)
        #expect(f.state == .failed && (f.message ?? "").contains("its restart did not run"))
    }

    @Test func aStopAtUSR2IsTimeoutNearTheLimitElsePreempted() throws {
        let usr2 = #"{"code":75,"signal":"USR2","restart":0,"started":1000,"ended":%d,"requeued":false}"#
        let box = try Sandbox(); defer { box.remove() }
        let (a, id) = try launcher(box, ["squeue": Self.forgotten, "sacct": (0, "FAILED|75:0\n")], exit: String(format: usr2, 1000 + 570), time: "10")
        #expect(try a.status(id).state == .timeout)
        let box2 = try Sandbox(); defer { box2.remove() }
        let (b, id2) = try launcher(box2, ["squeue": Self.forgotten, "sacct": (0, "FAILED|75:0\n")], exit: String(format: usr2, 1000 + 60), time: "10")
        #expect(try b.status(id2).state == .preempted)
        let box3 = try Sandbox(); defer { box3.remove() }
        let (c, id3) = try launcher(box3, ["squeue": Self.forgotten, "sacct": (0, "FAILED|143:0\n")],
                                    exit: #"{"code":143,"signal":"TERM","restart":0,"started":1,"ended":2,"requeued":false}"#, cancelled: true)
        #expect(try c.status(id3).state == .cancelled)
    }

    /// Accounting that exists but does not answer (slurmdbd down) leaves a forgotten job as it was,
    /// saying why, instead of ending it as lost; once sacct answers, its state.
    @Test func accountingThatDoesNotAnswerIsNotLost() throws {
        let box = try Sandbox(); defer { box.remove() }
        let down = "sacct: error: Sending PersistInit msg: Connection refused\nsacct: error: Problem talking to the database: Connection refused"
        let (a, id) = try launcher(box, ["squeue": (1, "slurm_load_jobs error: Invalid job id specified"), "sacct": (1, down),
                                         "scontrol": (1, "slurm_load_jobs error: Invalid job id specified")])
        let s = try a.status(id)
        #expect(s.state == .pending && (s.message ?? "").contains("Problem talking to the database"), "\(s)")
        var back = a
        back.run = { arguments, _, _ in
            let answers: [String: (Int32, String)] = ["squeue": (1, "slurm_load_jobs error: Invalid job id specified"), "sacct": (0, "COMPLETED|0:0\n")]
            let (status, text) = answers[arguments[0]] ?? (1, "not answered")
            return Subprocess.Result(status: status, output: Data(text.utf8))
        }
        #expect(try back.status(id).state == .succeeded)
    }

    @Test func slurmThatDoesNotAnswerLeavesTheJobAsItWas() throws {
        let box = try Sandbox(); defer { box.remove() }
        let (a, id) = try launcher(box, ["squeue": (1, "slurm_load_jobs error: Unable to contact slurm controller (connect failure)")])
        let s = try a.status(id)
        #expect(s.state == .pending && (s.message ?? "").contains("Unable to contact slurm controller"))
    }
}
