import CLibSSH
import Foundation
import Synchronization

/// Something the session thread services between jobs: a channel streaming output, a pump between a
/// channel and a socket, a listener taking forwarded connections. Handlers live on the loop thread.
protocol LoopHandler: AnyObject {
    /// Does what can be done now without waiting on the network; true when anything moved.
    func service() -> Bool
    /// True once the handler is done (its channel freed) and can be dropped.
    var isFinished: Bool { get }
    /// Local descriptors whose readiness should wake the loop for this handler.
    func pollInterest() -> [(fd: Int32, events: Int16)]
    /// What poll() saw on one of those descriptors.
    func pollResult(fd: Int32, revents: Int16)
    /// The session is going away: free the channel now, fail whoever waits with `error`.
    func shutdown(_ error: SSHError)
}

extension LoopHandler {
    func pollInterest() -> [(fd: Int32, events: Int16)] { [] }
    func pollResult(fd: Int32, revents: Int16) {}
}

/// One libssh session and the thread it is confined to. libssh is not thread-safe per session, so
/// every libssh call for this session runs on `thread`: public methods enqueue jobs and await them.
/// Between jobs the thread services handlers and sleeps in poll() on the session socket, a wake pipe
/// and the handlers' local descriptors, sending keepalives when the server has been quiet.
///
/// `@unchecked Sendable`: the job queue is behind a Mutex and the wake pipe is written atomically;
/// every other member (the libssh handles, handlers, keepalive clocks) is touched only on the loop
/// thread, by jobs and handler turns (`assertOnLoop`). Facades hold the core, never its handles.
final class SessionCore: @unchecked Sendable {
    struct Queue {
        var jobs: [@Sendable () -> Void] = []
        var closed = false
    }

    /// For error messages: `user@host:port`.
    let label: String
    private let queue = Mutex(Queue())
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let stats = Mutex((keepalivesSent: 0, alive: true))
    /// Resolved once the teardown job has run.
    let closed = Promise<Void>()

    // Loop-confined state.
    private(set) var session: ssh_session?
    private var handlers: [LoopHandler] = []
    private var event: ssh_event?
    /// The libssh event the loop polls the session through (jobs may wait on it too).
    var sessionEvent: ssh_event? { event }
    private var loopThread = pthread_self()
    private var running = false
    /// Set by libssh callbacks when a channel got data, EOF or close: the loop must not sleep.
    var dirty = false
    /// Set when a message from the server was processed outside poll()'s sight (inside a handler's
    /// libssh call): it counts as hearing from the server. Loop only.
    private var heard = false

    /// A callback saw a message from the server. Loop only.
    func heardFromServer() {
        dirty = true
        heard = true
    }
    private(set) var deadError: SSHError?
    private var connected = false
    /// A descriptor libssh talks over that we must close ourselves (SSH_OPTIONS_FD is never closed by libssh).
    var ownedFD: Int32 = -1
    /// Run after disconnecting: reap a ProxyCommand, release a jump session.
    var onClose: [() -> Void] = []
    var keepaliveInterval = 0
    var keepaliveCountMax = 3
    private var lastHeard = SessionCore.now()
    private var lastKeepalive = SessionCore.now()
    private var missedKeepalives = 0

