import Foundation
import Jobs
import SSH
import Synchronization

/// The runner's figures: how soon a log line written on the host reaches the client (p50 < 100 ms
/// on loopback), how soon a cached job (nothing to upload) shows its first line after `launch`
/// (< 1 s), and how much a second launch of an unchanged folder sends. References in the same run:
/// OpenSSH's `ssh host tail -f` following the same file, and `ssh host sh job.sh` to its first line.
/// Over the test sshd when its variables are set (`eval "$(scripts/test-sshd.sh env)"`), and on
/// `--host local` always. Needs the ferry binary beside this one (`swift build -c release`).
enum JobsBenchmark {
    static func run(lines: Int = 150, launches: Int = 7) {
        guard let ferry = ferryBinary() else {
            print("jobs: no ferry binary beside the benchmark — run `swift build -c release --product ferry` first (or set FERRY_BENCH_FERRY)")
            return
        }
        let version = capture(ferry, ["--version"]).trimmingCharacters(in: .whitespacesAndNewlines)
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-bench-jobs-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let project = root + "/project", home = root + "/home/.ferry", remote = root + "/remote/.ferry"
        try? FileManager.default.createDirectory(atPath: project, withIntermediateDirectories: true)
        try? FileManager.default.createDirectory(atPath: remote + "/bin", withIntermediateDirectories: true)
        try? FileManager.default.createSymbolicLink(atPath: remote + "/bin/ferry", withDestinationPath: ferry)
        var localEnv = ProcessInfo.processInfo.environment
        localEnv["FERRY_HOME"] = home
        var setup = JobsContext(home: home, version: version, agentBinary: ferry, localEnvironment: localEnv)
        let e = ProcessInfo.processInfo.environment
        var server: (target: String, key: String, known: String, port: Int)?
        if let host = e["FERRY_TEST_SSH_HOST"], let port = e["FERRY_TEST_SSH_PORT"].flatMap(Int.init), let user = e["FERRY_TEST_SSH_USER"],
           let key = e["FERRY_TEST_SSH_KEY"], let known = e["FERRY_TEST_SSH_KNOWN_HOSTS"] {
            server = ("\(user)@\(host):\(port)", key, known, port)
            setup.sshEnvironment = SSHEnvironment(home: root + "/home", ferryHome: home, localUser: user)
            setup.knownHostsFile = known
            try? setup.registry.addHost(HostRecord(name: "sshd", target: "\(user)@\(host):\(port)", identityFile: key, ferryHome: remote))
        }
        // A line with the time it was written (ns), every 40 ms.
        let job = "i=0; while [ $i -lt \(lines) ]; do i=$((i+1)); echo \"t $(date +%s%N) $i\"; sleep 0.04; done\n"
        try? job.write(toFile: project + "/stamp.sh", atomically: true, encoding: .utf8)
        try? "echo first line\n".write(toFile: project + "/quick.sh", atomically: true, encoding: .utf8)

        let context = setup
        let sshd = server
        print("jobs: ferry \(version), \(lines) timestamped lines 40 ms apart; cached launches: median of \(launches)")
        for host in ["local"] + (sshd == nil ? [] : ["sshd"]) {
            let label = host == "local" ? "--host local" : "over SSH (loopback)"
            // 1. Log line latency, with `ssh host tail -f` on the same file as the reference.
            let ferryLatencies = Mutex<[Double]>([])
            let tailLatencies = Mutex<[Double]>([])
            blocking {
                let (result, client) = try await Launcher(context: context).launch(
                    LaunchRequest(host: host, name: "stamp", workingDirectory: project, kind: "command", command: ["sh", "stamp.sh"]))
                let jobDir = result.directory
                var tail: Process?
                if let sshd, host == "sshd" {
                    tail = startTail(sshd: sshd, file: jobDir + "/output.log") { line in
                        if let ms = latency(line) { tailLatencies.withLock { $0.append(ms) } }
                    }
                }
                let splitter = LineSplitter()
                _ = try await JobsClient(context: context).follower(result.id, host: try context.registry.host(host))
                    .resume(from: 0, first: client, onData: { bytes in
                        for line in splitter.feed(bytes) { if let ms = latency(line) { ferryLatencies.withLock { $0.append(ms) } } }
                    })
                // SIGKILL: a child Foundation started from a dispatch thread may have SIGTERM blocked.
                if let tail { kill(tail.processIdentifier, SIGKILL); tail.waitUntilExit() }
            }
            let f = ferryLatencies.withLock { $0 }.sorted()
            let t = tailLatencies.withLock { $0 }.sorted()
            if f.isEmpty { print("  \(label): no lines arrived"); continue }
            var line = "  \(label): log line latency p50 \(fmt(pct(f, 0.5), 1)) ms, p90 \(fmt(pct(f, 0.9), 1)) ms, max \(fmt(f.last ?? 0, 1)) ms (\(f.count) lines)"
            if !t.isEmpty { line += "; ssh tail -f p50 \(fmt(pct(t, 0.5), 1)) ms → ratio \(fmt(pct(f, 0.5) / max(pct(t, 0.5), 0.001), 2))" }
            print(line)

            // 2. Launch → first line of a job whose files the host already has. The first launch
            // sends 8 MB of new data (its bytes against the second's are the dedupe figure).
            var data = Data(count: 8 << 20)
            let seed = UInt64.random(in: 1...UInt64.max)
            data.withUnsafeMutableBytes { raw in
                var x = seed
                for i in 0..<raw.count { x ^= x << 13; x ^= x >> 7; x ^= x << 17; raw[i] = UInt8(truncatingIfNeeded: x) }
            }
            try? data.write(to: URL(fileURLWithPath: project + "/data.bin"))
            var firstLine: [Double] = []
            var sshFirst: [Double] = []
            var bytes: [(Int64, Int64)] = []
            for trial in 0...launches {
                let started = DispatchTime.now().uptimeNanoseconds
                let elapsed = Mutex<Double>(0)
                let sent = Mutex<(Int64, Int64)>((0, 0))
                let phases = Mutex<[String]>([])
                @Sendable func stamp(_ what: String) {
                    let ms = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e6
                    phases.withLock { $0.append("\(what) \(Int(ms))") }
                }
                blocking {
                    let (result, client) = try await Launcher(context: context).launch(
                        LaunchRequest(host: host, name: "quick", workingDirectory: project, kind: "command", command: ["sh", "quick.sh"])) { event in
                        switch event {
                        case .packaged: stamp("packaged")
                        case .connected: stamp("agent")
                        case .preflight: stamp("preflight")
                        case .started: stamp("started")
                        case .uploading, .recordedHost: break
                        }
                    }
                    sent.withLock { $0 = (result.uploadedBytes, client.transport.counters.sent) }
                    let got = FirstByte()
                    _ = try await JobsClient(context: context).follower(result.id, host: try context.registry.host(host))
                        .resume(from: 0, first: client, onData: { _ in
                            if got.mark() { elapsed.withLock { $0 = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e6 } }
                        })
                }
                stamp("first line")
                if ProcessInfo.processInfo.environment["FERRY_BENCH_JOBS_PHASES"] != nil {
                    print("    launch phases (ms): " + phases.withLock { $0 }.joined(separator: ", "))
                }
                bytes.append(sent.withLock { $0 })
                if trial > 0 { firstLine.append(elapsed.withLock { $0 }) }   // the first launch uploads; the rest are cached
                if let sshd, host == "sshd", trial > 0 {
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    _ = capture("/usr/bin/ssh", sshOptions(sshd) + [sshd.target.components(separatedBy: ":")[0], "cd \(project) && sh quick.sh"])
                    sshFirst.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
                }
            }
            var launchLine = "  \(label): cached launch → first log line median \(fmt(pct(firstLine.sorted(), 0.5), 0)) ms"
            if !sshFirst.isEmpty { launchLine += "; plain `ssh host sh job.sh` \(fmt(pct(sshFirst.sorted(), 0.5), 0)) ms → ratio \(fmt(pct(firstLine.sorted(), 0.5) / pct(sshFirst.sorted(), 0.5), 2))" }
            print(launchLine)
            if let first = bytes.first, let second = bytes.dropFirst().first {
                print("  \(label): first launch sent \(first.1) bytes (\(first.0) of new files), the unchanged second \(second.1) (\(fmt(100 * Double(second.1) / Double(max(first.1, 1)), 3)) %)")
            }
        }
    }

