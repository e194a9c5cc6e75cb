import Crypto
import Foundation
import System
#if canImport(Glibc)
import Glibc
#endif

// The files a fetch may take: which ones `--what` names (listed with sha256, size and mode), and
// their bytes in one stream (`filesGet`). Nothing here follows a symlink.

extension Agent {
    /// `what`: `all` (the output), `best`/`last` (the newest such checkpoint), `log`, `events`, or a
    /// path P as the user wrote it: `work/P` (the folder they sent) first, then `output/P`; both
    /// existing is an error naming both. A path of the job's folder itself (`work/out`) still works
    /// when neither does. Each entry says where it lands: P's files under `P/`, the output's
    /// without `output/`.
    func files(_ id: String, what: String) throws -> FileListing {
        let (listing, cache) = try files(id, what: what, hashing: true)
        cache.save()
        return listing
    }

    /// The listing, and the job's hash cache it used. With `hashing` false, a file's sha256 is
    /// given only when the cache knows it (else empty: `filesFetch` sends it after the file's bytes,
    /// read once), and no file is opened: the walk's lstat says the rest.
    func files(_ id: String, what: String, hashing: Bool) throws -> (FileListing, HashCache) {
        let paths = try store.paths(id)
        let status = try status(id)
        let root = paths.directory
        var roots: [(remote: String, local: String)] = []
        switch what {
        case "all":
            roots = [("output", "")]
        case "log":
            roots = [("output.log", "output.log")]
        case "events":
            roots = [("events.jsonl", "events.jsonl")]
        case "best", "last":
            let progress = JobProgress.read(eventsFile: paths.events)
            if let relative = progress.checkpoints[what], (try? Names.validateRelativePath(relative)) != nil,
               try NoFollow.kind(of: "output/" + relative, below: root) != nil {
                roots = [("output/" + relative, relative)]
            } else if let found = Agent.newestDirectory(named: what, under: paths.output) {
                roots = [("output/" + found, found)]
            }
        default:
            try Names.validateRelativePath(what)
            let inWork = try NoFollow.kind(of: "work/" + what, below: root)
            let inOutput = try NoFollow.kind(of: "output/" + what, below: root)
            switch (inWork, inOutput) {
            case (.some, .some):
                throw JobsError.unsafePath(path: what, reason: "both work/\(what) (the folder you sent) and output/\(what) (the job's output) exist in job \(id); ask for one: --what work/\(what) or --what output/\(what)")
            case (.some, nil): roots = [("work/" + what, what)]
            case (nil, .some): roots = [("output/" + what, what)]
            case (nil, nil):
                if try NoFollow.kind(of: what, below: root) != nil { roots = [(what, what)] }
            }
        }
        var entries: [FileListing.Entry] = []
        let cache = Agent.hashCache(root)
        for (remote, local) in roots {
            for (file, walked) in Agent.regularFiles(under: remote, in: root) {
                var st = walked
                var sha = ""
                if hashing {
                    let opened: (fd: Int32, stat: stat)
                    do { opened = try NoFollow.openFile(file, below: root) } catch JobsError.io { continue }   // vanished meanwhile
                    defer { close(opened.fd) }
                    st = opened.stat
                    sha = try cache.sha256(of: opened.fd, stat: opened.stat, key: file)
                } else {
                    sha = cache.cached(key: file, stat: st) ?? ""
                }
                let rest = file == remote ? "" : String(file.dropFirst(remote.count + 1))
                let landing = local.isEmpty ? rest : rest.isEmpty ? local : local + "/" + rest
                entries.append(FileListing.Entry(path: file, size: Int64(st.st_size), sha256: sha,
                                                 modified: Date(timeIntervalSince1970: TimeInterval(st.st_mtim.tv_sec)),
                                                 mode: Int(st.st_mode & 0o777), local: landing))
            }
        }
        return (FileListing(root: root, files: entries, state: status.state), cache)
    }

