import Foundation
import System
#if canImport(Glibc)
import Glibc
#endif

/// The host side of ferry: `ferry agent [--home DIR] hello` (the bootstrap probe), `ferry agent
/// [--home DIR] request` with one `AgentRequest` as a JSON line on stdin, and the internal `supervise
/// ID`. Every request answers one JSON object on stdout (exit 0) or an `AgentErrorReply` (exit 1);
/// `jobLogs` (and `jobStart` with `follow`) answer in `LogFrame`s.
public struct Agent: Sendable {
    public let home: String
    public let version: String
    public let binary: String
    public let probes: AgentProbes
    var layout: HostLayout { HostLayout(home: home) }
    var store: JobStore { JobStore(layout: layout) }
    /// The store's pack index, read once per agent process: a served session's preflight and
    /// job start share it (a `blob_put` makes the next use read it again).
    private let packIndex = PackIndexSlot()
    var blobs: BlobStore { BlobStore(layout: layout, packs: packIndex) }
    /// A supervisor started at this session's preflight, for its job's start.
    let standby = StandbySupervisor()

    public init(home: String, version: String, binary: String? = nil, probes: AgentProbes = .loadOnly) {
        self.home = home; self.version = version; self.binary = binary ?? Executable.path; self.probes = probes
    }

    /// For `ferry agent --help`.
    public static let usage = """
    ferry agent [--home DIR] VERB   (the host side of ferry; the client runs it over SSH)
      \(AgentProtocol.helloVerb)       version, home and binary
      \(AgentProtocol.serveVerb) VERSION PROTOCOL   (the probe's channel: requests one after another, answers `=JSON` or `!ERROR` lines)
      \(AgentProtocol.requestVerb)     <stdin: one JSON request line, then its data>
                  preflight, blobs_missing, blob_put, job_start, job_resume, job_status,
                  job_list, job_logs, job_cancel, job_files, files_get, files_fetch (protocol \(AgentProtocol.version))
      \(AgentProtocol.superviseVerb) ID   (internal: the detached supervisor)
      \(AgentProtocol.standbyVerb)   (internal: a supervisor started ahead; its job's id comes on stdin)
      \(AgentProtocol.nodeCheckVerb) ID   (internal: a Slurm job's engine check on its compute node)
      \(AgentProtocol.prepareWorkVerb) ID NAME   (internal: a copy of the job's tree for the next launch)
    """

    /// Runs one verb; returns the exit status.
    public func main(_ arguments: [String]) -> Int32 {
        guard let verb = arguments.first else {
            FileHandle.standardError.write(Data((Agent.usage + "\n").utf8))
            return 2
        }
        let args = Array(arguments.dropFirst())
        var name = verb
        do {
            switch verb {
            case AgentProtocol.helloVerb:
                try reply(hello())
                return 0
            case AgentProtocol.serveVerb:
                return serve(args)
            case AgentProtocol.requestVerb:
                let input = ByteReader(fd: 0)
                guard let line = try input.readLine(limit: AgentProtocol.requestLineLimit) else {
                    throw JobsError.agentFailed(host: "agent", verb: verb, message: "no request on stdin")
                }
                let request = try JSON.decode(AgentRequest.self, from: Data(line.utf8), what: "the request on stdin")
                name = request.name
                return try handle(request, input: input)
            case AgentProtocol.superviseVerb:
                guard args.count == 1, let id = args.first else { throw JobsError.agentFailed(host: "agent", verb: verb, message: "expects one job id") }
                try Names.validateJobID(id)
                return Supervisor(layout: layout, id: id, ferryBinary: binary).run()
            case AgentProtocol.standbyVerb:
                guard args.isEmpty else { throw JobsError.agentFailed(host: "agent", verb: verb, message: "expects no arguments") }
                guard let id = try StandbySupervisor.awaitJob(layout: layout) else { return 0 }
                return Supervisor(layout: layout, id: id, ferryBinary: binary).run()
            case AgentProtocol.nodeCheckVerb:
                guard args.count == 1, let id = args.first else { throw JobsError.agentFailed(host: "agent", verb: verb, message: "expects one job id") }
                try Names.validateJobID(id)
                return try nodeCheck(id)
            case AgentProtocol.prepareWorkVerb:
                guard args.count == 2, SpareWork.isName(args[1]) else { throw JobsError.agentFailed(host: "agent", verb: verb, message: "expects a job id and a spare's name") }
                try Names.validateJobID(args[0])
                return try prepareWork(args[0], name: args[1])
            default:
                throw JobsError.agentFailed(host: "agent", verb: verb, message: "unknown verb (this ferry is \(version), protocol \(AgentProtocol.version)); see `ferry agent --help`")
            }
        } catch {
            replyError(JobsError.from(error, verb: name))
            return 1
        }
    }

