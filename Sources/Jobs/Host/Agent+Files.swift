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
        let cache = HashCache(path: (root as NSString).appendingPathComponent(".hashes.json"))
        for (remote, local) in roots {
            for file in Agent.regularFiles(under: remote, in: root) {
                let opened: (fd: Int32, stat: stat)
                do { opened = try NoFollow.openFile(file, below: root) } catch JobsError.io { continue }   // vanished meanwhile
                defer { close(opened.fd) }
                let sha = try cache.sha256(of: opened.fd, stat: opened.stat, key: file)
                let rest = file == remote ? "" : String(file.dropFirst(remote.count + 1))
                let landing = local.isEmpty ? rest : rest.isEmpty ? local : local + "/" + rest
                entries.append(FileListing.Entry(path: file, size: Int64(opened.stat.st_size), sha256: sha,
                                                 modified: Date(timeIntervalSince1970: TimeInterval(opened.stat.st_mtim.tv_sec)),
                                                 mode: Int(opened.stat.st_mode & 0o777), local: landing))
            }
        }
        cache.save()
        return FileListing(root: root, files: entries, state: status.state)
    }

    /// Regular files under `relative` (itself a file or a folder) inside `root`, never following
    /// symlinks (links inside are left out; a link on the way is `unsafePath`).
    static func regularFiles(under relative: String, in root: String) -> [String] {
        guard let kind = try? NoFollow.kind(of: relative, below: root) else { return [] }
        if kind == .file { return [relative] }
        guard kind == .directory else { return [] }
        var out: [String] = []
        func walk(_ relative: String) {
            let full = (root as NSString).appendingPathComponent(relative)
            guard let listing = Packager.names(in: full) else { return }
            for name in listing.names where !name.hasSuffix(partialSuffix) {
                let path = relative + "/" + name
                var st = stat()
                guard lstat((root as NSString).appendingPathComponent(path), &st) == 0 else { continue }
                switch NoFollow.Kind(st.st_mode) {
                case .file: out.append(path)
                case .directory: walk(path)
                case .symlink, .other: continue
                }
            }
        }
        walk(relative)
        return out
    }

    /// Streams the asked files of job `id` (paths in its folder, as a listing gave them) in
    /// `FilesStreamEvent` frames, each from its offset, opened without following any link.
    func streamFiles(_ id: String, files: [FileWant]) -> Int32 {
        let writer = FilesStreamWriter(fd: 1)
        do {
            let root = try store.paths(id).directory
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
                let size = Int64(opened.stat.st_size)
                let offset = min(want.offset, size)
                try writer.header("F \(index) \(offset) \(size - offset) \(String(opened.stat.st_mode & 0o777, radix: 8))")
                try writer.body(from: opened.fd, offset: offset, length: size - offset)
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
}
