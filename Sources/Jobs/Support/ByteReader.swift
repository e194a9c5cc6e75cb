import Foundation
import System
#if canImport(Glibc)
import Glibc
#endif

/// Buffered reads from a file descriptor (the agent's stdin): header lines and exact byte counts.
final class ByteReader {
    private let fd: Int32
    private var buffer = [UInt8](repeating: 0, count: 1 << 20)
    private var start = 0
    private var end = 0
    private(set) var total: Int64 = 0

    init(fd: Int32) { self.fd = fd }

    private func fill() throws -> Bool {
        if start == end { start = 0; end = 0 }
        if end == buffer.count {
            if start > 0 {
                buffer.withUnsafeMutableBytes { raw in
                    guard let base = raw.baseAddress else { return }
                    memmove(base, base + start, end - start)
                }
                end -= start; start = 0
            } else {
                // One line fills the buffer (a request with a large manifest): make room; readLine's
                // limit bounds it.
                buffer += [UInt8](repeating: 0, count: buffer.count)
            }
        }
        while true {
            let n = buffer.withUnsafeMutableBytes { raw in FileIO.read(fd, into: UnsafeMutableRawBufferPointer(rebasing: raw[end...])) }
            if n < 0 { throw JobsError.io(path: "stdin", reason: SystemError.text(errno)) }
            if n == 0 { return false }
            end += n
            total += Int64(n)
            return true
        }
    }

    /// The next line without its newline; nil at a clean end of input. Lines longer than `limit` are an error.
    func readLine(limit: Int = 64 * 1024) throws -> String? {
        while true {
            if let nl = buffer[start..<end].firstIndex(of: 0x0A) {
                let line = String(decoding: buffer[start..<nl], as: UTF8.self)
                start = nl + 1
                return line
            }
            if end - start > limit { throw JobsError.io(path: "stdin", reason: "a header line is longer than \(limit) bytes") }
            if !(try fill()) {
                if start == end { return nil }
                throw JobsError.io(path: "stdin", reason: "the input ended inside a header line")
            }
        }
    }

    /// Passes exactly `count` bytes to `sink` in pieces; throws when the input ends first.
    func read(count: Int64, into sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        var left = count
        while left > 0 {
            if start == end, !(try fill()) {
                throw JobsError.io(path: "stdin", reason: "the input ended \(left) bytes early (the connection dropped?)")
            }
            let n = Int(min(Int64(end - start), left))
            try buffer.withUnsafeBytes { raw in try sink(UnsafeRawBufferPointer(rebasing: raw[start..<(start + n)])) }
            start += n
            left -= Int64(n)
        }
    }

    /// Everything up to the end of input (for small JSON requests).
    func readToEnd(limit: Int = 256 << 20) throws -> Data {
        var out = Data()
        while true {
            out.append(contentsOf: buffer[start..<end])
            start = end
            if out.count > limit { throw JobsError.io(path: "stdin", reason: "the request is larger than \(limit) bytes") }
            if !(try fill()) { return out }
        }
    }
}