    /// Answers one request; `input` holds what follows its line (blob frames).
    func handle(_ request: AgentRequest, input: ByteReader) throws -> Int32 {
        switch request {
        case .preflight(let preflightRequest):
            try reply(try preflight(preflightRequest))
            // A launch: its supervisor loads while the files come.
            standby.prepare(binary: binary, home: home)
        case .blobsMissing(let hashes):
            let (missing, partial) = try blobs.missing(hashes)
            try reply(BlobsMissingReply(missing: missing, partial: partial))
        case .blobPut: try reply(try blobs.receive(from: input))
        case .jobStart(let start):
            let info = try startJob(start)
            try reply(info)
            // With `follow`, the log streams on the same channel (as jobLogs from 0).
            if let wait = start.follow { return streamLogs(id: info.spec.id, offset: 0, wait: min(max(wait, 0), 300)) }
        case .jobResume(let id): try reply(try resumeJob(id))
        case .jobStatus(let id): try reply(try info(id))
        case .jobList: try reply(JobList(jobs: store.ids().compactMap { try? info($0) }))
        case .jobLogs(let id, let offset, let wait):
            guard offset >= 0 else { throw JobsError.agentFailed(host: "agent", verb: request.name, message: "the offset must be a byte count ≥ 0") }
            return streamLogs(id: id, offset: offset, wait: min(max(wait, 0), 300))
        case .jobCancel(let id, let grace): try reply(try cancel(id, grace: grace))
        case .jobFiles(let id, let what): try reply(try files(id, what: what))
        case .filesGet(let id, let files): return streamFiles(id, files: files)
        case .filesFetch(let id, let what):
            // Listed without reading a file: each one's hash follows its bytes.
            let (listing, cache) = try files(id, what: what, hashing: false)
            try reply(listing)
            guard let line = try input.readLine(limit: AgentProtocol.requestLineLimit) else { return 0 }
            return streamFiles(id, files: try JSON.decode(FileWants.self, from: Data(line.utf8), what: "the files wanted").files, cache: cache)
        }
        return 0
    }

    /// The probe's channel kept for the requests that follow (one command per ferry command: each
    /// further command would start the login shell again, and its rc files, conda's and pyenv's
    /// among them, can take longer than the request). Only for the client's own version and
    /// protocol; another ends at once with `notServing` and the probe goes on as before.
    /// Each request is a JSON line (blob_put's frames end at `end`); each answer one line, `=` and
    /// the value or `!` and an `AgentErrorReply`. A request whose answer is a stream
    /// (`takesTheChannel`) is answered as `request` would and ends the session.
    func serve(_ args: [String]) -> Int32 {
        guard args == [version, String(AgentProtocol.version)], var hello = try? JSON.encode(hello()) else { return AgentProtocol.notServing }
        hello.insert(contentsOf: Array("hello=".utf8), at: 0)
        hello.append(contentsOf: Array("\nserving\n".utf8))
        guard (try? FileIO.writeAll(1, hello, path: "stdout")) != nil else { return 0 }
        let input = ByteReader(fd: 0)
        while true {
            var name = AgentProtocol.serveVerb
            var streams = false
            do {
                guard let line = try input.readLine(limit: AgentProtocol.requestLineLimit) else { return 0 }
                let request = try JSON.decode(AgentRequest.self, from: Data(line.utf8), what: "the request on stdin")
                name = request.name
                streams = request.takesTheChannel
                Agent.servedPrefix = streams ? nil : UInt8(ascii: "=")
                if streams { return try handle(request, input: input) == 0 ? 0 : AgentProtocol.servedFailure }
                _ = try handle(request, input: input)
            } catch {
                if !streams { Agent.servedPrefix = UInt8(ascii: "!") }
                replyError(JobsError.from(error, verb: name))
                // A stream's channel is over; a failed blob_put may have left frames unread, which
                // cannot be told from the next request.
                if streams || name == AgentRequest.blobPut.name { return AgentProtocol.servedFailure }
            }
        }
    }

    // MARK: - I/O

    /// On a served channel, the mark before each answer's line (`=` a value, `!` an error).
    nonisolated(unsafe) static var servedPrefix: UInt8?

    func reply<T: Encodable>(_ value: T) throws {
        var data = try JSON.encode(value)
        data.append(0x0A)
        if let mark = Agent.servedPrefix { data.insert(mark, at: 0) }
        try JobsError.system { try FileIO.writeAll(1, data, path: "stdout") }
    }

    private func replyError(_ error: JobsError) {
        if var data = try? JSON.encode(AgentErrorReply(error: error, message: error.description)) {
            data.append(0x0A)
            if Agent.servedPrefix != nil { data.insert(UInt8(ascii: "!"), at: 0) }
            try? FileIO.writeAll(1, data, path: "stdout")
        }
    }
}

extension JobsError {
    /// Any error as the agent reports it: a JobsError as it is, a failed system call as `io`.
    static func from(_ error: any Error, verb: String) -> JobsError {
        switch error {
        case let error as JobsError: return error
        case let error as SystemError: return JobsError(error)
        default: return .agentFailed(host: "agent", verb: verb, message: "\(error)")
        }
    }
}
