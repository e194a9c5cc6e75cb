import Data
import Foundation
import RunContract
import System
import NN
import Optim
import TensorCore

/// The training loop: pytorch-template's `BaseTrainer`/`Trainer` without its known defects —
/// `best/` is saved whenever the monitored metric improves (not only on save_period epochs),
/// metrics are averaged per sample, ReduceLROnPlateau steps on its metric, and the scheduler, the
/// random generator, the early-stop counter and the position within an epoch are saved so a
/// resume continues the same run folder bit for bit.
final class Trainer {
    let config: TrainConfig
    let run: RunDirectory
    let resumeFrom: URL?
    let request: TrainRequest
    let console: Console
    private(set) var state: TrainState
    private let loaded: Checkpoint.LoadedState?

    private var events: EventLog?
    private var tensorboard: TensorBoardWriter?
    private var metricsFile: LineFile?
    private var record = RunRecord()
    private var history: [EpochRecord] = []

    private var model: (any Module)!
    private var optimizer: (any Optimizer)!
    private var scheduler: (any LRScheduler)?
    private var scorer: Scorer!
    private var trainLoader: DataLoader<AnyDataset>!
    private var validLoader: DataLoader<AnyDataset>?

    init(config: TrainConfig, run: RunDirectory, resumeFrom: URL?, request: TrainRequest) throws {
        self.config = config
        self.run = run
        self.resumeFrom = resumeFrom
        self.request = request
        console = Console(sink: request.console, verbosity: config.trainer.verbosity)
        var loaded: Checkpoint.LoadedState?
        if let resumeFrom {
            let file = resumeFrom.appendingPathComponent(Checkpoint.stateFile)
            loaded = try Checkpoint.decodeState(file)
            // A config's seed is an integer 0...Int.max, and the run folder records it as one.
            if let seed = loaded?.state.seed, seed > UInt64(Int.max) {
                throw TrainingError.checkpoint(path: file.path, reason: "progress.seed is \(Int64(bitPattern: seed)), expected 0...\(Int.max) — the checkpoint is damaged; resume from another checkpoint or start afresh")
            }
        }
        self.loaded = loaded
        let seed = loaded?.state.seed ?? config.seed ?? UInt64.random(in: 0..<(1 << 31))
        state = loaded?.state ?? TrainState(seed: seed, monitorBest: config.trainer.monitor.worst)
    }

    // MARK: - Run

    func execute() -> TrainOutcome {
        do {
            try openRunDirectory()
        } catch {
            let e = error as? TrainingError ?? .io(path: run.url.path, reason: "\(error)")
            console.error(e.description)
            return TrainOutcome(status: .failed, runDirectory: run.url, error: e, config: config)
        }
        var status = TrainStatus.failed
        var failure: TrainingError?
        do {
            try prepare()
            events?.start(totalEpochs: config.trainer.epochs, startEpoch: state.epoch + 1, stepsPerEpoch: trainLoader.count,
                          runDirectory: run.url, runID: run.runID, environment: request.environment)
            status = try loop()
        } catch {
            failure = error as? TrainingError ?? .data("\(error)")
            console.error(failure?.description ?? "\(error)")
        }
        finish(status: status, failure: failure)
        return TrainOutcome(status: status, runDirectory: run.url, epochsCompleted: state.epoch, lastRecord: history.last,
                            error: failure, config: config)
    }

