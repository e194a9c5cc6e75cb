import Foundation
import System
import Synchronization

/// A loop-confined object carried through a Sendable facade. `@unchecked Sendable` is safe because the
/// value's mutable state is only touched inside jobs that run on its session's thread
/// (`SessionCore.submit`); off the loop, facades read only its immutable, Sendable `let`s (a queue, a promise).
struct LoopBound<Value: AnyObject>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// The one-shot result of a channel or session (System's, shared with the runner).
typealias Promise<Value: Sendable> = System.Promise<Value>

/// A bounded queue between a session thread (producer) and one consuming task. When it holds more
/// than `limit` bytes the producer stops reading its channel, so the SSH window pushes back on the
/// server instead of memory growing without bound.
final class ChunkQueue<Element: Sendable>: Sendable {
    private struct State {
        var items: [Element] = []
        var head = 0
        var bytes = 0
        var finished = false
        var failure: (any Error)?
        var cancelled = false
        var waiter: CheckedContinuation<Element?, any Error>?
    }
    private let state = Mutex(State())
    private let limit: Int
    private let size: @Sendable (Element) -> Int
    /// Called when the consumer took a chunk out of a full queue (wakes the session loop).
    private let onDrain: @Sendable () -> Void
    /// Called when the consuming task is cancelled while waiting (closes the channel).
    private let onCancel: @Sendable () -> Void

    init(limit: Int, size: @escaping @Sendable (Element) -> Int, onDrain: @escaping @Sendable () -> Void,
         onCancel: @escaping @Sendable () -> Void) {
        self.limit = limit; self.size = size; self.onDrain = onDrain; self.onCancel = onCancel
    }

    var hasRoom: Bool { state.withLock { $0.bytes < limit } }

    func push(_ element: Element) {
        let waiter = state.withLock { s -> CheckedContinuation<Element?, any Error>? in
            if s.finished { return nil }
            if let w = s.waiter { s.waiter = nil; return w }
            s.items.append(element)
            s.bytes += size(element)
            return nil
        }
        waiter?.resume(returning: element)
    }

    func finish(_ failure: (any Error)? = nil) {
        let waiter = state.withLock { s -> CheckedContinuation<Element?, any Error>? in
            if s.finished { return nil }
            s.finished = true
            s.failure = failure
            let w = s.waiter
            s.waiter = nil
            return w
        }
        if let waiter {
            if let failure { waiter.resume(throwing: failure) } else { waiter.resume(returning: nil) }
        }
    }

    private enum NextAction { case value(Element, Bool), end((any Error)?), cancelled, wait }

    func next() async throws -> Element? {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Element?, any Error>) in
                let action = state.withLock { s -> NextAction in
                    if s.head < s.items.count {
                        let e = s.items[s.head]
                        s.head += 1
                        let wasFull = s.bytes >= limit
                        s.bytes -= size(e)
                        if s.head >= 64 && s.head * 2 >= s.items.count { s.items.removeFirst(s.head); s.head = 0 }
                        return .value(e, wasFull)
                    }
                    if s.finished { return .end(s.failure) }
                    if s.cancelled { return .cancelled }
                    s.waiter = c
                    return .wait
                }
                switch action {
                case .value(let e, let wasFull):
                    if wasFull { onDrain() }
                    c.resume(returning: e)
                case .end(let failure):
                    if let failure { c.resume(throwing: failure) } else { c.resume(returning: nil) }
                case .cancelled:
                    c.resume(throwing: CancellationError())
                case .wait:
                    break
                }
            }
        } onCancel: {
            let waiter = state.withLock { s -> CheckedContinuation<Element?, any Error>? in
                s.cancelled = true
                let w = s.waiter
                s.waiter = nil
                return w
            }
            waiter?.resume(throwing: CancellationError())
            onCancel()
        }
    }
}
