import Foundation
import System
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A program ferry starts and supervises (sshd, the ngrok agent, a tunnel command): stdin from
/// /dev/null, stdout and stderr appended to a log file, a clean signal mask, none of our descriptors,
/// and its own process group so stopping it stops what it started. Arguments never hold secrets;
/// those travel in `environment`.
public final class ChildProcess: Sendable {
    public let pid: pid_t
    public let executable: String
    public let arguments: [String]
    public let logFile: String?
    private let state = Mutex<Int32?>(nil)   // the wait status once reaped

    private init(pid: pid_t, executable: String, arguments: [String], logFile: String?) {
        self.pid = pid; self.executable = executable; self.arguments = arguments; self.logFile = logFile
    }

    /// Starts `executable` (an absolute path) with `arguments`. With `newSession`, it leaves our
    /// session and terminal (setsid) — for a detached `host up`; otherwise it gets its own group.
    public static func spawn(_ executable: String, _ arguments: [String], environment: [String: String],
                             logFile: String?, stdinData: Data? = nil, newSession: Bool = false) throws -> ChildProcess {
        var stdinPipe: [Int32] = [-1, -1]
        if stdinData != nil {
            guard pipe(&stdinPipe) == 0 else { throw TunnelError.io(path: executable, reason: "pipe: \(String(cString: strerror(errno)))") }
            _ = fcntl(stdinPipe[1], F_SETFD, FD_CLOEXEC)
        }
        let pid: pid_t
        do throws(SystemError) {
            pid = try Spawn.start([executable] + arguments, environment: environment,
                                  stdin: stdinData == nil ? .null : .fd(stdinPipe[0]),
                                  stdout: .file(logFile ?? "/dev/null", append: true, mode: 0o600), stderr: .sameAs(1),
                                  newSession: newSession, newGroup: !newSession)
        } catch {
            if stdinData != nil { close(stdinPipe[0]); close(stdinPipe[1]) }
            throw TunnelError.io(path: executable, reason: "cannot start it: \(error.reason)")
        }
        if let stdinData {
            close(stdinPipe[0])
            try? FileIO.writeAll(stdinPipe[1], stdinData)   // a child that stops reading early gets what it read
            close(stdinPipe[1])
        }
        return ChildProcess(pid: pid, executable: executable, arguments: arguments, logFile: logFile)
    }

    /// The exit status (128+N for a signal) once it ended; nil while it runs. Never blocks.
    public var exitStatus: Int32? {
        state.withLock { status -> Int32? in
            if let status { return Spawn.decodeWaitStatus(status).code }
            var raw: Int32 = 0
            let r = waitpid(pid, &raw, WNOHANG)
            if r == pid { status = raw; return Spawn.decodeWaitStatus(raw).code }
            if r < 0 && errno == ECHILD { status = 0; return 0 }
            return nil
        }
    }

    public var isRunning: Bool { exitStatus == nil }


    /// Waits (polling, so no thread is parked in waitpid) until it ends, or `timeout` seconds pass.
    @discardableResult
    public func waitForExit(timeout: Double) async -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let status = exitStatus { return status }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return exitStatus
    }

    /// SIGTERM to its process group, then SIGKILL after `grace` seconds; reaps it.
    public func terminate(grace: Double = 5) async {
        guard isRunning else { return }
        signalGroup(SIGTERM)
        if await waitForExit(timeout: grace) == nil {
            signalGroup(SIGKILL)
            await waitForExit(timeout: 5)
        }
    }

    /// Blocking variant of `terminate`, for signal handlers and deinit-like paths.
    public func terminateNow(grace: Double = 5) {
        guard isRunning else { return }
        signalGroup(SIGTERM)
        let deadline = Date().addingTimeInterval(grace)
        while Date() < deadline, isRunning { usleep(20_000) }
        if isRunning { signalGroup(SIGKILL); while isRunning { usleep(20_000) } }
    }

    private func signalGroup(_ sig: Int32) {
        if kill(-pid, sig) != 0 { kill(pid, sig) }
    }

    /// The last `lines` lines of its log, for error messages.
    public func logTail(lines: Int = 20) -> String {
        guard let logFile else { return "" }
        return ChildProcess.tail(of: logFile, lines: lines)
    }

    static func tail(of file: String, lines: Int) -> String {
        guard let data = FileManager.default.contents(atPath: file) else { return "" }
        let text = String(decoding: data.suffix(64 * 1024), as: UTF8.self)
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines + 1)
            .joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Runs a short program to completion, returning its status and combined output.
    static func run(_ executable: String, _ arguments: [String], environment: [String: String] = ProcessInfo.processInfo.environment,
                    stdinData: Data? = nil, timeout: Double = 120) async throws -> (status: Int32, output: String) {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-run-\(UUID().uuidString.prefix(8)).log").path
        defer { unlink(log) }
        let child = try spawn(executable, arguments, environment: environment, logFile: log, stdinData: stdinData)
        guard let status = await child.waitForExit(timeout: timeout) else {
            await child.terminate()
            return (124, ChildProcess.tail(of: log, lines: 40) + "\n(timed out after \(Int(timeout)) s)")
        }
        let output = FileManager.default.contents(atPath: log).map { String(decoding: $0, as: UTF8.self) } ?? ""
        return (status, output.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// The absolute path of `name` on PATH (plus the sbin directories), if any.
    public static func find(_ name: String, path: String? = ProcessInfo.processInfo.environment["PATH"]) -> String? {
        if name.hasPrefix("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
        let dirs = (path ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":").map(String.init) + ["/usr/local/sbin", "/usr/sbin", "/sbin"]
        for dir in dirs where !dir.isEmpty {
            let candidate = (dir as NSString).appendingPathComponent(name)
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}
