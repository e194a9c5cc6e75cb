import Crypto
import Foundation
import System
#if canImport(Glibc)
import Glibc
#endif

/// Work folders made ahead of time ("spares"), so that a relaunch does not create every file of
/// its `work/` again. After a job with many files starts, a detached, low-priority
/// `ferry agent prepare-work ID` copies that job's tree once more from the store into
/// `spares/NAME/work` (with its manifest beside it). The next launch of the same tree, or of a tree
/// that differs in a few files, takes that folder with one rename and patches the difference
/// (removes, rewrites and adds only what changed); anything else gets a fresh copy as before.
///
/// A spare is a plain copy, never a hard link: no job sees it before it becomes that job's own
/// `work/`, so a job that rewrites its files in place changes neither the store nor any other job.
/// At most `keep` spares are kept (the newest); a tree larger than `maxBytes`, or one that would
/// leave the disk short, gets none.
struct SpareWork {
    let layout: HostLayout
    let blobs: BlobStore

    /// Trees with fewer files are copied fresh (fast enough; no process to start for them).
    static let minFiles = 256
    static let maxBytes: Int64 = 2 << 30
    static let keep = 2
    /// How long a launch waits for a spare of its tree that is being made.
    static let waitForBuilding: TimeInterval = 60

    var directory: String { layout.sparesDirectory }

    /// Off with FERRY_SPARE_WORK=0 in the host's environment (no copies ahead, no disk for them).
    static func enabled(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        environment["FERRY_SPARE_WORK"] != "0"
    }

    /// Whether a tree is worth a spare.
    static func wanted(_ manifest: Manifest) -> Bool {
        manifest.files.count >= minFiles && manifest.totalBytes <= maxBytes
    }

    /// The tree's identity: a sha256 over every entry (kind, path, content, mode; link targets).
    static func treeID(_ manifest: Manifest) -> String {
        var hasher = SHA256()
        func add(_ s: String) { var s = s; s.withUTF8 { hasher.update(bufferPointer: UnsafeRawBufferPointer($0)) }; hasher.update(data: [0]) }
        for file in manifest.files { add("f"); add(file.path); add(file.sha256); add(file.executable ? "x" : "-") }
        for link in manifest.symlinks { add("l"); add(link.path); add(link.target) }
        for dir in manifest.directories { add("d"); add(dir) }
        return HashCache.hex(hasher.finalize())
    }

    // MARK: - Taking a spare

    /// Builds `work` for `manifest` from a spare when one is close enough (returns true), else does
    /// nothing (returns false) and the caller copies every file. A spare that fails half-way is
    /// removed and `work` is left absent.
    /// `tree`: the manifest's `treeID`, when the caller has it.
    func take(_ manifest: Manifest, into work: String, claim: String, tree known: String? = nil) throws -> Bool {
        guard SpareWork.wanted(manifest), POSIX.isDirectory(directory) else { return false }
        let tree = known ?? SpareWork.treeID(manifest)
        let deadline = Date().addingTimeInterval(SpareWork.waitForBuilding)
        // Spares being made that would do (decided once: their manifests are read once).
        var awaited: Set<String>?
        // Ready ones found too different (each manifest is read once, also while waiting).
        var rejected = Set<String>()
        var lastLook = false
        while true {
            let (ready, building) = listing()
            // Ready ones, newest first: the same tree, else the first whose difference is small.
            for name in ready.sorted(by: { $0.date > $1.date }).map(\.name) where !rejected.contains(name) {
                let folder = (directory as NSString).appendingPathComponent(name)
                guard let change = spareManifest(folder, tree: tree, against: manifest) else { rejected.insert(name); continue }
                let taken = (directory as NSString).appendingPathComponent(".taken-\(claim)")
                guard rename(folder, taken) == 0 else { continue }  // another launch took it first
                defer { try? FileManager.default.removeItem(atPath: taken) }
                let from = (taken as NSString).appendingPathComponent("work")
                guard rename(from, work) == 0 else { throw JobsError.io(path: work, reason: SystemError.text(errno)) }
                do {
                    if let change { try patch(work, change, to: manifest) }
                    return true
                } catch {
                    try? FileManager.default.removeItem(atPath: work)
                    throw error
                }
            }
            // One of this tree being made (a relaunch right after the launch that asked for it):
            // waiting for it costs less than copying every file a second time beside it.
            if awaited == nil {
                awaited = Set(building.filter { name in
                    SpareWork.builderAlive(name) && spareManifest((directory as NSString).appendingPathComponent(name), tree: tree, against: manifest) != nil
                })
            }
            let waiting = building.contains { awaited?.contains($0) == true && SpareWork.builderAlive($0) }
            if !waiting {
                // One just finished (renamed between two looks): one more look at the ready ones.
                guard awaited?.isEmpty == false, !lastLook else { return false }
                lastLook = true
                continue
            }
            guard Date() < deadline else { return false }
            usleep(20_000)
        }
    }

