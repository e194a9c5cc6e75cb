import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `.ferryignore` files, in gitignore's syntax: `#` comments, `!` re-includes, a trailing `/`
/// matches folders only, a `/` at the start or in the middle anchors the pattern to the file's
/// folder, `*` `?` `[...]` within a name, `**` across folders; the last matching rule wins, and
/// nothing inside an ignored folder can be re-included. A `.ferryignore` in a subfolder adds rules
/// for that subfolder. `.git/`, `saved/`, `.build/` and `ferry-runs/` are out by default.
public struct IgnoreRules: Sendable {
    struct Rule: Sendable {
        /// The folder of the file that holds the rule, relative to the root ("" for the root).
        var base: String
        var segments: [String]
        var negated: Bool
        var directoryOnly: Bool
        /// Unanchored single-name patterns match the name at any depth.
        var anyDepth: Bool
    }

    public static let defaultPatterns = [".git/", "saved/", ".build/", "ferry-runs/", "*.ferry-partial"]

    var rules: [Rule] = []

    public init(defaults: Bool = true) {
        if defaults { add(IgnoreRules.defaultPatterns.joined(separator: "\n"), base: "") }
    }

    /// Adds the rules of an ignore file found in `base` (relative to the root).
    public mutating func add(_ text: String, base: String) {
        for raw in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            if let rule = IgnoreRules.parse(String(raw), base: base) { rules.append(rule) }
        }
    }

    static func parse(_ line: String, base: String) -> Rule? {
        var text = line
        // Trailing spaces are dropped unless escaped with a backslash.
        while text.hasSuffix(" ") && !text.hasSuffix("\\ ") { text.removeLast() }
        if text.isEmpty || text.hasPrefix("#") { return nil }
        var negated = false
        if text.hasPrefix("!") { negated = true; text.removeFirst() } else if text.hasPrefix("\\!") || text.hasPrefix("\\#") { text.removeFirst() }
        var directoryOnly = false
        if text.hasSuffix("/") { directoryOnly = true; text.removeLast() }
        if text.isEmpty { return nil }
        let anchored = text.contains("/")
        if text.hasPrefix("/") { text.removeFirst() }
        let segments = text.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        guard !segments.isEmpty else { return nil }
        return Rule(base: base, segments: segments, negated: negated, directoryOnly: directoryOnly, anyDepth: !anchored)
    }

    /// Whether `path` (relative to the root, `/`-separated) is ignored. Callers walk top-down and do
    /// not descend into ignored folders, which gives gitignore's "no re-include inside an ignored folder".
    public func isIgnored(_ path: String, isDirectory: Bool) -> Bool {
        var ignored = false
        for rule in rules {
            if rule.directoryOnly && !isDirectory { continue }
            let relative: Substring
            if rule.base.isEmpty {
                relative = Substring(path)
            } else {
                guard path.hasPrefix(rule.base + "/") else { continue }
                relative = path.dropFirst(rule.base.count + 1)
            }
            let parts = relative.split(separator: "/").map(String.init)
            let matched: Bool
            if rule.anyDepth {
                guard let name = parts.last else { continue }
                matched = IgnoreRules.matchName(rule.segments[0], name)
            } else {
                matched = IgnoreRules.match(rule.segments[...], parts[...])
            }
            if matched { ignored = !rule.negated }
        }
        return ignored
    }

    static func match(_ pattern: ArraySlice<String>, _ parts: ArraySlice<String>) -> Bool {
        guard let first = pattern.first else { return parts.isEmpty }
        if first == "**" {
            let rest = pattern.dropFirst()
            if rest.isEmpty { return !parts.isEmpty }   // `dir/**`: everything inside
            var tail = parts
            while true {
                if match(rest, tail) { return true }
                guard !tail.isEmpty else { return false }
                tail = tail.dropFirst()
            }
        }
        guard let part = parts.first, matchName(first, part) else { return false }
        return match(pattern.dropFirst(), parts.dropFirst())
    }

    /// One name against one pattern segment (`*`, `?`, `[...]`, backslash escapes), by fnmatch.
    static func matchName(_ pattern: String, _ name: String) -> Bool {
        fnmatch(pattern, name, FNM_PERIOD_OFF) == 0
    }

    private static let FNM_PERIOD_OFF: Int32 = 0
}
