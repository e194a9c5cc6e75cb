import Foundation

/// ferry's own state directory: `$FERRY_HOME`, else `$HOME/.ferry` (`~` is `$HOME`, as git reads it).
public enum FerryHome {
    public static var path: String {
        let env = ProcessInfo.processInfo.environment
        if let home = env["FERRY_HOME"], !home.isEmpty { return home }
        return (userHome as NSString).appendingPathComponent(".ferry")
    }

    /// `$HOME`, falling back to the password database only when it is unset.
    public static var userHome: String {
        if let home = ProcessInfo.processInfo.environment["HOME"], !home.isEmpty { return home }
        return NSHomeDirectory()
    }

    /// Free bytes on the file system that holds `path` (or its nearest existing parent).
    public static func freeBytes(at path: String) -> Int64? {
        var probe = path
        while !FileManager.default.fileExists(atPath: probe) && probe != "/" {
            probe = (probe as NSString).deletingLastPathComponent
            if probe.isEmpty { probe = "/" }
        }
        var st = statvfs()
        guard statvfs(probe, &st) == 0 else { return nil }
        return Int64(st.f_bavail) * Int64(st.f_frsize)
    }

    /// This machine's memory in bytes (sysconf), nil when unknown.
    public static var physicalMemory: Int64? {
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), size = sysconf(Int32(_SC_PAGESIZE))
        guard pages > 0, size > 0 else { return nil }
        return Int64(pages) * Int64(size)
    }
}
