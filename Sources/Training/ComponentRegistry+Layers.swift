import NN
import TensorCore

/// The layers a declared layer list may use, with PyTorch's argument names and shape rules.
extension ComponentRegistry {
    static let builtinLayers: [LayerType] = [
        LayerType(name: "Linear",
                  args: [ArgSpec("in_features", .integer(min: 1)), ArgSpec("out_features", .integer(min: 1)),
                         ArgSpec("bias", .boolean, default: .bool(true))],
                  outputShape: { a, s, source in
                      guard s.count >= 2 else { return .failure(ShapeProblem("Linear expects inputs with a feature dimension, \(source) gives \(showShape(s))")) }
                      let inF = a.int("in_features"), last = s[s.count - 1]
                      if last != inF {
                          let hint = s.count > 2 ? " (its output is \(showShape(s)); put a Flatten before the Linear)" : ""
                          return .failure(ShapeProblem("Linear expects \(inF) input features, \(source) gives \(last)\(hint)"))
                      }
                      return .success(Array(s.dropLast()) + [a.int("out_features")])
                  },
                  build: { a in Linear(a.int("in_features"), a.int("out_features"), bias: a.bool("bias")) }),

        LayerType(name: "Conv2d",
                  args: [ArgSpec("in_channels", .integer(min: 1)), ArgSpec("out_channels", .integer(min: 1)),
                         ArgSpec("kernel_size", .integerOrPair(min: 1)), ArgSpec("stride", .integerOrPair(min: 1), default: .int(1)),
                         ArgSpec("padding", .integerOrPair(min: 0), default: .int(0)), ArgSpec("dilation", .integerOrPair(min: 1), default: .int(1)),
                         ArgSpec("bias", .boolean, default: .bool(true))],
                  outputShape: { a, s, source in
                      guard s.count == 4 else {
                          return .failure(ShapeProblem("Conv2d expects [channels, height, width] inputs, \(source) gives \(showShape(s))"))
                      }
                      let inC = a.int("in_channels")
                      if s[1] != inC { return .failure(ShapeProblem("Conv2d expects \(inC) input channels, \(source) gives \(s[1])")) }
                      let k = a.pair("kernel_size"), st = a.pair("stride"), p = a.pair("padding"), d = a.pair("dilation")
                      guard let h = WindowGeometry.outputSize(s[2], kernel: k.0, stride: st.0, padding: p.0, dilation: d.0),
                            let w = WindowGeometry.outputSize(s[3], kernel: k.1, stride: st.1, padding: p.1, dilation: d.1) else {
                          return .failure(ShapeProblem("Conv2d's kernel_size \(k.0)×\(k.1), padding \(p.0)×\(p.1) and dilation \(d.0)×\(d.1) overflow integer arithmetic; use sizes that fit the \(s[2])×\(s[3]) input"))
                      }
                      guard h >= 1, w >= 1 else {
                          return .failure(ShapeProblem("Conv2d's \(k.0)×\(k.1) kernel does not fit the \(s[2])×\(s[3]) input from \(source)"))
                      }
                      return .success([s[0], a.int("out_channels"), h, w])
                  },
                  build: { a in
                      Conv2d(a.int("in_channels"), a.int("out_channels"), kernelSize: a.pair("kernel_size"), stride: a.pair("stride"),
                             padding: a.pair("padding"), dilation: a.pair("dilation"), bias: a.bool("bias"))
                  }),

        LayerType(name: "MaxPool2d",
                  args: [ArgSpec("kernel_size", .integer(min: 1)), ArgSpec("stride", .integer(min: 1), default: .null),
                         ArgSpec("padding", .integer(min: 0), default: .int(0)), ArgSpec("dilation", .integer(min: 1), default: .int(1))],
                  outputShape: { a, s, source in
                      poolShape("MaxPool2d", kernel: a.int("kernel_size"), stride: a.optionalInt("stride"), padding: a.int("padding"),
                                dilation: a.int("dilation"), s, source)
                  },
                  build: { a in MaxPool2d(a.int("kernel_size"), stride: a.optionalInt("stride"), padding: a.int("padding"), dilation: a.int("dilation")) }),

        LayerType(name: "AvgPool2d",
                  args: [ArgSpec("kernel_size", .integer(min: 1)), ArgSpec("stride", .integer(min: 1), default: .null),
                         ArgSpec("padding", .integer(min: 0), default: .int(0))],
                  outputShape: { a, s, source in
                      poolShape("AvgPool2d", kernel: a.int("kernel_size"), stride: a.optionalInt("stride"), padding: a.int("padding"),
                                dilation: 1, s, source)
                  },
                  build: { a in AvgPool2d(a.int("kernel_size"), stride: a.optionalInt("stride"), padding: a.int("padding")) }),

        LayerType(name: "Flatten",
                  args: [ArgSpec("start_dim", .integer(), default: .int(1)), ArgSpec("end_dim", .integer(), default: .int(-1))],
                  outputShape: { a, s, source in
                      let n = s.count
                      let start = a.int("start_dim") < 0 ? a.int("start_dim") + n : a.int("start_dim")
                      let end = a.int("end_dim") < 0 ? a.int("end_dim") + n : a.int("end_dim")
                      guard (0..<n).contains(start), (0..<n).contains(end), start <= end else {
                          return .failure(ShapeProblem("Flatten's start_dim \(a.int("start_dim")) and end_dim \(a.int("end_dim")) do not fit the \(n)-d input (batch included) from \(source)"))
                      }
                      var merged = -1
                      if !s[start...end].contains(where: { $0 < 0 }) {
                          guard let product = checkedProduct(Array(s[start...end])) else {
                              return .failure(ShapeProblem("Flatten merges \(showShape(s)) from \(source) into more elements than an integer holds"))
                          }
                          merged = product
                      }
                      return .success(Array(s[..<start]) + [merged] + Array(s[(end + 1)...]))
                  },
                  build: { a in Flatten(startDim: a.int("start_dim"), endDim: a.int("end_dim")) }),

        LayerType(name: "Dropout", args: [ArgSpec("p", .number(.unit), default: .double(0.5))],
                  outputShape: { _, s, _ in .success(s) }, build: { a in Dropout(a.double("p")) }),

        LayerType(name: "Dropout2d", args: [ArgSpec("p", .number(.unit), default: .double(0.5))],
                  outputShape: { _, s, source in
                      s.count == 4 || s.count == 3 ? .success(s)
                          : .failure(ShapeProblem("Dropout2d expects [channels, height, width] inputs, \(source) gives \(showShape(s))"))
                  },
                  build: { a in Dropout2d(a.double("p")) }),

        elementwise("ReLU") { ReLU() },
        elementwise("GELU") { GELU() },
        elementwise("Tanh") { Tanh() },
        elementwise("Sigmoid") { Sigmoid() },
        elementwise("Identity") { Identity() },

        LayerType(name: "Softmax", args: [ArgSpec("dim", .integer())],
                  outputShape: { a, s, source in dimShape("Softmax", a.int("dim"), s, source) },
                  build: { a in Softmax(dim: a.int("dim")) }),
        LayerType(name: "LogSoftmax", args: [ArgSpec("dim", .integer())],
                  outputShape: { a, s, source in dimShape("LogSoftmax", a.int("dim"), s, source) },
                  build: { a in LogSoftmax(dim: a.int("dim")) }),

        batchNorm("BatchNorm1d", dims: [2, 3], expects: "[features] or [channels, length]") { a in
            BatchNorm1d(a.int("num_features"), eps: a.double("eps"), momentum: a.double("momentum"), affine: a.bool("affine"))
        },
        batchNorm("BatchNorm2d", dims: [4], expects: "[channels, height, width]") { a in
            BatchNorm2d(a.int("num_features"), eps: a.double("eps"), momentum: a.double("momentum"), affine: a.bool("affine"))
        },

        LayerType(name: "LayerNorm",
                  args: [ArgSpec("normalized_shape", .integerOrList(min: 1)), ArgSpec("eps", .number(.positive), default: .double(1e-5)),
                         ArgSpec("elementwise_affine", .boolean, default: .bool(true))],
                  outputShape: { a, s, source in
                      let ns = a.intList("normalized_shape")
                      guard s.count > ns.count, Array(s.suffix(ns.count)) == ns else {
                          return .failure(ShapeProblem("LayerNorm normalises over the last dims \(ns), \(source) gives \(showShape(s))"))
                      }
                      return .success(s)
                  },
                  build: { a in LayerNorm(a.intList("normalized_shape"), eps: a.double("eps"), elementwiseAffine: a.bool("elementwise_affine")) }),
    ]

