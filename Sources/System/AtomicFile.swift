import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Crash-safe replacement of files and folders: a temporary sibling is written and fsynced, then
/// renamed (or, for a folder that exists, exchanged) over the target, and the parent folder is
/// fsynced. A reader, or a crash, sees the old content or the new — never half of either.
public enum AtomicFile {
    /// The mode a new file gets: `.umask(m)` applies the process's umask as open(2) does;
    /// `.exact(m)` sets `m` whatever the umask (private files: keys, known_hosts, sshd configs).
    public enum Mode: Sendable {
        case umask(mode_t)
        case exact(mode_t)
    }

    /// Replaces `path` with `data`. Missing parent folders are created with `directoryMode`.
    /// `durable` false: no fsync of the file or its folder (caches, whose loss costs only work again).
    public static func write(_ data: some ContiguousBytes, to path: String, mode: Mode = .umask(0o644),
                             directoryMode: mode_t = 0o755, durable: Bool = true) throws(SystemError) {
        let dir = parent(of: path)
        try makeDirectories(dir, mode: directoryMode)
        let temp = temporarySibling(of: path, kind: "tmp")
        let fd = try FileIO.open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode: mode.bits)
        do throws(SystemError) {
            if case .exact(let bits) = mode, fchmod(fd, bits) != 0 { throw SystemError("chmod", path: temp) }
            try FileIO.writeAll(fd, data, path: path)
            if durable && fsync(fd) != 0 { throw SystemError("fsync", path: path) }
            close(fd)
        } catch {
            close(fd); unlink(temp)
            throw error
        }
        guard rename(temp, path) == 0 else {
            let error = SystemError("rename", path: path)
            unlink(temp)
            throw error
        }
        if durable { FileIO.syncDirectory(dir) }
    }

    /// Replaces the folder `directory` with one holding `files` (name, content) in one step: a
    /// reader sees the old folder or the new one. Where the file system cannot exchange two names
    /// atomically, the old folder is moved aside first (`.NAME.old-PID`) and removed after.
    public static func replaceDirectory(_ directory: String, with files: [(name: String, data: Data)]) throws(SystemError) {
        let dir = parent(of: directory)
        let name = (directory as NSString).lastPathComponent
        let fm = FileManager.default
        let temp = (dir as NSString).appendingPathComponent(".\(name).tmp-\(getpid())")
        do throws(SystemError) {
            try? fm.removeItem(atPath: temp)
            try makeDirectories(temp, mode: 0o755)
            for file in files { try write(file.data, to: (temp as NSString).appendingPathComponent(file.name)) }
        } catch {
            try? fm.removeItem(atPath: temp)
            throw error
        }
        if !fm.fileExists(atPath: directory) {
            guard rename(temp, directory) == 0 else {
                let error = SystemError("rename", path: directory)
                try? fm.removeItem(atPath: temp)
                throw error
            }
        } else if exchange(temp, directory) {
            try? fm.removeItem(atPath: temp)   // now holds the previous folder
        } else {
            let old = (dir as NSString).appendingPathComponent(".\(name).old-\(getpid())")
            try? fm.removeItem(atPath: old)
            guard rename(directory, old) == 0, rename(temp, directory) == 0 else {
                let error = SystemError("rename", path: directory)
                try? fm.removeItem(atPath: temp)
                throw error
            }
            try? fm.removeItem(atPath: old)
        }
        FileIO.syncDirectory(dir)
    }

    /// `renameat2(RENAME_EXCHANGE)`: swaps two paths atomically (Linux ≥ 3.15 on most file systems).
    public static func exchange(_ a: String, _ b: String) -> Bool {
        #if os(Linux)
        typealias RenameAt2 = @convention(c) (Int32, UnsafePointer<CChar>, Int32, UnsafePointer<CChar>, UInt32) -> Int32
        guard let symbol = renameat2Symbol else { return false }
        let f = unsafeBitCast(symbol, to: RenameAt2.self)
        let atCWD: Int32 = -100, renameExchange: UInt32 = 2
        return f(atCWD, a, atCWD, b, renameExchange) == 0
        #else
        return false
        #endif
    }

    #if os(Linux)
    nonisolated(unsafe) private static let renameat2Symbol: UnsafeMutableRawPointer? = dlsym(nil, "renameat2")
    #endif

    /// Creates `path` and its missing parents with `mode`.
    public static func makeDirectories(_ path: String, mode: mode_t = 0o755) throws(SystemError) {
        var st = stat()
        if stat(path, &st) == 0 {
            if (st.st_mode & S_IFMT) == S_IFDIR { return }
            throw SystemError("mkdir", path: path, errno: ENOTDIR)
        }
        let up = parent(of: path)
        if up != path && !up.isEmpty { try makeDirectories(up, mode: mode) }
        if mkdir(path, mode) != 0 && errno != EEXIST { throw SystemError("mkdir", path: path) }
    }

    /// Removes what an interrupted writer left in `directory`: `.NAME.tmp-PID[-N]` files and folders
    /// (and `.NAME.old-PID` folders) of processes that no longer run. A process killed between
    /// writing and renaming (SIGKILL, power loss) cannot clean up after itself.
    public static func removeStaleTemporaries(in directory: String) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        for name in names where name.hasPrefix(".") {
            guard let range = name.range(of: ".tmp-") ?? name.range(of: ".old-") else { continue }
            let pidText = name[range.upperBound...].prefix { $0.isNumber }
            guard let pid = pid_t(pidText), pid > 0, pid != getpid() else { continue }
            if kill(pid, 0) == 0 || errno == EPERM { continue }   // its writer may still be at work
            if name.contains(".old-") {
                // A swap interrupted between its two renames: the old folder is the one to keep
                // when the target is missing (the reader's `resolve` recovers it); else it is stale.
                let target = (directory as NSString).appendingPathComponent(String(name.dropFirst().prefix(upTo: range.lowerBound)))
                if !FileManager.default.fileExists(atPath: target) { continue }
            }
            try? FileManager.default.removeItem(atPath: (directory as NSString).appendingPathComponent(name))
        }
    }

    /// `.NAME.KIND-PID-RANDOM` beside `path`: unique, hidden, on the same file system.
    static func temporarySibling(of path: String, kind: String) -> String {
        let dir = parent(of: path)
        return (dir as NSString).appendingPathComponent(".\((path as NSString).lastPathComponent).\(kind)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
    }

    static func parent(of path: String) -> String {
        let dir = (path as NSString).deletingLastPathComponent
        return dir.isEmpty ? "." : dir
    }
}

extension AtomicFile.Mode {
    var bits: mode_t {
        switch self {
        case .umask(let m), .exact(let m): return m
        }
    }
}
