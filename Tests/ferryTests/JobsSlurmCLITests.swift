import FerryTestSupport
import Foundation
import System
@testable import Jobs
import JobsTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Runs ferry on a thread of its own: a command that takes a minute (a followed job) must not hold
/// one of the few cooperative threads the other suites' async tests need meanwhile.
func ferryOffPool(_ arguments: [String], sandbox: Sandbox) async throws -> (status: Int32, stdout: String, stderr: String) {
    let environment = TestFerry.environment(sandbox), directory = URL(fileURLWithPath: sandbox.project)
    let result: Result<(status: Int32, stdout: String, stderr: String), Error> = await withCheckedContinuation { done in
        Thread { done.resume(returning: Result { try runProcess(TestFerry.binary, arguments, environment: environment, currentDirectory: directory) }) }.start()
    }
    return try result.get()
}

/// `ferry` against a real one-node Slurm cluster (scripts/test-slurm.sh: two fake GPUs) whose login
/// node is the test sshd. Serialized: the jobs of one test must not wait behind another's.
@Suite(.serialized) struct JobsSlurmCLITests {
    /// A sandbox with the test sshd added as `cluster`, a Slurm host; nil when there is no cluster.
    static func cluster(_ name: String = #function, extra: [String] = [], identity: String? = nil) throws -> (Sandbox, TestSlurm)? {
        guard let slurm = try TestSlurm.shared(), let sshd = try TestSSHD.shared() else { return nil }
        let box = try Sandbox(name)
        try FileManager.default.createDirectory(atPath: box.remoteHome + "/bin", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: box.remoteHome + "/bin/ferry", withDestinationPath: TestFerry.binary)
        let add = try TestFerry.run(["hosts", "add", "cluster", "\(sshd.user)@\(sshd.host):\(sshd.port)", "--identity", identity ?? sshd.clientKey,
                                     "--host-key", sshd.hostKeyFingerprint, "--ferry-home", box.remoteHome, "--slurm"] + extra, sandbox: box)
        #expect(add.status == 0, "\(add.stderr)")
        return (box, slurm)
    }

