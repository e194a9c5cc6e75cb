import CLibSSH
import Foundation

/// One SSH connection through libssh. A session is confined to the thread that uses it: libssh is not
/// thread-safe per session, so this type is deliberately not Sendable.
public final class SSHSession {
    /// Where to connect and how to check the server.
    public struct Options: Sendable {
        public var host: String
        public var port: Int
        public var user: String
        /// known_hosts files consulted in order; the first is where accepted keys are recorded.
        public var knownHostsFiles: [String]
        /// A `SHA256:...` fingerprint the server must present (checked, then recorded).
        public var pinnedFingerprint: String?
        public var identityFiles: [String]
        public var connectTimeout: Int

        public init(host: String, port: Int = 22, user: String, knownHostsFiles: [String],
                    pinnedFingerprint: String? = nil, identityFiles: [String] = [], connectTimeout: Int = 15) {
            self.host = host; self.port = port; self.user = user; self.knownHostsFiles = knownHostsFiles
            self.pinnedFingerprint = pinnedFingerprint; self.identityFiles = identityFiles; self.connectTimeout = connectTimeout
        }
    }

    public let options: Options
    let handle: ssh_session

    /// libssh's version string, e.g. "0.10.6".
    public static var libraryVersion: String { String(cString: ssh_version(0)) }

    /// Connects, verifies the host key strictly and authenticates with the identity files.
    public init(_ options: Options) throws {
        self.options = options
        _ = SSHSession.initialized
        guard let s = ssh_new() else { throw SSHError.connectionFailed(host: options.host, port: options.port, reason: "ssh_new failed") }
        handle = s
        _ = ferry_ssh_set_string(s, SSH_OPTIONS_HOST, options.host)
        _ = ferry_ssh_set_uint(s, SSH_OPTIONS_PORT, UInt32(options.port))
        _ = ferry_ssh_set_string(s, SSH_OPTIONS_USER, options.user)
        _ = ferry_ssh_set_long(s, SSH_OPTIONS_TIMEOUT, options.connectTimeout)
        // Without TCP_NODELAY, SFTP writes crawl (Nagle + delayed ACK).
        _ = ferry_ssh_set_int(s, SSH_OPTIONS_NODELAY, 1)
        // ferry checks host keys itself against the files it was given; libssh must not read others.
        _ = ferry_ssh_set_int(s, SSH_OPTIONS_PROCESS_CONFIG, 0)
        _ = ferry_ssh_set_string(s, SSH_OPTIONS_KNOWNHOSTS, options.knownHostsFiles.first ?? "/dev/null")
        _ = ferry_ssh_set_string(s, SSH_OPTIONS_GLOBAL_KNOWNHOSTS, "/dev/null")
        guard ssh_connect(s) == SSH_OK else {
            let reason = String(cString: ssh_get_error(UnsafeMutableRawPointer(s)))
            // The instance is fully initialised here: deinit disconnects and frees.
            throw SSHError.connectionFailed(host: options.host, port: options.port, reason: reason)
        }
        try verifyHostKey()
        try authenticate()
    }

    deinit {
        ssh_disconnect(handle)
        ssh_free(handle)
    }

    private static let initialized: Bool = { ssh_init() == 0 }()

    var lastError: String { String(cString: ssh_get_error(UnsafeMutableRawPointer(handle))) }

