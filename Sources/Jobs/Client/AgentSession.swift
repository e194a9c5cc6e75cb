import Foundation
import System
import SSH
#if canImport(Glibc)
import Glibc
#endif

/// A session with a host's agent over one transport: finds (or, for a launch, installs) a ferry of
/// this version on the host, then sends it requests. The protocol's latency shortcuts live here and
/// nowhere else, each behind the one call that uses it:
/// - the probe that finds the agent answers the launch's preflight too (`preflight(_:)` returns it);
/// - `startJob(follow:)` streams the first log round on its own channel (`logs(_:offset: 0)` reads it);
/// - a session whose agent is `known` (a follower reconnecting) skips the probe (`JobsContext.agent`).
public final class AgentSession: Sendable {
    /// What a session found: enough to reach the same agent again without the probe.
    public struct Known: Sendable {
        public var hello: AgentHello
        var prefix: String
    }
    public let transport: any Transport
    /// The host's registry name, for messages.
    public let host: String
    public let hello: AgentHello
    /// The command-line prefix that runs the agent there (binary, library path, home).
    let prefix: String
    private let slots = ClientSlots()
    /// The probe's channel, where the agent serves further requests (one command fewer each).
    private let served: ServedChannel?

    init(transport: any Transport, host: String, hello: AgentHello, prefix: String, answered ahead: (verb: String, line: Data)? = nil,
         served: ServedChannel? = nil) {
        self.transport = transport; self.host = host; self.hello = hello; self.prefix = prefix; self.served = served
        slots.ahead = ahead
    }

    /// This session's agent, to reach it again without the probe.
    public var known: Known { Known(hello: hello, prefix: prefix) }

    /// A session with an agent found before (no probe, no install).
    convenience init(transport: any Transport, host: String, known: Known) {
        self.init(transport: transport, host: host, hello: known.hello, prefix: known.prefix)
    }

    /// Finds the host's agent. With `install` (a launch), a host without ferry of `version` gets this
    /// machine's binary (and the shared libraries it lacks) in its FERRY_HOME; without it (the read
    /// commands: ls, status, logs, fetch, cancel), that is `JobsError.noAgent` and nothing is sent.
    /// A probe started ahead of `connect` (a launch starts it as soon as it is connected, so the
    /// host's login shell, its rc files and the probe run while the files are hashed).
    public struct StartedProbe: Sendable {
        let command: any RemoteCommand
        /// The request written on the probe's input, which the agent it finds answers first.
        let sentAhead: String?

        /// Writes `request` for the agent to answer as soon as it runs (`answerSentAhead`), before
        /// the probe's answer is read.
        func sendingAhead(_ request: AgentRequest) async throws -> StartedProbe {
            let line = try AgentSession.requestLine(request)
            // A host without a ferry to ask ends the script before it reads stdin (its channel may
            // close before this write): its output says what it found, so a refused write is no error.
            try? await command.write(line)
            return StartedProbe(command: command, sentAhead: request.name)
        }
    }

    /// Starts the probe on `transport`; nil where the transport knows its agent (this machine).
    public static func startProbe(_ transport: any Transport, version: String, remoteHome: String?) async throws -> StartedProbe? {
        guard transport.knownAgentBinary == nil else { return nil }
        return StartedProbe(command: try await AgentProbe.start(transport, remoteHome: remoteHome, serve: serveArguments(version)), sentAhead: nil)
    }

    static func serveArguments(_ version: String) -> String { "\(version) \(AgentProtocol.version)" }