    /// Slurm's id of a ferry job, from its status on the login node.
    static func slurmID(_ box: Sandbox, _ id: String) -> String? {
        guard let data = FileManager.default.contents(atPath: box.remoteJob(id).status),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return nil }
        return object["scheduler_job_id"] as? String
    }

    /// A shell job end to end: submitted, followed to its end (exit 0), `--gpus 1` visible as
    /// CUDA_VISIBLE_DEVICES, status from the scheduler, fetch; a failing one ends with 1 and its code.
    @Test func shellJobRunsFollowsAndFetches() async throws {
        guard let (box, _) = try Self.cluster() else { return }
        defer { box.remove() }
        try box.write("job.sh", """
        echo "gpus=$CUDA_VISIBLE_DEVICES restart=$FERRY_RESTART_COUNT slurm=${SLURM_JOB_ID:-none}"
        mkdir -p "$FERRY_OUTPUT/m"; echo w > "$FERRY_OUTPUT/m/weights.bin"

        """)
        let launched = try await ferryOffPool(["launch", "--host", "cluster", "--gpus", "1", "--", "sh", "job.sh"], sandbox: box)
        #expect(launched.status == 0, "\(launched.stdout)\n\(launched.stderr)")
        #expect(launched.stdout.contains("gpus=0 restart=0 slurm="), "\(launched.stdout)")
        #expect(!launched.stdout.contains("slurm=none"))
        #expect(launched.stdout.contains("started on"), "the start is marked in the log: \(launched.stdout)")
        let id = try #require(Registry(home: box.home).jobs().first?.id)
        let status = try TestFerry.run(["status", id], sandbox: box)
        #expect(status.status == 0)
        #expect(status.stdout.contains("succeeded") && status.stdout.contains("Slurm job "), "\(status.stdout)")
        let fetched = try TestFerry.run(["fetch", id, "--what", "all", "--dest", box.root + "/out"], sandbox: box)
        #expect(fetched.status == 0, "\(fetched.stderr)")
        #expect(fileText(box.root + "/out/m/weights.bin") == "w\n")

        let failing = try await ferryOffPool(["launch", "--host", "cluster", "--name", "failing", "--", "sh", "-c", "echo failing now; exit 3"], sandbox: box)
        #expect(failing.status == 1, "\(failing.stdout)\n\(failing.stderr)")
        #expect(failing.stdout.contains("failing now"))
        #expect(failing.stderr.contains("failed (exit 3)"), "\(failing.stderr)")
    }

    /// What Slurm refuses at submission comes back in its words, and nothing is left behind; options
    /// ferry owns are refused when the host is added.
    @Test func refusalsComeBackWithSlurmsReason() throws {
        guard let (box, slurm) = try Self.cluster() else { return }
        defer { box.remove() }
        let tooMany = try TestFerry.run(["launch", "--host", "cluster", "--gpus", "3", "--", "true"], sandbox: box)
        #expect(tooMany.status == 1, "\(tooMany.stderr)")
        #expect(tooMany.stderr.contains("Slurm on") && tooMany.stderr.contains("Requested node configuration is not available"), "\(tooMany.stderr)")
        let noPartition = try TestFerry.run(["launch", "--host", "cluster", "--partition", "nosuch", "--", "true"], sandbox: box)
        #expect(noPartition.status == 1)
        #expect(noPartition.stderr.lowercased().contains("invalid partition"), "\(noPartition.stderr)")
        // Nothing half-submitted: no job folder on the login node, nothing in the queue.
        let jobs = (try? FileManager.default.contentsOfDirectory(atPath: box.remoteHome + "/jobs")) ?? []
        #expect(jobs.isEmpty, "\(jobs)")
        #expect(try slurm.run(["squeue", "-h", "-n", "true"]).stdout.isEmpty)

        let owned = try TestFerry.run(["hosts", "add", "c2", "me@h", "--slurm", "--sbatch-arg=--output=x.log"], sandbox: box)
        #expect(owned.status == 2)
        #expect(owned.stderr.contains("ferry sends the job's output into its log"), "\(owned.stderr)")
        let plain = try TestFerry.run(["launch", "--partition", "gpu", "--", "true"], sandbox: box)
        #expect(plain.status == 2)
        #expect(plain.stderr.contains("not a Slurm host"), "\(plain.stderr)")
    }

    /// A job waits PENDING (with Slurm's reason) while the GPUs are taken; `ls` shows both; a
    /// pending job is cancelled at once, a running one by TERM (launch/logs -f: 75).
    @Test func pendingWhileBusyThenCancel() async throws {
        guard let (box, slurm) = try Self.cluster() else { return }
        defer { box.remove() }
        let holder = try TestFerry.run(["launch", "--host", "cluster", "--detach", "--json", "--gpus", "2", "--name", "holder", "--",
                                        "sh", "-c", "echo holding; sleep 300"], sandbox: box)
        let a = try TestFerry.jobID(launched: holder)
        #expect(try await eventually(30) { try TestFerry.run(["status", a], sandbox: box).stdout.contains("running on") })
        let waiter = try TestFerry.run(["launch", "--host", "cluster", "--detach", "--json", "--gpus", "1", "--name", "waiter", "--", "true"], sandbox: box)
        let b = try TestFerry.jobID(launched: waiter)
        // Slurm gives its reason once the scheduler has looked at the job (at once, or within a second).
        var lastSeen = ""
        #expect(try await eventually(20) {
            lastSeen = try TestFerry.run(["status", b], sandbox: box).stdout
            return lastSeen.contains("pending (")
        }, "\(lastSeen)")
        let ls = try TestFerry.run(["ls"], sandbox: box)
        #expect(ls.stdout.contains("pending (") && ls.stdout.contains("running on"), "\(ls.stdout)")

        let cancelB = try TestFerry.run(["cancel", b], sandbox: box)
        #expect(cancelB.status == 0, "\(cancelB.stderr)")
        #expect(try TestFerry.run(["status", b], sandbox: box).stdout.contains("cancelled"))
        let sidA = try #require(Self.slurmID(box, a))
        // `ferry ssh JOBID` runs inside the job's allocation on its node (srun --jobid --overlap).
        let inside = try TestFerry.run(["ssh", a, "--", "echo inside $SLURM_JOB_ID"], sandbox: box)
        #expect(inside.status == 0 && inside.stdout.contains("inside \(sidA)"), "\(inside.stdout)\n\(inside.stderr)")
        let cancelA = try TestFerry.run(["cancel", a, "--grace", "5"], sandbox: box)
        #expect(cancelA.status == 0, "\(cancelA.stderr)")
        let follow = try await ferryOffPool(["logs", "-f", a], sandbox: box)
        #expect(follow.status == 75, "\(follow.stdout)\n\(follow.stderr)")
        #expect(follow.stderr.contains("cancelled"))
        #expect(try await eventually(20) { try slurm.run(["squeue", "-h", "-j", sidA]).stdout.isEmpty })
    }
}

