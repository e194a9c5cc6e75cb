import Foundation
import SSH

/// One OpenSSH public key line (`type base64 [comment]`), checked before it may log in.
public struct AuthorizedKey: Sendable, Equatable {
    public var type: String
    public var base64: String
    public var comment: String

    static let types: Set<String> = ["ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
                                     "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com"]

    /// Parses one key line. Options before the key (`command=...`) are refused: ferry writes its own file.
    public init(parsing text: String) throws {
        let line = text.trimmingCharacters(in: .whitespacesAndNewlines)
        func invalid(_ reason: String) -> TunnelError { .invalidPublicKey(line, reason: reason) }
        if line.contains("PRIVATE KEY") { throw invalid("this is a private key — never copy it anywhere; pass the .pub file next to it") }
        let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard fields.count >= 2 else { throw invalid("expected `type base64 [comment]`") }
        guard AuthorizedKey.types.contains(fields[0]) else {
            throw invalid("unknown key type \(fields[0].debugDescription) (options before the key are not accepted)")
        }
        guard let blob = Data(base64Encoded: fields[1]), blob.count > 4 else { throw invalid("the key data is not base64") }
        // The blob starts with its own type name, length-prefixed.
        let bytes = [UInt8](blob)
        let length = Int(bytes[0]) << 24 | Int(bytes[1]) << 16 | Int(bytes[2]) << 8 | Int(bytes[3])
        guard bytes.count >= 4 + length, String(decoding: bytes[4..<(4 + length)], as: UTF8.self) == fields[0] else {
            throw invalid("the key data does not match its type \(fields[0])")
        }
        type = fields[0]; base64 = fields[1]
        comment = fields.dropFirst(2).joined(separator: " ")
    }

    /// `SHA256:...` as `ssh-keygen -l` prints it.
    public var fingerprint: String { KnownHosts.fingerprint(ofKeyBlob: Data(base64Encoded: base64) ?? Data()) }

    public var line: String { comment.isEmpty ? "\(type) \(base64)" : "\(type) \(base64) \(comment)" }

    /// Keys from `--authorize` values: a key line, or a file of them (blank lines and `#` comments skipped).
    public static func collect(_ values: [String], home: String) throws -> [AuthorizedKey] {
        var keys: [AuthorizedKey] = []
        for value in values {
            let trimmed = value.trimmingCharacters(in: .whitespacesAndNewlines)
            let first = trimmed.split(separator: " ").first.map(String.init) ?? ""
            if types.contains(first) || trimmed.contains("PRIVATE KEY") {
                keys.append(try AuthorizedKey(parsing: trimmed))
                continue
            }
            let path = trimmed == "~" ? home : trimmed.hasPrefix("~/") ? home + "/" + trimmed.dropFirst(2) : trimmed
            guard let data = FileManager.default.contents(atPath: path) else {
                throw TunnelError.invalidPublicKey(trimmed, reason: "neither a key line nor a readable file")
            }
            for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
                let l = line.trimmingCharacters(in: .whitespaces)
                if l.isEmpty || l.hasPrefix("#") { continue }
                keys.append(try AuthorizedKey(parsing: l))
            }
        }
        return keys
    }
}