    static func elementwise(_ name: String, _ make: @escaping @Sendable () -> any Module) -> LayerType {
        LayerType(name: name, args: [], outputShape: { _, s, _ in .success(s) }, build: { _ in make() })
    }

    static func batchNorm(_ name: String, dims: Set<Int>, expects: String, _ make: @escaping @Sendable (Args) -> any Module) -> LayerType {
        LayerType(name: name,
                  args: [ArgSpec("num_features", .integer(min: 1)), ArgSpec("eps", .number(.positive), default: .double(1e-5)),
                         ArgSpec("momentum", .number(.unit), default: .double(0.1)), ArgSpec("affine", .boolean, default: .bool(true))],
                  outputShape: { a, s, source in
                      guard dims.contains(s.count) else { return .failure(ShapeProblem("\(name) expects \(expects) inputs, \(source) gives \(showShape(s))")) }
                      let n = a.int("num_features")
                      if s[1] != n { return .failure(ShapeProblem("\(name) expects \(n) features, \(source) gives \(s[1])")) }
                      return .success(s)
                  },
                  build: make)
    }
}

func poolShape(_ name: String, kernel k: Int, stride: Int?, padding p: Int, dilation d: Int, _ s: [Int], _ source: String) -> Result<[Int], ShapeProblem> {
    guard s.count == 4 else { return .failure(ShapeProblem("\(name) expects [channels, height, width] inputs, \(source) gives \(showShape(s))")) }
    guard p <= k / 2 else { return .failure(ShapeProblem("\(name)'s padding \(p) is more than half its kernel_size \(k)")) }
    let st = stride ?? k
    guard let h = WindowGeometry.outputSize(s[2], kernel: k, stride: st, padding: p, dilation: d),
          let w = WindowGeometry.outputSize(s[3], kernel: k, stride: st, padding: p, dilation: d) else {
        return .failure(ShapeProblem("\(name)'s kernel_size \(k), padding \(p) and dilation \(d) overflow integer arithmetic; use sizes that fit the \(s[2])×\(s[3]) input"))
    }
    guard h >= 1, w >= 1 else {
        return .failure(ShapeProblem("\(name)'s \(k)×\(k) window does not fit the \(s[2])×\(s[3]) input from \(source)"))
    }
    return .success([s[0], s[1], h, w])
}

