import Foundation
import System

/// The agent's protocol. The bootstrap — `ferry agent [--home DIR] hello [--preflight]`, answered
/// by `AgentHello` — stays byte-compatible forever: it is how a client finds out what it talks to.
/// Everything else is `ferry agent [--home DIR] request` with one `AgentRequest` as a JSON line on
/// stdin (then, for `blobPut`, the blob frames), answered by one JSON object on stdout (exit 0) or
/// an `AgentErrorReply` carrying a `JobsError` (exit 1); `jobLogs` answers in `LogFrame`s.
/// The names below are the only spelling of the protocol's words, for both sides.
public enum AgentProtocol {
    /// Bumped when a request changes incompatibly; the client reinstalls an agent that differs.
    /// 2: typed requests on stdin (1 had verbs and --flags in argv). 3: `filesGet` (fetch through
    /// the agent's stream, no SFTP), listings with modes and local paths, `--what` path rules.
    /// 4: `filesFetch` (the listing and the files on one channel); the store keeps contents in packs.
    /// 5: `serve` (the probe's channel carries the requests that follow); `blobPut` ends at `end`.
    /// 6: `filesFetch` lists without reading files (a hash only when cached); each file's sha256
    /// follows its bytes (`H`), and a copy the client has is compared on the host (`U`).
    public static let version = 6
    /// `ferry agent`: the CLI's subcommand that is the agent.
    public static let subcommand = "agent"
    public static let homeFlag = "--home"
    static let helloVerb = "hello"
    static let requestVerb = "request"
    /// `serve VERSION PROTOCOL`: when those are this agent's, `hello=`, `serving`, then one request
    /// after another on the same channel (`Agent.serve`); else it ends with `notServing` at once.
    static let serveVerb = "serve"
    static let notServing: Int32 = 3
    /// A served session's status when its last request failed (never 1: an older agent, which does
    /// not know `serve`, ends with 1 and the probe goes on to ask it `hello`).
    static let servedFailure: Int32 = 4
    /// The line that ends `blobPut`'s frames on a served channel (elsewhere the input's end does).
    static let blobsEnd = "end"
    /// The detached supervisor the agent starts on its own host.
    static let superviseVerb = "supervise"
    /// A supervisor started at a launch's preflight, waiting on stdin for its job's id (`StandbySupervisor`).
    static let standbyVerb = "standby"
    /// A Slurm job's batch script runs it on the compute node before the payload.
    static let nodeCheckVerb = "node-check"
    /// After a job with many files starts: a detached, low-priority copy of its tree for the next launch (`SpareWork`).
    static let prepareWorkVerb = "prepare-work"
    /// A request line holds at most a job's manifest.
    static let requestLineLimit = 256 << 20
    /// Log bytes one `jobLogs` round sends before it ends with `M` (more: ask again at once).
    static let logRoundBytes: Int64 = 4 << 20
}

/// What a client asks the agent, one JSON line: `{"job_logs":{"id":"…","offset":0,"wait":20}}`.
enum AgentRequest: Codable, Sendable {
    case preflight(request: PreflightRequest)
    case blobsMissing(hashes: [String])
    /// Blob frames follow the request line: `SHA SIZE OFFSET\n` + bytes, each.
    case blobPut
    case jobStart(JobStartRequest)
    case jobResume(id: String)
    case jobStatus(id: String)
    case jobList
    /// Log bytes from `offset`, waiting up to `wait` seconds for more (a bounded long-poll).
    case jobLogs(id: String, offset: Int64, wait: Double)
    /// SIGTERM to the job's group, SIGKILL after `grace` seconds (the spec's when nil).
    case jobCancel(id: String, grace: Int?)
    /// `best`, `last`, `all`, `log`, `events`, or a path P: `work/P`, else `output/P` (both: an error).
    case jobFiles(id: String, what: String)
    /// Listed files of a job, streamed back as `FilesFrame`s (each from its offset: a resume).
    case filesGet(id: String, files: [FileWant])
    /// A fetch on one channel: the listing of `what` (as `jobFiles`, one JSON line), then the
    /// client's choice on stdin (a JSON line, `[FileWant]`), then those files as `filesGet` streams them.
    case filesFetch(id: String, what: String)

    /// For messages: `job_logs`.
    /// Whether its answer is a stream that takes the rest of its channel (logs, files, a start
    /// that follows its log): on a served channel it is the last request.
    var takesTheChannel: Bool {
        switch self {
        case .jobLogs, .filesGet, .filesFetch: return true
        case .jobStart(let start): return start.follow != nil
        default: return false
        }
    }

