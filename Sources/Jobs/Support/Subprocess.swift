import Foundation
import System
#if canImport(Glibc)
import Glibc
#endif

/// Runs a short local program and captures its output (stdout and stderr together): `nvidia-smi`,
/// `ldd`, `ferry train --check`.
public enum Subprocess {
    public struct Result: Sendable {
        public var status: Int32
        public var output: Data
        public var text: String { String(decoding: output, as: UTF8.self) }
    }

    /// Blocks until the program ends or `timeout` seconds pass (then it is killed, status 124).
    public static func capture(_ arguments: [String], environment: [String: String] = ProcessInfo.processInfo.environment,
                               directory: String? = nil, timeout: Double = 60, limit: Int = 4 << 20) -> Result {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return Result(status: 127, output: Data("pipe: \(SystemError.text(errno))".utf8)) }
        let pid: pid_t
        do throws(SystemError) {
            pid = try Spawn.start(arguments, environment: environment, stdin: .null, stdout: .fd(fds[1]), stderr: .fd(fds[1]), newGroup: true,
                                  directory: directory)
        } catch {
            close(fds[0]); close(fds[1])
            return Result(status: 127, output: Data("\(JobsError(error))".utf8))
        }
        close(fds[1])
        var output = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        let deadline = Date().addingTimeInterval(timeout)
        var timedOut = false
        while true {
            let left = deadline.timeIntervalSinceNow
            if left <= 0 { timedOut = true; break }
            var pfd = pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)
            let r = Syscall.retrying { poll(&pfd, 1, Int32(min(left, 1) * 1000)) }
            if r == 0 || (r < 0 && errno == EAGAIN) { continue }
            let n = buffer.withUnsafeMutableBytes { FileIO.read(fds[0], into: $0) }
            if n <= 0 { break }
            if output.count < limit { output.append(contentsOf: buffer[0..<n]) }
        }
        close(fds[0])
        if timedOut { kill(-pid, SIGKILL) }
        let status = Spawn.wait(pid)
        if timedOut { return Result(status: 124, output: output) }
        return Result(status: Spawn.decodeWaitStatus(status).code, output: output)
    }

    /// Runs a program on this terminal (stdin, stdout, stderr inherited) and waits for it. Unlike
    /// Foundation's Process, the child starts with no signal blocked, so Ctrl-C reaches it.
    public static func interactive(_ arguments: [String], environment: [String: String] = ProcessInfo.processInfo.environment,
                                   directory: String? = nil) throws -> Int32 {
        let pid = try JobsError.system { try Spawn.start(arguments, environment: environment, stdin: .inherit, directory: directory) }
        // The child owns the terminal's Ctrl-C; this process waits it out.
        let previous = signal(SIGINT, SIG_IGN)
        defer { signal(SIGINT, previous) }
        return Spawn.decodeWaitStatus(Spawn.wait(pid)).code
    }
}