    public static func connect(_ transport: any Transport, host: String, version: String, remoteHome: String? = nil,
                               install: AgentInstaller? = nil, preflight: PreflightRequest? = nil,
                               probe started: StartedProbe? = nil) async throws -> AgentSession {
        if let binary = transport.knownAgentBinary {
            var words = [binary, AgentProtocol.subcommand]
            if let remoteHome { words += [AgentProtocol.homeFlag, remoteHome] }
            let prefix = ShellQuote.join(words)
            let hello = try await callHello(transport, host: host, prefix: prefix)
            try check(hello, host: host, version: version)
            return AgentSession(transport: transport, host: host, hello: hello, prefix: prefix)
        }
        // The agent of this version keeps the probe's channel for the requests that follow; the
        // preflight goes with the probe as its first request (unless another went ahead already).
        var ahead: StartedProbe
        if let started { ahead = started } else {
            ahead = StartedProbe(command: try await AgentProbe.start(transport, remoteHome: remoteHome, serve: serveArguments(version)), sentAhead: nil)
        }
        if ahead.sentAhead == nil, let preflight { ahead = try await ahead.sendingAhead(.preflight(request: preflight)) }
        let (probe, served) = try await AgentProbe.run(ahead.command, label: transport.label)
        if let found = probe.candidates.first(where: { $0.hello.map { $0.ferry == version && $0.protocolVersion == AgentProtocol.version } ?? false }),
           let hello = found.hello {
            let prefix = AgentProbe.prefix(binary: found.binary, home: probe.home, libraries: probe.hasLibraries)
            var answer: (verb: String, line: Data)?
            if let served, let verb = ahead.sentAhead, let line = try await served.nextLine() { answer = (verb, line) }
            return AgentSession(transport: transport, host: host, hello: hello, prefix: prefix, answered: answer, served: served)
        }
        await served?.end()
        guard let install else {
            let seen = probe.candidates.map { "\($0.binary): \($0.hello.map { "ferry \($0.ferry), protocol \($0.protocolVersion)" } ?? $0.failure)" }
            throw JobsError.noAgent(host: host, detail: seen.isEmpty ? "none in \(probe.home) or on PATH" : "found \(seen.joined(separator: "; "))")
        }
        return try await install.install(on: transport, host: host, home: probe.home, version: version)
    }

