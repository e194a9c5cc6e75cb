import Foundation
import System
import SSH
#if canImport(Glibc)
import Glibc
#endif

/// Where `ferry host up` keeps its state: `$FERRY_HOME/host/`, mode 0700. Nothing outside it is
/// written (the system's sshd_config and `~/.ssh/authorized_keys` are never touched).
public struct HostFiles: Sendable, Equatable {
    public let directory: String
    public init(ferryHome: String) { directory = (ferryHome as NSString).appendingPathComponent("host") }
    func path(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }
    public var sshdConfig: String { path("sshd_config") }
    public var hostKey: String { path("ssh_host_ed25519_key") }
    public var hostKeyPublic: String { path("ssh_host_ed25519_key.pub") }
    public var authorizedKeys: String { path("authorized_keys") }
    public var environmentFile: String { path("environment.sh") }
    public var sshdPidFile: String { path("sshd.pid") }
    public var sshdLog: String { path("sshd.log") }
    /// The supervisor's pid (`host down` signals it).
    public var pidFile: String { path("host-up.pid") }
    /// What is up and how to reach it (`host status`).
    public var stateFile: String { path("state.json") }
    /// A detached supervisor's output.
    public var log: String { path("host-up.log") }
    /// The key the host logs in to a relay with.
    public var relayKey: String { path("relay_ed25519") }
    public var relayKeyPublic: String { path("relay_ed25519.pub") }
    public var tunnelLog: String { path("tunnel.log") }
}

/// Preparing a machine to be reached: its own host key, authorized keys and sshd_config.
public enum HostSetup {
    public static let minimumPasswordLength = 12

    /// The account clients log in as: whoever runs `host up`.
    public static var currentUser: String {
        if let pw = getpwuid(geteuid()), let name = pw.pointee.pw_name { return String(cString: name) }
        return ProcessInfo.processInfo.environment["USER"] ?? "root"
    }

    public static var isRoot: Bool { geteuid() == 0 }