    var name: String {
        switch self {
        case .preflight: return "preflight"
        case .blobsMissing: return "blobs_missing"
        case .blobPut: return "blob_put"
        case .jobStart: return "job_start"
        case .jobResume: return "job_resume"
        case .jobStatus: return "job_status"
        case .jobList: return "job_list"
        case .jobLogs: return "job_logs"
        case .jobCancel: return "job_cancel"
        case .jobFiles: return "job_files"
        case .filesGet: return "files_get"
        case .filesFetch: return "files_fetch"
        }
    }
}

public struct AgentHello: Codable, Sendable {
    public var ferry: String
    public var protocolVersion: Int
    public var home: String
    public var binary: String
    public var system: String
    enum CodingKeys: String, CodingKey {
        case ferry, home, binary, system
        case protocolVersion = "protocol"
    }
}

public struct PreflightRequest: Codable, Sendable {
    /// Bytes the job needs on the host's disk besides its files (what it will write).
    public var neededBytes: Int64
    /// Absolute paths (or `~/…`) the job reads on the host, e.g. a config's data_dir.
    public var paths: [String]
    /// Whether the job trains with ferry's engine (then oneDNN must load).
    public var needsEngine: Bool
    /// The job's file contents (sha256 → size): the answer says which the host lacks, and the
    /// space check counts them (sent once into the store, copied once into work/).
    public var blobs: [String: Int64]?
    /// GPUs the job asks for by count (`--gpus 2`): the host must have that many.
    public var gpuCount: Int?
    /// The model's parameters in bytes (a train job), for the host to weigh against its memory.
    public var modelBytes: Int64?
    public init(neededBytes: Int64 = 0, paths: [String] = [], needsEngine: Bool = false, blobs: [String: Int64]? = nil,
                gpuCount: Int? = nil, modelBytes: Int64? = nil) {
        self.neededBytes = neededBytes; self.paths = paths; self.needsEngine = needsEngine; self.blobs = blobs
        self.gpuCount = gpuCount; self.modelBytes = modelBytes
    }

    /// `blobs` travels as `CompactRecords` (sha256, size): 10,000 of them for a typical launch,
    /// which as an object of 10,000 keys cost far more to encode and decode.
    private enum CodingKeys: String, CodingKey { case neededBytes, paths, needsEngine, blobs, gpuCount, modelBytes }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(neededBytes, forKey: .neededBytes)
        try c.encode(paths, forKey: .paths)
        try c.encode(needsEngine, forKey: .needsEngine)
        if let blobs {
            var records = CompactRecords(capacity: blobs.count * 80)
            for (hash, size) in blobs.sorted(by: { $0.key < $1.key }) { records.append(hash, String(size)) }
            try c.encode(records.text, forKey: .blobs)
        }
        try c.encodeIfPresent(gpuCount, forKey: .gpuCount)
        try c.encodeIfPresent(modelBytes, forKey: .modelBytes)
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        neededBytes = try c.decode(Int64.self, forKey: .neededBytes)
        paths = try c.decode([String].self, forKey: .paths)
        needsEngine = try c.decode(Bool.self, forKey: .needsEngine)
        if let text = try c.decodeIfPresent(String.self, forKey: .blobs) {
            var blobs: [String: Int64] = [:]
            let whole = CompactRecords.parse(text, fields: 2) { f in
                guard let size = Int64(f[1]) else { return false }
                blobs[String(f[0])] = size
                return true
            }
            guard whole else { throw DecodingError.dataCorruptedError(forKey: .blobs, in: c, debugDescription: "not sha256 and size records") }
            self.blobs = blobs
        } else {
            blobs = nil
        }
        gpuCount = try c.decodeIfPresent(Int.self, forKey: .gpuCount)
        modelBytes = try c.decodeIfPresent(Int64.self, forKey: .modelBytes)
    }
}

public struct GPUInfo: Codable, Sendable, Equatable {
    public var index: Int
    public var name: String
    public var memoryTotalMib: Int?
    public var memoryUsedMib: Int?
    public var utilizationPercent: Int?
}

/// A library check: loaded, or why not.
public struct LibraryCheck: Codable, Sendable, Equatable {
    public var available: Bool
    public var detail: String
    public init(available: Bool, detail: String) { self.available = available; self.detail = detail }
    /// A preflight for a job that does not run ferry's engine (a shell command) skips its checks.
    public static let notChecked = LibraryCheck(available: false, detail: "not checked: the job does not run ferry's engine")
}

