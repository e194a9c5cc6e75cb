import Foundation
import SSH
import Synchronization

/// ferry's SSH client against OpenSSH measured in the same run on loopback, against the test sshd
/// (`eval "$(scripts/test-sshd.sh env)"` first). Each figure is the median of interleaved runs,
/// whole operations on both sides: scp/ssh processes from exec to exit, ferry from connect to close.
enum SSHBenchmark {
    struct Env {
        var host: String, port: Int, user: String, key: String, knownHosts: String
        var target: String { "\(user)@\(host):\(port)" }
        var sshOptions: [String] {
            ["-o", "BatchMode=yes", "-o", "UserKnownHostsFile=\(knownHosts)", "-o", "GlobalKnownHostsFile=/dev/null",
             "-o", "IdentitiesOnly=yes", "-i", key, "-o", "LogLevel=ERROR"]
        }
    }

    // FERRY_BENCH_SSH_PHASES=1 prints ferry's connect/exec/close times; FERRY_BENCH_SSH_VARIANTS=1
    // compares read-request sizes, pipeline depths and fsync for downloads.
    static func run(trials: Int = 7, megabytes: Int = 100) {
        let e = ProcessInfo.processInfo.environment
        guard let host = e["FERRY_TEST_SSH_HOST"], let port = e["FERRY_TEST_SSH_PORT"].flatMap(Int.init), let user = e["FERRY_TEST_SSH_USER"],
              let key = e["FERRY_TEST_SSH_KEY"], let known = e["FERRY_TEST_SSH_KNOWN_HOSTS"] else {
            print("ssh: no test sshd in the environment — run: scripts/test-sshd.sh start; eval \"$(scripts/test-sshd.sh env)\"")
            return
        }
        let env = Env(host: host, port: port, user: user, key: key, knownHosts: known)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-bench-ssh-\(getpid())").path
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = dir + "/source.bin"
        _ = shell("/bin/dd", ["if=/dev/urandom", "of=\(source)", "bs=1048576", "count=\(megabytes)", "status=none"])
        let bytes = Double(megabytes << 20)
        let options = SSHConnectOptions(identityFiles: [key], knownHostsFile: known, useAgent: false)

        if ProcessInfo.processInfo.environment["FERRY_BENCH_SSH_PHASES"] != nil {
            for _ in 0..<5 {
                blocking {
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    let s = try await SSHSession.connect(env.target, options: options)
                    let t1 = DispatchTime.now().uptimeNanoseconds
                    _ = try await s.run("true")
                    let t2 = DispatchTime.now().uptimeNanoseconds
                    await s.close()
                    let t3 = DispatchTime.now().uptimeNanoseconds
                    print("connect+auth \((t1 - t0) / 1_000_000) ms, run true \((t2 - t1) / 1_000_000) ms, close \((t3 - t2) / 1_000_000) ms")
                }
            }
            return
        }
        if ProcessInfo.processInfo.environment["FERRY_BENCH_SSH_VARIANTS"] != nil {
            for (size, depth, sync) in [(128 << 10, 32, true), (128 << 10, 32, false), (64 << 10, 64, false), (255 << 10, 16, false), (32 << 10, 64, false), (64 << 10, 16, false)] {
                let times = (0..<3).map { _ in time { blocking { let s = try await SSHSession.connect(env.target, options: options)
                    _ = try await s.openSFTP().download(source, to: dir + "/v.bin", options: SFTPTransferOptions(resume: false, verification: .none,
                        readRequestSize: size, requestsInFlight: depth, syncToDisk: sync))
                    await s.close() } } }
                print("download \(size >> 10) KiB x \(depth), fsync \(sync): \(fmt(bytes / median(times) / 1e6, 0)) MB/s")
            }
            return
        }
        print("ssh, loopback, \(megabytes) MB, median of \(trials) interleaved runs (OpenSSH \(opensshVersion()), libssh \(SSHSession.libraryVersion))")
        var t: [String: [Double]] = [:]
        func add(_ name: String, _ seconds: Double) { t[name, default: []].append(seconds) }
        for trial in 0..<(trials + 1) {
            let keep = trial > 0   // the first round warms caches and is dropped
            let scpDown = time { _ = shell("/usr/bin/scp", ["-q", "-P", String(port)] + env.sshOptions + ["\(user)@\(host):\(source)", dir + "/scp-down.bin"]) }
            // Like for like with scp: no digest, no fsync (scp does neither).
            let ferryDown = time { blocking { let s = try await SSHSession.connect(env.target, options: options)
                _ = try await s.openSFTP().download(source, to: dir + "/ferry-down.bin",
                                                   options: SFTPTransferOptions(resume: false, verification: .none, syncToDisk: false))
                await s.close() } }
            // ferry's defaults: fsync before the rename, sha256 compared with the remote's sha256sum.
            let ferryDownDefaults = time { blocking { let s = try await SSHSession.connect(env.target, options: options)
                _ = try await s.openSFTP().download(source, to: dir + "/ferry-down-defaults.bin", options: SFTPTransferOptions(resume: false))
                await s.close() } }
            let scpUp = time { _ = shell("/usr/bin/scp", ["-q", "-P", String(port)] + env.sshOptions + [source, "\(user)@\(host):\(dir)/scp-up.bin"]) }
            var upTimes: [SFTPUploadMethod: Double] = [:]
            for method in [SFTPUploadMethod.sftpWrite, .catChannel] {
                upTimes[method] = time { blocking { let s = try await SSHSession.connect(env.target, options: options)
                    _ = try await s.openSFTP().upload(source, to: dir + "/ferry-up.bin",
                                                      options: SFTPTransferOptions(resume: false, verification: .none, uploadMethod: method))
                    await s.close() } }
            }
            let sshTrue = time { _ = shell("/usr/bin/ssh", ["-p", String(port)] + env.sshOptions + ["\(user)@\(host)", "true"]) }
            let ferryTrue = time { blocking { let s = try await SSHSession.connect(env.target, options: options)
                _ = try await s.run("true"); await s.close() } }
            // What the remote side alone spends on `true` (session setup, the login shell's startup
            // files): both clients pay it, so it is also shown subtracted from both.
            let remoteBox = Mutex(0.0)
            blocking { let s = try await SSHSession.connect(env.target, options: options)
                let start = DispatchTime.now().uptimeNanoseconds
                _ = try await s.run("true")
                let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                remoteBox.withLock { $0 = seconds }
                await s.close() }
            let remoteOnly = remoteBox.withLock { $0 }
            if keep {
                add("scp down", scpDown); add("ferry down", ferryDown); add("ferry down defaults", ferryDownDefaults); add("scp up", scpUp)
                add("remote true", remoteOnly)
                add("ferry up sftp_write", upTimes[.sftpWrite]!); add("ferry up cat", upTimes[.catChannel]!)
                add("ssh true", sshTrue); add("ferry true", ferryTrue)
            }
        }
        // The cipher, measured once per candidate (download, median of 3).
        var cipherRows: [(String, Double)] = []
        for cipher in ["aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com", "aes256-ctr"] {
            var chosen = options
            chosen.ciphers = [cipher]
            let o = chosen
            let times = (0..<3).map { _ in time { blocking { let s = try await SSHSession.connect(env.target, options: o)
                _ = try await s.openSFTP().download(source, to: dir + "/cipher.bin", options: SFTPTransferOptions(resume: false, verification: .none))
                await s.close() } } }
            cipherRows.append((cipher, median(times)))
        }

        let m = t.mapValues(median)
        func mbps(_ s: Double) -> String { fmt(bytes / s / 1e6, 0) + " MB/s" }
        print(pad("", 26) + pad("ferry", 22) + pad("OpenSSH", 22) + "ratio (target)")
        let down = m["scp down"]! / m["ferry down"]!
        print(pad("download", 26) + pad("\(fmt(m["ferry down"]!, 3)) s \(mbps(m["ferry down"]!))", 22)
              + pad("\(fmt(m["scp down"]!, 3)) s \(mbps(m["scp down"]!))", 22) + "\(fmt(down))x speed (>= 1.5)")
        print(pad("download, ferry default", 26) + pad("\(fmt(m["ferry down defaults"]!, 3)) s \(mbps(m["ferry down defaults"]!))", 22)
              + pad("(+fsync, +sha256 check) ", 22) + "\(fmt(m["scp down"]! / m["ferry down defaults"]!))x speed")
        let bestUp = min(m["ferry up sftp_write"]!, m["ferry up cat"]!)
        for (name, key) in [("upload, sftp_write", "ferry up sftp_write"), ("upload, cat channel", "ferry up cat")] {
            print(pad(name, 26) + pad("\(fmt(m[key]!, 3)) s \(mbps(m[key]!))", 22)
                  + pad("\(fmt(m["scp up"]!, 3)) s \(mbps(m["scp up"]!))", 22) + "\(fmt(m["scp up"]! / m[key]!))x speed"
                  + (m[key]! == bestUp ? " (>= 1.0) <- faster" : ""))
        }
        print(pad("connect+auth+true", 26) + pad("\(fmt(m["ferry true"]! * 1000, 1)) ms", 22)
              + pad("\(fmt(m["ssh true"]! * 1000, 1)) ms", 22) + "\(fmt(m["ferry true"]! / m["ssh true"]!))x time (<= 0.5)")
        let remote = m["remote true"]!
        print(pad("  minus remote `true`", 26) + pad("\(fmt((m["ferry true"]! - remote) * 1000, 1)) ms", 22)
              + pad("\(fmt((m["ssh true"]! - remote) * 1000, 1)) ms", 22)
              + "\(fmt((m["ferry true"]! - remote) / (m["ssh true"]! - remote)))x time (remote side alone: \(fmt(remote * 1000, 1)) ms)")
        print("download by cipher (ferry, median of 3): " + cipherRows.map { "\($0.0) \(mbps($0.1))" }.joined(separator: ", "))
        print("default upload method in this build: \(SFTPUploadMethod.fastest == .catChannel ? "cat channel" : "sftp_write")")
    }

    static func median(_ xs: [Double]) -> Double { let s = xs.sorted(); return s[s.count / 2] }

    static func time(_ body: () -> Void) -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        body()
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }

    @discardableResult
    static func shell(_ path: String, _ args: [String]) -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        p.standardInput = FileHandle.nullDevice
        do { try p.run() } catch { print("  cannot run \(path): \(error)"); return -1 }
        p.waitUntilExit()
        if p.terminationStatus != 0 { print("  \(path) \(args.joined(separator: " ")) exited \(p.terminationStatus)") }
        return p.terminationStatus
    }

    static func opensshVersion() -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/ssh")
        p.arguments = ["-V"]
        let pipe = Pipe()
        p.standardError = pipe
        try? p.run()
        p.waitUntilExit()
        return String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .split(separator: ",").first.map(String.init) ?? "?"
    }

    /// Runs async work from the synchronous benchmark driver.
    static func blocking(_ body: @escaping @Sendable () async throws -> Void) { runBlocking(failurePrefix: "ferry failed", body) }
}