    /// Creates the run folder and its files; on resume, drops metrics of epochs the checkpoint has not seen.
    private func openRunDirectory() throws {
        let fm = FileManager.default
        do { try fm.createDirectory(at: run.checkpoints, withIntermediateDirectories: true) } catch {
            throw TrainingError.io(path: run.checkpoints.path, reason: "\(error)")
        }
        console.logFile = try LineFile(url: run.trainLog)
        var resolved = config.json
        resolved["seed"] = .int(Int(state.seed))
        do { try AtomicFile.write(Data((JSONValue.object(resolved).serialized(pretty: true) + "\n").utf8), to: run.config.path) } catch {
            throw TrainingError.io(path: run.config.path, reason: "\(error)")
        }
        // Metrics of epochs after the checkpoint would be repeated by this run: keep only those before.
        history = EpochRecord.read(run.metrics).filter { $0.epoch <= state.epoch }
        let kept = history.map { $0.json.serialized(pretty: false) + "\n" }.joined()
        do { try AtomicFile.write(Data(kept.utf8), to: run.metrics.path) } catch { throw TrainingError.io(path: run.metrics.path, reason: "\(error)") }
        metricsFile = try LineFile(url: run.metrics)
        let eventsURL = request.environment[RunEnvironment.events].flatMap { $0.isEmpty ? nil : URL(fileURLWithPath: $0) } ?? run.events
        events = try EventLog(url: eventsURL, outputRoot: run.outputRoot)
        if config.trainer.tensorboard {
            try TensorBoardWriter.dropScalars(in: run.url, afterStep: state.globalStep)
            tensorboard = try TensorBoardWriter(directory: run.url)
        }

        record.set("status", .string("running"))
        record.set("name", .string(config.name))
        record.set("run_id", .string(run.runID))
        record.set("host", .string(ProcessInfo.processInfo.hostName))
        record.set("pid", .int(Int(getpid())))
        record.set("command", .array(request.commandLine.map(JSONValue.string)))
        record.set("cwd", .string(fm.currentDirectoryPath))
        record.set("config_file", .string(config.file))
        record.set("started", .string(RunRecord.isoNow()))
        var versions = JSONObject(request.versions.sorted { $0.key < $1.key }.map { ($0.key, JSONValue.string($0.value)) })
        versions["os"] = .string(ProcessInfo.processInfo.operatingSystemVersionString)
        if let dnnl = try? DNNL.versionString() { versions["onednn"] = .string(dnnl) }
        record.set("versions", .object(versions))
        record.set("seed", .int(Int(state.seed)))
        record.set("threads", .int(Threading.threadCount))
        record.set("resumed_from", resumeFrom.map { .string($0.path) } ?? .null)
        if let job = request.environment[RunEnvironment.jobID], !job.isEmpty { record.set("job_id", .string(job)) }
        record.set("epochs_planned", .int(config.trainer.epochs))
        record.set("epochs_completed", .int(state.epoch))
        record.write(to: run.runJSON)
    }

    /// Loads the data and builds model, optimizer and scheduler; on resume, loads their states.
    private func prepare() throws {
        let registry = request.registry
        if config.nGPU > 0 {
            console.warning(Device.isCUDAAvailable
                ? "n_gpu is \(config.nGPU), but ferry's engine runs on the CPU for now; training on the CPU."
                : "There's no GPU available on this machine, training will be performed on CPU.")
        }
        let loaderArgs = config.dataLoader.args
        if let workers = loaderArgs.optionalInt("num_workers"), workers > 1 {
            console.warning("data_loader.args.num_workers is \(workers): ferry builds batches on one background thread (prefetch \(loaderArgs.int("prefetch"))), not \(workers) worker processes.")
        }

        // Data.
        guard let dataType = registry.dataLoaders[config.dataLoader.type] else {
            throw TrainingError.data("no data loader \(config.dataLoader.type) in the registry")
        }
        let split: DataSplit = loaderArgs["training"]?.boolValue == false ? .test : .train
        var dataset: AnyDataset
        do { dataset = try dataType.load(loaderArgs, split) } catch {
            throw TrainingError.data("\(error)")
        }
        if let limit = loaderArgs.optionalInt("limit"), limit < dataset.count {
            dataset = AnyDataset(Subset(dataset, indices: Array(0..<limit)))
        }
        guard dataset.sampleShape == config.facts.sampleShape else {
            throw TrainingError.data("\(config.dataLoader.type) gave samples of shape \(dataset.sampleShape), expected \(config.facts.sampleShape)")
        }
        let validationCount = validationSize(loaderArgs["validation_split"] ?? .double(0), of: dataset.count)
        guard validationCount < dataset.count else {
            throw TrainingError.data("data_loader.args.validation_split asks for \(validationCount) samples, the data has \(dataset.count)")
        }
        var trainSet = dataset
        var validSet: AnyDataset?
        if validationCount > 0 {
            // pytorch-template splits with a fixed seed (0), so every run validates on the same samples.
            let parts = try randomSplit(dataset, lengths: [validationCount, dataset.count - validationCount], seed: 0)
            validSet = AnyDataset(parts[0])
            trainSet = AnyDataset(parts[1])
        }
        let batchSize = config.batchSize
        trainLoader = DataLoader(trainSet, batchSize: batchSize, shuffle: loaderArgs.bool("shuffle"), seed: state.seed,
                                 dropLast: loaderArgs.bool("drop_last"), prefetch: loaderArgs.int("prefetch"))
        if let validSet { validLoader = DataLoader(validSet, batchSize: batchSize, shuffle: false, prefetch: loaderArgs.int("prefetch")) }

        // Model, optimizer, scheduler, loss, metrics.
        Tensor.manualSeed(state.seed)   // the process-wide generator, or the run's own (scoped)
        guard let archType = registry.models[config.arch.type], let optType = registry.optimizers[config.optimizer.type],
              let lossType = registry.losses[config.loss.type] else {
            throw TrainingError.data("the registry lacks a type the config names")
        }
        model = archType.build(config.arch.args, [-1] + config.facts.sampleShape, registry)
        optimizer = optType.build(config.optimizer.args, model.parameters())
        if let s = config.lrScheduler, let sType = registry.schedulers[s.type] { scheduler = sType.build(s.args, optimizer, registry) }
        scorer = Scorer(loss: lossType.build(config.loss.args),
                        metrics: config.metrics.compactMap { m in registry.metrics[m.type]?.build(m.args) })

        console.info("\(config.arch.type): \(model.parameterCount) trainable parameters; \(trainSet.count) training samples"
                     + (validSet.map { ", \($0.count) validation" } ?? "") + "; \(trainLoader.count) steps an epoch")
        for (name, t) in model.namedParameters() { console.debug("    \(name) \(t.shape)") }
        console.info("run folder: \(run.url.path)")

        if let resumeFrom, let loaded { try resume(from: resumeFrom, loaded) }
    }

