import Foundation
import System
#if canImport(Glibc)
import Glibc
#endif

/// Paths below a trusted folder, resolved one component at a time with `O_NOFOLLOW`: a symlink
/// anywhere in a path a client asked for (`output/LINK/FILE`) is refused, never followed, also when
/// the job swaps a folder for a link between the listing and the read.
enum NoFollow {
    /// What a path below the root is, without following links: nil when it does not exist.
    enum Kind: Equatable { case file, directory, symlink, other }

    /// The kind of `relative` below `root`. Throws `unsafePath` when a component before the last is
    /// a symlink (or not a folder).
    static func kind(of relative: String, below root: String) throws -> Kind? {
        let parts = try Names.validateRelativePath(relative)
        var path = root
        for (i, part) in parts.enumerated() {
            path = (path as NSString).appendingPathComponent(part)
            var st = stat()
            guard lstat(path, &st) == 0 else { return nil }
            let kind = Kind(st.st_mode)
            if i == parts.count - 1 { return kind }
            if kind == .symlink {
                throw JobsError.unsafePath(path: parts[0...i].joined(separator: "/"),
                                           reason: "it is a symlink; ferry never follows links in a fetched path")
            }
            if kind != .directory { return nil }
        }
        return nil
    }

    /// Opens the regular file `relative` below `root` for reading, never following a symlink in any
    /// component. Returns the descriptor and its stat (the caller closes it).
    static func openFile(_ relative: String, below root: String) throws -> (fd: Int32, stat: stat) {
        let parts = try Names.validateRelativePath(relative)
        var dir = Glibc.open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dir >= 0 else { throw JobsError.io(path: root, reason: SystemError.text(errno)) }
        for (i, part) in parts.enumerated() {
            let last = i == parts.count - 1
            let flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | (last ? O_NONBLOCK : O_DIRECTORY)
            let next = openat(dir, part, flags)
            let failure = errno
            close(dir)
            guard next >= 0 else {
                let shown = parts[0...i].joined(separator: "/")
                if failure == ELOOP || (!last && failure == ENOTDIR) {
                    throw JobsError.unsafePath(path: shown, reason: "it is a symlink or not a folder; ferry never follows links in a fetched path")
                }
                throw JobsError.io(path: shown, reason: SystemError.text(failure))
            }
            dir = next
        }
        var st = stat()
        guard fstat(dir, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            close(dir)
            throw JobsError.unsafePath(path: relative, reason: "not a regular file")
        }
        // Back to blocking reads (O_NONBLOCK only kept a FIFO from hanging the open).
        _ = fcntl(dir, F_SETFL, fcntl(dir, F_GETFL) & ~O_NONBLOCK)
        return (dir, st)
    }
}

extension NoFollow.Kind {
    init(_ mode: mode_t) {
        switch mode & S_IFMT {
        case S_IFREG: self = .file
        case S_IFDIR: self = .directory
        case S_IFLNK: self = .symlink
        default: self = .other
        }
    }
}
