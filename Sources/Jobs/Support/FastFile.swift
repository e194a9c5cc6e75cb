import Foundation
import System
#if canImport(Glibc)
import Glibc
#endif

/// Linux calls Swift's Glibc module does not show (they sit behind _GNU_SOURCE): looked up once at
/// run time, each with a portable fallback when the C library lacks it.
enum FastFile {
    private typealias SyncFS = @convention(c) (Int32) -> Int32
    private typealias CopyFileRange = @convention(c) (Int32, UnsafeMutablePointer<Int64>?, Int32, UnsafeMutablePointer<Int64>?, Int, UInt32) -> Int

    nonisolated(unsafe) private static let libc = dlopen(nil, RTLD_NOW)
    private static let syncfsCall: SyncFS? = dlsym(libc, "syncfs").map { unsafeBitCast($0, to: SyncFS.self) }
    private static let copyRangeCall: CopyFileRange? = dlsym(libc, "copy_file_range").map { unsafeBitCast($0, to: CopyFileRange.self) }

    /// Flushes the filesystem that holds `path` to disk: one sync for a whole batch of files
    /// (syncfs(2); sync(2) where the C library lacks it).
    static func syncFilesystem(containing path: String) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        defer { if fd >= 0 { close(fd) } }
        if fd >= 0, let call = syncfsCall, call(fd) == 0 { return }
        sync()
    }

    /// How a file was copied.
    enum CopyMethod: String, Sendable { case reflink, copyRange = "copy_file_range", sendfile }

    /// Whether reflinks may work here: cleared by the first refusal, so ext4 pays one failed ioctl.
    private static let reflinks = Flag(true)

    final class Flag: @unchecked Sendable {
        private let lock = NSLock()
        private var value: Bool
        init(_ value: Bool) { self.value = value }
        var works: Bool {
            get { lock.lock(); defer { lock.unlock() }; return value }
            set { lock.lock(); value = newValue; lock.unlock() }
        }
    }

    /// FICLONE: `_IOW(0x94, 9, int)`.
    private static let ficlone: UInt = 0x4004_9409

    /// Copies `size` bytes of `input` from `offset` into the empty `output`. The whole of `input`
    /// (`offset` 0 and `wholeFile`): a reflink where the filesystem
    /// shares blocks copy-on-write (btrfs, XFS: instant, and a write to one never reaches the
    /// other), else copy_file_range (the kernel copies, on some filesystems server-side), else
    /// sendfile. Either way `output` is a file of its own: writing it never changes `input`.
    @discardableResult
    static func copy(_ input: Int32, from offset: Int64 = 0, to output: Int32, size: Int64, wholeFile: Bool = true,
                     allowReflink: Bool = true) throws -> CopyMethod {
        if size == 0 { return .copyRange }
        if allowReflink, wholeFile, offset == 0, reflinks.works {
            if ioctl(output, ficlone, input) == 0 { return .reflink }
            // This filesystem has none (ext4: EOPNOTSUPP; across filesystems: EXDEV): stop asking.
            if errno == EOPNOTSUPP || errno == EXDEV || errno == EINVAL || errno == ENOTTY { reflinks.works = false }
        }
        var method = CopyMethod.copyRange
        var done: Int64 = 0
        if let copyRange = copyRangeCall {
            var inOffset: Int64 = offset, outOffset: Int64 = 0
            while done < size {
                let n = Syscall.retrying { copyRange(input, &inOffset, output, &outOffset, Int(min(size - done, 1 << 30)), 0) }
                if n > 0 { done += Int64(n); continue }
                if n == 0 { break }
                // EXDEV/EINVAL/ENOSYS/EOPNOTSUPP: this pair of files cannot; the loop below can.
                guard done == 0 else { throw JobsError.io(path: "copy", reason: SystemError.text(errno)) }
                break
            }
        }
        if done < size {
            method = .sendfile
            var from = off_t(offset + done)
            guard lseek(output, off_t(done), SEEK_SET) >= 0 else { throw JobsError.io(path: "copy", reason: SystemError.text(errno)) }
            while done < size {
                let n = Syscall.retrying { sendfile(output, input, &from, Int(min(size - done, 1 << 30))) }
                guard n > 0 else { throw JobsError.io(path: "copy", reason: n == 0 ? "the source ended early" : SystemError.text(errno)) }
                done += Int64(n)
            }
        }
        return method
    }
}
