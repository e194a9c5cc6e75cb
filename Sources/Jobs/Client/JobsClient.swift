import Foundation
import System
import Synchronization

/// The jobs of one host as `ferry ls` shows them: what the host said, or why it could not be asked
/// (then the registry's last word).
public struct HostJobs: Sendable {
    public var host: String
    public var jobs: [JobInfo]
    public var remembered: [JobRecord]
    public var error: String?
}

/// The operations behind `ferry status / ls / cancel / logs / fetch`: find a job's host, ask its
/// agent, keep the registry up to date.
public struct JobsClient: Sendable {
    public let context: JobsContext
    public init(context: JobsContext) { self.context = context }

    /// The host of job `id`: from the registry, else by asking every known host (a job launched
    /// from another machine), which is then remembered.
    public func host(of id: String) async throws -> HostRecord {
        let (host, session) = try await locate(id)
        await session?.close()
        return host
    }

    /// The host of job `id`, and the session that found it when the hosts had to be asked.
    func locate(_ id: String) async throws -> (HostRecord, AgentSession?) {
        try Names.validateJobID(id)
        if let record = try? context.registry.job(id) { return (try context.registry.host(record.host), nil) }
        for host in [HostRecord.local] + context.registry.hosts() {
            if host.isLocal && !POSIX.exists(HostLayout(home: context.home).job(id).spec) { continue }
            guard let client = try? await withDeadline(seconds: Double(context.connectTimeout), { try await context.agent(host) }) else { continue }
            if let info = try? await client.status(id) {
                try? context.registry.remember(info, host: host.name)
                return (host, client)
            }
            await client.close()
        }
        throw JobsError.unknownJob(id)
    }

    /// A connected agent for job `id`'s host (the one connection the command uses).
    public func agent(for id: String) async throws -> AgentSession {
        let (host, found) = try await locate(id)
        if let found { return found }
        return try await context.agent(host)
    }

    public func status(_ id: String) async throws -> JobInfo {
        let client = try await agent(for: id)
        let info = try await client.using { try await $0.status(id) }
        try context.registry.remember(info, host: client.host)
        return info
    }

    /// The status of several jobs (a sweep's runs), each host asked over one connection: one
    /// authentication per host. A job whose host could not be asked maps to the error.
    public func statuses(_ ids: [String]) async -> [String: Result<JobInfo, any Error>] {
        var byHost: [String: [String]] = [:]
        var results: [String: Result<JobInfo, any Error>] = [:]
        for id in ids {
            if let record = try? context.registry.job(id) { byHost[record.host, default: []].append(id) } else {
                do { results[id] = .success(try await status(id)) } catch { results[id] = .failure(error) }
            }
        }
        for (name, jobs) in byHost {
            let client: AgentSession
            do {
                client = try await context.agent(try context.registry.host(name))
            } catch {
                for id in jobs { results[id] = .failure(error) }
                continue
            }
            for id in jobs {
                do {
                    let info = try await client.status(id)
                    try? context.registry.remember(info, host: name)
                    results[id] = .success(info)
                } catch {
                    results[id] = .failure(error)
                }
            }
            await client.close()
        }
        return results
    }

    /// Every job on every known host (hosts asked at once; an unreachable one reports its error).
    public func list() async -> [HostJobs] {
        let registry = context.registry
        let remembered = registry.jobs()
        var hosts = registry.hosts()
        if POSIX.isDirectory(HostLayout(home: context.home).jobsDirectory) || remembered.contains(where: { $0.host == HostRecord.localName }) {
            hosts.insert(.local, at: 0)
        }
        let context = self.context
        return await withTaskGroup(of: HostJobs.self) { group in
            for host in hosts {
                group.addTask {
                    let mine = remembered.filter { $0.host == host.name }
                    do {
                        let jobs = try await withDeadline(seconds: Double(context.connectTimeout) + 10) {
                            try await context.agent(host).using { try await $0.list() }
                        }
                        for info in jobs { try? registry.remember(info, host: host.name) }
                        return HostJobs(host: host.name, jobs: jobs, remembered: mine, error: nil)
                    } catch {
                        return HostJobs(host: host.name, jobs: [], remembered: mine, error: "\(error)")
                    }
                }
            }
            var all: [HostJobs] = []
            for await result in group { all.append(result) }
            return all.sorted { $0.host < $1.host }
        }
    }

    /// Asks the supervisor to stop the job (SIGTERM to its group, SIGKILL after `grace`), and with
    /// `wait`, waits until it has stopped.
    public func cancel(_ id: String, grace: Int?, wait: Bool = true) async throws -> JobInfo {
        let client = try await agent(for: id)
        let info = try await client.using { client in
            var info = try await client.cancel(id, grace: grace)
            let limit = Date().addingTimeInterval(Double((grace ?? info.spec.graceSeconds) + 30))
            while wait && !info.status.state.isFinal && Date() < limit {
                try await Task.sleep(nanoseconds: 200_000_000)
                info = try await client.status(id)
            }
            return info
        }
        try context.registry.remember(info, host: client.host)
        return info
    }

    /// A follower for job `id`, reconnecting to its host as needed.
    public func follower(_ id: String, host: HostRecord, pollSeconds: Double = 20, maxFailures: Int? = nil) -> LogFollower {
        let context = self.context
        let known = KnownAgent()
        return LogFollower(id: id, mirror: LogMirror(path: context.registry.mirrorPath(id)), pollSeconds: pollSeconds,
                           maxFailures: maxFailures) { failures in
            try await withDeadline(seconds: Double(context.connectTimeout) + 10) {
                // After one drop, the agent found before is asked directly (no probe); after two in
                // a row, it is looked for afresh.
                let session = try await context.agent(host, known: failures < 2 ? known.value : nil)
                known.value = session.known
                return session
            }
        }
    }

    /// Records a job's final status after following it.
    public func remember(_ status: JobStatus, for id: String) {
        _ = try? context.registry.updateJob(id) { $0.status = status; $0.seenAt = Date() }
    }
}

/// The agent a follower found, asked directly when it reconnects.
final class KnownAgent: Sendable {
    private let known = Mutex<AgentSession.Known?>(nil)
    var value: AgentSession.Known? {
        get { known.withLock { $0 } }
        set { known.withLock { $0 = newValue } }
    }
}
