import Testing
@testable import TensorCore

@Suite struct DNNLTests {
    /// Deterministic small-integer-valued matrices: exact in float32, so the comparison can be tight.
    func matrix(_ rows: Int, _ cols: Int, seed: Int) -> [Float] {
        (0..<(rows * cols)).map { Float(((($0 + seed) * 7919) % 13) - 6) }
    }

    func naive(_ a: [Float], _ b: [Float], m: Int, n: Int, k: Int, transA: Bool, transB: Bool) -> [Float] {
        var c = [Float](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n {
            var s: Float = 0
            for p in 0..<k {
                let av = transA ? a[p * m + i] : a[i * k + p]
                let bv = transB ? b[j * k + p] : b[p * n + j]
                s += av * bv
            }
            c[i * n + j] = s
        } }
        return c
    }

    @Test("dnnl_sgemm equals a naive product", arguments: [(false, false), (true, false), (false, true), (true, true)])
    func sgemmMatchesNaive(transA: Bool, transB: Bool) throws {
        #expect(DNNL.isAvailable, "libdnnl must load on the test machine")
        let m = 37, n = 53, k = 29
        let a = matrix(m, k, seed: 1), b = matrix(k, n, seed: 5)
        var c = [Float](repeating: 99, count: m * n)
        a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in c.withUnsafeMutableBufferPointer { pc in
            DNNL.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 1,
                       a: pa.baseAddress!, lda: transA ? m : k, b: pb.baseAddress!, ldb: transB ? k : n,
                       beta: 0, c: pc.baseAddress!, ldc: n)
        } } }
        let expected = naive(a, b, m: m, n: n, k: k, transA: transA, transB: transB)
        #expect(c == expected)
    }

    @Test func versionAndISAAreReported() throws {
        let version = try DNNL.versionString()
        #expect(version.split(separator: ".").count == 3)
        #expect(try DNNL.effectiveISA() != "unknown")
    }

    @Test func threadCountIsSharedWithOpenMP() {
        let before = Threading.threadCount
        Threading.setThreadCount(1)
        #expect(Threading.threadCount == 1)
        Threading.setThreadCount(before)
        #expect(Threading.threadCount == before)
        #expect(Threading.usesOpenMP)
    }
}
