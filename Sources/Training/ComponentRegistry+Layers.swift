import NN
import TensorCore

/// The layers a declared layer list may use, with PyTorch's argument names and shape rules.
extension ComponentRegistry {
    static let builtinLayers: [LayerType] = [
        LayerType(name: "Linear",
                  args: [ArgSpec("in_features", .integer(min: 1)), ArgSpec("out_features", .integer(min: 1)),
                         ArgSpec("bias", .boolean, default: .bool(true))],
                  outputShape: { a, s, source in
                      LayerShapes.linear(s, inFeatures: a.int("in_features"), outFeatures: a.int("out_features"), source: source)
                  },
                  parameters: { a in
                      (LayerShapes.linearParameters(inFeatures: a.int("in_features"), outFeatures: a.int("out_features"), bias: a.bool("bias")),
                       "out_features")
                  },
                  build: { a in Linear(a.int("in_features"), a.int("out_features"), bias: a.bool("bias")) }),

        LayerType(name: "Conv2d",
                  args: [ArgSpec("in_channels", .integer(min: 1)), ArgSpec("out_channels", .integer(min: 1)),
                         ArgSpec("kernel_size", .integerOrPair(min: 1)), ArgSpec("stride", .integerOrPair(min: 1), default: .int(1)),
                         ArgSpec("padding", .integerOrPair(min: 0), default: .int(0)), ArgSpec("dilation", .integerOrPair(min: 1), default: .int(1)),
                         ArgSpec("bias", .boolean, default: .bool(true))],
                  outputShape: { a, s, source in
                      LayerShapes.conv2d(s, inChannels: a.int("in_channels"), outChannels: a.int("out_channels"), kernel: a.pair("kernel_size"),
                                         stride: a.pair("stride"), padding: a.pair("padding"), dilation: a.pair("dilation"), source: source)
                  },
                  parameters: { a in
                      (LayerShapes.conv2dParameters(inChannels: a.int("in_channels"), outChannels: a.int("out_channels"),
                                                    kernel: a.pair("kernel_size"), bias: a.bool("bias")), "out_channels")
                  },
                  build: { a in
                      Conv2d(a.int("in_channels"), a.int("out_channels"), kernelSize: a.pair("kernel_size"), stride: a.pair("stride"),
                             padding: a.pair("padding"), dilation: a.pair("dilation"), bias: a.bool("bias"))
                  }),

        LayerType(name: "MaxPool2d",
                  args: [ArgSpec("kernel_size", .integer(min: 1)), ArgSpec("stride", .integer(min: 1), default: .null),
                         ArgSpec("padding", .integer(min: 0), default: .int(0)), ArgSpec("dilation", .integer(min: 1), default: .int(1))],
                  outputShape: { a, s, source in
                      LayerShapes.pool2d("MaxPool2d", s, kernel: a.int("kernel_size"), stride: a.optionalInt("stride"), padding: a.int("padding"),
                                         dilation: a.int("dilation"), source: source)
                  },
                  build: { a in MaxPool2d(a.int("kernel_size"), stride: a.optionalInt("stride"), padding: a.int("padding"), dilation: a.int("dilation")) }),

        LayerType(name: "AvgPool2d",
                  args: [ArgSpec("kernel_size", .integer(min: 1)), ArgSpec("stride", .integer(min: 1), default: .null),
                         ArgSpec("padding", .integer(min: 0), default: .int(0))],
                  outputShape: { a, s, source in
                      LayerShapes.pool2d("AvgPool2d", s, kernel: a.int("kernel_size"), stride: a.optionalInt("stride"), padding: a.int("padding"),
                                         dilation: 1, source: source)
                  },
                  build: { a in AvgPool2d(a.int("kernel_size"), stride: a.optionalInt("stride"), padding: a.int("padding")) }),

        LayerType(name: "Flatten",
                  args: [ArgSpec("start_dim", .integer(), default: .int(1)), ArgSpec("end_dim", .integer(), default: .int(-1))],
                  outputShape: { a, s, source in LayerShapes.flatten(s, startDim: a.int("start_dim"), endDim: a.int("end_dim"), source: source) },
                  build: { a in Flatten(startDim: a.int("start_dim"), endDim: a.int("end_dim")) }),

        LayerType(name: "Dropout", args: [ArgSpec("p", .number(.unit), default: .double(0.5))],
                  outputShape: { _, s, _ in .success(s) }, build: { a in Dropout(a.double("p")) }),

        LayerType(name: "Dropout2d", args: [ArgSpec("p", .number(.unit), default: .double(0.5))],
                  outputShape: { _, s, source in LayerShapes.dropout2d(s, source: source) },
                  build: { a in Dropout2d(a.double("p")) }),

        elementwise("ReLU") { ReLU() },
        elementwise("GELU") { GELU() },
        elementwise("Tanh") { Tanh() },
        elementwise("Sigmoid") { Sigmoid() },
        elementwise("Identity") { Identity() },

        LayerType(name: "Softmax", args: [ArgSpec("dim", .integer())],
                  outputShape: { a, s, source in LayerShapes.alongDim("Softmax", s, dim: a.int("dim"), source: source) },
                  build: { a in Softmax(dim: a.int("dim")) }),
        LayerType(name: "LogSoftmax", args: [ArgSpec("dim", .integer())],
                  outputShape: { a, s, source in LayerShapes.alongDim("LogSoftmax", s, dim: a.int("dim"), source: source) },
                  build: { a in LogSoftmax(dim: a.int("dim")) }),

        batchNorm("BatchNorm1d", dims: [2, 3]) { a in
            BatchNorm1d(a.int("num_features"), eps: a.double("eps"), momentum: a.double("momentum"), affine: a.bool("affine"))
        },
        batchNorm("BatchNorm2d", dims: [4]) { a in
            BatchNorm2d(a.int("num_features"), eps: a.double("eps"), momentum: a.double("momentum"), affine: a.bool("affine"))
        },

        LayerType(name: "LayerNorm",
                  args: [ArgSpec("normalized_shape", .integerOrList(min: 1)), ArgSpec("eps", .number(.positive), default: .double(1e-5)),
                         ArgSpec("elementwise_affine", .boolean, default: .bool(true))],
                  outputShape: { a, s, source in LayerShapes.layerNorm(s, normalizedShape: a.intList("normalized_shape"), source: source) },
                  parameters: { a in (LayerShapes.layerNormParameters(normalizedShape: a.intList("normalized_shape")), "normalized_shape") },
                  build: { a in LayerNorm(a.intList("normalized_shape"), eps: a.double("eps"), elementwiseAffine: a.bool("elementwise_affine")) }),
    ]

