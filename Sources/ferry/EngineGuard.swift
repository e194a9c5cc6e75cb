import ArgumentParser
import Foundation

/// The engine (TensorCore and above) is compiled for AVX2 + FMA; this file is compiled for
/// baseline x86-64 and checks the CPU before any engine code runs, so an older CPU gets a
/// message instead of an illegal-instruction crash.
enum EngineGuard {
    /// Missing CPU features the engine needs (empty when it can run). Non-x86 CPUs need none.
    static var missingFeatures: [String] {
        #if arch(x86_64) && os(Linux)
        // FERRY_CPUINFO reads another cpuinfo file: how the tests play an older CPU.
        let source = ProcessInfo.processInfo.environment["FERRY_CPUINFO"] ?? "/proc/cpuinfo"
        guard let info = try? String(contentsOfFile: source, encoding: .utf8),
              let flagsLine = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return [] }
        let flags = Set(flagsLine.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == ":" }).map(String.init))
        return ["avx2", "fma"].filter { !flags.contains($0) }
        #else
        return []
        #endif
    }

    /// Exits with a clear message when the engine cannot run here.
    static func require() throws {
        let missing = missingFeatures
        guard missing.isEmpty else {
            FileHandle.standardError.write(Data("""
            ferry: this CPU lacks \(missing.map { $0.uppercased() }.joined(separator: " and ")), which ferry's training engine needs \
            (x86-64-v3, any x86 server CPU since 2013). The runner commands (launch, logs, fetch, ssh, hosts) still work here; \
            run the training on a newer machine.\n
            """.utf8))
            throw ExitCode(1)
        }
    }
}
