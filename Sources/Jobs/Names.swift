import Foundation
import SSH

/// The names ferry accepts from people and from hosts. Anything that becomes a path component or
/// reaches a remote shell is checked here first.
public enum Names {
    private static let wordCharacters = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-".unicodeScalars)
    private static let alphanumerics = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".unicodeScalars)

    private static func isWord(_ s: String, maxLength: Int) -> Bool {
        guard let first = s.unicodeScalars.first, alphanumerics.contains(first), s.unicodeScalars.count <= maxLength else { return false }
        return s.unicodeScalars.allSatisfy { wordCharacters.contains($0) } && !s.contains("..")
    }

    /// A job name: `[A-Za-z0-9][A-Za-z0-9._-]*`, at most 48 characters.
    public static func validateJobName(_ name: String) throws {
        guard isWord(name, maxLength: 48) else { throw JobsError.invalidJobName(name) }
    }

    /// A host name in the registry (not the address): same alphabet, at most 64 characters.
    public static func validateHostName(_ name: String) throws {
        guard isWord(name, maxLength: 64) else { throw JobsError.invalidHostName(name) }
    }

    /// The registry name for a target typed as `user@host[:port]`: `host-port` in the characters
    /// host names allow (`gpu1.lab:2222` → `gpu1.lab-2222`).
    public static func hostName(for target: SSHTarget) -> String {
        let cleaned = String(target.host.map { $0.isLetter || $0.isNumber || $0 == "." || $0 == "_" || $0 == "-" ? $0 : "-" })
        return String((cleaned + "-" + String(target.port ?? 22)).prefix(64))
    }

    /// A job id: a job name, `-`, a UTC time and a random suffix; at most 80 characters.
    public static func validateJobID(_ id: String) throws {
        guard isWord(id, maxLength: 80) else { throw JobsError.invalidJobID(id) }
    }

    public static func isValidJobID(_ id: String) -> Bool { (try? validateJobID(id)) != nil }

    /// A fresh id for a job called `name`: `NAME-YYYYMMDD-HHMMSS-xxxx`.
    public static func newJobID(name: String, date: Date = Date()) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? calendar.timeZone
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        let stamp = String(format: "%04d%02d%02d-%02d%02d%02d", c.year ?? 0, c.month ?? 0, c.day ?? 0, c.hour ?? 0, c.minute ?? 0, c.second ?? 0)
        let suffix = String(format: "%04x", UInt16.random(in: 0...UInt16.max))
        return "\(name)-\(stamp)-\(suffix)"
    }

    /// A job name from a config or command: the file's stem, cleaned to the job-name alphabet.
    public static func defaultJobName(from source: String) -> String {
        let stem = ((source as NSString).lastPathComponent as NSString).deletingPathExtension
        var cleaned = String(stem.unicodeScalars.map { wordCharacters.contains($0) ? Character($0) : "-" })
        while cleaned.contains("..") { cleaned = cleaned.replacingOccurrences(of: "..", with: ".") }
        while let first = cleaned.unicodeScalars.first, !alphanumerics.contains(first) { cleaned.removeFirst() }
        if cleaned.count > 48 { cleaned = String(cleaned.prefix(48)) }
        return cleaned.isEmpty ? "job" : cleaned
    }

    /// Checks a relative path from a manifest, a listing or a user: not empty, not absolute, no `.`,
    /// `..` or empty components, no NUL, no backslash tricks. Returns its components.
    @discardableResult
    public static func validateRelativePath(_ path: String) throws -> [String] {
        try checkRelativePath(path)
        return path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
    }

    /// `validateRelativePath` without its components: one pass over the bytes (a manifest checks
    /// 10,000 paths on each side of a launch).
    public static func checkRelativePath(_ path: String) throws {
        var path = path
        let problem = path.withUTF8 { bytes -> String? in
            guard !bytes.isEmpty else { return "it is empty" }
            guard bytes[0] != 0x2F else { return "it is absolute; only paths inside the job's folder are allowed" }
            var start = 0
            for i in 0...bytes.count {
                if i < bytes.count {
                    if bytes[i] == 0 { return "it contains a NUL byte" }
                    guard bytes[i] == 0x2F else { continue }
                }
                let length = i - start
                if length == 0 || (length == 1 && bytes[start] == 0x2E) { return "it has an empty or `.` component" }
                if length == 2 && bytes[start] == 0x2E && bytes[start + 1] == 0x2E { return "`..` would lead out of the job's folder" }
                start = i + 1
            }
            return nil
        }
        if let problem { throw JobsError.unsafePath(path: path, reason: problem) }
    }

    /// Whether the symlink at `linkPath` (relative to a tree's root) with `target` stays inside the
    /// tree. Resolved by its words, which is what the kernel does as long as no `..` follows a
    /// component that is itself one of `otherLinks` (then the kernel would climb from the link's
    /// target instead): such targets are refused.
    public static func symlinkStaysInside(linkPath: String, target: String, otherLinks: Set<String> = []) -> Bool {
        guard !target.isEmpty, !target.hasPrefix("/"), !target.utf8.contains(0) else { return false }
        var stack = linkPath.split(separator: "/").map(String.init)
        stack.removeLast()
        var throughLink = false
        for part in target.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == ".." {
                if stack.isEmpty || throughLink { return false }
                stack.removeLast()
            } else {
                stack.append(String(part))
                if otherLinks.contains(stack.joined(separator: "/")) { throughLink = true }
            }
        }
        return true
    }
}
