import Foundation
import System
#if canImport(Glibc)
import Glibc
#endif

// Log streaming: `job-logs` frames from a byte offset, woken by inotify.

extension Agent {
    /// Writes frames of output.log from `offset` as it grows, until the job is over and every byte
    /// went out (`E`), or `wait` seconds pass (`T`). A bounded long-poll: the client asks again.
    func streamLogs(id: String, offset start: Int64, wait: Double) -> Int32 {
        let paths: JobPaths
        do { paths = try store.paths(id) } catch {
            writeError(JobsError.from(error, verb: "job_logs"))
            return 1
        }
        let deadline = Date().addingTimeInterval(wait)
        let watcher = DirectoryWatcher(paths.directory)
        var offset = start
        var fd: Int32 = -1
        defer { if fd >= 0 { close(fd) } }
        var buffer = [UInt8](repeating: 0, count: 256 * 1024)
        var lastStatusCheck = Date.distantPast
        // A scheduler is asked less often than a status file is read; on a network filesystem
        // inotify misses other clients' writes, so the log is polled (fstat) every 100 ms.
        let statusInterval = ((try? store.spec(id))?.slurm != nil) ? 1.0 : 0.25
        let pollSeconds = POSIX.isNetworkFilesystem(paths.directory) ? 0.1 : 0.25
        while true {
            if fd < 0 { fd = open(paths.log, O_RDONLY | O_CLOEXEC) }
            var size: Int64 = 0
            if fd >= 0 {
                var st = stat()
                if fstat(fd, &st) == 0 { size = Int64(st.st_size) }
            }
            if offset > size && fd >= 0 {
                writeError(.agentFailed(host: "agent", verb: "job_logs", message: "offset \(offset) is past the end of the log (\(size) bytes)"))
                return 1
            }
            if offset - start >= AgentProtocol.logRoundBytes && offset < size {
                // A round carries a bounded number of bytes, so a client catching up on a large log
                // holds at most that much in flight: it asks again at once from here.
                writeFrame("M {\"offset\":\(offset)}\n")
                return 0
            }
            if offset < size {
                let n = buffer.withUnsafeMutableBytes { FileIO.read(fd, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<Int(min(Int64($0.count), size - offset))]), at: offset) }
                if n > 0 {
                    var frame = Data("D \(offset) \(n)\n".utf8)
                    frame.append(contentsOf: buffer[0..<n])
                    guard writeFrame(frame) else { return 1 }
                    offset += Int64(n)
                    continue
                }
            }
            // At the end of what is written: is the job over?
            if Date().timeIntervalSince(lastStatusCheck) > statusInterval || watcher.sawStatusChange {
                lastStatusCheck = Date()
                if let status = try? status(id), status.state.isFinal {
                    // The supervisor wrote its status after the command ended, so the log is complete
                    // unless a leftover member of the group still writes: check the size once more.
                    var st = stat()
                    let finalSize: Int64 = fd >= 0 && fstat(fd, &st) == 0 ? Int64(st.st_size) : (POSIX.fileSize(paths.log) ?? 0)
                    if finalSize > offset || (fd < 0 && POSIX.exists(paths.log)) { continue }
                    let json = (try? JSON.encode(status)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
                    writeFrame("E \(json)\n")
                    return 0
                }
            }
            let left = deadline.timeIntervalSinceNow
            if left <= 0 {
                writeFrame("T {\"offset\":\(offset)}\n")
                return 0
            }
            watcher.wait(milliseconds: Int32(min(left, pollSeconds) * 1000))
        }
    }

    @discardableResult
    private func writeFrame(_ text: String) -> Bool { writeFrame(Data(text.utf8)) }

    /// `X` and the error as the client decodes it.
    private func writeError(_ error: JobsError) {
        let json = (try? JSON.encode(AgentErrorReply(error: error, message: error.description))).map { String(decoding: $0, as: UTF8.self) }
        writeFrame("X " + (json ?? "{}") + "\n")
    }

    @discardableResult
    private func writeFrame(_ data: Data) -> Bool { (try? FileIO.writeAll(1, data, path: "stdout")) != nil }
}

/// Wakes the log streamer when anything in the job's folder changes (inotify), instead of polling.
final class DirectoryWatcher {
    private let fd: Int32
    private(set) var sawStatusChange = false

    init(_ directory: String) {
        let fd = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        if fd >= 0 {
            _ = inotify_add_watch(fd, directory, UInt32(IN_MODIFY | IN_MOVED_TO | IN_CREATE | IN_CLOSE_WRITE))
        }
        self.fd = fd
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Waits up to `milliseconds` for a change (20 ms steps without inotify).
    func wait(milliseconds: Int32) {
        sawStatusChange = false
        guard fd >= 0 else { usleep(UInt32(min(milliseconds, 20)) * 1000); return }
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, milliseconds) > 0 else { return }
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { break }
            // Any rename into the folder is a status write (status.json is replaced atomically).
            var i = 0
            while i + 16 <= n {
                let mask = buffer.withUnsafeBytes { $0.load(fromByteOffset: i + 4, as: UInt32.self) }
                let length = Int(buffer.withUnsafeBytes { $0.load(fromByteOffset: i + 12, as: UInt32.self) })
                if mask & UInt32(IN_MOVED_TO) != 0 { sawStatusChange = true }
                i += 16 + length
            }
        }
    }
}
