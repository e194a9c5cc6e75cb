import NN
import Optim
import TensorCore

extension ComponentRegistry {
    static func adamArgs(weightDecay: Double) -> [ArgSpec] {
        [ArgSpec("lr", .number(.nonNegative), default: .double(1e-3)),
         ArgSpec("betas", .numbers(count: 2, .unitOpen), default: .array([.double(0.9), .double(0.999)])),
         ArgSpec("eps", .number(.nonNegative), default: .double(1e-8)),
         ArgSpec("weight_decay", .number(.nonNegative), default: .double(weightDecay)),
         ArgSpec("amsgrad", .boolean, default: .bool(false))]
    }

    static func betas(_ a: Args) -> (Double, Double) {
        let b = a.doubleList("betas")
        return b.count == 2 ? (b[0], b[1]) : (0.9, 0.999)
    }

    static let builtinOptimizers: [OptimizerType] = [
        OptimizerType(name: "Adam", args: adamArgs(weightDecay: 0), build: { a, params in
            Adam(params, lr: a.double("lr"), betas: betas(a), eps: a.double("eps"), weightDecay: a.double("weight_decay"), amsgrad: a.bool("amsgrad"))
        }),
        OptimizerType(name: "AdamW", args: adamArgs(weightDecay: 1e-2), build: { a, params in
            AdamW(params, lr: a.double("lr"), betas: betas(a), eps: a.double("eps"), weightDecay: a.double("weight_decay"), amsgrad: a.bool("amsgrad"))
        }),
        OptimizerType(name: "SGD",
                      args: [ArgSpec("lr", .number(.nonNegative), default: .double(1e-3)),
                             ArgSpec("momentum", .number(.nonNegative), default: .double(0)),
                             ArgSpec("dampening", .number(.any), default: .double(0)),
                             ArgSpec("weight_decay", .number(.nonNegative), default: .double(0)),
                             ArgSpec("nesterov", .boolean, default: .bool(false))],
                      check: { a, reader, path in
                          if a.bool("nesterov") && (a.double("momentum") <= 0 || a.double("dampening") != 0) {
                              reader.fail(path + "args" + "nesterov", "Nesterov momentum needs a momentum > 0 and dampening 0")
                          }
                      },
                      build: { a, params in
                          SGD(params, lr: a.double("lr"), momentum: a.double("momentum"), dampening: a.double("dampening"),
                              weightDecay: a.double("weight_decay"), nesterov: a.bool("nesterov"))
                      }),
    ]

