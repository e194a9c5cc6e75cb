import Foundation
import SSH

/// Puts this machine's ferry on a host that lacks ferry of this version: the binary into
/// `FERRY_HOME/bin/ferry`, then, until it runs, each shared library the host's loader says it
/// lacks into `FERRY_HOME/lib/` (the static build carries the Swift runtime, and its rpath is
/// `$ORIGIN/../lib`; libssh, libcurl, and for training libdnnl with libgomp/libOpenCL, come from
/// this machine when the host has none).
public struct AgentInstaller: Sendable {
    /// The ferry binary to send (`FERRY_AGENT_BINARY`, else this executable).
    public var binary: String
    /// `(what, bytes done, bytes total)` while uploading.
    public var progress: (@Sendable (String, Int64, Int64) -> Void)?
    /// Details for `-v` (how each file went).
    public var note: (@Sendable (String) -> Void)?

    public init(binary: String, progress: (@Sendable (String, Int64, Int64) -> Void)? = nil, note: (@Sendable (String) -> Void)? = nil) {
        self.binary = binary; self.progress = progress; self.note = note
    }

    /// Sends one file through an exec channel (works with or without SFTP on the host), sha256-checked there.
    func put(_ local: String, to remote: String, what: String, transport: any Transport, partialSize: Int64? = 0) async throws {
        let size = POSIX.fileSize(local) ?? 0
        let report = progress
        let started = Date()
        let outcome = try await StreamUpload.put(local, to: remote, mode: 0o755, via: transport, partialSize: partialSize) { done in report?(what, done, size) }
        let seconds = Date().timeIntervalSince(started)
        note?("install: \(what) (\(ByteCount.format(size))) through an exec-channel stream (sh/cat, no SFTP needed) in \(String(format: "%.2f", seconds)) s"
              + (outcome.report.resumedFrom > 0 ? ", resumed at \(ByteCount.format(outcome.report.resumedFrom))" : "")
              + (outcome.verifiedOnHost ? ", sha256 verified on the host" : ", the host has no sha256 tool: its loader checks it"))
    }

    func install(on transport: any Transport, host: String, home: String, version: String) async throws -> AgentSession {
        guard POSIX.exists(binary) else {
            throw JobsError.agentUnavailable(host: host, reason: "the binary to install, \(binary), does not exist (check FERRY_AGENT_BINARY)")
        }
        let bin = (home as NSString).appendingPathComponent("bin")
        let lib = (home as NSString).appendingPathComponent("lib")
        let target = (bin as NSString).appendingPathComponent("ferry")
        // The folders, and what a cut upload of the binary left (it continues from there): one command.
        let made = try await run(transport, ["sh", "-c", #"umask 077; mkdir -p "$1" "$2" "$3" && { wc -c < "$4.ferry-partial" || echo 0; } 2>/dev/null && echo ok"#,
                                             "sh", home, bin, lib, target], host: host)
        let partial = Int64(String(decoding: made, as: UTF8.self).split(separator: "\n").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? "") ?? 0
        try await put(binary, to: target, what: "ferry \(version)", transport: transport, partialSize: partial)
        var withLibraries = false
        var sent: [String] = []
        for _ in 0..<16 {
            let prefix = AgentProbe.prefix(binary: target, home: home, libraries: withLibraries)
            do {
                let hello = try await AgentSession.callHello(transport, host: host, prefix: prefix)
                try AgentSession.check(hello, host: host, version: version)
                return AgentSession(transport: transport, host: host, hello: hello, prefix: prefix)
            } catch JobsError.agentUnavailable(_, let reason) {
                let missing = Agent.missingLibraries(in: reason).filter { !sent.contains($0) }
                guard !missing.isEmpty else { throw JobsError.agentUnavailable(host: host, reason: "the installed ferry does not run: \(reason)") }
                sent += try await supply(missing, transport: transport, host: host, home: home)
                withLibraries = true
            }
        }
        throw JobsError.agentUnavailable(host: host, reason: "the installed ferry still lacks libraries after sending \(sent.joined(separator: ", "))")
    }

