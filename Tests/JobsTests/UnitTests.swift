import FerryTestSupport
import Foundation
import System
@testable import Jobs
import JobsTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct NamesAndManifestTests {
    @Test(arguments: ["x; rm -rf /", "a b", "$(id)", "`id`", "../up", "a/b", "", "-rf", ".hidden", "a..b", "tab\tname",
                      "ünï", "name'quote", "semi;colon", "pipe|", "amp&", "star*", String(repeating: "a", count: 49)])
    func hostileJobNamesAreRefused(_ name: String) {
        #expect(throws: JobsError.invalidJobName(name)) { try Names.validateJobName(name) }
    }

    @Test func usualJobNamesPass() throws {
        for name in ["mnist", "FashionMNIST_MLP", "run-3", "a.b_c-d", "7"] { try Names.validateJobName(name) }
        let id = Names.newJobID(name: "mnist")
        try Names.validateJobID(id)
        #expect(id.hasPrefix("mnist-"))
        #expect(Names.defaultJobName(from: "config/fashion mnist (copy).json") == "fashion-mnist--copy-")
        #expect(Names.defaultJobName(from: "../$(x).py") == "x-")
    }

    @Test(arguments: ["../etc/passwd", "/etc/passwd", "a/../../b", "a//b", "./a", "a/.", "", "a/\0b", ".."])
    func unsafeRelativePathsAreRefused(_ path: String) {
        #expect(throws: JobsError.self) { try Names.validateRelativePath(path) }
    }

    @Test func manifestRefusesEscapes() {
        let hash = String(repeating: "a", count: 64)
        func manifest(files: [String] = [], links: [(String, String)] = []) -> Manifest {
            Manifest(files: files.map { Manifest.File(path: $0, sha256: hash, size: 1) },
                     symlinks: links.map { Manifest.Symlink(path: $0.0, target: $0.1) })
        }
        #expect(throws: JobsError.self) { try manifest(files: ["../x"]).validate() }
        #expect(throws: JobsError.self) { try manifest(files: ["/abs"]).validate() }
        #expect(throws: JobsError.self) { try manifest(files: ["a", "a"]).validate() }
        #expect(throws: JobsError.self) { try manifest(links: [("l", "../outside")]).validate() }
        #expect(throws: JobsError.self) { try manifest(links: [("l", "/etc")]).validate() }
        #expect(throws: JobsError.self) { try manifest(links: [("d/l", "../../x")]).validate() }
        // A file under a symlink would be written through it.
        #expect(throws: JobsError.self) { try manifest(files: ["l/x"], links: [("l", "sub")]).validate() }
        // `..` after a link component climbs from the link's target, not its name.
        #expect(throws: JobsError.self) { try manifest(links: [("sub/up", ".."), ("l", "sub/up/../..")]).validate() }
        #expect(throws: JobsError.self) { try Manifest(files: [Manifest.File(path: "a", sha256: "xyz", size: 1)]).validate() }
        // Fine: links inside the tree.
        #expect(throws: Never.self) { try manifest(files: ["data/x"], links: [("d", "data"), ("sub/l", "../data/x")]).validate() }
    }

    @Test func jobSpecRefusesBadEnvironmentNames() {
        var spec = JobSpec(id: "a-1", name: "a", kind: "command", command: ["true"], environment: ["OK_1": "x"])
        #expect(throws: Never.self) { try spec.validate() }
        spec.environment = ["A=B": "x"]
        #expect(throws: JobsError.self) { try spec.validate() }
        spec.environment = ["1A": "x"]
        #expect(throws: JobsError.self) { try spec.validate() }
        spec.environment = [:]
        spec.command = []
        #expect(throws: JobsError.emptyCommand) { try spec.validate() }
    }
}

@Suite struct IgnoreRulesTests {
    func ignored(_ text: String, _ path: String, dir: Bool = false) -> Bool {
        var rules = IgnoreRules()
        rules.add(text, base: "")
        return rules.isIgnored(path, isDirectory: dir)
    }

    @Test func defaultsKeepRepositoryAndOutputsOut() {
        let rules = IgnoreRules()
        #expect(rules.isIgnored(".git", isDirectory: true))
        #expect(rules.isIgnored("saved", isDirectory: true))
        #expect(rules.isIgnored("sub/.build", isDirectory: true))
        #expect(rules.isIgnored("ferry-runs", isDirectory: true))
        #expect(!rules.isIgnored("saved", isDirectory: false))   // a file called saved is not a folder
        #expect(!rules.isIgnored("train.py", isDirectory: false))
    }

