import Foundation

/// The environment the setup shell had that SSH sessions should see too. colab-ssh users lost
/// `nvidia-smi` and CUDA over SSH because sshd starts sessions with a minimal PATH; `host up`
/// passes these on with `SetEnv` in its own sshd_config. Names that look like secrets never pass.
public enum SessionEnvironment {
    static let names: Set<String> = ["PATH", "LD_LIBRARY_PATH", "LIBRARY_PATH", "CPATH", "PYTHONPATH", "VIRTUAL_ENV",
                                     "CONDA_PREFIX", "CONDA_DEFAULT_ENV", "CONDA_EXE", "LANG", "LC_ALL", "TZ",
                                     "OMP_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS"]
    static let prefixes = ["CUDA_", "NVIDIA_", "NCCL_", "CUDNN_", "COLAB_", "TPU_", "TORCH_", "HF_HOME", "TRANSFORMERS_CACHE"]
    static let secretMarkers = ["TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY", "AUTH", "CREDENTIAL", "COOKIE"]

    /// Whether a name may carry a secret (these never reach sshd_config, even when asked for).
    public static func looksSecret(_ name: String) -> Bool {
        let upper = name.uppercased()
        return secretMarkers.contains { upper.contains($0) }
    }

    /// The variables to pass from `environment`: the CUDA/Python/locale set plus `extra` names.
    public static func capture(from environment: [String: String], extra: [String] = []) -> [(name: String, value: String)] {
        var chosen: [(String, String)] = []
        for (name, value) in environment.sorted(by: { $0.key < $1.key }) {
            guard !value.isEmpty, !looksSecret(name) else { continue }
            let wanted = names.contains(name) || prefixes.contains(where: { name.hasPrefix($0) }) || extra.contains(name)
            if wanted { chosen.append((name, value)) }
        }
        return chosen
    }

    /// Whether sshd_config can carry `value` inside double quotes.
    static func isCarriable(_ value: String) -> Bool {
        !value.unicodeScalars.contains { $0 == "\"" || $0 == "\\" || $0.value < 0x20 || $0.value == 0x7f }
    }

    /// The same variables as a file a login shell can source (`. FILE`): Debian's /etc/profile resets
    /// PATH for login shells, after sshd set it.
    public static func shellFile(_ variables: [(name: String, value: String)]) -> String {
        "# Written by `ferry host up`: the environment its shell had. A login shell whose /etc/profile resets PATH can `. ` this file.\n"
            + variables.map { "export \($0.name)=\(shellQuote($0.value))" }.joined(separator: "\n") + "\n"
    }

    static func shellQuote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }
}

/// The sshd_config `host up` writes for its own sshd: key-only by default, one user, its own host key
/// and authorized_keys under FERRY_HOME, no agent/X11 forwarding, no remote listeners.
public struct SSHDConfig: Sendable, Equatable {
    public var port: Int
    public var listenAddresses: [String]
    public var hostKey: String
    public var pidFile: String
    public var authorizedKeysFile: String
    public var user: String
    public var allowPassword: Bool
    public var environment: [String: String]
    public var clientAliveInterval: Int
    public var clientAliveCountMax: Int

    public init(port: Int, listenAddresses: [String], hostKey: String, pidFile: String, authorizedKeysFile: String, user: String,
                allowPassword: Bool = false, environment: [String: String] = [:], clientAliveInterval: Int = 15, clientAliveCountMax: Int = 4) {
        self.port = port; self.listenAddresses = listenAddresses; self.hostKey = hostKey; self.pidFile = pidFile
        self.authorizedKeysFile = authorizedKeysFile; self.user = user; self.allowPassword = allowPassword
        self.environment = environment; self.clientAliveInterval = clientAliveInterval; self.clientAliveCountMax = clientAliveCountMax
    }

    /// The file's text. Throws when a value cannot be written safely.
    public func render() throws -> String {
        for path in [hostKey, pidFile, authorizedKeysFile] where path.contains(where: { $0 == " " || $0 == "\"" || $0 == "\n" }) {
            throw TunnelError.io(path: path, reason: "sshd_config cannot name a path with spaces or quotes here; set FERRY_HOME to a plainer path")
        }
        guard user.allSatisfy({ $0.isLetter || $0.isNumber || "._-$".contains($0) }) else {
            throw TunnelError.io(path: "sshd_config", reason: "the user name \(user.debugDescription) cannot go into AllowUsers")
        }
        var lines = [
            "# Written by `ferry host up` on every start; the system's sshd_config is not read or changed.",
            "Port \(port)",
        ]
        lines += listenAddresses.map { "ListenAddress \($0)" }
        lines += [
            "HostKey \(hostKey)",
            "PidFile \(pidFile)",
            // Our own file for every user, so AllowUsers keeps it to the one account.
            "AuthorizedKeysFile \(authorizedKeysFile)",
            "AllowUsers \(user)",
            "PubkeyAuthentication yes",
            "PasswordAuthentication \(allowPassword ? "yes" : "no")",
            "KbdInteractiveAuthentication no",
            "PermitEmptyPasswords no",
            "PermitRootLogin \(allowPassword && user == "root" ? "yes" : "prohibit-password")",
            // PAM would read system files we promised to leave alone (and needs root).
            "UsePAM no",
            // The files live in a 0700 directory ferry made; StrictModes would also judge every parent (/tmp...).
            "StrictModes no",
            "MaxAuthTries 4",
            "LoginGraceTime 30",
            "PermitUserEnvironment no",
            "AllowAgentForwarding no",
            "X11Forwarding no",
            "PermitTunnel no",
            // VS Code Remote-SSH forwards local ports to its server; nothing may listen remotely.
            "AllowTcpForwarding local",
            "GatewayPorts no",
            "ClientAliveInterval \(clientAliveInterval)",
            "ClientAliveCountMax \(clientAliveCountMax)",
            "PrintMotd no",
            "Subsystem sftp internal-sftp",
        ]
        if !environment.isEmpty {
            var pairs: [String] = []
            for (name, value) in environment.sorted(by: { $0.key < $1.key }) {
                guard SessionEnvironment.isCarriable(value), name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) else {
                    throw TunnelError.unsafeEnvironmentValue(name: name)
                }
                pairs.append("\"\(name)=\(value)\"")
            }
            // sshd keeps only the first SetEnv line: everything goes on one.
            lines.append("SetEnv " + pairs.joined(separator: " "))
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
