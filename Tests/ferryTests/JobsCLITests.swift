import FerryTestSupport
import Foundation
import System
@testable import Jobs
import JobsTestSupport
import Testing

/// The commands as a person types them, run as processes of the built `ferry`.
@Suite struct JobsCLITests {
    /// `ferry logs ID | head -1`: a reader that goes away ends ferry quietly with 141 (it trapped
    /// inside Foundation's FileHandle.write before, SIGILL).
    @Test func aClosedStdoutEndsQuietlyWith141() async throws {
        let box = try Sandbox(); defer { box.remove() }
        try box.write("many.sh", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); echo \"line $i\"; done\n")
        let launched = try TestFerry.run(["launch", "--json", "--", "sh", "many.sh"], sandbox: box)
        let id = try TestFerry.jobID(launched: launched)
        #expect(await eventually(60) { fileText(box.localJob(id).status).contains("\"succeeded\"") })
        let env = TestFerry.environment(box)
        var fds: [Int32] = [-1, -1]
        #expect(pipe(&fds) == 0)
        let pid = try Spawn.start([TestFerry.binary, "logs", id], environment: env, stdout: .fd(fds[1]), stderr: .null, directory: box.project)
        close(fds[1])
        var one = [UInt8](repeating: 0, count: 16)
        _ = read(fds[0], &one, one.count)
        close(fds[0])   // the reader goes away after 16 bytes
        let status = await Task.detached { Spawn.decodeWaitStatus(Spawn.wait(pid)).code }.value
        #expect(status == 141, "ferry logs ended with \(status) (SIGILL is 132, SIGTRAP 133)")
    }

    /// `ferry logs` of a 100 MB log stays under 64 MB of memory, catching up from the host and
    /// printing from the mirror alike (it held the whole log, 150 MB and more, before).
    @Test func logsOfALargeLogRunInBoundedMemory() async throws {
        let box = try Sandbox(); defer { box.remove() }
        try box.write("big.sh", #"yes "a line of the log, sixty-four bytes long ......................." | head -c 104857600"# + "\n")
        let launched = try TestFerry.run(["launch", "--detach", "--json", "--", "sh", "big.sh"], sandbox: box)
        let id = try TestFerry.jobID(launched: launched)
        #expect(await eventually(60) { fileText(box.localJob(id).status).contains("\"succeeded\"") })
        let env = TestFerry.environment(box)
        for round in ["catching up", "from the mirror"] {
            let output = box.root + "/printed.log"
            // Measured by a small python parent (RUSAGE_CHILDREN's max RSS): wait4 from this test
            // process would also count the test's own memory, which the child shared until exec.
            let measure = """
            import resource, subprocess, sys
            with open(sys.argv[3], "wb") as out:
                code = subprocess.run([sys.argv[1], "logs", sys.argv[2]], stdout=out, stderr=subprocess.DEVNULL).returncode
            print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
            """
            let run = try runProcess("/usr/bin/env", ["python3", "-c", measure, TestFerry.binary, id, output], environment: env,
                                     currentDirectory: URL(fileURLWithPath: box.project))
            let fields = run.stdout.split(separator: " ").map { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1 }
            let (status, maxRSS) = (Int32(fields.first ?? -1), fields.count > 1 ? fields[1] : 0)
            #expect(status == 0, "\(round): \(run.stdout) \(run.stderr)")
            #expect(maxRSS > 8 * 1024, "\(round): its memory was not read (\(maxRSS) KiB)")
            #expect(maxRSS < 64 * 1024, "\(round): ferry logs used \(maxRSS / 1024) MiB")
            #expect(POSIX.fileSize(output) == 104_857_600, "\(round)")
        }
    }

    /// Secrets stay out of argv and output: `--env NAME` takes the value from ferry's environment,
    /// `status --json` masks values, and `--host local` jobs do not inherit ferry's own passwords.
    @Test func secretsStayOutOfArgvAndOutput() throws {
        let box = try Sandbox(); defer { box.remove() }
        let secrets = ["HF_TOKEN": "hf_s3cr3t", "FERRY_SSH_PASSWORD": "hunter2", "FERRY_HOST_PASSWORD": "hunter3"]
        let launched = try TestFerry.run(["launch", "--env", "HF_TOKEN", "--env", "PLAIN=1", "--",
                                          "sh", "-c", "echo token=$HF_TOKEN plain=$PLAIN ssh=${FERRY_SSH_PASSWORD:-none} host=${FERRY_HOST_PASSWORD:-none}"],
                                         sandbox: box, extraEnvironment: secrets)
        #expect(launched.status == 0, "\(launched.stderr)")
        #expect(launched.stdout.contains("token=hf_s3cr3t plain=1 ssh=none host=none"), "\(launched.stdout)")
        let id = try #require(Registry(home: box.home).jobs().first?.id)
        let status = try TestFerry.run(["status", id, "--json"], sandbox: box)
        #expect(status.status == 0)
        #expect(status.stdout.contains("HF_TOKEN") && status.stdout.contains("********"))
        #expect(!status.stdout.contains("hf_s3cr3t"))
        // A name that is not set is refused before anything starts (exit 2), with what to do.
        let unset = try TestFerry.run(["launch", "--env", "FERRY_TEST_UNSET_VARIABLE", "--", "true"], sandbox: box)
        #expect(unset.status == 2)
        #expect(unset.stderr.contains("FERRY_TEST_UNSET_VARIABLE is not set in this shell"))
    }

    /// 10 `ferry logs -f --since-start` of one job at once, each starting at its own moment while
    /// the job writes 4.5 MB: every one prints the host's log byte for byte (each takes the mirror's
    /// end once; taking it twice skipped what other followers wrote in between — 1 or 2 of 13 lost
    /// tens of kilobytes before, by hand with the previous build).
    @Test func manyFollowersEachPrintTheWholeLog() async throws {
        let box = try Sandbox(); defer { box.remove() }
        try box.write("lines.sh", """
        b=0
        while [ $b -lt 400 ]; do
          b=$((b+1)); i=0
          while [ $i -lt 200 ]; do i=$((i+1)); echo "burst $b line $i ......................................"; done
          sleep 0.02
        done

        """)
        let launched = try TestFerry.run(["launch", "--detach", "--json", "--", "sh", "lines.sh"], sandbox: box)
        #expect(launched.status == 0, "\(launched.stderr)")
        let id = try TestFerry.jobID(launched: launched)
        let env = TestFerry.environment(box)
        var seed: UInt64 = 42
        var followers: [(pid: pid_t, output: String)] = []
        for k in 0..<10 {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            try await Task.sleep(nanoseconds: (seed >> 33) % 300_000_000)   // spread over ~4 s
            let output = box.root + "/follower-\(k).log"
            let pid = try Spawn.start([TestFerry.binary, "logs", "-f", "--since-start", id], environment: env,
                                      stdout: .file(output, append: false), stderr: .null, directory: box.project)
            followers.append((pid, output))
        }
        for follower in followers { _ = await Task.detached { Spawn.wait(follower.pid) }.value }
        let hostLog = try Data(contentsOf: URL(fileURLWithPath: box.localJob(id).log))
        #expect(String(decoding: hostLog.suffix(64), as: UTF8.self).hasSuffix("burst 400 line 200 ......................................\n"))
        for (k, follower) in followers.enumerated() {
            let printed = try Data(contentsOf: URL(fileURLWithPath: follower.output))
            #expect(printed == hostLog, "follower \(k) printed \(printed.count) bytes, the host has \(hostLog.count)")
        }
    }

    /// Killing the client while it follows does not touch the job; `ferry logs` later brings the
    /// rest of the log and it matches the host's file byte for byte.
    @Test func clientKilledMidFollowJobStillCompletes() async throws {
        let box = try Sandbox(); defer { box.remove() }
        // The job holds after tick 3 until the test has killed the client (a `go` file in its
        // output), so a slow machine cannot let the client see the end before it dies.
        try box.write("slow.sh", """
        i=0; while [ $i -lt 25 ]; do
          i=$((i+1)); echo "tick $i"; sleep 0.1
          if [ $i -eq 3 ]; then n=0; while [ ! -e "$FERRY_OUTPUT/go" ] && [ $n -lt 600 ]; do n=$((n+1)); sleep 0.1; done; fi
        done; echo done

        """)
        let env = TestFerry.environment(box)
        let client = try BackgroundProcess([TestFerry.binary, "launch", "--host", "local", "--", "sh", "slow.sh"], environment: env,
                                           directory: box.project)
        let registry = Registry(home: box.home)
        var id = ""
        #expect(await eventually(30) {
            guard let job = registry.jobs().first else { return false }
            id = job.id
            return fileText(registry.mirrorPath(job.id)).contains("tick 2\n")
        })
        client.kill()
        let paths = box.localJob(id)
        try Data().write(to: URL(fileURLWithPath: paths.output + "/go"))
        #expect(await eventually(30) { fileText(paths.status).contains("\"succeeded\"") })
        let mirroredBefore = registry.mirrorPath(id)
        #expect(!fileText(mirroredBefore).contains("done"), "the killed client could not have mirrored the end")
        let logs = try TestFerry.run(["logs", id], sandbox: box)
        #expect(logs.status == 0)
        #expect(logs.stdout == fileText(paths.log))
        #expect(logs.stdout.hasSuffix("tick 25\ndone\n"))
        #expect(fileText(registry.mirrorPath(id)) == fileText(paths.log))
        let status = try TestFerry.run(["status", id, "--json"], sandbox: box)
        #expect(status.status == 0)
        #expect(status.stdout.contains("\"succeeded\""))
        // With the job's folder gone from the host, the mirror still answers.
        try FileManager.default.removeItem(atPath: paths.directory)
        let offline = try TestFerry.run(["logs", id], sandbox: box)
        #expect(offline.stdout == fileText(registry.mirrorPath(id)))
    }

    @Test func launchJSONFollowAndExitCodes() throws {
        let box = try Sandbox(); defer { box.remove() }
        try box.write("fail.sh", "echo failing; exit 4\n")
        let launched = try TestFerry.run(["launch", "--json", "--", "sh", "-c", "echo hi"], sandbox: box)
        #expect(launched.status == 0, "\(launched.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(launched.stdout.utf8)) as? [String: Any])
        #expect(object["host"] as? String == "local")
        #expect(object["uploaded_bytes"] as? Int == 21)   // fail.sh, the one file
        #expect(object["reused_bytes"] as? Int == 0)
        let id = try #require(object["id"] as? String)
        let follow = try TestFerry.run(["logs", "-f", "--since-start", id], sandbox: box)
        #expect(follow.status == 0)
        #expect(follow.stdout == "hi\n")
        let failed = try TestFerry.run(["launch", "--", "sh", "fail.sh"], sandbox: box)
        #expect(failed.status == 1)
        #expect(failed.stdout == "failing\n")
        #expect(failed.stderr.contains("failed (exit 4)"))
        let ls = try TestFerry.run(["ls", "--json"], sandbox: box)
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(ls.stdout.utf8)) as? [[String: Any]])
        #expect(Set(rows.compactMap { $0["state"] as? String }) == ["succeeded", "failed"])
    }

    @Test(arguments: [
        (["launch", "--name", "x;rm -rf ~", "--", "true"], "not a usable job name"),
        (["launch", "--name", "../up", "--", "true"], "not a usable job name"),
        (["launch", "--host", "nowhere", "--", "true"], "no host named"),
        (["logs", "a/../b"], "is not a job id"),
        (["status", "$(reboot)"], "is not a job id"),
        (["fetch", "nope-1", "--what", "../../etc"], "refusing path"),
        (["cancel", "nope-20990101-000000-0000"], "no job"),
        (["hosts", "add", "x y", "me@h"], "not a usable host name"),
        (["hosts", "add", "h1", "me@h;reboot"], "not a host address"),
        (["hosts", "forget", "ghost"], "no host named"),
        (["launch", "missing.json"], "no such file: missing.json"),
    ])
    func badInputIsAClearMessage(_ arguments: [String], _ message: String) throws {
        let box = try Sandbox(); defer { box.remove() }
        let result = try TestFerry.run(arguments, sandbox: box)
        #expect(result.status == 2, "\(arguments): status \(result.status), \(result.stderr)")
        #expect(result.stderr.contains(message), "\(arguments): \(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: box.home + "/jobs"), "\(arguments) created a job")
    }

    @Test func hostsAddListForget() throws {
        let box = try Sandbox(); defer { box.remove() }
        let add = try TestFerry.run(["hosts", "add", "gpu1", "me@10.0.0.5:2222", "--host-key", "SHA256:abcdef", "--jump", "bastion",
                                     "--ferry-home", "/scratch/me/.ferry"], sandbox: box)
        #expect(add.status == 0, "\(add.stderr)")
        let ls = try TestFerry.run(["hosts", "ls", "--json"], sandbox: box)
        let hosts = try #require(try JSONSerialization.jsonObject(with: Data(ls.stdout.utf8)) as? [[String: Any]])
        #expect(hosts.map { $0["name"] as? String } == ["local", "gpu1"])
        #expect(hosts[1]["fingerprint"] as? String == "SHA256:abcdef")
        #expect(hosts[1]["proxy_jump"] as? String == "bastion")
        try "[10.0.0.5]:2222 ssh-ed25519 AAAA\n".write(toFile: box.home + "/known_hosts", atomically: true, encoding: .utf8)
        #expect(try TestFerry.run(["hosts", "add", "gpu1", "me@other"], sandbox: box).status == 2)
        #expect(try TestFerry.run(["hosts", "forget", "gpu1"], sandbox: box).status == 0)
        #expect(fileText(box.home + "/known_hosts").isEmpty)
        #expect(try TestFerry.run(["hosts", "ls"], sandbox: box).stdout.hasPrefix("local"))
    }
}

