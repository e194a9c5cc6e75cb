import Foundation
import TensorCore

/// sgemm GFLOP/s through oneDNN against numpy and PyTorch measured in the same run.
enum SGEMMBenchmark {
    static func run(threads: Int, sizes: [Int] = [128, 256, 512, 1024]) {
        print("sgemm, \(threads) threads (GFLOP/s; ratio = ferry / reference, higher is better)")
        var ours: [Int: Double] = [:]
        for n in sizes {
            let a = (0..<(n * n)).map { _ in Float.random(in: -1...1) }
            let b = (0..<(n * n)).map { _ in Float.random(in: -1...1) }
            var c = [Float](repeating: 0, count: n * n)
            let seconds = a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in c.withUnsafeMutableBufferPointer { pc in
                measure {
                    DNNL.sgemm(transA: false, transB: false, m: n, n: n, k: n, alpha: 1, a: pa.baseAddress!, lda: n,
                               b: pb.baseAddress!, ldb: n, beta: 0, c: pc.baseAddress!, ldc: n)
                }
            } } }
            ours[n] = 2 * Double(n * n * n) / seconds / 1e9
        }
        let ref = Reference.run("sgemm_ref.py", [String(threads)] + sizes.map(String.init))
        let numpy = ref?["numpy"] as? [String: Double] ?? [:]
        let torch = ref?["torch"] as? [String: Double]
        print(pad("n", 6) + pad("ferry", 10) + pad("numpy", 10) + pad("ratio", 8) + (torch != nil ? pad("torch", 10) + "ratio" : "(torch not importable)"))
        for n in sizes {
            let mine = ours[n]!
            var line = pad("\(n)", 6) + pad(fmt(mine, 1), 10)
            if let np = numpy["\(n)"] { line += pad(fmt(np, 1), 10) + pad(fmt(mine / np) + "x", 8) } else { line += pad("-", 18) }
            if let t = torch?["\(n)"] { line += pad(fmt(t, 1), 10) + fmt(mine / t) + "x" }
            print(line)
        }
    }
}
