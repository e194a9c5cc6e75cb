import CLibSSH
import Crypto
import Foundation
import System

/// SFTP over a session: metadata operations, and transfers that resume, verify, and land atomically
/// (written to `NAME.ferry-partial`, then renamed). Keeps its session open.
///
/// A transfer occupies its session's thread until done: channels already open (a followed log, a
/// forward) keep flowing meanwhile, but new calls on the same session wait for it. Open a second
/// session to start other work during a long transfer.
public final class SFTPClient: Sendable {
    public let session: SSHSession
    let handle: LoopBound<SFTPHandle>

    init(session: SSHSession, handle: LoopBound<SFTPHandle>) {
        self.session = session; self.handle = handle
    }

    /// The suffix of files being written.
    public static let partialSuffix = ".ferry-partial"

    private func run<T: Sendable>(_ body: @escaping @Sendable (SFTPHandle) throws -> T) async throws -> T {
        let handle = self.handle
        return try await session.core.submit { _ in try body(handle.value) }
    }

    /// Metadata of `path` (following symlinks), or nil when nothing is there.
    public func info(_ path: String) async throws -> SFTPFileInfo? { try await run { try $0.stat(path) } }

    /// Metadata of `path` itself (a symlink is `.symlink`), or nil when nothing is there.
    public func linkInfo(_ path: String) async throws -> SFTPFileInfo? { try await run { try $0.stat(path, following: false) } }

    /// The entries of a directory, without `.` and `..`.
    public func list(_ directory: String) async throws -> [SFTPFileInfo] { try await run { try $0.list(directory) } }

    /// Creates `path` and any missing parents (`mkdir -p`).
    public func makeDirectory(_ path: String, mode: UInt32 = 0o755) async throws { try await run { try $0.makeDirectories(path, mode: mode) } }

    /// Removes a file, or an empty directory.
    public func remove(_ path: String) async throws { try await run { try $0.remove(path) } }

    /// Renames; an existing destination is replaced when `overwrite` (SFTP v3 renames never replace,
    /// so the destination is removed first — not atomic against a concurrent writer).
    public func rename(_ from: String, to: String, overwrite: Bool = true) async throws {
        try await run { try $0.rename(from, to, overwrite: overwrite) }
    }

    /// Uploads a local file to `remotePath`.
    public func upload(_ localPath: String, to remotePath: String, options: SFTPTransferOptions = SFTPTransferOptions(),
                       progress: (@Sendable (SFTPProgress) -> Void)? = nil) async throws -> SFTPTransferResult {
        let flag = AtomicFlag()
        return try await withTaskCancellationHandler {
            try await run { try $0.upload(localPath, to: remotePath, options: options, progress: progress, cancel: flag) }
        } onCancel: { flag.set() }
    }

    /// Downloads `remotePath` to a local file, pipelining read requests.
    public func download(_ remotePath: String, to localPath: String, options: SFTPTransferOptions = SFTPTransferOptions(),
                         progress: (@Sendable (SFTPProgress) -> Void)? = nil) async throws -> SFTPTransferResult {
        let flag = AtomicFlag()
        return try await withTaskCancellationHandler {
            try await run { try $0.download(remotePath, to: localPath, options: options, progress: progress, cancel: flag) }
        } onCancel: { flag.set() }
    }

    /// Downloads the regular files of a remote directory tree into `localDirectory`. Every name from
    /// the listing is checked first: a hostile server cannot make it write outside `localDirectory`.
    public func downloadDirectory(_ remoteDirectory: String, to localDirectory: String,
                                  options: SFTPTransferOptions = SFTPTransferOptions()) async throws -> [SFTPTransferResult] {
        try FileManager.default.createDirectory(atPath: localDirectory, withIntermediateDirectories: true)
        var results: [SFTPTransferResult] = []
        for entry in try await list(remoteDirectory) {
            let local = try SFTPClient.localPath(forRemoteName: entry.name, in: localDirectory)
            let remote = remoteDirectory.hasSuffix("/") ? remoteDirectory + entry.name : remoteDirectory + "/" + entry.name
            switch entry.kind {
            case .file: results.append(try await download(remote, to: local, options: options))
            case .directory: results += try await downloadDirectory(remote, to: local, options: options)
            case .symlink, .other: continue   // never follow links out of the tree
            }
        }
        return results
    }

