import Foundation
import Testing
import System
#if canImport(Glibc)
import Glibc
#endif

private func temporaryFolder() throws -> String {
    let path = NSTemporaryDirectory() + "ferry-system-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

private func mode(of path: String) -> mode_t {
    var st = stat()
    _ = stat(path, &st)
    return st.st_mode & 0o7777
}

@Suite struct AtomicFileTests {
    @Test func writesReplacesAndLeavesNoTemporaryFile() throws {
        let dir = try temporaryFolder()
        let path = dir + "/a/b/file.json"   // parents created
        try AtomicFile.write(Data("one".utf8), to: path)
        try AtomicFile.write(Data("two".utf8), to: path)
        #expect(String(decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self) == "two")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/a/b") == ["file.json"])
    }

    @Test func exactModeIgnoresTheUmask() throws {
        let dir = try temporaryFolder()
        let old = umask(0o077)
        defer { umask(old) }
        try AtomicFile.write(Data("x".utf8), to: dir + "/exact", mode: .exact(0o644))
        try AtomicFile.write(Data("x".utf8), to: dir + "/masked", mode: .umask(0o644))
        #expect(mode(of: dir + "/exact") == 0o644)
        #expect(mode(of: dir + "/masked") == 0o600)
    }

    @Test func aFailedWriteNamesThePathAndErrno() throws {
        let dir = try temporaryFolder()
        try AtomicFile.write(Data("x".utf8), to: dir + "/file")
        // A file where a folder should be.
        #expect(throws: SystemError("mkdir", path: dir + "/file", errno: ENOTDIR)) {
            try AtomicFile.write(Data("y".utf8), to: dir + "/file/inner")
        }
    }

    @Test func replaceDirectorySwapsTheWholeFolder() throws {
        let dir = try temporaryFolder()
        let target = dir + "/last"
        try AtomicFile.replaceDirectory(target, with: [(name: "a", data: Data("1".utf8)), (name: "b", data: Data("2".utf8))])
        try AtomicFile.replaceDirectory(target, with: [(name: "c", data: Data("3".utf8))])
        #expect(try FileManager.default.contentsOfDirectory(atPath: target) == ["c"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["last"])   // no .tmp or .old left
    }
}

@Suite struct StaleTemporaryTests {
    /// What a SIGKILL mid-write leaves (`.NAME.tmp-PID`, files or folders) goes on the next run;
    /// what a live writer (this process) is writing stays, and so does an `.old-` folder that is the
    /// only copy left of its target.
    @Test func removesOnlyWhatDeadWritersLeft() throws {
        let dir = try temporaryFolder()
        let dead: pid_t = 4_194_000   // above any pid this machine hands out by default
        let fm = FileManager.default
        try fm.createDirectory(atPath: dir + "/.last.tmp-\(dead)", withIntermediateDirectories: true)
        try Data("x".utf8).write(to: URL(fileURLWithPath: dir + "/.run.json.tmp-\(dead)-12345"))
        try fm.createDirectory(atPath: dir + "/.best.tmp-\(getpid())", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: dir + "/.epoch-1.old-\(dead)", withIntermediateDirectories: true)   // epoch-1 missing: keep
        try fm.createDirectory(atPath: dir + "/last", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: dir + "/.last.old-\(dead)", withIntermediateDirectories: true)      // last exists: stale
        AtomicFile.removeStaleTemporaries(in: dir)
        #expect(Set(try fm.contentsOfDirectory(atPath: dir)) == [".best.tmp-\(getpid())", ".epoch-1.old-\(dead)", "last"])
    }
}

@Suite struct FileIOTests {
    @Test func writeAllAndReadChunksRoundTrip() throws {
        let dir = try temporaryFolder()
        let path = dir + "/big"
        let bytes = (0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let fd = try FileIO.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC)
        try FileIO.writeAll(fd, bytes)
        try FileIO.writeAll(fd, Data([1, 2, 3]), at: 1, path: path)
        close(fd)
        var expected = bytes
        expected[1] = 1; expected[2] = 2; expected[3] = 3
        let input = try FileIO.open(path, O_RDONLY | O_CLOEXEC)
        defer { close(input) }
        var read: [UInt8] = []
        let count = try FileIO.readChunks(input, chunkSize: 1 << 16) { read.append(contentsOf: $0) }
        #expect(count == Int64(bytes.count))
        #expect(read == expected)
        var prefix: [UInt8] = []
        #expect(try FileIO.readChunks(input, from: 0, limit: 10) { prefix.append(contentsOf: $0) } == 10)
        #expect(prefix == Array(expected[0..<10]))
    }