/// Preemption and time limits on the test cluster.
extension JobsSlurmCLITests {
    static let trainConfig = """
    {
      "name": "tiny", "n_gpu": 0, "seed": 0,
      "arch": {"type": "MLP", "args": {"hidden": [64], "num_classes": 10}},
      "data_loader": {"type": "FashionMnistDataLoader",
        "args": {"data_dir": "/usr/share/datasets/fashion-mnist", "batch_size": 32, "shuffle": true,
                 "validation_split": 0.25, "num_workers": 1, "limit": 2000}},
      "optimizer": {"type": "Adam", "args": {"lr": 0.001}},
      "loss": "cross_entropy", "metrics": ["accuracy"],
      "trainer": {"epochs": 1, "save_dir": "saved/", "save_period": 1, "verbosity": 1, "monitor": "max val_accuracy",
                  "early_stop": 0, "tensorboard": false, "save_last": true, "log_every_n_steps": 1}
    }
    """

    /// A train job gets Slurm's USR2 (as at preemption): it finishes its step, writes last/ and
    /// exits 75; the script requeues it; the restart continues with `--resume auto` in the same
    /// log, and the finished model equals an unbroken run's, byte for byte.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") || TestPaths.isCI))
    func trainJobPreemptedRequeuesAndResumes() async throws {
        guard let (box, slurm) = try Self.cluster() else { return }
        defer { box.remove() }
        try box.write("tiny.json", Self.trainConfig)
        let whole = try await ferryOffPool(["train", "tiny.json", "--run-id", "whole"], sandbox: box)
        #expect(whole.status == 0, "\(whole.stderr)")

        let launched = try TestFerry.run(["launch", "--host", "cluster", "--detach", "--json", "tiny.json"], sandbox: box)
        let id = try TestFerry.jobID(launched: launched)
        let paths = box.remoteJob(id)
        let steps = { fileText(paths.events).components(separatedBy: "\"event\":\"step\"").count - 1 }
        #expect(await eventually(120) { steps() >= 5 }, "\(fileText(paths.log))")
        let sid = try #require(Self.slurmID(box, id))
        #expect(try slurm.run(["scancel", "--signal=USR2", "--batch", sid]).status == 0)
        #expect(await eventually(60) { fileText(paths.log).contains("requeueing for restart 1") }, "\(fileText(paths.log))")
        #expect(steps() < 47, "it stopped mid-epoch (\(steps()) steps)")
        // The requeued job waits ~2 minutes for its BeginTime; start it now.
        #expect(try await eventually(30) { try slurm.job(sid)["JobState"] == "PENDING" })
        // Not within the second of the requeue: slurmd refuses a credential issued in the second its
        // predecessor was revoked ("Job credential revoked").
        try await Task.sleep(nanoseconds: 2_000_000_000)
        #expect(try slurm.run(["scontrol", "update", "JobId=\(sid)", "StartTime=now"]).status == 0)

        let follow = try await ferryOffPool(["logs", "-f", "--since-start", id], sandbox: box)
        #expect(follow.status == 0, "\(follow.stdout)\n\(follow.stderr)")
        #expect(follow.stdout.contains("restart 1 of job \(id)") && follow.stdout.contains("continuing with: --resume auto"), "\(follow.stdout)")
        let status = try TestFerry.run(["status", id], sandbox: box)
        #expect(status.stdout.contains("succeeded") && status.stdout.contains("restarts: 1"), "\(status.stdout)")

        let runs = try FileManager.default.contentsOfDirectory(atPath: paths.output + "/tiny")
        #expect(runs.count == 1, "one run folder across the restart: \(runs)")
        let resumed = try Data(contentsOf: URL(fileURLWithPath: "\(paths.output)/tiny/\(runs.first ?? "?")/checkpoints/last/model.safetensors"))
        let unbroken = try Data(contentsOf: URL(fileURLWithPath: box.project + "/saved/tiny/whole/checkpoints/last/model.safetensors"))
        #expect(resumed == unbroken, "the resumed run's model differs from an unbroken run's")
    }
}