public struct PreflightReport: Codable, Sendable {
    public var ferry: String
    public var home: String
    public var freeBytes: Int64?
    public var cpus: Int
    public var gpus: [GPUInfo]
    /// What `nvidia-smi` said when it failed; nil when it ran or is absent.
    public var nvidiaSmi: String?
    public var cuda: LibraryCheck
    public var oneDNN: LibraryCheck
    /// CPU features the engine needs that this CPU lacks.
    public var cpuMissing: [String]
    public var missingPaths: [String]
    /// Shared libraries that would not load (e.g. `libgomp.so.1`), from the loader's messages.
    public var missingLibraries: [String]
    /// Problems that stop the job from starting, each a sentence.
    public var problems: [String]
    /// Of the request's blobs, those the host lacks, and bytes of them already received.
    public var missing: BlobsMissingReply?
    /// Bytes of disk the job needs in all, as the host counted them.
    public var neededBytes: Int64
    /// Where `sbatch` is on the host's PATH: a Slurm login node (then `hosts add --slurm` submits to it).
    public var sbatch: String? = nil

    /// snake_case as everywhere (System's `JSONCoding`), but the library check is spelled "onednn".
    enum CodingKeys: String, CodingKey {
        case ferry, home, cpus, gpus, cuda, problems, missing, neededBytes, freeBytes, nvidiaSmi, cpuMissing, missingPaths, missingLibraries, sbatch
        case oneDNN = "onednn"
    }
}

public struct BlobsMissingReply: Codable, Sendable {
    public var missing: [String]
    /// Bytes already on the host for a missing blob whose upload was interrupted.
    public var partial: [String: Int64]
}

struct JobStartRequest: Codable, Sendable {
    var spec: JobSpec
    var manifest: Manifest
    /// Stream the log on the same channel right after the answer, for up to this many seconds.
    var follow: Double?
}

/// A job as the host sees it.
public struct JobInfo: Codable, Sendable {
    public var spec: JobSpec
    public var status: JobStatus
    public var progress: JobProgress
    /// The job's folder on the host (absolute).
    public var directory: String
    public var logBytes: Int64
}

public struct JobList: Codable, Sendable {
    public var jobs: [JobInfo]
}

/// Files of a job to fetch, relative to `root` (the job's folder).
public struct FileListing: Codable, Sendable {
    public struct Entry: Codable, Sendable, Equatable {
        public var path: String
        public var size: Int64
        public var sha256: String
        public var modified: Date
        /// Its permission bits on the host (a fetched copy gets them, never wider).
        public var mode: Int?
        /// Where it lands, relative to the destination (`--what P` lands at `DEST/P/…`).
        public var local: String?
    }
    public var root: String
    public var files: [Entry]
    public var state: JobState

    /// `entries`: the files as `CompactRecords` (path, size, sha256, modified seconds, mode or
    /// empty, `=` and where it lands or empty): a listing of 10,000 files is one JSON string.
    private enum CodingKeys: String, CodingKey { case root, entries, state }

    public init(root: String, files: [Entry], state: JobState) {
        self.root = root; self.files = files; self.state = state
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        var records = CompactRecords(capacity: files.count * 128)
        for f in files {
            records.append(f.path, String(f.size), f.sha256, String(f.modified.timeIntervalSince1970), f.mode.map { String($0) } ?? "",
                           f.local.map { "=" + $0 } ?? "")
        }
        try c.encode(root, forKey: .root)
        try c.encode(records.text, forKey: .entries)
        try c.encode(state, forKey: .state)
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        root = try c.decode(String.self, forKey: .root)
        state = try c.decode(JobState.self, forKey: .state)
        var files: [Entry] = []
        let whole = CompactRecords.parse(try c.decode(String.self, forKey: .entries), fields: 6) { f in
            guard let size = Int64(f[1]), let seconds = Double(f[3]) else { return false }
            let mode: Int?
            if f[4].isEmpty { mode = nil } else { guard let m = Int(f[4]) else { return false }; mode = m }
            guard f[5].isEmpty || f[5].hasPrefix("=") else { return false }
            files.append(Entry(path: String(f[0]), size: size, sha256: String(f[2]), modified: Date(timeIntervalSince1970: seconds),
                               mode: mode, local: f[5].isEmpty ? nil : String(f[5].dropFirst())))
            return true
        }
        guard whole else { throw DecodingError.dataCorruptedError(forKey: .entries, in: c, debugDescription: "not a listing's records") }
        self.files = files
    }
}

/// One file a `filesGet` asks for: its path in the job's folder, and the bytes already here.
struct FileWant: Codable, Sendable, Equatable {
    var path: String
    var offset: Int64
    /// The sha256 of the client's copy, of the listed size, when the listing gave no hash: the
    /// agent answers `U` (unchanged, nothing sent) when the host's file hashes the same.
    var have: String?
    init(path: String, offset: Int64, have: String? = nil) { self.path = path; self.offset = offset; self.have = have }
}