/// The commands against the test sshd, reached through a host record that pins its key.
@Suite struct JobsCLIOverSSHTests {
    @Test func launchLogsSSHAndFetchWithAPinnedHostKey() throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        try FileManager.default.createDirectory(atPath: box.remoteHome + "/bin", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: box.remoteHome + "/bin/ferry", withDestinationPath: TestFerry.binary)
        let add = try TestFerry.run(["hosts", "add", "box", "\(sshd.user)@\(sshd.host):\(sshd.port)", "--identity", sshd.clientKey,
                                     "--host-key", sshd.hostKeyFingerprint, "--ferry-home", box.remoteHome], sandbox: box)
        #expect(add.status == 0, "\(add.stderr)")
        try box.write("job.sh", "echo \"hello from $(hostname)\"; mkdir -p $FERRY_OUTPUT/m; echo w > $FERRY_OUTPUT/m/weights.bin\n"
                      + "i=0; while [ $i -lt 30 ]; do echo $i > $FERRY_OUTPUT/m/f$i.txt; i=$((i+1)); done\n")
        let launched = try TestFerry.run(["launch", "--host", "box", "--", "sh", "job.sh"], sandbox: box)
        #expect(launched.status == 0, "\(launched.stderr)")
        #expect(launched.stdout.hasPrefix("hello from "))
        // The pinned key was recorded in ferry's own known_hosts (the only place keys are kept).
        #expect(fileText(box.home + "/known_hosts").contains("[\(sshd.host)]:\(sshd.port)"))
        let id = try #require(Registry(home: box.home).jobs().first?.id)
        let shell = try TestFerry.run(["ssh", id, "--", "pwd"], sandbox: box)
        #expect(shell.status == 0, "\(shell.stderr)")
        #expect(shell.stdout == box.remoteJob(id).work + "\n")
        let fetched = try TestFerry.run(["fetch", id, "--what", "all", "--dest", box.root + "/out"], sandbox: box)
        #expect(fetched.status == 0, "\(fetched.stderr)")
        #expect(fileText(box.root + "/out/m/weights.bin") == "w\n" && fileText(box.root + "/out/m/f29.txt") == "29\n")
        // 31 files: the first 20 named, the rest counted.
        #expect(fetched.stderr.components(separatedBy: "(sha256 ok)").count - 1 == 20, "\(fetched.stderr)")
        #expect(fetched.stderr.contains("… and 11 more (0 of all 31 unchanged; --json lists each)"), "\(fetched.stderr)")
        let ls = try TestFerry.run(["ls"], sandbox: box)
        #expect(ls.stdout.contains(id) && ls.stdout.contains("box"))
        // A wrong pin is refused before anything runs.
        #expect(try TestFerry.run(["hosts", "add", "liar", "\(sshd.user)@\(sshd.host):\(sshd.port)", "--identity", sshd.clientKey,
                                   "--host-key", "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "--ferry-home", box.remoteHome], sandbox: box).status == 0)
        let refused = try TestFerry.run(["launch", "--host", "liar", "--", "true"], sandbox: box)
        #expect(refused.status == 255)   // a connection that failed, as ssh says it
        #expect(refused.stderr.contains("SHA256:AAAA"), "\(refused.stderr)")
    }
}

