import CLibSSH
import Foundation

/// What to do with a server key that no known_hosts file knows. A key that differs from the one on
/// record is refused under every policy.
public enum HostKeyPolicy: Sendable, Equatable {
    /// Refuse unknown keys (the default), naming the fingerprint and the command that accepts it.
    case strict
    /// Accept an unknown key and record it in ferry's known_hosts (`--accept-new-host-key`).
    case acceptNew
    /// The server must present this `SHA256:...` fingerprint; it is then recorded.
    case pinned(String)
}

/// Checks the server's key against the user's and ferry's known_hosts (libssh's verdict), and records
/// accepted keys in ferry's file. Runs on the session thread.
enum HostKeyVerifier {
    static func verify(session s: ssh_session, _ p: ConnectParameters, lastError: () -> String) throws -> String {
        var key: ssh_key?
        guard ssh_get_server_publickey(s, &key) == SSH_OK, let key else {
            throw SSHError.hostKeyCheckFailed(host: p.knownHostsName, reason: lastError())
        }
        defer { ssh_key_free(key) }
        let presented = try fingerprint(key, host: p.knownHostsName, lastError: lastError)
        let files = p.knownHostsFiles + [p.environment.ferryKnownHosts]
        let verdict = knownServerVerdict(s, p)
        switch verdict {
        case SSH_KNOWN_HOSTS_OK:
            if case .pinned(let pinned) = p.hostKeyPolicy, !sameFingerprint(pinned, presented) {
                throw SSHError.hostKeyMismatch(host: p.knownHostsName, expected: pinned, presented: presented)
            }
            return presented
        case SSH_KNOWN_HOSTS_CHANGED, SSH_KNOWN_HOSTS_OTHER:
            let recorded = KnownHosts.recordedKeys(for: p.knownHostsName, in: files)
            let expected = recorded.isEmpty ? "the key on record"
                : recorded.map { "\($0.fingerprint) (\($0.type) in \($0.file))" }.joined(separator: " or ")
            throw SSHError.hostKeyMismatch(host: p.knownHostsName, expected: expected, presented: presented)
        case SSH_KNOWN_HOSTS_UNKNOWN, SSH_KNOWN_HOSTS_NOT_FOUND:
            switch p.hostKeyPolicy {
            case .strict:
                let command = "ferry ssh --host-key \(presented) \(ShellQuote.quote(p.displayTarget)) -- true"
                throw SSHError.hostKeyUnknown(host: p.hostName, port: p.port, fingerprint: presented, acceptCommand: command)
            case .pinned(let pinned):
                guard sameFingerprint(pinned, presented) else {
                    throw SSHError.hostKeyMismatch(host: p.knownHostsName, expected: pinned, presented: presented)
                }
            case .acceptNew:
                break
            }
            try record(key, p, lastError: lastError)
            return presented
        default:
            throw SSHError.hostKeyCheckFailed(host: p.knownHostsName, reason: lastError())
        }
    }

    /// libssh's verdict over every known_hosts file (it reads two at a time: one of ours, and ferry's):
    /// a matching key anywhere wins, else a different key anywhere is a change (as OpenSSH decides).
    /// With HostKeyAlias the lookup is under the alias, as OpenSSH does it (no port).
    private static func knownServerVerdict(_ s: ssh_session, _ p: ConnectParameters) -> ssh_known_hosts_e {
        if let alias = p.hostKeyAlias {
            _ = ferry_ssh_set_string(s, SSH_OPTIONS_HOST, alias)
            _ = ferry_ssh_set_uint(s, SSH_OPTIONS_PORT, 22)
        }
        defer {
            if p.hostKeyAlias != nil {
                _ = ferry_ssh_set_string(s, SSH_OPTIONS_HOST, p.hostName)
                _ = ferry_ssh_set_uint(s, SSH_OPTIONS_PORT, UInt32(p.port))
            }
        }
        var combined = SSH_KNOWN_HOSTS_NOT_FOUND
        for file in p.existingKnownHostsFiles {
            _ = ferry_ssh_set_string(s, SSH_OPTIONS_KNOWNHOSTS, file)
            let verdict = ssh_session_is_known_server(s)
            switch verdict {
            case SSH_KNOWN_HOSTS_OK: return verdict
            case SSH_KNOWN_HOSTS_CHANGED, SSH_KNOWN_HOSTS_OTHER:
                if combined != SSH_KNOWN_HOSTS_CHANGED { combined = verdict }
            case SSH_KNOWN_HOSTS_UNKNOWN:
                if combined == SSH_KNOWN_HOSTS_NOT_FOUND { combined = verdict }
            case SSH_KNOWN_HOSTS_NOT_FOUND: break
            default: return verdict
            }
        }
        return combined
    }

    /// Fingerprints compare with or without the `SHA256:` prefix and base64 padding.
    static func sameFingerprint(_ a: String, _ b: String) -> Bool {
        func norm(_ s: String) -> String {
            var t = s.trimmingCharacters(in: .whitespaces)
            if t.hasPrefix("SHA256:") { t.removeFirst(7) }
            while t.hasSuffix("=") { t.removeLast() }
            return t
        }
        return norm(a) == norm(b)
    }

    static func fingerprint(_ key: ssh_key, host: String, lastError: () -> String) throws -> String {
        var hash: UnsafeMutablePointer<UInt8>?
        var length = 0
        guard ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &length) == 0, let hash else {
            throw SSHError.hostKeyCheckFailed(host: host, reason: lastError())
        }
        let bytes = Data(bytes: hash, count: length)
        var owned: UnsafeMutablePointer<UInt8>? = hash
        ssh_clean_pubkey_hash(&owned)
        return "SHA256:" + bytes.base64EncodedString().replacingOccurrences(of: "=", with: "")
    }

    private static func record(_ key: ssh_key, _ p: ConnectParameters, lastError: () -> String) throws {
        var b64: UnsafeMutablePointer<CChar>?
        guard ssh_pki_export_pubkey_base64(key, &b64) == SSH_OK, let b64, let type = ssh_key_type_to_char(ssh_key_type(key)) else {
            throw SSHError.hostKeyCheckFailed(host: p.knownHostsName, reason: lastError())
        }
        let base64 = String(cString: b64)
        ssh_string_free_char(b64)
        try KnownHosts.record(KnownHosts.line(hostName: p.knownHostsName, keyType: String(cString: type), keyBase64: base64),
                              in: p.environment.ferryKnownHosts)
    }
}