    /// Regular files under `relative` (itself a file or a folder) inside `root`, never following
    /// symlinks (links inside are left out; a link on the way is `unsafePath`).
    /// Each comes with its lstat.
    static func regularFiles(under relative: String, in root: String) -> [(path: String, stat: stat)] {
        guard let kind = try? NoFollow.kind(of: relative, below: root) else { return [] }
        if kind == .file {
            var st = stat()
            guard lstat((root as NSString).appendingPathComponent(relative), &st) == 0, NoFollow.Kind(st.st_mode) == .file else { return [] }
            return [(relative, st)]
        }
        guard kind == .directory else { return [] }
        var out: [(path: String, stat: stat)] = []
        func walk(_ relative: String) {
            let full = (root as NSString).appendingPathComponent(relative)
            guard let listing = Packager.names(in: full) else { return }
            for name in listing.names where !name.hasSuffix(partialSuffix) {
                let path = relative + "/" + name
                var st = stat()
                guard lstat((root as NSString).appendingPathComponent(path), &st) == 0 else { continue }
                switch NoFollow.Kind(st.st_mode) {
                case .file: out.append((path, st))
                case .directory: walk(path)
                case .symlink, .other: continue
                }
            }
        }
        walk(relative)
        return out
    }

    /// Streams the asked files of job `id` (paths in its folder, as a listing gave them) in
    /// `FilesStreamEvent` frames, each from its offset, opened without following any link. Each
    /// file's sha256 follows its bytes (`H`), hashed as they were read, from byte 0 (a resumed
    /// file's first bytes are read, not sent); `-` in its place when the file changed while it was
    /// read. A want with `have` (the client's copy of that size) gets `U` when the host's file
    /// hashes the same, and nothing is sent. Hashes learnt go to `cache` (the listing's, when the
    /// listing came on the same channel), saved at the end.
    func streamFiles(_ id: String, files: [FileWant], cache given: HashCache? = nil) -> Int32 {
        let writer = FilesStreamWriter(fd: 1)
        do {
            let root = try store.paths(id).directory
            let cache = given ?? Agent.hashCache(root)
            defer { cache.save(pruning: given != nil) }
            for (index, want) in files.enumerated() {
                let opened: (fd: Int32, stat: stat)
                do {
                    guard want.offset >= 0 else { throw JobsError.unsafePath(path: want.path, reason: "a negative offset") }
                    opened = try NoFollow.openFile(want.path, below: root)
                } catch let error as JobsError {
                    let reply = try JSON.encode(AgentErrorReply(error: error, message: error.description))
                    try writer.header("S \(index) " + String(decoding: reply, as: UTF8.self))
                    continue
                }
                defer { close(opened.fd) }
                let before = opened.stat
                let size = Int64(before.st_size)
                var known = cache.cached(key: want.path, stat: before)
                if let have = want.have {
                    let sha = try known ?? cache.sha256(of: opened.fd, stat: before, key: want.path)
                    known = sha
                    if sha == have {
                        try writer.header("U \(index)")
                        continue
                    }
                }
                let offset = min(want.offset, size)
                var hasher: SHA256? = known == nil ? SHA256() : nil
                if offset > 0, hasher != nil {
                    do { _ = try FileIO.readChunks(opened.fd, from: 0, limit: offset, path: want.path) { hasher!.update(bufferPointer: $0) } }
                    catch let error as SystemError { throw JobsError(error) }
                }
                try writer.header("F \(index) \(offset) \(size - offset) \(String(before.st_mode & 0o777, radix: 8))")
                try writer.body(from: opened.fd, offset: offset, length: size - offset) { hasher?.update(bufferPointer: $0) }
                var after = stat()
                let digest = hasher.map { HashCache.hex($0.finalize()) } ?? known!
                if fstat(opened.fd, &after) == 0, Agent.sameContent(before, after) {
                    if known == nil { cache.record(key: want.path, stat: before, sha256: digest) }
                    try writer.header("H \(digest)")
                } else {
                    try writer.header("H -")
                }
            }
            try writer.header("E")
            try writer.flush()
            return 0
        } catch {
            let failure = JobsError.from(error, verb: AgentRequest.filesGet(id: id, files: []).name)
            if let data = try? JSON.encode(AgentErrorReply(error: failure, message: failure.description)) {
                try? writer.header("X " + String(decoding: data, as: UTF8.self))
                try? writer.flush()
            }
            return 1
        }
    }

    /// A job folder's hash cache (`.hashes`; an older ferry's `.hashes.json` is read once).
    static func hashCache(_ root: String) -> HashCache {
        HashCache(path: (root as NSString).appendingPathComponent(".hashes"), olderPath: (root as NSString).appendingPathComponent(".hashes.json"))
    }

    /// Whether a file's stat before and after reading it says nobody wrote it meanwhile.
    static func sameContent(_ a: stat, _ b: stat) -> Bool {
        a.st_ino == b.st_ino && a.st_size == b.st_size && a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec
            && a.st_ctim.tv_sec == b.st_ctim.tv_sec && a.st_ctim.tv_nsec == b.st_ctim.tv_nsec
    }
}
