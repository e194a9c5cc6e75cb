import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The running program and its host.
public enum Executable {
    /// The path of the running executable (/proc/self/exe), else argv[0].
    public static var path: String {
        #if os(Linux)
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        if n > 0 { return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) }
        #endif
        return CommandLine.arguments.first ?? "ferry"
    }
}
