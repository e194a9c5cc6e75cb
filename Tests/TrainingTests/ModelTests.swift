import Foundation
import NN
import TensorCore
import Testing
@testable import Training

/// Built-in models and declared layer lists: PyTorch's key names and shapes, and shape inference
/// that agrees with what the layers actually produce.
@Suite struct ModelTests {
    func build(_ type: String, _ args: JSONObject = JSONObject(), input: [Int] = [-1, 1, 28, 28]) throws -> any Module {
        let registry = ComponentRegistry.standard
        let entry = try #require(registry.models[type])
        let reader = ConfigReader()
        let a = try #require(reader.args(of: type, entry.args, from: .object(args), at: "arch.args"))
        let context = ModelContext(reader: reader, path: "arch", registry: registry, input: input)
        _ = try #require(entry.check(a, context), "\(reader.issues)")
        return GlobalRandom.withSeed(1) { entry.build(a, input, registry) }
    }

    func shapes(_ m: any Module) -> [String] { m.namedStates().map { "\($0.0) \($0.1.shape)" } }

    @Test func mlpMatchesTheReferenceSequential() throws {
        // nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
        let m = try build("MLP")
        #expect(shapes(m) == ["1.weight [256, 784]", "1.bias [256]", "3.weight [128, 256]", "3.bias [128]", "5.weight [10, 128]", "5.bias [10]"])
        #expect(m(Tensor.zeros([3, 1, 28, 28])).shape == [3, 10])
    }

    @Test func cnnMatchesTheReferenceSequential() throws {
        // nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        //               nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10))
        let m = try build("CNN")
        #expect(shapes(m) == ["0.weight [32, 1, 3, 3]", "0.bias [32]", "3.weight [64, 32, 3, 3]", "3.bias [64]",
                              "7.weight [128, 1600]", "7.bias [128]", "9.weight [10, 128]", "9.bias [10]"])
        #expect(m(Tensor.zeros([2, 1, 28, 28])).shape == [2, 10])
        // The shipped layer-list config declares the same network, key for key.
        let declared = try build("Sequential", JSONObject([("layers", ComponentRegistry.cnnLayers())]))
        #expect(shapes(declared) == shapes(m))
    }

    @Test func mnistModelHasTheTemplatesAttributeNames() throws {
        let m = try build("MnistModel")
        #expect(shapes(m) == ["conv1.weight [10, 1, 5, 5]", "conv1.bias [10]", "conv2.weight [20, 10, 5, 5]", "conv2.bias [20]",
                              "fc1.weight [50, 320]", "fc1.bias [50]", "fc2.weight [10, 50]", "fc2.bias [10]"])
        m.eval()
        let out = m(Tensor.rand([4, 1, 28, 28]))
        #expect(out.shape == [4, 10])
        // log_softmax output: each row's probabilities sum to 1.
        for s in out.exp().sum(dim: 1).scalars(as: Float.self) { #expect(abs(s - 1) < 1e-5) }
    }

    @Test func inferredShapesMatchTheLayersOutputs() throws {
        let layers: JSONValue = .array([
            ComponentRegistry.layer("Conv2d", ["in_channels": .int(3), "out_channels": .int(8), "kernel_size": .array([.int(3), .int(5)]),
                                      "stride": .int(2), "padding": .array([.int(1), .int(2)]), "dilation": .int(1)]),
            ComponentRegistry.layer("BatchNorm2d", ["num_features": .int(8)]),
            ComponentRegistry.layer("GELU"),
            ComponentRegistry.layer("MaxPool2d", ["kernel_size": .int(3), "stride": .int(2), "padding": .int(1)]),
            ComponentRegistry.layer("Dropout2d", ["p": .double(0.1)]),
            ComponentRegistry.layer("Conv2d", ["in_channels": .int(8), "out_channels": .int(6), "kernel_size": .int(3), "dilation": .int(2), "padding": .int(2)]),
            ComponentRegistry.layer("AvgPool2d", ["kernel_size": .int(2)]),
            ComponentRegistry.layer("Flatten"),
            ComponentRegistry.layer("LayerNorm", ["normalized_shape": .int(24)]),
            ComponentRegistry.layer("Linear", ["in_features": .int(24), "out_features": .int(7), "bias": .bool(false)]),
            ComponentRegistry.layer("Tanh"),
            ComponentRegistry.layer("LogSoftmax", ["dim": .int(1)]),
        ])
        let reader = ConfigReader()
        let checked = try #require(checkLayerList(layers, input: [-1, 3, 17, 15], inputDescription: "the input", at: "arch.args.layers",
                                                   reader: reader, registry: .standard), "\(reader.issues)")
        #expect(checked.output == [-1, 7])
        let model = GlobalRandom.withSeed(2) { ComponentRegistry.buildLayers(layers, input: [-1, 3, 17, 15], registry: .standard) }
        model.eval()
        // Every intermediate shape agrees with the actual tensors.
        var x = Tensor.rand([2, 3, 17, 15])
        var shape = [-1, 3, 17, 15]
        for (i, (type, args)) in checked.layers.enumerated() {
            x = (model as! Sequential)[i](x)
            shape = try type.outputShape(args, shape, "").get()
            #expect(Array(x.shape.dropFirst()) == Array(shape.dropFirst()), "layer \(i) \(type.name)")
        }
        #expect(shapes(model) == ["0.weight [8, 3, 3, 5]", "0.bias [8]", "1.weight [8]", "1.bias [8]", "1.running_mean [8]", "1.running_var [8]",
                                  "1.num_batches_tracked []", "5.weight [6, 8, 3, 3]", "5.bias [6]", "8.weight [24]", "8.bias [24]", "9.weight [7, 24]"])
    }

    @Test func layersMayBeNamedByTypeAlone() throws {
        let reader = ConfigReader()
        let layers = try json(#"["Flatten", {"type": "Linear", "args": {"in_features": 784, "out_features": 10}}, "ReLU"]"#)
        let checked = checkLayerList(layers, input: [-1, 1, 28, 28], inputDescription: "the input", at: "layers", reader: reader, registry: .standard)
        #expect(checked?.output == [-1, 10])
        #expect(reader.issues.isEmpty)
    }

    @Test func layerListMistakes() throws {
        func problems(_ text: String) throws -> [String] {
            let reader = ConfigReader()
            _ = checkLayerList(try json(text), input: [-1, 1, 28, 28], inputDescription: "the input", at: "arch.args.layers", reader: reader, registry: .standard)
            return reader.issues.map(\.description)
        }
        #expect(try problems("[]") == ["arch.args.layers: expected at least one layer, got []"])
        #expect(try problems(#"[{"type": "Conv2d", "args": {"in_channels": 1, "kernel_size": 3}}]"#)
                == ["arch.args.layers[0].args.out_channels: missing: Conv2d needs an integer >= 1"])
        #expect(try problems(#"[{"type": "ReLU", "args": {"inplace": true}}]"#) == ["arch.args.layers[0].args.inplace: ReLU takes no arguments"])
        #expect(try problems(#"[{"type": "Dropout", "args": {"p": 2}}]"#) == ["arch.args.layers[0].args.p: expected a number in [0, 1], got 2"])
        #expect(try problems(#"[{"type": "MaxPool2d", "args": {"kernel_size": 2, "padding": 2}}]"#)
                == ["arch.args.layers[0]: MaxPool2d's padding 2 is more than half its kernel_size 2"])
        #expect(try problems(#"["Flatten", {"type": "BatchNorm2d", "args": {"num_features": 1}}]"#)
                == ["arch.args.layers[1]: BatchNorm2d expects [channels, height, width] inputs, layers[0] gives [784]"])
        #expect(try problems(#"[{"type": "Linear", "args": {"in_features": 28, "out_features": 4}}, "Flatten", {"typ": "ReLU"}]"#)
                == ["arch.args.layers[2].typ: a layer has only \"type\" and \"args\"", "arch.args.layers[2].type: missing: expected a layer type such as \"Linear\""])
    }
}

