import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Small POSIX helpers the registry, the agent and the supervisor share: atomic files, locks,
/// process spawning, liveness.
package enum POSIX {
    static func errorText(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }

    /// Writes `data` to `path` through a temporary file in the same folder, fsynced, then renamed
    /// over: a reader (or a crash) sees the old content or the new, never half of either.
    package static func writeAtomically(_ data: Data, to path: String, mode: mode_t = 0o644) throws {
        let dir = (path as NSString).deletingLastPathComponent
        let temp = (dir as NSString).appendingPathComponent(".\((path as NSString).lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw JobsError.io(path: path, reason: errorText()) }
        do {
            try writeAll(fd, data, path: path)
            fsync(fd)
            close(fd)
        } catch {
            close(fd); unlink(temp)
            throw error
        }
        guard rename(temp, path) == 0 else {
            let reason = errorText()
            unlink(temp)
            throw JobsError.io(path: path, reason: reason)
        }
    }

    static func writeAll(_ fd: Int32, _ data: Data, path: String) throws {
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            guard let base = raw.baseAddress else { return }
            var done = 0
            while done < raw.count {
                let n = write(fd, base + done, raw.count - done)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw JobsError.io(path: path, reason: errorText()) }
                done += n
            }
        }
    }

    /// Writes at an absolute offset (pwrite): the same bytes at the same offset are idempotent.
    static func writeAll(_ fd: Int32, _ data: Data, at offset: Int64, path: String) throws {
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            guard let base = raw.baseAddress else { return }
            var done = 0
            while done < raw.count {
                let n = pwrite(fd, base + done, raw.count - done, off_t(offset) + off_t(done))
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw JobsError.io(path: path, reason: errorText()) }
                done += n
            }
        }
    }

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
    static var bootID: String {
        read("/proc/sys/kernel/random/boot_id").map { String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) } ?? ""
    }

    /// The path of the running executable.
    static var executablePath: String {
        if let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return path }
        return CommandLine.arguments.first ?? "ferry"
    }

    static var hostName: String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count) == 0 else { return "localhost" }
        let bytes = buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }

    // glibc's POSIX_SPAWN_SETSID (not exported to Swift): the child starts a new session.
    static let spawnSetSID: Int32 = 0x80

    typealias AddChdir = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32
    /// glibc 2.29's posix_spawn_file_actions_addchdir_np.
    static let addChdir: AddChdir? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addchdir_np") else { return nil }
        return unsafeBitCast(symbol, to: AddChdir.self)
    }()

    typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    /// glibc 2.34's posix_spawn_file_actions_addclosefrom_np (a GNU extension Swift does not import).
    static let addCloseFrom: AddCloseFrom? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: AddCloseFrom.self)
    }()

    /// Where a spawned child's standard streams go.
    package enum Stream {
        case inherit
        case null
        case fd(Int32)
        /// Opened (created with `mode`) for writing, appended to or truncated.
        case file(String, append: Bool, mode: mode_t = 0o644)
        /// The same as the child's descriptor `of`, set up before (stderr as stdout: `2>&1`).
        case sameAs(Int32)
    }

    /// Starts `arguments[0]` (searched in PATH when it has no `/`) with exactly `environment`.
    /// `newSession` makes it a session and group leader (setsid); `newGroup` only a group leader.
    /// Signal dispositions and the mask are reset, so a child never inherits an ignored SIGPIPE;
    /// `keepIgnored` are ignored in this process and so in the child (for the supervisor).
    package static func spawn(_ arguments: [String], environment: [String: String], stdin: Stream = .null, stdout: Stream = .inherit,
                      stderr: Stream = .inherit, newSession: Bool = false, newGroup: Bool = false,
                      keepIgnored: [Int32] = [], directory: String? = nil) throws -> pid_t {
        guard let program = arguments.first, !program.isEmpty else { throw JobsError.emptyCommand }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        func apply(_ stream: Stream, _ target: Int32) {
            switch stream {
            case .inherit: break
            case .null: posix_spawn_file_actions_addopen(&actions, target, "/dev/null", target == 0 ? O_RDONLY : O_WRONLY, 0)
            case .fd(let fd): posix_spawn_file_actions_adddup2(&actions, fd, target)
            case .file(let path, let append, let mode):
                posix_spawn_file_actions_addopen(&actions, target, path, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), mode)
            case .sameAs(let fd): posix_spawn_file_actions_adddup2(&actions, fd, target)
            }
        }
        apply(stdin, 0); apply(stdout, 1); apply(stderr, 2)
        // Nothing but the three streams crosses: an inherited SSH channel pipe would keep the
        // client's command open for as long as the child lives.
        if let closeFrom = addCloseFrom { _ = closeFrom(&actions, 3) }
        if let directory {
            guard let addChdir = addChdir else { throw JobsError.io(path: directory, reason: "this C library cannot start a program in another folder") }
            _ = directory.withCString { addChdir(&actions, $0) }
        }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var flags = Int32(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
        if newSession { flags |= spawnSetSID } else if newGroup { flags |= Int32(POSIX_SPAWN_SETPGROUP) }
        posix_spawnattr_setflags(&attributes, Int16(flags))
        if newGroup && !newSession { posix_spawnattr_setpgroup(&attributes, 0) }
        var childMask = sigset_t()
        sigemptyset(&childMask)
        posix_spawnattr_setsigmask(&attributes, &childMask)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGQUIT, SIGUSR1, SIGUSR2] where !keepIgnored.contains(s) { sigaddset(&defaults, s) }
        // An ignored disposition survives exec: the child starts with these ignored, no window in
        // which they would kill it before it installs its own handlers.
        for s in keepIgnored { signal(s, SIG_IGN) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)

        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        var pid: pid_t = 0
        let status: Int32
        if program.contains("/") {
            status = posix_spawn(&pid, program, &actions, &attributes, argv, envp)
        } else {
            guard let resolved = searchPath(program, in: environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin") else {
                throw JobsError.commandNotFound(program)
            }
            status = posix_spawn(&pid, resolved, &actions, &attributes, argv, envp)
        }
        guard status == 0 else {
            if status == ENOENT { throw JobsError.commandNotFound(program) }
            throw JobsError.io(path: program, reason: "cannot start it: \(errorText(status))")
        }
        return pid
    }

    static func searchPath(_ program: String, in path: String) -> String? {
        for dir in path.split(separator: ":") {
            let candidate = (String(dir) as NSString).appendingPathComponent(program)
            if access(candidate, X_OK) == 0 && !isDirectory(candidate) { return candidate }
        }
        return nil
    }

    /// Exit code in the shell's way: the status, or 128 + the signal.
    static func decodeWaitStatus(_ status: Int32) -> (code: Int32, signal: Int32?) {
        let signal = status & 0x7f
        if signal == 0 { return ((status >> 8) & 0xff, nil) }
        return (128 + signal, signal)
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

/// An exclusive advisory lock on a file (flock): held by an open file description, so it excludes
/// other processes and other threads of this one alike, and dies with the process.
final class FileLock {
    private let fd: Int32

    /// Blocks until the lock on `path` (created if missing) is held.
    init(_ path: String) throws {
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw JobsError.io(path: path, reason: "cannot open the lock file: \(POSIX.errorText())") }
        while flock(fd, LOCK_EX) != 0 {
            if errno == EINTR { continue }
            let reason = POSIX.errorText()
            close(fd)
            throw JobsError.io(path: path, reason: "cannot lock: \(reason)")
        }
    }

    /// Tries once; nil when another holder has it.
    init?(trying path: String) {
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return nil }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { close(fd); return nil }
    }

    deinit { close(fd) }

    /// Runs `body` holding the lock on `path`.
    static func with<T>(_ path: String, _ body: () throws -> T) throws -> T {
        let lock = try FileLock(path)
        defer { withExtendedLifetime(lock) {} }
        return try body()
    }
}

