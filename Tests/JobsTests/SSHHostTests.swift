import FerryTestSupport
import Foundation
@testable import Jobs
import JobsTestSupport
import SSH
import Testing

extension Sandbox {
    /// A context that reaches the test sshd with its key and known_hosts, from a private HOME.
    func sshContext(_ sshd: TestSSHD) -> JobsContext {
        var context = self.context()
        context.sshEnvironment = SSHEnvironment(home: root + "/home", ferryHome: home, localUser: "nobody-local")
        context.knownHostsFile = sshd.knownHosts
        return context
    }

    /// Registers the test sshd as host `name`, its ferry home private to this test; with
    /// `preinstalled`, that home's bin/ferry is the test build (no upload).
    func addSSHHost(_ sshd: TestSSHD, name: String = "box", preinstalled: Bool = true) throws {
        try Registry(home: home).addHost(HostRecord(name: name, target: "\(sshd.user)@\(sshd.host):\(sshd.port)",
                                                    identityFile: sshd.clientKey, ferryHome: remoteHome))
        if preinstalled {
            try FileManager.default.createDirectory(atPath: remoteHome + "/bin", withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: remoteHome + "/bin/ferry", withDestinationPath: TestFerry.binary)
        }
    }
}

/// The same lifecycle over a real OpenSSH sshd (scripts/test-sshd.sh).
@Suite struct SSHHostTests {
    @Test func shellJobLifecycleOverSSH() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        try box.addSSHHost(sshd)
        try await Scenarios.shellJob(box, host: "box", hostJobs: box.remoteJob, context: box.sshContext(sshd))
    }

    @Test func secondLaunchSendsUnderOnePercentOverSSH() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        try box.addSSHHost(sshd)
        let (first, second) = try await Scenarios.secondLaunchReuses(box, host: "box", context: box.sshContext(sshd))
        print("jobs: second launch sent \(second) bytes over SSH, first \(first) (\(String(format: "%.3f", 100 * Double(second) / Double(first))) %)")
    }

    /// The supervisor was started at the preflight and waited for its job (a standby): the job's
    /// parent is `ferry agent standby`.
    @Test func theSupervisorIsStartedAheadAtThePreflight() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        try box.addSSHHost(sshd)
        try box.write("run.sh", "tr '\\000' ' ' < /proc/$PPID/cmdline; echo\n")
        let context = box.sshContext(sshd)
        let (result, client) = try await Launcher(context: context).launch(
            LaunchRequest(host: "box", name: "standby", workingDirectory: box.project, kind: "command", command: ["sh", "run.sh"]))
        let sink = ByteSink()
        let follower = JobsClient(context: context).follower(result.id, host: try context.registry.host("box"))
        #expect(try await follower.resume(from: 0, first: client, onData: { sink.append($0) })?.state == .succeeded)
        #expect(sink.text.contains("agent --home \(box.remoteHome) standby"), "\(sink.text)")
    }

    /// A standby nobody hands a job to ends with its input; one that is gone is not handed one.
    @Test func aStandbyWithoutAJobEnds() async throws {
        let box = try Sandbox(); defer { box.remove() }
        var standby: StandbySupervisor? = StandbySupervisor()
        standby?.prepare(binary: TestFerry.binary, home: box.root + "/host")
        let pid = standby?.processID ?? 0
        #expect(pid > 0)
        standby = nil
        var status: Int32 = -1
        #expect(await eventually(20) { waitpid(pid, &status, WNOHANG) == pid }, "the standby still runs")
        #expect(status == 0)

        let second = StandbySupervisor()
        second.prepare(binary: TestFerry.binary, home: box.root + "/host")
        let other = second.processID
        #expect(other > 0 && kill(other, SIGKILL) == 0)
        #expect(await eventually(20) { waitpid(other, &status, WNOHANG) == other })
        #expect(!second.hand("gone-20260101-000000-0000"))
        #expect(second.processID == 0)
    }

    @Test func cancelOverSSH() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        try box.addSSHHost(sshd)
        try await Scenarios.cancelStubbornJob(box, host: "box", hostJobs: box.remoteJob, context: box.sshContext(sshd))
    }

    @Test func fetchInterruptedThenResumedOverSSH() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        try box.addSSHHost(sshd)
        try await Scenarios.fetchResumes(box, host: "box", hostJobs: box.remoteJob, context: box.sshContext(sshd))
    }

    @Test func badInputOverSSH() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        try box.addSSHHost(sshd)
        try await Scenarios.badInput(box, host: "box", hostHome: box.remoteHome, context: box.sshContext(sshd))
    }

    /// A host without ferry (none on PATH, an empty FERRY_HOME) gets this build's binary, once.
    @Test func installsItselfOnAHostWithoutFerry() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        try box.addSSHHost(sshd, preinstalled: false)
        let context = box.sshContext(sshd)
        let first = try await context.agent(hostNamed: "box", install: true)
        let installed = box.remoteHome + "/bin/ferry"
        #expect(first.hello.binary == installed)
        #expect(POSIX.fileSize(installed) == POSIX.fileSize(TestFerry.binary))
        #expect(FileManager.default.isExecutableFile(atPath: installed))
        #expect(first.transport.counters.sent >= POSIX.fileSize(TestFerry.binary) ?? 0)
        await first.close()
        let second = try await context.agent(hostNamed: "box")
        #expect(second.hello.binary == installed)
        #expect(second.transport.counters.sent < 10_000, "the second connection sent the binary again")
        await second.close()
        // An agent of another version is not used (and without an installer, not replaced).
        var other = context
        other.version = "0.0.0-other"
        await #expect(throws: JobsError.self) {
            _ = try await AgentSession.connect(try await other.connect(try other.registry.host("box")), host: "box",
                                              version: other.version, remoteHome: box.remoteHome, install: nil)
        }
    }

    /// The follower's SSH connection is killed 20 times while the job writes; the log that arrives
    /// (and the local mirror) is byte-identical to the host's file.
    /// The probe's channel serves the requests of a whole command: a refused request answers its
    /// error and the next ones still travel on it; a stream (the log) takes it last, and what
    /// follows opens a command of its own.
    @Test func oneServedChannelCarriesAllRequestsAndErrors() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        try box.addSSHHost(sshd)
        let context = box.sshContext(sshd)
        try box.write("run.sh", "echo served")
        let (result, launched) = try await Launcher(context: context).launch(
            LaunchRequest(host: "box", name: "served", workingDirectory: box.project, kind: "command", command: ["sh", "run.sh"], follow: false))
        // The probe, then preflight, blob_put and job_start on its channel.
        #expect(launched.transport.counters.commands == 1)
        await launched.close()

        let client = try await context.agent(hostNamed: "box")
        let missing = "served-20260101-000000-abcd"
        await #expect(throws: JobsError.unknownJob(missing)) { _ = try await client.status(missing) }
        #expect(try await client.status(result.id).spec.id == result.id)
        #expect(try await client.list().contains { $0.spec.id == result.id })
        #expect(client.transport.counters.commands == 1, "an error, a status and a list on the probe's channel")
        var text = ""
        for _ in 0..<50 {
            var round = ""
            let closing = try await client.logs(result.id, offset: 0, wait: 5) { frame in
                if case .data(_, let bytes) = frame { round += String(decoding: bytes, as: UTF8.self) }
            }
            text = round
            if case .end = closing { break }
        }
        #expect(text == "served\n")
        let afterLog = client.transport.counters.commands
        #expect(try await client.status(result.id).status.state == .succeeded)
        #expect(client.transport.counters.commands == afterLog + 1, "after a stream, a request opens a command of its own")
        await client.close()
    }

    @Test func followSurvivesTwentyDisconnects() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        try box.addSSHHost(sshd)
        let context = box.sshContext(sshd)
        // Half lines across writes, and a stop file the test drops once it has cut the connection enough.
        try box.write("chatty.sh", """
        i=0
        while [ ! -e "$FERRY_OUTPUT/stop" ] && [ $i -lt 20000 ]; do
          i=$((i+1)); printf 'line %06d half-' $i; sleep 0.005; printf 'done ..........................................\\n'
        done
        echo finished
        """)
        let (result, client) = try await Launcher(context: context).launch(
            LaunchRequest(host: "box", name: "chatty", workingDirectory: box.project, kind: "command", command: ["sh", "chatty.sh"]))
        await client.close()
        let sink = ByteSink()
        let disconnects = Counter()
        let follower = JobsClient(context: context).follower(result.id, host: try context.registry.host("box"))
        let following = Task {
            try await follower.resume(from: 0, onData: { sink.append($0) }, onEvent: { event in
                if case .disconnected = event { disconnects.add() }
            })
        }
        let listener = Int32(fileText(sshd.directory + "/sshd.pid").trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        // The agent process streaming the log: on this box's remote FERRY_HOME, serving the
        // follower's first connection, or a request of a reconnection (which skips the probe); the
        // job id and the request travel on stdin, not in argv.
        let markers = [box.remoteHome]
        var kills = 0
        var lastServer: Int32 = 0
        let deadline = Date().addingTimeInterval(120)
        while kills < 20 && Date() < deadline {
            let before = sink.value.count
            // Wait for a fresh connection that has delivered something, then cut it.
            guard await eventually(20, { sink.value.count > before && SessionKiller.server(serving: markers, listener: listener).map { $0 != lastServer } == true }),
                  let server = SessionKiller.server(serving: markers, listener: listener) else { break }
            lastServer = server
            SessionKiller.killChain(from: server, serving: markers)
            kills += 1
            try await Task.sleep(nanoseconds: UInt64.random(in: 20_000_000...150_000_000))
        }
        try Data().write(to: URL(fileURLWithPath: box.remoteJob(result.id).output + "/stop"))
        let status = try await following.value
        #expect(kills == 20)
        #expect(disconnects.value >= 20)
        #expect(status?.state == .succeeded)
        let hostLog = try Data(contentsOf: URL(fileURLWithPath: box.remoteJob(result.id).log))
        #expect(sink.value == hostLog, "received \(sink.value.count) bytes, the host has \(hostLog.count)")
        #expect(follower.mirror.read() == hostLog)
        #expect(String(decoding: hostLog, as: UTF8.self).hasSuffix("finished\n"))
        print("jobs: follow survived \(kills) forced disconnects (\(disconnects.value) seen); \(hostLog.count) bytes byte-identical")
    }
}

