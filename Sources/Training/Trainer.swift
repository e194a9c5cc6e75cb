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
    let plan: TrainingPlan
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
    /// Chosen when the run folder opens (the train log and run.json name it).
    private(set) var device: Device = .cpu

    init(plan: TrainingPlan, run: RunDirectory, resumeFrom: URL?, request: TrainRequest) throws {
        self.plan = plan
        let config = plan.config
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
            let parts = try prepare()
            events?.start(totalEpochs: config.trainer.epochs, startEpoch: state.epoch + 1, stepsPerEpoch: parts.trainLoader.count,
                          runDirectory: run.url, runID: run.runID, device: device.description, environment: request.environment)
            status = try loop(parts)
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
        let status = Device.cudaDriverStatus
        let choice = try DevicePlan.choose(nGPU: config.nGPU, requested: request.device, available: Device.cudaDeviceCount, driver: status.detail)
        for w in choice.warnings { console.warning(w) }
        for n in choice.notes { console.info(n + (choice.device == .cpu ? "" : " (\(status.detail))")) }
        device = choice.device
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
        record.set("device", .string(device.description))
        record.set("resumed_from", resumeFrom.map { .string($0.path) } ?? .null)
        if let job = request.environment[RunEnvironment.jobID], !job.isEmpty { record.set("job_id", .string(job)) }
        record.set("epochs_planned", .int(config.trainer.epochs))
        record.set("epochs_completed", .int(state.epoch))
        record.write(to: run.runJSON)
    }

    /// Loads the data and builds model, optimizer and scheduler; on resume, loads their states.
    private func prepare() throws -> TrainingParts {
        let loaderArgs = config.dataLoader.args
        if let workers = loaderArgs.optionalInt("num_workers"), workers > 1 {
            console.warning("data_loader.args.num_workers is \(workers): ferry builds batches on one background thread (prefetch \(loaderArgs.int("prefetch"))), not \(workers) worker processes.")
        }

        // Data.
        var dataset: AnyDataset
        do { dataset = try plan.data.load(loaderArgs, plan.dataSplit) } catch {
            throw TrainingError.data("\(error)")
        }
        if let limit = loaderArgs.optionalInt("limit"), limit < dataset.count {
            dataset = AnyDataset(Subset(dataset, indices: Array(0..<limit)))
        }
        guard dataset.sampleShape == config.facts.sampleShape else {
            throw TrainingError.data("\(config.dataLoader.type) gave samples of shape \(dataset.sampleShape), expected \(config.facts.sampleShape)")
        }
        // The split's sizes are the plan's, from the data loader's facts: the data must agree.
        let validationCount = plan.validationCount
        guard dataset.count == plan.sampleCount else {
            throw TrainingError.data("\(config.dataLoader.type) gave \(dataset.count) samples, expected \(plan.sampleCount)")
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
        let trainLoader = DataLoader(trainSet, batchSize: batchSize, shuffle: loaderArgs.bool("shuffle"), seed: state.seed,
                                 dropLast: loaderArgs.bool("drop_last"), prefetch: loaderArgs.int("prefetch"))
        let validLoader = validSet.map { DataLoader($0, batchSize: batchSize, shuffle: false, prefetch: loaderArgs.int("prefetch")) }

        // Model, optimizer, scheduler, loss, metrics.
        Tensor.manualSeed(state.seed)   // the process-wide generator, or the run's own (scoped)
        let model = plan.buildModel()
        model.to(device)   // in place, before the optimizer: its state is made on the device
        let optimizer = plan.buildOptimizer(for: model)
        let scheduler = plan.buildScheduler(for: optimizer)
        let scorer = plan.buildScorer()
        let parts = TrainingParts(model: model, optimizer: optimizer, scheduler: scheduler, scorer: scorer, trainLoader: trainLoader,
                                  validLoader: validLoader, device: device,
                                  step: TrainingStep(model: model, optimizer: optimizer, scheduler: scheduler, scorer: scorer,
                                                     gradClip: config.trainer.gradClip, schedulerInterval: config.schedulerInterval))

        console.info("\(config.arch.type): \(model.parameterCount) trainable parameters; \(trainSet.count) training samples"
                     + (validSet.map { ", \($0.count) validation" } ?? "") + "; \(trainLoader.count) steps an epoch")
        for (name, t) in model.namedParameters() { console.debug("    \(name) \(t.shape)") }
        console.info("run folder: \(run.url.path)")

        if let resumeFrom, let loaded { try resume(from: resumeFrom, loaded, into: parts) }
        return parts
    }

    private func resume(from checkpoint: URL, _ loaded: Checkpoint.LoadedState, into parts: TrainingParts) throws {
        let (model, optimizer, scheduler) = (parts.model, parts.optimizer, parts.scheduler)
        // A stop after an epoch's last batch saves batch_in_epoch == steps; more cannot be skipped (it would spin).
        let steps = parts.trainLoader.count
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
        if let d = loaded.state.deviceRNG {
            GlobalRandom.deviceState = d
        } else if device != .cpu {
            console.warning("the checkpoint has no device generator state (rng.cuda_state); dropout on \(device) will draw differently than an uninterrupted run")
        }
        let position = state.batchInEpoch > 0 ? " (step \(state.batchInEpoch) of epoch \(state.epoch + 1))" : ""
        console.info("Checkpoint loaded: \(checkpoint.path). Resume training from epoch \(state.epoch + 1)\(position)")
    }

    // MARK: - Loop

    private func loop(_ parts: TrainingParts) throws -> TrainStatus {
        let (model, optimizer, scheduler, scorer, trainLoader) = (parts.model, parts.optimizer, parts.scheduler, parts.scorer, parts.trainLoader)
        let epochs = config.trainer.epochs
        guard state.epoch < epochs else {
            console.info("already trained \(state.epoch) of \(epochs) epochs; raise trainer.epochs (--epochs) to train more")
            return .succeeded
        }
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
                    try saveStopCheckpoint(parts, epochInProgress: epoch)
                    return .stopped
                }
                guard let batch = iterator.nextBatch() else { break }
                let (hx, hy) = batch.tensors()
                let (x, y) = (hx.to(parts.device), hy.to(parts.device))
                let (output, lossValue) = parts.step(x, y)
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
            if let validLoader = parts.validLoader {
                guard let v = evaluate(parts, validLoader, stoppable: true) else {
                    try saveStopCheckpoint(parts, epochInProgress: epoch)
                    return .stopped
                }
                validation = v
            }
            console.clearBar()
            let lrUsed = optimizer.lr
            let values = totals.averages(metricNames: config.metricNames) + (validation?.averages(metricNames: config.metricNames, prefix: "val_") ?? [])
            func value(_ key: String?) -> Double? { key.flatMap { k in values.first { $0.0 == k }?.1 } }

            if config.schedulerInterval == .epoch { scheduler?.step(metrics: value(config.schedulerMetric)) }

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
            try saveEpochCheckpoints(parts, epoch: epoch, improved: improved, score: score)

            let earlyStop = config.trainer.earlyStop
            if earlyStop > 0 && monitor != .off && state.notImproved >= earlyStop {
                console.info("Validation performance didn't improve for \(earlyStop) epochs. Training stops.")
                return .succeeded
            }
            if stop.isRequested && epoch < epochs {
                if !config.trainer.saveLast { try saveStopCheckpoint(parts, epochInProgress: epoch + 1) }
                return .stopped
            }
        }
        return .succeeded
    }

    /// Loss and metric sums over a loader in evaluation mode; nil when a stop was requested.
    private func evaluate(_ parts: TrainingParts, _ loader: DataLoader<AnyDataset>, stoppable: Bool) -> MetricTotals? {
        let (model, scorer) = (parts.model, parts.scorer)
        model.eval()
        defer { model.train() }
        let stop = request.stop
        return noGrad { () -> MetricTotals? in
            var totals = MetricTotals()
            var iterator = loader.batches(epoch: 0).makeIterator()
            while let batch = iterator.nextBatch() {
                if stoppable && stop.isRequested { return nil }
                let (hx, hy) = batch.tensors()
                let (x, y) = (hx.to(parts.device), hy.to(parts.device))
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

    private func stateData(_ parts: TrainingParts) -> Data {
        var s = state
        s.rng = GlobalRandom.state
        s.deviceRNG = GlobalRandom.deviceState
        return Checkpoint.encodeState(s, optimizer: parts.optimizer, optimizerType: config.optimizer.type, scheduler: parts.scheduler,
                                      schedulerType: config.lrScheduler?.type, monitor: config.trainer.monitor)
    }

    private func save(_ parts: TrainingParts, _ targets: [CheckpointPolicy.Target], epoch: Int) throws {
        guard !targets.isEmpty else { return }
        let files = [(Checkpoint.modelFile, SafeTensors.encode(parts.model.stateDict(), metadata: ["format": "pt"])), (Checkpoint.stateFile, stateData(parts))]
        for target in targets {
            let dir = run.checkpoint(target.name)
            try Checkpoint.write(files, to: dir)
            events?.checkpoint(kind: target.kind, directory: dir, epoch: epoch)
            console.debug("Saving checkpoint: \(dir.path) ...")
        }
    }

    private func saveStopCheckpoint(_ parts: TrainingParts, epochInProgress: Int) throws {
        console.clearBar()
        try save(parts, plan.checkpoints.onStop, epoch: state.epoch)
        let position = state.batchInEpoch > 0 ? "step \(state.batchInEpoch) of epoch \(epochInProgress)" : "the end of epoch \(state.epoch)"
        console.info("Stopped on request at \(position); saved \(run.checkpoint("last").path). Resume with --resume auto or --resume \(run.checkpoint("last").path)")
    }

    private func saveEpochCheckpoints(_ parts: TrainingParts, epoch: Int, improved: Bool, score: Double?) throws {
        let decision = plan.checkpoints.decide(epoch: epoch, improved: improved, score: score, topK: state.topK)
        state.topK = decision.topK
        try save(parts, decision.save, epoch: epoch)
        if improved { console.info("Saving current best: \(run.checkpoint("best").path) ...") }
        for e in decision.remove {
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