    @Test func gitignoreSemantics() {
        #expect(ignored("*.log", "a/b/c.log"))
        #expect(!ignored("*.log", "a/b/c.logx"))
        #expect(ignored("/build", "build", dir: true))
        #expect(!ignored("/build", "src/build", dir: true))
        #expect(ignored("doc/frotz", "doc/frotz"))
        #expect(!ignored("doc/frotz", "a/doc/frotz"))
        #expect(ignored("**/foo", "a/b/foo"))
        #expect(ignored("**/foo", "foo"))
        #expect(ignored("a/**/b", "a/b"))
        #expect(ignored("a/**/b", "a/x/y/b"))
        #expect(ignored("abc/**", "abc/x/y"))
        #expect(!ignored("abc/**", "abc", dir: true))
        #expect(ignored("data/\n!data/keep.csv", "data", dir: true))   // so keep.csv inside is never reached
        #expect(!ignored("*.csv\n!keep.csv", "keep.csv"))
        #expect(ignored("*.csv\n!keep.csv\nkeep.csv", "keep.csv"))
        #expect(!ignored("# comment\n\n", "# comment"))
        #expect(ignored("\\#hash", "#hash"))
        #expect(ignored("\\!bang", "!bang"))
        #expect(ignored("file?.txt", "file1.txt"))
        #expect(ignored("[ab].txt", "b.txt"))
        #expect(!ignored("[ab].txt", "c.txt"))
        #expect(ignored("trailing   ", "trailing"))
        #expect(ignored("cache/", "x/cache", dir: true))
        #expect(!ignored("cache/", "x/cache", dir: false))
    }

    @Test func packagerAppliesNestedIgnoreFilesAndSkipsOutsideLinks() throws {
        let box = try Sandbox(); defer { box.remove() }
        try box.write(".ferryignore", "*.tmp\ndata/\n!keep.tmp\n")
        try box.write("train.py", "print('hi')\n")
        try box.write("run.sh", "#!/bin/sh\necho hi\n", executable: true)
        try box.write("junk.tmp", "x")
        try box.write("keep.tmp", "kept")
        try box.write("data/big.bin", "ignored folder")
        try box.write("sub/.ferryignore", "local.txt\n")
        try box.write("sub/local.txt", "ignored below sub")
        try box.write("sub/other.txt", "kept")
        try box.write("local.txt", "kept at the root")
        try box.write("saved/model.bin", "out by default")
        try box.write(".git/HEAD", "out by default")
        try FileManager.default.createDirectory(atPath: box.project + "/empty", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: box.project + "/inside", withDestinationPath: "sub/other.txt")
        try FileManager.default.createSymbolicLink(atPath: box.project + "/outside", withDestinationPath: "/etc/passwd")
        try FileManager.default.createSymbolicLink(atPath: box.project + "/up", withDestinationPath: "../..")
        let package = try Packager.package(box.project)
        let paths = Set(package.manifest.files.map(\.path))
        #expect(paths == [".ferryignore", "train.py", "run.sh", "keep.tmp", "sub/.ferryignore", "sub/other.txt", "local.txt"])
        #expect(package.manifest.symlinks == [Manifest.Symlink(path: "inside", target: "sub/other.txt")])
        #expect(Set(package.skipped.map(\.path)) == ["outside", "up"])
        #expect(package.manifest.directories == ["empty"])
        #expect(package.manifest.files.first { $0.path == "run.sh" }?.executable == true)
        #expect(package.manifest.files.first { $0.path == "train.py" }?.executable == false)
        // Same content, one blob.
        #expect(package.manifest.blobs.count == package.manifest.files.count - 1)
        try package.manifest.validate()
    }

