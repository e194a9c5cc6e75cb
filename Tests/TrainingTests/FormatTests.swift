import FerryTestSupport
import Foundation
import NN
import Optim
import TensorCore
import Testing
@testable import Training
import TrainingTestSupport

/// File formats other programs read: TensorBoard event files, safetensors checkpoints.
@Suite struct FormatTests {
    @Test func crc32cKnownAnswers() {
        #expect(TFRecord.crc32c(Array("123456789".utf8)) == 0xE306_9283)   // the CRC-32C check value
        #expect(TFRecord.crc32c([]) == 0)
        #expect(TFRecord.crc32c([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)   // RFC 3720 B.4
        #expect(TFRecord.maskedCRC32C([]) == 0xA282_EAD8)
    }

    @Test func tfrecordFraming() {
        let framed = [UInt8](TFRecord.frame([1, 2, 3]))
        #expect(framed.count == 8 + 4 + 3 + 4)
        #expect(Array(framed[0..<8]) == [3, 0, 0, 0, 0, 0, 0, 0])
        let lengthCRC = framed[8..<12].enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * $1.offset) }
        #expect(lengthCRC == TFRecord.maskedCRC32C([3, 0, 0, 0, 0, 0, 0, 0]))
        #expect(Array(framed[12..<15]) == [1, 2, 3])
    }

    @Test(.enabled(if: Python.path != nil || isCI)) func tensorboardEventsReadByAnIndependentReader() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let writer = try TensorBoardWriter(directory: dir.url, wallTime: 1_700_000_000.25)
        writer.add(scalars: [("loss/train", 0.75), ("accuracy/train", 0.5)], step: 1, wallTime: 1_700_000_001.5)
        writer.add(scalars: [("loss/valid", 1.0 / 3)], step: 2, wallTime: 1_700_000_002)
        writer.add(scalars: [("step/loss", 2.5)], step: 123_456_789_012, wallTime: 1_700_000_003)
        writer.flush()
        #expect(writer.url.lastPathComponent.hasPrefix("events.out.tfevents.1700000000."))
        let out = try Python.runFixture("read_tfevents.py", [writer.url.path])
        #expect(out["records"] as? Int == 4)
        #expect(out["file_version"] as? String == "brain.Event:2")
        let scalars = try #require(out["scalars"] as? [[String: Any]])
        #expect(scalars.map { $0["tag"] as? String ?? "" } == ["loss/train", "accuracy/train", "loss/valid", "step/loss"])
        #expect(scalars.map { $0["step"] as? Int ?? -1 } == [1, 1, 2, 123_456_789_012])
        #expect(scalars.map { $0["value"] as? Double ?? .nan } == [0.75, 0.5, Double(Float(1.0 / 3)), 2.5])
        #expect(scalars.map { $0["wall_time"] as? Double ?? .nan } == [1_700_000_001.5, 1_700_000_001.5, 1_700_000_002, 1_700_000_003])

        // A flipped byte is caught by the reader's own CRC32C.
        var bytes = try Data(contentsOf: writer.url)
        bytes[bytes.count - 6] ^= 0x40
        let bad = dir.path("events.out.tfevents.bad")
        try bytes.write(to: bad)
        let r = try runProcess(try #require(Python.path), [TestPaths.repoRoot.appendingPathComponent("scripts/fixtures/read_tfevents.py").path, bad.path])
        #expect(r.status != 0 && r.stderr.contains("data CRC mismatch"))
    }

    /// A resume from an earlier checkpoint first drops the scalars it will write again: epoch
    /// scalars after its epoch, `step/` scalars after its global step, and a torn last record.
    @Test(.enabled(if: Python.path != nil || isCI)) func resumeDropsTheScalarsItWillWriteAgain() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let writer = try TensorBoardWriter(directory: dir.url, wallTime: 1_700_000_000)
        for epoch in 1...3 {
            for k in 1...2 { writer.add(scalars: [("step/loss", Double(epoch * 10 + k))], step: (epoch - 1) * 20 + k * 10) }
            writer.add(scalars: [("loss/train", Double(epoch)), ("lr", 0.1)], step: epoch * 20)   // the epoch's last global step
        }
        writer.flush()
        let untouched = try TensorBoardWriter(directory: dir.url, wallTime: 1_600_000_000)
        untouched.add(scalars: [("loss/train", 9)], step: 1)
        untouched.flush()
        let untouchedBytes = try Data(contentsOf: untouched.url)
        // A crash in the middle of a write leaves half a record at the end.
        let handle = try FileHandle(forWritingTo: writer.url)
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(TFRecord.frame([1, 2, 3, 4, 5]).prefix(9)))
        try handle.close()

        try TensorBoardWriter.dropScalars(in: dir.url, afterStep: 40)   // resumed from the end of epoch 2
        let out = try Python.runFixture("read_tfevents.py", [writer.url.path])
        let scalars = try #require(out["scalars"] as? [[String: Any]])
        let points = scalars.map { "\($0["tag"] as? String ?? "?")@\($0["step"] as? Int ?? -1)" }
        #expect(points == ["step/loss@10", "step/loss@20", "loss/train@20", "lr@20", "step/loss@30", "step/loss@40", "loss/train@40", "lr@40"])
        #expect(out["file_version"] as? String == "brain.Event:2")
        #expect(try Data(contentsOf: untouched.url) == untouchedBytes, "a file with nothing to drop is left as it was")
    }

    /// A model's state dict plus mixed-width tensors, as a checkpoint holds them.
    func sampleTensors() -> [String: Tensor] {
        let model = GlobalRandom.withSeed(5) { MnistModel() }
        var t = model.stateDict()
        t["progress.epoch"] = Tensor(shape: [], scalars: [Int64(7)])
        t["monitor.best"] = Tensor.full([], value: 0.25, dtype: .float64)
        t["flags"] = Tensor(shape: [3], scalars: [true, false, true])
        return t
    }

    @Test func safetensorsLayout() throws {
        let tensors = sampleTensors()
        let data = [UInt8](SafeTensors.encode(tensors, metadata: ["format": "pt"]))
        let n = Int(data[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        #expect((8 + n) % 8 == 0, "data starts on an 8-byte boundary")
        let header = try #require(try JSONSerialization.jsonObject(with: Data(data[8..<(8 + n)])) as? [String: Any])
        #expect(header["__metadata__"] as? [String: String] == ["format": "pt"])
        var spans: [(Int, Int, String)] = []
        for (name, value) in header where name != "__metadata__" {
            let entry = try #require(value as? [String: Any])
            let offsets = try #require(entry["data_offsets"] as? [Int])
            let size = ["F64": 8, "I64": 8, "F32": 4, "BOOL": 1][entry["dtype"] as? String ?? ""] ?? 0
            #expect(size > 0 && offsets[0] % size == 0 && (8 + n + offsets[0]) % size == 0, "\(name) aligned to its element size")
            #expect(entry["shape"] as? [Int] == tensors[name]?.shape, "\(name)")
            spans.append((offsets[0], offsets[1], name))
        }
        spans.sort { $0.0 < $1.0 }
        var position = 0
        for (begin, end, name) in spans {
            #expect(begin == position, "\(name) follows the previous tensor without a gap")
            position = end
        }
        #expect(8 + n + position == data.count)
        // And it reads back equal.
        let back = try SafeTensors.decode(Data(data)).tensors
        for (k, v) in tensors { #expect(back[k]?.scalars(as: Double.self) == v.scalars(as: Double.self), "\(k)") }
    }

    @Test(.enabled(if: Python.hasNumpy || isCI)) func safetensorsReadByNumpy() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let tensors = sampleTensors()
        let file = dir.path("model.safetensors")
        try SafeTensors.write(tensors, to: file, metadata: ["format": "pt"])
        let out = try Python.runFixture("read_safetensors.py", [file.path])
        #expect(out["metadata"] as? [String: String] == ["format": "pt"])
        let read = try #require(out["tensors"] as? [String: [String: Any]])
        #expect(Set(read.keys) == Set(tensors.keys))
        for (name, t) in tensors {
            let entry = try #require(read[name])
            #expect(entry["shape"] as? [Int] == t.shape, "\(name)")
            let values = t.scalars(as: Double.self)
            let expectedSum = values.reduce(0, +)
            let sum = try #require(entry["sum"] as? Double)
            #expect(abs(sum - expectedSum) <= 1e-9 * max(1, abs(expectedSum)), "\(name): numpy sums \(sum), Swift \(expectedSum)")
            // Compared as float32: Foundation's JSON parser may miss the last bit of a double.
            #expect((entry["first"] as? [Double])?.map { Float($0) } == values.prefix(4).map { Float($0) }, "\(name)")
        }
        #expect(read["conv1.weight"]?["dtype"] as? String == "F32" && read["progress.epoch"]?["dtype"] as? String == "I64")
    }

    @Test func checkpointFoldersAreReplacedWhole() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let last = dir.path("checkpoints/last")
        try FileManager.default.createDirectory(at: dir.path("checkpoints"), withIntermediateDirectories: true)
        try Checkpoint.write([("model.safetensors", Data("one".utf8)), ("train_state.safetensors", Data("1".utf8))], to: last)
        try Checkpoint.write([("model.safetensors", Data("two".utf8)), ("train_state.safetensors", Data("2".utf8))], to: last)
        #expect(try String(contentsOf: last.appendingPathComponent("model.safetensors"), encoding: .utf8) == "two")
        #expect(try String(contentsOf: last.appendingPathComponent("train_state.safetensors"), encoding: .utf8) == "2")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path("checkpoints").path) == ["last"], "no temporary folders left")
        // A crash between the two renames of the fallback path leaves .last.old-PID and no last: resolve puts it back.
        try FileManager.default.moveItem(at: last, to: dir.path("checkpoints/.last.old-123"))
        #expect(Checkpoint.resolve(last) == last)
        #expect(Checkpoint.isComplete(last))
    }

    @Test func trainStateRoundTrip() throws {
        var s = TrainState(seed: UInt64.max - 5, monitorBest: 0.125)
        s.epoch = 3; s.globalStep = 77; s.batchInEpoch = 5; s.notImproved = 2; s.bestEpoch = 1
        s.rng = [1, UInt64.max, 3, 1 << 63]
        s.partial.add(batchSize: 10, meanLoss: 0.5, metricSums: ["accuracy": 7])
        s.topK = [.init(epoch: 1, score: 0.125), .init(epoch: 3, score: 0.5)]
        let p = Tensor.ones([3], requiresGrad: true)
        let opt = SGD([p], lr: 0.1, momentum: 0.9)
        p.grad = Tensor.ones([3])
        opt.step()
        let sched = StepLR(opt, stepSize: 2)
        sched.step()
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let file = dir.path("train_state.safetensors")
        try Checkpoint.encodeState(s, optimizer: opt, optimizerType: "SGD", scheduler: sched, schedulerType: "StepLR", monitor: .min("val_loss")).write(to: file)
        let loaded = try Checkpoint.decodeState(file)
        #expect(loaded.state == s)
        #expect(loaded.optimizerType == "SGD" && loaded.schedulerType == "StepLR")
        #expect(loaded.scheduler == sched.stateDict())
        #expect(loaded.optimizer["state.0.momentum_buffer"]?.scalars(as: Float.self) == [1, 1, 1])
    }
}
