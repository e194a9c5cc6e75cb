import Foundation

/// Which column of a CSV file holds the label: by header name, or by 0-based index (negative counts
/// from the end, so `-1` is the last column). Literals work: `label: "species"`, `label: 0`.
public enum CSVColumn: Sendable, Equatable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral {
    case name(String)
    case index(Int)

    public init(stringLiteral value: String) { self = .name(value) }
    public init(integerLiteral value: Int) { self = .index(value) }
}

/// A CSV file of numeric feature columns and one label column, each row a sample of shape
/// `[featureCount]`. Labels are integers (`3`, `3.0`), or — when the first row's label is not a
/// number — class names, numbered in sorted order (`classes`).
public struct CSVDataset: Dataset {
    /// The samples in memory.
    public let data: TensorDataset
    /// The feature columns' names (from the header, or `column N` without one).
    public let featureNames: [String]
    /// The label column's name.
    public let labelName: String
    /// The class names by label, when the labels were names; nil for numeric labels.
    public let classes: [String]?

    /// Reads `url`. `hasHeader: nil` treats the first row as a header when one of its feature fields
    /// is not a number (a label given by name implies a header).
    public init(url: URL, label: CSVColumn, hasHeader: Bool? = nil, delimiter: Character = ",") throws {
        try self.init(bytes: [UInt8](readWholeFile(url)), name: url.path, label: label, hasHeader: hasHeader, delimiter: delimiter)
    }

    /// Parses CSV `text`; `name` labels errors.
    public init(text: String, name: String = "<csv>", label: CSVColumn, hasHeader: Bool? = nil, delimiter: Character = ",") throws {
        try self.init(bytes: Array(text.utf8), name: name, label: label, hasHeader: hasHeader, delimiter: delimiter)
    }