    static let builtinSchedulers: [SchedulerType] = [
        SchedulerType(name: "StepLR", args: [ArgSpec("step_size", .integer(min: 1)), ArgSpec("gamma", .number(.nonNegative), default: .double(0.1))],
                      build: { a, opt, _ in StepLR(opt, stepSize: a.int("step_size"), gamma: a.double("gamma")) }),
        SchedulerType(name: "MultiStepLR", args: [ArgSpec("milestones", .integerList(min: 1)), ArgSpec("gamma", .number(.nonNegative), default: .double(0.1))],
                      build: { a, opt, _ in MultiStepLR(opt, milestones: a.intList("milestones"), gamma: a.double("gamma")) }),
        SchedulerType(name: "ExponentialLR", args: [ArgSpec("gamma", .number(.nonNegative))],
                      build: { a, opt, _ in ExponentialLR(opt, gamma: a.double("gamma")) }),
        SchedulerType(name: "CosineAnnealingLR", args: [ArgSpec("T_max", .integer(min: 1)), ArgSpec("eta_min", .number(.nonNegative), default: .double(0))],
                      build: { a, opt, _ in CosineAnnealingLR(opt, tMax: a.int("T_max"), etaMin: a.double("eta_min")) }),
        SchedulerType(name: "LinearLR",
                      args: [ArgSpec("start_factor", .number(NumberRange(min: 0, minInclusive: false, max: 1)), default: .double(1.0 / 3)),
                             ArgSpec("end_factor", .number(.unit), default: .double(1)),
                             ArgSpec("total_iters", .integer(min: 1), default: .int(5))],
                      build: { a, opt, _ in
                          LinearLR(opt, startFactor: a.double("start_factor"), endFactor: a.double("end_factor"), totalIters: a.int("total_iters"))
                      }),
        SchedulerType(name: "WarmupLR",
                      args: [ArgSpec("warmup_steps", .integer(min: 1)),
                             ArgSpec("then", .custom("a scheduler like {\"type\": \"CosineAnnealingLR\", \"args\": {...}}"), default: .null)],
                      check: { a, reader, path, registry in
                          guard let then = a["then"], then != .null else { return }
                          _ = checkScheduler(then, at: path + "args" + "then", reader: reader, registry: registry, nested: true)
                      },
                      build: { a, opt, registry in
                          var after: (any LRScheduler)?
                          if let then = a["then"], then != .null, let name = then["type"]?.stringValue, let type = registry.schedulers[name] {
                              let reader = ConfigReader()
                              if let args = reader.args(of: name, type.args, from: then["args"], at: ConfigPath()) {
                                  after = type.build(args, opt, registry)
                              }
                          }
                          return WarmupLR(opt, warmupSteps: a.int("warmup_steps"), then: after)
                      }),
        SchedulerType(name: "ReduceLROnPlateau",
                      args: [ArgSpec("mode", .choice(["min", "max"]), default: .string("min")),
                             ArgSpec("factor", .number(.unitOpen), default: .double(0.1)),
                             ArgSpec("patience", .integer(min: 0), default: .int(10)),
                             ArgSpec("threshold", .number(.nonNegative), default: .double(1e-4)),
                             ArgSpec("threshold_mode", .choice(["rel", "abs"]), default: .string("rel")),
                             ArgSpec("cooldown", .integer(min: 0), default: .int(0)),
                             ArgSpec("min_lr", .number(.nonNegative), default: .double(0))],
                      needsMetric: true,
                      build: { a, opt, _ in
                          ReduceLROnPlateau(opt, mode: a.string("mode") == "max" ? .max : .min, factor: a.double("factor"),
                                            patience: a.int("patience"), threshold: a.double("threshold"),
                                            relativeThreshold: a.string("threshold_mode") == "rel", cooldown: a.int("cooldown"),
                                            minLR: a.double("min_lr"))
                      }),
    ]

    /// Checks a `{type, args}` scheduler; returns its type and arguments, or nil after recording issues.
    static func checkScheduler(_ value: JSONValue, at path: ConfigPath, reader: ConfigReader, registry: ComponentRegistry,
                               nested: Bool) -> (SchedulerType, Args)? {
        guard let object = value.objectValue else {
            reader.fail(path, "expected a scheduler like {\"type\": \"StepLR\", \"args\": {...}}, got \(ConfigReader.show(value))")
            return nil
        }
        let allowed: Set<String> = nested ? ["type", "args"] : ["type", "args", "interval", "monitor"]
        for key in object.keys where !allowed.contains(key) {
            reader.warn(path + key, "not a scheduler setting; ignored")
        }
        guard let typeValue = object["type"] else { reader.fail(path + "type", "missing: expected a scheduler name such as \"StepLR\""); return nil }
        guard let name = typeValue.stringValue else { reader.expected(path + "type", .string, got: typeValue); return nil }
        guard let type = registry.schedulers[name] else {
            reader.unknownType(path + "type", what: "lr_scheduler", name: name, known: registry.schedulers.keys.sorted())
            return nil
        }
        if nested && (type.needsMetric || name == "WarmupLR") {
            reader.fail(path + "type", "\(name) cannot follow a warm-up; use a scheduler that steps on its own such as CosineAnnealingLR")
            return nil
        }
        let before = reader.issues.count
        guard let args = reader.args(of: name, type.args, from: object["args"], at: path + "args") else { return nil }
        type.check(args, reader, path, registry)
        return reader.issues.count == before ? (type, args) : nil
    }
}
