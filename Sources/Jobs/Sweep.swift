import Foundation

/// `--sweep 'optimizer.args.lr=1e-3,3e-4' --sweep 'data_loader.args.batch_size=[64,128]'`: the grid
/// of config overrides a sweep runs, one run per combination (the first axis varies slowest).
public enum Sweep {
    public struct Axis: Sendable, Equatable {
        public var key: String
        /// Each value as `ferry train --set key=value` takes it.
        public var values: [String]
    }

    /// `key=a,b,c` (comma-separated scalars) or `key=[64,128]` (a JSON array).
    public static func axis(parsing text: String) throws -> Axis {
        let parts = text.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty,
              parts[0].allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "_" || $0 == "-" }) else {
            throw JobsError.unsafePath(path: text, reason: "a sweep is KEY=a,b or KEY=[a,b] with KEY a config path like optimizer.args.lr")
        }
        let key = String(parts[0]), rest = parts[1].trimmingCharacters(in: .whitespaces)
        var values: [String]
        if rest.hasPrefix("[") {
            guard let array = try? JSONSerialization.jsonObject(with: Data(rest.utf8), options: [.fragmentsAllowed]) as? [Any] else {
                throw JobsError.unsafePath(path: text, reason: "the values after = are not a JSON array")
            }
            values = try array.map { item in
                if let s = item as? String { return s }
                guard JSONSerialization.isValidJSONObject([item]),
                      let data = try? JSONSerialization.data(withJSONObject: [item]) else {
                    throw JobsError.unsafePath(path: text, reason: "a sweep value is a number, string, boolean or null")
                }
                return String(String(decoding: data, as: UTF8.self).dropFirst().dropLast())
            }
        } else {
            values = rest.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        }
        guard !values.isEmpty, values.allSatisfy({ !$0.isEmpty && !$0.contains("\n") }) else {
            throw JobsError.unsafePath(path: text, reason: "a sweep needs one or more values, none empty")
        }
        return Axis(key: key, values: values)
    }

    /// Every combination, as `key=value` overrides in the axes' order; at most 1000 runs.
    public static func grid(_ axes: [Axis]) throws -> [[String]] {
        var runs: [[String]] = [[]]
        for axis in axes {
            runs = runs.flatMap { run in axis.values.map { run + ["\(axis.key)=\($0)"] } }
            if runs.count > 1000 { throw JobsError.unsafePath(path: axis.key, reason: "the sweep has more than 1000 runs") }
        }
        return runs
    }

    /// `NAME-sweep-YYYYMMDD-HHMMSS-xxxx`; its runs are `…-0`, `…-1`, ….
    public static func newID(name: String, date: Date = Date()) -> String {
        let job = Names.newJobID(name: name, date: date)   // NAME-stamp-xxxx
        return name + "-sweep" + job.dropFirst(name.count)
    }

    /// The sweep a run id belongs to (`…-sweep-…-xxxx-3` → `…-sweep-…-xxxx`), or nil.
    public static func sweepID(ofRun id: String) -> String? {
        guard id.contains("-sweep-"), let dash = id.lastIndex(of: "-"), id[id.index(after: dash)...].allSatisfy(\.isNumber),
              id.index(after: dash) < id.endIndex else { return nil }
        return String(id[..<dash])
    }
}