    /// A file whose name is not UTF-8 is refused for that reason (it was reported as having
    /// "vanished while packaging"), and the rest is packaged.
    @Test func nonUTF8NamesAreRefusedWithTheTrueReason() throws {
        let box = try Sandbox(); defer { box.remove() }
        try box.write("ok.txt", "fine")
        let bad: [UInt8] = Array((box.project + "/caf").utf8) + [0xE9, 0x2E, 0x74, 0x78, 0x74, 0]   // "caf\xE9.txt", Latin-1
        let fd = bad.withUnsafeBufferPointer { $0.withMemoryRebound(to: CChar.self) { open($0.baseAddress!, O_WRONLY | O_CREAT, 0o644) } }
        #expect(fd >= 0)
        close(fd)
        let package = try Packager.package(box.project)
        #expect(package.manifest.files.map(\.path) == ["ok.txt"])
        #expect(package.skipped.count == 1)
        #expect(package.skipped.first?.path == "caf?.txt")
        #expect(package.skipped.first?.reason.contains("not valid UTF-8") == true)
    }

    @Test func hashCacheIsUsedAndInvalidated() throws {
        let box = try Sandbox(); defer { box.remove() }
        try box.write("a.txt", "one")
        let cache = box.root + "/cache.json"
        let first = try Packager.package(box.project, cacheFile: cache)
        #expect(FileManager.default.fileExists(atPath: cache))
        let second = try Packager.package(box.project, cacheFile: cache)
        #expect(first.manifest == second.manifest)
        usleep(10_000)
        try box.write("a.txt", "two")
        let third = try Packager.package(box.project, cacheFile: cache)
        #expect(third.manifest.files[0].sha256 != first.manifest.files[0].sha256)
        try "two".write(toFile: box.root + "/two", atomically: true, encoding: .utf8)
        #expect(third.manifest.files[0].sha256 == (try HashCache.hashFile(box.root + "/two")))
    }
}

@Suite struct ProtocolTests {
    /// The bootstrap answer is what every ferry, of any version, reads first: its bytes never change.
    @Test func helloStaysByteCompatible() throws {
        let hello = AgentHello(ferry: "0.1.0", protocolVersion: 2, home: "/h/.ferry", binary: "/h/.ferry/bin/ferry", system: "Linux x86_64")
        let text = String(decoding: try JSON.encode(hello), as: UTF8.self)
        #expect(text == #"{"binary":"/h/.ferry/bin/ferry","ferry":"0.1.0","home":"/h/.ferry","protocol":2,"system":"Linux x86_64"}"#)
        let old = #"{"binary":"/x/ferry","ferry":"0.0.9","home":"/x","protocol":1,"system":"Linux x86_64"}"#
        #expect(try JSONCoding.decoder().decode(AgentHello.self, from: Data(old.utf8)).protocolVersion == 1)
    }

