import Foundation
import RunContract

/// Everything that can go wrong launching, following, fetching or supervising a job, each with what
/// to do about it.
public enum JobsError: Error, CustomStringConvertible, Equatable, Sendable, Codable {
    case unknownHost(String, known: [String])
    case unknownJob(String)
    case invalidHostName(String)
    case invalidJobName(String)
    case invalidJobID(String)
    case invalidTarget(String, reason: String)
    case hostExists(String)
    case unsafePath(path: String, reason: String)
    case configOutsideWorkingDirectory(config: String, directory: String)
    case configInvalid(config: String, output: String)
    case noSuchFile(String)
    case notEnoughSpace(host: String, needed: Int64, free: Int64, path: String)
    case missingOnHost(host: String, paths: [String])
    case hostLacksLibraries(host: String, libraries: [String])
    case agentUnavailable(host: String, reason: String)
    case agentFailed(host: String, verb: String, message: String)
    case protocolViolation(host: String, detail: String)
    case io(path: String, reason: String)
    case corruptBlob(hash: String, actual: String)
    case jobNotStopped(id: String, state: String)
    case jobNotResumable(id: String, reason: String)
    case supervisorDidNotStart(id: String, detail: String)
    case commandNotFound(String)
    case emptyCommand
    case transferFailed(path: String, reason: String)
    case checksumMismatch(path: String, expected: String, actual: String)
    case nothingToFetch(id: String, what: String)
    case connectionLost(host: String, reason: String, attempts: Int)
    case cancelled
    /// A job with this id is already on the host (a fresh id is drawn and the launch tried again).
    case jobExists(String)
    /// The host has no ferry agent of this version and the command only reads (ls, status, logs, fetch).
    case noAgent(host: String, detail: String)
    /// An sbatch option ferry sets itself, or one it cannot pass on.
    case slurmOptionRefused(option: String, reason: String)
    /// Slurm refused the job at submission (its own words); nothing was left behind.
    case slurmRefused(host: String, reason: String)

