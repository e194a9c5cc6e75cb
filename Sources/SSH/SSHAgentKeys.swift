import CLibSSH
import Foundation
import System

/// Talking to ssh-agent directly, for what libssh 0.10 cannot do: list the keys (so an error can
/// name what was offered) and show libssh only some of them (IdentitiesOnly: the keys whose public
/// half is an IdentityFile's), through a filter on a socketpair that passes signing on to the agent.
enum SSHAgentKeys {
    struct Identity { var blob: [UInt8]; var comment: String }

    /// The agent's keys, or nil when the agent cannot be asked.
    static func list(socket path: String) -> [Identity]? {
        guard let fd = connect(path) else { return nil }
        defer { close(fd) }
        guard write(fd, [11]), let answer = read(fd) else { return nil }
        return parseIdentities(answer)
    }

    /// Names for the keys (the comment, else the key type), for error messages.
    static func describe(_ keys: [Identity]) -> [String] {
        keys.map { key in
            if !key.comment.isEmpty { return key.comment }
            let n = key.blob.count >= 4 ? key.blob[0..<4].reduce(0) { $0 << 8 | Int($1) } : 0
            return String(decoding: key.blob.dropFirst(4).prefix(n), as: UTF8.self)
        }
    }

    /// The public key blob of an identity file, from `path.pub`.
    static func publicBlob(ofIdentity path: String) -> [UInt8]? {
        guard let data = FileManager.default.contents(atPath: path + ".pub") else { return nil }
        let fields = String(decoding: data, as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" })
        guard fields.count >= 2, let blob = Data(base64Encoded: String(fields[1])) else { return nil }
        return [UInt8](blob)
    }

    /// A descriptor for libssh (`ssh_set_agent_socket`) behind which the agent lists only `allowed`
    /// keys. The filter thread ends when either side closes; `stop` closes ours.
    final class Filter: @unchecked Sendable {
        let libsshEnd: Int32
        private let ourEnd: Int32
        private let lock = NSLock()
        private var closed = false

        init?(socket path: String, allowed: Set<[UInt8]>) {
            var pair: [Int32] = [0, 0]
            guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else { return nil }
            guard let upstream = SSHAgentKeys.connect(path, timeout: false) else { close(pair[0]); close(pair[1]); return nil }
            libsshEnd = pair[0]; ourEnd = pair[1]
            let ours = pair[1]
            Thread.detachNewThread { [self] in
                defer {
                    close(upstream)
                    lock.lock(); closed = true; close(ours); lock.unlock()
                }
                while let request = SSHAgentKeys.read(ours) {
                    guard SSHAgentKeys.write(upstream, request), var answer = SSHAgentKeys.read(upstream) else { return }
                    if request.first == 11, let keys = SSHAgentKeys.parseIdentities(answer) {
                        answer = SSHAgentKeys.identitiesAnswer(keys.filter { allowed.contains($0.blob) })
                    }
                    guard SSHAgentKeys.write(ours, answer) else { return }
                }
            }
        }

        /// Ends the filter (libssh then finds no agent, and closes its end with the session).
        func stop() {
            lock.lock(); defer { lock.unlock() }
            if !closed { shutdown(ourEnd, Int32(SHUT_RDWR)) }
        }
    }

    // MARK: - The agent protocol: uint32 length, then a message whose first byte is its type.

    static func connect(_ path: String, timeout: Bool = true) -> Int32? {
        let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        if timeout {
            var tv = timeval(tv_sec: 2, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { close(fd); return nil }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in for (i, b) in bytes.enumerated() { raw[i] = b } }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else { close(fd); return nil }
        return fd
    }

    static func write(_ fd: Int32, _ body: [UInt8]) -> Bool {
        let n = UInt32(body.count)
        let message = [UInt8(n >> 24), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)] + body
        guard (try? FileIO.writeAll(fd, message)) != nil else { return false }
        return true
    }

    static func read(_ fd: Int32) -> [UInt8]? {
        func exactly(_ count: Int) -> [UInt8]? {
            var out = [UInt8](repeating: 0, count: count)
            var got = 0
            while got < count {
                let n = out.withUnsafeMutableBytes { FileIO.read(fd, into: UnsafeMutableRawBufferPointer(rebasing: $0[got...])) }
                if n <= 0 { return nil }
                got += n
            }
            return out
        }
        guard let header = exactly(4) else { return nil }
        let length = header.reduce(0) { $0 << 8 | Int($1) }
        guard length > 0, length < 1 << 20 else { return nil }
        return exactly(length)
    }

    /// SSH2_AGENT_IDENTITIES_ANSWER (12): uint32 count, then (string blob, string comment) each.
    static func parseIdentities(_ body: [UInt8]) -> [Identity]? {
        guard body.count >= 5, body[0] == 12 else { return nil }
        var i = 5
        func string() -> [UInt8]? {
            guard i + 4 <= body.count else { return nil }
            let n = body[i..<(i + 4)].reduce(0) { $0 << 8 | Int($1) }
            guard i + 4 + n <= body.count else { return nil }
            defer { i += 4 + n }
            return Array(body[(i + 4)..<(i + 4 + n)])
        }
        var keys: [Identity] = []
        for _ in 0..<body[1..<5].reduce(0, { $0 << 8 | Int($1) }) {
            guard let blob = string(), let comment = string() else { return nil }
            keys.append(Identity(blob: blob, comment: String(decoding: comment, as: UTF8.self)))
        }
        return keys
    }

    static func identitiesAnswer(_ keys: [Identity]) -> [UInt8] {
        func uint32(_ n: Int) -> [UInt8] { [UInt8(n >> 24 & 0xff), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)] }
        var out: [UInt8] = [12] + uint32(keys.count)
        for key in keys {
            out += uint32(key.blob.count) + key.blob
            let comment = Array(key.comment.utf8)
            out += uint32(comment.count) + comment
        }
        return out
    }
}

#if canImport(Glibc)
import Glibc
#endif
