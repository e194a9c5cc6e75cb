import FerryTestSupport
import Foundation
import System
@testable import Jobs
import JobsTestSupport
import Testing

/// The lifecycle checks, written once and run against `--host local` and against the test sshd.
enum Scenarios {
    /// A shell job: launch, follow to the end, status, list, log byte-identical to the host's file.
    static func shellJob(_ box: Sandbox, host: String, hostJobs: (String) -> JobPaths, context given: JobsContext? = nil) async throws {
        try box.write("run.sh", """
        echo "start in $(pwd)"
        echo "job=$FERRY_JOB_ID gpus=${CUDA_VISIBLE_DEVICES:-none} secret=$SECRET"
        i=0; while [ $i -lt 20 ]; do i=$((i+1)); echo "line $i"; done
        echo "to stderr" >&2
        mkdir -p "$FERRY_OUTPUT/results" && echo 42 > "$FERRY_OUTPUT/results/answer.txt"
        printf 'no newline at the end'
        exit 0
        """)
        let context = given ?? box.context()
        var request = LaunchRequest(host: host, name: "shell", workingDirectory: box.project, kind: "command", command: ["sh", "run.sh"],
                                    environment: ["SECRET": "s3cr3t value"], gpus: "1,")   // an explicit list
        request.job.graceSeconds = 5
        let (result, client) = try await Launcher(context: context).launch(request)
        #expect(result.files == 1)
        #expect(result.host == host)
        let sink = ByteSink()
        let follower = JobsClient(context: context).follower(result.id, host: try context.registry.host(host))
        let status = try await follower.resume(from: 0, first: client, onData: { sink.append($0) })
        #expect(status?.state == .succeeded)
        #expect(status?.exitCode == 0)
        let hostLog = try Data(contentsOf: URL(fileURLWithPath: hostJobs(result.id).log))
        #expect(sink.value == hostLog)
        #expect(follower.mirror.read() == hostLog)
        let text = sink.text
        #expect(text.contains("start in \(hostJobs(result.id).work)"))
        #expect(text.contains("job=\(result.id) gpus=1 secret=s3cr3t value"))
        #expect(text.contains("line 20\nto stderr\n"))
        #expect(text.hasSuffix("no newline at the end"))
        // The secret went through the spec on stdin, not argv: it is in no process's command line
        // (checked in the spec file's mode instead, since the job is over).
        let specMode = try FileManager.default.attributesOfItem(atPath: hostJobs(result.id).spec)[.posixPermissions] as? Int
        #expect(specMode == 0o600)

        let jobs = JobsClient(context: context)
        let info = try await jobs.status(result.id)
        #expect(info.status.state == .succeeded)
        #expect(info.logBytes == Int64(hostLog.count))
        let listed = await jobs.list()
        #expect(listed.first { $0.host == host }?.jobs.contains { $0.spec.id == result.id } == true)
        #expect(try context.registry.job(result.id).status?.state == .succeeded)

        // Fetch the output home.
        let fetchClient = try await jobs.agent(for: result.id)
        let files = try await Fetcher(client: fetchClient).fetch(result.id, what: "all", into: box.root + "/fetched")
        await fetchClient.close()
        #expect(files.map(\.remotePath) == ["output/results/answer.txt"])
        #expect(fileText(box.root + "/fetched/results/answer.txt") == "42\n")
    }

    /// A second launch of an unchanged folder sends < 1 % of the first one's bytes.
    static func secondLaunchReuses(_ box: Sandbox, host: String, context given: JobsContext? = nil) async throws -> (first: Int64, second: Int64) {
        try box.writeRandom("data/blob1.bin", bytes: 3 << 20)
        try box.writeRandom("data/blob2.bin", bytes: 1 << 20)
        try box.write("train.sh", "ls data | wc -l\n")
        let context = given ?? box.context()
        let request = LaunchRequest(host: host, name: "dedupe", workingDirectory: box.project, kind: "command", command: ["sh", "train.sh"])
        let (first, c1) = try await Launcher(context: context).launch(request)
        let firstBytes = c1.transport.counters.sent
        await c1.close()
        let (second, c2) = try await Launcher(context: context).launch(request)
        let secondBytes = c2.transport.counters.sent
        await c2.close()
        #expect(first.uploadedBytes >= 4 << 20)
        #expect(second.uploadedBytes == 0)
        #expect(second.reusedBytes == first.uploadedBytes + first.reusedBytes)
        #expect(secondBytes * 100 < firstBytes, "second launch sent \(secondBytes) bytes, first \(firstBytes)")
        #expect(first.id != second.id)
        return (firstBytes, secondBytes)
    }

