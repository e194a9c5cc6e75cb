import Synchronization

/// The pinned staging buffer of one device: host→device uploads (a training batch) are copied into
/// it and sent by `copyToDeviceAsync`, so the call returns while the device copies and the caller's
/// pageable buffer is free at once. One buffer, reused: before it is overwritten the stream is
/// synchronised, which waits for the previous upload that reads it.
final class CUDAStaging: @unchecked Sendable {
    /// The buffer grows to the largest upload up to this size; larger uploads go in pieces.
    static let maxBytes = 64 << 20
    let driver: any CUDADriver
    let device: Int
    private struct State {
        var address: UInt = 0     // the pinned buffer; 0 when none
        var buffer: UnsafeMutableRawPointer? { UnsafeMutableRawPointer(bitPattern: address) }
        var capacity = 0
        /// An upload from the buffer may still be running.
        var pending = false
        var uploads = 0
    }
    private let state = Mutex(State())

    init(driver: any CUDADriver, device: Int) { self.driver = driver; self.device = device }

    /// Copies `byteCount` bytes from host memory to `dst` through the pinned buffer (or directly
    /// when no pinned memory can be had).
    func upload(_ dst: CUDADevicePointer, from src: UnsafeRawPointer, byteCount: Int) {
        if byteCount == 0 { return }
        state.withLock { s in
            let want = Swift.min(byteCount, Self.maxBytes)
            if s.capacity < want {
                if s.pending { driver.synchronize(device: device); s.pending = false }
                if let old = s.buffer { driver.freePinned(device: device, old) }
                let size = Swift.min(Swift.max(want, 1 << 20), Self.maxBytes)
                let fresh = driver.allocatePinned(device: device, byteCount: size)
                s.address = fresh.map { UInt(bitPattern: $0) } ?? 0
                s.capacity = fresh == nil ? 0 : size
            }
            guard let pinned = s.buffer else {
                driver.copyToDevice(device: device, dst, from: src, byteCount: byteCount)
                return
            }
            var done = 0
            while done < byteCount {
                let n = Swift.min(s.capacity, byteCount - done)
                if s.pending { driver.synchronize(device: device) }
                pinned.copyMemory(from: src + done, byteCount: n)
                driver.copyToDeviceAsync(device: device, dst + CUDADevicePointer(done), from: pinned, byteCount: n)
                s.pending = true
                done += n
            }
            s.uploads += 1
        }
    }

    /// Uploads that went through the pinned buffer.
    var uploads: Int { state.withLock { $0.uploads } }
}
