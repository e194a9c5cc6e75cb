import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Creates a fetch's new partial files ahead of its stream, on threads of its own, so the thread
/// that receives only writes. Creating a file is the costly step when many small files arrive:
/// ext4 without a journal walks past every inode freed in the last minutes to allocate one
/// (`recently_deleted`: 300 µs a file after a large delete), and one thread doing that left the
/// second core idle while the stream waited on it. (10,000 files after such a delete, on 2 cores:
/// 4.8–5.2 s made by the receiver, 3.4–3.8 s with 2 threads here, 3.2–3.9 s with 3.)
///
/// Creating in one folder takes that folder's lock, so each thread takes a run of files in one
/// folder (the listing keeps a folder's files together) and two threads work in two folders.
/// Runs start in the listing's order, each within `ahead` files of the one the receiver waits for.
/// Only new partials are made (`O_EXCL`); a path that is nil here (a resume, a copy the host
/// compares) or that exists already is left to the receiver. `stop()` removes every partial made
/// here that the receiver never took, so a failed fetch leaves no empty files behind.
final class PartialMaker: @unchecked Sendable {
    private enum Slot { case pending, made(Int32), none }

    private let paths: [String?]
    private let ahead: Int
    /// Consecutive files of one folder, at most `ahead` of them.
    private let runs: [Range<Int>]
    private let condition = NSCondition()
    private var slots: [Slot]
    /// The next run a thread will take.
    private var next = 0
    /// The index the receiver takes next: threads stay within `ahead` of it.
    private var wanted = 0
    private var stopped = false
    private var running: Int
    /// Takers waiting for a file; threads waiting for the window.
    private var awaiting = 0
    private var idle = 0

    /// `paths[i]`: the partial to create for the stream's file `i`, or nil for none.
    init(paths: [String?], threads: Int = 3, ahead: Int = PartialMaker.defaultAhead) {
        self.paths = paths
        self.ahead = max(1, ahead)
        var runs: [Range<Int>] = []
        var start = 0
        var folder: Substring?
        for (index, path) in paths.enumerated() {
            let here = path.map { $0[..<($0.lastIndex(of: "/") ?? $0.startIndex)] }
            if index > start && (here != folder || index - start >= self.ahead) {
                runs.append(start..<index)
                start = index
            }
            folder = here
        }
        if start < paths.count { runs.append(start..<paths.count) }
        self.runs = runs
        slots = Array(repeating: .pending, count: paths.count)
        running = paths.isEmpty ? 0 : max(1, threads)
        for _ in 0..<running {
            let thread = Thread { [self] in work() }
            thread.name = "ferry-partials"
            thread.start()
        }
    }

    /// 128 files, or fewer where the process may open few files: a run and the window are open
    /// at once, at most about twice this (a soft limit of 1024 is common).
    static var defaultAhead: Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < rlim_t(Int32.max) else { return 128 }
        return max(4, min(128, (Int(limit.rlim_cur) - 64) / 4))
    }

    private func work() {
        while true {
            condition.lock()
            while !stopped && next < runs.count && runs[next].lowerBound >= wanted + ahead {
                idle += 1
                condition.wait()
                idle -= 1
            }
            guard !stopped, next < runs.count else {
                running -= 1
                condition.broadcast()
                condition.unlock()
                return
            }
            let run = runs[next]
            next += 1
            condition.unlock()
            for index in run {
                var slot = Slot.none
                if let path = paths[index] {
                    let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
                    if fd >= 0 { slot = .made(fd) }
                }
                condition.lock()
                slots[index] = slot
                // Only when someone waits for a file: each made file waking every thread cost
                // more than making it.
                if awaiting > 0 { condition.broadcast() }
                let stop = stopped
                condition.unlock()
                if stop {
                    // The rest of the run stays pending: nothing of it was made.
                    break
                }
            }
        }
    }

    /// The new, empty partial made for file `index` (now the caller's to close), or nil when
    /// none was made: the caller opens it itself. Files are taken about in order (by the
    /// receiver, or by the threads that write small files): the window follows the furthest.
    func take(_ index: Int) -> Int32? {
        guard index >= 0, index < slots.count else { return nil }
        condition.lock()
        defer { condition.unlock() }
        if index > wanted {
            wanted = index
            if idle > 0 && next < runs.count && runs[next].lowerBound < wanted + ahead { condition.broadcast() }
        }
        awaiting += 1
        while !stopped, case .pending = slots[index] { condition.wait() }
        awaiting -= 1
        guard case .made(let fd) = slots[index] else { return nil }
        slots[index] = .none
        return fd
    }

    /// Stops making files, waits for the threads, and removes the partials nobody took.
    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        while running > 0 { condition.wait() }
        let left = slots
        slots = Array(repeating: .none, count: slots.count)
        condition.unlock()
        for (index, slot) in left.enumerated() {
            if case .made(let fd) = slot, let path = paths[index] {
                close(fd)
                unlink(path)
            }
        }
    }

    deinit { stop() }
}