    /// The folders under spares/: ready ones (with their time) and ones being made.
    private func listing() -> (ready: [(name: String, date: Date)], building: [String]) {
        var ready: [(String, Date)] = []
        var building: [String] = []
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] {
            let path = (directory as NSString).appendingPathComponent(name)
            if name.hasPrefix(".new-") { building.append(name); continue }
            guard !name.hasPrefix("."), POSIX.isDirectory(path) else { continue }
            var st = stat()
            guard lstat(path, &st) == 0 else { continue }
            ready.append((name, Date(timeIntervalSince1970: TimeInterval(st.st_mtim.tv_sec) + TimeInterval(st.st_mtim.tv_nsec) / 1e9)))
        }
        return (ready, building)
    }

    /// A spare's usefulness for `manifest`: `.some(nil)` for the same tree, `.some(difference)` for
    /// a tree close enough to patch, nil for one too different (or unreadable).
    private func spareManifest(_ folder: String, tree: String, against manifest: Manifest) -> Difference?? {
        if storedTree(in: folder) == tree { return .some(nil) }
        guard let data = POSIX.read((folder as NSString).appendingPathComponent("manifest.json")),
              let old = try? JSON.decode(Manifest.self, from: data, what: "a spare's manifest") else { return nil }
        // The same paths as `manifest`, which was checked: nothing more to check. Else the spare's
        // own paths are checked before any is used.
        let same = SpareWork.samePaths(old, manifest)
        guard same || (try? old.validate()) != nil else { return nil }
        let change = SpareWork.difference(from: old, to: manifest, samePaths: same)
        return change.cost <= max(manifest.files.count / 2, 1) ? .some(change) : nil
    }

    /// The tree id a spare's folder (ready or being made) holds.
    private func storedTree(in folder: String) -> String? {
        POSIX.read((folder as NSString).appendingPathComponent("tree")).map { String(decoding: $0, as: UTF8.self) }
    }

    /// `.new-PID-…`: whether the process making it still runs.
    static func builderAlive(_ name: String) -> Bool {
        let parts = name.split(separator: "-")
        guard parts.count >= 2, let pid = Int32(parts[1]) else { return false }
        return POSIX.isAlive(pid)
    }

    /// What turns tree `old` into tree `new`.
    struct Difference: Equatable {
        /// Paths to remove (files, symlinks, then folders deepest first).
        var remove: [String] = []
        var removeFolders: [String] = []
        /// Files of `new` to write (absent, or other bytes), as indices into `new.files`.
        var write: [Int] = []
        /// Files whose only change is the executable bit.
        var chmod: [Int] = []
        var links: [Manifest.Symlink] = []
        var folders: [String] = []
        var cost: Int { remove.count + removeFolders.count + write.count + chmod.count + links.count + folders.count }
    }

    /// (`samePaths`: what `samePaths(old, new)` says, when the caller knows it already.)
    static func difference(from old: Manifest, to new: Manifest, samePaths same: Bool? = nil) -> Difference {
        var d = Difference()
        // The usual relaunch: the same paths in the same order, some contents changed. One pass,
        // without the dictionaries and folder sets below (25 ms for 10,000 files).
        if same ?? samePaths(old, new) {
            for (i, (was, file)) in zip(old.files, new.files).enumerated() {
                if was.sha256 != file.sha256 {
                    d.remove.append(file.path)
                    d.write.append(i)
                } else if was.executable != file.executable {
                    d.chmod.append(i)
                }
            }
            return d
        }
        return anyDifference(from: old, to: new)
    }

    /// Whether two trees have the same paths in the same order (only contents or modes differ).
    static func samePaths(_ a: Manifest, _ b: Manifest) -> Bool {
        a.files.count == b.files.count && a.symlinks == b.symlinks && a.directories == b.directories
            && zip(a.files, b.files).allSatisfy { $0.path == $1.path }
    }

    /// The difference of any two trees (paths added, removed, or changed in kind).
    static func anyDifference(from old: Manifest, to new: Manifest) -> Difference {
        var d = Difference()
        let oldFiles = Dictionary(old.files.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        let oldLinks = Dictionary(old.symlinks.map { ($0.path, $0.target) }, uniquingKeysWith: { a, _ in a })
        let newFiles = Dictionary(new.files.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        let newLinks = Dictionary(new.symlinks.map { ($0.path, $0.target) }, uniquingKeysWith: { a, _ in a })
        for file in old.files {
            guard let now = newFiles[file.path] else { d.remove.append(file.path); continue }
            if now.sha256 != file.sha256 { d.remove.append(file.path) }
        }
        for link in old.symlinks where newLinks[link.path] != link.target { d.remove.append(link.path) }
        for (i, file) in new.files.enumerated() {
            if let was = oldFiles[file.path], was.sha256 == file.sha256 {
                if was.executable != file.executable { d.chmod.append(i) }
            } else {
                d.write.append(i)
            }
        }
        for link in new.symlinks where oldLinks[link.path] != link.target { d.links.append(link) }
        let oldFolders = folders(of: old), newFolders = folders(of: new)
        d.removeFolders = oldFolders.subtracting(newFolders).sorted { $0.count > $1.count }
        d.folders = newFolders.subtracting(oldFolders).sorted { $0.count < $1.count }
        return d
    }

    /// Every folder of a tree: its listed ones and each entry's parents.
    static func folders(of manifest: Manifest) -> Set<String> {
        var result = Set(manifest.directories)
        func parent(_ path: Substring) -> Substring { path.lastIndex(of: "/").map { path[..<$0] } ?? "" }
        func parents(_ path: String) {
            var p = parent(path[...])
            while !p.isEmpty, result.insert(String(p)).inserted { p = parent(p) }
        }
        for dir in manifest.directories { parents(dir) }
        for file in manifest.files { parents(file.path) }
        for link in manifest.symlinks { parents(link.path) }
        return result
    }

    /// Turns `work` into tree `new` by `d` (its difference from the spare's tree): removals first,
    /// so a path that changes kind (a file that became a folder) is free before it is made again.
    func patch(_ work: String, _ d: Difference, to new: Manifest) throws {
        func full(_ relative: String) -> String { (work as NSString).appendingPathComponent(relative) }
        for path in d.remove where unlink(full(path)) != 0 && errno != ENOENT {
            throw JobsError.io(path: full(path), reason: SystemError.text(errno))
        }
        for path in d.removeFolders where rmdir(full(path)) != 0 && errno != ENOENT {
            throw JobsError.io(path: full(path), reason: SystemError.text(errno))
        }
        for path in d.folders where mkdir(full(path), 0o755) != 0 && errno != EEXIST {
            throw JobsError.io(path: full(path), reason: SystemError.text(errno))
        }
        let mask = BlobStore.umaskBits
        for i in d.write {
            let file = new.files[i]
            let source = try blobs.source(file.sha256)
            defer { close(source.fd) }
            try BlobStore.writeCopy(of: (source.fd, source.offset, source.size, false), to: full(file.path),
                                    mode: file.executable ? 0o755 : 0o644, umask: mask)
            if let pack = source.pack { try LentPack.checkCopy(from: source.fd, pack: pack, to: full(file.path)) }
        }
        for i in d.chmod where chmod(full(new.files[i].path), new.files[i].executable ? 0o755 : 0o644) != 0 {
            throw JobsError.io(path: full(new.files[i].path), reason: SystemError.text(errno))
        }
        for link in d.links where symlink(link.target, full(link.path)) != 0 {
            throw JobsError.io(path: full(link.path), reason: SystemError.text(errno))
        }
    }

    // MARK: - Making a spare

    /// A new spare's name: a time in milliseconds and a random suffix.
    static func newName() -> String {
        "\(Int(Date().timeIntervalSince1970 * 1000))-\(String(format: "%04x", UInt16.random(in: 0...UInt16.max)))"
    }

    static func isName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 40 && name.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) || $0 == 45 }
    }

    /// The folder of a spare being made by process `builder`, with the tree's id and manifest in
    /// it from the start (a launch deciding whether to wait for it reads them).
    @discardableResult
    func announce(_ name: String, builder: pid_t, manifest: Manifest, manifestFile: String?, tree: String? = nil) throws -> String {
        let building = (directory as NSString).appendingPathComponent(".new-\(builder)-\(name)")
        guard mkdir(building, 0o700) == 0 || errno == EEXIST else { throw JobsError.io(path: building, reason: SystemError.text(errno)) }
        let copy = (building as NSString).appendingPathComponent("manifest.json")
        if !POSIX.exists(copy) {
            // The job's own manifest.json (never rewritten): a link, else a copy.
            if manifestFile.map({ link($0, copy) != 0 }) ?? true { try JSON.write(manifest, to: copy, pretty: false, mode: 0o600) }
        }
        try Data((tree ?? SpareWork.treeID(manifest)).utf8).write(to: URL(fileURLWithPath: (building as NSString).appendingPathComponent("tree")), options: .atomic)
        return building
    }

    /// Makes spare `name` of `manifest` (the tree a job just started with), unless one of the same
    /// tree is there; then keeps the newest `keep`. One maker at a time (spares/.lock); leftovers of
    /// a maker that died (and of a take that died) are removed once untouched for an hour.
    func prepare(_ manifest: Manifest, name: String = SpareWork.newName(), manifestFile: String? = nil) throws {
        guard SpareWork.wanted(manifest) else { return }
        try POSIX.makeDirectory(directory, mode: 0o700)
        let tree = SpareWork.treeID(manifest)
        let building = try announce(name, builder: getpid(), manifest: manifest, manifestFile: manifestFile, tree: tree)
        do {
            try withLock((directory as NSString).appendingPathComponent(".lock")) {
                removeLeftovers()
                if listing().ready.contains(where: { storedTree(in: (directory as NSString).appendingPathComponent($0.name)) == tree }) {
                    try? FileManager.default.removeItem(atPath: building)
                    return
                }
                // Room for it, and a margin: a spare never takes the space a job needs.
                if let free = FerryHome.freeBytes(at: directory), free < 2 * manifest.totalBytes + (1 << 30) {
                    try? FileManager.default.removeItem(atPath: building)
                    return
                }
                try blobs.materialise(manifest, into: (building as NSString).appendingPathComponent("work"))
                let done = (directory as NSString).appendingPathComponent(name)
                guard rename(building, done) == 0 else { throw JobsError.io(path: done, reason: SystemError.text(errno)) }
                let all = listing().ready.sorted { $0.date > $1.date }
                for old in all.dropFirst(SpareWork.keep) {
                    try? FileManager.default.removeItem(atPath: (directory as NSString).appendingPathComponent(old.name))
                }
            }
        } catch {
            try? FileManager.default.removeItem(atPath: building)
            throw error
        }
    }

    /// `.new-*` whose maker is gone and `.taken-*` (a take that died), untouched for an hour.
    private func removeLeftovers() {
        let hourAgo = Date().addingTimeInterval(-3600)
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] {
            let isNew = name.hasPrefix(".new-"), isTaken = name.hasPrefix(".taken-")
            guard isNew || isTaken else { continue }
            if isNew && SpareWork.builderAlive(name) { continue }
            let path = (directory as NSString).appendingPathComponent(name)
            guard let date = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date, date < hourAgo else { continue }
            try? FileManager.default.removeItem(atPath: path)
        }
    }
}
