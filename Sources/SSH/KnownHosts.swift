import Crypto
import Foundation
import System

/// Reading and recording OpenSSH known_hosts files. The verdict on a server's key comes from libssh
/// (`ssh_session_is_known_server`, which handles hashed `|1|` entries and `[host]:port`); this type
/// finds what was on record for error messages, and appends accepted keys.
public enum KnownHosts {
    /// `SHA256:<base64, no padding>` of a public key blob, as `ssh-keygen -l` prints it.
    public static func fingerprint(ofKeyBlob blob: Data) -> String {
        "SHA256:" + Data(SHA256.hash(data: blob)).base64EncodedString().replacingOccurrences(of: "=", with: "")
    }

    /// Fingerprints recorded for `hostName` (`name` or `[name]:port`) in `files`, with the key type.
    public static func recordedKeys(for hostName: String, in files: [String]) -> [(type: String, fingerprint: String, file: String)] {
        var found: [(String, String, String)] = []
        for file in files {
            guard let data = FileManager.default.contents(atPath: file) else { continue }
            for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
                var fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
                guard let firstField = fields.first, !firstField.hasPrefix("#") else { continue }
                if firstField.hasPrefix("@") { continue }   // @revoked / @cert-authority lines are not plain keys
                guard fields.count >= 3 else { continue }
                let hosts = fields.removeFirst()
                guard matches(hosts, hostName), let blob = Data(base64Encoded: fields[1]) else { continue }
                found.append((fields[0], fingerprint(ofKeyBlob: blob), file))
            }
        }
        return found
    }

    /// Whether a known_hosts host field (`a,b`, wildcards, `!neg`, or `|1|salt|hash`) names `hostName`.
    static func matches(_ field: String, _ hostName: String) -> Bool {
        if field.hasPrefix("|1|") {
            let parts = field.split(separator: "|", omittingEmptySubsequences: true)
            guard parts.count == 3, let salt = Data(base64Encoded: String(parts[1])),
                  let hash = Data(base64Encoded: String(parts[2])) else { return false }
            let mac = HMAC<Insecure.SHA1>.authenticationCode(for: Data(hostName.utf8), using: SymmetricKey(data: salt))
            return Data(mac) == hash
        }
        return SSHConfigFile.patternListMatches([field], hostName)
    }

    /// The line OpenSSH writes for a key: `name type base64` (name is `[host]:port` off port 22).
    public static func line(hostName: String, keyType: String, keyBase64: String) -> String {
        "\(hostName) \(keyType) \(keyBase64)"
    }

    /// Appends `line` to `file` unless already there (through `update`).
    public static func record(_ line: String, in file: String) throws {
        try update(file) { content in
            if content.split(separator: "\n").contains(where: { $0 == line }) { return nil }
            return content + (content.isEmpty || content.hasSuffix("\n") ? "" : "\n") + line + "\n"
        }
    }

    /// Replaces ferry's known_hosts `file` with what `edit` makes of its content (nil: leave it as
    /// it is). Every writer goes through here: under an flock on `file.lock`, the new content is
    /// written to a temporary file (mode 0600), fsynced and renamed over, so concurrent writers
    /// never lose an entry and readers never see half a line. The folder is created 0700.
    public static func update(_ file: String, _ edit: (String) -> String?) throws {
        do throws(SystemError) {
            try AtomicFile.makeDirectories((file as NSString).deletingLastPathComponent, mode: 0o700)
            let lock = try FileLock(file + ".lock")
            try withExtendedLifetime(lock) { () throws(SystemError) in
                let content = FileManager.default.contents(atPath: file).map { String(decoding: $0, as: UTF8.self) } ?? ""
                guard let updated = edit(content) else { return }
                try AtomicFile.write(Data(updated.utf8), to: file, mode: .exact(0o600), directoryMode: 0o700)
            }
        } catch {
            throw SSHError.knownHostsUnwritable(path: file, reason: error.detail)
        }
    }
}