/// JSON as ferry writes it everywhere (sorted keys, dates as seconds since 1970). Multi-word keys are
/// snake_case through explicit CodingKeys: a key strategy would also rewrite dictionary keys (env names).
enum JSON {
    static func encoder(pretty: Bool = false) -> JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        e.dateEncodingStrategy = .secondsSince1970
        return e
    }

    static func decoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .secondsSince1970
        return d
    }

    static func encode<T: Encodable>(_ value: T, pretty: Bool = false) throws -> Data {
        try encoder(pretty: pretty).encode(value)
    }

    static func decode<T: Decodable>(_ type: T.Type, from data: Data, what: String) throws -> T {
        do { return try decoder().decode(type, from: data) } catch {
            throw JobsError.io(path: what, reason: "unreadable JSON (\(Self.describe(error)))")
        }
    }

    static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, let ctx):
            return "missing \(key.stringValue) at \(ctx.codingPath.map(\.stringValue).joined(separator: "."))"
        case DecodingError.typeMismatch(_, let ctx), DecodingError.valueNotFound(_, let ctx), DecodingError.dataCorrupted(let ctx):
            return "\(ctx.debugDescription) at \(ctx.codingPath.map(\.stringValue).joined(separator: "."))"
        default: return "\(error)"
        }
    }
}