    static func callHello(_ transport: any Transport, host: String, prefix: String) async throws -> AgentHello {
        let command = try await transport.start(prefix + " " + AgentProtocol.helloVerb)
        try await command.closeInput()
        let (out, err, status) = try await command.collect()
        // 255: the channel closed without an exit status (dropbear under load can); the answer itself counts.
        guard status == 0 || status == 255, let hello = try? JSONCoding.decoder().decode(AgentHello.self, from: out) else {
            let text = String(decoding: err + out, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw JobsError.agentUnavailable(host: host, reason: "`ferry agent hello` failed (status \(status)): \(text.prefix(500))")
        }
        return hello
    }

    static func check(_ hello: AgentHello, host: String, version: String) throws {
        guard hello.ferry == version, hello.protocolVersion == AgentProtocol.version else {
            throw JobsError.agentUnavailable(host: host, reason: "its ferry is \(hello.ferry) (protocol \(hello.protocolVersion)); this one is \(version) (protocol \(AgentProtocol.version))")
        }
    }

    // MARK: - Requests

    static func requestLine(_ request: AgentRequest) throws -> Data {
        var line = try JSON.encode(request)
        line.append(0x0A)
        return line
    }

    /// Starts `request` on a channel of its own (or, for a stream that takes its channel, on the
    /// served one when it is free): its JSON line, then what the caller writes.
    func send(_ request: AgentRequest) async throws -> any RemoteCommand {
        let line = try AgentSession.requestLine(request)
        if request.takesTheChannel, let served, served.take(forGood: true) {
            do {
                try await served.command.write(line)
                return served.handOver()
            } catch {
                served.command.cancel()
                throw error
            }
        }
        let command = try await transport.start(prefix + " " + AgentProtocol.requestVerb)
        // An agent that ended before reading (a library the host's loader lacks) closes its input:
        // its output and status say why, so they are read instead of failing on the write.
        try? await command.write(line)
        return command
    }

    /// Sends `request`, decodes its JSON answer (or rethrows the host's error): on the served
    /// channel when it is free, else on a channel of its own.
    func call<T: Decodable>(_ request: AgentRequest, as type: T.Type = T.self) async throws -> T {
        if let served, served.take(forGood: false) {
            let line: Data?
            do {
                try await served.command.write(try AgentSession.requestLine(request))
                line = try await served.nextLine()
            } catch {
                served.drop()
                throw error
            }
            served.release()
            guard let line else { throw try await served.endedError(host: host, verb: request.name) }
            return try AgentSession.decodeServed(line, as: T.self, host: host, verb: request.name)
        }
        let command = try await send(request)
        try await command.closeInput()
        let (out, err, status) = try await command.collect()
        return try decodeReply(request.name, out: out, err: err, status: status)
    }

    /// A served answer: `=` and the value, or `!` and the host's error.
    static func decodeServed<T: Decodable>(_ line: Data, as type: T.Type, host: String, verb: String) throws -> T {
        let body = line.dropFirst()
        switch line.first {
        case UInt8(ascii: "="):
            if let value = try? JSONCoding.decoder().decode(T.self, from: body) { return value }
        case UInt8(ascii: "!"):
            if let reply = try? JSONCoding.decoder().decode(AgentErrorReply.self, from: body) {
                throw hostError(reply.error ?? .agentFailed(host: host, verb: verb, message: reply.message), host: host)
            }
        default: break
        }
        throw JobsError.protocolViolation(host: host, detail: "\(verb) answered \(String(decoding: line.prefix(200), as: UTF8.self).debugDescription)")
    }

    func decodeReply<T: Decodable>(_ verb: String, out: Data, err: Data, status: Int32) throws -> T {
        // 255: closed without an exit status (dropbear under load can lose it); a whole answer still counts.
        if status == 0 || status == 255, let value = try? JSONCoding.decoder().decode(T.self, from: out) { return value }
        if let reply = try? JSONCoding.decoder().decode(AgentErrorReply.self, from: out) {
            throw hostError(reply.error ?? .agentFailed(host: host, verb: verb, message: reply.message))
        }
        let text = String(decoding: err + out, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if status == 0 { throw JobsError.protocolViolation(host: host, detail: "\(verb) answered \(text.prefix(200).debugDescription)") }
        throw JobsError.agentFailed(host: host, verb: verb, message: "exit status \(status): \(text.prefix(1000))")
    }

    /// The host's error as this machine says it (the agent knows itself only as "agent").
    private func hostError(_ error: JobsError) -> JobsError { AgentSession.hostError(error, host: host) }

    private static func hostError(_ error: JobsError, host: String) -> JobsError {
        if case .agentFailed(_, let verb, let message) = error { return .agentFailed(host: host, verb: verb, message: message) }
        return error
    }

    /// The answer to `request` when the probe sent it ahead (`StartedProbe.sendingAhead`), once;
    /// nil when it did not, or the agent that answered the probe did not get it (another version,
    /// none there).
    func answerSentAhead<T: Decodable>(to request: AgentRequest, as type: T.Type) throws -> T? {
        guard let line = slots.take({ s -> Data? in
            guard let ahead = s.ahead, ahead.verb == request.name else { return nil }
            s.ahead = nil
            return ahead.line
        }) else { return nil }
        return try AgentSession.decodeServed(line, as: type, host: host, verb: request.name)
    }

    /// Whether the answer to a request the probe sent ahead (a launch's preflight) is still waiting here.
    var hasAnswerSentAhead: Bool { slots.take { $0.ahead != nil } }

    /// The host's checks: disk, GPUs, libraries, data paths, which files it lacks. The probe that
    /// found the agent may have answered it already (one command fewer per launch): then that answer.
    public func preflight(_ request: PreflightRequest) async throws -> PreflightReport {
        if let probed = (try? answerSentAhead(to: .preflight(request: request), as: PreflightReport.self)) ?? nil { return probed }
        return try await call(.preflight(request: request))
    }

    public func missingBlobs(_ hashes: [String]) async throws -> BlobsMissingReply {
        try await call(.blobsMissing(hashes: hashes))
    }

    /// Streams file contents to the host's blob store: `(sha256, local file, bytes the host already has)`.
    /// `progress` gets the bytes sent so far.
    public func putBlobs(_ blobs: [(hash: String, path: String, offset: Int64)],
                         progress: (@Sendable (Int64) -> Void)? = nil) async throws -> (stored: Int, bytes: Int64) {
        if let served, served.take(forGood: false) {
            // The frames, then `end`; the one answer comes after them (the agent reads while
            // stores, so the window paces the frames and nothing waits on the answer meanwhile).
            let sent: Int64
            let line: Data?
            do {
                try await served.command.write(try AgentSession.requestLine(.blobPut))
                sent = try await writeBlobs(blobs, to: served.command, progress: progress)
                try await served.command.write(Data((AgentProtocol.blobsEnd + "\n").utf8))
                line = try await served.nextLine()
            } catch {
                // The agent may have ended first (a full disk): its answer says why.
                let answer = error is CancellationError ? nil : try? await served.nextLine()
                served.drop()
                if let answer { _ = try AgentSession.decodeServed(answer, as: BlobPutReply.self, host: host, verb: AgentRequest.blobPut.name) }
                throw error
            }
            served.release()
            guard let line else { throw try await served.endedError(host: host, verb: AgentRequest.blobPut.name) }
            let reply = try AgentSession.decodeServed(line, as: BlobPutReply.self, host: host, verb: AgentRequest.blobPut.name)
            if let bad = reply.failed.first { throw JobsError.corruptBlob(hash: bad, actual: "a different content") }
            return (reply.stored, sent)
        }
        let command = try await send(.blobPut)
        // Read the answer while writing, so neither side waits on the other.
        let reader = Task { try await command.collect() }
        let sent: Int64
        do {
            sent = try await writeBlobs(blobs, to: command, progress: progress)
            try await command.closeInput()
        } catch {
            // The agent may have ended first (a full disk, a missing library): its answer says why.
            if !(error is CancellationError), let answer = try? await reader.value,
               let reply = try? JSONCoding.decoder().decode(AgentErrorReply.self, from: answer.stdout) {
                throw reply.error ?? .agentFailed(host: host, verb: AgentRequest.blobPut.name, message: reply.message)
            }
            command.cancel()
            reader.cancel()
            throw error
        }
        let (out, err, status) = try await reader.value
        let reply: BlobPutReply = try decodeReply(AgentRequest.blobPut.name, out: out, err: err, status: status)
        if let bad = reply.failed.first {
            throw JobsError.corruptBlob(hash: bad, actual: "a different content")
        }
        return (reply.stored, sent)
    }

    /// blob_put's frames (a header line, then the bytes from the offset the host has), in writes of
    /// about 1 MiB: many small blobs share one write (one trip through the SSH channel), a large
    /// one is cut into 1 MiB pieces. Returns the content bytes sent.
    private func writeBlobs(_ blobs: [(hash: String, path: String, offset: Int64)], to command: any RemoteCommand,
                            progress: (@Sendable (Int64) -> Void)?) async throws -> Int64 {
        var sent: Int64 = 0
        let frameBytes = 1 << 20
        var pending = Data(capacity: frameBytes + 4096)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: frameBytes, alignment: 16)
        defer { buffer.deallocate() }
        func flush() async throws {
            guard !pending.isEmpty else { return }
            try await command.write(pending)
            pending.removeAll(keepingCapacity: true)
            progress?(sent)
        }
        for blob in blobs {
            try Task.checkCancellation()
            let fd = open(blob.path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw JobsError.io(path: blob.path, reason: "cannot read it (\(SystemError.text(errno)))") }
            defer { Glibc.close(fd) }
            var st = stat()
            guard fstat(fd, &st) == 0 else { throw JobsError.io(path: blob.path, reason: SystemError.text(errno)) }
            let size = Int64(st.st_size)
            var position = min(blob.offset, size)
            pending.append(contentsOf: Array("\(blob.hash) \(size) \(position)\n".utf8))
            while position < size {
                let room = max(64 << 10, frameBytes - pending.count)
                let want = Int(min(Int64(room), size - position))
                let n = FileIO.read(fd, into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<want]), at: position)
                guard n > 0 else { throw JobsError.io(path: blob.path, reason: "it shrank while being sent; launch again") }
                pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                position += Int64(n)
                sent += Int64(n)
                if pending.count >= frameBytes { try await flush() }
            }
        }
        try await flush()
        return sent
    }

    /// Starts the job. With `follow`, its log streams on the same channel right after (for up to
    /// `follow` seconds), and this session's first `logs(id, offset: 0)` reads it: no further
    /// command before the first line.
    public func startJob(spec: JobSpec, manifest: Manifest, follow: Double? = nil) async throws -> JobInfo {
        let request = AgentRequest.jobStart(JobStartRequest(spec: spec, manifest: manifest, follow: follow.map { $0.rounded(.up) }))
        guard follow != nil else { return try await call(request) }
        let command = try await send(request)
        try await command.closeInput()
        let firstLine = Promise<Data>()
        let (rest, continuation) = AsyncThrowingStream<Data, any Error>.makeStream()
        let pump = Task {
            var buffer = Data()
            var split = false
            do {
                for try await chunk in command.output {
                    guard case .stdout(let data) = chunk else { continue }
                    if split { continuation.yield(data); continue }
                    // Only the new chunk is searched for the line's end.
                    if let i = data.firstIndex(of: 0x0A) {
                        let nl = buffer.count + (i - data.startIndex)
                        buffer.append(data)
                        split = true
                        firstLine.resolve(.success(buffer.prefix(nl)))
                        if nl + 1 < buffer.count { continuation.yield(Data(buffer[(nl + 1)...])) }
                    } else {
                        buffer.append(data)
                    }
                }
                if !split { firstLine.resolve(.success(buffer)) }
                continuation.finish()
            } catch {
                firstLine.resolve(.failure(error))
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in pump.cancel(); command.cancel() }
        let line = try await firstLine.value()
        do {
            let info: JobInfo = try decodeReply(request.name, out: line, err: Data(), status: 0)
            slots.take { $0.startedLog = (info.spec.id, rest) }
            return info
        } catch {
            command.cancel()
            throw error
        }
    }

    /// Starts a stopped job again in its folder, with the resume arguments its spec states.
    public func resumeJob(_ id: String) async throws -> JobInfo { try await call(.jobResume(id: id)) }

    public func status(_ id: String) async throws -> JobInfo { try await call(.jobStatus(id: id)) }

    public func list() async throws -> [JobInfo] { try await call(.jobList, as: JobList.self).jobs }

    public func cancel(_ id: String, grace: Int?) async throws -> JobInfo { try await call(.jobCancel(id: id, grace: grace)) }

    public func files(_ id: String, what: String) async throws -> FileListing { try await call(.jobFiles(id: id, what: what)) }

    /// A fetch's channel: the listing of `what` has arrived; `choose` then sends which files to stream.
    final class FetchChannel: @unchecked Sendable {
        let listing: FileListing
        let command: any RemoteCommand
        /// Output after the listing's line: what arrived with it, then the rest of the channel.
        let leftover: Data
        var output: AsyncThrowingStream<TransportOutput, any Error>.AsyncIterator
        init(listing: FileListing, command: any RemoteCommand, leftover: Data, output: AsyncThrowingStream<TransportOutput, any Error>.AsyncIterator) {
            self.listing = listing; self.command = command; self.leftover = leftover; self.output = output
        }
        /// Sends the files wanted (each from its offset); their frames follow on `output`.
        func choose(_ wants: [FileWant]) async throws {
            var line = try JSON.encode(FileWants(wants))
            line.append(0x0A)
            try await command.write(line)
            try await command.closeInput()
        }
    }

    /// Lists `what` and keeps the channel open for its files (`filesFetch`: one command per fetch).
    func openFetch(_ id: String, what: String) async throws -> FetchChannel {
        let request = AgentRequest.filesFetch(id: id, what: what)
        let command = try await send(request)
        var output = command.output.makeAsyncIterator()
        var buffer = Data()
        var errors = Data()
        do {
            // The listing of many files is one long line: only each new chunk is searched for its end.
            var newline: Int?
            while newline == nil {
                guard let chunk = try await output.next() else { break }
                switch chunk {
                case .stdout(let data):
                    if let i = data.firstIndex(of: 0x0A) { newline = buffer.count + (i - data.startIndex) }
                    buffer.append(data)
                case .stderr(let data): if errors.count < 4096 { errors.append(data) }
                }
            }
            let nl = newline ?? buffer.count
            let status: Int32 = newline == nil ? (try await command.exitStatus()) : 0
            let listing: FileListing = try decodeReply(request.name, out: buffer.prefix(nl), err: errors, status: status)
            let rest = nl < buffer.count ? Data(buffer[(nl + 1)...]) : Data()
            return FetchChannel(listing: listing, command: command, leftover: rest, output: output)
        } catch {
            command.cancel()
            throw error
        }
    }

    /// One bounded long-poll of the job's log from `offset`: frames go to `onFrame` as they arrive;
    /// returns the closing frame (`end` or `timeout`). Throws when the connection drops. At offset 0
    /// right after `startJob(follow:)`, it reads the log already streaming on the start's channel.
    public func logs(_ id: String, offset: Int64, wait: Double, onFrame: (LogFrame) throws -> Void) async throws -> LogFrame {
        if offset == 0, let started = slots.take({ s -> AsyncThrowingStream<Data, any Error>? in
            guard let started = s.startedLog, started.id == id else { return nil }
            s.startedLog = nil
            return started.stream
        }) {
            return try await frames(from: started, id: id, onFrame: onFrame)
        }
        let command = try await send(.jobLogs(id: id, offset: offset, wait: wait.rounded(.up)))
        try await command.closeInput()
        let stdout = command.output.compactMap { chunk -> Data? in
            if case .stdout(let d) = chunk { return d }
            return nil
        }
        do {
            let closing = try await frames(from: stdout, id: id, onFrame: onFrame)
            command.cancel()
            return closing
        } catch {
            command.cancel()
            throw error
        }
    }

    /// Reads log frames from a byte stream until the closing one (`end` or `timeout`).
    func frames<S: AsyncSequence>(from stream: S, id: String, onFrame: (LogFrame) throws -> Void) async throws -> LogFrame where S.Element == Data {
        var parser = LogFrameParser()
        do {
            for try await data in stream {
                parser.append(data)
                while let frame = try parser.next() {
                    switch frame {
                    case .data: try onFrame(frame)
                    case .end, .timeout, .more: return frame
                    case .error(let error): throw hostError(error)
                    }
                }
            }
        } catch let error as LogFrameError {
            throw JobsError.protocolViolation(host: host, detail: error.description)
        }
        throw JobsError.connectionLost(host: host, reason: "the log stream ended without its closing frame", attempts: 0)
    }

    public func close() async { await transport.close() }

    /// Runs `body`, then closes the connection (also when `body` throws), waiting for it to close.
    public func using<T: Sendable>(_ body: (AgentSession) async throws -> T) async throws -> T {
        do {
            let value = try await body(self)
            await close()
            return value
        } catch {
            await close()
            throw error
        }
    }
}

