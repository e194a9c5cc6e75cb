import Foundation

/// What to launch: the job as its spec will say (its id is drawn at launch), and how to send it.
public struct LaunchRequest: Sendable {
    public var host: String
    /// The folder whose files become the job's `work/`.
    public var workingDirectory: String
    /// The job: name, kind, needs, command (`ferry` first: the host's ferry), environment, folder
    /// relative to the working directory, GPUs, grace.
    public var job: JobSpec
    /// Absolute paths the job reads on the host (a config's data_dir): checked before anything is sent.
    public var hostPaths: [String]
    /// Disk the job will write on the host (checkpoints, outputs), checked with its files.
    public var reserveBytes: Int64
    /// The model's parameter bytes (a train job, from the config check): the host's preflight
    /// weighs them against its memory.
    public var modelBytes: Int64?
    /// Whether the caller follows the log next: then it starts streaming on the launch's own
    /// channel, and the first line needs no further command.
    public var follow: Bool
    /// What this launch asks of a Slurm host (merged with the host's defaults); refused on a plain host.
    public var slurm: SlurmRequest = SlurmRequest()

    public init(host: String, name: String, workingDirectory: String, kind: String, needs: JobNeeds = JobNeeds(), command: [String],
                environment: [String: String] = [:], directory: String = ".", gpus: String? = nil, graceSeconds: Int = 30,
                hostPaths: [String] = [], reserveBytes: Int64 = 0, follow: Bool = true) {
        self.host = host; self.workingDirectory = workingDirectory
        job = JobSpec(id: "", name: name, kind: kind, needs: needs, command: command, environment: environment, directory: directory,
                      gpus: gpus, graceSeconds: graceSeconds)
        self.hostPaths = hostPaths; self.reserveBytes = reserveBytes; self.follow = follow
    }
}

/// What a launch did (`ferry launch --json` prints it).
public struct LaunchResult: Codable, Sendable {
    public var id: String
    public var host: String
    /// File bytes sent to the host's store this time.
    public var uploadedBytes: Int64
    /// File bytes the host already had.
    public var reusedBytes: Int64
    public var files: Int
    /// Everything the connection sent (requests, manifest, files, an installed agent).
    public var transportBytesSent: Int64
    public var directory: String
    public var state: JobState

}

/// Steps of a launch, for progress output.
public enum LaunchEvent: Sendable {
    /// `--host` named an ssh alias or `user@host[:port]`, now remembered under `name`.
    case recordedHost(name: String, target: String)
    case packaged(files: Int, bytes: Int64, skipped: [String])
    case connected(host: String, agent: String)
    case preflight(PreflightReport)
    case uploading(done: Int64, total: Int64)
    case started(id: String)
}

/// Packages a working directory, sends what the host lacks, and starts the job. Nothing starts
/// unless every check passed; a failure leaves no job behind (the host removes a half-made one).
public struct Launcher: Sendable {
    public let context: JobsContext
    public init(context: JobsContext) { self.context = context }

    public func launch(_ request: LaunchRequest, events: (@Sendable (LaunchEvent) -> Void)? = nil) async throws -> (LaunchResult, AgentSession) {
        let (host, prepared) = try check(request, events: events)
        // The connection (TCP, key exchange, authentication) is made, and the probe started (the
        // host's login shell and rc files run), while the files are hashed.
        let context = self.context
        let connecting = Task { () async throws -> (any Transport, AgentSession.StartedProbe?) in
            let transport = try await context.connect(host)
            do {
                return (transport, try await AgentSession.startProbe(transport, version: context.version, remoteHome: host.ferryHome))
            } catch {
                await transport.close()
                throw error
            }
        }
        let package: JobPackage, preflight: PreflightRequest
        do {
            (package, preflight) = try self.package(prepared, events: events)
        } catch {
            if let (transport, _) = try? await connecting.value { await transport.close() }
            throw error
        }
        let started = Date()
        let (transport, probe) = try await connecting.value
        let client = try await context.agent(host, install: true, preflight: preflight, transport: transport, probe: probe)
        context.verbose?("connect: \(host.name) (\(client.transport.label)) and its probe while packaging, agent found\(client.hasAnswerSentAhead ? " and preflight answered on its channel" : "") in \(String(format: "%.2f s", Date().timeIntervalSince(started)))")
        do {
            events?(.connected(host: host.name, agent: client.hello.binary))
            return try await launch(prepared, package: package, client: client, preflight: preflight, events: events)
        } catch {
            await client.close()
            throw error
        }
    }