extension JobsSlurmCLITests {
    /// A command job that stops with 75 at USR2 is requeued only with --requeue and under
    /// --max-restarts; otherwise it ends PREEMPTED (resumable), and `logs -f` says 75.
    @Test func commandJobsRequeueOnlyWhenAskedAndUnderTheLimit() async throws {
        guard let (box, slurm) = try Self.cluster() else { return }
        defer { box.remove() }
        try box.write("work.sh", """
        trap 'echo "stopping at USR2"; exit 75' TERM
        mkdir -p "$FERRY_OUTPUT"; echo working
        while :; do date > "$FERRY_OUTPUT/progress"; sleep 0.2; done

        """)
        for (flags, why) in [([String](), "a command job is requeued only when launched with --requeue"),
                             (["--requeue", "--max-restarts", "0"], "it was restarted 0 times already (--max-restarts 0)")] {
            let launched = try TestFerry.run(["launch", "--host", "cluster", "--detach", "--json"] + flags + ["--", "sh", "work.sh"], sandbox: box)
            let id = try TestFerry.jobID(launched: launched)
            let paths = box.remoteJob(id)
            #expect(await eventually(30) { fileText(paths.log).contains("working") }, "\(fileText(paths.log))")
            try await Task.sleep(nanoseconds: 500_000_000)
            let sid = try #require(Self.slurmID(box, id))
            #expect(try slurm.run(["scancel", "--signal=USR2", "--batch", sid]).status == 0)
            let follow = try await ferryOffPool(["logs", "-f", "--since-start", id], sandbox: box)
            #expect(follow.status == 75, "\(flags): \(follow.stdout)\n\(follow.stderr)")
            #expect(follow.stdout.contains("not requeued: \(why)"), "\(flags): \(follow.stdout)")
            #expect(follow.stderr.contains("preempted"), "\(flags): \(follow.stderr)")
        }
    }
}

extension JobsSlurmCLITests {
    /// A sweep on the cluster is one job array (`--array=0-1%1` with --max-parallel 1): each run its
    /// own folder, log and state (`ARRAY_i`), both succeed, `status SWEEP` tables them.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") || TestPaths.isCI))
    func aSweepOnTheCluster() async throws {
        guard let (box, _) = try Self.cluster() else { return }
        defer { box.remove() }
        try box.write("tiny.json", Self.trainConfig)
        // Refused at submission: no run of it is left behind (the first runs' folders went too).
        let refused = try TestFerry.run(["launch", "--host", "cluster", "--gpus", "3", "--sweep", "optimizer.args.lr=1e-3,3e-4", "tiny.json"], sandbox: box)
        #expect(refused.status == 1 && refused.stderr.contains("Requested node configuration is not available"), "\(refused.stderr)")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: box.remoteHome + "/jobs")) ?? []).isEmpty)
        let launched = try await ferryOffPool(["launch", "--host", "cluster", "--sweep", "optimizer.args.lr=1e-3,3e-4", "--max-parallel", "1", "tiny.json"], sandbox: box)
        try #require(launched.status == 0, "\(launched.stderr)")
        let line = try #require(launched.stderr.split(separator: "\n").first { $0.hasPrefix("sweep ") }, "\(launched.stderr)")
        let sweep = String(line.dropFirst(6).prefix { $0 != ":" })
        var table = ""
        #expect(try await eventually(180) {
            table = try TestFerry.run(["status", sweep], sandbox: box).stdout
            return table.components(separatedBy: "succeeded").count - 1 == 2
        }, "\(table)")
        #expect(table.contains("optimizer.args.lr=3e-4") && table.contains("BEST max val_accuracy"), "\(table)")
        // The best monitored value of each run (the config's `max val_accuracy`), the best run marked.
        let json = try TestFerry.run(["status", sweep, "--json"], sandbox: box)
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]], "\(json.stdout)")
        let bests = rows.compactMap { $0["best"] as? Double }
        #expect(bests.count == 2 && rows.allSatisfy { $0["monitor"] as? String == "max val_accuracy" }, "\(json.stdout)")
        let marked = rows.filter { $0["best_run"] as? Bool == true || $0["bestRun"] as? Bool == true }
        #expect(marked.count == 1 && (marked.first?["best"] as? Double) == bests.max(), "\(json.stdout)")
        #expect(table.split(separator: "\n").filter { $0.contains(" * ") }.count == 1, "\(table)")
        let first = try #require(Self.slurmID(box, sweep + "-0")), second = try #require(Self.slurmID(box, sweep + "-1"))
        #expect(first.hasSuffix("_0") && second == first.dropLast(2) + "_1", "one array: \(first) \(second)")
        #expect(fileText(box.remoteJob(sweep + "-1").log).contains("started on"))
    }
}

