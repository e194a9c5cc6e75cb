import Foundation
import System
#if canImport(Glibc)
import Glibc
#endif

/// What the host can tell about its engine libraries; the CLI supplies TensorCore's own checks
/// (Jobs does not import the engine), the default only tries to load the libraries.
public struct AgentProbes: Sendable {
    public var engine: @Sendable () -> (cpuMissing: [String], oneDNN: LibraryCheck, cuda: LibraryCheck)

    public init(engine: @escaping @Sendable () -> (cpuMissing: [String], oneDNN: LibraryCheck, cuda: LibraryCheck)) {
        self.engine = engine
    }

    /// dlopen of the names TensorCore tries.
    public static let loadOnly = AgentProbes {
        func load(_ names: [String]) -> LibraryCheck {
            var errors: [String] = []
            for name in names {
                if let handle = dlopen(name, RTLD_NOW | RTLD_LOCAL) {
                    dlclose(handle)
                    return LibraryCheck(available: true, detail: name)
                }
                errors.append(dlerror().map { String(cString: $0) } ?? name)
            }
            return LibraryCheck(available: false, detail: errors.joined(separator: "; "))
        }
        return ([], load(["libdnnl.so.2", "libdnnl.so.3", "libdnnl.so"]), load(["libcuda.so.1"]))
    }
}

/// The host side of ferry: `ferry agent VERB ...`. Every verb answers one JSON object on stdout.
public struct Agent: Sendable {
    public let home: String
    public let version: String
    public let binary: String
    public let probes: AgentProbes
    var layout: HostLayout { HostLayout(home: home) }
    var store: JobStore { JobStore(layout: layout) }

    public init(home: String, version: String, binary: String? = nil, probes: AgentProbes = .loadOnly) {
        self.home = home; self.version = version; self.binary = binary ?? Executable.path; self.probes = probes
    }

    /// The verbs, for `ferry agent --help`.
    public static let usage = """
    ferry agent [--home DIR] VERB [ARGS]   (the host side of ferry; the client runs it over SSH)
      hello [--preflight <stdin JSON>]      version, home and binary (and the preflight)
      preflight                <stdin JSON>  disk, GPUs, CUDA, oneDNN, paths the job needs
      blobs-missing            <stdin JSON>  which file contents the host lacks
      blob-put                 <stdin frames> store file contents (resumable)
      job-start [--follow S]   <stdin JSON>  materialise work/, start the supervisor (then stream its log)
      job-resume               <stdin JSON>  start a stopped job again in its folder
      job-status ID | job-list
      job-logs ID --offset N [--wait S]      log bytes from N, waiting up to S seconds for more
      job-cancel ID [--grace S]              SIGTERM to the job's group, SIGKILL after S seconds
      job-files ID [--what best|last|all|PATH]
      supervise ID                          (internal: the detached supervisor)
    """

