import Foundation
import System
#if canImport(Glibc)
import Glibc
#endif

/// What the registry, the agent and the supervisor ask of this machine: folders, sizes, liveness
/// of processes (system calls, atomic files, spawning and locks are System's).
package enum POSIX {
    static func makeDirectory(_ path: String, mode: Int = 0o755) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: mode])
        } catch {
            throw JobsError.io(path: path, reason: "cannot create the folder (\(error.localizedDescription))")
        }
    }

    static func fileSize(_ path: String) -> Int64? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return Int64(st.st_size)
    }

    static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// Reads a whole (small) file.
    static func read(_ path: String) -> Data? { FileManager.default.contents(atPath: path) }

    // MARK: - Processes

    /// Whether `pid` is alive (a zombie counts as gone).
    static func isAlive(_ pid: Int32) -> Bool {
        guard pid > 0 else { return false }
        if kill(pid, 0) != 0 && errno == ESRCH { return false }
        if let state = procStat(pid)?.state, state == "Z" || state == "X" { return false }
        return true
    }

    /// The process's state letter and start time (clock ticks since boot) from /proc/PID/stat;
    /// the start time tells a process from a later one that reused its pid.
    static func procStat(_ pid: Int32) -> (state: String, startTicks: UInt64)? {
        guard let data = read("/proc/\(pid)/stat") else { return nil }
        let text = String(decoding: data, as: UTF8.self)
        // The command name (field 2) is in parentheses and may contain spaces: parse after the last ')'.
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state); start time is field 22.
        guard fields.count > 19, let start = UInt64(fields[19]) else { return nil }
        return (String(fields[0]), start)
    }

    /// This boot's identity: a pid recorded before a reboot means nothing after it.
    static var bootId: String {
        read("/proc/sys/kernel/random/boot_id").map { String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) } ?? ""
    }

    static var hostName: String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count) == 0 else { return "localhost" }
        let bytes = buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func signalName(_ signal: Int32) -> String {
        switch signal {
        case SIGHUP: return "HUP"
        case SIGINT: return "INT"
        case SIGQUIT: return "QUIT"
        case SIGKILL: return "KILL"
        case SIGTERM: return "TERM"
        case SIGSEGV: return "SEGV"
        case SIGABRT: return "ABRT"
        case SIGPIPE: return "PIPE"
        case SIGBUS: return "BUS"
        case SIGILL: return "ILL"
        case SIGFPE: return "FPE"
        default: return "\(signal)"
        }
    }
}

/// JSON as ferry writes it (System's `JSONCoding`), with decoding failures as `JobsError.io`.
enum JSON {
    static func encode<T: Encodable>(_ value: T, pretty: Bool = false) throws -> Data {
        try JSONCoding.encoder(pretty: pretty).encode(value)
    }

    static func decode<T: Decodable>(_ type: T.Type, from data: Data, what: String) throws -> T {
        do { return try JSONCoding.decoder().decode(type, from: data) } catch {
            throw JobsError.io(path: what, reason: "unreadable JSON (\(JSONCoding.describe(error)))")
        }
    }

    /// Replaces the file at `path` with `value` as JSON, atomically (System's `AtomicFile`).
    static func write<T: Encodable>(_ value: T, to path: String, pretty: Bool = true, mode: mode_t = 0o644, durable: Bool = true) throws {
        let data = try encode(value, pretty: pretty)
        try JobsError.system { try AtomicFile.write(data, to: path, mode: .umask(mode), durable: durable) }
    }
}

/// Runs `body` holding the exclusive lock on `path` (System's `FileLock`); a lock that cannot be
/// taken is a `JobsError`.
func withLock<T>(_ path: String, _ body: () throws -> T) throws -> T {
    let lock = try JobsError.system { try FileLock(path) }
    return try withExtendedLifetime(lock) { try body() }
}

extension JobsError {
    /// A failed system call as the error the agent and the CLI report (a missing program as
    /// `commandNotFound`).
    init(_ error: SystemError) {
        if error.operation == "spawn" && error.errno == ENOENT, let program = error.path {
            self = .commandNotFound(program)
        } else if error.operation == "spawn" && error.path == "" {
            self = .emptyCommand
        } else {
            self = .io(path: error.path ?? "", reason: error.operation == "spawn" ? "cannot start it: \(error.reason)" : error.detail)
        }
    }

    /// Runs System calls, reporting a failure as a `JobsError`.
    static func system<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let error as SystemError { throw JobsError(error) }
    }
}
