import Foundation

extension Tensor: CustomStringConvertible, CustomDebugStringConvertible {
    /// PyTorch's printing: `tensor([[ 3,  5],\n        [10,  5]])`, `tensor(40.)`,
    /// `tensor([0.3458, 0.4224, 0.2318])`, with dtype / requires_grad / grad_fn suffixes.
    public var description: String { TensorFormatter.format(self) }
    public var debugDescription: String { description }
}

enum TensorFormatter {
    static let lineWidth = 80
    static let threshold = 1000
    static let edgeItems = 3

    struct ElementFormat {
        var width = 1
        var format: (Double) -> String

        init(values: [Double], dtype: DType) {
            switch dtype {
            case .bool:
                format = { $0 != 0 ? "True" : "False" }
                width = values.contains(0) ? 5 : 4
                return
            case .int64:
                format = { String(Int64($0)) }
            case .float32, .float64:
                let nonzeroFinite = values.filter { $0.isFinite && $0 != 0 }
                let finite = nonzeroFinite.map { Swift.abs($0) }
                let intMode = finite.allSatisfy { $0 == $0.rounded(.up) }
                let maxV = finite.max() ?? 0, minV = finite.min() ?? 0
                if finite.isEmpty {
                    format = { TensorFormatter.special($0) ?? String(format: "%.0f.", $0) }
                } else if intMode {
                    if maxV / minV > 1000 || maxV > 1e8 {
                        format = { TensorFormatter.special($0) ?? String(format: "%.4e", $0) }
                    } else {
                        format = { TensorFormatter.special($0) ?? (String(format: "%.0f", $0) + ".") }
                    }
                } else if maxV / minV > 1000 || maxV > 1e8 || minV < 1e-4 {
                    format = { TensorFormatter.special($0) ?? String(format: "%.4e", $0) }
                } else {
                    format = { TensorFormatter.special($0) ?? String(format: "%.4f", $0) }
                }
                // PyTorch sizes float columns by the nonzero finite values only (zeros, nan and inf
                // are padded to that width, or overflow it).
                width = Swift.max(1, nonzeroFinite.map { format($0).count }.max() ?? 1)
                return
            }
            width = values.map { format($0).count }.max() ?? 1
        }

        func string(_ v: Double) -> String {
            let s = format(v)
            return s.count >= width ? s : String(repeating: " ", count: width - s.count) + s
        }
    }

    static func special(_ v: Double) -> String? {
        if v.isNaN { return "nan" }
        if v == .infinity { return "inf" }
        if v == -.infinity { return "-inf" }
        return nil
    }

    static func format(_ t: Tensor) -> String {
        let prefix = "tensor("
        var suffixes: [String] = []
        if t.device != .cpu { suffixes.append("device='\(t.device)'") }
        let values = t.scalars(as: Double.self)
        let summarize = t.numel > threshold
        var body: String
        if t.numel == 0 {
            body = "[]"
            if t.ndim != 1 { suffixes.append("size=(\(t.shape.map(String.init).joined(separator: ", "))\(t.ndim == 1 ? "," : ""))") }
            // An empty tensor shows every dtype but the default one (no values to infer it from).
            if t.dtype != .float32 { suffixes.append("dtype=torch.\(t.dtype)") }
        } else {
            let shown = summarize ? summarizedValues(values, shape: t.shape) : values
            let fmt = ElementFormat(values: shown, dtype: t.dtype)
            if t.ndim == 0 {
                body = fmt.format(values[0])
            } else {
                body = render(values, shape: t.shape, strides: Tensor.contiguousStrides(t.shape), base: 0, dim: 0,
                              indent: prefix.count, fmt: fmt, summarize: summarize)
            }
        }
        if t.dtype == .float64 && t.numel > 0 { suffixes.append("dtype=torch.float64") }
        if let fn = t.gradFn { suffixes.append("grad_fn=\(fn)") } else if t.requiresGrad { suffixes.append("requires_grad=True") }
        // PyTorch's _add_suffixes: a suffix that would pass 80 columns starts a new line.
        var text = prefix + body
        var lastLine = (text.split(separator: "\n", omittingEmptySubsequences: false).last?.count ?? 0) + 2
        for suffix in suffixes {
            if lastLine + suffix.count + 2 > lineWidth {
                text += ",\n" + String(repeating: " ", count: prefix.count) + suffix
                lastLine = prefix.count + suffix.count
            } else {
                text += ", " + suffix
                lastLine += suffix.count + 2
            }
        }
        return text + ")"
    }

    /// The values that a summarised print shows (for the width computation).
    static func summarizedValues(_ values: [Double], shape: [Int]) -> [Double] {
        var shown: [Double] = []
        func walk(_ base: Int, _ dim: Int, _ strides: [Int]) {
            if dim == shape.count { shown.append(values[base]); return }
            let n = shape[dim]
            let idx = n > 2 * edgeItems ? Array(0..<edgeItems) + Array((n - edgeItems)..<n) : Array(0..<n)
            for i in idx { walk(base + i * strides[dim], dim + 1, strides) }
        }
        walk(0, 0, Tensor.contiguousStrides(shape))
        return shown
    }

    static func render(_ values: [Double], shape: [Int], strides: [Int], base: Int, dim: Int, indent: Int,
                       fmt: ElementFormat, summarize: Bool) -> String {
        let n = shape[dim]
        let useEllipsis = summarize && n > 2 * edgeItems
        let indices: [Int?] = useEllipsis ? Array(0..<edgeItems).map { $0 } + [nil] + Array((n - edgeItems)..<n).map { $0 } : Array(0..<n).map { $0 }
        if dim == shape.count - 1 {
            let items = indices.map { i -> String in i.map { fmt.string(values[base + $0 * strides[dim]]) } ?? " ..." }
            let perLine = Swift.max(1, (lineWidth - indent) / (fmt.width + 2))
            var lines: [String] = []
            var i = 0
            while i < items.count {
                lines.append(items[i..<Swift.min(items.count, i + perLine)].joined(separator: ", "))
                i += perLine
            }
            return "[" + lines.joined(separator: ",\n" + String(repeating: " ", count: indent + 1)) + "]"
        }
        let parts = indices.map { i -> String in
            guard let i else { return "..." }
            return render(values, shape: shape, strides: strides, base: base + i * strides[dim], dim: dim + 1,
                          indent: indent + 1, fmt: fmt, summarize: summarize)
        }
        let sep = "," + String(repeating: "\n", count: shape.count - dim - 1) + String(repeating: " ", count: indent + 1)
        return "[" + parts.joined(separator: sep) + "]"
    }
}
