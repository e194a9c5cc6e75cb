import Foundation
import RunContract
import System

/// A file that grows by whole lines: each line goes out in one `write(2)` on an `O_APPEND`
/// descriptor, so a reader following the file never sees half a line.
final class LineFile {
    let url: URL
    private let fd: Int32

    init(url: URL, truncate: Bool = false) throws {
        self.url = url
        try? FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        fd = open(url.path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0o644)
        guard fd >= 0 else { throw TrainingError.io(path: url.path, reason: String(cString: strerror(errno))) }
    }

    deinit { close(fd) }

    func append(_ line: String) {
        var bytes = Array(line.utf8)
        if bytes.last != 0x0A { bytes.append(0x0A) }
        try? FileIO.writeAll(fd, bytes)   // best effort: a full disk must not stop training
    }
}

/// The trainer's voice to the runner (`$FERRY_EVENTS`, else the run directory's `events.jsonl`):
/// one JSON object a line, written whole and at once. Paths are relative to the output root
/// (`$FERRY_OUTPUT`, else the save_dir).
public final class EventLog {
    public let url: URL
    let outputRoot: URL
    private let file: LineFile

    public init(url: URL, outputRoot: URL) throws {
        self.url = url
        self.outputRoot = outputRoot
        file = try LineFile(url: url)
    }

    func emit(_ event: RunEvent) { file.append(event.line()) }

    public func start(totalEpochs: Int, startEpoch: Int, stepsPerEpoch: Int, runDirectory: URL, runID: String,
                      device: String = "cpu", environment: [String: String] = [:]) {
        emit(.start(.init(time: RunEvent.now, totalEpochs: totalEpochs, startEpoch: startEpoch, stepsPerEpoch: stepsPerEpoch,
                          runId: runID, runDir: relative(runDirectory), device: device,
                          attempt: environment[RunEnvironment.attempt].flatMap { Int($0) },
                          restartCount: environment[RunEnvironment.restartCount].flatMap { Int($0) },
                          sweepId: environment[RunEnvironment.sweepID].flatMap { $0.isEmpty ? nil : $0 },
                          runIndex: environment[RunEnvironment.runIndex].flatMap { Int($0) })))
    }

    public func step(epoch: Int, step: Int, loss: Double, lr: Double, samplesPerSecond: Double) {
        emit(.step(.init(time: RunEvent.now, epoch: epoch, step: step, loss: loss.isFinite ? loss : nil,
                         lr: lr.isFinite ? lr : nil, samplesPerS: samplesPerSecond.isFinite ? samplesPerSecond.rounded() : nil)))
    }

    public func epoch(_ epoch: Int, metrics: [(String, Double)], monitor: Monitor = .off, best: Double? = nil) {
        var finite: [String: Double] = [:]
        for (k, v) in metrics where v.isFinite { finite[k] = v }
        emit(.epoch(.init(time: RunEvent.now, epoch: epoch, metrics: finite,
                          monitor: monitor == .off ? nil : monitor.description, best: best.flatMap { $0.isFinite ? $0 : nil })))
    }

    public func checkpoint(kind: String, directory: URL, epoch: Int) {
        emit(.checkpoint(.init(time: RunEvent.now, kind: kind, path: relative(directory), epoch: epoch)))
    }

    public func end(status: RunEndStatus, epoch: Int, message: String? = nil) {
        emit(.end(.init(time: RunEvent.now, status: status, epoch: epoch, message: message)))
    }

    /// `url` relative to the output root when it lies under it.
    func relative(_ url: URL) -> String {
        let root = outputRoot.standardizedFileURL.path
        let path = url.standardizedFileURL.path
        if path == root { return "." }
        let prefix = root.hasSuffix("/") ? root : root + "/"
        return path.hasPrefix(prefix) ? String(path.dropFirst(prefix.count)) : path
    }
}
