import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A job's working directory, ready to send: the manifest and where each distinct content lives here.
public struct JobPackage: Sendable {
    public var root: String
    public var manifest: Manifest
    /// sha256 → one local file with that content.
    public var sources: [String: String]
    /// Paths left out, with why (symlinks that lead out of the tree, sockets, unreadable files).
    public var skipped: [(path: String, reason: String)]

    public var fileCount: Int { manifest.files.count }
    public var totalBytes: Int64 { manifest.totalBytes }
}

/// Walks a working directory under its `.ferryignore` rules and hashes what it keeps.
public enum Packager {
    /// The names in a folder, sorted, read as bytes: a name that is not UTF-8 comes back apart
    /// (FileManager would hand back a lossy spelling that names no file), shown with `?` for its
    /// bad bytes. nil when the folder cannot be read.
    static func names(in path: String) -> (names: [String], notUTF8: [String])? {
        guard let dir = opendir(path) else { return nil }
        defer { closedir(dir) }
        var names: [String] = [], bad: [String] = []
        while let entry = readdir(dir) {
            let bytes = withUnsafeBytes(of: &entry.pointee.d_name) { raw in Array(raw.prefix { $0 != 0 }) }
            if bytes == [0x2E] || bytes == [0x2E, 0x2E] { continue }
            if let name = String(validating: bytes, as: UTF8.self) { names.append(name) }
            else { bad.append(String(decoding: bytes.map { $0 < 0x80 ? $0 : 0x3F }, as: UTF8.self)) }
        }
        return (names.sorted(), bad.sorted())
    }

    /// `cacheFile` remembers hashes by (size, mtime, inode) between launches.
    public static func package(_ directory: String, cacheFile: String? = nil) throws -> JobPackage {
        let root = URL(fileURLWithPath: directory).standardizedFileURL.path
        guard POSIX.isDirectory(root) else { throw JobsError.io(path: directory, reason: "not a folder") }
        let cache = cacheFile.map(HashCache.init(path:))
        var manifest = Manifest()
        var sources: [String: String] = [:]
        var skipped: [(String, String)] = []
        var links: [(path: String, target: String)] = []

        func walk(_ relative: String, rules inherited: IgnoreRules) throws {
            let full = relative.isEmpty ? root : (root as NSString).appendingPathComponent(relative)
            var rules = inherited
            let ignoreFile = (full as NSString).appendingPathComponent(".ferryignore")
            if let data = POSIX.read(ignoreFile) { rules.add(String(decoding: data, as: UTF8.self), base: relative) }
            guard let listing = Packager.names(in: full) else {
                skipped.append((relative.isEmpty ? "." : relative, "unreadable folder"))
                return
            }
            for shown in listing.notUTF8 {
                skipped.append((relative.isEmpty ? shown : relative + "/" + shown,
                                "its name is not valid UTF-8 (ferry sends names as UTF-8, as the manifest and the host need them) — rename it"))
            }
            let names = listing.names
            var keptAny = false
            for name in names {
                let path = relative.isEmpty ? name : relative + "/" + name
                let fullPath = (root as NSString).appendingPathComponent(path)
                var st = stat()
                guard lstat(fullPath, &st) == 0 else { skipped.append((path, "vanished while packaging")); continue }
                switch st.st_mode & S_IFMT {
                case S_IFDIR:
                    if rules.isIgnored(path, isDirectory: true) { continue }
                    keptAny = true
                    try walk(path, rules: rules)
                case S_IFREG:
                    if rules.isIgnored(path, isDirectory: false) { continue }
                    guard access(fullPath, R_OK) == 0 else { skipped.append((path, "unreadable")); continue }
                    let sha = try cache?.sha256(of: fullPath, key: path) ?? HashCache.hashFile(fullPath)
                    manifest.files.append(Manifest.File(path: path, sha256: sha, size: Int64(st.st_size),
                                                        executable: st.st_mode & S_IXUSR != 0))
                    if sources[sha] == nil { sources[sha] = fullPath }
                    keptAny = true
                case S_IFLNK:
                    if rules.isIgnored(path, isDirectory: false) { continue }
                    guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: fullPath) else {
                        skipped.append((path, "unreadable symlink")); continue
                    }
                    links.append((path, target))
                    keptAny = true
                default:
                    if !rules.isIgnored(path, isDirectory: false) { skipped.append((path, "not a file, folder or symlink")) }
                }
            }
            if !keptAny && !relative.isEmpty { manifest.directories.append(relative) }
        }
        try walk("", rules: IgnoreRules())
        let linkPaths = Set(links.map(\.path))
        for link in links {
            if Names.symlinkStaysInside(linkPath: link.path, target: link.target, otherLinks: linkPaths) {
                manifest.symlinks.append(Manifest.Symlink(path: link.path, target: link.target))
            } else {
                skipped.append((link.path, "symlink to \(link.target) leads out of the working directory"))
            }
        }
        cache?.save()
        return JobPackage(root: root, manifest: manifest, sources: sources, skipped: skipped)
    }
}
