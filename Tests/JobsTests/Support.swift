import FerryTestSupport
import Foundation
import System
@testable import Jobs
import JobsTestSupport

/// Collects bytes from a @Sendable callback.
final class ByteSink: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    func append(_ d: Data) { lock.lock(); data.append(d); lock.unlock() }
    var value: Data { lock.lock(); defer { lock.unlock() }; return data }
    var text: String { String(decoding: value, as: UTF8.self) }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func add(_ k: Int = 1) { lock.lock(); n += k; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return n }
}



/// Lets a callback cancel the task it runs under (set after the task is made).
final class TaskHandle: @unchecked Sendable {
    private let lock = NSLock()
    private var task: Task<[FetchedFile], any Error>?
    private var pending = false
    func set(_ t: Task<[FetchedFile], any Error>) {
        lock.lock(); task = t; let cancelNow = pending; lock.unlock()
        if cancelNow { t.cancel() }
    }
    func cancel() {
        lock.lock(); let t = task; if t == nil { pending = true }; lock.unlock()
        t?.cancel()
    }
}

