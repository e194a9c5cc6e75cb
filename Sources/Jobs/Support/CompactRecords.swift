import Foundation

/// Records of string fields in one string, each field ended by NUL (which no path, hash or number
/// holds). A list of 10,000 records (a manifest, a fetch's listing, a hash cache) is then one JSON
/// string instead of 10,000 objects, which Foundation's JSON coders take several times longer over.
struct CompactRecords {
    private(set) var text = ""

    init(capacity: Int = 0) { text.reserveCapacity(capacity) }

    mutating func append(_ fields: String...) {
        for field in fields {
            text += field
            text += "\0"
        }
    }

    /// Hands each record of `count` fields to `record` (which says whether it is well formed);
    /// false when one is not, or the text does not end with a whole record.
    static func parse(_ text: String, fields count: Int, _ record: ([Substring]) -> Bool) -> Bool {
        var text = text
        return text.withUTF8 { bytes -> Bool in
            var fields: [Substring] = []
            fields.reserveCapacity(count)
            var start = 0
            for i in 0..<bytes.count where bytes[i] == 0 {
                fields.append(Substring(decoding: UnsafeBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self))
                start = i + 1
                guard fields.count == count else { continue }
                guard record(fields) else { return false }
                fields.removeAll(keepingCapacity: true)
            }
            return start == bytes.count && fields.isEmpty
        }
    }
}
