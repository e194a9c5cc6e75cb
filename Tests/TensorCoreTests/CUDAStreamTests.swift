import Foundation
import Testing
@testable import TensorCore

/// One stream per device and pinned staging: uploads are queued from the context's pinned buffer,
/// and the mock holds each queued upload until the next operation on the stream, checking that
/// its source was pinned and left alone until then.
@Suite struct CUDAStreamTests {
    /// `to(.cuda)` goes through the pinned buffer asynchronously; back-to-back uploads that reuse the
    /// buffer each arrive intact, and one larger than the buffer goes in pieces.
    @Test func uploadsGoThroughThePinnedStagingBuffer() {
        let mock = MockCUDADriver(devices: 1, memoryBytes: 512 << 20)
        withCUDADriver(mock) {
            let a = Tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), b = Tensor([7, 8, 9])
            let before = mock.asyncCopyCount
            let ga = a.cuda(), gb = b.cuda()
            #expect(mock.asyncCopyCount - before == 2)
            #expect(ga.cpu().scalars(as: Float.self) == [1, 2, 3, 4, 5, 6])
            #expect(gb.cpu().scalars(as: Int64.self) == [7, 8, 9])
            #expect((ga.sum() + gb.to(.float32).sum()).item() == 45)
            // 72 MB of int64: more than the 64 MiB buffer, so two asynchronous pieces.
            let n = 9_000_000
            let big = Tensor.arange(n)
            let pieces = mock.asyncCopyCount
            let gbig = big.cuda()
            #expect(mock.asyncCopyCount - pieces == (n * 8 + CUDAStaging.maxBytes - 1) / CUDAStaging.maxBytes)
            let back = gbig.cpu().scalars(as: Int64.self)
            #expect(back.count == n && back[0] == 0 && back[n / 2] == Int64(n / 2) && back[n - 1] == Int64(n - 1))
            #expect(gbig.sum().item() == Double(n) * Double(n - 1) / 2)
        }
    }

    /// The mock's ordering rules: a queued upload runs before later work on the stream; rewriting its
    /// source after synchronize is fine.
    @Test func queuedUploadsRunInStreamOrder() {
        let mock = MockCUDADriver(devices: 1, memoryBytes: 1 << 20)
        let dst = mock.allocate(device: 0, byteCount: 64)!
        let pinned = mock.allocatePinned(device: 0, byteCount: 64)!
        pinned.initializeMemory(as: Int64.self, repeating: 5, count: 8)
        mock.copyToDeviceAsync(device: 0, dst, from: pinned, byteCount: 64)
        mock.synchronize(device: 0)
        pinned.initializeMemory(as: Int64.self, repeating: 6, count: 8)    // allowed: the copy has run
        var out = [Int64](repeating: 0, count: 8)
        out.withUnsafeMutableBytes { mock.copyToHost(device: 0, $0.baseAddress!, from: dst, byteCount: 64) }
        #expect(out == [Int64](repeating: 5, count: 8))
        mock.copyToDeviceAsync(device: 0, dst, from: pinned, byteCount: 64)
        out.withUnsafeMutableBytes { mock.copyToHost(device: 0, $0.baseAddress!, from: dst, byteCount: 64) }   // waits for it
        #expect(out == [Int64](repeating: 6, count: 8))
        mock.freePinned(device: 0, pinned)
        mock.free(device: 0, dst)
    }

    /// Breaking the rules stops with a message that says what to do: an asynchronous copy from
    /// pageable memory, and a pinned source rewritten before the stream was synchronised.
    @Test func asynchronousCopyMisuseStops() async throws {
        let pageable = try await #require(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let mock = MockCUDADriver(devices: 1, memoryBytes: 1 << 20)
            let dst = mock.allocate(device: 0, byteCount: 64)!
            let host = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 16)
            mock.copyToDeviceAsync(device: 0, dst, from: host, byteCount: 64)
        }
        let p = String(decoding: pageable.standardErrorContent, as: UTF8.self)
        #expect(p.contains("which is not pinned memory from allocatePinned (pageable memory cannot be copied asynchronously)"), "\(p.prefix(600))")
        let rewritten = try await #require(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let mock = MockCUDADriver(devices: 1, memoryBytes: 1 << 20)
            let dst = mock.allocate(device: 0, byteCount: 64)!
            let pinned = mock.allocatePinned(device: 0, byteCount: 64)!
            pinned.initializeMemory(as: Int64.self, repeating: 1, count: 8)
            mock.copyToDeviceAsync(device: 0, dst, from: pinned, byteCount: 64)
            pinned.storeBytes(of: 2, as: Int64.self)    // too early: the copy may not have run
            mock.synchronize(device: 0)
        }
        let r = String(decoding: rewritten.standardErrorContent, as: UTF8.self)
        #expect(r.contains("changed before the copy ran; call synchronize(device:) before reusing the buffer"), "\(r.prefix(600))")
    }

    /// Every libcuda entry point the real driver calls is in the list checked when libcuda loads
    /// (a driver lacking one is refused at load, not mid-training), and the list names no other.
    @Test func theRealDriverChecksEveryEntryPointItCalls() throws {
        let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Sources/TensorCore/CUDA/SystemCUDADriver.swift")
        let source = try String(contentsOf: file, encoding: .utf8)
        let called = Set(source.matches(of: /sym\(cuda, "([A-Za-z0-9_]+)"/).map { String($0.1) })
        #expect(called == Set(SystemCUDADriver.requiredSymbols), "called but unchecked: \(called.subtracting(SystemCUDADriver.requiredSymbols).sorted()); checked but not called: \(Set(SystemCUDADriver.requiredSymbols).subtracting(called).sorted())")
        for name in ["cuStreamCreate", "cuStreamSynchronize", "cuMemcpyHtoDAsync_v2", "cuMemcpyDtoHAsync_v2", "cuMemAllocHost_v2", "cuMemFreeHost"] {
            #expect(called.contains(name), "\(name)")
        }
        #expect(source.contains("\"cublasSetStream_v2\""))
    }
}