    static func makeDirectory(_ files: HostFiles) throws {
        do {
            try FileManager.default.createDirectory(atPath: files.directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw TunnelError.io(path: files.directory, reason: "\(error)")
        }
        chmod(files.directory, 0o700)
    }

    /// Creates the host key once (kept across restarts, so a connection string stays valid) and
    /// returns its public line.
    public static func ensureHostKey(_ files: HostFiles) async throws -> AuthorizedKey {
        try makeDirectory(files)
        try await ensureKey(at: files.hostKey, comment: "ferry-host@\(ProcessInfo.processInfo.hostName)")
        return try readPublicKey(files.hostKeyPublic)
    }

    /// Creates the key the host logs in to a relay with, once.
    public static func ensureRelayKey(_ files: HostFiles) async throws -> AuthorizedKey {
        try makeDirectory(files)
        try await ensureKey(at: files.relayKey, comment: "ferry-relay@\(ProcessInfo.processInfo.hostName)")
        return try readPublicKey(files.relayKeyPublic)
    }

    static func ensureKey(at path: String, comment: String) async throws {
        if FileManager.default.fileExists(atPath: path) && FileManager.default.fileExists(atPath: path + ".pub") { return }
        guard let keygen = ChildProcess.find("ssh-keygen") else { throw TunnelError.keygenFailed(output: "ssh-keygen not found") }
        unlink(path); unlink(path + ".pub")
        // -N '' is the (empty) passphrase of a machine key, not a secret.
        let result = try await ChildProcess.run(keygen, ["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path])
        guard result.status == 0 else { throw TunnelError.keygenFailed(output: result.output) }
    }

    static func readPublicKey(_ path: String) throws -> AuthorizedKey {
        guard let data = FileManager.default.contents(atPath: path) else { throw TunnelError.io(path: path, reason: "cannot read it") }
        return try AuthorizedKey(parsing: String(decoding: data, as: UTF8.self))
    }

    /// Adds `keys` to the host's authorized_keys (keeping earlier ones, once each) and returns them all.
    @discardableResult
    public static func authorize(_ keys: [AuthorizedKey], files: HostFiles) throws -> [AuthorizedKey] {
        try makeDirectory(files)
        var all: [AuthorizedKey] = []
        if let data = FileManager.default.contents(atPath: files.authorizedKeys) {
            for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
                let l = line.trimmingCharacters(in: .whitespaces)
                if l.isEmpty || l.hasPrefix("#") { continue }
                if let key = try? AuthorizedKey(parsing: l) { all.append(key) }
            }
        }
        for key in keys where !all.contains(where: { $0.type == key.type && $0.base64 == key.base64 }) { all.append(key) }
        let text = "# Keys that may log in to `ferry host up`'s sshd (one a line). Edit freely; `--authorize` adds here.\n"
            + all.map(\.line).joined(separator: "\n") + (all.isEmpty ? "" : "\n")
        try writeFile(files.authorizedKeys, text, mode: 0o600)
        return all
    }

    /// sshd's absolute path; as root on a machine with apt-get, installs openssh-server when missing.
    public static func locateSSHD(install: Bool, onNote: @Sendable (String) -> Void) async throws -> String {
        if let found = ChildProcess.find("sshd") { return found }
        let aptGet = ChildProcess.find("apt-get")
        guard install, isRoot, let aptGet else { throw TunnelError.sshdNotFound(canInstall: isRoot && aptGet == nil) }
        onNote("sshd is missing: installing openssh-server with apt-get (the system's sshd_config is not used)")
        var environment = ProcessInfo.processInfo.environment
        environment["DEBIAN_FRONTEND"] = "noninteractive"
        let update = try await ChildProcess.run(aptGet, ["update", "-q"], environment: environment, timeout: 600)
        guard update.status == 0 else { throw TunnelError.sshdInstallFailed(output: update.output) }
        let install = try await ChildProcess.run(aptGet, ["install", "-y", "-q", "--no-install-recommends", "openssh-server"],
                                                 environment: environment, timeout: 900)
        guard install.status == 0 else { throw TunnelError.sshdInstallFailed(output: install.output) }
        // Debian's package starts the system sshd; that one is the system's business, not ours.
        guard let found = ChildProcess.find("sshd") else { throw TunnelError.sshdNotFound(canInstall: false) }
        return found
    }

    /// Checks the password choice: none without --allow-password; with it, root only and long enough.
    public static func checkPassword(allow: Bool, password: String?, source: String) throws {
        guard allow else {
            if password != nil { throw TunnelError.passwordNeedsFlag(source: source) }
            return
        }
        guard isRoot else { throw TunnelError.passwordNeedsRoot }
        guard let password, !password.isEmpty else { throw TunnelError.passwordMissing }
        guard password.count >= minimumPasswordLength else { throw TunnelError.passwordTooShort(minimum: minimumPasswordLength) }
    }

    /// Sets the account's password with chpasswd, fed on stdin (never argv).
    public static func setPassword(user: String, password: String) async throws {
        guard let chpasswd = ChildProcess.find("chpasswd") else { throw TunnelError.passwordSetFailed(user: user, output: "chpasswd not found") }
        let result = try await ChildProcess.run(chpasswd, [], stdinData: Data("\(user):\(password)\n".utf8), timeout: 30)
        guard result.status == 0 else { throw TunnelError.passwordSetFailed(user: user, output: result.output) }
    }

    /// Writes the config and asks sshd to check it (`sshd -t`).
    public static func writeConfig(_ config: SSHDConfig, sshd: String, files: HostFiles) async throws {
        try writeFile(files.sshdConfig, try config.render(), mode: 0o600)
        if isRoot { try? FileManager.default.createDirectory(atPath: "/run/sshd", withIntermediateDirectories: true) }
        let check = try await ChildProcess.run(sshd, ["-t", "-f", files.sshdConfig], timeout: 30)
        guard check.status == 0 else { throw TunnelError.sshdConfigRejected(path: files.sshdConfig, output: check.output) }
    }

    /// Whether something already listens on `port` at `address`.
    public static func isPortInUse(_ port: Int, address: String = "127.0.0.1") -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(port).bigEndian
        addr.sin_addr.s_addr = inet_addr(address == "0.0.0.0" ? "127.0.0.1" : address)
        var tv = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }

    /// The first non-loopback IPv4 address, for connection strings without a tunnel.
    public static func primaryAddress() -> String? {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return nil }
        defer { freeifaddrs(list) }
        var cursor: UnsafeMutablePointer<ifaddrs>? = first
        while let entry = cursor {
            defer { cursor = entry.pointee.ifa_next }
            guard let addr = entry.pointee.ifa_addr, addr.pointee.sa_family == sa_family_t(AF_INET),
                  entry.pointee.ifa_flags & UInt32(IFF_LOOPBACK) == 0, entry.pointee.ifa_flags & UInt32(IFF_UP) != 0 else { continue }
            var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if getnameinfo(addr, socklen_t(MemoryLayout<sockaddr_in>.size), &host, socklen_t(host.count), nil, 0, NI_NUMERICHOST) == 0 {
                return String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            }
        }
        return nil
    }

    /// Writes through a temporary file, fsync and a rename (System's `AtomicFile`), leaving the
    /// file with exactly `mode` whatever the umask (sshd checks these modes).
    static func writeFile(_ path: String, _ text: String, mode: mode_t) throws {
        do throws(SystemError) {
            try AtomicFile.write(Data(text.utf8), to: path, mode: .exact(mode))
        } catch {
            throw TunnelError.io(path: path, reason: error.detail)
        }
    }
}