    @Test func checkedCallsThrowWithErrno() {
        #expect(throws: SystemError("open", path: "/nonexistent/ferry", errno: ENOENT)) {
            try FileIO.open("/nonexistent/ferry", O_RDONLY)
        }
        let error = SystemError("open", path: "/x", errno: EACCES)
        #expect(error.description == "/x: open failed: Permission denied")
        #expect(error.detail == "open: Permission denied")
    }

    @Test func writeToAClosedPipeIsAnErrorNotASignal() throws {
        var fds: [Int32] = [-1, -1]
        #expect(pipe(&fds) == 0)
        close(fds[0])
        let previous = signal(SIGPIPE, SIG_IGN)
        defer { signal(SIGPIPE, previous); close(fds[1]) }
        #expect(throws: SystemError("write", path: "pipe", errno: EPIPE)) { try FileIO.writeAll(fds[1], Data("x".utf8), path: "pipe") }
    }
}

@Suite struct SpawnTests {
    private func run(_ arguments: [String], environment: [String: String]? = ["PATH": "/usr/bin:/bin"],
                     newGroup: Bool = false, directory: String? = nil) throws -> (String, Int32) {
        var fds: [Int32] = [-1, -1]
        #expect(pipe(&fds) == 0)
        let pid = try Spawn.start(arguments, environment: environment, stdout: .fd(fds[1]), stderr: .sameAs(1),
                                  newGroup: newGroup, directory: directory)
        close(fds[1])
        var out: [UInt8] = []
        try FileIO.readChunks(fds[0]) { out.append(contentsOf: $0) }
        close(fds[0])
        return (String(decoding: out, as: UTF8.self), Spawn.decodeWaitStatus(Spawn.wait(pid)).code)
    }

    @Test func runsWithExactlyTheEnvironmentAndFolder() throws {
        let dir = try temporaryFolder()
        let (out, code) = try run(["sh", "-c", "echo \"$ONLY:$HOME:$(pwd)\"; exit 3"], environment: ["ONLY": "yes", "PATH": "/usr/bin:/bin"],
                                  directory: dir)
        #expect(out == "yes::\(dir)\n")
        #expect(code == 3)
    }

    /// `blocked` reaches the child only, as a blocked signal: this process's own dispositions and
    /// mask are never touched, not even while children start (a test process that spawned a
    /// supervisor once ignored Ctrl-C from then on; later, for as long as a spawn took, and a
    /// `ferry logs -f` another thread started meanwhile inherited Ctrl-C ignored).
    @Test func blockedSignalsAreBlockedInTheChildOnly() throws {
        // SIGTTOU: no other test here touches it (another ignores SIGUSR1 while it runs).
        func has(_ field: String, _ status: String) -> Bool {
            let line = status.split(separator: "\n").first { $0.hasPrefix(field) }
            let mask = line.map { UInt64($0.split(separator: "\t")[1], radix: 16) ?? 0 } ?? 0
            return mask & (1 << (UInt64(SIGTTOU) - 1)) != 0
        }
        func own() -> String { String(decoding: FileManager.default.contents(atPath: "/proc/self/status") ?? Data(), as: UTF8.self) }
        #expect(!has("SigIgn", own()) && !has("SigBlk", own()))
        var fds: [Int32] = [-1, -1]
        #expect(pipe(&fds) == 0)
        // (grep itself: dash empties its mask when it starts.)
        let pid = try Spawn.start(["grep", "-E", "^(SigIgn|SigBlk)", "/proc/self/status"], environment: ["PATH": "/usr/bin:/bin"],
                                  stdout: .fd(fds[1]), blocked: [SIGTTOU])
        close(fds[1])
        var out: [UInt8] = []
        try FileIO.readChunks(fds[0]) { out.append(contentsOf: $0) }
        close(fds[0])
        _ = Spawn.wait(pid)
        let child = String(decoding: out, as: UTF8.self)
        #expect(has("SigBlk", child) && !has("SigIgn", child), "\(child)")
        #expect(!has("SigIgn", own()) && !has("SigBlk", own()))

        // Sampled here while another thread spawns 100 such children: never ignored meanwhile.
        let done = DispatchSemaphore(value: 0)
        let spawner = Thread {
            for _ in 0..<100 {
                if let child = try? Spawn.start(["true"], environment: ["PATH": "/usr/bin:/bin"], blocked: [SIGTTOU]) { _ = Spawn.wait(child) }
            }
            done.signal()
        }
        spawner.start()
        var samples = 0, ignored = 0
        while done.wait(timeout: .now()) == .timedOut {
            var action = sigaction()
            sigaction(SIGTTOU, nil, &action)
            if unsafeBitCast(action.__sigaction_handler.sa_handler, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self) { ignored += 1 }
            samples += 1
        }
        #expect(samples > 0 && ignored == 0, "SIGTTOU ignored here in \(ignored) of \(samples) looks")
    }

