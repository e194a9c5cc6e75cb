import Foundation
#if canImport(Glibc)
import Glibc
#endif

extension POSIX {
    /// Filesystem types that other machines write (NFS, Lustre, GPFS, CephFS, SMB, AFS, BeeGFS,
    /// FUSE mounts such as sshfs): inotify does not see those writes, so followers poll instead.
    static let networkFilesystemTypes: Set<String> = ["nfs", "nfs4", "lustre", "gpfs", "ceph", "cifs", "smb3", "smbfs", "afs",
                                                      "beegfs", "fhgfs", "glusterfs", "panfs", "wekafs", "9p", "virtiofs"]

    /// Whether `path` lies on a network filesystem, by the longest mount point in /proc/self/mounts
    /// that holds it (false when that cannot be read).
    static func isNetworkFilesystem(_ path: String) -> Bool {
        guard let resolved = realpath(path, nil) else { return false }
        let full = String(cString: resolved)
        free(resolved)
        guard let mounts = try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8) else { return false }
        var best: (point: String, type: String)?
        for line in mounts.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count >= 3 else { continue }
            // Mount points escape spaces as \040.
            let point = fields[1].replacingOccurrences(of: "\\040", with: " ")
            let inside = point == "/" || full == point || full.hasPrefix(point + "/")
            if inside && point.count >= (best?.point.count ?? -1) { best = (point, String(fields[2])) }
        }
        guard let type = best?.type else { return false }
        return networkFilesystemTypes.contains(type) || type.hasPrefix("fuse.")
    }
}