    /// Runs one verb; returns the exit status.
    public func main(_ arguments: [String]) -> Int32 {
        guard let verb = arguments.first else {
            FileHandle.standardError.write(Data((Agent.usage + "\n").utf8))
            return 2
        }
        let args = Array(arguments.dropFirst())
        do {
            switch verb {
            case "hello":
                try reply(hello())
                // The probe's first candidate answers the preflight too: one command fewer per launch.
                if args.contains("--preflight") { try reply(try preflight(try readRequest(PreflightRequest.self))) }
            case "preflight": try reply(try preflight(try readRequest(PreflightRequest.self)))
            case "blobs-missing":
                let request = try readRequest(BlobsMissingRequest.self)
                let (missing, partial) = try BlobStore(layout: layout).missing(request.hashes)
                try reply(BlobsMissingReply(missing: missing, partial: partial))
            case "blob-put": try reply(try BlobStore(layout: layout).receive(from: ByteReader(fd: 0)))
            case "job-start":
                let info = try startJob(try readRequest(JobStartRequest.self))
                try reply(info)
                // With --follow S, the log streams on the same channel (as job-logs from 0).
                if let wait = option(args, "--follow").flatMap(Double.init) {
                    return streamLogs(id: info.spec.id, offset: 0, wait: min(max(wait, 0), 300))
                }
            case "job-resume": try reply(try resumeJob(try readRequest(JobResumeRequest.self)))
            case "job-status": try reply(try info(try single(args, verb)))
            case "job-list": try reply(JobList(jobs: store.ids().compactMap { try? info($0) }))
            case "job-logs":
                let id = try single(Array(args.prefix(1)), verb)
                let offset = Int64(option(args, "--offset") ?? "0") ?? -1
                let wait = Double(option(args, "--wait") ?? "20") ?? 20
                guard offset >= 0 else { throw JobsError.agentFailed(host: "agent", verb: verb, message: "--offset takes a byte count") }
                return streamLogs(id: id, offset: offset, wait: min(max(wait, 0), 300))
            case "job-cancel":
                let id = try single(Array(args.prefix(1)), verb)
                try reply(try cancel(id, grace: option(args, "--grace").flatMap(Int.init)))
            case "job-files":
                let id = try single(Array(args.prefix(1)), verb)
                try reply(try files(id, what: option(args, "--what") ?? "all"))
            case "supervise":
                let id = try single(args, verb)
                try Names.validateJobID(id)
                return Supervisor(layout: layout, id: id, ferryBinary: binary).run()
            default:
                throw JobsError.agentFailed(host: "agent", verb: verb, message: "unknown verb (this ferry is \(version)); see `ferry agent --help`")
            }
            return 0
        } catch let error as JobsError {
            replyError(error)
            return 1
        } catch let error as SystemError {
            replyError(JobsError(error))
            return 1
        } catch {
            replyError(.agentFailed(host: "agent", verb: verb, message: "\(error)"))
            return 1
        }
    }

    // MARK: - I/O

    private func readRequest<T: Decodable>(_ type: T.Type) throws -> T {
        let data = try ByteReader(fd: 0).readToEnd()
        return try JSON.decode(type, from: data, what: "the request on stdin")
    }

    private func reply<T: Encodable>(_ value: T) throws {
        var data = try JSON.encode(value)
        data.append(0x0A)
        try JobsError.system { try FileIO.writeAll(1, data, path: "stdout") }
    }

    private func replyError(_ error: JobsError) {
        if var data = try? JSON.encode(AgentErrorReply(error: error, message: error.description)) {
            data.append(0x0A)
            try? JobsError.system { try FileIO.writeAll(1, data, path: "stdout") }
        }
    }

    private func single(_ args: [String], _ verb: String) throws -> String {
        guard args.count == 1, let id = args.first else {
            throw JobsError.agentFailed(host: "agent", verb: verb, message: "expects one job id")
        }
        return id
    }

    private func option(_ args: [String], _ name: String) -> String? {
        guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
        return args[i + 1]
    }

    // MARK: - Verbs

    func hello() -> AgentHello {
        var name = utsname()
        uname(&name)
        let sys = withUnsafeBytes(of: &name.sysname) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        let machine = withUnsafeBytes(of: &name.machine) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        return AgentHello(ferry: version, protocolVersion: AgentProtocol.version, home: home, binary: binary, system: "\(sys) \(machine)")
    }