    private func validationSize(_ v: JSONValue, of count: Int) -> Int {
        switch v {
        case .int(let n): return n
        case .double(let f): return Int(Double(count) * f)
        default: return 0
        }
    }

    private func resume(from checkpoint: URL, _ loaded: Checkpoint.LoadedState) throws {
        // A stop after an epoch's last batch saves batch_in_epoch == steps; more cannot be skipped (it would spin).
        let steps = trainLoader.count
        if state.batchInEpoch > steps {
            throw TrainingError.checkpoint(path: checkpoint.appendingPathComponent(Checkpoint.stateFile).path,
                                           reason: "progress.batch_in_epoch is \(state.batchInEpoch), expected 0...\(steps) (the steps of an epoch here) — "
                                               + "the checkpoint is damaged or was written with another batch_size or dataset; resume from another checkpoint or start afresh")
        }
        let weights = try Checkpoint.readModel(checkpoint)
        do { try model.loadStateDict(weights, strict: true) } catch {
            throw TrainingError.checkpoint(path: checkpoint.path, reason: "\(error)")
        }
        if loaded.optimizerType == config.optimizer.type {
            do { try optimizer.loadStateDict(loaded.optimizer) } catch {
                throw TrainingError.checkpoint(path: checkpoint.path, reason: "\(error)")
            }
        } else {
            console.warning("the checkpoint's optimizer is \(loaded.optimizerType), the config's \(config.optimizer.type): the optimizer starts afresh")
        }
        if let scheduler {
            if loaded.schedulerType == config.lrScheduler?.type {
                scheduler.loadStateDict(loaded.scheduler)
            } else {
                console.warning("the checkpoint's lr_scheduler is \(loaded.schedulerType.isEmpty ? "none" : loaded.schedulerType): the scheduler starts afresh")
            }
        }
        if let seed = config.seed, seed != loaded.state.seed {
            console.warning("the config's seed is \(seed), the checkpoint's \(loaded.state.seed): continuing with the checkpoint's")
        }
        switch loaded.state.rng {
        case let rng? where rng.count == 4 && rng.contains(where: { $0 != 0 }):
            GlobalRandom.state = rng
        default:
            console.warning("the checkpoint has no random generator state for this run; dropout will draw differently than an uninterrupted run")
        }
        let position = state.batchInEpoch > 0 ? " (step \(state.batchInEpoch) of epoch \(state.epoch + 1))" : ""
        console.info("Checkpoint loaded: \(checkpoint.path). Resume training from epoch \(state.epoch + 1)\(position)")
    }

