import Foundation

/// Everything that can go wrong setting up a host or keeping a tunnel open, each saying what to do.
public enum TunnelError: Error, CustomStringConvertible, Equatable, Sendable {
    // HTTP (the ngrok agent API)
    case httpFailed(url: String, reason: String)

    // ngrok
    case ngrokNotInstalled(searched: [String])
    case ngrokTokenMissing(configFiles: [String])
    /// What the agent reported: `code` is `ERR_NGROK_…` when it gave one.
    case ngrokFailed(code: String?, message: String)
    case ngrokAPIUnreachable(url: String, reason: String)
    case ngrokNoTunnel(url: String, localPort: Int?, others: [String])
    case ngrokNotTCP(url: String, publicURL: String, proto: String)
    case ngrokBadResponse(url: String, reason: String)
    case ngrokExited(status: Int32, log: String)

    // reverse SSH through a relay
    case relayPortRefused(relay: String, port: Int, reason: String)
    case relayUnreachable(relay: String, reason: String)
    case relayHostKeyUnknown(relay: String, fingerprint: String)

    // a tunnel command (cloudflared, ...)
    case commandExited(command: String, status: Int32, log: String)

    // the host's own sshd
    case sshdNotFound(canInstall: Bool)
    case sshdInstallFailed(output: String)
    case sshdConfigRejected(path: String, output: String)
    case sshdFailed(port: Int, log: String)
    case portInUse(port: Int)
    case keygenFailed(output: String)
    case noAuthorizedKey(file: String)
    case invalidPublicKey(String, reason: String)
    case unsafeEnvironmentValue(name: String)
    /// `--env` named a variable that looks like a secret (TOKEN, KEY, SECRET, PASSWORD in its name).
    case secretEnvironment(name: String)

    // password login
    case passwordNeedsFlag(source: String)
    case passwordMissing
    case passwordTooShort(minimum: Int)
    case passwordNeedsRoot
    case passwordSetFailed(user: String, output: String)

    // lifecycle
    case invalidTunnel(String)
    case alreadyRunning(pid: Int32, ferryHome: String)
    case detachFailed(log: String)
    case io(path: String, reason: String)
    case hostKeyUnavailable(host: String, reason: String)

    /// Retrying cannot help: a person has to act first.
    public var isPermanent: Bool {
        switch self {
        case .ngrokNotInstalled, .ngrokTokenMissing, .sshdNotFound, .sshdInstallFailed, .sshdConfigRejected,
             .keygenFailed, .noAuthorizedKey, .invalidPublicKey, .unsafeEnvironmentValue, .secretEnvironment, .passwordNeedsFlag,
             .passwordMissing, .passwordTooShort, .passwordNeedsRoot, .passwordSetFailed, .invalidTunnel,
             .alreadyRunning, .portInUse, .relayHostKeyUnknown:
            return true
        case .ngrokFailed(let code, _):
            // Bad or missing token, no card for TCP, agent too old: the same on every try.
            return ["ERR_NGROK_4018", "ERR_NGROK_105", "ERR_NGROK_106", "ERR_NGROK_107", "ERR_NGROK_8013", "ERR_NGROK_120"].contains(code ?? "")
        default:
            return false
        }
    }

