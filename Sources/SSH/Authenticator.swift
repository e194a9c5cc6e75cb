import CLibSSH
import Foundation

/// Client authentication in OpenSSH's order: the agent's keys, the identity files (an encrypted key
/// asks for its passphrase on the terminal), then a password from the terminal or
/// `FERRY_SSH_PASSWORD` (password or keyboard-interactive). Runs on the session thread.
struct Authenticator {
    let session: ssh_session
    let parameters: ConnectParameters

    private var error: String { String(cString: ssh_get_error(UnsafeMutableRawPointer(session))) }
    private static let success = Int32(SSH_AUTH_SUCCESS.rawValue)
    private static let fatal = Int32(SSH_AUTH_ERROR.rawValue)

    /// Returns the method that worked, e.g. `publickey (ssh-agent)`.
    func authenticate() throws -> String {
        let p = parameters
        var tried: [String] = []
        var askedServer = false
        func check(_ call: @autoclosure () -> Int32) throws -> Bool {
            askedServer = true
            let rc = try answer(call)
            if rc == Authenticator.success { return true }
            // libssh 0.10 answers SSH_AUTH_AGAIN from ssh_userauth_agent when the server hung up mid-way.
            if rc == Authenticator.fatal || ssh_is_connected(session) == 0 {
                let reason = error   // read first: asking for the disconnect message overwrites it
                let disconnect = ssh_get_disconnect_message(session).map { String(cString: $0) } ?? ""
                // sshd's MaxAuthTries (6 by default) hangs up on a client that offers too many keys.
                if (disconnect + " " + reason).localizedCaseInsensitiveContains("too many authentication failures") {
                    throw SSHError.tooManyAuthenticationFailures(user: p.user, host: p.port == 22 ? p.hostName : "\(p.hostName):\(p.port)", triedMethods: tried)
                }
                throw SSHError.disconnected(host: "\(p.hostName):\(p.port)", reason: "during authentication: \(reason)")
            }
            return false
        }

        if p.useAgent, let socket = p.environment.agentSocket {
            var keys = SSHAgentKeys.list(socket: socket)
            var filter: SSHAgentKeys.Filter?
            if p.identitiesOnly {
                // Only the agent's copies of the IdentityFiles, as OpenSSH does (libssh 0.10 offers all
                // the agent's keys at once, so it is shown a filtered agent).
                let allowed = Set(p.identityFiles.compactMap(SSHAgentKeys.publicBlob(ofIdentity:)))
                keys = keys?.filter { allowed.contains($0.blob) }
                if keys?.isEmpty == false {
                    filter = SSHAgentKeys.Filter(socket: socket, allowed: allowed)
                    if let filter { _ = ssh_set_agent_socket(session, socket_t(filter.libsshEnd)) }
                }
            } else {
                _ = ferry_ssh_set_string(session, SSH_OPTIONS_IDENTITY_AGENT, socket)
            }
            if !p.identitiesOnly || filter != nil {
                defer { filter?.stop() }
                let names = keys.map(SSHAgentKeys.describe)
                tried.append(names.map { "publickey (ssh-agent: \($0.count) key\($0.count == 1 ? "" : "s")\($0.isEmpty ? "" : ": " + $0.joined(separator: ", ")))" }
                             ?? "publickey (ssh-agent)")
                if try check(ssh_userauth_agent(session, nil)) { return "publickey (ssh-agent)" }
            }
        }

        for path in p.identityFiles {
            guard FileManager.default.fileExists(atPath: path) else {
                if p.identityFilesAreExplicit { tried.append("publickey \(path) (no such file)") }
                continue
            }
            var key: ssh_key?
            if ssh_pki_import_privkey_file(path, nil, nil, nil, &key) == SSH_OK, let key {
                defer { ssh_key_free(key) }
                tried.append("publickey \(path)")
                if try check(ssh_userauth_publickey(session, nil, key)) { return "publickey \(path)" }
                continue
            }
            guard Authenticator.isEncrypted(path) else {
                tried.append("publickey \(path) (unreadable: not a private key libssh understands)")
                continue
            }
            guard p.interactive, TerminalPrompt.isAvailable else {
                tried.append("publickey \(path) (encrypted; no terminal to ask its passphrase — load it with ssh-add)")
                continue
            }
            // Ask the server about the public half first, so nobody types a passphrase for nothing.
            var pub: ssh_key?
            if ssh_pki_import_pubkey_file(path + ".pub", &pub) == SSH_OK, let pub {
                defer { ssh_key_free(pub) }
                if try !check(ssh_userauth_try_publickey(session, nil, pub)) {
                    tried.append("publickey \(path) (server refused the key)")
                    continue
                }
            }
            var done = false
            for _ in 0..<3 where !done {
                guard let passphrase = TerminalPrompt.readSecret("Enter passphrase for key '\(path)': ") else { break }
                var unlocked: ssh_key?
                guard ssh_pki_import_privkey_file(path, passphrase, nil, nil, &unlocked) == SSH_OK, let unlocked else { continue }
                defer { ssh_key_free(unlocked) }
                tried.append("publickey \(path)")
                if try check(ssh_userauth_publickey(session, nil, unlocked)) { return "publickey \(path)" }
                done = true
            }
            if !done { tried.append("publickey \(path) (passphrase not given)") }
        }

        // The server lists what it still accepts in every failure reply; ask once if nothing was sent.
        if !askedServer {
            if try check(ssh_userauth_none(session, nil)) { return "none" }
        }
        let methods = ssh_userauth_list(session, nil)
        let password: () -> String? = {
            if let pw = p.environment.password { return pw }
            guard p.interactive else { return nil }
            return TerminalPrompt.readSecret("\(p.user)@\(p.hostName)'s password: ")
        }
        if methods & Int32(SSH_AUTH_METHOD_PASSWORD) != 0 {
            if let pw = password() {
                tried.append("password")
                if try check(ssh_userauth_password(session, nil, pw)) { return "password" }
            } else {
                tried.append("password (no terminal and no FERRY_SSH_PASSWORD)")
            }
        } else if methods & Int32(SSH_AUTH_METHOD_INTERACTIVE) != 0 {
            if try keyboardInteractive(password: password, tried: &tried) { return "keyboard-interactive" }
        }
        throw SSHError.authenticationFailed(user: p.user, host: p.port == 22 ? p.hostName : "\(p.hostName):\(p.port)", triedMethods: tried)
    }