/// The files a fetch wants, on its channel after the listing: one `CompactRecords` string (path,
/// offset, `have` or empty) instead of an object per file.
struct FileWants: Codable, Equatable {
    var files: [FileWant]
    init(_ files: [FileWant]) { self.files = files }
    private enum CodingKeys: String, CodingKey { case wants }
    func encode(to encoder: any Encoder) throws {
        var records = CompactRecords(capacity: files.count * 48)
        for f in files { records.append(f.path, String(f.offset), f.have ?? "") }
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(records.text, forKey: .wants)
    }
    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        var files: [FileWant] = []
        let whole = CompactRecords.parse(try c.decode(String.self, forKey: .wants), fields: 3) { f in
            guard let offset = Int64(f[1]) else { return false }
            files.append(FileWant(path: String(f[0]), offset: offset, have: f[2].isEmpty ? nil : String(f[2])))
            return true
        }
        guard whole else { throw DecodingError.dataCorruptedError(forKey: .wants, in: c, debugDescription: "not path, offset and hash records") }
        self.files = files
    }
}

struct AgentErrorReply: Codable {
    var error: JobsError?
    var message: String
}

/// What `job-logs` writes: the log's bytes from an offset, in frames, then how it ended.
///
///     D OFFSET LENGTH\n<LENGTH bytes>     bytes of output.log starting at OFFSET
///     E {status json}\n                   the job is over and every byte was sent
///     T {"offset":N}\n                   the long-poll's time is up; ask again from N
///     M {"offset":N}\n                   the round's bytes are sent and more are there: ask again at once
///     X {AgentErrorReply json}\n          a problem (unknown job, offset past the end)
public enum LogFrame: Sendable, Equatable {
    case data(offset: Int64, bytes: Data)
    case end(JobStatus)
    case timeout(offset: Int64)
    case more(offset: Int64)
    case error(JobsError)
}

/// Reassembles frames from a byte stream that arrives in arbitrary pieces.
struct LogFrameParser {
    private var buffer = Data()
    private var pendingData: (offset: Int64, length: Int)?

    mutating func append(_ data: Data) { buffer.append(data) }

    /// The next complete frame, or nil until more bytes arrive.
    mutating func next() throws -> LogFrame? {
        if let pending = pendingData {
            guard buffer.count >= pending.length else { return nil }
            let bytes = buffer.prefix(pending.length)
            buffer.removeFirst(pending.length)
            pendingData = nil
            return .data(offset: pending.offset, bytes: Data(bytes))
        }
        guard let nl = buffer.firstIndex(of: 0x0A) else {
            if buffer.count > 1 << 20 { throw LogFrameError.malformed("a header without a newline") }
            return nil
        }
        let header = String(decoding: buffer[buffer.startIndex..<nl], as: UTF8.self)
        buffer.removeSubrange(buffer.startIndex...nl)
        guard let kind = header.first else { throw LogFrameError.malformed("an empty header") }
        let rest = header.dropFirst(2)
        switch kind {
        case "D":
            let fields = rest.split(separator: " ")
            guard fields.count == 2, let offset = Int64(fields[0]), let length = Int(fields[1]), offset >= 0, length >= 0, length <= 64 << 20 else {
                throw LogFrameError.malformed(String(header.prefix(80)))
            }
            pendingData = (offset, length)
            return try next()
        case "E":
            guard let status = try? JSONCoding.decoder().decode(JobStatus.self, from: Data(rest.utf8)) else {
                throw LogFrameError.malformed(String(header.prefix(80)))
            }
            return .end(status)
        case "T":
            struct T: Codable { var offset: Int64 }
            guard let t = try? JSONCoding.decoder().decode(T.self, from: Data(rest.utf8)) else { throw LogFrameError.malformed(String(header.prefix(80))) }
            return .timeout(offset: t.offset)
        case "M":
            struct M: Codable { var offset: Int64 }
            guard let m = try? JSONCoding.decoder().decode(M.self, from: Data(rest.utf8)) else { throw LogFrameError.malformed(String(header.prefix(80))) }
            return .more(offset: m.offset)
        case "X":
            let reply = try? JSONCoding.decoder().decode(AgentErrorReply.self, from: Data(rest.utf8))
            return .error(reply?.error ?? .agentFailed(host: "agent", verb: "job_logs", message: reply?.message ?? String(rest)))
        default:
            throw LogFrameError.malformed(String(header.prefix(80)))
        }
    }

    /// Whether a data frame is half received.
    var isMidFrame: Bool { pendingData != nil || !buffer.isEmpty }
}

enum LogFrameError: Error, CustomStringConvertible {
    case malformed(String)
    var description: String {
        switch self { case .malformed(let what): return "malformed log frame: \(what.debugDescription)" }
    }
}