    /// Another launch over a session already open to the request's host (a sweep's next run): the
    /// same connection, so no second authentication (login nodes behind 2FA prompt once per command).
    /// Returns the session to use next (the same connection; with the engine's libraries on the
    /// agent's path when this launch supplied them), which the caller keeps and closes.
    public func launch(_ request: LaunchRequest, over client: AgentSession,
                       events: (@Sendable (LaunchEvent) -> Void)? = nil) async throws -> (LaunchResult, AgentSession) {
        let (host, prepared) = try check(request, events: events)
        guard host.name == client.host else {
            throw JobsError.agentFailed(host: host.name, verb: "launch", message: "the open session is to \(client.host), not \(host.name)")
        }
        let (package, preflight) = try self.package(prepared, events: events)
        return try await launch(prepared, package: package, client: client, preflight: preflight, events: events)
    }

    /// Checks the request: the host, and the request as it will be sent.
    func check(_ request: LaunchRequest, events: (@Sendable (LaunchEvent) -> Void)?) throws -> (HostRecord, LaunchRequest) {
        try Names.validateJobName(request.job.name)
        let (host, recorded) = try context.registry.resolveHost(request.host, sshEnvironment: context.sshEnvironment)
        if recorded { events?(.recordedHost(name: host.name, target: host.target)) }
        var request = request
        request.job.slurm = try request.slurm.job(for: host)
        try request.job.slurm?.validate()
        if request.job.slurm == nil, let time = request.slurm.time {
            guard let seconds = SlurmJob.seconds(ofTime: time), seconds > 0 else {
                throw JobsError.slurmOptionRefused(option: "--time \(time)", reason: "write MM, MM:SS, HH:MM:SS, D-HH or D-HH:MM:SS")
            }
            request.job.timeLimitSeconds = seconds
        }
        guard let program = request.job.command.first, !program.isEmpty else { throw JobsError.emptyCommand }
        if request.job.directory != "." { try Names.validateRelativePath(request.job.directory) }
        return (host, request)
    }

    /// Packages the request's folder (hashing what the hash cache does not know): the package and
    /// the preflight to ask.
    func package(_ request: LaunchRequest, events: (@Sendable (LaunchEvent) -> Void)?) throws -> (JobPackage, PreflightRequest) {
        let clock = Date()
        let package = try Packager.package(request.workingDirectory, cacheFile: context.registry.hashCachePath(for: request.workingDirectory))
        try package.manifest.validate()
        context.verbose?("package: \(package.fileCount) files, \(ByteCount.format(package.totalBytes)), hashed or from the hash cache in \(String(format: "%.2f s", Date().timeIntervalSince(clock)))")
        events?(.packaged(files: package.fileCount, bytes: package.totalBytes, skipped: package.skipped.map { "\($0.path) (\($0.reason))" }))

        // The host answers the preflight (space, paths, which files it lacks) while its agent is found.
        var gpuCount: Int?
        // On Slurm the login node has no GPUs to count: the scheduler checks the request at submission.
        if request.job.slurm == nil, let gpus = request.job.gpus, case .count(let n)? = GPURequest(parsing: gpus) { gpuCount = n }
        let preflight = PreflightRequest(neededBytes: request.reserveBytes, paths: request.hostPaths, needsEngine: request.job.needs.engine,
                                         blobs: package.manifest.blobs, gpuCount: gpuCount, modelBytes: request.modelBytes)
        return (package, preflight)
    }

