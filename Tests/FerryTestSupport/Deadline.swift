import Foundation
import Synchronization

/// A test body that did not finish in time.
public struct Deadline: Error, CustomStringConvertible {
    public var seconds: Double
    public var description: String { "still running after \(seconds) s" }
}

/// Runs `body`, throwing `Deadline` after `seconds` even when `body` ignores cancellation (a
/// blocking call on a session thread): unlike a task group, which waits for every child before it
/// returns, this leaves a stuck body behind (cancelled) so the test fails instead of hanging.
public func withDeadline<T: Sendable>(_ seconds: Double, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    let race = DeadlineRace()
    return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
        let work = Task {
            do {
                let value = try await body()
                if race.claim() { continuation.resume(returning: value) }
            } catch {
                if race.claim() { continuation.resume(throwing: error) }
            }
        }
        Task {
            try? await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
            if race.claim() {
                work.cancel()
                continuation.resume(throwing: Deadline(seconds: seconds))
            }
        }
    }
}

/// Who finished first: the body or the clock.
private final class DeadlineRace: Sendable {
    private let settled = Mutex(false)
    func claim() -> Bool { settled.withLock { done in defer { done = true }; return !done } }
}
