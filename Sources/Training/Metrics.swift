import NN
import TensorCore

/// A metric over class scores, summed per sample so epochs average per sample, not per batch
/// (a short last batch counts for what it holds).
public protocol Metric: Sendable {
    /// The name in logs and metrics.jsonl (`accuracy`; validation adds `val_`).
    var name: String { get }
    /// The metric summed over a batch (for accuracy: the number of correct predictions), from
    /// scores `[B, classes]` in row-major order and one label per sample.
    func batchSum(scores: UnsafeBufferPointer<Float>, classes: Int, labels: UnsafeBufferPointer<Int64>) -> Double
}

/// How many scores of a row rank above the label's, with ties broken toward the lower index as
/// `argmax` breaks them: 0 means the prediction is the label.
@inline(__always)
func rankOfLabel(_ row: UnsafePointer<Float>, classes: Int, label: Int) -> Int {
    guard label >= 0 && label < classes else { return classes }
    let target = row[label]
    var rank = 0
    for j in 0..<classes {
        let v = row[j]
        if v > target || (v == target && j < label) || (v.isNaN && !target.isNaN) { rank += 1 }
    }
    return rank
}

/// pytorch-template's `accuracy`: the fraction of samples whose argmax is the label.
public struct Accuracy: Metric {
    public let name = "accuracy"
    public init() {}
    public func batchSum(scores: UnsafeBufferPointer<Float>, classes: Int, labels: UnsafeBufferPointer<Int64>) -> Double {
        guard let base = scores.baseAddress else { return 0 }
        var correct = 0
        for i in 0..<labels.count where rankOfLabel(base + i * classes, classes: classes, label: Int(labels[i])) == 0 { correct += 1 }
        return Double(correct)
    }
}

/// pytorch-template's `top_k_acc` (k = 3 by default): the fraction of samples whose label is
/// among the k highest scores.
public struct TopKAccuracy: Metric {
    public let name: String
    public let k: Int
    public init(k: Int = 3, name: String = "top_k_acc") { self.k = k; self.name = name }
    public func batchSum(scores: UnsafeBufferPointer<Float>, classes: Int, labels: UnsafeBufferPointer<Int64>) -> Double {
        guard let base = scores.baseAddress else { return 0 }
        var correct = 0
        for i in 0..<labels.count where rankOfLabel(base + i * classes, classes: classes, label: Int(labels[i])) < k { correct += 1 }
        return Double(correct)
    }
}

/// Sums of the loss and metrics over samples; `averages` divides by the sample count.
public struct MetricTotals: Sendable, Equatable {
    public var samples = 0
    public var lossSum = 0.0
    public var sums: [String: Double] = [:]

    public init() {}

    /// Adds a batch: its mean loss (weighted by its size) and each metric's sum.
    public mutating func add(batchSize: Int, meanLoss: Double, metricSums: [String: Double]) {
        samples += batchSize
        lossSum += meanLoss * Double(batchSize)
        for (k, v) in metricSums { sums[k, default: 0] += v }
    }

    /// `["loss": …, "accuracy": …]`, each averaged per sample (empty when no samples).
    public func averages(metricNames: [String], prefix: String = "") -> [(String, Double)] {
        guard samples > 0 else { return [] }
        let n = Double(samples)
        return [(prefix + "loss", lossSum / n)] + metricNames.map { (prefix + $0, (sums[$0] ?? 0) / n) }
    }
}

/// Computes the loss and metric sums of model outputs.
struct Scorer {
    let loss: any Loss
    let metrics: [any Metric]

    /// Metric sums for a batch of scores `[B, C]` (C ≥ 1) and labels `[B]`.
    func metricSums(scores: Tensor, labels: Tensor) -> [String: Double] {
        guard !metrics.isEmpty else { return [:] }
        let s = noGrad { scores.detach().to(.float32).contiguous() }
        let classes = s.ndim == 2 ? s.shape[1] : 1
        let y = labels.scalars(as: Int64.self)
        var out: [String: Double] = [:]
        s.withUnsafeBufferPointer(as: Float.self) { sp in
            y.withUnsafeBufferPointer { yp in
                for m in metrics { out[m.name] = m.batchSum(scores: sp, classes: classes, labels: yp) }
            }
        }
        return out
    }
}

extension ComponentRegistry {
    static func lossArgs(labelSmoothing: Bool) -> [ArgSpec] {
        var specs = [ArgSpec("weight", .numberList(.nonNegative), default: .null)]
        if labelSmoothing { specs.append(ArgSpec("label_smoothing", .number(.unit), default: .double(0))) }
        return specs
    }

    static let checkLossWeight: @Sendable (Args, Int, ConfigReader, ConfigPath) -> Void = { a, classes, reader, path in
        let w = a.doubleList("weight")
        if a["weight"] != .null && w.count != classes {
            reader.fail(path + "args" + "weight", "expected one weight per class (\(classes)), got \(w.count)")
        }
    }

    static func weightTensor(_ a: Args) -> Tensor? {
        let w = a.doubleList("weight")
        return w.isEmpty ? nil : Tensor(shape: [w.count], scalars: w.map { Float($0) })
    }

    static let builtinLosses: [LossType] = {
        let crossEntropy: @Sendable (Args) -> any Loss = { a in
            CrossEntropyLoss(weight: weightTensor(a), labelSmoothing: a.double("label_smoothing"))
        }
        let nll: @Sendable (Args) -> any Loss = { a in NLLLoss(weight: weightTensor(a)) }
        return [
            LossType(name: "nll_loss", args: lossArgs(labelSmoothing: false), check: checkLossWeight, build: nll),
            LossType(name: "NLLLoss", args: lossArgs(labelSmoothing: false), check: checkLossWeight, build: nll),
            LossType(name: "cross_entropy", args: lossArgs(labelSmoothing: true), check: checkLossWeight, build: crossEntropy),
            LossType(name: "CrossEntropyLoss", args: lossArgs(labelSmoothing: true), check: checkLossWeight, build: crossEntropy),
        ]
    }()

    static let builtinMetrics: [MetricType] = [
        MetricType(name: "accuracy", args: [], build: { _ in Accuracy() }),
        MetricType(name: "top_k_acc", args: [ArgSpec("k", .integer(min: 1), default: .int(3))],
                   check: { a, classes, reader, path in
                       if a.int("k") > classes {
                           reader.fail(path, "top_k_acc with k = \(a.int("k")) needs at least \(a.int("k")) classes; the model gives \(classes)")
                       }
                   },
                   build: { a in TopKAccuracy(k: a.int("k")) }),
    ]
}
