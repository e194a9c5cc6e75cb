import Data
import Foundation
import NN
import Optim
import TensorCore

// ferry-gpu-check: the engine on one device, measured for scripts/gpu-check.sh.
//   ferry-gpu-check --out DIR [--device cuda:0|cpu] [--data FASHION_MNIST_DIR] [--quick]
// Writes DIR/ferry.json (device, ops, GEMM GFLOP/s, epochs) and, for every op case, its inputs, its
// output and its input gradients as .npy under DIR/ops/, which scripts/bench/gpu_reference.py runs
// through PyTorch on the same GPU and compares. Each case is also computed by ferry on the CPU:
// `cpu_max_abs_diff` is ferry's own device-against-CPU difference.

func option(_ name: String) -> String? {
    let arguments = CommandLine.arguments
    guard let i = arguments.firstIndex(of: name), i + 1 < arguments.count else { return nil }
    return arguments[i + 1]
}
let quick = CommandLine.arguments.contains("--quick")
guard let outPath = option("--out") else {
    FileHandle.standardError.write(Data("usage: ferry-gpu-check --out DIR [--device cuda:0|cpu] [--data DIR] [--quick]\n".utf8))
    exit(2)
}
let deviceName = option("--device") ?? "cuda:0"
let device: Device
if deviceName == "cpu" {
    device = .cpu
} else if deviceName.hasPrefix("cuda") {
    device = .cuda(Int(deviceName.split(separator: ":").last.flatMap { Int($0) } ?? 0))
} else {
    FileHandle.standardError.write(Data("ferry-gpu-check: --device takes cpu or cuda:N, got \(deviceName)\n".utf8)); exit(2)
}
let out = URL(fileURLWithPath: outPath)
let opsDir = out.appendingPathComponent("ops")
try FileManager.default.createDirectory(at: opsDir, withIntermediateDirectories: true)

var report: [String: Any] = ["device": deviceName, "cuda_available": Device.isCUDAAvailable,
                             "cuda_driver": Device.cudaDriverStatus.detail, "cuda_devices": Device.cudaDeviceCount,
                             "cuda_report": CUDARuntime.report().lines]
if case .cuda = device, !Device.isCUDAAvailable {
    report["error"] = "CUDA is not available: \(Device.cudaDriverStatus.detail)"
    try JSONSerialization.data(withJSONObject: report, options: [.prettyPrinted, .sortedKeys]).write(to: out.appendingPathComponent("ferry.json"))
    FileHandle.standardError.write(Data("ferry-gpu-check: \(report["error"]!)\n".utf8))
    exit(1)
}

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

// MARK: - Op cases

/// One op: inputs made on the CPU (the same values go to PyTorch), the function, and which inputs
/// take gradients. `name` is the key gpu_reference.py knows the PyTorch side by.
struct Case {
    let name: String
    let inputs: [Tensor]
    let grads: [Bool]
    let f: ([Tensor]) -> Tensor
}

func r(_ shape: Int...) -> Tensor { Tensor.randn(shape) }
func pos(_ shape: Int...) -> Tensor { Tensor.rand(shape) + 0.5 }
func labels(_ n: Int, _ c: Int) -> Tensor { Tensor.randint(c, shape: [n]) }