    init(label: String) throws {
        self.label = label
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            throw SSHError.connectionFailed(host: label, port: 0, reason: "cannot create a pipe: \(String(cString: strerror(errno)))")
        }
        wakeRead = fds[0]; wakeWrite = fds[1]
        for fd in fds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        _ = SessionCore.libraryInitialized
        let thread = Thread { [self] in self.run() }
        thread.name = "ferry-ssh \(label)"
        thread.start()
    }

    static let libraryInitialized: Bool = { ssh_init() == 0 }()

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    // MARK: - Jobs

    /// Queues `job` for the loop thread; false when the session is closed.
    @discardableResult
    func execute(_ job: @escaping @Sendable () -> Void) -> Bool {
        let accepted = queue.withLock { q -> Bool in
            if q.closed { return false }
            q.jobs.append(job)
            return true
        }
        if accepted { wake() }
        return accepted
    }

    /// Runs `body` on the loop thread and returns its result.
    func submit<T: Sendable>(_ body: @escaping @Sendable (SessionCore) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let accepted = execute { [self] in
                if let dead = self.deadError {
                    continuation.resume(throwing: dead)
                    return
                }
                continuation.resume(with: Result { try body(self) })
            }
            if !accepted { continuation.resume(throwing: SSHError.disconnected(host: label, reason: "the session was closed")) }
        }
    }

    /// Wakes the loop from any thread (a consumer made room, a job arrived).
    func wake() {
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
    }

    var isOnLoop: Bool { running && pthread_equal(pthread_self(), loopThread) != 0 }

    func assertOnLoop() { assert(isOnLoop, "libssh used off its session thread") }

    var keepalivesSent: Int { stats.withLock { $0.keepalivesSent } }
    var isAlive: Bool { stats.withLock { $0.alive } }

    // MARK: - Handlers

    func add(_ handler: LoopHandler) {
        assertOnLoop()
        handlers.append(handler)
        dirty = true
    }

    /// Services handlers from inside a long job (a transfer), so other channels keep flowing.
    func serviceHandlersFromJob() {
        assertOnLoop()
        var i = 0
        while i < handlers.count { _ = handlers[i].service(); i += 1 }
        handlers.removeAll { $0.isFinished }
        lastHeard = SessionCore.now()
    }

    // MARK: - The loop

    private func run() {
        loopThread = pthread_self()
        running = true
        while true {
            let (jobs, closed) = queue.withLock { q -> ([@Sendable () -> Void], Bool) in
                let j = q.jobs
                q.jobs.removeAll()
                return (j, q.closed)
            }
            drainWakePipe()
            for job in jobs { job() }
            if !jobs.isEmpty { lastHeard = max(lastHeard, SessionCore.now() - 0.001) }
            if closed && queue.withLock({ $0.jobs.isEmpty }) { break }
            turn()
        }
        running = false
        Glibc.close(wakeRead)
        Glibc.close(wakeWrite)
    }

    private func drainWakePipe() {
        var buffer = [UInt8](repeating: 0, count: 64)
        while read(wakeRead, &buffer, buffer.count) > 0 {}
    }

    private func turn() {
        dirty = false
        var progressed = false
        var i = 0
        while i < handlers.count {
            if handlers[i].service() { progressed = true }
            i += 1
        }
        handlers.removeAll { $0.isFinished }
        checkAlive()
        // Only what the server sent counts as hearing from it: a handler that is still sending
        // (into a link that died) makes progress too, and must not hold the keepalives back.
        if heard {
            heard = false
            lastHeard = SessionCore.now()
            missedKeepalives = 0
        }
        if progressed || dirty || queue.withLock({ !$0.jobs.isEmpty }) { return }
        waitForEvents()
    }

    private func waitForEvents() {
        var fds = [pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
        var owners: [LoopHandler?] = [nil]
        var sessionIndex = -1
        if connected, deadError == nil, let session {
            let fd = ssh_get_fd(session)
            if fd >= 0 {
                sessionIndex = fds.count
                fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0))
                owners.append(nil)
            }
        }
        for h in handlers {
            for interest in h.pollInterest() {
                fds.append(pollfd(fd: interest.fd, events: interest.events, revents: 0))
                owners.append(h)
            }
        }
        var timeout: Int32 = 1000
        if keepaliveInterval > 0 && connected {
            let due = max(lastHeard, lastKeepalive) + Double(keepaliveInterval)
            timeout = Int32(max(0, min(1000, (due - SessionCore.now()) * 1000 + 1)))
        }
        let n = poll(&fds, nfds_t(fds.count), timeout)
        if n > 0 {
            for (index, p) in fds.enumerated() where p.revents != 0 {
                if let h = owners[index] { h.pollResult(fd: p.fd, revents: p.revents) }
            }
            if sessionIndex >= 0 && fds[sessionIndex].revents != 0, let event {
                lastHeard = SessionCore.now()
                missedKeepalives = 0
                _ = ssh_event_dopoll(event, 0)
            }
        }
        keepaliveTick()
        checkAlive()
    }

    private func keepaliveTick() {
        guard keepaliveInterval > 0, connected, deadError == nil, let session else { return }
        let now = SessionCore.now()
        let interval = Double(keepaliveInterval)
        guard now - lastHeard >= interval, now - lastKeepalive >= interval else { return }
        if missedKeepalives >= keepaliveCountMax {
            die(.disconnected(host: label, reason: "no answer to \(keepaliveCountMax) keepalives sent \(keepaliveInterval) s apart (ServerAliveInterval)"))
            return
        }
        // ssh_send_keepalive is a blocking global request that waits for the server's answer and
        // consumes it, so poll() never sees it: a prompt return on a live session *is* the answer.
        // The wait is bounded by one interval (not the 120 s blocking timeout), so a dead link
        // stalls the loop no longer than that per keepalive.
        _ = ferry_ssh_set_long(session, SSH_OPTIONS_TIMEOUT, max(1, keepaliveInterval))
        _ = ssh_send_keepalive(session)
        _ = ferry_ssh_set_long(session, SSH_OPTIONS_TIMEOUT, blockingTimeout)
        let answered = SessionCore.now() - now < Double(max(1, keepaliveInterval)) - 0.05 && ssh_is_connected(session) != 0
        lastKeepalive = now
        stats.withLock { $0.keepalivesSent += 1 }
        if answered {
            missedKeepalives = 0
            lastHeard = SessionCore.now()
        } else {
            missedKeepalives += 1
        }
    }

    /// The timeout of blocking libssh calls after the handshake (SFTP replies, window waits).
    private var blockingTimeout = 120

    private func checkAlive() {
        guard connected, deadError == nil, let session else { return }
        if ssh_is_connected(session) == 0 {
            let message = ssh_get_disconnect_message(session).map { String(cString: $0) }
            die(.disconnected(host: label, reason: message ?? lastError))
        }
    }

    /// The connection is gone: every handler fails with `error`, later jobs too.
    private func die(_ error: SSHError) {
        deadError = error
        stats.withLock { $0.alive = false }
        let current = handlers
        handlers.removeAll()
        for h in current { h.shutdown(error) }
    }

    var lastError: String {
        guard let session else { return "no session" }
        return String(cString: ssh_get_error(UnsafeMutableRawPointer(session)))
    }

    /// Throws `.disconnected` when the connection is gone, else a channel error with libssh's message.
    func channelError(_ operation: String) -> SSHError {
        if let deadError { return deadError }
        if let session, connected, ssh_is_connected(session) == 0 {
            die(.disconnected(host: label, reason: lastError))
            return deadError ?? .disconnected(host: label, reason: lastError)
        }
        return .channelFailed(host: label, operation: operation, reason: lastError)
    }

    // MARK: - Connecting

    /// Creates the libssh session, connects (over `fd` when a proxy or jump carries it), checks the
    /// host key and authenticates. Runs on the loop.
    func connect(_ p: ConnectParameters) throws -> (fingerprint: String, authMethod: String) {
        assertOnLoop()
        guard let s = ssh_new() else { throw SSHError.connectionFailed(host: p.hostName, port: p.port, reason: "ssh_new failed") }
        session = s
        _ = ferry_ssh_set_string(s, SSH_OPTIONS_HOST, p.hostName)
        _ = ferry_ssh_set_uint(s, SSH_OPTIONS_PORT, UInt32(p.port))
        _ = ferry_ssh_set_string(s, SSH_OPTIONS_USER, p.user)
        _ = ferry_ssh_set_long(s, SSH_OPTIONS_TIMEOUT, p.connectTimeout)
        // Without TCP_NODELAY, SFTP writes crawl (Nagle + delayed ACK).
        _ = ferry_ssh_set_int(s, SSH_OPTIONS_NODELAY, 1)
        // ferry reads ~/.ssh/config itself (~ is $HOME); libssh would read the passwd home and may spawn ProxyCommands.
        _ = ferry_ssh_set_int(s, SSH_OPTIONS_PROCESS_CONFIG, 0)
        _ = ferry_ssh_set_string(s, SSH_OPTIONS_SSH_DIR, p.environment.sshDirectory)
        // libssh checks two files: one of the user's/global known_hosts, and ferry's own (its "global"
        // slot). HostKeyVerifier asks again for each further file.
        _ = ferry_ssh_set_string(s, SSH_OPTIONS_KNOWNHOSTS, p.existingKnownHostsFiles[0])
        _ = ferry_ssh_set_string(s, SSH_OPTIONS_GLOBAL_KNOWNHOSTS, p.environment.ferryKnownHosts)
        _ = ferry_ssh_set_int(s, SSH_OPTIONS_STRICTHOSTKEYCHECK, 1)
        _ = ferry_ssh_set_string(s, SSH_OPTIONS_COMPRESSION, "no")
        _ = ferry_ssh_set_string(s, SSH_OPTIONS_CIPHERS_C_S, p.ciphers)
        _ = ferry_ssh_set_string(s, SSH_OPTIONS_CIPHERS_S_C, p.ciphers)
        if let level = ProcessInfo.processInfo.environment["FERRY_SSH_DEBUG"], let n = Int32(level) {
            _ = ferry_ssh_set_int(s, SSH_OPTIONS_LOG_VERBOSITY, n)
        }
        if p.fd >= 0 {
            ownedFD = p.fd
            _ = ferry_ssh_set_fd(s, p.fd)
        }
        keepaliveInterval = p.keepaliveInterval
        keepaliveCountMax = max(1, p.keepaliveCountMax)
        if ssh_connect(s) != SSH_OK {
            let reason = lastError
            if reason.localizedCaseInsensitiveContains("timeout") || reason.localizedCaseInsensitiveContains("timed out") {
                throw SSHError.connectTimedOut(host: p.hostName, port: p.port, seconds: p.connectTimeout)
            }
            throw SSHError.connectionFailed(host: p.hostName, port: p.port, reason: reason)
        }
        connected = true
        let fingerprint = try HostKeyVerifier.verify(session: s, p, lastError: { [self] in lastError })
        let method = try Authenticator(session: s, parameters: p).authenticate()
        // Blocking calls after the handshake (SFTP replies, window waits) may take longer than a connect.
        blockingTimeout = max(p.connectTimeout, 120)
        _ = ferry_ssh_set_long(s, SSH_OPTIONS_TIMEOUT, blockingTimeout)
        event = ssh_event_new()
        if let event { _ = ssh_event_add_session(event, s) }
        lastHeard = SessionCore.now()
        return (fingerprint, method)
    }

    /// Runs a channel open (`open`, libssh's call) without blocking, acknowledging what arrives at
    /// once. Right after auth, sshd sends a message nobody answers (hostkeys-00@openssh.com) just
    /// before its reply to the first channel open; our kernel delays the ACK of the first (we had
    /// just sent, so it expects to answer), and sshd's Nagle holds the reply until that ACK comes:
    /// 40 ms on every command. TCP_QUICKACK, set after our request went out, ends that wait.
    func openWithoutDelayedACK(_ session: ssh_session, _ open: () -> Int32) -> Int32 {
        ssh_set_blocking(session, 0)
        defer { ssh_set_blocking(session, 1) }
        let fd = ssh_get_fd(session)
        let deadline = SessionCore.now() + Double(blockingTimeout)
        var rc = open()
        while rc == SSH_AGAIN {
            var one: Int32 = 1
            _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_QUICKACK, &one, socklen_t(MemoryLayout<Int32>.size))
            guard ssh_is_connected(session) != 0, SessionCore.now() < deadline else { return SSH_ERROR }
            var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&ready, 1, 50)
            rc = open()
        }
        return rc
    }

    // MARK: - Closing

    /// Frees every channel, disconnects and ends the thread. Safe to call more than once, from anywhere.
    func close(reason: String = "the session was closed") {
        let accepted = queue.withLock { q -> Bool in
            if q.closed { return false }
            q.jobs.append { [self] in self.teardown(reason: reason) }
            q.closed = true
            return true
        }
        if accepted { wake() }
    }

    private func teardown(reason: String) {
        let error = deadError ?? .disconnected(host: label, reason: reason)
        deadError = error
        stats.withLock { $0.alive = false }
        let current = handlers
        handlers.removeAll()
        for h in current { h.shutdown(error) }
        for action in closers { action() }
        closers.removeAll()
        if let session {
            if let event { _ = ssh_event_remove_session(event, session); ssh_event_free(event) }
            event = nil
            // Always disconnect first: it forgets a descriptor given with SSH_OPTIONS_FD, which
            // ssh_free would otherwise close behind our back (we close `ownedFD` ourselves).
            ssh_disconnect(session)
            ssh_free(session)
        }
        session = nil
        connected = false
        if ownedFD >= 0 { Glibc.close(ownedFD); ownedFD = -1 }
        for action in onClose { action() }
        onClose.removeAll()
        closed.resolve(.success(()))
    }

    /// `close` and wait until the connection is gone.
    func closeAndWait(reason: String = "the session was closed") async {
        close(reason: reason)
        _ = try? await closed.value()
    }

    /// Loop-side resources freed before the disconnect (SFTP sessions): they hold channels.
    var closers: [() -> Void] = []

    private var acceptor: ForwardAcceptor?
    /// The router of reverse-forwarded connections, created on first use. Loop only.
    var forwardAcceptor: ForwardAcceptor {
        if let acceptor { return acceptor }
        let created = ForwardAcceptor(core: self)
        acceptor = created
        add(created)
        return created
    }
}