    static func elementwise(_ name: String, _ make: @escaping @Sendable () -> any Module) -> LayerType {
        LayerType(name: name, args: [], outputShape: { _, s, _ in .success(s) }, build: { _ in make() })
    }

    static func batchNorm(_ name: String, dims: Set<Int>, _ make: @escaping @Sendable (Args) -> any Module) -> LayerType {
        LayerType(name: name,
                  args: [ArgSpec("num_features", .integer(min: 1)), ArgSpec("eps", .number(.positive), default: .double(1e-5)),
                         ArgSpec("momentum", .number(.unit), default: .double(0.1)), ArgSpec("affine", .boolean, default: .bool(true))],
                  outputShape: { a, s, source in LayerShapes.batchNorm(name, s, numFeatures: a.int("num_features"), dims: dims, source: source) },
                  parameters: { a in (LayerShapes.batchNormValues(numFeatures: a.int("num_features")), "num_features") },
                  build: make)
    }
}

/// The product of `values`, or nil when it overflows.
func checkedProduct(_ values: [Int]) -> Int? { LayerShapes.product(values) }

/// The most bytes of parameters, or of one sample's activations, a config may ask for (1 TiB): beyond
/// it `--check` refuses the sizes instead of passing a model that cannot be allocated.
let maxModelBytes = 1 << 40