Tensor.manualSeed(0)
let cases: [Case] = [
    Case(name: "add_broadcast", inputs: [r(4, 1, 5), r(3, 5)], grads: [true, true]) { $0[0] + $0[1] },
    Case(name: "sub_scalar", inputs: [r(6, 7)], grads: [true]) { 1.5 - $0[0] },
    Case(name: "mul_broadcast", inputs: [r(2, 3, 4), r(4)], grads: [true, true]) { $0[0] * $0[1] },
    Case(name: "div", inputs: [r(5, 6), pos(5, 6)], grads: [true, true]) { $0[0] / $0[1] },
    Case(name: "neg", inputs: [r(7)], grads: [true]) { -$0[0] },
    Case(name: "pow", inputs: [pos(4, 4)], grads: [true]) { $0[0].pow(3) },
    Case(name: "exp", inputs: [r(64)], grads: [true]) { $0[0].exp() },
    Case(name: "log", inputs: [pos(64)], grads: [true]) { $0[0].log() },
    Case(name: "sqrt", inputs: [pos(64)], grads: [true]) { $0[0].sqrt() },
    Case(name: "abs", inputs: [r(64)], grads: [true]) { $0[0].abs() },
    Case(name: "relu", inputs: [r(1000)], grads: [true]) { $0[0].relu() },
    Case(name: "sigmoid", inputs: [r(1000)], grads: [true]) { $0[0].sigmoid() },
    Case(name: "tanh", inputs: [r(1000)], grads: [true]) { $0[0].tanh() },
    Case(name: "gelu", inputs: [r(1000)], grads: [true]) { $0[0].gelu() },
    Case(name: "clamp", inputs: [r(1000)], grads: [true]) { $0[0].clamp(min: -0.5, max: 0.7) },
    Case(name: "eq", inputs: [Tensor.randint(3, shape: [40]), Tensor.randint(3, shape: [40])], grads: [false, false]) { $0[0].eq($0[1]) },
    Case(name: "gt", inputs: [r(8, 9), r(9)], grads: [false, false]) { $0[0] .> $0[1] },
    Case(name: "where", inputs: [r(8, 9), r(8, 9), r(9)], grads: [false, true, true]) { Tensor.where($0[0] .> 0, $0[1], $0[2]) },
    Case(name: "sum", inputs: [r(300, 70)], grads: [true]) { $0[0].sum() },
    Case(name: "sum_dim_keepdim", inputs: [r(30, 70, 3)], grads: [true]) { $0[0].sum(dim: 1, keepDim: true) },
    Case(name: "mean_dim", inputs: [r(30, 70)], grads: [true]) { $0[0].mean(dim: 0) },
    Case(name: "max", inputs: [r(513)], grads: [true]) { $0[0].max() },
    Case(name: "max_dim", inputs: [r(20, 33)], grads: [true]) { $0[0].max(dim: 1).values },
    Case(name: "argmax_dim", inputs: [r(20, 33)], grads: [false]) { $0[0].argmax(dim: 1) },
    Case(name: "min", inputs: [r(513)], grads: [true]) { $0[0].min() },
    Case(name: "var_dim", inputs: [r(20, 33)], grads: [true]) { $0[0].var(dim: 0) },
    Case(name: "std", inputs: [r(20, 33)], grads: [true]) { $0[0].std() },
    Case(name: "mm", inputs: [r(64, 96), r(96, 48)], grads: [true, true]) { $0[0].mm($0[1]) },
    Case(name: "matmul_broadcast", inputs: [r(3, 1, 8, 16), r(5, 16, 4)], grads: [true, true]) { $0[0].matmul($0[1]) },
    Case(name: "bmm", inputs: [r(6, 10, 12), r(6, 12, 7)], grads: [true, true]) { $0[0].bmm($0[1]) },
    Case(name: "mm_f64", inputs: [r(33, 17).to(.float64), r(17, 9).to(.float64)], grads: [true, true]) { $0[0].mm($0[1]) },
    Case(name: "mm_i64", inputs: [Tensor.randint(9, shape: [7, 5]), Tensor.randint(9, shape: [5, 3])], grads: [false, false]) { $0[0].mm($0[1]) },
    Case(name: "transpose_contiguous", inputs: [r(5, 7, 3)], grads: [true]) { $0[0].transpose(0, 2).contiguous() * 2 },
    Case(name: "permute_add", inputs: [r(4, 5, 6), r(6, 4, 5)], grads: [true, true]) { $0[0].permute(2, 0, 1) + $0[1] },
    Case(name: "slice_stride", inputs: [r(10, 8)], grads: [true]) { $0[0][0..<10, stride: 3] * 3 },
    Case(name: "softmax", inputs: [r(16, 10)], grads: [true]) { $0[0].softmax(dim: 1) },
    Case(name: "log_softmax", inputs: [r(16, 10)], grads: [true]) { $0[0].logSoftmax(dim: 1) },
    Case(name: "cross_entropy", inputs: [r(32, 10), labels(32, 10)], grads: [true, false]) { F.crossEntropy($0[0], $0[1]) },
    Case(name: "nll_loss", inputs: [r(32, 10).logSoftmax(dim: 1), labels(32, 10)], grads: [true, false]) { F.nllLoss($0[0], $0[1]) },
    Case(name: "mse_loss", inputs: [r(32, 3), r(32, 3)], grads: [true, false]) { F.mseLoss($0[0], $0[1]) },
    Case(name: "bce_with_logits", inputs: [r(32, 3), Tensor.rand([32, 3])], grads: [true, false]) { F.binaryCrossEntropyWithLogits($0[0], $0[1]) },
    Case(name: "linear", inputs: [r(16, 20), r(8, 20), r(8)], grads: [true, true, true]) { F.linear($0[0], $0[1], $0[2]) },
    Case(name: "conv2d", inputs: [r(2, 3, 12, 11), r(4, 3, 3, 3), r(4)], grads: [true, true, true]) { F.conv2d($0[0], $0[1], $0[2], stride: 1, padding: 1) },
    Case(name: "conv2d_stride2", inputs: [r(2, 3, 12, 11), r(5, 3, 5, 5)], grads: [true, true]) { F.conv2d($0[0], $0[1], nil, stride: 2, padding: 0) },
    Case(name: "max_pool2d", inputs: [r(2, 3, 12, 11)], grads: [true]) { F.maxPool2d($0[0], kernelSize: 2) },
    Case(name: "avg_pool2d", inputs: [r(2, 3, 12, 11)], grads: [true]) { F.avgPool2d($0[0], kernelSize: 3, stride: 2, padding: 1) },
    Case(name: "batch_norm_train", inputs: [r(8, 4, 5, 5), pos(4), r(4)], grads: [true, true, true]) {
        F.batchNorm($0[0], runningMean: nil, runningVar: nil, weight: $0[1], bias: $0[2], training: true, momentum: 0.1, eps: 1e-5)
    },
    Case(name: "layer_norm", inputs: [r(6, 10), pos(10), r(10)], grads: [true, true, true]) {
        F.layerNorm($0[0], normalizedShape: [10], weight: $0[1], bias: $0[2], eps: 1e-5)
    },
    Case(name: "embedding", inputs: [Tensor.randint(20, shape: [4, 7]), r(20, 6)], grads: [false, true]) { F.embedding($0[0], $0[1]) },
    Case(name: "index_select", inputs: [r(10, 6), Tensor.randint(10, shape: [7])], grads: [true, false]) { $0[0].indexSelect(dim: 0, index: $0[1]) },
    Case(name: "gather", inputs: [r(10, 6), Tensor.randint(6, shape: [10, 3])], grads: [true, false]) { $0[0].gather(dim: 1, index: $0[1]) },
    Case(name: "cat", inputs: [r(3, 4), r(5, 4)], grads: [true, true]) { Tensor.cat([$0[0], $0[1]], dim: 0) },
    Case(name: "stack", inputs: [r(3, 4), r(3, 4)], grads: [true, true]) { Tensor.stack([$0[0], $0[1]], dim: 1) },
]