    @Test func childStartsWithCleanSignalsAndOwnGroup() throws {
        // Ignored and blocked here; the child must see neither.
        let previous = signal(SIGUSR1, SIG_IGN)
        defer { signal(SIGUSR1, previous) }
        var block = sigset_t(), old = sigset_t()
        sigemptyset(&block); sigaddset(&block, SIGUSR2)
        pthread_sigmask(SIG_BLOCK, &block, &old)
        defer { pthread_sigmask(SIG_SETMASK, &old, nil) }
        let (out, _) = try run(["sh", "-c", "grep -E '^(SigBlk|SigIgn)' /proc/self/status; echo pgid=$(ps -o pgid= -p $$ | tr -d ' ') pid=$$"],
                               newGroup: true)
        #expect(out.contains("SigBlk:\t0000000000000000"))
        // sh itself ignores nothing at start; a leaked SIG_IGN for SIGUSR1 would set bit 10.
        let ignored = out.split(separator: "\n").first { $0.hasPrefix("SigIgn") }.map { UInt64($0.split(separator: "\t")[1], radix: 16) ?? 0 } ?? 0
        #expect(ignored & (1 << (UInt64(SIGUSR1) - 1)) == 0)
        if let pgidLine = out.split(separator: "\n").last, pgidLine.contains("pgid=") {
            let fields = pgidLine.split(separator: " ").map { $0.split(separator: "=").last.map(String.init) ?? "" }
            #expect(fields[0] == fields[1])
        }
    }

    @Test func noDescriptorOfOursCrosses() throws {
        let fd = open("/dev/null", O_RDONLY)   // not CLOEXEC
        defer { close(fd) }
        let (out, _) = try run(["sh", "-c", "ls /proc/self/fd"])
        #expect(!out.split(separator: "\n").contains(Substring(String(fd))) || fd <= 3)
    }

    @Test func aMissingProgramIsENOENT() {
        #expect(throws: SystemError("spawn", path: "ferry-no-such-program", errno: ENOENT)) {
            try Spawn.start(["ferry-no-such-program"], environment: ["PATH": "/usr/bin:/bin"])
        }
        #expect(throws: SystemError("spawn", path: "", errno: EINVAL)) { try Spawn.start([]) }
    }

    @Test func waitStatusDecodesLikeTheShell() {
        #expect(Spawn.decodeWaitStatus(3 << 8).code == 3)
        #expect(Spawn.decodeWaitStatus(SIGKILL) == (code: 128 + SIGKILL, signal: SIGKILL))
    }
}

@Suite struct LockAndFlagTests {
    @Test func aHeldLockExcludesAnotherHolder() throws {
        let path = try temporaryFolder() + "/lock"
        do {
            let held = try FileLock(path)
            #expect(FileLock(trying: path) == nil)
            withExtendedLifetime(held) {}
        }
        #expect(FileLock(trying: path) != nil)
        #expect(try FileLock.with(path) { 42 } == 42)
    }

    @Test func flagIsSeenAcrossThreads() async {
        let flag = AtomicFlag()
        #expect(!flag.isSet)
        await Task.detached { flag.set() }.value
        #expect(flag.isSet)
    }

    @Test func executablePathIsThisProgram() {
        #expect(FileManager.default.isExecutableFile(atPath: Executable.path))
        #expect(Executable.path.hasPrefix("/"))
    }
}

@Suite struct JSONCodingTests {
    struct Record: Codable, Equatable {
        var jobId: String
        var exitCode: Int?
        var environment: [String: String]
        var startedAt: Date
    }

    @Test func keysAreSnakeCaseAndDictionaryKeysAreData() throws {
        let record = Record(jobId: "j1", exitCode: 0, environment: ["FERRY_JOB_ID": "j1", "camelCase": "x", "snake_name": "y"],
                            startedAt: Date(timeIntervalSince1970: 5))
        let text = String(decoding: try JSONCoding.encoder().encode(record), as: UTF8.self)
        #expect(text == #"{"environment":{"FERRY_JOB_ID":"j1","camelCase":"x","snake_name":"y"},"exit_code":0,"job_id":"j1","started_at":5}"#)
        #expect(try JSONCoding.decoder().decode(Record.self, from: Data(text.utf8)) == record)
    }

    @Test func oldCamelCaseDocumentsStillRead() throws {
        let old = #"{"environment":{},"jobId":"j2","startedAt":7}"#
        let record = try JSONCoding.decoder().decode(Record.self, from: Data(old.utf8))
        #expect(record.jobId == "j2" && record.exitCode == nil && record.startedAt == Date(timeIntervalSince1970: 7))
    }
}