    public var description: String {
        switch self {
        case .unknownHost(let name, let known):
            let list = known.isEmpty ? "none yet" : known.joined(separator: ", ")
            return "no host named \(name.debugDescription) (known: \(list)), and no `Host \(name)` block in your ssh config — give --host user@host[:port] or an ssh alias, add it with `ferry hosts add \(name) user@host[:port]`, or use --host local"
        case .unknownJob(let id):
            return "no job \(id.debugDescription) in this machine's registry or on its hosts — list jobs with `ferry ls`"
        case .invalidHostName(let name):
            return "\(name.debugDescription) is not a usable host name: use letters, digits, `.`, `_` and `-` (1 to 64, starting with a letter or digit)"
        case .invalidJobName(let name):
            return "\(name.debugDescription) is not a usable job name: use letters, digits, `.`, `_` and `-` (1 to 48, starting with a letter or digit) — no spaces or shell characters"
        case .invalidJobID(let id):
            return "\(id.debugDescription) is not a job id (ids look like `mnist-20250101-120000-3f9a`) — list jobs with `ferry ls`"
        case .invalidTarget(let target, let reason):
            return "\(target.debugDescription) is not a host address: \(reason) — write user@host[:port] or an alias from ~/.ssh/config"
        case .hostExists(let name):
            return "a host named \(name) is already known — `ferry hosts forget \(name)` first to replace it"
        case .unsafePath(let path, let reason):
            return "refusing path \(path.debugDescription): \(reason)"
        case .configOutsideWorkingDirectory(let config, let directory):
            return "the config \(config) is not inside the working directory \(directory), so the host would not get it — run ferry from the project folder or pass --workdir"
        case .configInvalid(let config, let output):
            let text = output.trimmingCharacters(in: .whitespacesAndNewlines)
            return "\(config) did not pass `ferry train --check` (nothing was uploaded):\n\(text)"
        case .noSuchFile(let path):
            return "no such file: \(path) — give the path of an existing config (relative to the current folder)"
        case .notEnoughSpace(let host, let needed, let free, let path):
            return "\(host) has \(ByteCount.format(free)) free in \(path) but the job needs \(ByteCount.format(needed)) — free some space there, or point the host's ferry home at a larger disk (`ferry hosts add NAME TARGET --ferry-home /big/disk/.ferry`)"
        case .missingOnHost(let host, let paths):
            return "these paths do not exist on \(host): \(paths.joined(separator: ", ")) — copy the data there first, or change the config's data paths"
        case .hostLacksLibraries(let host, let libraries):
            return "\(host) lacks \(libraries.joined(separator: ", ")) and this machine has no copy to send — install them there (Debian: libssh-4, libcurl4, libdnnl2)"
        case .agentUnavailable(let host, let reason):
            return "cannot run ferry's agent on \(host): \(reason)"
        case .agentFailed(let host, let verb, let message):
            return "\(host): \(verb): \(message)"
        case .protocolViolation(let host, let detail):
            return "\(host) answered something ferry cannot read (\(detail)) — is the ferry there a different version? `ferry launch` reinstalls a matching one"
        case .io(let path, let reason):
            return "\(path): \(reason)"
        case .corruptBlob(let hash, let actual):
            return "a file arrived damaged (expected sha256 \(hash), got \(actual)); launch again to resend it"
        case .jobNotStopped(let id, let state):
            return "job \(id) is \(state); only a stopped job (cancelled, failed or lost) can be resumed — cancel it first with `ferry cancel \(id)`"
        case .jobNotResumable(let id, let reason):
            return "job \(id) cannot be resumed: \(reason)"
        case .supervisorDidNotStart(let id, let detail):
            return "the supervisor of job \(id) did not start: \(detail)"
        case .commandNotFound(let command):
            return "\(command.debugDescription): command not found on the host (PATH is searched as the job's environment sets it)"
        case .emptyCommand:
            return "no command: give a config (`ferry launch config.json`) or a command after `--` (`ferry launch -- python train.py`)"
        case .transferFailed(let path, let reason):
            return "transferring \(path) failed: \(reason) — run the same command again to resume"
        case .checksumMismatch(let path, let expected, let actual):
            return "\(path) arrived damaged: sha256 \(actual), expected \(expected) — run the same command again to fetch it afresh"
        case .nothingToFetch(let id, let what):
            return "job \(id) has no \(what) files yet — for a training job, checkpoints appear after the first epoch; `ferry fetch \(id) --what all` takes everything in its output"
        case .connectionLost(let host, let reason, let attempts):
            return "lost the connection to \(host) and \(attempts) attempts to reconnect failed (\(reason)); the job keeps running there — re-attach later with `ferry logs -f ID`"
        case .cancelled:
            return "cancelled"
        case .jobExists(let id):
            return "a job \(id) already exists on the host"
        case .noAgent(let host, let detail):
            return "\(host) has no ferry agent of this version (\(detail)), so it has no jobs of this ferry to show — `ferry launch --host \(host) …` installs one"
        case .slurmOptionRefused(let option, let reason):
            return "refusing \(option.debugDescription): \(reason)"
        case .slurmRefused(let host, let reason):
            return "Slurm on \(host) refused the job (nothing was submitted): \(reason)"
        }
    }
}

/// Byte counts for people.
public enum ByteCount {
    public static func format(_ bytes: Int64) -> String {
        let b = Double(bytes)
        if bytes < 1024 { return "\(bytes) B" }
        if b < 1024 * 1024 { return String(format: "%.1f KiB", b / 1024) }
        if b < 1024 * 1024 * 1024 { return String(format: "%.1f MiB", b / 1_048_576) }
        return String(format: "%.2f GiB", b / 1_073_741_824)
    }
}

extension JobsError: ExitStatusError {
    /// `usage` when the input was wrong and nothing was done (unknown host or job, bad names,
    /// paths or config), else `failed`.
    public var exitStatus: ExitStatus {
        switch self {
        case .unknownHost, .unknownJob, .invalidHostName, .invalidJobName, .invalidJobID, .invalidTarget, .hostExists,
             .configOutsideWorkingDirectory, .configInvalid, .noSuchFile, .emptyCommand, .unsafePath, .slurmOptionRefused:
            return .usage
        default:
            return .failed
        }
    }
}
