import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Whole reads and writes on file descriptors: every short transfer and EINTR handled here.
public enum FileIO {
    private typealias SyncFileRange = @convention(c) (Int32, Int64, Int64, UInt32) -> Int32
    /// sync_file_range(2), which Glibc's module does not show (it sits behind _GNU_SOURCE).
    private static let syncRangeCall: SyncFileRange? = dlsym(dlopen(nil, RTLD_NOW), "sync_file_range").map { unsafeBitCast($0, to: SyncFileRange.self) }

    /// Starts writing `length` bytes of `fd` from `offset` to disk and returns at once
    /// (sync_file_range's SYNC_FILE_RANGE_WRITE): a file written in pieces this way is mostly on
    /// disk by the time its fsync comes, which then waits for little. Nothing where it is missing.
    public static func startWriteback(_ fd: Int32, offset: Int64, length: Int64) {
        _ = syncRangeCall?(fd, offset, length, 2 /* SYNC_FILE_RANGE_WRITE */)
    }

    /// Writes every byte (write(2) until done); `path` names the file in the error.
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String? = nil) throws(SystemError) {
        guard let base = bytes.baseAddress else { return }
        var done = 0
        while done < bytes.count {
            let n = Syscall.retrying { write(fd, base + done, bytes.count - done) }
            guard n > 0 else { throw SystemError("write", path: path, errno: n == 0 ? EIO : errno) }
            done += n
        }
    }

    /// Writes every byte of `data` (Data, [UInt8], ...).
    public static func writeAll(_ fd: Int32, _ data: some ContiguousBytes, path: String? = nil) throws(SystemError) {
        let result: Result<Void, SystemError> = data.withUnsafeBytes { raw in
            do throws(SystemError) { try writeAll(fd, raw, path: path); return .success(()) } catch { return .failure(error) }
        }
        try result.get()
    }

    /// Writes every byte at an absolute offset (pwrite(2)): the same bytes at the same offset are idempotent.
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int64, path: String? = nil) throws(SystemError) {
        guard let base = bytes.baseAddress else { return }
        var done = 0
        while done < bytes.count {
            let n = Syscall.retrying { pwrite(fd, base + done, bytes.count - done, off_t(offset) + off_t(done)) }
            guard n > 0 else { throw SystemError("write", path: path, errno: n == 0 ? EIO : errno) }
            done += n
        }
    }

    /// Writes every byte of `data` at an absolute offset.
    public static func writeAll(_ fd: Int32, _ data: some ContiguousBytes, at offset: Int64, path: String? = nil) throws(SystemError) {
        let result: Result<Void, SystemError> = data.withUnsafeBytes { raw in
            do throws(SystemError) { try writeAll(fd, raw, at: offset, path: path); return .success(()) } catch { return .failure(error) }
        }
        try result.get()
    }

    /// One read(2) (or pread(2) with `offset`) into `buffer`, retried on EINTR: the byte count, 0 at
    /// the end, negative with errno set.
    @inlinable
    public static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int64? = nil) -> Int {
        Syscall.retrying {
            if let offset { return pread(fd, buffer.baseAddress, buffer.count, off_t(offset)) }
            return Glibc.read(fd, buffer.baseAddress, buffer.count)
        }
    }

    /// Reads `fd` from its current position (or from `offset`) to the end, or `limit` bytes, passing
    /// each piece to `body`; returns the byte count.
    @discardableResult
    public static func readChunks(_ fd: Int32, from offset: Int64? = nil, limit: Int64 = .max, chunkSize: Int = 1 << 20, path: String? = nil,
                                  _ body: (UnsafeRawBufferPointer) throws -> Void) throws -> Int64 {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 16)
        defer { buffer.deallocate() }
        var total: Int64 = 0
        while total < limit {
            let want = Int(min(Int64(chunkSize), limit - total))
            let n = read(fd, into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<want]), at: offset.map { $0 + total })
            if n < 0 { throw SystemError("read", path: path) }
            if n == 0 { break }
            try body(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            total += Int64(n)
        }
        return total
    }

    /// Opens `path` (retrying EINTR), throwing a `SystemError` naming it.
    public static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o644) throws(SystemError) -> Int32 {
        try Syscall.checked("open", path: path) { Glibc.open(path, flags, mode) }
    }

    /// fsync of a folder, so a rename inside it survives a crash (best effort: some file systems refuse).
    public static func syncDirectory(_ path: String) {
        let fd = Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 { fsync(fd); close(fd) }
    }
}
