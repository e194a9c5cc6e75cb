/// Everything in Data that a file or an argument can get wrong. Each case names the file (or the
/// argument) and what was wrong; `description` adds what to do about it.
public enum DataError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The file does not exist; `hint` says where it usually comes from.
    case fileNotFound(path: String, hint: String)
    /// The file exists but could not be read (permissions, a directory, I/O error).
    case unreadable(path: String, reason: String)
    /// The file could not be written (a missing directory, permissions, a full disk).
    case unwritable(path: String, reason: String)
    /// The first bytes are not what this format starts with.
    case badMagic(path: String, expected: String, found: String)
    /// A well-formed file of a kind or variant this reader does not handle.
    case unsupportedFormat(path: String, reason: String)
    /// The header's dimensions are impossible or not what the reader needs.
    case badDimensions(path: String, reason: String)
    /// The file ends before the payload its header announces.
    case truncated(path: String, expectedBytes: Int, actualBytes: Int)
    /// A gzip or deflate stream that zlib rejects (corrupt or cut short).
    case corruptCompressedData(path: String, reason: String)
    /// A zip entry whose CRC32 does not match its contents.
    case checksumMismatch(path: String, entry: String, expected: UInt32, actual: UInt32)
    /// A zip archive whose structure is broken (central directory, local headers).
    case corruptArchive(path: String, reason: String)
    /// The values are well-framed but wrong (a label out of range, a missing array).
    case invalidContent(path: String, reason: String)
    /// A CSV value or row that cannot be used; `line` is 1-based, `column` names the column.
    case csvParse(path: String, line: Int, column: String, reason: String)
    /// Two files that belong together disagree (image and label counts).
    case mismatchedFiles(path: String, otherPath: String, reason: String)
    /// An argument that cannot work (split lengths that do not add up, a mean per channel for the wrong number of channels).
    case invalidArgument(String)

    /// The file this error is about, when there is one.
    public var path: String? {
        switch self {
        case .fileNotFound(let p, _), .unreadable(let p, _), .unwritable(let p, _), .badMagic(let p, _, _), .unsupportedFormat(let p, _),
             .badDimensions(let p, _), .truncated(let p, _, _), .corruptCompressedData(let p, _),
             .checksumMismatch(let p, _, _, _), .corruptArchive(let p, _), .invalidContent(let p, _),
             .csvParse(let p, _, _, _), .mismatchedFiles(let p, _, _):
            return p
        case .invalidArgument:
            return nil
        }
    }

    public var description: String {
        let redownload = "the file is damaged or incomplete; download or reinstall it"
        switch self {
        case .fileNotFound(let path, let hint):
            return "\(path): no such file — \(hint)"
        case .unreadable(let path, let reason):
            return "\(path): cannot read (\(reason)) — check that it is a readable file"
        case .unwritable(let path, let reason):
            return "\(path): cannot write (\(reason)) — check that its directory exists and is writable"
        case .badMagic(let path, let expected, let found):
            return "\(path): not the expected format (expected magic \(expected), found \(found)) — check that this is the right file"
        case .unsupportedFormat(let path, let reason):
            return "\(path): unsupported format: \(reason)"
        case .badDimensions(let path, let reason):
            return "\(path): bad dimensions: \(reason) — check that this is the right file"
        case .truncated(let path, let expected, let actual):
            return "\(path): truncated: expected \(expected) bytes, found \(actual) — \(redownload)"
        case .corruptCompressedData(let path, let reason):
            return "\(path): corrupt compressed data (\(reason)) — \(redownload)"
        case .checksumMismatch(let path, let entry, let expected, let actual):
            return "\(path): entry \(entry): CRC32 mismatch (expected \(hex(expected)), computed \(hex(actual))) — \(redownload)"
        case .corruptArchive(let path, let reason):
            return "\(path): corrupt zip archive: \(reason) — \(redownload)"
        case .invalidContent(let path, let reason):
            return "\(path): \(reason)"
        case .csvParse(let path, let line, let column, let reason):
            let col = column.isEmpty ? "" : ", column \(column)"
            return "\(path): line \(line)\(col): \(reason) — fix the value or remove the row"
        case .mismatchedFiles(let path, let other, let reason):
            return "\(path) and \(other) do not belong together: \(reason) — use files from the same release"
        case .invalidArgument(let message):
            return message
        }
    }
}

func hex(_ v: UInt32) -> String {
    let s = String(v, radix: 16)
    return "0x" + String(repeating: "0", count: max(0, 8 - s.count)) + s
}