/// What the probe script found on a host: its FERRY_HOME and the ferry binaries there.
struct AgentProbe {
    struct Candidate {
        var binary: String
        var hello: AgentHello?
        var failure: String
    }
    var home: String
    var hasLibraries: Bool
    var candidates: [Candidate]

    /// A POSIX sh script (run through `sh -c`, whatever the login shell is): prints `home=`, then for
    /// `$HOME/bin/ferry` and a `ferry` on PATH: first, with `$2` (the client's version and
    /// protocol), `ferry agent serve $2`, which for that version answers `hello=`, `serving` and
    /// the requests that follow on this channel, ending the script; else (another version, 3; an
    /// older agent without `serve`, 1; one that cannot run, 126 or 127) the answer of `ferry agent hello`.
    static let script = #"""
    h="${1:-${FERRY_HOME:-$HOME/.ferry}}"
    case "$h" in /*) ;; *) h="$HOME/$h" ;; esac
    printf 'home=%s\n' "$h"
    libs=0; [ -d "$h/lib" ] && [ -n "$(ls -A "$h/lib" 2>/dev/null)" ] && libs=1
    printf 'libs=%s\n' "$libs"
    run() { if [ "$libs" = 1 ]; then LD_LIBRARY_PATH="$h/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$@"; else "$@"; fi; }
    for b in "$h/bin/ferry" "$(command -v ferry 2>/dev/null)"; do
      [ -n "$b" ] && [ -x "$b" ] || continue
      printf 'candidate=%s\n' "$b"
      if [ -n "$2" ]; then
        rc=0; run "$b" \#(AgentProtocol.subcommand) \#(AgentProtocol.homeFlag) "$h" \#(AgentProtocol.serveVerb) $2 || rc=$?
        case "$rc" in 1|2|\#(AgentProtocol.notServing)|126|127) ;; *) exit "$rc" ;; esac
      fi
      out=$(run "$b" \#(AgentProtocol.subcommand) \#(AgentProtocol.homeFlag) "$h" \#(AgentProtocol.helloVerb) 2>&1)
      printf '%s\n' "$out" | head -c 65536 | while IFS= read -r line; do printf 'out=%s\n' "$line"; done
    done
    printf 'end=1\n'
    # A request sent ahead that no agent read is taken anyway (some servers, dropbear, drop a
    # channel whose command left input unread, and a write to it then fails); the client ends its
    # input once it reads `end=1`.
    cat > /dev/null
    exit 0
    """#

    /// Starts the probe script; `serve` (`VERSION PROTOCOL`): an agent of that version keeps the channel.
    static func start(_ transport: any Transport, remoteHome: String?, serve: String) async throws -> any RemoteCommand {
        try await transport.start(ShellQuote.join(["sh", "-c", script, "sh", remoteHome ?? "", serve]))
    }

    /// Reads the probe's answer. When an agent serves the channel, the channel is returned, a
    /// request sent ahead answered next on it.
    static func run(_ command: any RemoteCommand, label: String) async throws -> (AgentProbe, ServedChannel?) {
        let channel = ServedChannel(command: command)
        var probe = AgentProbe(home: "", hasLibraries: false, candidates: [])
        var text = ""
        var ended = false
        do {
            while let raw = try await channel.nextLine() {
                let line = String(decoding: raw, as: UTF8.self)
                if text.utf8.count < 65536 { text += line + "\n" }
                let last = probe.candidates.count - 1
                if line == "serving", last >= 0, probe.candidates[last].hello != nil { return (probe, channel) }
                if line.hasPrefix("home=") { probe.home = String(line.dropFirst(5)) }
                else if line.hasPrefix("libs=") { probe.hasLibraries = line.dropFirst(5) == "1" }
                else if line.hasPrefix("candidate=") { probe.candidates.append(Candidate(binary: String(line.dropFirst(10)), hello: nil, failure: "")) }
                else if line == "end=1" { ended = true; try? await command.closeInput() }
                else if last >= 0 {
                    let body = line.hasPrefix("out=") ? String(line.dropFirst(4)) : line
                    let isHello = line.hasPrefix("hello=") || line.hasPrefix("out=")
                    let payload = line.hasPrefix("hello=") ? String(line.dropFirst(6)) : body
                    if isHello, probe.candidates[last].hello == nil, let hello = try? JSONCoding.decoder().decode(AgentHello.self, from: Data(payload.utf8)) {
                        probe.candidates[last].hello = hello
                    } else {
                        probe.candidates[last].failure += (probe.candidates[last].failure.isEmpty ? "" : "\n") + body
                    }
                }
            }
        } catch {
            command.cancel()
            throw error
        }
        try? await command.closeInput()
        let status = try await command.exitStatus()
        // The script's last line stands for its exit status, which some servers (dropbear under load) lose.
        guard status == 0 || (status == 255 && ended), probe.home.hasPrefix("/") else {
            let all = (String(decoding: channel.errors, as: UTF8.self) + text).trimmingCharacters(in: .whitespacesAndNewlines)
            throw JobsError.agentUnavailable(host: label, reason: "the host's shell did not run ferry's probe (status \(status)): \(all.prefix(400)) — ferry needs a POSIX sh on the host")
        }
        return (probe, nil)
    }

    /// How to run an agent binary: with the host's `lib/` first on the library path when ferry put
    /// libraries there (the static build also finds them by its rpath, $ORIGIN/../lib).
    static func prefix(binary: String, home: String, libraries: Bool) -> String {
        if libraries {
            let lib = (home as NSString).appendingPathComponent("lib")
            return ShellQuote.join(["sh", "-c", #"LD_LIBRARY_PATH="$0${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$@""#, lib, binary, AgentProtocol.subcommand, AgentProtocol.homeFlag, home])
        }
        return ShellQuote.join([binary, AgentProtocol.subcommand, AgentProtocol.homeFlag, home])
    }
}

/// An agent client's one-shot values: the probe's preflight, the log streaming on the start channel.
final class ClientSlots: @unchecked Sendable {
    private let lock = NSLock()
    /// The answer to the request the probe sent ahead, and that request's verb.
    var ahead: (verb: String, line: Data)?
    var startedLog: (id: String, stream: AsyncThrowingStream<Data, any Error>)?
    func take<T>(_ body: (ClientSlots) -> T) -> T { lock.lock(); defer { lock.unlock() }; return body(self) }
}

/// The probe's channel after `serving`: the agent there answers one request after another. One
/// request at a time (while it is busy, the next goes on a channel of its own); a stream takes it
/// for good.
final class ServedChannel: @unchecked Sendable {
    let command: any RemoteCommand
    private let lock = NSLock()
    private var busy = false
    private var gone = false
    private var output: AsyncThrowingStream<TransportOutput, any Error>.AsyncIterator
    private var buffer = Data()
    private var scanned = 0
    /// What the channel's stderr said (the first 8 kB), for messages.
    private(set) var errors = Data()

    init(command: any RemoteCommand) {
        self.command = command
        output = command.output.makeAsyncIterator()
    }

    /// Takes the channel for one request (`forGood`: a stream, which keeps it); false when it is busy or over.
    func take(forGood: Bool) -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard !busy, !gone else { return false }
        if forGood { gone = true } else { busy = true }
        return true
    }

    func release() { lock.lock(); busy = false; lock.unlock() }

    private func retire() { lock.lock(); gone = true; lock.unlock() }

    /// Gives the channel up (a request on it failed half-way): later requests get channels of their own.
    func drop() {
        lock.lock(); gone = true; busy = false; lock.unlock()
        command.cancel()
    }

    /// Ends the session: the agent reads the end of its input and exits.
    func end() async {
        retire()
        try? await command.closeInput()
    }

    /// The next line of stdout, without its newline; nil when the channel ended first. Only each
    /// new chunk is searched for the line's end.
    func nextLine() async throws -> Data? {
        while true {
            if let i = buffer[(buffer.startIndex + scanned)...].firstIndex(of: 0x0A) {
                let line = Data(buffer[buffer.startIndex..<i])
                buffer = Data(buffer[(i + 1)...])
                scanned = 0
                return line
            }
            scanned = buffer.count
            guard let chunk = try await nextChunk() else { return nil }
            switch chunk {
            case .stdout(let data): buffer.append(data)
            case .stderr(let data): if errors.count < 8192 { errors.append(data) }
            }
        }
    }

    fileprivate func nextChunk() async throws -> TransportOutput? { try await output.next() }

    /// What is buffered and not yet read (once, for a hand-over).
    fileprivate func takeBuffer() -> Data {
        defer { buffer = Data(); scanned = 0 }
        return buffer
    }

    /// The channel ended before answering: why, as far as its status and stderr say.
    func endedError(host: String, verb: String) async throws -> JobsError {
        let status = (try? await command.exitStatus()) ?? 255
        drop()
        let text = String(decoding: errors, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return .agentFailed(host: host, verb: verb, message: "the agent ended without an answer (status \(status))\(text.isEmpty ? "" : ": " + text.prefix(1000))")
    }

    /// The channel for one stream request, for good: what is buffered, then the rest of its output.
    func handOver() -> any RemoteCommand { HandedOverCommand(self) }
}

/// A served channel as the command of one stream request (logs, files, a followed start).
final class HandedOverCommand: RemoteCommand, @unchecked Sendable {
    let channel: ServedChannel
    let output: AsyncThrowingStream<TransportOutput, any Error>

    init(_ channel: ServedChannel) {
        self.channel = channel
        let (stream, continuation) = AsyncThrowingStream<TransportOutput, any Error>.makeStream()
        output = stream
        let pump = Task {
            do {
                let rest = channel.takeBuffer()
                if !rest.isEmpty { continuation.yield(.stdout(rest)) }
                while let chunk = try await channel.nextChunk() { continuation.yield(chunk) }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in pump.cancel() }
    }

    func write(_ data: Data) async throws { try await channel.command.write(data) }
    func closeInput() async throws { try await channel.command.closeInput() }
    func exitStatus() async throws -> Int32 { try await channel.command.exitStatus() }
    func cancel() { channel.command.cancel() }
}