    /// Requests are typed JSON lines; their errors come back typed (no text to match).
    @Test func requestsAndErrorsAreTyped() throws {
        let line = String(decoding: try JSON.encode(AgentRequest.jobLogs(id: "a-1", offset: 5, wait: 20)), as: UTF8.self)
        #expect(line == #"{"job_logs":{"id":"a-1","offset":5,"wait":20}}"#)
        guard case .jobCancel(let id, let grace) = try JSON.decode(AgentRequest.self, from: Data(#"{"job_cancel":{"id":"b-2"}}"#.utf8), what: "t") else {
            Issue.record("not a cancel"); return
        }
        #expect(id == "b-2" && grace == nil)
        var parser = LogFrameParser()
        let reply = AgentErrorReply(error: .unknownJob("a-1"), message: "no job")
        parser.append(Data("X ".utf8) + (try JSON.encode(reply)) + Data("\n".utf8))
        #expect(try parser.next() == .error(.unknownJob("a-1")))
    }

    /// A client of protocol 1 (verbs and --flags in argv) gets a clear refusal, not a misreading.
    @Test func theAgentParsesNoOldVerbs() {
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-proto-\(UUID().uuidString)").path
        let agent = Agent(home: home, version: "test")
        #expect(agent.main(["job-logs", "a-1", "--offset", "0"]) == 1)
    }

    @Test func logFramesSurviveAnySplit() throws {
        let payload = Data("line one\nline two\n\0binary\u{1}\n".utf8)
        var stream = Data("D 0 \(payload.count)\n".utf8) + payload
        stream += Data("D \(payload.count) 3\nabcT {\"offset\":99}\n".utf8)
        for split in [1, 2, 3, 7, 64, stream.count] {
            var parser = LogFrameParser()
            var frames: [LogFrame] = []
            var i = 0
            while i < stream.count {
                parser.append(stream.subdata(in: i..<min(i + split, stream.count)))
                while let frame = try parser.next() { frames.append(frame) }
                i += split
            }
            #expect(frames == [.data(offset: 0, bytes: payload), .data(offset: Int64(payload.count), bytes: Data("abc".utf8)), .timeout(offset: 99)])
        }
        var bad = LogFrameParser()
        bad.append(Data("Q what\n".utf8))
        #expect(throws: LogFrameError.self) { try bad.next() }
        var huge = LogFrameParser()
        huge.append(Data("D 0 999999999999\n".utf8))
        #expect(throws: LogFrameError.self) { try huge.next() }
    }

    @Test func progressFromEvents() {
        let events = """
        {"event":"start","time":100,"total_epochs":4,"start_epoch":1,"steps_per_epoch":100,"run_id":"r","run_dir":"M/r"}
        {"event":"step","time":110,"epoch":1,"step":50,"loss":2.0,"lr":0.001,"samples_per_s":1000}
        {"event":"step","time":120,"epoch":1,"step":100,"loss":1.5,"lr":0.001,"samples_per_s":1000}
        {"event":"epoch","time":121,"epoch":1,"metrics":{"loss":1.6,"val_accuracy":0.8}}
        {"event":"checkpoint","time":121,"kind":"best","path":"M/r/checkpoints/best","epoch":1}
        {"event":"something_new","x":1}
        {"event":"step","time":130,"epoch":2,"step":1
        """
        let p = JobProgress.parse(Data(events.utf8))
        #expect(p.totalEpochs == 4)
        #expect(p.epoch == 1)
        #expect(p.step == 100)
        #expect(p.loss == 1.5)
        #expect(p.metrics["val_accuracy"] == 0.8)
        #expect(p.checkpoints["best"] == "M/r/checkpoints/best")
        #expect(p.fraction == 0.25)
        // 50 steps in 10 s, 300 to go.
        #expect(abs((p.etaSeconds ?? 0) - 60) < 0.001)
        #expect(p.line.contains("epoch 1/4"))
        #expect(p.line.contains("ETA 1m00s"))
        let ended = JobProgress.parse(Data((events.split(separator: "\n").dropLast().joined(separator: "\n") + "\n{\"event\":\"end\",\"status\":\"succeeded\"}\n").utf8))
        #expect(ended.endStatus == "succeeded")
        #expect(ended.fraction == 1)
    }

    @Test func missingLibrariesFromLoaderMessages() {
        let text = "/x/bin/ferry: error while loading shared libraries: libssh.so.4: cannot open shared object file: No such file or directory"
        #expect(Agent.missingLibraries(in: text) == ["libssh.so.4"])
        let dl = "libdnnl.so.2: cannot open shared object file: No such file or directory; libgomp.so.1: cannot open shared object file: No such file or directory"
        #expect(Agent.missingLibraries(in: dl) == ["libdnnl.so.2", "libgomp.so.1"])
        let short = "ferry: error while loading shared libraries: /usr/lib/x86_64-linux-gnu/libcurl.so.4: file too short"
        #expect(Agent.missingLibraries(in: short) == ["libcurl.so.4"])
    }

    @Test func nvidiaSMIOutput() {
        let gpus = NvidiaSMI.parse("0, NVIDIA H200, 143771, 0, 0\n1, NVIDIA H200, 143771, 1024, 87\n")
        #expect(gpus.count == 2)
        // --gpus: a count picks the least busy; a comma makes a list; anything else is refused.
        #expect(GPURequest(parsing: "1") == .count(1) && GPURequest(parsing: "0,1") == .list("0,1") && GPURequest(parsing: "3,") == .list("3"))
        #expect(GPURequest(parsing: "all") == nil && GPURequest(parsing: "0,x") == nil && GPURequest(parsing: "-1") == nil)
        #expect(GPURequest.pick(1, from: gpus) == "0" && GPURequest.pick(2, from: gpus) == "0,1" && GPURequest.pick(3, from: gpus) == nil)
        #expect(GPURequest.pick(0, from: []) == "")
        #expect(gpus[1] == GPUInfo(index: 1, name: "NVIDIA H200", memoryTotalMib: 143771, memoryUsedMib: 1024, utilizationPercent: 87))
    }

    @Test func errorsCrossTheWireIntact() throws {
        let errors: [JobsError] = [.unknownJob("a-1"), .notEnoughSpace(host: "h", needed: 10, free: 1, path: "/x"),
                                   .unsafePath(path: "../x", reason: "r"), .cancelled]
        for error in errors {
            let data = try JSON.encode(AgentErrorReply(error: error, message: error.description))
            #expect(try JSONCoding.decoder().decode(AgentErrorReply.self, from: data).error == error)
        }
    }
}

@Suite struct RegistryTests {
    @Test func hostsAddListForget() throws {
        let box = try Sandbox(); defer { box.remove() }
        let registry = Registry(home: box.home)
        try registry.addHost(HostRecord(name: "gpu1", target: "me@gpu1:2222", fingerprint: "SHA256:abc", identityFile: "/k",
                                        proxyJump: "bastion", ferryHome: "/scratch/.ferry"))
        #expect(throws: JobsError.hostExists("gpu1")) { try registry.addHost(HostRecord(name: "gpu1", target: "x")) }
        #expect(throws: JobsError.hostExists("local")) { try registry.addHost(HostRecord(name: "local", target: "x")) }
        #expect(throws: JobsError.invalidHostName("a b")) { try registry.addHost(HostRecord(name: "a b", target: "x")) }
        let back = try registry.host("gpu1")
        #expect(back.fingerprint == "SHA256:abc" && back.proxyJump == "bastion" && back.ferryHome == "/scratch/.ferry")
        #expect(registry.hostNames() == ["local", "gpu1"])
        try "[gpu1]:2222 ssh-ed25519 AAAA\nother ssh-ed25519 BBBB\n".write(toFile: registry.knownHostsFile, atomically: true, encoding: .utf8)
        try registry.forgetHost("gpu1", knownHostsNames: ["[gpu1]:2222"])
        #expect(throws: JobsError.unknownHost("gpu1", known: ["local"])) { try registry.host("gpu1") }
        #expect(fileText(registry.knownHostsFile) == "other ssh-ed25519 BBBB\n")
    }

