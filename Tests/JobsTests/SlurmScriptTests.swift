import FerryTestSupport
import Foundation
import System
@testable import Jobs
import JobsTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The Slurm pieces that need no cluster: options ferry owns, Slurm's times, sbatch's argv and
/// the batch script's requeue decision (run by bash here, with a stand-in `scontrol`).
@Suite struct SlurmScriptTests {
    @Test func ownedSbatchOptionsAreRefusedWithTheReason() throws {
        for owned in ["--output=x", "-o", "-ox.log", "--signal=USR1@60", "--requeue", "--open-mode=truncate", "--array=0-3", "-a", "--error=e"] {
            #expect(throws: JobsError.self, "\(owned)") { try SlurmHost.validate(sbatchArgument: owned) }
        }
        for fine in ["--qos=high", "--mem=64G", "-c", "--constraint=a100", "--account=x"] {
            try SlurmHost.validate(sbatchArgument: fine)
        }
        do { try SlurmHost.validate(sbatchArgument: "--signal=USR1") } catch {
            #expect("\(error)".contains("USR2 before the time limit"))
        }
    }

    @Test func slurmTimesAndTheWarning() {
        #expect(SlurmJob.seconds(ofTime: "30") == 1800)
        #expect(SlurmJob.seconds(ofTime: "1:30") == 90)
        #expect(SlurmJob.seconds(ofTime: "2:00:00") == 7200)
        #expect(SlurmJob.seconds(ofTime: "1-12") == 129_600)
        #expect(SlurmJob.seconds(ofTime: "1-0:30:00") == 88_200)
        #expect(SlurmJob.seconds(ofTime: "soon") == nil && SlurmJob.seconds(ofTime: "1:2:3:4") == nil && SlurmJob.seconds(ofTime: "") == nil)
        #expect(SlurmJob(time: "2:00:00").warningSeconds == 120)
        #expect(SlurmJob(time: "1").warningSeconds == 15)
    }

