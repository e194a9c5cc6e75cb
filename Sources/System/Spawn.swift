import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The one way ferry starts a child process (posix_spawn): the job supervisor and the job, the
/// agent, sshd, ngrok, tunnel commands, ProxyCommand, short probes. Foundation's `Process` is not
/// used for children (its single reaper thread blocks behind a child that does not end).
public enum Spawn {
    /// Where a child's standard stream comes from or goes to.
    public enum Stream: Sendable {
        case inherit
        case null
        case fd(Int32)
        /// Opened (created with `mode`) for writing, appended to or truncated.
        case file(String, append: Bool, mode: mode_t = 0o644)
        /// The same as the child's descriptor `of`, set up before (stderr as stdout: `2>&1`).
        case sameAs(Int32)
    }

    /// Starts `arguments[0]` (searched in PATH when it has no `/`) and returns its pid.
    /// - `environment`: exactly these variables; nil passes this process's environment on.
    /// - `newSession` makes it a session and group leader (setsid); `newGroup` only a group leader.
    /// - The signal mask is emptied and every disposition reset, so a child never inherits an
    ///   ignored SIGPIPE or a blocked SIGTERM; `blocked` start blocked in the child, for the
    ///   supervisor: one arriving before it installs its handlers waits instead of killing it,
    ///   and the supervisor drops it then (`Supervisor.catchSignals`).
    /// - No descriptor of ours beyond 0–2 crosses: an inherited SSH channel pipe would keep the
    ///   client's command open for as long as the child lives.
    /// Throws a `SystemError` with operation "spawn" (errno ENOENT: no such program).
    public static func start(_ arguments: [String], environment: [String: String]? = nil, stdin: Stream = .null, stdout: Stream = .inherit,
                             stderr: Stream = .inherit, newSession: Bool = false, newGroup: Bool = false,
                             blocked: [Int32] = [], directory: String? = nil) throws(SystemError) -> pid_t {
        guard let program = arguments.first, !program.isEmpty else { throw SystemError("spawn", path: "", errno: EINVAL) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        func apply(_ stream: Stream, _ target: Int32) {
            switch stream {
            case .inherit: break
            case .null: posix_spawn_file_actions_addopen(&actions, target, "/dev/null", target == 0 ? O_RDONLY : O_WRONLY, 0)
            case .fd(let fd), .sameAs(let fd): posix_spawn_file_actions_adddup2(&actions, fd, target)
            case .file(let path, let append, let mode):
                posix_spawn_file_actions_addopen(&actions, target, path, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), mode)
            }
        }
        apply(stdin, 0); apply(stdout, 1); apply(stderr, 2)
        if let closeFrom = addCloseFrom { _ = closeFrom(&actions, 3) }
        if let directory {
            guard let addChdir else { throw SystemError("spawn in another folder", path: directory, errno: ENOSYS) }
            _ = directory.withCString { addChdir(&actions, $0) }
        }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var flags = Int32(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
        if newSession { flags |= spawnSetSID } else if newGroup { flags |= Int32(POSIX_SPAWN_SETPGROUP) }
        posix_spawnattr_setflags(&attributes, Int16(flags))
        if newGroup && !newSession { posix_spawnattr_setpgroup(&attributes, 0) }
        // Only the child's mask and dispositions are set: this process's stay as they are (it once
        // ignored `blocked` signals itself while a child started, and any child another thread
        // started meanwhile, through Foundation's Process, inherited them ignored).
        var mask = sigset_t()
        sigemptyset(&mask)
        for s in blocked { sigaddset(&mask, s) }
        posix_spawnattr_setsigmask(&attributes, &mask)
        var defaults = sigset_t()
        sigfillset(&defaults)
        posix_spawnattr_setsigdefault(&attributes, &defaults)

        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?]? = environment.map { $0.map { strdup("\($0.key)=\($0.value)") } + [nil] }
        defer {
            for p in argv { free(p) }
            for p in envp ?? [] { free(p) }
        }
        let executable: String
        if program.contains("/") {
            executable = program
        } else {
            let path = environment?["PATH"] ?? ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
            guard let resolved = searchPath(program, in: path) else { throw SystemError("spawn", path: program, errno: ENOENT) }
            executable = resolved
        }
        var pid: pid_t = 0
        let status: Int32
        if let envp {
            status = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        } else {
            status = posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        }
        guard status == 0 else { throw SystemError("spawn", path: program, errno: status) }
        return pid
    }

    /// The first executable `program` in the colon-separated `path`.
    public static func searchPath(_ program: String, in path: String) -> String? {
        for dir in path.split(separator: ":") {
            let candidate = (String(dir) as NSString).appendingPathComponent(program)
            var st = stat()
            if access(candidate, X_OK) == 0 && stat(candidate, &st) == 0 && (st.st_mode & S_IFMT) != S_IFDIR { return candidate }
        }
        return nil
    }

    /// Waits for `pid` to end (retrying EINTR) and returns its raw wait status.
    @discardableResult
    public static func wait(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        _ = Syscall.retrying { waitpid(pid, &status, 0) }
        return status
    }

    /// An exit code in the shell's way: the status, or 128 + the signal.
    public static func decodeWaitStatus(_ status: Int32) -> (code: Int32, signal: Int32?) {
        let signal = status & 0x7f
        if signal == 0 { return ((status >> 8) & 0xff, nil) }
        return (128 + signal, signal)
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
}
