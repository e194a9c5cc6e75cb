#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A failed system call: what was attempted, on which path, and errno. Every module that touches
/// the OS reports through this one type; each module's own error enum wraps it where a person
/// needs more context (`JobsError.io`, `SSHError.knownHostsUnwritable`, ...).
public struct SystemError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The call or step that failed: "open", "write", "rename", "spawn", ...
    public var operation: String
    public var path: String?
    public var errno: Int32

    public init(_ operation: String, path: String? = nil, errno code: Int32 = Glibc.errno) {
        self.operation = operation
        self.path = path
        self.errno = code
    }

    /// strerror's text for `errno` ("No such file or directory").
    public var reason: String { Self.text(errno) }

    /// The reason with the operation ("rename: Permission denied"), for messages that name the path themselves.
    public var detail: String { "\(operation): \(reason)" }

    public var description: String {
        if let path { return "\(path): \(operation) failed: \(reason)" }
        return "\(operation) failed: \(reason)"
    }

    /// strerror, as a Swift string.
    public static func text(_ code: Int32) -> String { String(cString: strerror(code)) }
}

/// The one place that retries a system call interrupted by a signal (EINTR).
public enum Syscall {
    /// Calls `body` again while it fails with EINTR; returns its last result (errno is set when it
    /// is negative). For calls whose failures the caller sorts out itself (EAGAIN, short reads).
    @inlinable
    public static func retrying<T: BinaryInteger>(_ body: () -> T) -> T {
        while true {
            let result = body()
            if result < 0 && errno == EINTR { continue }
            return result
        }
    }

    /// Calls `body` again while it fails with EINTR and throws a `SystemError` for any other failure.
    @inlinable @discardableResult
    public static func checked<T: BinaryInteger>(_ operation: String, path: String? = nil, _ body: () -> T) throws(SystemError) -> T {
        let result = retrying(body)
        if result < 0 { throw SystemError(operation, path: path) }
        return result
    }
}