/// Checks a declared layer list (`[{"type": "Conv2d", "args": {...}}, "ReLU", ...]`) against an
/// input shape; returns the validated layers and the output shape, or nil after recording issues.
func checkLayerList(_ value: JSONValue?, input: [Int], inputDescription: String, at path: ConfigPath, reader: ConfigReader,
                    registry: ComponentRegistry) -> (layers: [(LayerType, Args)], output: [Int], modelBytes: Int)? {
    guard let value else { reader.fail(path, "missing: expected a list of layers"); return nil }
    guard let list = value.arrayValue else {
        reader.fail(path, "expected a list of layers like [{\"type\": \"Linear\", \"args\": {...}}], got \(ConfigReader.show(value))")
        return nil
    }
    guard !list.isEmpty else { reader.fail(path, "expected at least one layer, got []"); return nil }
    var shape: [Int]? = input
    var layers: [(LayerType, Args)] = []
    var totalBytes = 0
    var ok = true
    for (i, item) in list.enumerated() {
        let itemPath = path[i]
        var typeName: String?
        var argsValue: JSONValue?
        switch item {
        case .string(let s):
            typeName = s
        case .object(let o):
            for key in o.keys where key != "type" && key != "args" {
                reader.fail(itemPath + key, "a layer has only \"type\" and \"args\"")
            }
            if let t = o["type"] {
                if let s = t.stringValue { typeName = s } else { reader.expected(itemPath + "type", .string, got: t) }
            } else {
                reader.fail(itemPath + "type", "missing: expected a layer type such as \"Linear\"")
            }
            argsValue = o["args"]
        default:
            reader.fail(itemPath, "expected a layer like {\"type\": \"ReLU\"} or \"ReLU\", got \(ConfigReader.show(item))")
        }
        guard let typeName else { ok = false; shape = nil; continue }
        guard let type = registry.layers[typeName] else {
            reader.unknownType(item.stringValue != nil ? itemPath : itemPath + "type", what: "layer", name: typeName,
                               known: registry.layers.keys.sorted())
            ok = false; shape = nil; continue
        }
        guard let args = reader.args(of: typeName, type.args, from: argsValue, at: itemPath + "args") else {
            ok = false; shape = nil; continue
        }
        layers.append((type, args))
        // Shapes are followed until the first layer that cannot be checked, so one mistake gives one message.
        if let current = shape {
            let source = i == 0 ? inputDescription : "layers[\(i - 1)]"
            switch type.outputShape(args, current, source) {
            case .success(let out) where checkedProduct(out.dropFirst().map { Swift.max($0, 1) }).map({ $0 <= maxModelBytes / 4 }) != true:
                reader.fail(itemPath, "\(typeName) gives \(showShape(out)) per sample, more than the \(maxModelBytes >> 30) GiB ferry allows for one sample's values; use smaller sizes")
                ok = false; shape = nil
            case .success(let out): shape = out
            case .failure(let problem):
                reader.fail(itemPath, problem.message)
                ok = false; shape = nil
            }
        }
        if let (count, blame) = type.parameters?(args) {
            // At float32's 4 bytes each: what building the model would allocate, refused here rather than trapping there.
            let bytes = count.flatMap { checkedProduct([$0, 4]) } ?? Int.max
            let total = totalBytes.addingReportingOverflow(bytes)
            if bytes > maxModelBytes || total.overflow || total.partialValue > maxModelBytes {
                let held = count.map { "\($0) parameters" } ?? "more parameters than an integer counts"
                let problem = bytes <= maxModelBytes ? "brings the model past" : "with these sizes holds \(held), more than"
                reader.fail(itemPath + "args" + blame, "\(typeName) \(problem) the \(maxModelBytes >> 30) GiB of parameters ferry allows; use smaller sizes")
                ok = false; shape = nil
            } else {
                totalBytes = total.partialValue
            }
        }
    }
    guard ok, let output = shape else { return nil }
    return (layers, output, totalBytes)
}