/// `ferry launch` of a training config.
@Suite struct JobsTrainCLITests {
    /// A config that fails `ferry train --check` stops `ferry launch` before anything is sent.
    @Test func invalidConfigIsRefusedBeforeUpload() throws {
        let box = try Sandbox(); defer { box.remove() }
        try box.write("bad.json", TrainJobConfig.text(limit: 100, epochs: 1).replacingOccurrences(of: "\"Adam\"", with: "\"Adamm\""))
        try box.writeRandom("data.bin", bytes: 1 << 16)
        let result = try TestFerry.run(["launch", "bad.json"], sandbox: box)
        #expect(result.status == 2)
        #expect(result.stderr.contains("did not pass `ferry train --check`"))
        #expect(result.stderr.contains("optimizer.type"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: box.home + "/blobs"), "something was uploaded")
        #expect(!FileManager.default.fileExists(atPath: box.home + "/jobs"))
        try box.write("sub/inner.json", TrainJobConfig.text(limit: 100, epochs: 1))
        let outside = try TestFerry.run(["launch", "--workdir", box.project + "/sub", box.project + "/bad.json"], sandbox: box)
        #expect(outside.status == 2)
        #expect(outside.stderr.contains("not inside the working directory"))
    }

    /// On a CPU without AVX2 the engine's checker cannot run: launch checks nothing here (no
    /// `ferry train --check` child, which would stop at the CPU too), says the host checks, and
    /// the host's preflight speaks for the host's own CPU.
    @Test func anOldCPULeavesTheCheckToTheHost() throws {
        let box = try Sandbox(); defer { box.remove() }
        try box.write("tiny.json", TrainJobConfig.text(limit: 100, epochs: 1))
        try box.write("cpuinfo", "processor\t: 0\nflags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 popcnt\n")
        let result = try TestFerry.run(["launch", "--host", "local", "tiny.json"], sandbox: box,
                                       extraEnvironment: ["FERRY_CPUINFO": box.project + "/cpuinfo"])
        #expect(result.stderr.contains("this CPU lacks AVX2 and FMA, which ferry's engine needs: tiny.json is checked on the host when the job starts"),
                "\(result.stderr)")
        #expect(!result.stderr.contains("ferry train --check"), "\(result.stderr)")
        // The local host is this CPU as the test plays it: its preflight refuses the engine job.
        #expect(result.status != 0)
        #expect(result.stderr.contains("lacks avx2"), "\(result.stderr)")
    }

    /// The check counts the model's bytes without building it, and the host's preflight refuses a
    /// model its memory cannot train before any file is sent.
    @Test func aModelTooLargeForTheHostStopsAtPreflight() throws {
        let box = try Sandbox(); defer { box.remove() }
        // MLP 784 → 30,000,000 → 10: about 2.4e10 float32 parameters, 94 GB; four copies to train.
        try box.write("huge.json", TrainJobConfig.text(limit: 100, epochs: 1, hidden: 30_000_000))
        let started = Date()
        let result = try TestFerry.run(["launch", "--host", "local", "huge.json"], sandbox: box)
        #expect(result.status != 0)
        #expect(result.stderr.contains("of parameters need about"), "\(result.stderr)")
        #expect(result.stderr.contains("of memory"), "\(result.stderr)")
        #expect(Date().timeIntervalSince(started) < 30, "the model was built, not counted")
        #expect(!FileManager.default.fileExists(atPath: box.home + "/jobs"), "a job was started")
    }
}