    /// Where a remote directory entry may be written locally; throws for names that would escape
    /// `directory` (empty, `.`, `..`, containing `/` or NUL, hence also absolute ones).
    public static func localPath(forRemoteName name: String, in directory: String) throws -> String {
        guard !name.isEmpty, name != ".", name != "..", !name.contains("/"), !name.utf8.contains(0) else {
            throw SSHError.unsafeRemoteName(name: name, directory: directory)
        }
        let base = URL(fileURLWithPath: directory).standardizedFileURL.path
        let joined = URL(fileURLWithPath: base).appendingPathComponent(name).standardizedFileURL.path
        guard (joined as NSString).deletingLastPathComponent == base else {
            throw SSHError.unsafeRemoteName(name: name, directory: directory)
        }
        return joined
    }

    /// Ends the SFTP subsystem channel (the session stays open).
    public func close() async {
        _ = try? await run { $0.free() }
    }
}

extension SSHSession {
    /// Starts the SFTP subsystem.
    public func openSFTP() async throws -> SFTPClient {
        let handle = try await core.submit { core -> LoopBound<SFTPHandle> in
            let handle = try SFTPHandle(core: core)
            core.closers.append { [weak handle] in handle?.free() }
            return LoopBound(handle)
        }
        return SFTPClient(session: self, handle: handle)
    }
}

/// The libssh SFTP session and the blocking work on it. Loop-confined.
final class SFTPHandle {
    unowned let core: SessionCore
    private(set) var sftp: sftp_session?
    /// The deepest read pipeline seen (tests prove it is ≥ 16).
    var maxInFlight = 0

    /// The subsystem's stderr, drained (see ferry_drain_stderr): freed after the channel.
    private var stderrSink: UnsafeMutablePointer<ferry_stderr_sink>?

    init(core: SessionCore) throws {
        self.core = core
        guard let session = core.session, let sftp = sftp_new(session) else { throw core.channelError("start SFTP") }
        guard let sink = ferry_drain_stderr(ferry_sftp_channel(sftp)) else {
            sftp_free(sftp)
            throw SSHError.sftpFailed(path: "", operation: "start", reason: "cannot watch the SFTP channel's stderr")
        }
        guard sftp_init(sftp) == SSH_OK else {
            var reason = core.lastError
            let said = Self.text(of: sink)
            if !said.isEmpty { reason += " (the server said: \(said))" }
            sftp_free(sftp)
            Glibc.free(sink)
            throw SSHError.sftpFailed(path: "", operation: "start", reason: reason)
        }
        self.sftp = sftp
        stderrSink = sink
    }

    func free() {
        if let sftp { sftp_free(sftp) }
        sftp = nil
        if let stderrSink { Glibc.free(stderrSink) }
        stderrSink = nil
    }