/// Finds and kills the sshd processes serving one connection (the chain from the listener's child
/// down to the command matching `markers`), so only this test's connection drops.
enum SessionKiller {
    static func commandLine(_ pid: Int32) -> String {
        (FileManager.default.contents(atPath: "/proc/\(pid)/cmdline")).map { String(decoding: $0, as: UTF8.self).replacingOccurrences(of: "\0", with: " ") } ?? ""
    }

    static func parent(_ pid: Int32) -> Int32? {
        guard let stat = FileManager.default.contents(atPath: "/proc/\(pid)/stat") else { return nil }
        let text = String(decoding: stat, as: UTF8.self)
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        return fields.count > 1 ? Int32(fields[1]) : nil
    }

    /// Agents answering requests (`serve` or `request`, never a supervisor) whose command line has every marker.
    static func commands(matching markers: [String]) -> [Int32] {
        let pids = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap(Int32.init)
        let verbs = [AgentProtocol.serveVerb, AgentProtocol.requestVerb]
        return pids.filter { pid in
            let line = commandLine(pid)
            return line.contains("agent") && verbs.contains { line.contains(" \($0)") } && markers.allSatisfy { line.contains($0) } && !line.contains("sh -c")
        }
    }

    /// The listener's child that serves the command matching `markers`.
    static func server(serving markers: [String], listener: Int32) -> Int32? {
        for pid in commands(matching: markers) {
            var current = pid
            while let up = parent(current), up > 1 {
                if up == listener { return current }
                current = up
            }
        }
        return nil
    }

    static func killChain(from server: Int32, serving markers: [String]) {
        for pid in commands(matching: markers) {
            var chain: [Int32] = [pid]
            var current = pid
            while let up = parent(current), up > 1, current != server { chain.append(up); current = up }
            if current == server { for p in chain { kill(p, SIGKILL) } }
        }
    }
}