    /// The server's host key fingerprint, `SHA256:<base64 without padding>` as OpenSSH prints it.
    public func serverFingerprint() throws -> String {
        var key: ssh_key?
        guard ssh_get_server_publickey(handle, &key) == SSH_OK, let key else {
            throw SSHError.hostKeyCheckFailed(host: options.host, reason: lastError)
        }
        defer { ssh_key_free(key) }
        var hash: UnsafeMutablePointer<UInt8>?
        var length = 0
        guard ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &length) == 0, let hash else {
            throw SSHError.hostKeyCheckFailed(host: options.host, reason: lastError)
        }
        let bytes = Data(bytes: hash, count: length)
        var owned: UnsafeMutablePointer<UInt8>? = hash
        ssh_clean_pubkey_hash(&owned)
        return "SHA256:" + bytes.base64EncodedString().replacingOccurrences(of: "=", with: "")
    }

    private func verifyHostKey() throws {
        let presented = try serverFingerprint()
        if let pinned = options.pinnedFingerprint {
            guard pinned == presented else {
                throw SSHError.hostKeyMismatch(host: options.host, expected: pinned, presented: presented)
            }
            return
        }
        switch ssh_session_is_known_server(handle) {
        case SSH_KNOWN_HOSTS_OK:
            return
        case SSH_KNOWN_HOSTS_CHANGED, SSH_KNOWN_HOSTS_OTHER:
            throw SSHError.hostKeyMismatch(host: options.host, expected: "the key in \(options.knownHostsFiles.first ?? "known_hosts")", presented: presented)
        case SSH_KNOWN_HOSTS_UNKNOWN, SSH_KNOWN_HOSTS_NOT_FOUND:
            throw SSHError.hostKeyUnknown(host: options.host, port: options.port, fingerprint: presented,
                                          acceptCommand: "ferry hosts add \(options.host) ferry://\(options.user)@\(options.host):\(options.port)#\(presented)")
        default:
            throw SSHError.hostKeyCheckFailed(host: options.host, reason: lastError)
        }
    }

    private func authenticate() throws {
        var tried: [String] = []
        for path in options.identityFiles {
            var key: ssh_key?
            guard ssh_pki_import_privkey_file(path, nil, nil, nil, &key) == SSH_OK, let key else {
                tried.append("publickey \(path) (unreadable)")
                continue
            }
            defer { ssh_key_free(key) }
            tried.append("publickey \(path)")
            if ssh_userauth_publickey(handle, nil, key) == SSH_AUTH_SUCCESS.rawValue { return }
        }
        throw SSHError.authenticationFailed(user: options.user, host: options.host, triedMethods: tried)
    }

    /// Runs `command` through the remote user's shell and collects its output and exit status.
    public func run(_ command: String) throws -> (stdout: Data, stderr: Data, status: Int32) {
        guard let channel = ssh_channel_new(handle) else {
            throw SSHError.channelFailed(host: options.host, operation: "open channel", reason: lastError)
        }
        defer { ssh_channel_free(channel) }
        guard ssh_channel_open_session(channel) == SSH_OK else {
            throw SSHError.channelFailed(host: options.host, operation: "open session", reason: lastError)
        }
        guard ssh_channel_request_exec(channel, command) == SSH_OK else {
            ssh_channel_close(channel)
            throw SSHError.channelFailed(host: options.host, operation: "exec", reason: lastError)
        }
        var out = Data(), err = Data()
        var buffer = [UInt8](repeating: 0, count: 32_768)
        while ssh_channel_is_eof(channel) == 0 || ssh_channel_poll(channel, 0) > 0 || ssh_channel_poll(channel, 1) > 0 {
            var progressed = false
            for isStderr: Int32 in [0, 1] {
                let n = buffer.withUnsafeMutableBytes { ssh_channel_read_timeout(channel, $0.baseAddress, UInt32($0.count), isStderr, 100) }
                if n == SSH_ERROR { throw SSHError.channelFailed(host: options.host, operation: "read", reason: lastError) }
                if n > 0 { (isStderr == 1 ? { err.append(contentsOf: buffer[0..<Int(n)]) } : { out.append(contentsOf: buffer[0..<Int(n)]) })(); progressed = true }
            }
            if !progressed && ssh_channel_is_open(channel) == 0 { break }
        }
        ssh_channel_send_eof(channel)
        let status = ssh_channel_get_exit_status(channel)
        ssh_channel_close(channel)
        return (out, err, status)
    }
}