    /// What the sink kept, trimmed.
    private static func text(of sink: UnsafeMutablePointer<ferry_stderr_sink>) -> String {
        withUnsafeBytes(of: sink.pointee.text) { raw in
            String(decoding: raw.prefix(Int(sink.pointee.length)), as: UTF8.self)
        }.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private func live() throws -> sftp_session {
        guard let sftp else { throw SSHError.sftpFailed(path: "", operation: "use", reason: "the SFTP client was closed") }
        return sftp
    }

    func error(_ path: String, _ operation: String) -> SSHError {
        if let dead = core.deadError { return dead }
        guard let sftp else { return .sftpFailed(path: path, operation: operation, reason: "the SFTP client was closed") }
        let code = sftp_get_error(sftp)
        let reason: String
        switch code {
        case Int32(SSH_FX_NO_SUCH_FILE): reason = "no such file or directory"
        case Int32(SSH_FX_PERMISSION_DENIED): reason = "permission denied"
        case Int32(SSH_FX_FILE_ALREADY_EXISTS): reason = "already exists"
        case Int32(SSH_FX_EOF): reason = "unexpected end of file"
        case Int32(SSH_FX_OK): reason = core.lastError
        default: reason = "\(core.lastError) (SFTP status \(code))"
        }
        return .sftpFailed(path: path, operation: operation, reason: reason)
    }

    private func isNoSuchFile() -> Bool {
        guard let sftp else { return false }
        return sftp_get_error(sftp) == Int32(SSH_FX_NO_SUCH_FILE)
    }

    static func info(_ a: sftp_attributes, name: String? = nil) -> SFTPFileInfo {
        let kind: SFTPFileInfo.Kind
        switch Int32(a.pointee.type) {
        case Int32(SSH_FILEXFER_TYPE_REGULAR): kind = .file
        case Int32(SSH_FILEXFER_TYPE_DIRECTORY): kind = .directory
        case Int32(SSH_FILEXFER_TYPE_SYMLINK): kind = .symlink
        default: kind = .other
        }
        return SFTPFileInfo(name: name ?? a.pointee.name.map { String(cString: $0) } ?? "", kind: kind, size: a.pointee.size,
                            permissions: a.pointee.permissions & 0o7777, modified: Date(timeIntervalSince1970: TimeInterval(a.pointee.mtime)))
    }

    func stat(_ path: String, following: Bool = true) throws -> SFTPFileInfo? {
        let sftp = try live()
        guard let a = following ? sftp_stat(sftp, path) : sftp_lstat(sftp, path) else {
            if isNoSuchFile() { return nil }
            throw error(path, "stat")
        }
        defer { sftp_attributes_free(a) }
        return SFTPHandle.info(a, name: (path as NSString).lastPathComponent)
    }

    func list(_ directory: String) throws -> [SFTPFileInfo] {
        let sftp = try live()
        guard let dir = sftp_opendir(sftp, directory) else { throw error(directory, "list") }
        defer { _ = sftp_closedir(dir) }
        var entries: [SFTPFileInfo] = []
        while let a = sftp_readdir(sftp, dir) {
            let entry = SFTPHandle.info(a)
            sftp_attributes_free(a)
            if entry.name == "." || entry.name == ".." { continue }
            entries.append(entry)
        }
        guard sftp_dir_eof(dir) != 0 else { throw error(directory, "list") }
        return entries
    }

    func makeDirectories(_ path: String, mode: UInt32) throws {
        let sftp = try live()
        var prefix = path.hasPrefix("/") ? "/" : ""
        for component in path.split(separator: "/") {
            prefix += (prefix.isEmpty || prefix.hasSuffix("/") ? "" : "/") + component
            if let existing = try stat(prefix) {
                guard existing.kind == .directory else {
                    throw SSHError.sftpFailed(path: prefix, operation: "mkdir", reason: "exists and is not a directory")
                }
                continue
            }
            if sftp_mkdir(sftp, prefix, mode_t(mode)) != 0 {
                // Someone else may have made it meanwhile.
                guard try stat(prefix)?.kind == .directory else { throw error(prefix, "mkdir") }
            }
        }
    }

    func remove(_ path: String) throws {
        let sftp = try live()
        guard let a = sftp_lstat(sftp, path) else { throw error(path, "remove") }
        let isDirectory = Int32(a.pointee.type) == Int32(SSH_FILEXFER_TYPE_DIRECTORY)
        sftp_attributes_free(a)
        let rc = isDirectory ? sftp_rmdir(sftp, path) : sftp_unlink(sftp, path)
        guard rc == 0 else { throw error(path, "remove") }
    }

    func rename(_ from: String, _ to: String, overwrite: Bool) throws {
        let sftp = try live()
        if sftp_rename(sftp, from, to) == 0 { return }
        guard overwrite, let existing = try stat(to), existing.kind != .directory else { throw error(from, "rename to \(to)") }
        guard sftp_unlink(sftp, to) == 0, sftp_rename(sftp, from, to) == 0 else { throw error(from, "rename to \(to)") }
    }

    // MARK: - Download

    private struct ReadRequest { var id: UInt32; var offset: UInt64; var length: UInt32 }

    func download(_ remotePath: String, to localPath: String, options: SFTPTransferOptions,
                  progress: (@Sendable (SFTPProgress) -> Void)?, cancel: AtomicFlag) throws -> SFTPTransferResult {
        let sftp = try live()
        let started = SessionCore.now()
        guard let file = sftp_open(sftp, remotePath, O_RDONLY, 0) else { throw error(remotePath, "open") }
        defer { _ = sftp_close(file) }
        guard let attributes = sftp_fstat(file) else { throw error(remotePath, "stat") }
        let total = attributes.pointee.size
        sftp_attributes_free(attributes)

        let partial = localPath + SFTPClient.partialSuffix
        var start: UInt64 = 0
        var hasher = SHA256()
        if options.resume, let existing = try? FileManager.default.attributesOfItem(atPath: partial)[.size] as? UInt64, existing <= total {
            start = existing
        }
        let fd = open(partial, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (start == 0 ? O_TRUNC : 0), mode_t(options.permissions ?? 0o644))
        guard fd >= 0 else { throw SSHError.sftpFailed(path: partial, operation: "create", reason: String(cString: strerror(errno))) }
        var fdOpen = true
        defer { if fdOpen { Glibc.close(fd) } }
        // Hash only when the digest will be checked: scp-like transfers skip the CPU it costs.
        let hashing = options.verification != .none
        if start > 0 {
            if hashing { try LocalFile.hashPrefix(partial, length: start, into: &hasher) }
            guard lseek(fd, off_t(start), SEEK_SET) == off_t(start) else {
                throw SSHError.sftpFailed(path: partial, operation: "seek", reason: String(cString: strerror(errno)))
            }
        }

        // The remote digest is computed while the bytes travel: the file is complete on the remote.
        var remoteDigest: CommandCapture?
        if options.verification == .remoteChecksum {
            let capture = try CommandCapture(core: core, command: ShellQuote.join(["sha256sum", "--", remotePath]))
            core.add(capture)
            remoteDigest = capture
        }
        defer { remoteDigest?.cancel() }
        let chunk = UInt32(max(4096, min(options.readRequestSize, 255 * 1024)))
        let depth = max(1, options.requestsInFlight)
        var buffer = [UInt8](repeating: 0, count: Int(chunk))
        var queue: [ReadRequest] = []
        var head = 0
        var nextOffset = start
        var done = start
        var lastService = SessionCore.now()

        func issue(_ offset: UInt64, _ length: UInt32) throws {
            // libssh sends each request at the file's offset; set it ourselves, since its own
            // bookkeeping goes wrong when a reply comes back short.
            _ = sftp_seek64(file, offset)
            let id = sftp_async_read_begin(file, length)
            guard id >= 0 else { throw error(remotePath, "read request") }
            queue.append(ReadRequest(id: UInt32(id), offset: offset, length: length))
            maxInFlight = max(maxInFlight, queue.count - head)
        }
        func refill() throws {
            while queue.count - head < depth && nextOffset < total {
                let length = UInt32(min(UInt64(chunk), total - nextOffset))
                try issue(nextOffset, length)
                nextOffset += UInt64(length)
            }
        }
        /// Replies left unread would pile up in libssh's queue: read and drop them.
        func drain() {
            while head < queue.count {
                let r = queue[head]; head += 1
                _ = buffer.withUnsafeMutableBytes { sftp_async_read(file, $0.baseAddress, r.length, r.id) }
            }
        }

        // The session thread receives; another writes and hashes (see WriteBehind).
        // A download that ends in an fsync starts its writeback every 8 MiB: the fsync of 100 MB
        // had waited 40–68 ms for all of it.
        let sink = WriteBehind(fd: fd, path: partial, hasher: hashing ? hasher : nil, capacity: Int(chunk), offset: Int64(start),
                               writebackEvery: options.syncToDisk ? 8 << 20 : nil)
        var sinkStopped = false
        defer { if !sinkStopped { try? sink.stop() } }
        maxInFlight = 0
        try refill()
        while head < queue.count {
            if cancel.isSet { drain(); throw CancellationError() }
            var request = queue[head]
            head += 1
            if head > 256 { queue.removeFirst(head); head = 0 }
            // Short replies are legal: ask for the rest of this request at once, so bytes stay in order.
            while request.length > 0 {
                let target: UnsafeMutableRawPointer
                do { target = try sink.buffer() } catch { drain(); throw error }
                let n = sftp_async_read(file, target, request.length, request.id)
                guard n > 0 && n <= Int(request.length) else {
                    sink.giveBack(target)
                    let failure = n < 0 ? error(remotePath, "read")
                        : n == 0 ? SSHError.sftpFailed(path: remotePath, operation: "read", reason: "the file ended at \(request.offset) of \(total) bytes (did it change during the download?)")
                        : SSHError.sftpFailed(path: remotePath, operation: "read", reason: "the server sent more than was asked")
                    drain()
                    throw failure
                }
                sink.submit(target, count: Int(n))
                done += UInt64(n)
                request.offset += UInt64(n)
                request.length -= UInt32(n)
                if request.length > 0 {
                    _ = sftp_seek64(file, request.offset)
                    let id = sftp_async_read_begin(file, request.length)
                    guard id >= 0 else { drain(); throw error(remotePath, "read request") }
                    request.id = UInt32(id)
                }
            }
            try refill()
            progress?(SFTPProgress(completedBytes: done, totalBytes: total, transferredBytes: done - start))
            if SessionCore.now() - lastService > 0.05 { core.serviceHandlersFromJob(); lastService = SessionCore.now() }
        }
        let written = try sink.finish()
        sinkStopped = true
        guard !options.syncToDisk || fsync(fd) == 0 || errno == EINVAL else {
            throw SSHError.sftpFailed(path: partial, operation: "fsync", reason: String(cString: strerror(errno)))
        }
        Glibc.close(fd)
        fdOpen = false
        let digest = hashing ? written?.finalize().hex : nil
        if options.verification == .deferred {
            return SFTPTransferResult(source: remotePath, destination: partial, totalBytes: total, transferredBytes: total - start,
                                      resumedFrom: start, sha256: digest, verified: false, maxRequestsInFlight: maxInFlight,
                                      seconds: SessionCore.now() - started)
        }
        var verification = options.verification
        if let capture = remoteDigest {
            try core.waitInJob { capture.isFinished }
            verification = .expected(try SFTPHandle.parseDigest(capture, path: remotePath))
        }
        let verified = try verify(digest, verification, remotePath: remotePath, shownAs: localPath, onMismatch: { unlink(partial) })
        guard Glibc.rename(partial, localPath) == 0 else {
            throw SSHError.sftpFailed(path: localPath, operation: "rename", reason: String(cString: strerror(errno)))
        }
        return SFTPTransferResult(source: remotePath, destination: localPath, totalBytes: total, transferredBytes: total - start,
                                  resumedFrom: start, sha256: digest, verified: verified, maxRequestsInFlight: maxInFlight,
                                  seconds: SessionCore.now() - started)
    }

    private func verify(_ digest: String?, _ verification: SFTPVerification, remotePath: String, shownAs: String,
                        onMismatch: () -> Void) throws -> Bool {
        guard let digest else { return false }
        let expected: String
        switch verification {
        case .none, .deferred: return false
        case .expected(let hex): expected = hex.lowercased()
        case .remoteChecksum: expected = try remoteSHA256(remotePath)
        }
        guard expected == digest else {
            onMismatch()
            throw SSHError.checksumMismatch(path: shownAs, expected: expected, actual: digest)
        }
        return true
    }

    /// `sha256sum` of a remote file, run over an exec channel on this session.
    func remoteSHA256(_ path: String) throws -> String {
        let capture = try CommandCapture(core: core, command: ShellQuote.join(["sha256sum", "--", path]))
        core.add(capture)
        try core.waitInJob { capture.isFinished }
        return try SFTPHandle.parseDigest(capture, path: path)
    }

    static func parseDigest(_ capture: CommandCapture, path: String) throws -> String {
        if let failure = capture.failure { throw failure }
        let hex = String(decoding: capture.stdout, as: UTF8.self).split(separator: " ").first.map(String.init) ?? ""
        guard capture.status == .exited(0), hex.count == 64, hex.allSatisfy(\.isHexDigit) else {
            let said = String(decoding: capture.stderr, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw SSHError.sftpFailed(path: path, operation: "verify", reason: "`sha256sum` on the remote failed (\(capture.status)): \(said) — use verification .none or .expected")
        }
        return hex.lowercased()
    }

    // MARK: - Upload

    func upload(_ localPath: String, to remotePath: String, options: SFTPTransferOptions,
                progress: (@Sendable (SFTPProgress) -> Void)?, cancel: AtomicFlag) throws -> SFTPTransferResult {
        let sftp = try live()
        let started = SessionCore.now()
        let input = open(localPath, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw SSHError.sftpFailed(path: localPath, operation: "open", reason: String(cString: strerror(errno))) }
        defer { Glibc.close(input) }
        var st = Glibc.stat()
        guard fstat(input, &st) == 0 else { throw SSHError.sftpFailed(path: localPath, operation: "stat", reason: String(cString: strerror(errno))) }
        let total = UInt64(st.st_size)
        let mode = options.permissions ?? UInt32(st.st_mode) & 0o777

        let partial = remotePath + SFTPClient.partialSuffix
        var start: UInt64 = 0
        if options.resume, let existing = try stat(partial), existing.kind == .file, existing.size <= total { start = existing.size }
        var hasher = SHA256()
        let hashing = options.verification != .none
        if start > 0 && hashing { try LocalFile.hashPrefix(localPath, length: start, into: &hasher) }
        guard lseek(input, off_t(start), SEEK_SET) == off_t(start) else {
            throw SSHError.sftpFailed(path: localPath, operation: "seek", reason: String(cString: strerror(errno)))
        }
        var done = start
        var lastService = SessionCore.now()
        // Called with each chunk read from the local file, before it is sent.
        let next: (inout [UInt8]) throws -> Int = { buffer in
            if cancel.isSet { throw CancellationError() }
            let n = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
            guard n >= 0 else { throw SSHError.sftpFailed(path: localPath, operation: "read", reason: String(cString: strerror(errno))) }
            if hashing { buffer.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<n])) } }
            return n
        }
        let sent: (Int) -> Void = { [self] n in
            done += UInt64(n)
            progress?(SFTPProgress(completedBytes: done, totalBytes: total, transferredBytes: done - start))
            if SessionCore.now() - lastService > 0.05 { core.serviceHandlersFromJob(); lastService = SessionCore.now() }
        }

        switch options.uploadMethod {
        case .sftpWrite:
            let flags = O_WRONLY | O_CREAT | (start == 0 ? O_TRUNC : 0)
            guard let file = sftp_open(sftp, partial, flags, mode_t(mode)) else { throw error(partial, "create") }
            var closed = false
            defer { if !closed { _ = sftp_close(file) } }
            _ = sftp_seek64(file, start)
            // One SFTP message must stay under OpenSSH's 256 KiB limit.
            var buffer = [UInt8](repeating: 0, count: 255 * 1024)
            while true {
                let n = try next(&buffer)
                if n == 0 { break }
                let w = buffer.withUnsafeBytes { sftp_write(file, $0.baseAddress, n) }
                guard w == n else { throw error(partial, "write") }
                sent(n)
            }
            closed = true
            guard sftp_close(file) == 0 else { throw error(partial, "close") }
        case .catChannel:
            let command = (start == 0 ? "umask 077; cat > " : "cat >> ") + ShellQuote.quote(partial)
            var buffer = [UInt8](repeating: 0, count: 1 << 20)
            let result = try core.runBlocking(command) { channel in
                while true {
                    let n = try next(&buffer)
                    if n == 0 { break }
                    var offset = 0
                    while offset < n {
                        let w = buffer[offset..<n].withUnsafeBytes { ssh_channel_write(channel, $0.baseAddress, UInt32($0.count)) }
                        guard w > 0 else { throw self.core.channelError("upload write") }
                        offset += Int(w)
                    }
                    sent(n)
                }
            }
            guard result.status == 0 else {
                throw SSHError.sftpFailed(path: partial, operation: "write", reason: "`\(command)` failed (status \(result.status)): \(result.stderr.trimmingCharacters(in: .whitespacesAndNewlines))")
            }
            var attributes = sftp_attributes_struct()
            attributes.flags = UInt32(SSH_FILEXFER_ATTR_PERMISSIONS)
            attributes.permissions = mode
            guard sftp_setstat(sftp, partial, &attributes) == 0 else { throw error(partial, "chmod") }
        }
        guard done == total else {
            throw SSHError.sftpFailed(path: localPath, operation: "upload", reason: "the file changed size during the upload (\(done) of \(total) bytes)")
        }
        let digest = hashing ? hasher.finalize().hex : nil
        let verified = try verify(digest, options.verification, remotePath: partial, shownAs: remotePath,
                                  onMismatch: { _ = sftp_unlink(sftp, partial) })
        try rename(partial, remotePath, overwrite: true)
        return SFTPTransferResult(source: localPath, destination: remotePath, totalBytes: total, transferredBytes: total - start,
                                  resumedFrom: start, sha256: digest, verified: verified, maxRequestsInFlight: 0,
                                  seconds: SessionCore.now() - started)
    }
}

