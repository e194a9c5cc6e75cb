import Foundation
import RunContract
import System
import TensorCore

/// `--resume`: the newest resumable run (`auto`) or a given checkpoint.
public enum ResumeRequest: Sendable, Equatable {
    /// `last/` of the run named by `--run-id` / `$FERRY_JOB_ID`, else of the newest run of this
    /// config's name; a fresh run when there is none.
    case auto
    /// A checkpoint folder, a `model.safetensors` in one, or a run folder (its `checkpoints/last`).
    case path(String)

    /// `auto` or a path.
    public init(_ text: String) { self = text == "auto" ? .auto : .path(text) }
}

/// A run's folder, `<save_dir or $FERRY_OUTPUT>/<name>/<run id>/`, and the files in it.
public struct RunDirectory: Sendable, Equatable {
    public let url: URL
    public let runID: String
    /// What checkpoint paths in events are relative to (`$FERRY_OUTPUT`, else the save_dir).
    public let outputRoot: URL

    public var checkpoints: URL { url.appendingPathComponent("checkpoints") }
    public func checkpoint(_ name: String) -> URL { checkpoints.appendingPathComponent(name) }
    public var config: URL { url.appendingPathComponent("config.json") }
    public var runJSON: URL { url.appendingPathComponent("run.json") }
    public var trainLog: URL { url.appendingPathComponent("train.log") }
    public var metrics: URL { url.appendingPathComponent("metrics.jsonl") }
    public var curves: URL { url.appendingPathComponent("curves.svg") }
    public var events: URL { url.appendingPathComponent("events.jsonl") }

    /// The folder of a checkpoint's run (`…/RUNID/checkpoints/last` → `…/RUNID`), when it is in one.
    public static func containing(checkpoint: URL) -> URL? {
        let parent = checkpoint.standardizedFileURL.deletingLastPathComponent()
        return parent.lastPathComponent == "checkpoints" ? parent.deletingLastPathComponent() : nil
    }
}

/// Finds what `--resume` means and where a run lives.
public enum RunLocator {
    /// The checkpoint folder `--resume PATH` names.
    public static func checkpoint(at path: String) throws -> URL {
        let url = URL(fileURLWithPath: path).standardizedFileURL
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: url.path, isDirectory: &isDir) || fm.fileExists(atPath: Checkpoint.resolve(url).path, isDirectory: &isDir) else {
            throw TrainingError.nothingToResume("--resume \(path): no such file or folder")
        }
        if !isDir.boolValue {
            let dir = url.deletingLastPathComponent()
            if Checkpoint.isComplete(dir) { return dir }
        } else {
            let dir = Checkpoint.resolve(url)
            if Checkpoint.isComplete(dir) { return dir }
            let last = Checkpoint.resolve(url.appendingPathComponent("checkpoints/last"))
            if Checkpoint.isComplete(last) { return last }
        }
        throw TrainingError.nothingToResume("--resume \(path): no checkpoint there — expected a folder with \(Checkpoint.modelFile) and \(Checkpoint.stateFile) (like saved/NAME/RUNID/checkpoints/last) or a run folder")
    }

    /// The newest run under `root/name` with a complete `checkpoints/last`.
    public static func newestResumable(root: URL, name: String) -> URL? {
        let base = root.appendingPathComponent(name)
        let fm = FileManager.default
        guard let runs = try? fm.contentsOfDirectory(at: base, includingPropertiesForKeys: nil) else { return nil }
        var best: (URL, Date)?
        for run in runs {
            let last = Checkpoint.resolve(run.appendingPathComponent("checkpoints/last"))
            guard Checkpoint.isComplete(last),
                  let date = (try? fm.attributesOfItem(atPath: last.appendingPathComponent(Checkpoint.stateFile).path))?[.modificationDate] as? Date
            else { continue }
            if let current = best, current.1 >= date { continue }
            best = (run, date)
        }
        return best?.0
    }

    /// A fresh run id: pytorch-template's `MMDD_HHMMSS`.
    public static func timestampID(_ date: Date = Date()) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.dateFormat = "MMdd_HHmmss"
        return f.string(from: date)
    }

    /// Where the run goes and which checkpoint (if any) it continues from.
    static func locate(config: TrainConfig, resume: ResumeRequest?, resumeCheckpoint: URL?, runID explicitID: String?,
                       environment: [String: String]) throws -> (RunDirectory, URL?) {
        let output = environment[RunEnvironment.output].flatMap { $0.isEmpty ? nil : $0 }
        let root = URL(fileURLWithPath: output ?? config.trainer.saveDir).standardizedFileURL
        let base = root.appendingPathComponent(config.name)
        let givenID = explicitID ?? environment[RunEnvironment.jobID].flatMap { $0.isEmpty ? nil : $0 }
        if let id = givenID { try validateRunID(id, source: explicitID != nil ? "--run-id" : RunEnvironment.jobID) }
        let fm = FileManager.default
        func run(_ url: URL) -> RunDirectory {
            // Checkpoint swaps a SIGKILL interrupted leave `.NAME.tmp-PID` behind; they go now.
            AtomicFile.removeStaleTemporaries(in: url.appendingPathComponent("checkpoints").path)
            return RunDirectory(url: url, runID: url.lastPathComponent, outputRoot: root)
        }

        switch resume {
        case .path?:
            guard let checkpoint = resumeCheckpoint else { throw TrainingError.nothingToResume("--resume: no checkpoint") }
            // Continue in the checkpoint's own run folder; a loose checkpoint starts a new folder.
            if let home = RunDirectory.containing(checkpoint: checkpoint), explicitID == nil {
                let homeRoot = output.map { URL(fileURLWithPath: $0).standardizedFileURL } ?? home.deletingLastPathComponent().deletingLastPathComponent()
                return (RunDirectory(url: home, runID: home.lastPathComponent, outputRoot: homeRoot), checkpoint)
            }
            let id = givenID ?? timestampID()
            return (run(base.appendingPathComponent(id)), checkpoint)
        case .auto?:
            if let id = givenID {
                let dir = base.appendingPathComponent(id)
                let last = Checkpoint.resolve(dir.appendingPathComponent("checkpoints/last"))
                return (run(dir), Checkpoint.isComplete(last) ? last : nil)
            }
            if let newest = newestResumable(root: root, name: config.name) {
                return (run(newest), Checkpoint.resolve(newest.appendingPathComponent("checkpoints/last")))
            }
            return (run(base.appendingPathComponent(uniqueTimestampID(in: base))), nil)
        case nil:
            if let id = givenID {
                let dir = base.appendingPathComponent(id)
                if let items = try? fm.contentsOfDirectory(atPath: dir.path), !items.isEmpty {
                    throw TrainingError.runDirectoryExists(path: dir.path)
                }
                return (run(dir), nil)
            }
            return (run(base.appendingPathComponent(uniqueTimestampID(in: base))), nil)
        }
    }

    /// A run id names one folder under save_dir/NAME: `../x` or `/abs` would write elsewhere.
    static func validateRunID(_ id: String, source: String) throws {
        guard !id.isEmpty, id != ".", id != "..", !id.contains("/"), !id.utf8.contains(0), id.utf8.count <= 255 else {
            throw TrainingError.invalidRunID(source: source, id: id)
        }
    }

    static func uniqueTimestampID(in base: URL) -> String {
        let id = timestampID()
        var candidate = id
        var n = 2
        while FileManager.default.fileExists(atPath: base.appendingPathComponent(candidate).path) {
            candidate = "\(id)_\(n)"
            n += 1
        }
        return candidate
    }
}

