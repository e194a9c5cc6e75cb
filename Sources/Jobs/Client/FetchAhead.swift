import Foundation
import SSH
import System
#if canImport(Glibc)
import Glibc
#endif

// `ferry fetch ID --what P` of one file over SSH, without waiting for the login shell: the host's
// rc files (conda's, pyenv's) take 0.15 s and more before the probe finds the agent, while SFTP
// starts no shell. So the file comes over SFTP meanwhile, and the probe carries `job_files` ahead:
// the agent lists P by its rules and hashes the file without following any link. The bytes land
// only when they are what the agent hashed (its sha256 and size), with the host's mode bits; else
// they are dropped and the fetch goes on as always, on the same session. A link anywhere below
// the job's folder, both `work/P` and `output/P`, a folder, a copy or a partial already here, or
// a host without SFTP: the usual fetch.
extension JobsClient {
    /// The session for job `id`, and `what` fetched into `destination` already when the fast way
    /// applied (nil: fetch it with `Fetcher` on that session).
    public func agent(for id: String, fetchingAhead what: String, into destination: String,
                      events: (@Sendable (FetchEvent) -> Void)? = nil) async throws -> (AgentSession, FetchedFile?) {
        guard !Fetcher.selections.contains(what), (try? Names.validateRelativePath(what)) != nil,
              let record = try? context.registry.job(id), let directory = record.directory, directory.hasPrefix("/"),
              let host = try? context.registry.host(record.host), !host.isLocal,
              let local = try? Fetcher.localPath(for: what, in: destination),
              !POSIX.exists(local), !POSIX.exists(local + partialSuffix) else {
            return (try await agent(for: id), nil)
        }
        let clock = Date()
        let transport = try await context.connect(host)
        guard let ssh = transport as? SSHTransport else { return (try await context.agent(host, transport: transport), nil) }
        // The probe first (the login shell takes longest); then, when P is one regular file reached
        // through folders, `job_files` ahead of it (a folder's listing would hash every file in it
        // before the fetch could start).
        var started: AgentSession.StartedProbe?
        let remote: String?
        let listing = AgentRequest.jobFiles(id: id, what: what)
        do {
            started = try await AgentSession.startProbe(transport, version: context.version, remoteHome: host.ferryHome)
            remote = await JobsClient.sftpFind(ssh, directory: directory, what: what)
            if remote != nil { started = try await started?.sendingAhead(listing) }
        } catch {
            await transport.close()
            throw error
        }
        let context = self.context
        guard let remote else { return (try await context.agent(host, transport: transport, probe: started), nil) }
        async let found = context.agent(host, transport: transport, probe: started)
        let got = await JobsClient.sftpCopy(ssh, directory: directory, remote: remote, local: local, events: events)
        let copied = Date().timeIntervalSince(clock)
        let client: AgentSession
        do { client = try await found } catch {
            if let got { unlink(got.partial) }
            throw error
        }
        guard let got else { return (client, nil) }
        guard let listed = try? client.answerSentAhead(to: listing, as: FileListing.self), listed.files.count == 1,
              let entry = listed.files.first, entry.path == got.remote, entry.size == got.size, entry.sha256 == got.sha256,
              Fetcher.landing(of: entry) == what else {
            unlink(got.partial)
            context.verbose?("fetch: \(what) came over SFTP but is not what the agent listed and hashed; fetching it through the agent")
            return (client, nil)
        }
        // The host's bits, never wider; then its name (the partial was synced).
        guard chmod(got.partial, mode_t((entry.mode ?? 0o600) & 0o777)) == 0, rename(got.partial, local) == 0 else {
            let error = JobsError.io(path: local, reason: SystemError.text(errno))
            unlink(got.partial)
            throw error
        }
        let file = FetchedFile(remotePath: entry.path, localPath: local, size: entry.size, transferredBytes: entry.size, resumedFrom: 0,
                               unchanged: false, sha256: entry.sha256)
        events?(.fetched(file))
        context.verbose?("fetch: 1 file (\(ByteCount.format(entry.size))) over SFTP while the agent hashed it (job_files sent ahead on the probe's channel, no link followed), sha256 equal on both sides, in \(String(format: "%.2f", Date().timeIntervalSince(clock))) s (connected and copied in \(String(format: "%.2f", copied)) s); \(transport.counters.commands) remote command(s) on this connection")
        return (client, file)
    }

    /// `work/P` or `output/P` when exactly one of them is a regular file reached through folders
    /// only and the other is absent; nil otherwise, or without SFTP.
    static func sftpFind(_ ssh: SSHTransport, directory: String, what: String) async -> String? {
        do {
            let sftp = try await ssh.sftp()
            var found: String?
            for top in ["work", "output"] {
                switch try await kind(sftp, directory: directory, relative: top + "/" + what) {
                case .file:
                    if found != nil { return nil }
                    found = top + "/" + what
                case .absent: continue
                case .other: return nil
                }
            }
            return found
        } catch {
            return nil
        }
    }

    /// `remote` (in the job's folder) over SFTP into `local`'s partial: hashed, synced, not
    /// renamed; nil when SFTP fails (nothing is left here then).
    static func sftpCopy(_ ssh: SSHTransport, directory: String, remote: String, local: String,
                         events: (@Sendable (FetchEvent) -> Void)?) async -> (remote: String, partial: String, size: Int64, sha256: String)? {
        do {
            let sftp = try await ssh.sftp()
            try POSIX.makeDirectory((local as NSString).deletingLastPathComponent)
            let options = SFTPTransferOptions(resume: false, verification: .deferred, permissions: 0o600)
            let result = try await sftp.download(directory + "/" + remote, to: local, options: options) { p in
                events?(.progress(files: 0, totalFiles: 1, bytes: Int64(p.completedBytes), totalBytes: Int64(p.totalBytes)))
            }
            guard let sha = result.sha256 else { unlink(result.destination); return nil }
            return (remote, result.destination, Int64(result.totalBytes), sha)
        } catch {
            unlink(local + partialSuffix)
            return nil
        }
    }

    enum RemoteKind { case file, absent, other }

    /// What `relative` is below `directory`, looked at component by component without following links.
    static func kind(_ sftp: SFTPClient, directory: String, relative: String) async throws -> RemoteKind {
        let parts = relative.split(separator: "/").map(String.init)
        var path = directory
        for (i, part) in parts.enumerated() {
            path += "/" + part
            guard let info = try await sftp.linkInfo(path) else { return .absent }
            if i < parts.count - 1 { if info.kind != .directory { return .other } } else { return info.kind == .file ? .file : .other }
        }
        return .other
    }
}
