import Foundation
import TensorCore

// swift run -c release Benchmarks [CASE ...] [--threads N]
// Each case prints ferry's figure beside a reference measured in the same run, as a ratio.
let allCases = ["sgemm", "ssh"]
var arguments = Array(CommandLine.arguments.dropFirst())
var threads = 2
if let i = arguments.firstIndex(of: "--threads"), i + 1 < arguments.count, let n = Int(arguments[i + 1]) {
    threads = n
    arguments.removeSubrange(i...(i + 1))
}
Threading.setThreadCount(threads)
let cases = arguments.isEmpty ? allCases : arguments
for name in cases {
    switch name {
    case "sgemm": SGEMMBenchmark.run(threads: threads)
    case "ssh": SSHBenchmark.run()
    default:
        print("unknown benchmark \(name); known: \(allCases.joined(separator: ", "))")
        exit(2)
    }
    print("")
}
