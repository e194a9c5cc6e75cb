import Foundation

/// Every file of a job's working directory with its content hash: what the host materialises into
/// the job's `work/` from its blob store.
public struct Manifest: Codable, Sendable, Equatable {
    public struct File: Codable, Sendable, Equatable {
        public var path: String
        public var sha256: String
        public var size: Int64
        /// Whether the owner may execute it (the only mode bit carried).
        public var executable: Bool
        public init(path: String, sha256: String, size: Int64, executable: Bool = false) {
            self.path = path; self.sha256 = sha256; self.size = size; self.executable = executable
        }
    }

    public struct Symlink: Codable, Sendable, Equatable {
        public var path: String
        public var target: String
        public init(path: String, target: String) { self.path = path; self.target = target }
    }

    public var files: [File]
    public var symlinks: [Symlink]
    public var directories: [String]

    public init(files: [File] = [], symlinks: [Symlink] = [], directories: [String] = []) {
        self.files = files; self.symlinks = symlinks; self.directories = directories
    }

    public var totalBytes: Int64 { files.reduce(0) { $0 + $1.size } }

    /// The distinct blobs and their sizes.
    public var blobs: [String: Int64] {
        var result: [String: Int64] = [:]
        for f in files { result[f.sha256] = f.size }
        return result
    }

    /// Refuses anything that could write outside the tree: absolute paths, `..`, duplicate paths,
    /// a file under a symlink, symlinks that lead out, malformed hashes.
    public func validate() throws {
        var seen = Set<String>()
        let linkPaths = Set(symlinks.map(\.path))
        for dir in directories {
            try Names.validateRelativePath(dir)
        }
        for file in files {
            // Components only where a symlink could hold the file.
            let parts: [String]
            if linkPaths.isEmpty { try Names.checkRelativePath(file.path); parts = [] } else { parts = try Names.validateRelativePath(file.path) }
            guard seen.insert(file.path).inserted else { throw JobsError.unsafePath(path: file.path, reason: "it appears twice in the manifest") }
            guard Manifest.isHash(file.sha256) else { throw JobsError.unsafePath(path: file.path, reason: "its hash \(file.sha256.debugDescription) is not a sha256") }
            guard file.size >= 0 else { throw JobsError.unsafePath(path: file.path, reason: "negative size") }
            for i in 1..<max(parts.count, 1) where linkPaths.contains(parts[0..<i].joined(separator: "/")) {
                throw JobsError.unsafePath(path: file.path, reason: "it lies under a symlink")
            }
        }
        for link in symlinks {
            let parts = try Names.validateRelativePath(link.path)
            guard seen.insert(link.path).inserted else { throw JobsError.unsafePath(path: link.path, reason: "it appears twice in the manifest") }
            for i in 1..<max(parts.count, 1) where linkPaths.contains(parts[0..<i].joined(separator: "/")) {
                throw JobsError.unsafePath(path: link.path, reason: "it lies under a symlink")
            }
            guard Names.symlinkStaysInside(linkPath: link.path, target: link.target, otherLinks: linkPaths) else {
                throw JobsError.unsafePath(path: link.path, reason: "the symlink leads out of the tree (to \(link.target.debugDescription))")
            }
        }
    }

    // MARK: - Coding

    /// `entries`: every file in one string of `CompactRecords` (fields ended by U+FFFF, or by NUL,
    /// which no path holds, when a path holds U+FFFF): path, sha256, size, `x` or `-`. One JSON string instead of an object per file: a launch of 10,000
    /// files encodes and decodes its manifest several times (request, job folder, spare), and
    /// objects cost most of that. `files` (an object per file, as an older ferry wrote
    /// manifest.json) is read too.
    private enum CodingKeys: String, CodingKey { case entries, files, symlinks, directories }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        var records = CompactRecords(capacity: files.count * 96)
        for file in files { records.append(file.path, file.sha256, String(file.size), file.executable ? "x" : "-") }
        try container.encode(records.text, forKey: .entries)
        try container.encode(symlinks, forKey: .symlinks)
        try container.encode(directories, forKey: .directories)
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        if let text = try container.decodeIfPresent(String.self, forKey: .entries) {
            guard let parsed = Manifest.parseEntries(text) else {
                throw DecodingError.dataCorruptedError(forKey: .entries, in: container, debugDescription: "not path, sha256, size and x|- fields, each ended by U+FFFF or NUL")
            }
            files = parsed
        } else {
            files = try container.decodeIfPresent([File].self, forKey: .files) ?? []
        }
        symlinks = try container.decodeIfPresent([Symlink].self, forKey: .symlinks) ?? []
        directories = try container.decodeIfPresent([String].self, forKey: .directories) ?? []
    }

    static func parseEntries(_ text: String) -> [File]? {
        var files: [File] = []
        let whole = CompactRecords.parse(text, fields: 4) { f in
            guard let size = Int64(f[2]), f[3] == "x" || f[3] == "-" else { return false }
            files.append(File(path: String(f[0]), sha256: String(f[1]), size: size, executable: f[3] == "x"))
            return true
        }
        return whole ? files : nil
    }

    static func isHash(_ s: String) -> Bool {
        s.utf8.count == 64 && s.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
    }
}
