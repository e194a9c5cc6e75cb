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
        let cache = cacheFile.map { HashCache(path: $0, olderPath: $0 + ".json") }
        var manifest = Manifest()
        var sources: [String: String] = [:]
        var skipped: [(String, String)] = []
        var links: [(path: String, target: String)] = []
        // Files in walk order; hashed after the walk, those the cache does not know on several threads.
        var found: [(path: String, full: String, stat: stat)] = []

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
                    found.append((path, fullPath, st))
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
        let hashes = try hash(found, cache: cache)
        for (file, sha) in zip(found, hashes) {
            manifest.files.append(Manifest.File(path: file.path, sha256: sha, size: Int64(file.stat.st_size),
                                                executable: file.stat.st_mode & S_IXUSR != 0))
            if sources[sha] == nil { sources[sha] = file.full }
        }
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

    /// The sha256 of each file: the cache's when size, mtime and inode match, else read, on as many
    /// threads as there are cores.
    static func hash(_ files: [(path: String, full: String, stat: stat)], cache: HashCache?) throws -> [String] {
        var hashes = files.map { cache?.cached(key: $0.path, stat: $0.stat) }
        let todo = hashes.indices.filter { hashes[$0] == nil }
        guard !todo.isEmpty else { return hashes.map { $0 ?? "" } }
        let results = HashResults(count: todo.count)
        let lanes = max(1, min(8, ProcessInfo.processInfo.activeProcessorCount, todo.count))
        DispatchQueue.concurrentPerform(iterations: lanes) { lane in
            var i = lane
            while i < todo.count, !results.failure.isSet {
                do { results.set(i, try HashCache.hashFile(files[todo[i]].full)) } catch { results.failure.set(error) }
                i += lanes
            }
        }
        if let error = results.failure.value { throw error }
        for (k, index) in todo.enumerated() {
            let sha = results.value(k)
            hashes[index] = sha
            cache?.record(key: files[index].path, stat: files[index].stat, sha256: sha)
        }
        return hashes.map { $0 ?? "" }
    }
}

/// Hashes computed on several threads, each slot written once.
final class HashResults: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [String]
    let failure = FirstError()
    init(count: Int) { values = Array(repeating: "", count: count) }
    func set(_ i: Int, _ v: String) { lock.lock(); values[i] = v; lock.unlock() }
    func value(_ i: Int) -> String { lock.lock(); defer { lock.unlock() }; return values[i] }
}