    func preflight(_ request: PreflightRequest) throws -> PreflightReport {
        let free = FerryHome.freeBytes(at: home)
        var missing: BlobsMissingReply?
        var needed = request.neededBytes
        if let blobs = request.blobs {
            let (lacking, partial) = try BlobStore(layout: layout).missing(Array(blobs.keys))
            missing = BlobsMissingReply(missing: lacking, partial: partial)
            let toReceive = lacking.reduce(Int64(0)) { $0 + (blobs[$1] ?? 0) - (partial[$1] ?? 0) }
            needed += toReceive + blobs.values.reduce(0, +) + (16 << 20)
        }
        let engine = probes.engine()
        let (gpus, smiError) = NvidiaSMI.query()
        let userHome = FerryHome.userHome
        var missingPaths: [String] = []
        for path in request.paths {
            let expanded = path == "~" ? userHome : path.hasPrefix("~/") ? (userHome as NSString).appendingPathComponent(String(path.dropFirst(2))) : path
            if expanded.hasPrefix("/") && !POSIX.exists(expanded) { missingPaths.append(path) }
        }
        var problems: [String] = []
        if let free, needed > 0, free < needed {
            problems.append("only \(ByteCount.format(free)) free in \(home); the job needs \(ByteCount.format(needed))")
        }
        if !missingPaths.isEmpty { problems.append("missing on the host: \(missingPaths.joined(separator: ", "))") }
        if request.needsEngine {
            if !engine.cpuMissing.isEmpty {
                problems.append("the host's CPU lacks \(engine.cpuMissing.joined(separator: ", ")), which ferry's engine needs")
            } else if !engine.oneDNN.available {
                problems.append("oneDNN does not load on the host: \(engine.oneDNN.detail)")
            }
        }
        return PreflightReport(ferry: version, home: home, freeBytes: free, cpus: ProcessInfo.processInfo.activeProcessorCount,
                               gpus: gpus, nvidiaSmi: smiError, cuda: engine.cuda, oneDNN: engine.oneDNN, cpuMissing: engine.cpuMissing,
                               missingPaths: missingPaths, missingLibraries: Agent.missingLibraries(in: engine.oneDNN.available ? "" : engine.oneDNN.detail),
                               problems: problems, missing: missing, neededBytes: needed)
    }

    /// `libgomp.so.1` from the loader's "libgomp.so.1: cannot open shared object file: ..." (or "file
    /// too short", "invalid ELF header": a library present but unusable), as ld.so and dlerror say it.
    static func missingLibraries(in text: String) -> [String] {
        var names: [String] = []
        let reasons = [": cannot open shared object file", ": file too short", ": invalid ELF header", ": wrong ELF class"]
        for line in text.split(whereSeparator: { $0 == "\n" || $0 == ";" }) {
            for reason in reasons {
                guard let range = line.range(of: reason) else { continue }
                let before = line[..<range.lowerBound]
                guard let word = before.split(whereSeparator: { $0 == " " || $0 == ":" || $0 == "/" }).last else { continue }
                let name = String(word)
                if name.hasPrefix("lib") && name.contains(".so") && !names.contains(name) { names.append(name) }
            }
        }
        return names
    }

    func info(_ id: String) throws -> JobInfo {
        let paths = try store.paths(id)
        let spec = try store.spec(id)
        let status = try store.status(id)
        return JobInfo(spec: spec, status: status, progress: JobProgress.read(eventsFile: paths.events),
                       directory: paths.directory, logBytes: POSIX.fileSize(paths.log) ?? 0)
    }

    func startJob(_ request: JobStartRequest) throws -> JobInfo {
        let spec = request.spec
        try spec.validate()
        try request.manifest.validate()
        let blobs = BlobStore(layout: layout)
        let lacking = request.manifest.files.filter { !blobs.has($0.sha256) }
        guard lacking.isEmpty else {
            throw JobsError.io(path: lacking[0].path, reason: "its content is not on the host yet (\(lacking.count) files missing); launch again to send them")
        }
        if let free = FerryHome.freeBytes(at: home), free < request.manifest.totalBytes + (16 << 20) {
            throw JobsError.notEnoughSpace(host: POSIX.hostName, needed: request.manifest.totalBytes + (16 << 20), free: free, path: home)
        }
        try POSIX.makeDirectory(layout.jobsDirectory, mode: 0o700)
        let paths = layout.job(spec.id)
        guard mkdir(paths.directory, 0o700) == 0 else {
            if errno == EEXIST { throw JobsError.agentFailed(host: POSIX.hostName, verb: "job-start", message: "a job \(spec.id) already exists") }
            throw JobsError.io(path: paths.directory, reason: SystemError.text(errno))
        }
        do {
            try JSON.write(spec, to: paths.spec, mode: 0o600)
            try JSON.write(request.manifest, to: paths.manifest, pretty: false, mode: 0o600)
            try store.write(JobStatus(id: spec.id, state: .queued, attempt: spec.attempt), paths)
            try blobs.materialise(request.manifest, into: paths.work)
            try POSIX.makeDirectory(paths.output)
            try startSupervisor(spec.id, paths)
        } catch {
            // No half-started job: everything of it goes.
            try? FileManager.default.removeItem(atPath: paths.directory)
            throw error
        }
        return try info(spec.id)
    }