    // MARK: - Loop

    private func loop() throws -> TrainStatus {
        let epochs = config.trainer.epochs
        guard state.epoch < epochs else {
            console.info("already trained \(state.epoch) of \(epochs) epochs; raise trainer.epochs (--epochs) to train more")
            return .succeeded
        }
        let parameters = model.parameters()
        let stop = request.stop
        let logEvery = config.trainer.logEveryNSteps
        let steps = trainLoader.count
        let samples = trainLoader.dataset.count
        for epoch in (state.epoch + 1)...epochs {
            model.train()
            let started = Date()
            var totals = state.batchInEpoch > 0 ? state.partial : MetricTotals()
            var iterator = trainLoader.batches(epoch: epoch - 1).makeIterator()
            for _ in 0..<state.batchInEpoch { _ = iterator.nextBatch() }   // the order is a function of (seed, epoch): skip what was done
            var batchIndex = state.batchInEpoch
            var samplesThisRun = 0, stepsThisRun = 0
            while true {
                if stop.isRequested {
                    state.batchInEpoch = batchIndex
                    state.partial = totals
                    try saveStopCheckpoint(epochInProgress: epoch)
                    return .stopped
                }
                guard let batch = iterator.nextBatch() else { break }
                let (x, y) = batch.tensors()
                optimizer.zeroGrad()
                let output = model(x)
                let loss = scorer.loss(output, y)
                loss.backward()
                switch config.trainer.gradClip {
                case .norm(let maxNorm, let normType)?: GradClip.clipGradNorm(parameters, maxNorm: maxNorm, normType: normType)
                case .value(let v)?: GradClip.clipGradValue(parameters, clipValue: v)
                case nil: break
                }
                optimizer.step()
                if config.schedulerInterval == .step, let scheduler, !(scheduler is ReduceLROnPlateau) { scheduler.step() }
                let lossValue = loss.item()
                totals.add(batchSize: batch.count, meanLoss: lossValue, metricSums: scorer.metricSums(scores: output, labels: y))
                batchIndex += 1
                state.globalStep += 1
                samplesThisRun += batch.count

                let elapsed = Date().timeIntervalSince(started)
                let rate = elapsed > 0 ? Double(samplesThisRun) / elapsed : 0
                if batchIndex % logEvery == 0 || batchIndex == steps {
                    events?.step(epoch: epoch, step: state.globalStep, loss: lossValue, lr: optimizer.lr, samplesPerSecond: rate)
                    tensorboard?.add(scalars: [("step/loss", lossValue), ("step/lr", optimizer.lr)], step: state.globalStep)
                    let done = min(batchIndex * config.batchSize, samples)
                    console.debug(String(format: "Train Epoch: %d [%d/%d (%.0f%%)] Loss: %.6f", epoch, done, samples,
                                         100 * Double(done) / Double(max(samples, 1)), lossValue))
                }
                stepsThisRun += 1
                let remaining = Double(steps - batchIndex) * elapsed / Double(stepsThisRun)
                console.progress(epoch: epoch, epochs: epochs, batch: batchIndex, batches: steps, loss: totals.lossSum / Double(max(totals.samples, 1)),
                                 samplesPerSecond: rate, eta: remaining)
            }
            state.batchInEpoch = batchIndex
            state.partial = totals
            let trainSeconds = Date().timeIntervalSince(started)

            var validation: MetricTotals?
            if let validLoader {
                guard let v = evaluate(validLoader, stoppable: true) else {
                    try saveStopCheckpoint(epochInProgress: epoch)
                    return .stopped
                }
                validation = v
            }
            console.clearBar()
            let lrUsed = optimizer.lr
            let values = totals.averages(metricNames: config.metricNames) + (validation?.averages(metricNames: config.metricNames, prefix: "val_") ?? [])
            func value(_ key: String?) -> Double? { key.flatMap { k in values.first { $0.0 == k }?.1 } }

            if let scheduler, config.schedulerInterval == .epoch {
                if let plateau = scheduler as? ReduceLROnPlateau {
                    plateau.step(metric: value(config.schedulerMetric) ?? .nan)
                } else {
                    scheduler.step()
                }
            }

            var improved = false
            let monitor = config.trainer.monitor
            let score = value(monitor.metric)
            if let score {
                if monitor.improves(score, on: state.monitorBest) {
                    state.monitorBest = score
                    state.notImproved = 0
                    state.bestEpoch = epoch
                    improved = true
                } else {
                    state.notImproved += 1
                }
            }
            state.epoch = epoch
            state.batchInEpoch = 0
            state.partial = MetricTotals()

            let seconds = Date().timeIntervalSince(started)
            let rate = trainSeconds > 0 ? Double(samplesThisRun) / trainSeconds : 0
            logEpoch(EpochRecord(epoch: epoch, values: values, lr: lrUsed, seconds: seconds, samplesPerSecond: rate))
            try saveEpochCheckpoints(epoch: epoch, improved: improved, score: score)

            let earlyStop = config.trainer.earlyStop
            if earlyStop > 0 && monitor != .off && state.notImproved >= earlyStop {
                console.info("Validation performance didn't improve for \(earlyStop) epochs. Training stops.")
                return .succeeded
            }
            if stop.isRequested && epoch < epochs {
                if !config.trainer.saveLast { try saveStopCheckpoint(epochInProgress: epoch + 1) }
                return .stopped
            }
        }
        return .succeeded
    }

