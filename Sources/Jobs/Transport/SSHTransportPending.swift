// TEMPORARY until the SSH branch is merged into main; replaced by SSHTransport.swift.
enum SSHTransport {
    static func connect(_ host: HostRecord, context: JobsContext) async throws -> any Transport {
        throw JobsError.agentUnavailable(host: host.name, reason: "this build has no SSH transport yet")
    }
}