/// Runs `c` on `device`: the output and the input gradients of sum(output · g) for a fixed g, on the CPU.
func evaluate(_ c: Case, on device: Device, g: Tensor?) -> (output: Tensor, grads: [Tensor?]) {
    let inputs = zip(c.inputs, c.grads).map { t, wants in
        let moved = t.to(device).detach()
        return wants ? moved.requiresGrad(true) : moved
    }
    let y = c.f(inputs)
    var grads: [Tensor?] = Array(repeating: nil, count: inputs.count)
    if let g, y.dtype == .float32 || y.dtype == .float64, c.grads.contains(true) {
        (y * g.to(device)).sum().backward()
        grads = zip(inputs, c.grads).map { t, wants in wants ? t.grad?.to(.cpu) : nil }
    }
    return (y.detach().to(.cpu), grads)
}

func maxAbsDiff(_ a: Tensor, _ b: Tensor) -> Double {
    guard a.shape == b.shape else { return .infinity }
    if a.numel == 0 { return 0 }
    return (a.to(.float64) - b.to(.float64)).abs().max().item()
}

func say(_ text: String) { FileHandle.standardError.write(Data("ferry-gpu-check: \(text)\n".utf8)) }

say("device \(deviceName): \(Device.cudaDriverStatus.detail)")
var opReports: [[String: Any]] = []
var failures = 0
for c in cases {
    let started = now()
    let cpu = evaluate(c, on: .cpu, g: nil)
    let g: Tensor? = (cpu.output.dtype == .float32 || cpu.output.dtype == .float64) ? Tensor.randn(cpu.output.shape).to(cpu.output.dtype) : nil
    let reference = evaluate(c, on: .cpu, g: g)
    let measured = evaluate(c, on: device, g: g)
    var entry: [String: Any] = ["name": c.name, "inputs": c.inputs.count, "grads": c.grads, "shape": measured.output.shape,
                                "dtype": "\(measured.output.dtype)", "seconds": now() - started]
    var diff = maxAbsDiff(measured.output, reference.output)
    for (a, b) in zip(measured.grads, reference.grads) {
        if let a, let b { diff = Swift.max(diff, maxAbsDiff(a, b)) } else if (a == nil) != (b == nil) { diff = .infinity }
    }
    entry["cpu_max_abs_diff"] = diff.isFinite ? diff : -1
    let tolerance = measured.output.dtype == .float64 ? 1e-9 : 1e-3
    if !(diff <= tolerance * Swift.max(1, reference.output.to(.float64).abs().max().item())) { failures += 1; entry["cpu_mismatch"] = true }
    for (i, t) in c.inputs.enumerated() { try t.writeNPY(to: opsDir.appendingPathComponent("\(c.name).in\(i).npy")) }
    try measured.output.writeNPY(to: opsDir.appendingPathComponent("\(c.name).out.npy"))
    if let g { try g.writeNPY(to: opsDir.appendingPathComponent("\(c.name).g.npy")) }
    for (i, grad) in measured.grads.enumerated() {
        if let grad { try grad.writeNPY(to: opsDir.appendingPathComponent("\(c.name).grad\(i).npy")) }
    }
    opReports.append(entry)
}
report["ops"] = opReports
say("\(cases.count) op cases, \(failures) differ from the CPU")
report["ops_cpu_mismatches"] = failures