/// Everything the loop needs to connect one hop; resolved from the config by `SSHSession`.
struct ConnectParameters: Sendable {
    var displayTarget: String
    var hostName: String
    var port: Int
    var user: String
    var identityFiles: [String]
    var identityFilesAreExplicit: Bool
    var environment: SSHEnvironment
    /// The user's and the global known_hosts files, read in this order (ferry's own is always read too).
    var knownHostsFiles: [String]
    /// `HostKeyAlias`: keys are looked up and recorded under this name.
    var hostKeyAlias: String?
    /// `IdentitiesOnly`: ssh-agent's keys are not offered.
    var identitiesOnly: Bool
    var hostKeyPolicy: HostKeyPolicy
    var connectTimeout: Int
    var keepaliveInterval: Int
    var keepaliveCountMax: Int
    var ciphers: String
    var useAgent: Bool
    var interactive: Bool
    var fd: Int32

    var knownHostsName: String { hostKeyAlias ?? (port == 22 ? hostName : "[\(hostName)]:\(port)") }

    /// The known_hosts files that exist, in order; one (missing) path when none does, so that
    /// libssh still reads ferry's own file in its second slot.
    var existingKnownHostsFiles: [String] {
        let existing = knownHostsFiles.filter { FileManager.default.isReadableFile(atPath: $0) }
        return existing.isEmpty ? [knownHostsFiles.first ?? environment.userKnownHosts] : existing
    }
}

#if canImport(Glibc)
import Glibc
#endif