    static func ferryBinary() -> String? {
        if let explicit = ProcessInfo.processInfo.environment["FERRY_BENCH_FERRY"] { return explicit }
        let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("ferry").path
        if FileManager.default.isExecutableFile(atPath: beside) { return beside }
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            let dir = URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("ferry").path
            if FileManager.default.isExecutableFile(atPath: dir) { return dir }
        }
        return nil
    }

    static func sshOptions(_ sshd: (target: String, key: String, known: String, port: Int)) -> [String] {
        ["-p", String(sshd.port), "-o", "BatchMode=yes", "-o", "UserKnownHostsFile=\(sshd.known)", "-o", "GlobalKnownHostsFile=/dev/null",
         "-o", "IdentitiesOnly=yes", "-i", sshd.key, "-o", "LogLevel=ERROR"]
    }

    /// `ssh host tail -c +1 -f FILE`, each line to `onLine` as it arrives.
    static func startTail(sshd: (target: String, key: String, known: String, port: Int), file: String,
                          onLine: @escaping @Sendable (String) -> Void) -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/ssh")
        p.arguments = sshOptions(sshd) + [sshd.target.components(separatedBy: ":")[0], "tail -c +1 -F \(file) 2>/dev/null"]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardInput = FileHandle.nullDevice
        let splitter = LineSplitter()
        pipe.fileHandleForReading.readabilityHandler = { h in
            let d = h.availableData
            if d.isEmpty { h.readabilityHandler = nil; return }
            for line in splitter.feed(d) { onLine(line) }
        }
        try? p.run()
        return p
    }

    /// ms between the line's stamp and now.
    static func latency(_ line: String) -> Double? {
        let parts = line.split(separator: " ")
        guard parts.count >= 2, parts[0] == "t", let ns = Double(parts[1]) else { return nil }
        return (Date().timeIntervalSince1970 * 1e9 - ns) / 1e6
    }

    static func pct(_ sorted: [Double], _ p: Double) -> Double {
        sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
    }

    static func capture(_ path: String, _ args: [String]) -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        p.standardInput = FileHandle.nullDevice
        do { try p.run() } catch { return "" }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    static func blocking(_ body: @escaping @Sendable () async throws -> Void) { runBlocking(failurePrefix: "jobs: failed", body) }
}

/// Whole lines out of a byte stream.
final class LineSplitter: @unchecked Sendable {
    private let lock = NSLock()
    private var pending = Data()
    func feed(_ data: Data) -> [String] {
        lock.lock(); defer { lock.unlock() }
        pending.append(data)
        var lines: [String] = []
        while let nl = pending.firstIndex(of: 0x0A) {
            lines.append(String(decoding: pending[pending.startIndex..<nl], as: UTF8.self))
            pending.removeSubrange(pending.startIndex...nl)
        }
        return lines
    }
}

final class FirstByte: @unchecked Sendable {
    private let lock = NSLock()
    private var seen = false
    /// True the first time only.
    func mark() -> Bool { lock.lock(); defer { lock.unlock() }; if seen { return false }; seen = true; return true }
}