// MARK: - GEMM

/// GFLOP/s of n×n float32 GEMMs on the device (FP32, or TF32 where `tf32` and the device allow it).
func gemmRates(tf32: Bool) -> [[String: Any]] {
    Tensor.allowTF32 = tf32
    defer { Tensor.allowTF32 = false }
    var gemm: [[String: Any]] = []
    for n in quick ? [256, 512] : [1024, 2048, 4096, 8192] {
        let a = Tensor.randn([n, n]).to(device), b = Tensor.randn([n, n]).to(device)
        _ = a.mm(b).sum().item()                                // warm-up (and, on CUDA, the handle and kernels)
        let reps = Swift.max(2, Int(4e11 / Double(2 * n * n * n)))
        let started = now()
        var c = a.mm(b)
        for _ in 1..<reps { c = a.mm(b) }
        _ = c[0, 0].item()                                      // synchronises
        let seconds = now() - started
        gemm.append(["n": n, "reps": reps, "gflops": Double(2 * n * n * n) * Double(reps) / seconds / 1e9])
    }
    return gemm
}
let gemm = gemmRates(tf32: false)
say("sgemm: " + gemm.map { "\($0["n"]!): \(Int(($0["gflops"] as? Double) ?? 0)) GFLOP/s" }.joined(separator: ", "))
report["sgemm_fp32"] = gemm
if case .cuda = device { report["sgemm_tf32"] = gemmRates(tf32: true) }

