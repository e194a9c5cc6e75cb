import Foundation
import Testing
@testable import Training

/// `ferry train --check` refuses sizes whose products overflow `Int` or whose parameters exceed
/// 2^40 bytes, at their JSON path; before, Conv2d/pool/Flatten/MLP arithmetic trapped and huge
/// Linear layers passed the check (and trapped or exhausted memory when built).
@Suite struct ConfigOverflowTests {
    static func layers(_ list: String, size: Int = 28) throws -> JSONValue {
        try fashionShapedConfig { o in
            o.set("arch.args.layers", (try? json(list)) ?? .null)
            o.set("data_loader.args.size", .int(size))
        }
    }

    @Test func linearLayersOfATerabyteAreRefusedAtTheirPath() throws {
        let found = issues(try Self.layers("""
            ["Flatten", {"type": "Linear", "args": {"in_features": 784, "out_features": 1099511627776}},
             {"type": "Linear", "args": {"in_features": 1099511627776, "out_features": 1099511627776}}, "ReLU",
             {"type": "Linear", "args": {"in_features": 1099511627776, "out_features": 10}}]
            """))
        #expect(found.contains { $0.hasPrefix("config.json: arch.args.layers[1].args.out_features: Linear with these sizes holds 863116627804160 parameters") }, "\(found)")
        #expect(found.contains { $0.hasPrefix("config.json: arch.args.layers[2].args.out_features: Linear with these sizes holds more parameters than an integer counts") }, "\(found)")
        #expect(found.allSatisfy { $0.contains("1024 GiB") }, "\(found)")
    }

    @Test func layersThatFitAloneButNotTogetherAreRefused() throws {
        // 2^36 parameters (256 GiB) each: five of them pass 2^40 bytes.
        let big = #"{"type": "Linear", "args": {"in_features": 262144, "out_features": 262144, "bias": false}}"#
        let found = issues(try Self.layers("""
            ["Flatten", {"type": "Linear", "args": {"in_features": 784, "out_features": 262144}}, \(big), \(big), \(big), \(big), \(big),
             {"type": "Linear", "args": {"in_features": 262144, "out_features": 10}}]
            """))
        #expect(found.contains { $0.hasPrefix("config.json: arch.args.layers[5].args.out_features: Linear brings the model past the 1024 GiB") }, "\(found)")
    }

    @Test(arguments: [
        (#"{"type": "Conv2d", "args": {"in_channels": 1, "out_channels": 4, "kernel_size": 4611686018427387904, "dilation": 4}}"#, "Conv2d's kernel_size"),
        (#"{"type": "Conv2d", "args": {"in_channels": 1, "out_channels": 4, "kernel_size": 3, "padding": 4611686018427387904}}"#, "Conv2d's kernel_size"),
        (#"{"type": "MaxPool2d", "args": {"kernel_size": 4611686018427387904, "dilation": 4}}"#, "MaxPool2d's kernel_size"),
        (#"{"type": "AvgPool2d", "args": {"kernel_size": 2, "padding": 4611686018427387904}}"#, "AvgPool2d's padding 4611686018427387904 is more than half"),
        (#"{"type": "Conv2d", "args": {"in_channels": 1, "out_channels": 4611686018427387904, "kernel_size": 1}}"#, "arch.args.layers[0].args.out_channels: Conv2d with these sizes"),
        (#"{"type": "Conv2d", "args": {"in_channels": 1, "out_channels": 1, "kernel_size": 1, "padding": 1073741824}}"#, "arch.args.layers[0]: Conv2d gives [1, 2147483676, 2147483676] per sample"),
    ])
    func windowArithmeticThatOverflowsIsAnIssue(layer: String, message: String) throws {
        let found = issues(try Self.layers("[\(layer), \"Flatten\", {\"type\": \"Linear\", \"args\": {\"in_features\": 4, \"out_features\": 10}}]"))
        #expect(found.contains { $0.hasPrefix("config.json: arch.args.layers[0]") && $0.contains(message) }, "\(found)")
    }

    @Test func flatteningAHugeInputIsAnIssue() throws {
        // 1×2^32×2^32 samples: Flatten's product (2^64) overflowed.
        let found = issues(try Self.layers(#"["Flatten", {"type": "Linear", "args": {"in_features": 4, "out_features": 10}}]"#, size: 1 << 32))
        #expect(found.contains { $0.hasPrefix("config.json: arch.args.layers[0]: Flatten merges") }, "\(found)")
        var mlp = try fashionShapedConfig { o in
            o.set("arch", (try? json(#"{"type": "MLP", "args": {"hidden": [8]}}"#)) ?? .null)
            o.set("data_loader.args.size", .int(1 << 32))
        }
        #expect(issues(mlp).contains { $0.contains("arch.type: MLP flattens") }, "\(issues(mlp))")
        mlp = try fashionShapedConfig { o in o.set("arch", (try? json(#"{"type": "MLP", "args": {"hidden": [1099511627776]}}"#)) ?? .null) }
        #expect(issues(mlp).contains { $0.contains("out_features: Linear with these sizes holds") }, "\(issues(mlp))")
    }

    @Test func theShippedSizesStillPass() throws {
        #expect(issues(try fashionShapedConfig()) == [])
        #expect(issues(try fashionShapedConfig { o in o.set("arch", (try? json(#"{"type": "MLP", "args": {"hidden": [4096, 4096]}}"#)) ?? .null) }) == [])
    }
}