    /// Loss and metric sums over a loader in evaluation mode; nil when a stop was requested.
    private func evaluate(_ loader: DataLoader<AnyDataset>, stoppable: Bool) -> MetricTotals? {
        model.eval()
        defer { model.train() }
        let stop = request.stop
        return noGrad { () -> MetricTotals? in
            var totals = MetricTotals()
            var iterator = loader.batches(epoch: 0).makeIterator()
            while let batch = iterator.nextBatch() {
                if stoppable && stop.isRequested { return nil }
                let (x, y) = batch.tensors()
                let output = model(x)
                let loss = scorer.loss(output, y).item()
                totals.add(batchSize: batch.count, meanLoss: loss, metricSums: scorer.metricSums(scores: output, labels: y))
            }
            return totals
        }
    }

    // MARK: - Records

    private func logEpoch(_ r: EpochRecord) {
        history.append(r)
        metricsFile?.append(r.json.serialized(pretty: false))
        var lines = ["    \("epoch".padding(toLength: 15, withPad: " ", startingAt: 0)): \(r.epoch)"]
        for (k, v) in r.values { lines.append("    \(k.padding(toLength: 15, withPad: " ", startingAt: 0)): \(String(format: "%.6g", v))") }
        lines.append("    \("lr".padding(toLength: 15, withPad: " ", startingAt: 0)): \(String(format: "%.6g", r.lr))")
        lines.append("    \("epoch_s".padding(toLength: 15, withPad: " ", startingAt: 0)): \(String(format: "%.1f", r.seconds)) (\(Int(r.samplesPerSecond)) samples/s)")
        console.info(lines.joined(separator: "\n"))
        events?.epoch(r.epoch, metrics: r.values + [("lr", r.lr)], monitor: config.trainer.monitor,
                      best: state.bestEpoch > 0 ? state.monitorBest : nil)
        let scalars = r.values.map { k, v in (tag: k.hasPrefix("val_") ? "\(k.dropFirst(4))/valid" : "\(k)/train", value: v) }
        // At the global step of the epoch's last batch: one x-axis with the step/ scalars, steps that
        // only grow (TensorBoard reports an epoch number after step 900 as out of order).
        tensorboard?.add(scalars: scalars + [(tag: "lr", value: r.lr)], step: state.globalStep)
        tensorboard?.flush()
        writeCurves()
        record.set("epochs_completed", .int(r.epoch))
        record.set("last_metrics", r.json)
        record.write(to: run.runJSON)
    }

    private func writeCurves() {
        let svg = CurvesSVG.render(records: history, metricNames: config.metricNames, totalEpochs: config.trainer.epochs,
                                   title: "\(config.name) — \(run.runID)")
        try? AtomicFile.write(Data(svg.utf8), to: run.curves.path)
    }

