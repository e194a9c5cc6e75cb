import Data
import Foundation
import NN
import TensorCore

/// What `ferry test` was asked to evaluate.
public struct TestRequest {
    /// A checkpoint folder, its `model.safetensors`, or a run folder (then `best/`, else `last/`).
    public var checkpoint: String
    /// The config; by default the run folder's `config.json`.
    public var configFile: String?
    public var overrides: [ConfigOverride] = []
    /// Samples per batch (pytorch-template's test.py uses 512).
    public var batchSize = 512
    public var registry: ComponentRegistry = .standard

    public init(checkpoint: String) { self.checkpoint = checkpoint }
}

/// Loss and metrics of a checkpoint on the test split, averaged per sample.
public struct TestReport: Sendable {
    public let checkpoint: URL
    public let configFile: String
    public let samples: Int
    /// `loss`, then the config's metrics.
    public let metrics: [(String, Double)]

    public subscript(key: String) -> Double? { metrics.first { $0.0 == key }?.1 }

    public var json: JSONValue {
        .object(JSONObject([("checkpoint", .string(checkpoint.path)), ("config", .string(configFile)), ("samples", .int(samples)),
                            ("metrics", .object(JSONObject(metrics.map { ($0.0, JSONValue.double($0.1)) })))]))
    }
}

/// `ferry test`: pytorch-template's test.py — the checkpoint's model on the test split.
public enum Evaluation {
    public static func run(_ request: TestRequest) throws -> TestReport {
        let (weights, checkpoint) = try locate(request.checkpoint)
        var configFile = request.configFile
        if configFile == nil, let home = RunDirectory.containing(checkpoint: checkpoint) {
            let candidate = home.appendingPathComponent("config.json").path
            if FileManager.default.fileExists(atPath: candidate) { configFile = candidate }
        }
        guard let configFile else {
            throw TrainingError.nothingToResume("\(request.checkpoint) is not inside a run folder: give the config with --config")
        }
        let plan = try TrainingPlan.load(file: configFile, overrides: request.overrides, registry: request.registry, split: .test)
        let config = plan.config
        var dataset: AnyDataset
        do { dataset = try plan.data.load(config.dataLoader.args, plan.dataSplit) } catch { throw TrainingError.data("\(error)") }
        if let limit = config.dataLoader.args.optionalInt("limit"), limit < dataset.count {
            dataset = AnyDataset(Subset(dataset, indices: Array(0..<limit)))
        }
        let loader = DataLoader(dataset, batchSize: max(1, request.batchSize), shuffle: false, prefetch: config.dataLoader.args.int("prefetch"))
        // The initial weights are replaced by the checkpoint's; draw them from a private generator.
        let model = GlobalRandom.withSeed(0) { plan.buildModel() }
        do { try model.loadStateDict(try Checkpoint.readModel(weights), strict: true) } catch let e as TrainingError { throw e } catch {
            throw TrainingError.checkpoint(path: checkpoint.path, reason: "\(error)")
        }
        let scorer = plan.buildScorer()
        model.eval()
        let totals = noGrad { () -> MetricTotals in
            var totals = MetricTotals()
            for (x, y) in loader.batches(epoch: 0) {
                let output = model(x)
                totals.add(batchSize: y.shape[0], meanLoss: scorer.loss(output, y).item(), metricSums: scorer.metricSums(scores: output, labels: y))
            }
            return totals
        }
        return TestReport(checkpoint: weights, configFile: configFile, samples: totals.samples,
                          metrics: totals.averages(metricNames: config.metricNames))
    }

    /// The weights a path names (a safetensors file, or a checkpoint folder: itself or a run
    /// folder's best/last) and the checkpoint folder they are in.
    static func locate(_ path: String) throws -> (weights: URL, folder: URL) {
        let url = URL(fileURLWithPath: path).standardizedFileURL
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: url.path, isDirectory: &isDir) else {
            throw TrainingError.checkpoint(path: path, reason: "no such file or folder")
        }
        if !isDir.boolValue { return (url, url.deletingLastPathComponent()) }
        if fm.fileExists(atPath: url.appendingPathComponent(Checkpoint.modelFile).path) { return (url, url) }
        for name in ["best", "last"] {
            let dir = Checkpoint.resolve(url.appendingPathComponent("checkpoints").appendingPathComponent(name))
            if fm.fileExists(atPath: dir.appendingPathComponent(Checkpoint.modelFile).path) { return (dir, dir) }
        }
        throw TrainingError.checkpoint(path: path, reason: "no \(Checkpoint.modelFile) there — pass a checkpoint folder (saved/NAME/RUNID/checkpoints/best) or a run folder")
    }
}
