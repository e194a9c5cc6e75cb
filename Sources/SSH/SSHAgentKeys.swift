import CLibSSH
import Foundation

/// Lists what ssh-agent holds (SSH2_AGENTC_REQUEST_IDENTITIES), so an authentication error can say
/// which keys were offered: libssh offers them all inside one call and names none.
enum SSHAgentKeys {
    /// The comments of the agent's keys (a key without one as its type), or nil when the agent cannot be asked.
    static func comments(socket path: String) -> [String]? {
        let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var tv = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return nil }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in for (i, b) in bytes.enumerated() { raw[i] = b } }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else { return nil }
        let request: [UInt8] = [0, 0, 0, 1, 11]
        guard write(fd, request, request.count) == request.count else { return nil }
        func readExactly(_ count: Int) -> [UInt8]? {
            var out = [UInt8](repeating: 0, count: count)
            var got = 0
            while got < count {
                let n = out.withUnsafeMutableBytes { read(fd, $0.baseAddress! + got, count - got) }
                if n <= 0 { return nil }
                got += n
            }
            return out
        }
        func uint32(_ b: ArraySlice<UInt8>) -> Int { b.reduce(0) { $0 << 8 | Int($1) } }
        guard let header = readExactly(4) else { return nil }
        let length = uint32(header[0..<4])
        guard length > 0, length < 1 << 20, let body = readExactly(length), body[0] == 12, body.count >= 5 else { return nil }
        var i = 5
        var comments: [String] = []
        func string() -> [UInt8]? {
            guard i + 4 <= body.count else { return nil }
            let n = uint32(body[i..<(i + 4)])
            guard i + 4 + n <= body.count else { return nil }
            defer { i += 4 + n }
            return Array(body[(i + 4)..<(i + 4 + n)])
        }
        for _ in 0..<uint32(body[1..<5]) {
            guard let blob = string(), let comment = string() else { return nil }
            if comment.isEmpty {
                let typeLength = blob.count >= 4 ? uint32(blob[0..<4]) : 0
                comments.append(String(decoding: blob.dropFirst(4).prefix(typeLength), as: UTF8.self))
            } else {
                comments.append(String(decoding: comment, as: UTF8.self))
            }
        }
        return comments
    }
}

#if canImport(Glibc)
import Glibc
#endif