extension SessionCore {
    /// Runs a command to completion from inside a loop job (blocking reads): `sha256sum`, `cat >`.
    /// `feed` writes the command's stdin before EOF is sent.
    func runBlocking(_ command: String, feed: ((ssh_channel) throws -> Void)? = nil) throws -> (stdout: String, stderr: String, status: Int32) {
        let channel = try openSessionChannel()
        defer { ssh_channel_free(channel) }
        guard ssh_channel_request_exec(channel, command) == SSH_OK else { throw channelError("exec") }
        do {
            try feed?(channel)
        } catch {
            _ = ssh_channel_close(channel)
            throw error
        }
        _ = ssh_channel_send_eof(channel)
        var out = Data(), err = Data()
        var buffer = [UInt8](repeating: 0, count: 16_384)
        for (stream, target) in [(Int32(0), 0), (Int32(1), 1)] {
            while true {
                let n = buffer.withUnsafeMutableBytes { ssh_channel_read(channel, $0.baseAddress, UInt32($0.count), stream) }
                if n == SSH_ERROR { throw channelError("read") }
                if n <= 0 { break }
                if target == 0 { out.append(contentsOf: buffer[0..<Int(n)]) } else { err.append(contentsOf: buffer[0..<Int(n)]) }
            }
        }
        let status = ssh_channel_get_exit_status(channel)
        _ = ssh_channel_close(channel)
        return (String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self), status)
    }
}

/// Local file helpers for transfers.
enum LocalFile {
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws(SSHError) {
        do {
            try FileIO.writeAll(fd, bytes, path: path)
        } catch {
            throw SSHError.sftpFailed(path: path, operation: "write", reason: error.reason)
        }
    }

    /// Feeds the first `length` bytes of a file to `hasher` (a resumed transfer's digest covers the whole file).
    static func hashPrefix(_ path: String, length: UInt64, into hasher: inout SHA256) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SSHError.sftpFailed(path: path, operation: "open", reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        let read = try? FileIO.readChunks(fd, limit: Int64(length), path: path) { hasher.update(bufferPointer: $0) }
        guard read == Int64(length) else { throw SSHError.sftpFailed(path: path, operation: "read", reason: "the file is shorter than \(length) bytes") }
    }
}

extension SHA256.Digest {
    var hex: String { map { String(format: "%02x", $0) }.joined() }
}

#if canImport(Glibc)
import Glibc
#endif
