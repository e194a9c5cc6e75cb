import Foundation

/// Where the trainer's words go: stdout for the log, stderr for warnings and the progress bar.
/// Tests pass closures to collect them.
public struct ConsoleSink: Sendable {
    public var out: @Sendable (String) -> Void
    public var err: @Sendable (String) -> Void
    /// Whether stderr is a terminal (then a progress bar replaces per-step lines).
    public var isTerminal: Bool

    public init(out: @escaping @Sendable (String) -> Void, err: @escaping @Sendable (String) -> Void, isTerminal: Bool) {
        self.out = out; self.err = err; self.isTerminal = isTerminal
    }

    /// The process's stdout and stderr.
    public static var standard: ConsoleSink {
        ConsoleSink(out: { FileHandle.standardOutput.write(Data($0.utf8)) },
                    err: { FileHandle.standardError.write(Data($0.utf8)) },
                    isTerminal: isatty(STDERR_FILENO) == 1)
    }

    /// Says nothing.
    public static let silent = ConsoleSink(out: { _ in }, err: { _ in }, isTerminal: false)
}

/// pytorch-template's logging: verbosity 0 shows warnings, 1 adds epoch summaries, 2 adds
/// per-step lines. Everything (debug included) also goes to `train.log` with a time stamp.
final class Console {
    let sink: ConsoleSink
    let verbosity: Int
    var logFile: LineFile?
    private var barShown = false
    private var lastBar = 0.0

    init(sink: ConsoleSink, verbosity: Int) {
        self.sink = sink
        self.verbosity = verbosity
    }

    private func stamp(_ level: String, _ line: String) {
        guard let logFile else { return }
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.dateFormat = "yyyy-MM-dd HH:mm:ss,SSS"
        for l in line.split(separator: "\n", omittingEmptySubsequences: false) {
            logFile.append("\(f.string(from: Date())) - \(level) - \(l)")
        }
    }

    func info(_ line: String) {
        stamp("INFO", line)
        if verbosity >= 1 { clearBar(); sink.out(line + "\n") }
    }

    func debug(_ line: String) {
        stamp("DEBUG", line)
        if verbosity >= 2 && !sink.isTerminal { sink.out(line + "\n") }
    }

    func warning(_ line: String) {
        stamp("WARNING", line)
        clearBar()
        sink.err("warning: " + line + "\n")
    }

    func error(_ line: String) {
        stamp("ERROR", line)
        clearBar()
        sink.err("error: " + line + "\n")
    }

    /// One progress line, redrawn in place at most ten times a second (terminals only).
    func progress(epoch: Int, epochs: Int, batch: Int, batches: Int, loss: Double, samplesPerSecond: Double, eta: Double) {
        guard sink.isTerminal, verbosity >= 1 else { return }
        let now = Date().timeIntervalSince1970
        guard batch == batches || now - lastBar >= 0.1 else { return }
        lastBar = now
        let width = 24
        let filled = batches > 0 ? min(width, width * batch / batches) : 0
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
        let line = "epoch \(epoch)/\(epochs) \(bar) \(batch)/\(batches)  loss \(String(format: "%.4f", loss))  "
            + "\(Int(samplesPerSecond)) samples/s  ETA \(Console.duration(eta))"
        sink.err("\r\u{1B}[2K" + line)
        barShown = true
    }

    func clearBar() {
        if barShown { sink.err("\r\u{1B}[2K"); barShown = false }
    }

    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "?" }
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
    }
}
