import FerryTestSupport
import Foundation
import Testing
@testable import Training
import TrainingTestSupport

/// A config on TinyData shaped like Fashion-MNIST (1×28×28, 10 classes): the CNN's shapes without any files.
func fashionShapedConfig(_ mutate: (inout JSONObject) -> Void = { _ in }) throws -> JSONValue {
    var o = try #require(try json("""
    {
        "name": "shapes",
        "n_gpu": 0,
        "arch": {"type": "Sequential", "args": {"layers": \(ComponentRegistry.cnnLayers().serialized(pretty: false))}},
        "data_loader": {"type": "TinyData", "args": {"batch_size": 128, "validation_split": 0.1, "size": 28, "classes": 10, "count": 1000}},
        "optimizer": {"type": "Adam", "args": {"lr": 0.001}},
        "loss": "cross_entropy",
        "metrics": ["accuracy", "top_k_acc"],
        "lr_scheduler": {"type": "StepLR", "args": {"step_size": 2}},
        "trainer": {"epochs": 5, "save_dir": "saved/", "monitor": "min val_loss", "early_stop": 3}
    }
    """).objectValue)
    mutate(&o)
    return .object(o)
}

/// The messages a config gets, or [] when it is valid.
func issues(_ config: JSONValue, overrides: [ConfigOverride] = [], registry: ComponentRegistry = TestRegistry.registry()) -> [String] {
    do {
        _ = try TrainConfig.check(config, file: "config.json", overrides: overrides, registry: registry)
        return []
    } catch {
        return "\(error)".split(separator: "\n").map(String.init)
    }
}

extension JSONObject {
    /// Sets a value at a dotted path (creating objects), for building bad configs.
    mutating func set(_ path: String, _ value: JSONValue) {
        var root = JSONValue.object(self)
        do { try ConfigOverride.set(value, at: ConfigPath(parsing: path), in: &root, source: path) } catch {
            Issue.record("cannot set \(path): \(error)")
        }
        self = root.objectValue ?? self
    }
}

@Suite struct ConfigTests {
    @Test(.enabled(if: fashionOrCI)) func shippedConfigsAreValid() throws {
        for name in ["fashion_mnist_mlp.json", "fashion_mnist_cnn.json", "mnist_lenet.json"] {
            let file = TestPaths.repoRoot.appendingPathComponent("config/\(name)").path
            let c = try TrainConfig.load(file: file)
            #expect(c.trainCount == 54_000 && c.validationCount == 6_000, "\(name)")
            #expect(c.modelOutput == [-1, 10], "\(name)")
            #expect(c.logKeys == ["loss", "accuracy", "top_k_acc", "val_loss", "val_accuracy", "val_top_k_acc"], "\(name)")
        }
        // pytorch-template's own config, unchanged but for data_dir.
        let lenet = try TrainConfig.load(file: TestPaths.repoRoot.appendingPathComponent("config/mnist_lenet.json").path)
        #expect(lenet.name == "Mnist_LeNet" && lenet.nGPU == 1 && lenet.arch.type == "MnistModel")
        #expect(lenet.trainer.monitor == .min("val_loss") && lenet.trainer.earlyStop == 10 && lenet.trainer.savePeriod == 1)
        #expect(lenet.lrScheduler?.type == "StepLR" && lenet.lrScheduler?.args.int("step_size") == 50)
        #expect(lenet.optimizer.args.bool("amsgrad") && lenet.loss.type == "nll_loss")
        #expect(lenet.trainer.logEveryNSteps == 11)   // int(sqrt(batch_size)), as the template logs
        let cnn = try TrainConfig.load(file: TestPaths.repoRoot.appendingPathComponent("config/fashion_mnist_cnn.json").path)
        #expect(cnn.trainer.monitor == .max("val_accuracy") && cnn.trainer.saveTopK == 2 && cnn.trainer.logEveryNSteps == 50)
    }

    @Test func defaultsAndAdditions() throws {
        let c = try TrainConfig.check(try fashionShapedConfig { o in
            o.set("seed", .int(42))
            o.set("trainer.grad_clip", .object(JSONObject([("max_norm", .double(5)), ("norm_type", .string("inf"))])))
            o.set("lr_scheduler.interval", .string("step"))
        }, file: "config.json", registry: TestRegistry.registry())
        #expect(c.seed == 42)
        #expect(c.trainer.gradClip == .norm(maxNorm: 5, normType: .infinity))
        #expect(c.schedulerInterval == .step)
        #expect(c.trainer.saveDir == "saved/" && c.trainer.savePeriod == 1 && c.trainer.verbosity == 2 && c.trainer.tensorboard)
        #expect(c.trainer.saveLast && c.trainer.saveTopK == 0)
        #expect(c.trainCount == 900 && c.validationCount == 100)   // fraction: int(1000 * 0.1)
        #expect(c.optimizer.args.doubleList("betas") == [0.9, 0.999])   // PyTorch's defaults filled in
        #expect(c.lrScheduler?.args.double("gamma") == 0.1)
    }

    @Test func validationSplitIsACountWhenAnInteger() throws {
        let count = try TrainConfig.check(try fashionShapedConfig { $0.set("data_loader.args.validation_split", .int(250)) },
                                          file: "c.json", registry: TestRegistry.registry())
        #expect(count.validationCount == 250 && count.trainCount == 750)
        let limited = try TrainConfig.check(try fashionShapedConfig { $0.set("data_loader.args.limit", .int(200)) },
                                            file: "c.json", registry: TestRegistry.registry())
        #expect(limited.validationCount == 20 && limited.trainCount == 180)
    }

    @Test func eachMistakeIsNamedByItsJSONPath() throws {
        let cases: [(String, (inout JSONObject) -> Void, [String])] = [
            ("lr not a number", { $0.set("optimizer.args.lr", .string("fast")) },
             ["config.json: optimizer.args.lr: expected a number >= 0, got \"fast\""]),
            ("the brief's Linear", { o in
                o.set("arch.args.layers", .array([
                    ComponentRegistry.layer("Conv2d", ["in_channels": .int(1), "out_channels": .int(32), "kernel_size": .int(3)]),
                    ComponentRegistry.layer("ReLU"), ComponentRegistry.layer("MaxPool2d", ["kernel_size": .int(2)]), ComponentRegistry.layer("Dropout", ["p": .double(0.25)]),
                    ComponentRegistry.layer("Identity"), ComponentRegistry.layer("ReLU"), ComponentRegistry.layer("Flatten"),
                    ComponentRegistry.layer("Linear", ["in_features": .int(1600), "out_features": .int(128)]), ComponentRegistry.layer("ReLU"),
                    ComponentRegistry.layer("Linear", ["in_features": .int(128), "out_features": .int(10)]),
                ]))
             }, ["config.json: arch.args.layers[7]: Linear expects 1600 input features, layers[6] gives 5408"]),
            ("conv channels", { $0.set("arch.args.layers[3].args.in_channels", .int(16)) },
             ["config.json: arch.args.layers[3]: Conv2d expects 16 input channels, layers[2] gives 32"]),
            ("Linear on an image", { o in
                o.set("arch.args.layers", .array([ComponentRegistry.layer("Linear", ["in_features": .int(784), "out_features": .int(10)])]))
             }, ["config.json: arch.args.layers[0]: Linear expects 784 input features, the input gives 28 (its output is [1, 28, 28]; put a Flatten before the Linear)"]),
            ("kernel too large", { $0.set("arch.args.layers[3].args.kernel_size", .int(15)) },
             ["config.json: arch.args.layers[3]: Conv2d's 15×15 kernel does not fit the 13×13 input from layers[2]"]),
            ("no class scores", { o in o.set("arch.args.layers", .array([ComponentRegistry.layer("Conv2d", ["in_channels": .int(1), "out_channels": .int(4), "kernel_size": .int(3)])])) },
             ["config.json: arch.args.layers: the model gives [4, 26, 26] per sample; the loss needs one score per class — end with Flatten and a Linear to 10 outputs"]),
            ("too few classes", { $0.set("arch.args.layers[9].args.out_features", .int(5)) },
             ["config.json: arch.args.layers: the model gives 5 scores per sample; the data has 10 classes"]),
            ("unknown layer", { $0.set("arch.args.layers[1].type", .string("Relu")) },
             ["config.json: arch.args.layers[1].type: unknown layer \"Relu\"; known: AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Dropout2d, Flatten, GELU, Identity, LayerNorm, Linear, LogSoftmax, MaxPool2d, ReLU, Sigmoid, Softmax, Tanh"]),
            ("unknown optimizer", { $0.set("optimizer.type", .string("Adamm")) },
             ["config.json: optimizer.type: unknown optimizer \"Adamm\"; known: Adam, AdamW, SGD"]),
            ("unknown argument", { $0.set("optimizer.args.momentum", .double(0.9)) },
             ["config.json: optimizer.args.momentum: Adam takes no argument \"momentum\"; it takes lr, betas, eps, weight_decay, amsgrad"]),
            ("nesterov", { o in o.set("optimizer", .object(JSONObject([("type", .string("SGD")), ("args", .object(JSONObject([("lr", .double(0.1)), ("nesterov", .bool(true))])))]))) },
             ["config.json: optimizer.args.nesterov: Nesterov momentum needs a momentum > 0 and dampening 0"]),
            ("betas", { $0.set("optimizer.args.betas", .array([.double(0.9), .double(1.5)])) },
             ["config.json: optimizer.args.betas: expected a list of 2 numbers in [0, 1), got [0.9,1.5]"]),
            ("epochs missing", { o in
                var t = o["trainer"]?.objectValue ?? JSONObject(); t["epochs"] = nil; o["trainer"] = .object(t)
             }, ["config.json: trainer.epochs: missing: expected an integer >= 1"]),
            ("epochs zero", { $0.set("trainer.epochs", .int(0)) }, ["config.json: trainer.epochs: expected an integer >= 1, got 0"]),
            ("verbosity", { $0.set("trainer.verbosity", .int(3)) }, ["config.json: trainer.verbosity: expected an integer from 0 to 2, got 3"]),
            ("monitor without validation", { $0.set("data_loader.args.validation_split", .double(0)) },
             ["config.json: trainer.monitor: \"min val_loss\" needs validation data — set data_loader.args.validation_split, or monitor \"min loss\""]),
            ("monitor unknown metric", { $0.set("trainer.monitor", .string("max val_f1")) },
             ["config.json: trainer.monitor: \"val_f1\" is not logged; the epochs log loss, accuracy, top_k_acc, val_loss, val_accuracy, val_top_k_acc"]),
            ("monitor malformed", { $0.set("trainer.monitor", .string("lowest val_loss")) },
             ["config.json: trainer.monitor: expected \"off\", or \"min\"/\"max\" and a logged metric, like \"min val_loss\", got \"lowest val_loss\""]),
            ("top-k without monitor", { o in o.set("trainer.monitor", .string("off")); o.set("trainer.save_top_k", .int(2)) },
             ["config.json: trainer.save_top_k: needs trainer.monitor to rank epochs, like \"min val_loss\""]),
            ("split too large", { $0.set("data_loader.args.validation_split", .int(1000)) },
             ["config.json: data_loader.args.validation_split: expected a number of samples below the 1000 available for training, got 1000"]),
            ("split fraction", { $0.set("data_loader.args.validation_split", .double(1.5)) },
             ["config.json: data_loader.args.validation_split: expected a fraction in [0, 1) or a number of samples, got 1.5"]),
            ("batch size", { $0.set("data_loader.args.batch_size", .string("128")) },
             ["config.json: data_loader.args.batch_size: expected an integer >= 1, got \"128\""]),
            ("unknown loss", { $0.set("loss", .string("mse")) },
             ["config.json: loss: unknown loss \"mse\"; known: CrossEntropyLoss, NLLLoss, cross_entropy, nll_loss"]),
            ("class weights", { $0.set("loss", .object(JSONObject([("type", .string("cross_entropy")), ("args", .object(JSONObject([("weight", .array([.int(1), .int(2)]))])))]))) },
             ["config.json: loss.args.weight: expected one weight per class (10), got 2"]),
            ("unknown metric", { $0.set("metrics", .array([.string("accuracy"), .string("f1")])) },
             ["config.json: metrics[1]: unknown metric \"f1\"; known: accuracy, top_k_acc"]),
            ("top-k too large", { $0.set("metrics", .array([.object(JSONObject([("type", .string("top_k_acc")), ("args", .object(JSONObject([("k", .int(20))])))]))])) },
             ["config.json: metrics[0]: top_k_acc with k = 20 needs at least 20 classes; the model gives 10"]),
            ("plateau per step", { o in
                o.set("lr_scheduler", .object(JSONObject([("type", .string("ReduceLROnPlateau")), ("interval", .string("step"))])))
             }, ["config.json: lr_scheduler.interval: ReduceLROnPlateau steps once per epoch on the monitored metric; use \"epoch\""]),
            ("unknown scheduler", { $0.set("lr_scheduler.type", .string("StepLr")) },
             ["config.json: lr_scheduler.type: unknown lr_scheduler \"StepLr\"; known: CosineAnnealingLR, ExponentialLR, LinearLR, MultiStepLR, ReduceLROnPlateau, StepLR, WarmupLR"]),
            ("missing step size", { $0.set("lr_scheduler.args", .object(JSONObject())) },
             ["config.json: lr_scheduler.args.step_size: missing: StepLR needs an integer >= 1"]),
            ("grad clip", { $0.set("trainer.grad_clip", .int(-1)) },
             ["config.json: trainer.grad_clip: expected a number > 0, got -1"]),
            ("name with a slash", { $0.set("name", .string("a/b")) },
             ["config.json: name: expected a name usable as a folder (no \"/\"), got \"a/b\""]),
            ("MnistModel on other shapes", { o in o.set("arch", .object(JSONObject([("type", .string("MnistModel"))]))); o.set("data_loader.args.size", .int(32)) },
             ["config.json: arch.type: MnistModel takes 1×28×28 images (its fc1 has 320 = 20×4×4 inputs); the data gives [1, 32, 32]"]),
        ]
        for (label, mutate, expected) in cases {
            #expect(issues(try fashionShapedConfig(mutate)) == expected, "\(label)")
        }
    }

    @Test func everyIssueIsReportedAtOnce() throws {
        let found = issues(try fashionShapedConfig { o in
            o.set("optimizer.args.lr", .string("fast"))
            o.set("arch.args.layers[7].args.in_features", .int(5408))
            o.set("trainer.epochs", .int(-2))
            o.set("metrics", .array([.string("accuracy"), .string("f1")]))
        })
        #expect(found == [
            "config.json: arch.args.layers[7]: Linear expects 5408 input features, layers[6] gives 1600",
            "config.json: metrics[1]: unknown metric \"f1\"; known: accuracy, top_k_acc",
            "config.json: optimizer.args.lr: expected a number >= 0, got \"fast\"",
            "config.json: trainer.epochs: expected an integer >= 1, got -2",
        ])
    }

    @Test func missingDataFilesAreNamed() throws {
        let found = issues(try fashionShapedConfig { o in
            o.set("data_loader", .object(JSONObject([("type", .string("FashionMnistDataLoader")),
                                                     ("args", .object(JSONObject([("data_dir", .string("/nonexistent/fm")), ("batch_size", .int(64))])))])))
            o.set("trainer.monitor", .string("min loss"))
        })
        #expect(found == ["config.json: data_loader.args.data_dir: no directory /nonexistent/fm — install Debian's dataset-fashion-mnist (its files are in /usr/share/datasets/fashion-mnist) or point data_dir at the four IDX files"])
    }

    @Test func unknownSectionsWarnButDoNotStop() throws {
        let c = try TrainConfig.check(try fashionShapedConfig { o in
            o.set("visualization", .object(JSONObject()))
            o.set("trainer.log_dir", .string("x"))
        }, file: "config.json", registry: TestRegistry.registry())
        #expect(c.warnings.map(\.description) == ["visualization: not a ferry setting; ignored", "trainer.log_dir: not a ferry setting; ignored"])
    }

    @Test func syntaxErrorsGiveLineAndColumn() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let file = dir.path("config.json")
        try Data("{\n  \"name\": \"x\",\n  \"n_gpu\": 1,,\n}".utf8).write(to: file)
        #expect(throws: TrainingError.configSyntax(file: file.path, line: 3, column: 14, reason: "expected a string key in double quotes")) {
            try TrainConfig.load(file: file.path)
        }
        #expect(TrainingError.configSyntax(file: "c.json", line: 3, column: 14, reason: "expected a string key in double quotes").description
                == "c.json: not valid JSON at line 3, column 14: expected a string key in double quotes")
        do {
            _ = try TrainConfig.load(file: "/nonexistent/c.json")
            Issue.record("a missing file loaded")
        } catch let error as TrainingError {
            #expect(error.description.hasPrefix("/nonexistent/c.json: cannot read the config (") && error.description.hasSuffix(") — check the path"))
            #expect(error.exitCode == 2)
        }
        #expect(issues(.array([])) == ["config.json: (top level): expected a JSON object like {\"name\": ..., \"arch\": ...}, got []"])
    }
}

@Suite struct OverrideTests {
    func checked(_ overrides: [ConfigOverride]) throws -> TrainConfig {
        try TrainConfig.check(try fashionShapedConfig(), file: "config.json", overrides: overrides, registry: TestRegistry.registry())
    }

    @Test func valuesAreTypedByTheSchema() throws {
        let c = try checked([
            try ConfigOverride(parsing: "optimizer.args.lr=0.01"),
            try ConfigOverride(parsing: "trainer.monitor=max val_accuracy"),
            try ConfigOverride(parsing: "name=123"),
            try ConfigOverride(parsing: "data_loader.args.validation_split=250"),
            try ConfigOverride(parsing: "optimizer.args.betas=[0.8, 0.9]"),
            try ConfigOverride(parsing: "arch.args.layers[9].args.out_features=12"),
            try ConfigOverride(parsing: "arch.args.layers.7.args.out_features=64"),
            try ConfigOverride(parsing: "arch.args.layers[9].args.in_features=64"),
            try ConfigOverride(parsing: "trainer.grad_clip=1.5"),
            try ConfigOverride(parsing: "lr_scheduler.interval=step"),
        ])
        #expect(c.optimizer.args["lr"] == .double(0.01))
        #expect(c.trainer.monitor == .max("val_accuracy"))
        #expect(c.name == "123" && c.json["name"] == .string("123"))
        #expect(c.validationCount == 250)
        #expect(c.optimizer.args.doubleList("betas") == [0.8, 0.9])
        #expect(c.modelOutput == [-1, 12])
        #expect(c.trainer.gradClip == .norm(maxNorm: 1.5, normType: 2))
        #expect(c.schedulerInterval == .step)
        // A fraction stays a fraction.
        #expect(try checked([try ConfigOverride(parsing: "data_loader.args.validation_split=0.25")]).validationCount == 250)
    }

    @Test func shorthandFlags() throws {
        let c = try checked([.learningRate(0.5), .batchSize(16), .epochs(3)])
        #expect(c.optimizer.args.double("lr") == 0.5 && c.batchSize == 16 && c.trainer.epochs == 3)
        #expect(c.trainer.logEveryNSteps == 4)
    }

    @Test func badValuesAreReportedByTheCheck() throws {
        #expect(issues(try fashionShapedConfig(), overrides: [try ConfigOverride(parsing: "optimizer.args.lr=fast")])
                == ["config.json: optimizer.args.lr: expected a number >= 0, got \"fast\""])
        #expect(issues(try fashionShapedConfig(), overrides: [try ConfigOverride(parsing: "arch.args.layers[7].args.in_features=5408")])
                == ["config.json: arch.args.layers[7]: Linear expects 5408 input features, layers[6] gives 1600"])
    }

    @Test func malformedOverrides() throws {
        #expect(throws: TrainingError.invalidOverride("lr0.1", reason: "expected PATH=VALUE, like optimizer.args.lr=0.01")) {
            try ConfigOverride(parsing: "lr0.1")
        }
        #expect(throws: TrainingError.invalidOverride("=3", reason: "expected PATH=VALUE, like optimizer.args.lr=0.01")) {
            try ConfigOverride(parsing: "=3")
        }
        #expect(throws: TrainingError.invalidOverride("arch.args.layers[20].args.p=0.1", reason: "arch.args.layers has 10 items; there is no [20]")) {
            try checked([try ConfigOverride(parsing: "arch.args.layers[20].args.p=0.1")])
        }
        #expect(throws: TrainingError.invalidOverride("trainer.epochs.x=1", reason: "trainer.epochs is 5, not an object")) {
            try checked([try ConfigOverride(parsing: "trainer.epochs.x=1")])
        }
        #expect(TrainingError.invalidOverride("trainer.epochs.x=1", reason: "trainer.epochs is 5, not an object").description
                == "--set trainer.epochs.x=1: trainer.epochs is 5, not an object")
    }
}

@Suite struct JSONTests {
    @Test func keepsOrderAndNumberKinds() throws {
        let v = try JSONParser.parse(#"{"b": 1, "a": 1.0, "c": [1e-3, -2, true, null, "x\u00e9\n"], "d": {}}"#)
        let o = try #require(v.objectValue)
        #expect(o.keys == ["b", "a", "c", "d"])
        #expect(o["b"] == .int(1) && o["a"] == .double(1))
        #expect(o["c"] == .array([.double(0.001), .int(-2), .bool(true), .null, .string("xé\n")]))
        #expect(v.serialized(pretty: false) == #"{"b":1,"a":1.0,"c":[0.001,-2,true,null,"xé\n"],"d":{}}"#)
        #expect(try JSONParser.parse(v.serialized(pretty: true)) == v)
        #expect(JSONValue.double(1e-8).serialized(pretty: false) == "1e-08")
        #expect(JSONValue.double(.nan).serialized(pretty: false) == "null")
    }

    @Test func reportsWhereTextGoesWrong() {
        #expect(throws: JSONParser.SyntaxError(line: 1, column: 9, reason: "expected ',' or '}' in an object")) { try JSONParser.parse(#"{"a": 1 "b": 2}"#) }
        #expect(throws: JSONParser.SyntaxError(line: 2, column: 3, reason: "unexpected character '}', expected a value")) { try JSONParser.parse("[1,\n  }") }
        #expect(throws: JSONParser.SyntaxError(line: 1, column: 1, reason: "unexpected end of text, expected a value")) { try JSONParser.parse("") }
        #expect(throws: JSONParser.SyntaxError(line: 1, column: 4, reason: "unexpected text after the JSON value")) { try JSONParser.parse("{} x") }
    }
}