    func resumeJob(_ request: JobResumeRequest) throws -> JobInfo {
        let paths = try store.paths(request.id)
        var spec = try store.spec(request.id)
        let status = try store.status(request.id)
        guard status.state.isFinal else { throw JobsError.jobNotStopped(id: request.id, state: status.state.rawValue) }
        guard status.state != .succeeded else { throw JobsError.jobNotResumable(id: request.id, reason: "it succeeded; launch a new job instead") }
        try withLock(paths.lock) {
            spec.attempt += 1
            // The spec says how it continues (`--resume auto` for ferry train), once.
            let resume = spec.needs.resumeArguments
            if let first = resume.first, !spec.command.contains(first) { spec.command += resume }
            try spec.validate()
            try JSON.write(spec, to: paths.spec, mode: 0o600)
            unlink(paths.cancel)
            var fresh = JobStatus(id: spec.id, state: .queued, attempt: spec.attempt)
            fresh.message = "resumed after: \(status.summary)"
            try store.write(fresh, paths)
        }
        try startSupervisor(spec.id, paths)
        return try info(spec.id)
    }

    /// Starts the supervisor in its own session and waits until it has claimed the job.
    private func startSupervisor(_ id: String, _ paths: JobPaths) throws {
        var env = ProcessInfo.processInfo.environment
        env["FERRY_HOME"] = home
        _ = try JobsError.system { () throws(SystemError) in
            try Spawn.start([binary, "agent", "--home", home, "supervise", id], environment: env, stdin: .null,
                            stdout: .file(paths.supervisorLog, append: true), stderr: .file(paths.supervisorLog, append: true),
                            newSession: true, keepIgnored: Supervisor.handledSignals)
        }
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            if let status = try? store.rawStatus(paths, id: id), status.supervisorPid != nil || status.state.isFinal { return }
            usleep(5_000)
        }
        let log = POSIX.read(paths.supervisorLog).map { String(decoding: $0.suffix(2000), as: UTF8.self) } ?? ""
        _ = try? store.update(id) { $0.state = .failed; $0.message = "the supervisor did not start"; $0.endedAt = Date() }
        throw JobsError.supervisorDidNotStart(id: id, detail: log.isEmpty ? "no word from it within 15 s" : log)
    }

    func cancel(_ id: String, grace: Int?) throws -> JobInfo {
        let paths = try store.paths(id)
        let spec = try store.spec(id)
        let status = try store.status(id)
        if status.state.isFinal {
            stopOrphans(status)
            return try info(id)
        }
        let request = CancelRequest(graceSeconds: min(max(grace ?? spec.graceSeconds, 0), 3600), requestedAt: Date())
        try JSON.write(request, to: paths.cancel, pretty: false)
        if let pid = status.supervisorPid, store.supervisorAlive(status) {
            kill(pid, SIGTERM)
        }
        return try info(id)
    }

    /// A lost job (its supervisor gone) may still run: its process group gets SIGTERM, then SIGKILL.
    func stopOrphans(_ status: JobStatus) {
        guard status.state == .lost, let pid = status.pid, pid > 1, status.bootId == POSIX.bootId, kill(-pid, 0) == 0 else { return }
        kill(-pid, SIGTERM)
        for _ in 0..<20 where kill(-pid, 0) == 0 { usleep(50_000) }
        kill(-pid, SIGKILL)
    }

    func files(_ id: String, what: String) throws -> FileListing {
        let paths = try store.paths(id)
        let status = try store.status(id)
        let root = paths.directory
        var roots: [String] = []   // relative to the job folder
        switch what {
        case "all":
            roots = ["output"]
        case "best", "last":
            let progress = JobProgress.read(eventsFile: paths.events)
            if let relative = progress.checkpoints[what], (try? Names.validateRelativePath(relative)) != nil {
                roots = ["output/" + relative]
            } else if let found = Agent.newestDirectory(named: what, under: paths.output) {
                roots = ["output/" + found]
            }
        default:
            try Names.validateRelativePath(what)
            if POSIX.exists((paths.output as NSString).appendingPathComponent(what)) { roots = ["output/" + what] }
            else if POSIX.exists((root as NSString).appendingPathComponent(what)) { roots = [what] }
        }
        var entries: [FileListing.Entry] = []
        let cache = HashCache(path: (root as NSString).appendingPathComponent(".hashes.json"))
        for relative in roots {
            for file in Agent.regularFiles(under: relative, in: root) {
                let full = (root as NSString).appendingPathComponent(file)
                var st = stat()
                guard lstat(full, &st) == 0 else { continue }
                let sha = try cache.sha256(of: full, key: file)
                entries.append(FileListing.Entry(path: file, size: Int64(st.st_size), sha256: sha,
                                                 modified: Date(timeIntervalSince1970: TimeInterval(st.st_mtim.tv_sec))))
            }
        }
        cache.save()
        return FileListing(root: root, files: entries, state: status.state)
    }

    /// Regular files under `relative` (itself a file or a folder) inside `root`, never following symlinks.
    static func regularFiles(under relative: String, in root: String) -> [String] {
        let full = (root as NSString).appendingPathComponent(relative)
        var st = stat()
        guard lstat(full, &st) == 0 else { return [] }
        if (st.st_mode & S_IFMT) == S_IFREG { return [relative] }
        guard (st.st_mode & S_IFMT) == S_IFDIR else { return [] }
        var out: [String] = []
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: full)) ?? []).sorted()
        for name in names where !name.hasSuffix(".ferry-partial") {
            out += regularFiles(under: relative + "/" + name, in: root)
        }
        return out
    }

    /// The most recently modified folder called `name` under `directory` (relative to it).
    static func newestDirectory(named name: String, under directory: String) -> String? {
        guard let walker = FileManager.default.enumerator(atPath: directory) else { return nil }
        var best: (String, Date)?
        while let item = walker.nextObject() as? String {
            guard (item as NSString).lastPathComponent == name else { continue }
            let full = (directory as NSString).appendingPathComponent(item)
            var st = stat()
            guard lstat(full, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { continue }
            let date = Date(timeIntervalSince1970: TimeInterval(st.st_mtim.tv_sec))
            if best == nil || date > best!.1 { best = (item, date) }
        }
        return best?.0
    }

    // MARK: - Logs

    /// Writes frames of output.log from `offset` as it grows, until the job is over and every byte
    /// went out (`E`), or `wait` seconds pass (`T`). A bounded long-poll: the client asks again.
    func streamLogs(id: String, offset start: Int64, wait: Double) -> Int32 {
        let paths: JobPaths
        do { paths = try store.paths(id) } catch {
            writeFrame("X " + ((error as? JobsError)?.description ?? "\(error)") + "\n")
            return 1
        }
        let deadline = Date().addingTimeInterval(wait)
        let watcher = DirectoryWatcher(paths.directory)
        var offset = start
        var fd: Int32 = -1
        defer { if fd >= 0 { close(fd) } }
        var buffer = [UInt8](repeating: 0, count: 256 * 1024)
        var lastStatusCheck = Date.distantPast
        while true {
            if fd < 0 { fd = open(paths.log, O_RDONLY | O_CLOEXEC) }
            var size: Int64 = 0
            if fd >= 0 {
                var st = stat()
                if fstat(fd, &st) == 0 { size = Int64(st.st_size) }
            }
            if offset > size && fd >= 0 {
                writeFrame("X offset \(offset) is past the end of the log (\(size) bytes)\n")
                return 1
            }
            if offset < size {
                let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, Int(min(Int64($0.count), size - offset)), off_t(offset)) }
                if n > 0 {
                    var frame = Data("D \(offset) \(n)\n".utf8)
                    frame.append(contentsOf: buffer[0..<n])
                    guard writeFrame(frame) else { return 1 }
                    offset += Int64(n)
                    continue
                }
            }
            // At the end of what is written: is the job over?
            if Date().timeIntervalSince(lastStatusCheck) > 0.25 || watcher.sawStatusChange {
                lastStatusCheck = Date()
                if let status = try? store.status(id), status.state.isFinal {
                    // The supervisor wrote its status after the command ended, so the log is complete
                    // unless a leftover member of the group still writes: check the size once more.
                    var st = stat()
                    let finalSize: Int64 = fd >= 0 && fstat(fd, &st) == 0 ? Int64(st.st_size) : (POSIX.fileSize(paths.log) ?? 0)
                    if finalSize > offset || (fd < 0 && POSIX.exists(paths.log)) { continue }
                    let json = (try? JSON.encode(status)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
                    writeFrame("E \(json)\n")
                    return 0
                }
            }
            let left = deadline.timeIntervalSinceNow
            if left <= 0 {
                writeFrame("T {\"offset\":\(offset)}\n")
                return 0
            }
            watcher.wait(milliseconds: Int32(min(left, 0.25) * 1000))
        }
    }

    @discardableResult
    private func writeFrame(_ text: String) -> Bool { writeFrame(Data(text.utf8)) }

    @discardableResult
    private func writeFrame(_ data: Data) -> Bool { (try? FileIO.writeAll(1, data, path: "stdout")) != nil }
}

