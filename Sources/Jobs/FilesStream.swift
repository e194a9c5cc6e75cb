import Foundation
import System
#if canImport(Glibc)
import Glibc
#endif

/// What `filesGet` answers: for each file asked for, in order, one of
///
///     F INDEX OFFSET LENGTH MODE\n<LENGTH bytes>H SHA256\n
///                                 the file's bytes from OFFSET; MODE its permission bits (octal);
///                                 then the sha256 of the whole file as the host read it, or `-`
///                                 when it changed while being read
///     U INDEX\n                   the client's copy (the want's `have`) is the host's: not sent
///     S INDEX {AgentErrorReply}\n not sent, and why (vanished, a symlink on the way)
///
/// then `E\n` after the last, or `X {AgentErrorReply}\n` when the request as a whole failed. Small
/// files share one write; nothing waits for an answer between files.
enum FilesStreamEvent {
    case begin(index: Int, offset: Int64, length: Int64, mode: Int)
    /// Bytes of the file begun last (valid during the call only).
    case bytes(UnsafeRawBufferPointer)
    /// Every byte of the file begun last has arrived, and its sha256 on the host (nil: it
    /// changed while the host read it).
    case finish(index: Int, sha256: String?)
    case unchanged(index: Int)
    case skipped(index: Int, error: JobsError)
    case end
    case error(JobsError)
}

/// Reassembles `filesGet`'s frames from output that arrives in arbitrary pieces; file bytes pass
/// through without being buffered.
struct FilesStreamParser {
    private var header: [UInt8] = []
    private var body: (index: Int, left: Int64)?
    /// The file whose bytes have all come; its `H` line is next.
    private var trailer: Int?
    private(set) var ended = false

    mutating func feed(_ data: Data, _ handle: (FilesStreamEvent) throws -> Void) throws {
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            var i = 0
            while i < raw.count {
                if ended { throw FilesStreamError.malformed("bytes after the end") }
                if let current = body {
                    let n = Int(min(Int64(raw.count - i), current.left))
                    if n > 0 { try handle(.bytes(UnsafeRawBufferPointer(rebasing: raw[i..<(i + n)]))) }
                    i += n
                    body!.left -= Int64(n)
                    if body!.left == 0 { body = nil; trailer = current.index }
                    continue
                }
                guard let nl = raw[i...].firstIndex(of: 0x0A) else {
                    header.append(contentsOf: raw[i...])
                    if header.count > 1 << 16 { throw FilesStreamError.malformed("a header without a newline") }
                    return
                }
                header.append(contentsOf: raw[i..<nl])
                i = nl + 1
                let line = String(decoding: header, as: UTF8.self)
                header.removeAll(keepingCapacity: true)
                try parse(line, handle)
            }
        }
    }

    private mutating func parse(_ line: String, _ handle: (FilesStreamEvent) throws -> Void) throws {
        guard let kind = line.first else { throw FilesStreamError.malformed("an empty header") }
        let rest = line.dropFirst(2)
        if let index = trailer {
            guard kind == "H", rest.count == 64 || rest == "-" else { throw FilesStreamError.malformed("file #\(index) without its sha256") }
            trailer = nil
            try handle(.finish(index: index, sha256: rest == "-" ? nil : String(rest)))
            return
        }
        switch kind {
        case "F":
            let f = rest.split(separator: " ")
            guard f.count == 4, let index = Int(f[0]), let offset = Int64(f[1]), let length = Int64(f[2]), let mode = Int(f[3], radix: 8),
                  index >= 0, offset >= 0, length >= 0 else { throw FilesStreamError.malformed(String(line.prefix(80))) }
            try handle(.begin(index: index, offset: offset, length: length, mode: mode & 0o777))
            if length == 0 { trailer = index } else { body = (index, length) }
        case "U":
            guard let index = Int(rest), index >= 0 else { throw FilesStreamError.malformed(String(line.prefix(80))) }
            try handle(.unchanged(index: index))
        case "S":
            let f = rest.split(separator: " ", maxSplits: 1)
            guard f.count == 2, let index = Int(f[0]) else { throw FilesStreamError.malformed(String(line.prefix(80))) }
            let reply = try? JSONCoding.decoder().decode(AgentErrorReply.self, from: Data(f[1].utf8))
            try handle(.skipped(index: index, error: reply?.error ?? .io(path: "#\(index)", reason: reply?.message ?? String(f[1]))))
        case "E":
            ended = true
            try handle(.end)
        case "X":
            let reply = try? JSONCoding.decoder().decode(AgentErrorReply.self, from: Data(rest.utf8))
            ended = true
            try handle(.error(reply?.error ?? .agentFailed(host: "agent", verb: "files_get", message: reply?.message ?? String(rest))))
        default:
            throw FilesStreamError.malformed(String(line.prefix(80)))
        }
    }
}

enum FilesStreamError: Error, CustomStringConvertible {
    case malformed(String)
    var description: String {
        switch self { case .malformed(let what): return "malformed files_get frame: \(what.debugDescription)" }
    }
}

/// The agent's side: frames into one large buffer, written to a descriptor when full.
final class FilesStreamWriter {
    private let fd: Int32
    private var buffer: UnsafeMutableRawBufferPointer
    private var count = 0

    init(fd: Int32, capacity: Int = 1 << 20) {
        self.fd = fd
        buffer = .allocate(byteCount: capacity, alignment: 16)
    }
    deinit { buffer.deallocate() }

    func header(_ line: String) throws {
        var text = line
        text.append("\n")
        try text.withUTF8 { bytes in try append(UnsafeRawBufferPointer(bytes)) }
    }

    private func append(_ bytes: UnsafeRawBufferPointer) throws {
        var bytes = bytes
        while !bytes.isEmpty {
            if count == buffer.count { try flush() }
            let n = min(bytes.count, buffer.count - count)
            UnsafeMutableRawBufferPointer(rebasing: buffer[count..<(count + n)]).copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[0..<n]))
            count += n
            bytes = UnsafeRawBufferPointer(rebasing: bytes[n...])
        }
    }

    /// `length` bytes of `file` from `offset`, read straight into the buffer. A file that shrank
    /// meanwhile is padded with zeros (the frame stays whole; the client's sha256 check refuses it).
    func body(from file: Int32, offset: Int64, length: Int64, read: (UnsafeRawBufferPointer) -> Void = { _ in }) throws {
        var position = offset
        var left = length
        while left > 0 {
            if count == buffer.count { try flush() }
            let room = Int(min(Int64(buffer.count - count), left))
            let target = UnsafeMutableRawBufferPointer(rebasing: buffer[count..<(count + room)])
            var n = FileIO.read(file, into: target, at: position)
            if n <= 0 {
                target.initializeMemory(as: UInt8.self, repeating: 0)
                n = room
            }
            read(UnsafeRawBufferPointer(rebasing: target[0..<n]))
            count += n
            position += Int64(n)
            left -= Int64(n)
        }
    }

    func flush() throws {
        guard count > 0 else { return }
        try JobsError.system { try FileIO.writeAll(fd, UnsafeRawBufferPointer(rebasing: buffer[0..<count]), path: "stdout") }
        count = 0
    }
}
