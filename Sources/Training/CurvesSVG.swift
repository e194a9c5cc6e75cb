import Foundation

/// `curves.svg`: one panel per logged quantity (loss, each metric, the learning rate), training
/// and validation side by side, epochs along the bottom — the picture people open first.
public enum CurvesSVG {
    static let train = "#1f77b4"
    static let valid = "#e4572e"
    static let panelWidth = 460.0, panelHeight = 270.0

    /// The SVG text for `records` of a run planned for `totalEpochs`.
    public static func render(records: [EpochRecord], metricNames: [String], totalEpochs: Int, title: String) -> String {
        var panels: [(title: String, series: [(name: String, color: String, points: [(Double, Double)])], logScale: Bool)] = []
        for key in ["loss"] + metricNames {
            var series: [(String, String, [(Double, Double)])] = []
            let t = records.compactMap { r in r[key].map { (Double(r.epoch), $0) } }.filter { $0.1.isFinite }
            let v = records.compactMap { r in r["val_" + key].map { (Double(r.epoch), $0) } }.filter { $0.1.isFinite }
            if !t.isEmpty { series.append(("train", train, t)) }
            if !v.isEmpty { series.append(("validation", valid, v)) }
            if !series.isEmpty { panels.append((key, series, false)) }
        }
        let lrs = records.map { (Double($0.epoch), $0.lr) }.filter { $0.1.isFinite && $0.1 > 0 }
        if !lrs.isEmpty {
            let lo = lrs.map(\.1).min() ?? 1, hi = lrs.map(\.1).max() ?? 1
            panels.append(("learning rate", [("lr", "#2ca02c", lrs)], hi / lo > 20))
        }
        let columns = panels.count > 1 ? 2 : 1
        let rows = max(1, (panels.count + columns - 1) / columns)
        let width = Double(columns) * panelWidth + 20, height = Double(rows) * panelHeight + 70
        let lastEpoch = records.last?.epoch ?? 0
        var svg = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" \
        font-family="DejaVu Sans, Helvetica, Arial, sans-serif">
        <rect width="100%" height="100%" fill="white"/>
        <text x="20" y="30" font-size="18" font-weight="bold" fill="#222">\(escape(title))</text>
        <text x="20" y="52" font-size="13" fill="#666">epoch \(lastEpoch) of \(totalEpochs)\(summary(records.last))</text>

        """
        if panels.isEmpty {
            svg += "<text x=\"20\" y=\"90\" font-size=\"13\" fill=\"#666\">no epoch finished yet</text>\n"
        }
        let xMax = Double(max(totalEpochs, lastEpoch, 2))
        for (i, panel) in panels.enumerated() {
            let x0 = 10 + Double(i % columns) * panelWidth, y0 = 64 + Double(i / columns) * panelHeight
            svg += panelSVG(panel.title, panel.series, logScale: panel.logScale, x0: x0, y0: y0, xMax: xMax)
        }
        svg += "</svg>\n"
        return svg
    }

    static func summary(_ r: EpochRecord?) -> String {
        guard let r else { return "" }
        let shown = r.values.filter { $0.0.hasPrefix("val_") }.isEmpty ? r.values : r.values.filter { $0.0.hasPrefix("val_") }
        return shown.isEmpty ? "" : " — " + shown.map { "\($0.0) \(format($0.1))" }.joined(separator: ", ")
    }

    static func panelSVG(_ title: String, _ series: [(name: String, color: String, points: [(Double, Double)])], logScale: Bool,
                         x0: Double, y0: Double, xMax: Double) -> String {
        let left = x0 + 62, right = x0 + panelWidth - 18, top = y0 + 44, bottom = y0 + panelHeight - 42
        let all = series.flatMap { $0.points.map(\.1) }
        let f: (Double) -> Double = logScale ? { log10($0) } : { $0 }
        var lo = all.map(f).min() ?? 0, hi = all.map(f).max() ?? 1
        if hi - lo < 1e-12 { lo -= max(abs(lo) * 0.05, 0.01); hi += max(abs(hi) * 0.05, 0.01) }
        let yTicks = logScale ? Array(Int(floor(lo))...Int(ceil(hi))).map(Double.init) : niceTicks(lo, hi)
        lo = min(lo, yTicks.first ?? lo); hi = max(hi, yTicks.last ?? hi)
        func px(_ e: Double) -> Double { left + (e - 1) / max(xMax - 1, 1) * (right - left) }
        func py(_ v: Double) -> Double { bottom - (f(v) - lo) / (hi - lo) * (bottom - top) }
        func pyRaw(_ t: Double) -> Double { bottom - (t - lo) / (hi - lo) * (bottom - top) }

        var s = "<g>\n"
        s += "<rect x=\"\(r(x0 + 4))\" y=\"\(r(y0 + 4))\" width=\"\(r(panelWidth - 8))\" height=\"\(r(panelHeight - 8))\" rx=\"6\" fill=\"#fafafa\" stroke=\"#e3e3e3\"/>\n"
        s += "<text x=\"\(r(left))\" y=\"\(r(y0 + 24))\" font-size=\"14\" font-weight=\"bold\" fill=\"#333\">\(escape(title))\(logScale ? " (log scale)" : "")</text>\n"
        for t in yTicks {
            let y = pyRaw(t)
            s += "<line x1=\"\(r(left))\" y1=\"\(r(y))\" x2=\"\(r(right))\" y2=\"\(r(y))\" stroke=\"#e6e6e6\"/>\n"
            let label = logScale ? format(pow(10, t)) : format(t)
            s += "<text x=\"\(r(left - 6))\" y=\"\(r(y + 4))\" font-size=\"11\" fill=\"#555\" text-anchor=\"end\">\(label)</text>\n"
        }
        for e in epochTicks(Int(xMax)) {
            let x = px(Double(e))
            s += "<line x1=\"\(r(x))\" y1=\"\(r(bottom))\" x2=\"\(r(x))\" y2=\"\(r(bottom + 4))\" stroke=\"#888\"/>\n"
            s += "<text x=\"\(r(x))\" y=\"\(r(bottom + 17))\" font-size=\"11\" fill=\"#555\" text-anchor=\"middle\">\(e)</text>\n"
        }
        s += "<line x1=\"\(r(left))\" y1=\"\(r(bottom))\" x2=\"\(r(right))\" y2=\"\(r(bottom))\" stroke=\"#888\"/>\n"
        s += "<line x1=\"\(r(left))\" y1=\"\(r(top))\" x2=\"\(r(left))\" y2=\"\(r(bottom))\" stroke=\"#888\"/>\n"
        s += "<text x=\"\(r((left + right) / 2))\" y=\"\(r(bottom + 33))\" font-size=\"11\" fill=\"#555\" text-anchor=\"middle\">epoch</text>\n"
        for item in series {
            let pts = item.points.map { "\(r(px($0.0))),\(r(py($0.1)))" }.joined(separator: " ")
            if item.points.count > 1 {
                s += "<polyline points=\"\(pts)\" fill=\"none\" stroke=\"\(item.color)\" stroke-width=\"2\" stroke-linejoin=\"round\"/>\n"
            }
            for p in item.points {
                s += "<circle cx=\"\(r(px(p.0)))\" cy=\"\(r(py(p.1)))\" r=\"3\" fill=\"\(item.color)\"/>\n"
            }
        }
        // Legend on the title's line, right-aligned, each series with its latest value (never over the data).
        var lx = right
        for item in series.reversed() {
            let latest = item.points.last.map { format($0.1) } ?? ""
            let label = "\(item.name) \(latest)"
            let textWidth = Double(label.count) * 6.4
            s += "<text x=\"\(r(lx))\" y=\"\(r(y0 + 24))\" font-size=\"11\" fill=\"#333\" text-anchor=\"end\">\(escape(label))</text>\n"
            s += "<line x1=\"\(r(lx - textWidth - 22))\" y1=\"\(r(y0 + 20))\" x2=\"\(r(lx - textWidth - 6))\" y2=\"\(r(y0 + 20))\" stroke=\"\(item.color)\" stroke-width=\"3\"/>\n"
            lx -= textWidth + 36
        }
        s += "</g>\n"
        return s
    }

    /// About five round tick values covering [lo, hi].
    static func niceTicks(_ lo: Double, _ hi: Double) -> [Double] {
        let span = hi - lo
        let rough = span / 4
        let magnitude = pow(10, floor(log10(rough)))
        let step = [1.0, 2, 2.5, 5, 10].map { $0 * magnitude }.first { $0 >= rough } ?? 10 * magnitude
        let end = ceil(hi / step) * step
        var t = floor(lo / step) * step
        var out: [Double] = []
        while t <= end + step * 1e-9 && out.count < 12 {
            out.append(abs(t) < step * 1e-9 ? 0 : t)
            t += step
        }
        return out
    }

    static func epochTicks(_ maxEpoch: Int) -> [Int] {
        let step = [1, 2, 5, 10, 20, 25, 50, 100, 200, 500, 1000].first { maxEpoch / $0 <= 10 } ?? max(1, maxEpoch / 10)
        var ticks = [1]
        var e = step
        while e <= maxEpoch { if e > 1 { ticks.append(e) }; e += step }
        return ticks
    }

    static func format(_ v: Double) -> String {
        let a = abs(v)
        if a == 0 { return "0" }
        if a >= 10000 || a < 0.001 {
            // Compact scientific: 7.5e-4, 1e-5.
            let exponent = Int(floor(log10(a)))
            var mantissa = String(format: "%.2f", v / pow(10, Double(exponent)))
            while mantissa.hasSuffix("0") { mantissa.removeLast() }
            if mantissa.hasSuffix(".") { mantissa.removeLast() }
            return "\(mantissa)e\(exponent)"
        }
        if a >= 10 { return String(format: "%.1f", v) }
        return String(format: "%.4g", v)
    }

    static func r(_ v: Double) -> String { String(format: "%.1f", v) }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