/// The product of `values`, or nil when it overflows.
func checkedProduct(_ values: [Int]) -> Int? {
    var product = 1
    for v in values {
        let (next, overflow) = product.multipliedReportingOverflow(by: v)
        if overflow { return nil }
        product = next
    }
    return product
}

/// The most bytes of parameters, or of one sample's activations, a config may ask for (1 TiB): beyond
/// it `--check` refuses the sizes instead of passing a model that cannot be allocated.
let maxModelBytes = 1 << 40

/// The parameters a built-in layer holds and the argument to blame when they are too many; nil for
/// layers without parameters or not built in. The count is nil when it overflows `Int`.
func parameterCount(_ type: String, _ a: Args) -> (count: Int?, blame: String)? {
    func sum(_ x: Int?, _ y: Int) -> Int? {
        guard let x else { return nil }
        let (s, o) = x.addingReportingOverflow(y)
        return o ? nil : s
    }
    switch type {
    case "Linear":
        let inF = a.int("in_features"), outF = a.int("out_features")
        return (sum(checkedProduct([inF, outF]), a.bool("bias") ? outF : 0), "out_features")
    case "Conv2d":
        let k = a.pair("kernel_size"), inC = a.int("in_channels"), outC = a.int("out_channels")
        return (sum(checkedProduct([outC, inC, k.0, k.1]), a.bool("bias") ? outC : 0), "out_channels")
    case "BatchNorm1d", "BatchNorm2d":
        return (checkedProduct([a.int("num_features"), 4]), "num_features")   // weight, bias, running mean and variance
    case "LayerNorm":
        return (checkedProduct(a.intList("normalized_shape") + [2]), "normalized_shape")
    default:
        return nil
    }
}

func dimShape(_ name: String, _ dim: Int, _ s: [Int], _ source: String) -> Result<[Int], ShapeProblem> {
    guard dim >= -s.count, dim < s.count else {
        return .failure(ShapeProblem("\(name)'s dim \(dim) is out of range for the \(s.count)-d input (batch included) from \(source)"))
    }
    return .success(s)
}

/// Checks a declared layer list (`[{"type": "Conv2d", "args": {...}}, "ReLU", ...]`) against an
/// input shape; returns the validated layers and the output shape, or nil after recording issues.
func checkLayerList(_ value: JSONValue?, input: [Int], inputDescription: String, at path: ConfigPath, reader: ConfigReader,
                    registry: ComponentRegistry) -> (layers: [(LayerType, Args)], output: [Int])? {
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
        if let (count, blame) = parameterCount(type.name, args) {
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
    return (layers, output)
}
