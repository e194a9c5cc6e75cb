import Synchronization

/// A wait that ran out of time.
public struct DeadlineExceeded: Error, CustomStringConvertible, Sendable {
    public var seconds: Double
    public init(seconds: Double) { self.seconds = seconds }
    public var description: String { "no answer within \(seconds.rounded() == seconds ? String(Int(seconds)) : String(seconds)) s" }
}

/// Runs `body`, giving up after `seconds` (`DeadlineExceeded`) or when the caller is cancelled: then
/// the caller goes on at once, and `body` is cancelled and left behind. A task group would wait for
/// it, so a call blocked in a connection that ignores cancellation (a frozen peer) would hold the
/// caller for as long as the peer stays frozen.
public func withDeadline<T: Sendable>(seconds: Double, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    let result = Promise<T>()
    let work = Task {
        do { result.resolve(.success(try await body())) } catch { result.resolve(.failure(error)) }
    }
    let timer = Task {
        try? await Task.sleep(nanoseconds: UInt64(max(0, seconds) * 1e9))
        result.resolve(.failure(DeadlineExceeded(seconds: seconds)))
    }
    defer {
        timer.cancel()
        work.cancel()
    }
    return try await withTaskCancellationHandler {
        try await result.value()
    } onCancel: {
        result.resolve(.failure(CancellationError()))
    }
}

/// A one-shot result many tasks may await: set once (later ones are ignored).
public final class Promise<Value: Sendable>: Sendable {
    private let state = Mutex<(result: Result<Value, any Error>?, waiters: [CheckedContinuation<Value, any Error>])>((nil, []))

    public init() {}

    public func resolve(_ value: Result<Value, any Error>) {
        let waiters = state.withLock { s -> [CheckedContinuation<Value, any Error>] in
            guard s.result == nil else { return [] }
            s.result = value
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume(with: value) }
    }

    public var isResolved: Bool { state.withLock { $0.result != nil } }

    /// The result once set; nil before.
    public var current: Result<Value, any Error>? { state.withLock { $0.result } }

    public func value() async throws -> Value {
        try await withCheckedThrowingContinuation { c in
            let ready = state.withLock { s -> Result<Value, any Error>? in
                if let result = s.result { return result }
                s.waiters.append(c)
                return nil
            }
            if let ready { c.resume(with: ready) }
        }
    }
}