    /// Sends the named libraries from this machine into the host's `lib/`; throws naming the ones
    /// this machine does not have either.
    func supply(_ names: [String], transport: any Transport, host: String, home: String) async throws -> [String] {
        let locator = LibraryLocator(binary: binary)
        var unavailable: [String] = []
        var sent: [String] = []
        for name in names {
            guard let local = locator.find(name) else { unavailable.append(name); continue }
            let remote = ((home as NSString).appendingPathComponent("lib") as NSString).appendingPathComponent(name)
            try await put(local, to: remote, what: name, transport: transport)
            sent.append(name)
        }
        if !unavailable.isEmpty { throw JobsError.hostLacksLibraries(host: host, libraries: unavailable) }
        return sent
    }

    /// After preflight: sends the libraries the engine failed to load (oneDNN's, e.g. libgomp),
    /// and returns a client that puts them on the library path. Repeats while the loader names new ones.
    public func supplyEngineLibraries(_ client: AgentSession, report: PreflightReport, request: PreflightRequest) async throws -> (AgentSession, PreflightReport) {
        var client = client
        var report = report
        var sent: [String] = []
        for _ in 0..<8 {
            let missing = report.missingLibraries.filter { !sent.contains($0) }
            guard !missing.isEmpty else { break }
            // Of oneDNN's candidate names, one is enough: send the first this machine has.
            var wanted = missing.filter { !$0.hasPrefix("libdnnl.so") }
            let locator = LibraryLocator(binary: binary)
            if !sent.contains(where: { $0.hasPrefix("libdnnl.so") }),
               let dnnl = missing.first(where: { $0.hasPrefix("libdnnl.so") && locator.find($0) != nil }) { wanted.append(dnnl) }
            guard !wanted.isEmpty else { break }
            sent += try await supply(wanted, transport: client.transport, host: client.host, home: client.hello.home)
            let binary = client.hello.binary
            client = AgentSession(transport: client.transport, host: client.host, hello: client.hello,
                                 prefix: AgentProbe.prefix(binary: binary, home: client.hello.home, libraries: true))
            report = try await client.preflight(request)
        }
        return (client, report)
    }

    /// Runs a command on the host; its stdout.
    @discardableResult
    private func run(_ transport: any Transport, _ arguments: [String], host: String) async throws -> Data {
        let command = try await transport.start(ShellQuote.join(arguments))
        try await command.closeInput()
        let (out, err, status) = try await command.collect()
        // 255 with the script's closing `ok`: the server lost the exit status (dropbear under load), not the work.
        guard status == 0 || (status == 255 && String(decoding: out, as: UTF8.self).hasSuffix("ok\n")) else {
            let text = String(decoding: err + out, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw JobsError.agentUnavailable(host: host, reason: "`\(arguments.prefix(1).joined())` failed (status \(status)): \(text.prefix(300))")
        }
        return out
    }
}

/// Finds a shared library on this machine by its file name: where the binary's own loader found it
/// (`ldd`), where ldconfig knows it, or in the usual folders.
struct LibraryLocator {
    let binary: String

    func find(_ name: String) -> String? {
        guard !name.contains("/"), name.hasPrefix("lib") else { return nil }
        if let path = lddMap()[name], POSIX.exists(path) { return path }
        if let path = ldconfigMap()[name], POSIX.exists(path) { return path }
        let own = (((binary as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent as NSString).appendingPathComponent("lib")
        for dir in [own, "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
                    "/lib64", "/usr/lib64", "/usr/local/lib", "/usr/lib", "/lib"] {
            let candidate = (dir as NSString).appendingPathComponent(name)
            if POSIX.exists(candidate) { return candidate }
        }
        return nil
    }

    private func lddMap() -> [String: String] {
        parse(Subprocess.capture(["ldd", binary], timeout: 20).text, separator: " => ")
    }

    private func ldconfigMap() -> [String: String] {
        let ldconfig = POSIX.exists("/sbin/ldconfig") ? "/sbin/ldconfig" : "ldconfig"
        return parse(Subprocess.capture([ldconfig, "-p"], timeout: 20).text, separator: " => ")
    }

    private func parse(_ text: String, separator: String) -> [String: String] {
        var map: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.components(separatedBy: separator)
            guard parts.count == 2 else { continue }
            let name = parts[0].trimmingCharacters(in: .whitespaces).split(separator: " ").first.map(String.init) ?? ""
            let path = parts[1].trimmingCharacters(in: .whitespaces).split(separator: " ").first.map(String.init) ?? ""
            if path.hasPrefix("/"), map[name] == nil { map[name] = path }
        }
        return map
    }
}
