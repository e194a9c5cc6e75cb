/// Which checkpoints an epoch writes and which `epoch-N/` folders it retires — `trainer`'s
/// save_period, save_top_k, save_last and monitor as one decision, apart from the file writing.
public struct CheckpointPolicy: Sendable, Equatable {
    /// Write `epoch-N/` every this many epochs (0: never).
    public var savePeriod: Int
    /// Keep the `epoch-N/` checkpoints of the k best epochs by the monitored metric (0: off).
    public var saveTopK: Int
    public var saveLast: Bool
    public var monitor: Monitor

    public init(savePeriod: Int, saveTopK: Int, saveLast: Bool, monitor: Monitor) {
        self.savePeriod = savePeriod; self.saveTopK = saveTopK; self.saveLast = saveLast; self.monitor = monitor
    }

    public init(_ t: TrainerSettings) {
        self.init(savePeriod: t.savePeriod, saveTopK: t.saveTopK, saveLast: t.saveLast, monitor: t.monitor)
    }

    /// A checkpoint folder to write: its kind as events name it (`best`, `epoch`, `last`) and its name.
    public struct Target: Sendable, Equatable {
        public var kind: String
        public var name: String
        public init(kind: String, name: String) { self.kind = kind; self.name = name }
    }

    /// What to do after an epoch.
    public struct Decision: Sendable, Equatable {
        /// Folders to write, in this order.
        public var save: [Target]
        /// The top-k list after this epoch, best first (the train state keeps it).
        public var topK: [TrainState.TopKEntry]
        /// Epochs whose `epoch-N/` folder falls out of the top k and is not a periodic one.
        public var remove: [Int]
    }

    /// Whether `epoch` is one save_period keeps.
    public func isPeriodic(_ epoch: Int) -> Bool { savePeriod > 0 && epoch % savePeriod == 0 }

    /// `best/` when the monitored metric improved, `epoch-N/` on a period or in the top k, `last/`
    /// unless turned off; `score` is the epoch's monitored value (nil when nothing is monitored).
    public func decide(epoch: Int, improved: Bool, score: Double?, topK: [TrainState.TopKEntry]) -> Decision {
        var save: [Target] = []
        if improved { save.append(Target(kind: "best", name: "best")) }
        var evicted: [Int] = []
        var inTopK = false
        var list = topK
        if saveTopK > 0, let score, score.isFinite {
            let monitor = self.monitor
            let better: (TrainState.TopKEntry, TrainState.TopKEntry) -> Bool = { a, b in
                if a.score != b.score {
                    if case .max = monitor { return a.score > b.score } else { return a.score < b.score }
                }
                return a.epoch < b.epoch
            }
            list = topK.filter { $0.epoch != epoch } + [TrainState.TopKEntry(epoch: epoch, score: score)]
            list.sort(by: better)
            while list.count > saveTopK { evicted.append(list.removeLast().epoch) }
            inTopK = list.contains { $0.epoch == epoch }
        }
        if isPeriodic(epoch) || inTopK { save.append(Target(kind: "epoch", name: "epoch-\(epoch)")) }
        if saveLast { save.append(Target(kind: "last", name: "last")) }
        return Decision(save: save, topK: list, remove: evicted.filter { $0 != epoch && !isPeriodic($0) })
    }

    /// What a stop on request writes: `last/`, always (it is what `--resume auto` picks up).
    public var onStop: [Target] { [Target(kind: "last", name: "last")] }
}
