import Foundation
import SSH
#if canImport(Glibc)
import Glibc
#endif

/// A server's public host key (what a known_hosts line holds), as opposed to its fingerprint.
public struct PublicHostKey: Sendable, Equatable, Codable {
    public var type: String
    public var base64: String

    public init(type: String, base64: String) { self.type = type; self.base64 = base64 }

    public var fingerprint: String { KnownHosts.fingerprint(ofKeyBlob: Data(base64Encoded: base64) ?? Data()) }

    /// `name type base64`, as known_hosts spells a plain entry.
    public func knownHostsLine(for name: String) -> String { "\(name) \(type) \(base64)" }
}

/// Editing ferry's known_hosts: pinning a key under a name replaces whatever that exact name had
/// (a connection string the user pasted is their explicit statement of the new key), leaves every
/// other line alone, and never touches the user's own known_hosts.
public enum KnownHostsEditor {
    /// Replaces the plain entries for each of `names` in `file` with `key`.
    public static func pin(_ key: PublicHostKey, names: [String], in file: String) throws {
        do {
            // Through KnownHosts.update: its lock keeps the SSH module's own appends from interleaving.
            try KnownHosts.update(file) { existing in
                var kept: [String] = []
                for line in existing.split(separator: "\n", omittingEmptySubsequences: true).map(String.init) {
                    let first = line.split(separator: " ", maxSplits: 1).first.map(String.init) ?? ""
                    let hosts = first.split(separator: ",").map(String.init)
                    if !line.hasPrefix("#"), !line.hasPrefix("@"), hosts.contains(where: { names.contains($0) }) { continue }
                    kept.append(line)
                }
                kept += names.map { key.knownHostsLine(for: $0) }
                return kept.joined(separator: "\n") + "\n"
            }
        } catch SSHError.knownHostsUnwritable(let path, let reason) {
            throw TunnelError.io(path: path, reason: reason)
        }
    }

    /// The plain entries for `name` in `file`.
    public static func keys(for name: String, in file: String) -> [PublicHostKey] {
        guard let data = FileManager.default.contents(atPath: file) else { return [] }
        var found: [PublicHostKey] = []
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard fields.count >= 3, !fields[0].hasPrefix("#"), !fields[0].hasPrefix("@"),
                  fields[0].split(separator: ",").contains(where: { String($0) == name }) else { continue }
            found.append(PublicHostKey(type: fields[1], base64: fields[2]))
        }
        return found
    }
}

/// Learning a server's full host key when only its fingerprint is known (a connection string
/// carries fingerprints): connect just far enough to see the key, in a scratch known_hosts, with the
/// fingerprint pinned — a server presenting another key is refused before anything is recorded.
public enum HostKeyProbe {
    public static func fetch(hostName: String, port: Int, fingerprint: String, via jump: SSHSession? = nil,
                             proxyCommand: String? = nil, environment: SSHEnvironment, connectTimeout: Int = 15) async throws -> PublicHostKey {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-probe-\(UUID().uuidString.prefix(8))").path
        try? FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let empty = scratch + "/empty_known_hosts"
        _ = FileManager.default.createFile(atPath: empty, contents: Data())
        var scratchEnvironment = environment
        scratchEnvironment.ferryHome = scratch
        scratchEnvironment.agentSocket = nil
        scratchEnvironment.password = nil
        // No key is offered: the key is recorded before authentication, which may then fail.
        let options = SSHConnectOptions(environment: scratchEnvironment, hostKeyPolicy: .pinned(fingerprint), identityFiles: [],
                                        connectTimeout: connectTimeout, knownHostsFile: empty, useAgent: false, interactive: false)
        let config = SSHHostConfig(alias: hostName, hostName: hostName, port: port, user: environment.localUser, identityFiles: [],
                                   proxyCommand: jump == nil ? proxyCommand : nil)
        var failure: (any Error)?
        do {
            let session = try await SSHSession.connect(config: config, options: options, via: jump)
            await session.close()
        } catch let error as SSHError {
            switch error {
            case .authenticationFailed: break   // expected: the key was seen and recorded first
            default: failure = error
            }
        }
        let name = port == 22 ? hostName : "[\(hostName)]:\(port)"
        guard let key = KnownHostsEditor.keys(for: name, in: scratchEnvironment.ferryKnownHosts).first else {
            if let failure { throw failure }
            throw TunnelError.hostKeyUnavailable(host: name, reason: "the server's key was not recorded")
        }
        guard ConnectionString.normalizedFingerprint(key.fingerprint) == ConnectionString.normalizedFingerprint(fingerprint) else {
            throw SSHError.hostKeyMismatch(host: name, expected: fingerprint, presented: key.fingerprint)
        }
        return key
    }
}
