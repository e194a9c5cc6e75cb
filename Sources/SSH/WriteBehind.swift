import Crypto
import Foundation
import System
#if canImport(Glibc)
import Glibc
#endif

/// Writes (and hashes) a download's bytes on a thread of its own. The session thread was the
/// bottleneck of an SFTP download: libssh's reads and decryption, then the write and the SHA-256
/// of each chunk; now it only receives, into one of a few buffers, and hands each over in order.
final class WriteBehind: @unchecked Sendable {
    private let condition = NSCondition()
    private let fd: Int32
    private let path: String
    private let capacity: Int
    private var buffers: [UnsafeMutableRawPointer] = []
    private var free: [UnsafeMutableRawPointer] = []
    private var queued: [(UnsafeMutableRawPointer, Int)] = []
    private var hasher: SHA256?
    /// Where the file's bytes written by this thread begin, and up to where writing to disk was
    /// started (every `writebackEvery` bytes, when set), so that the download's fsync finds
    /// little left to wait for.
    private let offset: Int64
    private let writebackEvery: Int64?
    private var written: Int64 = 0
    private var writtenBack: Int64 = 0
    private var failure: SSHError?
    private var ending = false
    private var exited = false

    /// `hasher` (nil: no hash) takes every byte written, in order. With `writebackEvery`, the
    /// bytes written (from `offset` in the file) start going to disk each time that many arrived.
    init(fd: Int32, path: String, hasher: SHA256?, capacity: Int, count: Int = 8, offset: Int64 = 0, writebackEvery: Int64? = nil) {
        self.fd = fd; self.path = path; self.hasher = hasher; self.capacity = capacity
        self.offset = offset; self.writebackEvery = writebackEvery
        for _ in 0..<count {
            let p = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 64)
            buffers.append(p); free.append(p)
        }
        let thread = Thread { [self] in run() }
        thread.name = "ferry-write-behind"
        thread.start()
    }

    deinit { for p in buffers { p.deallocate() } }

    /// A free buffer of `capacity` bytes (waits for one); the writer's error, when it met one.
    func buffer() throws -> UnsafeMutableRawPointer {
        condition.lock(); defer { condition.unlock() }
        while free.isEmpty && failure == nil { condition.wait() }
        if let failure { throw failure }
        return free.removeLast()
    }

    /// Queues the first `count` bytes of `buffer` (from `buffer()`) to be written after those before.
    func submit(_ buffer: UnsafeMutableRawPointer, count: Int) {
        condition.lock(); defer { condition.unlock() }
        queued.append((buffer, count))
        condition.broadcast()
    }

    /// Gives back a buffer that was not filled.
    func giveBack(_ buffer: UnsafeMutableRawPointer) {
        condition.lock(); defer { condition.unlock() }
        free.append(buffer)
        condition.broadcast()
    }

    /// Waits until everything queued is written; the hasher that saw it all.
    func finish() throws -> SHA256? {
        try stop()
        return hasher
    }

    /// Stops the thread after what is queued; the writer's error, when it met one.
    func stop() throws {
        condition.lock(); defer { condition.unlock() }
        ending = true
        condition.broadcast()
        while !exited { condition.wait() }
        if let failure { throw failure }
    }

    private func run() {
        condition.lock()
        while true {
            while queued.isEmpty && !ending { condition.wait() }
            if queued.isEmpty { break }
            let (buffer, count) = queued.removeFirst()
            let failed = failure != nil
            condition.unlock()
            var problem: SSHError?
            if !failed {
                do {
                    let bytes = UnsafeRawBufferPointer(start: buffer, count: count)
                    try LocalFile.writeAll(fd, bytes, path: path)
                    hasher?.update(bufferPointer: bytes)
                    written += Int64(count)
                    if let every = writebackEvery, written - writtenBack >= every {
                        FileIO.startWriteback(fd, offset: offset + writtenBack, length: written - writtenBack)
                        writtenBack = written
                    }
                } catch {
                    problem = error
                }
            }
            condition.lock()
            if let problem, failure == nil { failure = problem }
            free.append(buffer)
            condition.broadcast()
        }
        exited = true
        condition.broadcast()
        condition.unlock()
    }
}
