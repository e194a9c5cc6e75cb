import NN
import TensorCore

/// pytorch-template's `MnistModel` (its LeNet), with the template's attribute names so the state
/// dict matches the PyTorch class key for key:
/// `conv1.weight [10,1,5,5]`, `conv1.bias`, `conv2.weight [20,10,5,5]`, `conv2.bias`,
/// `fc1.weight [50,320]`, `fc1.bias`, `fc2.weight [10,50]`, `fc2.bias`.
/// ```python
/// class MnistModel(BaseModel):
///     def __init__(self, num_classes=10):
///         self.conv1 = nn.Conv2d(1, 10, kernel_size=5); self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
///         self.conv2_drop = nn.Dropout2d(); self.fc1 = nn.Linear(320, 50); self.fc2 = nn.Linear(50, num_classes)
///     def forward(self, x):
///         x = F.relu(F.max_pool2d(self.conv1(x), 2))
///         x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
///         x = x.view(-1, 320); x = F.relu(self.fc1(x)); x = F.dropout(x, training=self.training)
///         return F.log_softmax(self.fc2(x), dim=1)
/// ```
public final class MnistModel: Module {
    public let conv1: Conv2d
    public let conv2: Conv2d
    public let conv2Drop: Dropout2d
    public let fc1: Linear
    public let fc2: Linear

    public init(numClasses: Int = 10) {
        conv1 = Conv2d(1, 10, kernelSize: 5)
        conv2 = Conv2d(10, 20, kernelSize: 5)
        conv2Drop = Dropout2d()
        fc1 = Linear(320, 50)
        fc2 = Linear(50, numClasses)
    }

    public func forward(_ x: Tensor) -> Tensor {
        var h = F.maxPool2d(conv1(x), kernelSize: 2).relu()
        h = F.maxPool2d(conv2Drop(conv2(h)), kernelSize: 2).relu()
        h = fc1(h.view(-1, 320)).relu()
        h = F.dropout(h, p: 0.5, training: training)
        return fc2(h).logSoftmax(dim: 1)
    }
}

extension ComponentRegistry {
    /// The reference MLP of `shared/reference/torch_fashion.py` as a layer list. Its state dict
    /// matches `nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128),
    /// nn.ReLU(), nn.Linear(128, 10))`: keys `1.weight`, `1.bias`, `3.*`, `5.*`.
    public static func mlpLayers(inFeatures: Int = 784, hidden: [Int] = [256, 128], numClasses: Int = 10) -> JSONValue {
        var layers: [JSONValue] = [layer("Flatten")]
        var width = inFeatures
        for h in hidden {
            layers.append(layer("Linear", ["in_features": .int(width), "out_features": .int(h)]))
            layers.append(layer("ReLU"))
            width = h
        }
        layers.append(layer("Linear", ["in_features": .int(width), "out_features": .int(numClasses)]))
        return .array(layers)
    }

    /// The reference CNN as a layer list. Its state dict matches
    /// `nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
    /// nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10))`:
    /// keys `0.weight`, `0.bias`, `3.*`, `7.*`, `9.*`.
    public static func cnnLayers(inChannels: Int = 1, flatFeatures: Int = 1600, numClasses: Int = 10) -> JSONValue {
        .array([
            layer("Conv2d", ["in_channels": .int(inChannels), "out_channels": .int(32), "kernel_size": .int(3)]),
            layer("ReLU"),
            layer("MaxPool2d", ["kernel_size": .int(2)]),
            layer("Conv2d", ["in_channels": .int(32), "out_channels": .int(64), "kernel_size": .int(3)]),
            layer("ReLU"),
            layer("MaxPool2d", ["kernel_size": .int(2)]),
            layer("Flatten"),
            layer("Linear", ["in_features": .int(flatFeatures), "out_features": .int(128)]),
            layer("ReLU"),
            layer("Linear", ["in_features": .int(128), "out_features": .int(numClasses)]),
        ])
    }

    static func layer(_ type: String, _ args: KeyValuePairs<String, JSONValue> = [:]) -> JSONValue {
        var o = JSONObject()
        o["type"] = .string(type)
        if args.count > 0 { o["args"] = .object(JSONObject(args.map { ($0.key, $0.value) })) }
        return .object(o)
    }