    /// Runs one userauth call without blocking and waits for its reply here. libssh 0.10 in blocking
    /// mode, when the server hangs up mid-way (sshd's MaxAuthTries after too many agent keys), polls
    /// the closed socket until its whole timeout has passed; this loop sees the hang-up at once, and
    /// gives a reply the connect timeout to come, as the blocking call did.
    private func answer(_ call: () -> Int32) throws -> Int32 {
        ssh_set_blocking(session, 0)
        defer { ssh_set_blocking(session, 1) }
        let p = parameters
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(max(1, p.connectTimeout)) * 1_000_000_000
        var rc = call()
        while rc == Int32(SSH_AUTH_AGAIN.rawValue) {
            // A hang-up: the caller reads the disconnect message (too many authentication failures).
            if ssh_is_connected(session) == 0 { return rc }
            guard DispatchTime.now().uptimeNanoseconds < deadline else {
                throw SSHError.connectTimedOut(host: p.hostName, port: p.port, seconds: p.connectTimeout)
            }
            var ready = pollfd(fd: ssh_get_fd(session), events: Int16(POLLIN), revents: 0)
            _ = poll(&ready, 1, 50)
            rc = call()
        }
        return rc
    }

    /// Answers echo-off prompts with the password; other prompts are asked on the terminal.
    private func keyboardInteractive(password: () -> String?, tried: inout [String]) throws -> Bool {
        var answeredAny = false
        for _ in 0..<5 {
            let rc = ssh_userauth_kbdint(session, nil, nil)
            if rc == Authenticator.success { tried.append("keyboard-interactive"); return true }
            if rc == Authenticator.fatal { throw SSHError.disconnected(host: parameters.hostName, reason: error) }
            guard rc == Int32(SSH_AUTH_INFO.rawValue) else { break }
            let count = ssh_userauth_kbdint_getnprompts(session)
            for i in 0..<max(count, 0) {
                var echo: CChar = 0
                let prompt = ssh_userauth_kbdint_getprompt(session, UInt32(i), &echo).map { String(cString: $0) } ?? "Password: "
                let answer: String?
                if echo == 0 { answer = password() } else { answer = parameters.interactive ? TerminalPrompt.readSecret(prompt) : nil }
                guard let answer else {
                    tried.append("keyboard-interactive (no terminal and no FERRY_SSH_PASSWORD)")
                    return false
                }
                answeredAny = true
                _ = ssh_userauth_kbdint_setanswer(session, UInt32(i), answer)
            }
        }
        tried.append(answeredAny ? "keyboard-interactive" : "keyboard-interactive (nothing to answer)")
        return false
    }

    /// Whether a private key file is passphrase-protected (OpenSSH or PEM format).
    static func isEncrypted(_ path: String) -> Bool {
        guard let data = FileManager.default.contents(atPath: path) else { return false }
        let text = String(decoding: data, as: UTF8.self)
        if text.contains("ENCRYPTED") { return true }   // PEM: Proc-Type: 4,ENCRYPTED / BEGIN ENCRYPTED PRIVATE KEY
        guard text.contains("BEGIN OPENSSH PRIVATE KEY") else { return false }
        let body = text.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
        guard let blob = Data(base64Encoded: body) else { return false }
        // "openssh-key-v1\0", then a length-prefixed cipher name: "none" when unencrypted.
        let magic = Array("openssh-key-v1".utf8) + [0]
        let bytes = [UInt8](blob)
        guard bytes.count > magic.count + 4, Array(bytes[0..<magic.count]) == magic else { return false }
        let i = magic.count
        let length = Int(bytes[i]) << 24 | Int(bytes[i + 1]) << 16 | Int(bytes[i + 2]) << 8 | Int(bytes[i + 3])
        guard bytes.count >= i + 4 + length else { return false }
        return String(decoding: bytes[(i + 4)..<(i + 4 + length)], as: UTF8.self) != "none"
    }
}