    init(bytes: [UInt8], name: String, label: CSVColumn, hasHeader: Bool?, delimiter: Character) throws {
        guard let delimiterByte = delimiter.asciiValue, delimiter != "\"", delimiter != "\n", delimiter != "\r" else {
            throw DataError.invalidArgument("CSVDataset: the delimiter must be one ASCII character other than a quote or newline, got \(delimiter.debugDescription)")
        }
        // Lines are split on bytes: in a Swift String "\r\n" is one Character, and bytes are faster anyway.
        var rows: [(line: Int, fields: [String])] = []
        var lineNumber = 0
        let body = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? bytes.dropFirst(3) : bytes[...]     // a UTF-8 BOM (spreadsheets write one)
        for rawLine in body.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            var line = rawLine
            if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
            if line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }) { continue }
            rows.append((lineNumber, try CSVDataset.split(line, delimiter: delimiterByte, name: name, line: lineNumber)))
        }
        guard let first = rows.first else {
            throw DataError.invalidContent(path: name, reason: "no rows — the CSV file is empty")
        }
        let width = first.fields.count

        func resolve(_ column: CSVColumn, header: [String]?) throws -> Int {
            switch column {
            case .index(let i):
                let index = i < 0 ? width + i : i
                guard index >= 0, index < width else {
                    throw DataError.invalidArgument("CSVDataset: \(name): label column \(i) is out of range; rows have \(width) columns")
                }
                return index
            case .name(let n):
                guard let header else {
                    throw DataError.invalidArgument("CSVDataset: \(name): label column \"\(n)\" is named but the file has no header; give its index")
                }
                guard let index = header.firstIndex(of: n) else {
                    throw DataError.invalidArgument("CSVDataset: \(name): no column \"\(n)\" (columns: \(header.joined(separator: ", ")))")
                }
                return index
            }
        }

        let headerPresent: Bool
        switch (hasHeader, label) {
        case (.some(let h), _): headerPresent = h
        case (nil, .name): headerPresent = true
        case (nil, .index):
            let labelIndex = try resolve(label, header: nil)
            headerPresent = first.fields.enumerated().contains { i, f in i != labelIndex && Float(f) == nil }
        }
        let header: [String]? = headerPresent ? first.fields : nil
        let labelIndex = try resolve(label, header: header)
        let dataRows = headerPresent ? Array(rows.dropFirst()) : rows
        let names = header ?? (0..<width).map { "column \($0)" }
        func columnLabel(_ i: Int) -> String { header.map { "\(i) (\"\($0[i])\")" } ?? "\(i)" }

        var features: [Float] = []
        features.reserveCapacity(dataRows.count * max(width - 1, 0))
        var labelTexts: [String] = []
        labelTexts.reserveCapacity(dataRows.count)
        for row in dataRows {
            guard row.fields.count == width else {
                throw DataError.csvParse(path: name, line: row.line, column: "", reason: "\(row.fields.count) fields, expected \(width) like the first row")
            }
            for (i, field) in row.fields.enumerated() {
                if i == labelIndex { labelTexts.append(field); continue }
                guard !field.isEmpty else {
                    throw DataError.csvParse(path: name, line: row.line, column: columnLabel(i), reason: "empty value")
                }
                guard let v = Float(field) else {
                    throw DataError.csvParse(path: name, line: row.line, column: columnLabel(i), reason: "\"\(field)\" is not a number")
                }
                features.append(v)
            }
        }

        var labels: [Int64] = []
        labels.reserveCapacity(labelTexts.count)
        if let firstLabel = labelTexts.first, Double(firstLabel) == nil {
            let classNames = Array(Set(labelTexts)).sorted()
            let number = Dictionary(uniqueKeysWithValues: classNames.enumerated().map { ($1, Int64($0)) })
            labels = labelTexts.map { number[$0] ?? 0 }
            classes = classNames
        } else {
            for (k, text) in labelTexts.enumerated() {
                guard let v = Double(text), v.rounded() == v, abs(v) < 9.0e18 else {
                    throw DataError.csvParse(path: name, line: dataRows[k].line, column: columnLabel(labelIndex),
                                             reason: "label \"\(text)\" is not an integer (labels are class indices)")
                }
                labels.append(Int64(v))
            }
            classes = nil
        }
        featureNames = names.enumerated().filter { $0.offset != labelIndex }.map(\.element)
        labelName = names[labelIndex]
        data = try TensorDataset(features: features, sampleShape: [width - 1], labels: labels)
    }

    public var count: Int { data.count }
    public var sampleShape: [Int] { data.sampleShape }
    public func example(at index: Int) -> Example { data.example(at: index) }
    public func fillBatch(indices: [Int], into batch: inout Batch) { data.fillBatch(indices: indices, into: &batch) }

    /// Splits one line into fields: `"…"` quotes a field (`""` is a quote inside it); spaces around fields are dropped.
    static func split(_ bytes: ArraySlice<UInt8>, delimiter: UInt8, name: String, line number: Int) throws -> [String] {
        var fields: [String] = []
        var current: [UInt8] = []
        var inQuotes = false
        var wasQuoted = false
        var i = bytes.startIndex
        func flush() {
            var field = String(decoding: current, as: UTF8.self)
            if !wasQuoted { field = field.trimmingCharacters(in: .whitespaces) }
            fields.append(field)
            current.removeAll(keepingCapacity: true)
            wasQuoted = false
        }
        while i < bytes.endIndex {
            let b = bytes[i]
            if inQuotes {
                if b == UInt8(ascii: "\"") {
                    if i + 1 < bytes.endIndex && bytes[i + 1] == UInt8(ascii: "\"") { current.append(b); i += 1 } else { inQuotes = false }
                } else {
                    current.append(b)
                }
            } else if b == UInt8(ascii: "\"") && current.allSatisfy({ $0 == UInt8(ascii: " ") }) {
                current.removeAll()
                inQuotes = true
                wasQuoted = true
            } else if b == delimiter {
                flush()
            } else if !(wasQuoted && b == UInt8(ascii: " ")) {
                current.append(b)
            }
            i += 1
        }
        if inQuotes {
            throw DataError.csvParse(path: name, line: number, column: "\(fields.count)", reason: "a quoted field is not closed (fields cannot span lines)")
        }
        flush()
        return fields
    }
}