/// Wakes the log streamer when anything in the job's folder changes (inotify), instead of polling.
final class DirectoryWatcher {
    private let fd: Int32
    private(set) var sawStatusChange = false

    init(_ directory: String) {
        let fd = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        if fd >= 0 {
            _ = inotify_add_watch(fd, directory, UInt32(IN_MODIFY | IN_MOVED_TO | IN_CREATE | IN_CLOSE_WRITE))
        }
        self.fd = fd
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Waits up to `milliseconds` for a change (20 ms steps without inotify).
    func wait(milliseconds: Int32) {
        sawStatusChange = false
        guard fd >= 0 else { usleep(UInt32(min(milliseconds, 20)) * 1000); return }
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, milliseconds) > 0 else { return }
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { break }
            // Any rename into the folder is a status write (status.json is replaced atomically).
            var i = 0
            while i + 16 <= n {
                let mask = buffer.withUnsafeBytes { $0.load(fromByteOffset: i + 4, as: UInt32.self) }
                let length = Int(buffer.withUnsafeBytes { $0.load(fromByteOffset: i + 12, as: UInt32.self) })
                if mask & UInt32(IN_MOVED_TO) != 0 { sawStatusChange = true }
                i += 16 + length
            }
        }
    }
}

/// nvidia-smi's view of the GPUs, when it is installed.
enum NvidiaSMI {
    static func query() -> ([GPUInfo], String?) {
        let env = ProcessInfo.processInfo.environment
        guard let smi = Spawn.searchPath("nvidia-smi", in: (env["PATH"] ?? "") + ":/usr/bin:/usr/local/bin:/usr/local/nvidia/bin") else { return ([], nil) }
        let result = Subprocess.capture([smi, "--query-gpu=index,name,memory.total,memory.used,utilization.gpu", "--format=csv,noheader,nounits"],
                                        environment: env, timeout: 15)
        guard result.status == 0 else {
            let text = String(decoding: result.output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            return ([], "nvidia-smi failed (status \(result.status)): \(text.prefix(300))")
        }
        return (parse(String(decoding: result.output, as: UTF8.self)), nil)
    }

    static func parse(_ text: String) -> [GPUInfo] {
        text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            guard f.count >= 2, let index = Int(f[0]) else { return nil }
            return GPUInfo(index: index, name: f[1], memoryTotalMib: f.count > 2 ? Int(f[2]) : nil,
                           memoryUsedMib: f.count > 3 ? Int(f[3]) : nil, utilizationPercent: f.count > 4 ? Int(f[4]) : nil)
        }
    }
}
