import Foundation
import Testing
@testable import TensorCore

/// "Every op is in the finite-difference gradcheck test" (ARCHITECTURE.md), enforced: the op names
/// of API.md's TensorCore block are read (from ../shared/API.md when the checkout sits beside
/// shared/, else from the committed mirror below), each must be classified as differentiable or
/// not, and every differentiable one must be covered by a case registered in `GradcheckCases.all`.
@Suite struct GradcheckCoverageTests {
    /// API.md's differentiable ops, as this suite names them (`F.` for the functional namespace;
    /// operators by their method name: `a + b` is add, `-a` is neg, `a ** 3` is pow, `t[...]` is subscript).
    static let differentiable: Set<String> = [
        "add", "sub", "mul", "div", "neg", "pow",
        "exp", "log", "sqrt", "abs", "relu", "sigmoid", "tanh", "gelu", "clamp", "where",
        "sum", "mean", "max", "min", "var", "std", "mm", "dot", "matmul", "bmm", "softmax", "logSoftmax",
        "view", "reshape", "flatten", "squeeze", "unsqueeze", "transpose", "T", "permute", "expand", "contiguous",
        "subscript", "indexSelect", "gather", "cat", "stack", "split", "chunk", "to",
        "F.softmax", "F.crossEntropy", "F.nllLoss", "F.mseLoss", "F.binaryCrossEntropyWithLogits", "F.relu",
        "F.dropout", "F.conv2d", "F.maxPool2d", "F.linear",
    ]

    /// Names in API.md's TensorCore block that are not differentiable ops: creation, properties,
    /// comparisons, index-valued reductions, autograd controls, I/O, enum cases.
    static let notDifferentiable: Set<String> = [
        "arange", "zeros", "ones", "full", "rand", "randn", "randint", "manualSeed", "writeNPY",
        "ndim", "shape", "dtype", "device", "numel", "scalars", "item", "isCUDAAvailable",
        "float32", "float64", "int64", "bool", "cpu", "cuda", "all",
        "eq", "gt", "argmax", "argmin", "F.oneHot",
        "backward", "grad", "zeroGrad", "isLeaf", "gradFn", "detach", "requiresGrad", "self",
    ]

    /// The names API.md held when this suite was written: used when ../shared/API.md is absent.
    static let committedAPINames: Set<String> = differentiable.union(notDifferentiable)

    static var apiURL: URL {
        // #filePath = <repo>/Tests/TensorCoreTests/GradcheckCoverageTests.swift; API.md = <repo>/../shared/API.md
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("../shared/API.md").standardizedFileURL
    }

    /// The op names of the first ```swift block of API.md (the TensorCore one).
    static func apiNames(markdown: String) -> Set<String> {
        guard let open = markdown.range(of: "```swift"),
              let close = markdown.range(of: "```", range: open.upperBound..<markdown.endIndex) else { return [] }
        var code = String(markdown[open.upperBound..<close.lowerBound])
        // Comments describe, they do not call: drop /* ... */ and // ... to the end of the line.
        code = code.replacingOccurrences(of: #"/\*.*?\*/"#, with: " ", options: .regularExpression)
        code = code.replacingOccurrences(of: #"//[^\n]*"#, with: " ", options: .regularExpression)
        var names = Set<String>()
        func matches(_ pattern: String) -> [String] {
            let re = try! NSRegularExpression(pattern: pattern)
            let ns = code as NSString
            return re.matches(in: code, range: NSRange(location: 0, length: ns.length)).map { m in
                ns.substring(with: m.range(at: 1))
            }
        }
        // F.name(...) in the functional namespace; then any other .name (methods, statics, properties, enum cases).
        for name in matches(#"\bF\.([A-Za-z_]\w*)"#) { names.insert("F." + name) }
        for name in matches(#"(?<!\bF)\.([A-Za-z_]\w*)"#) { names.insert(name) }
        // Operators, spelled between operands in the arithmetic line: a + b; a - b; a * b; a / b; -a; a ** 3.
        let operators: [(String, String)] = [(#"\w \+ \w"#, "add"), (#"\w - \w"#, "sub"), (#"\w \* \w"#, "mul"),
                                             (#"\w / \w"#, "div"), (#"\w \*\* \w"#, "pow"), (#"[;\s]-[a-z]\w*;"#, "neg"),
                                             (#"\w \.> \w"#, "gt"), (#"\w\[[^\]]*\]"#, "subscript")]
        for (pattern, name) in operators where code.range(of: pattern, options: .regularExpression) != nil { names.insert(name) }
        return names
    }

    static func loadAPINames() -> (names: Set<String>, source: String) {
        if let text = try? String(contentsOf: apiURL, encoding: .utf8) {
            return (apiNames(markdown: text), apiURL.path)
        }
        return (committedAPINames, "the committed mirror (\(apiURL.path) is absent)")
    }

    static var covered: Set<String> { Set(GradcheckCases.all.flatMap(\.ops)) }

    @Test func everyDifferentiableAPIOpHasAGradcheckCase() {
        let (names, source) = Self.loadAPINames()
        #expect(names.count > 50, "found only \(names.count) names in \(source): has API.md's layout changed?")
        let unclassified = names.subtracting(Self.differentiable).subtracting(Self.notDifferentiable)
        #expect(unclassified.isEmpty, """
            \(source) names \(unclassified.sorted()) that this suite does not know: add each to \
            GradcheckCoverageTests.differentiable (and write its gradcheck case) or to notDifferentiable
            """)
        let required = names.intersection(Self.differentiable).union(names.intersection(unclassified))
        let missing = required.subtracting(Self.covered)
        #expect(missing.isEmpty, "differentiable ops of \(source) without a gradcheck case in GradcheckCases: \(missing.sorted())")
    }

    @Test func theCommittedMirrorMatchesAPIMarkdown() throws {
        guard let text = try? String(contentsOf: Self.apiURL, encoding: .utf8) else { return }   // nothing to compare against
        let parsed = Self.apiNames(markdown: text)
        // Every name the parser finds is classified, so the mirror cannot silently fall behind API.md.
        #expect(parsed.subtracting(Self.committedAPINames).isEmpty, "update the mirror: \(parsed.subtracting(Self.committedAPINames).sorted())")
    }

    @Test func theParserFindsOpsAndTheCheckCanFail() {
        let sample = """
            ```swift
            a + b; -a; a ** 3; t[0]; x.exp(); F.conv2d(x, w); Tensor.cat([a, b]); t.T
            x.frobnicate()   // a new op nobody covered
            ```
            """
        let names = Self.apiNames(markdown: sample)
        #expect(names == ["add", "neg", "pow", "subscript", "exp", "F.conv2d", "cat", "T", "frobnicate"])
        #expect(!Self.covered.contains("frobnicate"))
        #expect(Self.covered.isSuperset(of: ["add", "neg", "pow", "subscript", "exp", "F.conv2d", "cat", "T"]))
    }

    @Test func everyRegisteredCaseNamesKnownOpsAndIsUnique() {
        let names = GradcheckCases.all.map(\.name)
        #expect(Set(names).count == names.count, "duplicate gradcheck case names")
        for c in GradcheckCases.all { #expect(!c.ops.isEmpty, "case \(c.name) covers no op") }
    }
}
