import ArgumentParser
import Foundation
import Jobs
import SSH

/// `ferry ssh JOBID` and `ferry ssh HOSTNAME`: the job ids and host names ferry knows, before
/// `ferry ssh` falls back to ssh config aliases and user@host.
enum JobShell {
    /// Runs a shell (or `command`) for a known job or host; nil when `target` is neither.
    static func run(_ target: String, command: [String], pty: Bool?) async throws -> Int32? {
        let context = JobsCLI.context()
        let registry = context.registry
        var host: HostRecord?
        var directory: String?
        var slurmJobID: String?
        if Names.isValidJobID(target), let job = try? registry.job(target) {
            slurmJobID = job.status?.schedulerJobId
            host = try? registry.host(job.host)
            directory = job.directory.map { ($0 as NSString).appendingPathComponent("work") }
            if host == nil {
                FileHandle.standardError.write(Data("ferry: job \(target) ran on \(job.host), which is no longer a known host\n".utf8))
                return 2
            }
        } else if target != HostRecord.localName, (try? Names.validateHostName(target)) != nil, let record = try? registry.host(target) {
            host = record
        }
        guard let host else { return nil }
        var line: String? = command.isEmpty ? nil : command.count == 1 ? command[0] : ShellQuote.join(command)
        if host.slurm != nil, let slurmJobID {
            // On a cluster the job runs on a compute node: a shell there, inside its allocation.
            let inner = line.map { ["bash", "-lc", $0] } ?? ["bash", "-l"]
            line = ShellQuote.join(["srun", "--jobid=\(slurmJobID)", "--overlap"] + (command.isEmpty || pty == true ? ["--pty"] : []) + inner)
        }
        if host.isLocal {
            return try local(directory: directory, command: line)
        }
        do {
            let session = try await SSHTransport.session(for: host, context: context, interactive: true)
            var options = TerminalSession.Options(command: line, directory: directory)
            options.pty = pty
            let status: SSHExitStatus
            do { status = try await TerminalSession.run(session, options: options) } catch {
                await session.close()
                throw error
            }
            await session.close()
            return status.code
        } catch let error as SSHError {
            FileHandle.standardError.write(Data("ferry: \(error)\n".utf8))
            return 255
        }
    }

    /// A local job: the user's shell in its folder, on this terminal.
    static func local(directory: String?, command: String?) throws -> Int32 {
        let shell = ProcessInfo.processInfo.environment["SHELL"].flatMap { $0.isEmpty ? nil : $0 } ?? "/bin/sh"
        return try Subprocess.interactive([shell] + (command.map { ["-c", $0] } ?? []), directory: directory)
    }
}