    @Test func sbatchArgumentsCarryWhatFerryPromises() {
        let paths = JobPaths(directory: "/h/jobs/x-1")
        var spec = JobSpec(id: "x-20250101-000000-abcd", name: "x", kind: "train", needs: JobNeeds(engine: true, resumeArguments: ["--resume", "auto"]),
                           command: ["ferry", "train", "c.json"], gpus: "2")
        spec.slurm = SlurmJob(partition: "gpu", account: "lab", sbatchArguments: ["--qos=high"], nodes: 1, time: "10")
        let args = SlurmLauncher.sbatchArguments(spec: spec, slurm: spec.slurm!, paths: paths, script: "/h/jobs/x-1/slurm.sh")
        #expect(args == ["sbatch", "--parsable", "--job-name=x", "--output=/h/jobs/x-1/output.log", "--open-mode=append", "--chdir=/h/jobs/x-1",
                         "--signal=B:USR2@120", "--requeue", "--gres=gpu:2", "--time=10", "--nodes=1", "--partition=gpu", "--account=lab",
                         "--qos=high", "/h/jobs/x-1/slurm.sh"])
        #expect(SlurmLauncher.parseJobID("12\n") == "12" && SlurmLauncher.parseJobID("sbatch: warning: x\n13;c") == "13")
        #expect(SlurmLauncher.parseJobID("sbatch: error: no") == nil)
        spec.gpus = "0,1"
        #expect(throws: JobsError.self) { try spec.validate() }
    }

    /// The script requeues only after USR2, a payload exit of 75, progress, and under the limit.
    @Test(arguments: [
        ("USR2", 0, true, true),     // preempted with progress: requeued
        ("TERM", 0, true, false),    // a cancel never requeues
        ("USR2", 0, false, false),   // no progress since the start
        ("USR2", 3, true, false),    // the restart limit
    ])
    func batchScriptRequeuesOnlyWhenItShould(signal: String, restart: Int, progress: Bool, requeued: Bool) async throws {
        let box = try Sandbox()
        defer { box.remove() }
        let paths = JobPaths(directory: box.root + "/job")
        try FileManager.default.createDirectory(atPath: paths.work, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: paths.output, withIntermediateDirectories: true)
        let bin = box.root + "/bin"
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
        let calls = box.root + "/scontrol-calls"
        try Data("#!/bin/sh\necho \"$@\" >> \(calls)\n".utf8).write(to: URL(fileURLWithPath: bin + "/scontrol"))
        chmod(bin + "/scontrol", 0o755)
        let step = progress ? "echo '{\"event\":\"step\",\"step\":1}' >> \"$FERRY_EVENTS\"" : "true"
        let payload = "step() { \(step); }; trap 'step; exit 75' TERM; echo up > ../ready; while :; do sleep 0.05; done"
        var spec = JobSpec(id: "t-20250101-000000-abcd", name: "t", kind: "train", needs: JobNeeds(resumeArguments: ["--resume", "auto"]),
                           command: ["sh", "-c", payload])
        spec.slurm = SlurmJob(maxRestarts: 3)
        let script = box.root + "/slurm.sh"
        try Data(SlurmBatchScript(spec: spec, paths: paths, ferryBinary: "/nonexistent/ferry", home: box.root + "/host").text.utf8).write(to: URL(fileURLWithPath: script))
        var env = ProcessInfo.processInfo.environment
        env["PATH"] = bin + ":" + (env["PATH"] ?? "/usr/bin:/bin")
        env["SLURM_JOB_ID"] = "42"
        env["SLURM_RESTART_COUNT"] = String(restart)
        env["FERRY_EVENTS"] = paths.events
        let log = box.root + "/log"
        let pid = try Spawn.start(["/bin/bash", script], environment: env, stdout: .file(log, append: false), stderr: .file(log + ".err", append: false))
        #expect(await eventually(20) { FileManager.default.fileExists(atPath: paths.directory + "/ready") })
        kill(pid, signal == "USR2" ? SIGUSR2 : SIGTERM)
        let code = await Task.detached { Spawn.decodeWaitStatus(Spawn.wait(pid)).code }.value
        let text = fileText(log)
        let record = try JSONCoding.decoder().decode(SlurmExitRecord.self, from: Data(contentsOf: URL(fileURLWithPath: paths.directory + "/" + SlurmBatchScript.exitFile)))
        #expect(record.code == 75 && record.signal == signal && record.restart == restart, "\(record)")
        #expect(record.requeued == requeued, "\(text)")
        #expect(fileText(calls) == (requeued ? "requeue 42\n" : ""), "\(text)")
        #expect(code == (requeued ? 0 : 75), "\(text)")
        if restart > 0 { #expect(text.contains("restart \(restart) of job") && text.contains("continuing with: --resume auto"), "\(text)") }
        if signal == "USR2" && !requeued {
            #expect(text.contains(restart >= 3 ? "restarted 3 times already" : "made no progress"), "\(text)")
        }
    }

    /// A train job's script runs `ferry agent --home H node-check ID` on the compute node after the
    /// setup lines and before the payload: a failing check ends the job with status 1, the payload
    /// never started, `check_failed` in the exit record; a passing one lets the payload run.
    @Test(arguments: [false, true])
    func theNodeCheckRunsBeforeThePayload(passes: Bool) async throws {
        let box = try Sandbox()
        defer { box.remove() }
        let paths = JobPaths(directory: box.root + "/job")
        try FileManager.default.createDirectory(atPath: paths.work, withIntermediateDirectories: true)
        let calls = box.root + "/ferry-calls", fake = box.root + "/ferry"
        try Data("#!/bin/sh\necho \"$@\" >> \(calls)\necho \"check says \(passes ? "ok" : "no CUDA")\"\nexit \(passes ? 0 : 1)\n".utf8)
            .write(to: URL(fileURLWithPath: fake))
        chmod(fake, 0o755)
        var spec = JobSpec(id: "t-20250101-000000-abcd", name: "t", kind: "train", needs: JobNeeds(engine: true, resumeArguments: ["--resume", "auto"]),
                           command: ["sh", "-c", "echo payload ran"], gpus: "1")
        spec.slurm = SlurmJob(setup: ["echo setup ran"])
        let script = box.root + "/slurm.sh"
        try Data(SlurmBatchScript(spec: spec, paths: paths, ferryBinary: fake, home: box.root + "/host").text.utf8).write(to: URL(fileURLWithPath: script))
        let log = box.root + "/log"
        var env = ProcessInfo.processInfo.environment
        env["SLURM_JOB_ID"] = "42"
        let pid = try Spawn.start(["/bin/bash", script], environment: env, stdout: .file(log, append: false), stderr: .file(log, append: true))
        let code = await Task.detached { Spawn.decodeWaitStatus(Spawn.wait(pid)).code }.value
        let text = fileText(log)
        #expect(fileText(calls) == "agent --home \(box.root)/host node-check \(spec.id)\n", "\(text)")
        let record = try JSONCoding.decoder().decode(SlurmExitRecord.self, from: Data(contentsOf: URL(fileURLWithPath: paths.directory + "/" + SlurmBatchScript.exitFile)))
        let setupAt = text.range(of: "setup ran")?.lowerBound, checkAt = text.range(of: "check says")?.lowerBound
        #expect(setupAt != nil && checkAt != nil && setupAt! < checkAt!, "the setup lines first: \(text)")
        #expect(code == (passes ? 0 : 1) && record.checkFailed == !passes, "\(text) \(record)")
        #expect(text.contains("payload ran") == passes, "\(text)")
        // A command job (not ferry's engine) is not checked.
        spec.kind = "command"; spec.needs = JobNeeds()
        #expect(!SlurmBatchScript(spec: spec, paths: paths, ferryBinary: fake, home: box.root + "/host").text.contains("node-check"))
    }

    /// `ferry agent node-check ID` on the node: a GPU job where the engine cannot reach CUDA fails,
    /// with the reason in `slurm-check.txt`; a CPU job, or CUDA that loads, passes.
    @Test func theAgentsNodeCheck() throws {
        let box = try Sandbox()
        defer { box.remove() }
        let layout = HostLayout(home: box.root + "/host")
        let id = "t-20250101-000000-abcd"
        try FileManager.default.createDirectory(atPath: layout.job(id).output, withIntermediateDirectories: true)
        func check(gpus: String?, cuda: Bool) throws -> (Int32, String) {
            let spec = JobSpec(id: id, name: "t", kind: "train", needs: JobNeeds(engine: true), command: ["ferry", "train", "c.json"], gpus: gpus)
            try JSON.write(spec, to: layout.job(id).spec)
            let probes = AgentProbes { ([], LibraryCheck(available: true, detail: "v3.0"),
                                        LibraryCheck(available: cuda, detail: cuda ? "driver 12.4" : "libcuda.so.1: cannot open shared object file")) }
            let status = try Agent(home: layout.home, version: "t", probes: probes).nodeCheck(id)
            return (status, fileText(layout.job(id).directory + "/" + SlurmBatchScript.checkFile))
        }
        let (failed, why) = try check(gpus: "1", cuda: false)
        #expect(failed == 1 && why.contains("asks for 1 GPU but ferry's engine cannot use CUDA here: libcuda.so.1: cannot open shared object file"), "\(why)")
        let (passed, left) = try check(gpus: "1", cuda: true)
        #expect(passed == 0 && left.isEmpty, "a passing check removes the old reason: \(left)")
        #expect(try check(gpus: nil, cuda: false).0 == 0)
        #expect(try check(gpus: "0,1", cuda: false).0 == 1)
    }
}