    /// Cancel: SIGTERM to the group; a job that ignores it is killed after the grace.
    static func cancelStubbornJob(_ box: Sandbox, host: String, hostJobs: (String) -> JobPaths, context given: JobsContext? = nil) async throws {
        try box.write("stubborn.sh", """
        trap 'echo "got TERM, ignoring it"' TERM
        ( trap '' TERM; sleep 300 ) &
        echo ready
        while true; do sleep 0.05; done
        """)
        let context = given ?? box.context()
        let request = LaunchRequest(host: host, name: "stubborn", workingDirectory: box.project, kind: "command", command: ["sh", "stubborn.sh"],
                                    graceSeconds: 600)
        let (result, client) = try await Launcher(context: context).launch(request)
        await client.close()
        let paths = hostJobs(result.id)
        #expect(await eventually { fileText(paths.log).contains("ready") })
        var pid: Int32 = 0
        #expect(await eventually {
            pid = (try? JSONCoding.decoder().decode(JobStatus.self, from: Data(contentsOf: URL(fileURLWithPath: paths.status))))?.pid ?? 0
            return pid > 0
        })
        let start = Date()
        let info = try await JobsClient(context: context).cancel(result.id, grace: 1, wait: true)
        let took = Date().timeIntervalSince(start)
        #expect(info.status.state == .cancelled)
        #expect(info.status.signal == "KILL")
        #expect(took >= 1.0, "SIGKILL came before the grace was over (\(took) s)")
        // The cancel's grace (1 s), not the spec's (600 s): the supervisor says which it used, and
        // the whole cancel stays far below the spec's grace even on a loaded 2-core machine.
        #expect(fileText(paths.supervisorLog).contains("SIGKILL in 1 s"), "\(fileText(paths.supervisorLog))")
        #expect(took < 120)
        #expect(fileText(paths.log).contains("got TERM, ignoring it"))
        // The whole group is gone, the background `sleep` that ignored SIGTERM included.
        #expect(await eventually(5) { kill(-pid, 0) != 0 })
        #expect(fileText(paths.supervisorLog).contains("SIGKILL"))
    }

    /// Cancel of a job that stops on SIGTERM (as `ferry train` does: writes last/, exits 75).
    static func cancelWellBehavedJob(_ box: Sandbox, host: String, hostJobs: (String) -> JobPaths, context given: JobsContext? = nil) async throws {
        try box.write("polite.sh", """
        trap 'mkdir -p "$FERRY_OUTPUT/ck/last"; echo weights > "$FERRY_OUTPUT/ck/last/model.bin"; echo "saved last"; exit 75' TERM
        echo '{"event":"start","time":1,"total_epochs":2,"start_epoch":1,"steps_per_epoch":10}' >> "$FERRY_EVENTS"
        echo running
        while true; do sleep 0.05; done
        """)
        let context = given ?? box.context()
        let request = LaunchRequest(host: host, name: "polite", workingDirectory: box.project, kind: "command", command: ["sh", "polite.sh"])
        let (result, client) = try await Launcher(context: context).launch(request)
        await client.close()
        #expect(await eventually { fileText(hostJobs(result.id).log).contains("running") })
        let info = try await JobsClient(context: context).cancel(result.id, grace: 20, wait: true)
        #expect(info.status.state == .cancelled)
        #expect(info.status.exitCode == 75)
        #expect(fileText(hostJobs(result.id).log).contains("saved last"))
        #expect(info.progress.totalEpochs == 2)
        let c = try await JobsClient(context: context).agent(for: result.id)
        let files = try await Fetcher(client: c).fetch(result.id, what: "last", into: box.root + "/got")
        await c.close()
        #expect(files.count == 1)
        #expect(fileText(box.root + "/got/ck/last/model.bin") == "weights\n")
    }

    /// A fetch cut off midway continues from its partial file and verifies the whole.
    static func fetchResumes(_ box: Sandbox, host: String, hostJobs: (String) -> JobPaths, context given: JobsContext? = nil) async throws {
        try box.write("make.sh", "head -c 48000000 /dev/urandom > \"$FERRY_OUTPUT/big.bin\"; echo made\n")
        let context = given ?? box.context()
        let request = LaunchRequest(host: host, name: "big", workingDirectory: box.project, kind: "command", command: ["sh", "make.sh"])
        let (result, client) = try await Launcher(context: context).launch(request)
        let follower = JobsClient(context: context).follower(result.id, host: try context.registry.host(host))
        #expect(try await follower.resume(from: 0, first: client, onData: { _ in })?.state == .succeeded)
        let dest = box.root + "/dest"
        let c1 = try await JobsClient(context: context).agent(for: result.id)
        let stop = TaskHandle()
        let task = Task {
            try await Fetcher(client: c1).fetch(result.id, what: "all", into: dest) { event in
                if case .file(_, let done, _) = event, done > 8_000_000 { stop.cancel() }
            }
        }
        stop.set(task)
        let first = await task.result
        await c1.close()
        #expect(throws: (any Error).self) { try first.get() }
        let partial = dest + "/big.bin" + partialSuffix
        let partialSize = POSIX.fileSize(partial) ?? 0
        #expect(partialSize > 0, "the interrupted fetch left no partial file")
        #expect(!FileManager.default.fileExists(atPath: dest + "/big.bin"))
        let c2 = try await JobsClient(context: context).agent(for: result.id)
        let files = try await Fetcher(client: c2).fetch(result.id, what: "all", into: dest)
        await c2.close()
        #expect(files.count == 1)
        #expect(files[0].resumedFrom > 0)
        #expect(files[0].transferredBytes == 48_000_000 - files[0].resumedFrom)
        #expect(try HashCache.hashFile(dest + "/big.bin") == HashCache.hashFile(hostJobs(result.id).output + "/big.bin"))
        #expect(!FileManager.default.fileExists(atPath: partial))
        // Again: nothing to send.
        let c3 = try await JobsClient(context: context).agent(for: result.id)
        let again = try await Fetcher(client: c3).fetch(result.id, what: "all", into: dest)
        await c3.close()
        #expect(again.allSatisfy { $0.unchanged })
    }

    /// Bad input is refused with a clear error, before anything is started.
    static func badInput(_ box: Sandbox, host: String, hostHome: String, context given: JobsContext? = nil) async throws {
        try box.write("ok.sh", "echo ok\n")
        let context = given ?? box.context()
        let launcher = Launcher(context: context)
        func request(name: String = "ok", paths: [String] = [], reserve: Int64 = 0) -> LaunchRequest {
            LaunchRequest(host: host, name: name, workingDirectory: box.project, kind: "command", command: ["sh", "ok.sh"],
                          hostPaths: paths, reserveBytes: reserve)
        }
        await #expect(throws: JobsError.invalidJobName("ok; rm -rf ~")) { try await launcher.launch(request(name: "ok; rm -rf ~")) }
        await #expect(throws: JobsError.unknownHost("nowhere", known: context.registry.hostNames())) {
            var r = request(); r.host = "nowhere"; _ = try await launcher.launch(r)
        }
        do {
            _ = try await launcher.launch(request(reserve: 1 << 60))
            Issue.record("a job that needs an exabyte started")
        } catch JobsError.notEnoughSpace(_, let needed, let free, _) {
            #expect(needed > free)
        }
        await #expect(throws: JobsError.missingOnHost(host: host, paths: ["/no/such/dataset-\(box.root.hashValue)"])) {
            try await launcher.launch(request(paths: ["/no/such/dataset-\(box.root.hashValue)"]))
        }
        await #expect(throws: JobsError.unknownJob("nope-20990101-000000-0000")) {
            try await JobsClient(context: context).status("nope-20990101-000000-0000")
        }
        // None of it started a job.
        let jobs = (try? FileManager.default.contentsOfDirectory(atPath: hostHome + "/jobs")) ?? []
        #expect(jobs.filter { $0.hasPrefix("ok-") }.isEmpty)
        #expect(context.registry.jobs().isEmpty)
    }
}