/// `run.json`: what ran, where, with what, and how it ended; rewritten atomically as the run goes.
struct RunRecord {
    var fields = JSONObject()

    mutating func set(_ key: String, _ value: JSONValue) { fields[key] = value }

    func write(to url: URL) {
        try? AtomicFile.write(Data((JSONValue.object(fields).serialized(pretty: true) + "\n").utf8), to: url.path)
    }

    static func isoNow() -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: Date())
    }
}

/// One epoch's line of `metrics.jsonl`.
public struct EpochRecord: Sendable, Equatable {
    public var epoch: Int
    /// `loss`, the metrics, their `val_` forms, in log order.
    public var values: [(String, Double)]
    public var lr: Double
    public var seconds: Double
    public var samplesPerSecond: Double

    public static func == (a: EpochRecord, b: EpochRecord) -> Bool {
        a.epoch == b.epoch && a.values.map(\.0) == b.values.map(\.0) && a.values.map(\.1) == b.values.map(\.1) && a.lr == b.lr
    }

    public subscript(key: String) -> Double? { values.first { $0.0 == key }?.1 }

    var json: JSONValue {
        var o = JSONObject()
        o["epoch"] = .int(epoch)
        for (k, v) in values { o[k] = .double(v) }
        o["lr"] = .double(lr)
        o["epoch_s"] = .double((seconds * 1000).rounded() / 1000)
        o["samples_per_s"] = .double(samplesPerSecond.rounded())
        return .object(o)
    }

    init(epoch: Int, values: [(String, Double)], lr: Double, seconds: Double, samplesPerSecond: Double) {
        self.epoch = epoch; self.values = values; self.lr = lr; self.seconds = seconds; self.samplesPerSecond = samplesPerSecond
    }

    init?(json: JSONValue) {
        guard let o = json.objectValue, let e = o["epoch"]?.intValue else { return nil }
        epoch = e
        lr = o["lr"]?.number ?? 0
        seconds = o["epoch_s"]?.number ?? 0
        samplesPerSecond = o["samples_per_s"]?.number ?? 0
        values = o.pairs.filter { !["epoch", "lr", "epoch_s", "samples_per_s"].contains($0.0) }.compactMap { k, v in v.number.map { (k, $0) } }
    }

    /// The records of a `metrics.jsonl`.
    public static func read(_ url: URL) -> [EpochRecord] {
        guard let text = try? String(contentsOf: url, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in (try? JSONParser.parse(String(line))).flatMap(EpochRecord.init(json:)) }
    }
}