/// A time limit the job does not heed: Slurm ends it as TIMEOUT, shown as such, `logs -f` 75.
/// Its own suite (not serialized with the others): it holds one CPU for about 80 s.
@Suite struct JobsSlurmTimeLimitCLITests {
    @Test func aJobOverItsTimeLimitEndsAsTimeout() async throws {
        guard let (box, _) = try JobsSlurmCLITests.cluster() else { return }
        defer { box.remove() }
        let launched = try await ferryOffPool(["launch", "--host", "cluster", "--time", "1", "--name", "stubborn", "--",
                                          "sh", "-c", "trap '' TERM USR2; echo ignoring; sleep 300"], sandbox: box)
        #expect(launched.status == 75, "\(launched.stdout)\n\(launched.stderr)")
        #expect(launched.stderr.contains("under 5 minutes"), "the warning: \(launched.stderr)")
        #expect(launched.stderr.contains("timeout"), "\(launched.stderr)")
        let id = try #require(Registry(home: box.home).jobs().first?.id)
        #expect(try TestFerry.run(["status", id], sandbox: box).stdout.contains("timeout"))
    }
}

/// One authentication per command (login nodes behind 2FA prompt once): the test's own client key,
/// authorized on the test sshd, whose log (LogLevel VERBOSE) says "Accepted publickey … SHA256:…"
/// once per authentication — counted apart from the other suites' connections.
extension JobsSlurmCLITests {
    /// A fresh key authorized on the shared test sshd, and its fingerprint.
    static func ownKey(_ box: Sandbox, sshd: TestSSHD) throws -> (path: String, fingerprint: String) {
        let key = box.root + "/own_ed25519"
        let made = try runProcess("/usr/bin/env", ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ferry-auth-count", "-f", key])
        try #require(made.status == 0, "\(made.stderr)")
        let listed = try runProcess("/usr/bin/env", ["ssh-keygen", "-l", "-E", "sha256", "-f", key + ".pub"]).stdout
        let fingerprint = try #require(listed.split(separator: " ").dropFirst().first.map(String.init))
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: sshd.directory + "/authorized_keys"))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(fileText(key + ".pub").utf8))
        try handle.close()
        return (key, fingerprint)
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") || TestPaths.isCI))
    func oneAuthenticationPerCommand() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let keys = try Sandbox("own-key")
        defer { keys.remove() }
        let (key, fingerprint) = try Self.ownKey(keys, sshd: sshd)
        guard let (box, slurm) = try Self.cluster(identity: key) else { return }
        defer { box.remove() }
        let plain = try TestFerry.run(["hosts", "add", "plain", "\(sshd.user)@\(sshd.host):\(sshd.port)", "--identity", key,
                                       "--host-key", sshd.hostKeyFingerprint, "--ferry-home", box.remoteHome], sandbox: box)
        try #require(plain.status == 0, "\(plain.stderr)")
        try box.write("tiny.json", Self.trainConfig)
        let log = sshd.directory + "/sshd.log"
        func authentications() -> Int {
            // sshd -E ends its lines with \r\n: one Character, which is not "\n".
            fileText(log).split(whereSeparator: \.isNewline).filter { $0.contains("Accepted publickey") && $0.contains(fingerprint) }.count
        }
        // Commands run on the connections this key opened ("Starting session: command … port P"):
        // each would start the login shell and its rc files once more.
        func sessions() -> Int {
            let lines = fileText(log).split(whereSeparator: \.isNewline)
            func port(_ line: Substring) -> Substring? {
                guard let r = line.range(of: " port ") else { return nil }
                return line[r.upperBound...].prefix { $0.isNumber }
            }
            let ports = Set(lines.filter { $0.contains("Accepted publickey") && $0.contains(fingerprint) }.compactMap(port))
            return lines.filter { $0.contains("Starting session: command") && port($0).map(ports.contains) == true }.count
        }
        var counts: [String: Int] = [:]
        var commands: [String: Int] = [:]
        var trace: [String] = []
        func counted(_ what: String, _ arguments: [String]) async throws -> (status: Int32, stdout: String, stderr: String) {
            let before = authentications(), commandsBefore = sessions()
            let result = try await ferryOffPool(arguments, sandbox: box)
            counts[what] = authentications() - before
            commands[what] = sessions() - commandsBefore
            // (Its stderr too: a second command on one connection is a reconnect, which says why there.)
            trace.append("\(what): \(before)→\(authentications()), commands \(commandsBefore)→\(sessions()), of \(fileText(log).count) bytes; stderr: \(result.stderr.suffix(400))")
            return result
        }

        let launched = try await counted("launch", ["launch", "--host", "cluster", "--name", "once", "--",
                                                    "sh", "-c", "mkdir -p \"$FERRY_OUTPUT\"; echo kept > \"$FERRY_OUTPUT/f.txt\"; echo done"])
        #expect(launched.status == 0 && launched.stdout.contains("done"), "\(launched.stdout)\n\(launched.stderr)")
        let id = try #require(Registry(home: box.home).jobs().first { $0.name == "once" }?.id)
        let status = try await counted("status", ["status", id])
        #expect(status.status == 0 && status.stdout.contains("succeeded"), "\(status.stdout)")
        let fetched = try await counted("fetch", ["fetch", id, "--what", "all", "--dest", box.root + "/out"])
        #expect(fetched.status == 0 && fileText(box.root + "/out/f.txt") == "kept\n", "\(fetched.stderr)")
        let logs = try await counted("logs", ["logs", id])
        #expect(logs.status == 0 && logs.stdout.contains("done"), "\(logs.stdout)\n\(logs.stderr)")

        var sweeps: [String: String] = [:]
        for host in ["cluster", "plain"] {
            let swept = try await counted("sweep on \(host)", ["launch", "--host", host, "--sweep", "optimizer.args.lr=1e-3,3e-4,1e-4"]
                                          + (host == "cluster" ? ["--max-parallel", "1"] : []) + ["tiny.json"])
            try #require(swept.status == 0, "\(host): \(swept.stderr)")
            let line = try #require(swept.stderr.split(separator: "\n").first { $0.hasPrefix("sweep ") }, "\(swept.stderr)")
            sweeps[host] = String(line.dropFirst(6).prefix { $0 != ":" })
            #expect(swept.stderr.contains("3 runs on \(host)"), "\(swept.stderr)")
        }
        let table = try await counted("status SWEEP", ["status", try #require(sweeps["cluster"])])
        #expect(table.stdout.components(separatedBy: sweeps["cluster"]! + "-").count - 1 == 3, "\(table.stdout)")
        // Done: stop the sweeps' runs (the plain host's three train at once), the first cancel counted.
        if let array = Self.slurmID(box, sweeps["cluster"]! + "-0")?.split(separator: "_").first { _ = try slurm.run(["scancel", String(array)]) }
        let cancelled = try await counted("cancel", ["cancel", sweeps["plain"]! + "-0", "--grace", "5"])
        #expect(cancelled.status == 0, "\(cancelled.stderr)")
        for index in 1..<3 { _ = try TestFerry.run(["cancel", sweeps["plain"]! + "-\(index)", "--grace", "5"], sandbox: box) }
        #expect(counts == ["launch": 1, "status": 1, "fetch": 1, "logs": 1, "sweep on cluster": 1, "sweep on plain": 1, "status SWEEP": 1, "cancel": 1],
                "\(trace)")
        // One remote command each: the probe's, whose agent then serves the requests (a launch that
        // follows a queued job's log past its first round asks again on commands of their own).
        for what in ["status", "fetch", "logs", "sweep on plain", "status SWEEP", "cancel"] {
            #expect(commands[what] == 1, "\(what): \(trace)")
        }
        print("jobs: remote commands per ferry command: \(commands.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))")
    }

    /// The engine check runs on the compute node at the job's start: a GPU train job on a node where
    /// the engine cannot reach CUDA (these machines have no libcuda) fails there, before training,
    /// with the reason in its log and in `ferry status`, and is not requeued.
    @Test(.enabled(if: (FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") || TestPaths.isCI)
                   && dlopen("libcuda.so.1", RTLD_NOW) == nil))
    func aGPUTrainJobOnANodeWithoutCUDAFailsAtStart() async throws {
        guard let (box, slurm) = try Self.cluster() else { return }
        defer { box.remove() }
        try box.write("tiny.json", Self.trainConfig)
        let launched = try await ferryOffPool(["launch", "--host", "cluster", "--gpus", "1", "tiny.json"], sandbox: box)
        #expect(launched.status == 1, "\(launched.stdout)\n\(launched.stderr)")
        #expect(launched.stdout.contains("ferry: engine check failed on node ") && launched.stdout.contains("cannot use CUDA"), "\(launched.stdout)")
        #expect(launched.stderr.contains("failed (engine check failed at job start, nothing ran: on node "), "\(launched.stderr)")
        let id = try #require(Registry(home: box.home).jobs().first?.id)
        let status = try TestFerry.run(["status", id], sandbox: box)
        #expect(status.status == 0 && status.stdout.contains("engine check failed at job start") && status.stdout.contains("asks for 1 GPU"), "\(status.stdout)")
        #expect(!FileManager.default.fileExists(atPath: box.remoteJob(id).events), "the trainer never started")
        let logs = try TestFerry.run(["logs", id], sandbox: box)
        #expect(logs.stdout.contains("engine check failed") && !logs.stdout.contains("requeueing"), "\(logs.stdout)")
        let sid = try #require(Self.slurmID(box, id))
        #expect(try slurm.run(["squeue", "-h", "-j", sid]).stdout.isEmpty, "not requeued")
    }
}

