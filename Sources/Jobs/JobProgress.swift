import Foundation
import RunContract
import System

/// Live progress read from a job's `events.jsonl` (the trainer's file contract): epoch, step, loss,
/// the last metrics and checkpoints, and an ETA from the step rate of the current attempt.
public struct JobProgress: Codable, Sendable, Equatable {
    public var epoch: Int?
    public var totalEpochs: Int?
    public var step: Int?
    public var stepsPerEpoch: Int?
    public var loss: Double?
    public var samplesPerSecond: Double?
    public var metrics: [String: Double]
    /// The latest checkpoint of each kind (best, last, epoch), relative to FERRY_OUTPUT.
    public var checkpoints: [String: String]
    /// The run folder, relative to FERRY_OUTPUT.
    public var runDirectory: String?
    public var fraction: Double?
    public var etaSeconds: Double?
    /// The `end` event's status (succeeded, failed, stopped), once written.
    public var endStatus: String?
    /// The engine's device the run trains on (`cpu`, `cuda:0`), from the `start` event.
    public var device: String?
    /// The metric the trainer watches (`min val_loss`, `max val_accuracy`) and its best value so far.
    public var monitor: String?
    public var best: Double?

    public init() { metrics = [:]; checkpoints = [:] }

    public var isEmpty: Bool { epoch == nil && step == nil && totalEpochs == nil && endStatus == nil }

    /// Reads events (one JSON object a line; unknown events and torn lines are skipped). Only the
    /// last `window` bytes are read from a large file.
    public static func read(eventsFile path: String, window: Int = 8 << 20) -> JobProgress {
        guard let handle = FileHandle(forReadingAtPath: path) else { return JobProgress() }
        defer { try? handle.close() }
        let size = (try? handle.seekToEnd()) ?? 0
        let start = size > UInt64(window) ? size - UInt64(window) : 0
        try? handle.seek(toOffset: start)
        let data = (try? handle.readToEnd()) ?? Data()
        return parse(data, skipFirstLine: start > 0)
    }

    public static func parse(_ data: Data, skipFirstLine: Bool = false, now: Date = Date()) -> JobProgress {
        var p = JobProgress()
        var firstStep: (time: Double, step: Int)?
        var lastStep: (time: Double, step: Int)?
        var lines = data.split(separator: 0x0A, omittingEmptySubsequences: true)
        if skipFirstLine, !lines.isEmpty { lines.removeFirst() }
        let decoder = JSONCoding.decoder()
        for line in lines {
            // Events this ferry does not know, and a torn last line, are skipped (RunEvent.parse: nil).
            switch RunEvent.parse(line, decoder: decoder) {
            case .start(let e):
                p.totalEpochs = e.totalEpochs ?? p.totalEpochs
                p.stepsPerEpoch = e.stepsPerEpoch ?? p.stepsPerEpoch
                p.epoch = e.startEpoch ?? p.epoch
                p.runDirectory = e.runDir ?? p.runDirectory
                p.device = e.device ?? p.device
                p.endStatus = nil
                firstStep = nil; lastStep = nil
            case .step(let e):
                p.epoch = e.epoch ?? p.epoch
                p.step = e.step
                p.loss = e.loss ?? p.loss
                p.samplesPerSecond = e.samplesPerS ?? p.samplesPerSecond
                if let time = e.time {
                    if firstStep == nil { firstStep = (time, e.step) }
                    lastStep = (time, e.step)
                }
            case .epoch(let e):
                p.epoch = e.epoch
                p.metrics.merge(e.metrics ?? [:]) { $1 }
                if let monitor = e.monitor { p.monitor = monitor }
                if let best = e.best {
                    p.best = best
                } else if let monitor = p.monitor.flatMap(RunEvent.Monitored.init), let value = e.metrics?[monitor.metric],
                          p.best.map({ monitor.improves(value, on: $0) }) ?? true {
                    // An event without the trainer's best: the best of the epochs read here.
                    p.best = value
                }
            case .checkpoint(let e):
                p.checkpoints[e.kind] = e.path
            case .end(let e):
                p.endStatus = e.status.rawValue
            case nil:
                continue
            }
        }
        if let total = p.totalEpochs, let spe = p.stepsPerEpoch, total > 0, spe > 0, let step = p.step {
            let all = Double(total * spe)
            p.fraction = min(1, Double(step) / all)
            if p.endStatus == nil, let a = firstStep, let b = lastStep, b.step > a.step, b.time > a.time {
                let rate = Double(b.step - a.step) / (b.time - a.time)
                p.etaSeconds = max(0, (all - Double(step)) / rate)
            }
        } else if let total = p.totalEpochs, total > 0, let epoch = p.epoch, !p.metrics.isEmpty {
            p.fraction = min(1, Double(epoch) / Double(total))
        }
        if p.endStatus == "succeeded" { p.fraction = 1; p.etaSeconds = 0 }
        return p
    }

    /// `epoch 3/10  step 1200/4000  loss 0.4312  ETA 2m10s`.
    public var line: String {
        var parts: [String] = []
        if let epoch { parts.append("epoch \(epoch)" + (totalEpochs.map { "/\($0)" } ?? "")) }
        if let step {
            if let total = totalEpochs, let spe = stepsPerEpoch { parts.append("step \(step)/\(total * spe)") } else { parts.append("step \(step)") }
        }
        if let loss { parts.append(String(format: "loss %.4f", loss)) }
        for key in metrics.keys.sorted() where key.hasPrefix("val_") {
            if let v = metrics[key] { parts.append(String(format: "%@ %.4f", key, v)) }
        }
        if let fraction { parts.append(String(format: "%.0f%%", fraction * 100)) }
        if let eta = etaSeconds, endStatus == nil { parts.append("ETA " + JobProgress.duration(eta)) }
        // A GPU run says so; the CPU, the default, goes unsaid.
        if let device, device != "cpu", !parts.isEmpty { parts.append("on \(device)") }
        return parts.joined(separator: "  ")
    }

    public static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m\(String(format: "%02d", s % 60))s" }
        return "\(s / 3600)h\(String(format: "%02d", (s % 3600) / 60))m"
    }
}