    public var description: String {
        switch self {
        case .httpFailed(let url, let reason):
            return "GET \(url) failed: \(reason)"
        case .ngrokNotInstalled(let searched):
            return "the ngrok agent is not installed (looked in \(searched.joined(separator: ", "))) — install it from https://ngrok.com/download, or pass --ngrok-binary PATH"
        case .ngrokTokenMissing(let files):
            return "no ngrok authtoken: set NGROK_AUTHTOKEN in the environment, or run `ngrok config add-authtoken` once (it writes \(files.first ?? "ngrok.yml")) — ferry never takes the token on its command line"
        case .ngrokFailed(let code, let message):
            let advice: String
            switch code {
            case "ERR_NGROK_4018": advice = "ngrok needs a verified account and its authtoken: sign up at https://dashboard.ngrok.com/signup and set NGROK_AUTHTOKEN"
            case "ERR_NGROK_105", "ERR_NGROK_106", "ERR_NGROK_107": advice = "the authtoken is wrong: copy it again from https://dashboard.ngrok.com/get-started/your-authtoken into NGROK_AUTHTOKEN"
            case "ERR_NGROK_108": advice = "the free plan allows one ngrok agent at a time: stop the other one (see https://dashboard.ngrok.com/agents), or use --tunnel ssh://user@relay instead"
            case "ERR_NGROK_8013": advice = "ngrok's free plan gives TCP endpoints only once a card is on file (https://dashboard.ngrok.com/settings#id-verification); or use --tunnel ssh://user@relay, which needs no third party"
            case "ERR_NGROK_120": advice = "this ngrok agent is too old: run `ngrok update`"
            default: advice = "see ngrok's message above"
            }
            return "ngrok refused: \(message)\(code.map { " (\($0))" } ?? "") — \(advice)"
        case .ngrokAPIUnreachable(let url, let reason):
            return "the ngrok agent's API at \(url) does not answer (\(reason)) — is the agent running? If another ngrok holds port 4040, pass --ngrok-api with its web_addr"
        case .ngrokNoTunnel(let url, let port, let others):
            let ours = port.map { " for local port \($0)" } ?? ""
            let rest = others.isEmpty ? "the list is empty" : "it lists only \(others.joined(separator: ", "))"
            return "the ngrok agent at \(url) has no TCP tunnel\(ours): \(rest) — the agent may still be starting, or failed (see its log)"
        case .ngrokNotTCP(let url, let publicURL, let proto):
            return "the ngrok tunnel \(publicURL) reported by \(url) is \(proto), not tcp: SSH needs `ngrok tcp PORT`"
        case .ngrokBadResponse(let url, let reason):
            return "cannot read the ngrok agent's answer at \(url): \(reason)"
        case .ngrokExited(let status, let log):
            return "the ngrok agent exited with status \(status) before its tunnel came up:\n\(log)"
        case .relayPortRefused(let relay, let port, let reason):
            return "the relay \(relay) refused to listen on localhost:\(port) (\(reason)) — after a dropped connection it keeps the old forward until its ClientAliveInterval × ClientAliveCountMax run out, so ferry retries; if it never works, the key's permitlisten=\"localhost:\(port)\" or the relay's AllowTcpForwarding is wrong"
        case .relayUnreachable(let relay, let reason):
            return "cannot reach the relay \(relay): \(reason)"
        case .relayHostKeyUnknown(let relay, let fingerprint):
            return "the relay \(relay) presents a host key nobody has vouched for yet (\(fingerprint)); compare it with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the relay, then pass --relay-host-key \(fingerprint)"
        case .commandExited(let command, let status, let log):
            return "the tunnel command `\(command)` exited with status \(status):\n\(log)"
        case .sshdNotFound(let canInstall):
            return canInstall
                ? "OpenSSH's sshd is not installed and apt-get is not available to install it — install openssh-server with the system's package manager"
                : "OpenSSH's sshd is not installed — install it (`sudo apt-get install openssh-server`), or run `ferry host up` as root once so it can install it"
        case .sshdInstallFailed(let output):
            return "installing openssh-server failed:\n\(output)"
        case .sshdConfigRejected(let path, let output):
            return "sshd rejected the config ferry wrote (\(path)):\n\(output)"
        case .sshdFailed(let port, let log):
            return "sshd did not start listening on port \(port):\n\(log)"
        case .portInUse(let port):
            return "port \(port) is already in use on this machine — choose another with --sshd-port"
        case .keygenFailed(let output):
            return "ssh-keygen failed: \(output) — is openssh-client installed?"
        case .noAuthorizedKey(let file):
            return "no key may log in yet (\(file) is empty): pass your laptop's public key, e.g. --authorize \"$(cat ~/.ssh/id_ed25519.pub)\" typed there, or --authorize FILE"
        case .invalidPublicKey(let text, let reason):
            let shown = text.count > 60 ? String(text.prefix(57)) + "..." : text
            return "\(shown.debugDescription) is not an SSH public key: \(reason) — pass the one-line contents of a .pub file (`ssh-ed25519 AAAA... comment`)"
        case .secretEnvironment(let name):
            return "not passing \(name) to SSH sessions: it looks like a secret, and host up would write it into its sshd_config (SetEnv), on disk and in every session — give it to the job instead: `ferry launch --env \(name) …` on the laptop (the value stays out of argv)"
        case .unsafeEnvironmentValue(let name):
            return "cannot pass \(name) to SSH sessions: its value contains a quote, backslash or control character that sshd_config cannot carry — leave it out of --env"
        case .passwordNeedsFlag(let source):
            return "a password was supplied (\(source)) but password login is off: pass --allow-password to enable it knowingly, or unset it — keys are safer"
        case .passwordMissing:
            return "--allow-password needs a password: type it at the prompt (run in a terminal), or set FERRY_HOST_PASSWORD in the environment — never on the command line"
        case .passwordTooShort(let minimum):
            return "that password is shorter than \(minimum) characters; the port may be public, so choose a longer one (or use keys)"
        case .passwordNeedsRoot:
            return "password login needs `ferry host up` to run as root: an unprivileged sshd cannot check system passwords — use --authorize with a key instead"
        case .passwordSetFailed(let user, let output):
            return "setting the password of \(user) failed: \(output)"
        case .invalidTunnel(let text):
            return "\(text.debugDescription) is not a tunnel: use none, ngrok, ssh://user@relay[:port], or command (with --tunnel-command)"
        case .alreadyRunning(let pid, let home):
            return "`ferry host up` is already running (pid \(pid), FERRY_HOME \(home)) — stop it with `ferry host down`, or see its connection string with `ferry host status`"
        case .detachFailed(let log):
            return "the detached `ferry host up` stopped before it was ready:\n\(log)"
        case .io(let path, let reason):
            return "\(path): \(reason)"
        case .hostKeyUnavailable(let host, let reason):
            return "cannot read the host key of \(host): \(reason)"
        }
    }
}
