import Foundation
import NN
import TensorCore

/// add/mul/relu/exp over 1M float32 and sum over 16M, plus a Linear(784→256) forward+backward at
/// batch 128, against numpy (and PyTorch) measured in the same run.
enum ElementwiseBenchmark {
    static func run(threads: Int) {
        print("elementwise, \(threads) threads (ms per call; ratio = reference time / ferry time, higher is better)")
        let a = Tensor.randn([1 << 20]), b = Tensor.randn([1 << 20]), big = Tensor.randn([16 << 20])
        var ours: [String: Double] = [:]
        ours["add"] = measure { _ = a + b }
        ours["mul"] = measure { _ = a * b }
        ours["relu"] = measure { _ = a.relu() }
        ours["exp"] = measure { _ = a.exp() }
        ours["sum16M"] = measure { _ = big.sum() }
        let lin = Linear(784, 256)
        let x = Tensor.randn([128, 784])
        ours["linear"] = measure {
            let y = lin(x)
            y.sum().backward()
        }
        let ref = Reference.run("elementwise_ref.py", [String(threads)])
        let numpy = ref?["numpy"] as? [String: Double] ?? [:]
        let torch = ref?["torch"] as? [String: Double]
        print(pad("op", 10) + pad("ferry", 10) + pad("numpy", 10) + pad("ratio", 8) + (torch != nil ? pad("torch", 10) + "ratio" : "(torch not importable)"))
        for op in ["add", "mul", "relu", "exp", "sum16M", "linear"] {
            let mine = ours[op]!
            var line = pad(op, 10) + pad(fmt(mine * 1e3, 3), 10)
            if let np = numpy[op] { line += pad(fmt(np * 1e3, 3), 10) + pad(fmt(np / mine) + "x", 8) } else { line += pad("-", 18) }
            if let t = torch?[op] { line += pad(fmt(t * 1e3, 3), 10) + fmt(t / mine) + "x" }
            print(line)
        }
    }
}