// MARK: - One epoch of the reference MLP and CNN

func referenceModel(_ kind: String) -> Sequential {
    kind == "mlp"
        ? Sequential(Flatten(), Linear(784, 256), ReLU(), Linear(256, 128), ReLU(), Linear(128, 10))
        : Sequential(Conv2d(1, 32, kernelSize: 3), ReLU(), MaxPool2d(2), Conv2d(32, 64, kernelSize: 3), ReLU(), MaxPool2d(2),
                     Flatten(), Linear(1600, 128), ReLU(), Linear(128, 10))
}

/// The 10,000 test images (normalised) and labels: the fixed subset both sides train an epoch on.
func fashionSubset() -> (Tensor, Tensor)? {
    let root = option("--data") ?? FashionMNISTFiles.defaultRoot
    guard let ds = try? FashionMNIST(root: root, train: false, normalize: .fashionMNIST) else { return nil }
    let (x, y) = ds.data.tensors()
    // --quick (a rehearsal on the mock driver or the CPU): the first 1,024 images.
    let n = quick ? Swift.min(1024, y.shape[0]) : y.shape[0]
    return (x.reshape([-1, 1, 28, 28])[..<n], y[..<n])
}

if let (images, targets) = fashionSubset() {
    var epochs: [String: Any] = [:]
    let x = images.to(device), y = targets.to(device)
    for kind in ["mlp", "cnn"] {
        Tensor.manualSeed(0)
        let model = referenceModel(kind)
        model.to(device)
        var times: [Double] = []
        var lastLoss = 0.0
        for _ in 0..<(quick ? 1 : 3) {
            let opt = Adam(model.parameters(), lr: 1e-3)
            let perm = Tensor.randperm(images.shape[0]).to(device)
            let started = now()
            var i = 0
            while i < images.shape[0] {
                let idx = perm[i..<Swift.min(images.shape[0], i + 128)]
                let loss = F.crossEntropy(model(x.indexSelect(dim: 0, index: idx)), y.indexSelect(dim: 0, index: idx))
                opt.zeroGrad(); loss.backward(); opt.step()
                if i == 0 || i + 128 >= images.shape[0] { lastLoss = loss.item() }
                i += 128
            }
            _ = model.parameters()[0].sum().item()
            times.append(now() - started)
        }
        epochs[kind] = ["epoch_s": times.min() ?? 0, "epoch_s_all": times, "last_loss": lastLoss]
        say("\(kind) epoch over \(images.shape[0]) images: \(times.map { String(format: "%.3f", $0) }.joined(separator: ", ")) s")
    }
    report["epochs"] = epochs
} else {
    report["epochs_error"] = "no Fashion-MNIST files (pass --data DIR holding t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz)"
}

if case .cuda(let n) = device {
    let stats = CUDAMemory.stats(device: n)
    report["allocator"] = ["allocated_bytes": stats.allocatedBytes, "peak_allocated_bytes": stats.peakAllocatedBytes,
                           "cached_bytes": stats.cachedBytes, "driver_allocations": stats.driverAllocations,
                           "cache_hits": stats.cacheHits, "oom_retries": stats.oomRetries]
}
try JSONSerialization.data(withJSONObject: report, options: [.prettyPrinted, .sortedKeys]).write(to: out.appendingPathComponent("ferry.json"))
print("ferry-gpu-check: \(cases.count) ops (\(failures) differ from ferry's CPU), \(gemm.count) GEMM sizes → \(out.path)/ferry.json")
exit(failures == 0 ? 0 : 1)