    /// The launch over an open session; also the session it ended with (another prefix on the same
    /// connection when it supplied the engine's libraries).
    func launch(_ request: LaunchRequest, package: JobPackage, client initial: AgentSession, preflight preflightRequest: PreflightRequest,
                events: (@Sendable (LaunchEvent) -> Void)?) async throws -> (LaunchResult, AgentSession) {
        var client = initial
        let blobs = package.manifest.blobs
        let note = context.verbose
        var clock = Date()
        func lap() -> String { let now = Date(); defer { clock = now }; return String(format: "%.2f s", now.timeIntervalSince(clock)) }
        var report = try await client.preflight(preflightRequest)
        if request.job.needs.engine && !report.missingLibraries.isEmpty {
            (client, report) = try await AgentInstaller(binary: context.agentBinary, progress: context.installProgress, note: context.verbose)
                .supplyEngineLibraries(client, report: report, request: preflightRequest)
        }
        events?(.preflight(report))
        if let free = report.freeBytes, free < report.neededBytes {
            throw JobsError.notEnoughSpace(host: client.host, needed: report.neededBytes, free: free, path: report.home)
        }
        if !report.missingPaths.isEmpty { throw JobsError.missingOnHost(host: client.host, paths: report.missingPaths) }
        if !report.problems.isEmpty {
            throw JobsError.agentFailed(host: client.host, verb: "preflight", message: report.problems.joined(separator: "; "))
        }
        guard let missing = report.missing else {
            throw JobsError.protocolViolation(host: client.host, detail: "preflight did not say which files it lacks")
        }
        let toSend = missing.missing.reduce(Int64(0)) { $0 + (blobs[$1] ?? 0) - (missing.partial[$1] ?? 0) }

        if !missing.missing.isEmpty {
            let list = missing.missing.compactMap { hash in package.sources[hash].map { (hash: hash, path: $0, offset: missing.partial[hash] ?? 0) } }
            events?(.uploading(done: 0, total: toSend))
            _ = lap()
            let stored = try await client.putBlobs(list) { done in events?(.uploading(done: done, total: toSend)) }
            note?("upload: \(stored.stored) of \(blobs.count) distinct contents, \(ByteCount.format(stored.bytes)), in one exec-channel stream to the agent (blob_put: hashed as received, into one pack) in \(lap())")
        } else {
            note?("upload: nothing to send (the host has all \(blobs.count) contents), preflight read in \(lap())")
        }

        // A fresh id; on the rare collision with an existing job the host refuses and we draw again.
        var info: JobInfo?
        var spec = request.job
        // A preset id (a sweep's run) is used as it is; a clash with it is an error.
        let preset = !spec.id.isEmpty
        if !preset { spec.id = Names.newJobID(name: spec.name) }
        try Names.validateJobID(spec.id)
        spec.createdAt = Date()
        for attempt in 0..<4 {
            do {
                info = try await client.startJob(spec: spec, manifest: package.manifest, follow: request.follow ? 20 : nil)
                break
            } catch JobsError.jobExists where attempt < 3 && !preset {
                spec.id = Names.newJobID(name: spec.name)
            }
        }
        guard let info else { throw JobsError.supervisorDidNotStart(id: spec.id, detail: "no free job id") }
        note?("start: work/ made (from a spare made ahead, or from the store: copies, a large content lent as a hard link) and the supervisor started (\(client.transport.counters.commands) remote command(s) in all) in \(lap())")
        try context.registry.saveJob(JobRecord(id: spec.id, name: spec.name, host: client.host, kind: spec.kind, command: spec.command,
                                               createdAt: spec.createdAt, directory: info.directory, workingDirectory: package.root,
                                               status: info.status, progress: nil, seenAt: Date()))
        events?(.started(id: spec.id))
        let uploaded = toSend
        return (LaunchResult(id: spec.id, host: client.host, uploadedBytes: uploaded, reusedBytes: package.totalBytes - uploaded,
                             files: package.fileCount, transportBytesSent: client.transport.counters.sent,
                             directory: info.directory, state: info.status.state), client)
    }

    /// Starts a stopped job again in its own folder, with the resume arguments its spec states (a
    /// train job continues from its `last/`).
    public func resume(_ id: String) async throws -> (JobInfo, AgentSession) {
        let record = try context.registry.job(id)
        let client = try await context.agent(hostNamed: record.host, install: true)
        do {
            let info = try await client.resumeJob(id)
            try context.registry.remember(info, host: record.host)
            return (info, client)
        } catch {
            await client.close()
            throw error
        }
    }
}
