import Foundation
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

    func emit(_ event: String, _ fields: [(String, JSONValue)]) {
        var o = JSONObject()
        o["event"] = .string(event)
        for (k, v) in fields { o[k] = v }
        file.append(JSONValue.object(o).serialized(pretty: false))
    }

    static var now: JSONValue { .double((Date().timeIntervalSince1970 * 1000).rounded() / 1000) }

    public func start(totalEpochs: Int, startEpoch: Int, stepsPerEpoch: Int, runDirectory: URL, runID: String) {
        emit("start", [("time", EventLog.now), ("total_epochs", .int(totalEpochs)), ("start_epoch", .int(startEpoch)),
                       ("steps_per_epoch", .int(stepsPerEpoch)), ("run_id", .string(runID)),
                       ("run_dir", .string(relative(runDirectory)))])
    }

    public func step(epoch: Int, step: Int, loss: Double, lr: Double, samplesPerSecond: Double) {
        emit("step", [("time", EventLog.now), ("epoch", .int(epoch)), ("step", .int(step)), ("loss", .double(loss)),
                      ("lr", .double(lr)), ("samples_per_s", .double(samplesPerSecond.rounded()))])
    }

    public func epoch(_ epoch: Int, metrics: [(String, Double)]) {
        emit("epoch", [("time", EventLog.now), ("epoch", .int(epoch)),
                       ("metrics", .object(JSONObject(metrics.map { ($0.0, JSONValue.double($0.1)) })))])
    }

    public func checkpoint(kind: String, directory: URL, epoch: Int) {
        emit("checkpoint", [("time", EventLog.now), ("kind", .string(kind)), ("path", .string(relative(directory))), ("epoch", .int(epoch))])
    }

    public func end(status: String, epoch: Int, message: String? = nil) {
        var fields: [(String, JSONValue)] = [("time", EventLog.now), ("status", .string(status)), ("epoch", .int(epoch))]
        if let message { fields.append(("message", .string(message))) }
        emit("end", fields)
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