    // MARK: - Checkpoints

    private func stateData() -> Data {
        var s = state
        s.rng = GlobalRandom.state
        return Checkpoint.encodeState(s, optimizer: optimizer, optimizerType: config.optimizer.type, scheduler: scheduler,
                                      schedulerType: config.lrScheduler?.type, monitor: config.trainer.monitor)
    }

    private func save(_ kinds: [(kind: String, name: String)], epoch: Int) throws {
        guard !kinds.isEmpty else { return }
        let files = [(Checkpoint.modelFile, SafeTensors.encode(model.stateDict(), metadata: ["format": "pt"])), (Checkpoint.stateFile, stateData())]
        for (kind, name) in kinds {
            let dir = run.checkpoint(name)
            try Checkpoint.write(files, to: dir)
            events?.checkpoint(kind: kind, directory: dir, epoch: epoch)
            console.debug("Saving checkpoint: \(dir.path) ...")
        }
    }

    private func saveStopCheckpoint(epochInProgress: Int) throws {
        console.clearBar()
        try save([("last", "last")], epoch: state.epoch)
        let position = state.batchInEpoch > 0 ? "step \(state.batchInEpoch) of epoch \(epochInProgress)" : "the end of epoch \(state.epoch)"
        console.info("Stopped on request at \(position); saved \(run.checkpoint("last").path). Resume with --resume auto or --resume \(run.checkpoint("last").path)")
    }

    private func saveEpochCheckpoints(epoch: Int, improved: Bool, score: Double?) throws {
        let t = config.trainer
        var kinds: [(kind: String, name: String)] = []
        if improved { kinds.append(("best", "best")) }
        let periodic = { (e: Int) in t.savePeriod > 0 && e % t.savePeriod == 0 }
        var evicted: [Int] = []
        var inTopK = false
        if t.saveTopK > 0, let score, score.isFinite {
            let better: (TrainState.TopKEntry, TrainState.TopKEntry) -> Bool = { a, b in
                if a.score != b.score {
                    if case .max = t.monitor { return a.score > b.score } else { return a.score < b.score }
                }
                return a.epoch < b.epoch
            }
            var list = state.topK.filter { $0.epoch != epoch } + [TrainState.TopKEntry(epoch: epoch, score: score)]
            list.sort(by: better)
            while list.count > t.saveTopK { evicted.append(list.removeLast().epoch) }
            inTopK = list.contains { $0.epoch == epoch }
            state.topK = list
        }
        if periodic(epoch) || inTopK { kinds.append(("epoch", "epoch-\(epoch)")) }
        if t.saveLast { kinds.append(("last", "last")) }
        try save(kinds, epoch: epoch)
        if improved { console.info("Saving current best: \(run.checkpoint("best").path) ...") }
        for e in evicted where e != epoch && !periodic(e) {
            try? FileManager.default.removeItem(at: run.checkpoint("epoch-\(e)"))
        }
    }

    // MARK: - End

    private func finish(status: TrainStatus, failure: TrainingError?) {
        console.clearBar()
        record.set("status", .string(status.rawValue))
        record.set("ended", .string(RunRecord.isoNow()))
        record.set("exit_code", .int(Int(TrainOutcome(status: status).exitCode)))
        record.set("epochs_completed", .int(state.epoch))
        if let failure { record.set("error", .string(failure.description)) }
        if let metric = config.trainer.monitor.metric, state.bestEpoch > 0 {
            record.set("best", .object(JSONObject([("metric", .string(metric)), ("value", .double(state.monitorBest)), ("epoch", .int(state.bestEpoch))])))
        }
        record.write(to: run.runJSON)
        writeCurves()
        tensorboard?.flush()
        events?.end(status: RunEndStatus(rawValue: status.rawValue) ?? .failed, epoch: state.epoch, message: failure?.description)
        switch status {
        case .succeeded: console.info("Finished \(state.epoch) epochs; run folder: \(run.url.path)")
        case .stopped: break
        case .failed, .invalid: console.info("Failed after \(state.epoch) epochs; run folder: \(run.url.path)")
        }
    }
}