@Suite struct MetricTests {
    func sum(_ m: any Metric, _ scores: [Float], classes: Int, _ labels: [Int64]) -> Double {
        scores.withUnsafeBufferPointer { s in labels.withUnsafeBufferPointer { l in m.batchSum(scores: s, classes: classes, labels: l) } }
    }

    @Test func accuracyAndTopKFollowArgmaxAndTopk() {
        let scores: [Float] = [0.1, 0.7, 0.2,    // predicts 1
                               0.5, 0.5, 0.0,    // tie: argmax takes 0
                               0.3, 0.3, 0.4]    // predicts 2
        #expect(sum(Accuracy(), scores, classes: 3, [1, 0, 0]) == 2)
        #expect(sum(Accuracy(), scores, classes: 3, [1, 1, 0]) == 1)
        #expect(sum(TopKAccuracy(k: 2), scores, classes: 3, [2, 1, 0]) == 3)
        #expect(sum(TopKAccuracy(k: 2), scores, classes: 3, [0, 2, 1]) == 0)   // third of three; tie lost to the lower index
        #expect(sum(TopKAccuracy(k: 1), scores, classes: 3, [2, 0, 2]) == 2)
        #expect(sum(TopKAccuracy(), scores, classes: 3, [0, 2, 0]) == 3)
    }

    @Test func epochsAverageOverSamplesNotBatches() {
        var t = MetricTotals()
        t.add(batchSize: 3, meanLoss: 1.0, metricSums: ["accuracy": 3])   // a full batch, all right
        t.add(batchSize: 1, meanLoss: 5.0, metricSums: ["accuracy": 0])   // a short last batch, wrong
        let avg = Dictionary(uniqueKeysWithValues: t.averages(metricNames: ["accuracy"], prefix: "val_"))
        #expect(avg["val_loss"] == 2.0)          // (3·1 + 1·5) / 4, not (1 + 5) / 2
        #expect(avg["val_accuracy"] == 0.75)     // 3 / 4, not (1 + 0) / 2
    }

    @Test func monitorModes() {
        #expect(Monitor.min("val_loss").improves(0.5, on: 0.5))       // ties count, as in pytorch-template
        #expect(!Monitor.min("val_loss").improves(0.6, on: 0.5))
        #expect(Monitor.max("val_accuracy").improves(0.9, on: 0.8) && !Monitor.max("val_accuracy").improves(.nan, on: -.infinity))
        #expect(Monitor.min("loss").worst == .infinity && Monitor.max("a").worst == -.infinity)
        #expect(!Monitor.off.improves(0, on: 1))
    }
}
