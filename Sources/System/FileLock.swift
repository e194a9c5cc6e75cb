#if canImport(Glibc)
import Glibc
#endif

/// An exclusive advisory lock on a file (flock): held by an open file description, so it excludes
/// other processes and other threads of this one alike, and dies with the process.
public final class FileLock {
    private let fd: Int32

    /// Blocks until the lock on `path` (created 0600 if missing) is held.
    public init(_ path: String) throws(SystemError) {
        fd = try FileIO.open(path, O_RDWR | O_CREAT | O_CLOEXEC, mode: 0o600)
        do throws(SystemError) {
            try Syscall.checked("lock", path: path) { flock(fd, LOCK_EX) }
        } catch {
            close(fd)
            throw error
        }
    }

    /// Tries once; nil when another holder has it (or the file cannot be opened).
    public init?(trying path: String) {
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return nil }
        guard Syscall.retrying({ flock(fd, LOCK_EX | LOCK_NB) }) == 0 else { close(fd); return nil }
    }

    deinit { close(fd) }

    /// Runs `body` holding the lock on `path`.
    public static func with<T>(_ path: String, _ body: () throws -> T) throws -> T {
        let lock = try FileLock(path)
        defer { withExtendedLifetime(lock) {} }
        return try body()
    }
}