/// With accounting (FERRY_TEST_SLURM_ACCOUNTING=1: slurmdbd and MariaDB; test.sh's last round): a
/// finished job's state comes from sacct once squeue and scontrol forgot it (MinJobAge=2 there),
/// even with the batch script's exit file gone — without sacct such a job would be lost.
@Suite(.serialized) struct JobsSlurmAccountingCLITests {
    @Test(.enabled(if: ProcessInfo.processInfo.environment["FERRY_TEST_SLURM_ACCOUNTING"] == "1",
                   "the test cluster has no slurmdbd: FERRY_TEST_SLURM_ACCOUNTING=1 scripts/test-slurm.sh start (scripts/test.sh's last round)"))
    func finishedJobsComeFromSacct() async throws {
        guard let (box, slurm) = try JobsSlurmCLITests.cluster() else { return }
        defer { box.remove() }
        var ids: [String: String] = [:]
        for (name, command) in [("completes", "echo fine"), ("fails", "echo failing; exit 3"), ("cancelled", "echo waiting; sleep 300")] {
            let launched = try TestFerry.run(["launch", "--host", "cluster", "--detach", "--json", "--name", name, "--", "sh", "-c", command], sandbox: box)
            ids[name] = try TestFerry.jobID(launched: launched)
        }
        let sids = try ids.mapValues { try #require(JobsSlurmCLITests.slurmID(box, $0)) }
        #expect(await eventually(30) { fileText(box.remoteJob(ids["cancelled"]!).log).contains("waiting") })
        // Cancelled by Slurm itself (an administrator), not through ferry: only the scheduler knows.
        #expect(try slurm.run(["scancel", sids["cancelled"]!]).status == 0)
        // Slurm forgets them (the next purge after MinJobAge); nothing asked ferry meanwhile.
        #expect(try await eventually(90) { try sids.values.allSatisfy { try slurm.run(["scontrol", "show", "job", $0]).status != 0 } }, "scontrol still knows them")
        for sid in sids.values { #expect(try slurm.run(["squeue", "-h", "-j", sid]).stdout.isEmpty) }
        for id in ids.values {
            // No final state was written while Slurm still knew the job: the next read decides.
            let raw = fileText(box.remoteJob(id).status)
            #expect(raw.contains("\"pending\"") || raw.contains("\"running\""), "\(raw)")
            try? FileManager.default.removeItem(atPath: box.remoteJob(id).directory + "/slurm-exit.json")
        }

        let completed = try TestFerry.run(["status", ids["completes"]!], sandbox: box).stdout
        #expect(completed.contains("succeeded"), "\(completed)")
        let failed = try TestFerry.run(["status", ids["fails"]!], sandbox: box).stdout
        #expect(failed.contains("failed (exit 3)"), "sacct's ExitCode 3:0: \(failed)")
        let cancelled = try TestFerry.run(["status", ids["cancelled"]!], sandbox: box).stdout
        #expect(cancelled.contains("cancelled") && cancelled.contains("cancelled by Slurm"), "\(cancelled)")
        let follow = try await ferryOffPool(["logs", "-f", ids["fails"]!], sandbox: box)
        #expect(follow.status == 1 && follow.stderr.contains("failed (exit 3)"), "\(follow.stderr)")
    }
}