    static let builtinModels: [ModelType] = [
        ModelType(name: "Sequential",
                  args: [ArgSpec("layers", .custom("a list of layers like [{\"type\": \"Linear\", \"args\": {...}}]"))],
                  check: { a, c in
                      checkLayerList(a["layers"], input: c.input, inputDescription: "the input", at: c.path + "args" + "layers",
                                     reader: c.reader, registry: c.registry).map { c.noteModelBytes($0.modelBytes); return $0.output }
                  },
                  build: { a, input, registry in buildLayers(a["layers"], input: input, registry: registry) }),

        ModelType(name: "MnistModel",
                  args: [ArgSpec("num_classes", .integer(min: 1), default: .int(10))],
                  check: { a, c in
                      guard c.input.count == 4, Array(c.input.dropFirst()) == [1, 28, 28] else {
                          c.reader.fail(c.path + "type", "MnistModel takes 1×28×28 images (its fc1 has 320 = 20×4×4 inputs); the data gives \(showShape(c.input))")
                          return nil
                      }
                      let counts = [LayerShapes.conv2dParameters(inChannels: 1, outChannels: 10, kernel: (5, 5), bias: true),
                                    LayerShapes.conv2dParameters(inChannels: 10, outChannels: 20, kernel: (5, 5), bias: true),
                                    LayerShapes.linearParameters(inFeatures: 320, outFeatures: 50, bias: true),
                                    LayerShapes.linearParameters(inFeatures: 50, outFeatures: a.int("num_classes"), bias: true)]
                      // At float32's 4 bytes each; nil once anything overflows.
                      let parameters = counts.reduce(Optional(0)) { total, n in
                          guard let total, let n, case let (sum, false) = total.addingReportingOverflow(n) else { return nil }
                          return sum
                      }
                      guard let bytes = parameters.flatMap({ checkedProduct([$0, 4]) }), bytes <= maxModelBytes else {
                          c.reader.fail(c.path + "args" + "num_classes", "MnistModel with these classes holds more than the \(maxModelBytes >> 30) GiB of parameters ferry allows; use fewer classes")
                          return nil
                      }
                      c.noteModelBytes(bytes)
                      return [-1, a.int("num_classes")]
                  },
                  build: { a, _, _ in MnistModel(numClasses: a.int("num_classes")) }),

        ModelType(name: "MLP",
                  args: [ArgSpec("hidden", .integerList(min: 1), default: .array([.int(256), .int(128)])),
                         ArgSpec("num_classes", .integer(min: 1), default: .int(10))],
                  check: { a, c in
                      guard let features = checkedProduct(Array(c.input.dropFirst())) else {
                          c.reader.fail(c.path + "type", "MLP flattens \(showShape(c.input)) into more features than an integer holds")
                          return nil
                      }
                      return checkLayerList(mlpLayers(inFeatures: features, hidden: a.intList("hidden"), numClasses: a.int("num_classes")),
                                            input: c.input, inputDescription: "the input", at: c.path, reader: c.reader,
                                            registry: c.registry).map { c.noteModelBytes($0.modelBytes); return $0.output }
                  },
                  build: { a, input, registry in
                      buildLayers(mlpLayers(inFeatures: checkedProduct(Array(input.dropFirst())) ?? 1, hidden: a.intList("hidden"), numClasses: a.int("num_classes")),
                                  input: input, registry: registry)
                  }),

        ModelType(name: "CNN",
                  args: [ArgSpec("num_classes", .integer(min: 1), default: .int(10))],
                  check: { a, c in
                      guard c.input.count == 4 else {
                          c.reader.fail(c.path + "type", "CNN takes [channels, height, width] images; the data gives \(showShape(c.input))")
                          return nil
                      }
                      guard let flat = cnnFlatFeatures(c.input) else {
                          c.reader.fail(c.path + "type", "CNN needs images of at least 10×10; the data gives \(showShape(c.input))")
                          return nil
                      }
                      return checkLayerList(cnnLayers(inChannels: c.input[1], flatFeatures: flat, numClasses: a.int("num_classes")),
                                            input: c.input, inputDescription: "the input", at: c.path, reader: c.reader,
                                            registry: c.registry).map { c.noteModelBytes($0.modelBytes); return $0.output }
                  },
                  build: { a, input, registry in
                      buildLayers(cnnLayers(inChannels: input[1], flatFeatures: cnnFlatFeatures(input) ?? 1600, numClasses: a.int("num_classes")),
                                  input: input, registry: registry)
                  }),
    ]

    /// The features after the CNN's convolution blocks (1600 for 28×28 inputs).
    static func cnnFlatFeatures(_ input: [Int]) -> Int? {
        guard input.count == 4 else { return nil }
        // Conv2d(kernel 3), then MaxPool2d(2): the layers' own output-size rule.
        func block(_ n: Int) -> Int {
            let conv = WindowGeometry.outputSize(n, kernel: 3, stride: 1, padding: 0, dilation: 1) ?? 0
            return WindowGeometry.outputSize(conv, kernel: 2, stride: 2, padding: 0, dilation: 1) ?? 0
        }
        let h = block(block(input[2])), w = block(block(input[3]))
        return h >= 1 && w >= 1 ? checkedProduct([64, h, w]) : nil
    }

    /// Builds a checked layer list as a `Sequential` (children named 0, 1, … as in PyTorch).
    static func buildLayers(_ value: JSONValue?, input: [Int], registry: ComponentRegistry) -> any Module {
        let reader = ConfigReader()
        guard let checked = checkLayerList(value, input: input, inputDescription: "the input", at: ConfigPath(), reader: reader,
                                           registry: registry) else {
            shapeError("buildLayers called with an unchecked layer list: \(reader.issues)")
        }
        return Sequential(layers: checked.layers.map { $0.0.build($0.1) })
    }
}
