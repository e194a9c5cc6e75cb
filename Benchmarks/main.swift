import Foundation
import TensorCore

// swift run -c release Benchmarks [CASE ...] [--threads N] [--epochs N]
// Each case prints ferry's figure beside a reference measured in the same run, as a ratio.
let allCases = ["sgemm", "elementwise", "mlp", "cnn", "ssh", "jobs"]
var arguments = Array(CommandLine.arguments.dropFirst())

@MainActor func option(_ name: String, default value: Int) -> Int {
    guard let i = arguments.firstIndex(of: name), i + 1 < arguments.count, let n = Int(arguments[i + 1]) else { return value }
    arguments.removeSubrange(i...(i + 1))
    return n
}

let threads = option("--threads", default: 2)
let epochs = option("--epochs", default: 2)
Threading.setThreadCount(threads)
let cases = arguments.isEmpty ? allCases : arguments
for name in cases {
    switch name {
    case "sgemm": SGEMMBenchmark.run(threads: threads)
    case "elementwise": ElementwiseBenchmark.run(threads: threads)
    case "mlp", "cnn": TrainingBenchmark.run(kind: name, epochs: epochs, threads: threads, data: TrainingBenchmark.fashionMNIST())
    case "ssh": SSHBenchmark.run()
    case "jobs": JobsBenchmark.run()
    default:
        print("unknown benchmark \(name); known: \(allCases.joined(separator: ", "))")
        exit(2)
    }
    print("")
}
