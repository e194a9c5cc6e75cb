import Foundation
import System
#if canImport(Glibc)
import Glibc
#endif

// The job lifecycle on the host: start (materialise work/, hand over to a supervisor), resume,
// cancel, status (the files a fetch may take: Agent+Files).

extension Agent {
    /// Who starts, observes and stops this job: Slurm when the spec asks for it, else the plain
    /// host's supervisor.
    func launcher(for spec: JobSpec) -> any JobLauncher {
        if spec.slurm != nil { return SlurmLauncher(store: store, home: home, binary: binary) }
        return SupervisorLauncher(store: store, home: home, binary: binary, standby: standby)
    }

    /// The job's state as its launcher knows it.
    func status(_ id: String) throws -> JobStatus {
        try launcher(for: try store.spec(id)).status(id)
    }

    func info(_ id: String) throws -> JobInfo {
        let paths = try store.paths(id)
        let spec = try store.spec(id)
        let status = try launcher(for: spec).status(id)
        return JobInfo(spec: spec, status: status, progress: JobProgress.read(eventsFile: paths.events),
                       directory: paths.directory, logBytes: POSIX.fileSize(paths.log) ?? 0)
    }

    func startJob(_ request: JobStartRequest) throws -> JobInfo {
        let spec = request.spec
        try spec.validate()
        try request.manifest.validate()
        let blobs = self.blobs
        let lacking = request.manifest.files.filter { !blobs.has($0.sha256) }
        guard lacking.isEmpty else {
            throw JobsError.io(path: lacking[0].path, reason: "its content is not on the host yet (\(lacking.count) files missing); launch again to send them")
        }
        if let free = FerryHome.freeBytes(at: home), free < request.manifest.totalBytes + (16 << 20) {
            throw JobsError.notEnoughSpace(host: POSIX.hostName, needed: request.manifest.totalBytes + (16 << 20), free: free, path: home)
        }
        try POSIX.makeDirectory(layout.jobsDirectory, mode: 0o700)
        let paths = layout.job(spec.id)
        // The tree's id, once: for finding a spare and for announcing the next one.
        let tree = SpareWork.wanted(request.manifest) ? SpareWork.treeID(request.manifest) : nil
        guard mkdir(paths.directory, 0o700) == 0 else {
            if errno == EEXIST { throw JobsError.jobExists(spec.id) }
            throw JobsError.io(path: paths.directory, reason: SystemError.text(errno))
        }
        do {
            try JSON.write(spec, to: paths.spec, mode: 0o600)
            // Read only by the maker of the next spare: no sync waits for it (the spec and status are synced).
            try JSON.write(request.manifest, to: paths.manifest, pretty: false, mode: 0o600, durable: false)
            try store.write(JobStatus(id: spec.id, state: .queued, attempt: spec.attempt), paths)
            // A spare made after an earlier launch of (nearly) this tree saves creating every file.
            let spares = SpareWork(layout: layout, blobs: blobs)
            if !((try? spares.take(request.manifest, into: paths.work, claim: spec.id, tree: tree)) ?? false) {
                try blobs.materialise(request.manifest, into: paths.work, lending: true)
            }
            try POSIX.makeDirectory(paths.output)
            try launcher(for: spec).start(spec.id)
        } catch {
            // No half-started job: everything of it goes.
            try? FileManager.default.removeItem(atPath: paths.directory)
            throw error
        }
        if let tree, SpareWork.enabled() { startPreparingWork(spec.id, manifest: request.manifest, tree: tree) }
        return try info(spec.id)
    }

    /// Starts `ferry agent prepare-work ID NAME` in its own session: it outlives this request and
    /// copies the job's tree for the next launch while the host is otherwise idle. Its folder
    /// (`.new-PID-NAME`, with the tree's id and manifest) is there before this request answers, so a
    /// launch right after waits for it instead of copying every file beside it.
    func startPreparingWork(_ id: String, manifest: Manifest, tree: String) {
        var env = ProcessInfo.processInfo.environment
        env["FERRY_HOME"] = home
        let spares = SpareWork(layout: layout, blobs: blobs)
        let name = SpareWork.newName()
        guard (try? POSIX.makeDirectory(spares.directory, mode: 0o700)) != nil else { return }
        // What a maker says (its error, if it fails) goes to spares/maker.log, started afresh past 1 MiB.
        let log = (spares.directory as NSString).appendingPathComponent("maker.log")
        if let size = POSIX.fileSize(log), size > 1 << 20 { unlink(log) }
        guard let pid = try? Spawn.start([binary, AgentProtocol.subcommand, AgentProtocol.homeFlag, home, AgentProtocol.prepareWorkVerb, id, name],
                                         environment: env, stdin: .null, stdout: .file(log, append: true, mode: 0o600),
                                         stderr: .file(log, append: true, mode: 0o600), newSession: true) else { return }
        try? spares.announce(name, builder: pid, manifest: manifest, manifestFile: store.paths(id).manifest, tree: tree)
    }

    /// The detached maker of a spare: at low priority, from the job's manifest.
    func prepareWork(_ id: String, name: String) throws -> Int32 {
        setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 10)
        let paths = try store.paths(id)
        let manifest = try JSON.decode(Manifest.self, from: POSIX.read(paths.manifest) ?? Data(), what: paths.manifest)
        try manifest.validate()
        try SpareWork(layout: layout, blobs: blobs).prepare(manifest, name: name, manifestFile: paths.manifest)
        return 0
    }

    func resumeJob(_ id: String) throws -> JobInfo {
        let paths = try store.paths(id)
        var spec = try store.spec(id)
        let status = try launcher(for: spec).status(id)
        guard status.state.isFinal else { throw JobsError.jobNotStopped(id: id, state: status.state.rawValue) }
        guard status.state != .succeeded else { throw JobsError.jobNotResumable(id: id, reason: "it succeeded; launch a new job instead") }
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
        try launcher(for: spec).start(spec.id)
        return try info(spec.id)
    }

    func cancel(_ id: String, grace: Int?) throws -> JobInfo {
        let spec = try store.spec(id)
        try launcher(for: spec).cancel(id, grace: min(max(grace ?? spec.graceSeconds, 0), 3600))
        return try info(id)
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
}