    @Test func concurrentUpdatesAreNeverLost() async throws {
        let box = try Sandbox(); defer { box.remove() }
        let registry = Registry(home: box.home)
        var status = JobStatus(id: "j-1", state: .running)
        status.attempt = 0
        try registry.saveJob(JobRecord(id: "j-1", name: "j", host: "local", kind: "command", command: ["true"], createdAt: Date(),
                                       status: status))
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    for _ in 0..<25 { _ = try? registry.updateJob("j-1") { $0.status?.attempt += 1 } }
                }
            }
        }
        #expect(try registry.job("j-1").status?.attempt == 200)
        #expect(throws: JobsError.invalidJobID("../j")) { try registry.job("../j") }
        #expect(throws: JobsError.unknownJob("nope-1")) { try registry.job("nope-1") }
    }

    @Test func mirrorWritesAreIdempotentByOffset() throws {
        let box = try Sandbox(); defer { box.remove() }
        let mirror = LogMirror(path: box.root + "/m/output.log")
        try mirror.write(Data("hello ".utf8), at: 0)
        try mirror.write(Data("world\n".utf8), at: 6)
        try mirror.write(Data("hello ".utf8), at: 0)   // a second follower writing the same bytes
        #expect(String(decoding: mirror.read(), as: UTF8.self) == "hello world\n")
        #expect(mirror.size == 12)
    }

    @Test func fetchPathsStayInTheDestination() throws {
        let box = try Sandbox(); defer { box.remove() }
        let dest = box.root + "/dest"
        // The listing says where each file lands (`--what P` lands at DEST/P); the path is only checked.
        #expect(try Fetcher.localPath(for: "M/r/checkpoints/best/model.safetensors", in: dest) == dest + "/M/r/checkpoints/best/model.safetensors")
        #expect(try Fetcher.localPath(for: "results.csv", in: dest) == dest + "/results.csv")
        #expect(try Fetcher.localPath(for: "out/a.txt", in: dest) == dest + "/out/a.txt")
        for hostile in ["../x", "output/../../x", "/etc/passwd", "output/./x", "a//b", ""] {
            #expect(throws: JobsError.self) { try Fetcher.localPath(for: hostile, in: dest) }
        }
        try FileManager.default.createDirectory(atPath: dest, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: dest + "/link", withDestinationPath: "/tmp")
        #expect(throws: JobsError.self) { try Fetcher.localPath(for: "link/x", in: dest) }
    }
}
