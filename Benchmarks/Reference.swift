import Foundation
import Synchronization

/// Runs a committed Python reference script (scripts/bench/) and decodes its one JSON line.
/// The interpreter is `$FERRY_BENCH_PYTHON`, else `python3` on PATH.
enum Reference {
    static var python: String { ProcessInfo.processInfo.environment["FERRY_BENCH_PYTHON"] ?? "python3" }

    static var scriptsDir: URL {
        if let dir = ProcessInfo.processInfo.environment["FERRY_BENCH_SCRIPTS"] { return URL(fileURLWithPath: dir) }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts/bench")
    }

    static func run(_ script: String, _ arguments: [String]) -> [String: Any]? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [python, scriptsDir.appendingPathComponent(script).path] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        do { try process.run() } catch {
            print("  (reference \(script) could not start: \(error))")
            return nil
        }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0,
              let line = String(decoding: data, as: UTF8.self).split(separator: "\n").last,
              let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            print("  (reference \(script) failed with status \(process.terminationStatus))")
            return nil
        }
        return object
    }
}

/// Median of `trials` timings (seconds) of `body`, each repeated until it has run at least `minTime`.
func measure(trials: Int = 5, minTime: Double = 0.2, warmup: Int = 3, _ body: () -> Void) -> Double {
    for _ in 0..<warmup { body() }
    var times: [Double] = []
    for _ in 0..<trials {
        var reps = 0
        let start = DispatchTime.now().uptimeNanoseconds
        var elapsed = 0.0
        repeat {
            body(); reps += 1
            elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        } while elapsed < minTime
        times.append(elapsed / Double(reps))
    }
    times.sort()
    return times[times.count / 2]
}

func pad(_ s: String, _ width: Int) -> String { s.count >= width ? s : s + String(repeating: " ", count: width - s.count) }
func fmt(_ x: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", x) }

/// Runs async work from the synchronous benchmark driver; a failure is printed after `prefix`
/// (the benchmark goes on with its next measurement).
func runBlocking(failurePrefix prefix: String, _ body: @escaping @Sendable () async throws -> Void) {
    let done = DispatchSemaphore(value: 0)
    let failure = Mutex<String?>(nil)
    Task {
        do { try await body() } catch { failure.withLock { $0 = "\(error)" } }
        done.signal()
    }
    done.wait()
    if let message = failure.withLock({ $0 }) { print("  \(prefix): \(message)") }
}
