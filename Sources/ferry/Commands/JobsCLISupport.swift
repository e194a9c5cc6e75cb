import ArgumentParser
import Foundation
import RunContract
import System
import Jobs

/// What the job commands (launch, logs, status, ls, cancel, fetch, hosts) share: the context,
/// error reporting, exit codes, Ctrl-C, progress bars.
enum JobsCLI {
    /// FERRY_HOME, this binary for `--host local`, `FERRY_AGENT_BINARY` (else this binary) for hosts.
    /// With `verbose` (`-v`), the steps' details and times go to stderr.
    static func context(verbose: Bool = false) -> JobsContext {
        var context = JobsContext(home: FerryHome.path, version: FerryVersion.string,
                                  agentBinary: JobsContext.defaultAgentBinary())
        context.localBinary = selfBinary
        // Jobs on this machine (`--host local`) do not inherit ferry's own secrets.
        for name in JobsCLI.ferrySecrets { context.localEnvironment[name] = nil }
        let announced = Announced()
        context.installProgress = { what, done, total in
            if announced.first(what) { say("installing \(what) on the host (\(ByteCount.format(total))): it has none of this version") }
            Progress.shared.update("installing \(what)", done: done, total: total)
        }
        if verbose { context.verbose = { say("  -v " + $0) } }
        return context
    }

    static var selfBinary: String { Executable.path }

    /// Variables that carry ferry's own secrets (SSH and host-up passwords): never passed to a job.
    static let ferrySecrets = ["FERRY_SSH_PASSWORD", "FERRY_HOST_PASSWORD"]

    static func say(_ text: String) {
        Progress.shared.clear(keepingRate: true)
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }

    /// Runs a command body: a JobsError is printed as `ferry: …` and becomes exit 2 when it is the
    /// user's input that is wrong (nothing was done), else 1.
    static func run(_ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let exit as ExitCode {
            throw exit
        } catch let error as any ExitStatusError {
            say("ferry: \(error)")
            throw ExitCode(error.exitStatus)
        } catch is CancellationError {
            throw ExitCode(.interrupted)
        } catch {
            say("ferry: \(error)")
            throw ExitCode(.failed)
        }
    }

    /// The exit code for how a job ended: 0 succeeded, 75 stopped and resumable (cancelled,
    /// preempted, out of time), 1 otherwise.
    static func exitCode(for status: JobStatus) -> Int32 {
        switch status.state {
        case .succeeded: return ExitStatus.ok.rawValue
        case .cancelled, .preempted, .timeout: return ExitStatus.stopped.rawValue
        default: return ExitStatus.failed.rawValue
        }
    }

    /// Runs `body` as a task that Ctrl-C cancels; `interrupted` reports whether it did.
    static func interruptible<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> (T?, interrupted: Bool) {
        let task = Task { try await body() }
        let flag = AtomicFlag()
        signal(SIGINT, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        source.setEventHandler {
            flag.set()
            task.cancel()
            // A connection that ignores cancellation (a frozen host) cannot keep ferry alive: 3 s
            // after Ctrl-C it exits anyway (the job on the host is not touched either way).
            DispatchQueue.global().asyncAfter(deadline: .now() + 3) {
                say("\nferry: interrupted (the host did not answer in time)")
                exit(ExitStatus.interrupted.rawValue)
            }
        }
        source.resume()
        defer {
            source.cancel()
            signal(SIGINT, SIG_DFL)
        }
        do {
            return (try await task.value, false)
        } catch {
            if flag.isSet { return (nil, true) }
            throw error
        }
    }

    /// Writes log bytes to stdout as they come.
    static func writeOut(_ data: Data) {
        data.withUnsafeBytes { writeOut($0) }
    }

    /// Writes to stdout; a reader that went away (`ferry logs ID | head -1`) ends this process
    /// quietly with the broken-pipe status, as a shell tool does.
    static func writeOut(_ bytes: UnsafeRawBufferPointer) {
        Progress.shared.clear()
        do throws(SystemError) { try FileIO.writeAll(1, bytes, path: "stdout") } catch {
            exit(error.errno == EPIPE ? ExitStatus.brokenPipe.rawValue : ExitStatus.failed.rawValue)
        }
    }

    static func printJSON<T: Encodable>(_ value: T) throws {
        print(try JSONCoding.string(value, isoDates: true))
    }

    static func ago(_ date: Date) -> String {
        let s = Date().timeIntervalSince(date)
        return s < 0 ? "just now" : JobProgress.duration(s) + " ago"
    }

    static func time(_ date: Date) -> String {
        let f = DateFormatter()
        f.dateFormat = "yyyy-MM-dd HH:mm:ss"
        return f.string(from: date)
    }
}

/// Says each thing once.
final class Announced: @unchecked Sendable {
    private let lock = NSLock()
    private var seen: Set<String> = []
    func first(_ key: String) -> Bool { lock.lock(); defer { lock.unlock() }; return seen.insert(key).inserted }
}

/// One progress line on stderr, only when stderr is a terminal.
final class Progress: @unchecked Sendable {
    static let shared = Progress()
    private let lock = NSLock()
    private var visible = false
    private var last = Date.distantPast
    let enabled = isatty(2) != 0

    private var started: Date?

    /// Draws `label [bar] done/total`, with `files` (landed of all) when given, the rate since the
    /// first update and the time left at that rate.
    func update(_ label: String, done: Int64, total: Int64, files: (done: Int, total: Int)? = nil) {
        guard enabled else { return }
        lock.lock(); defer { lock.unlock() }
        let now = Date()
        if started == nil { started = now }
        guard done >= total || now.timeIntervalSince(last) > 0.1 else { return }
        last = now
        let width = 30
        let fraction = total > 0 ? min(1, Double(done) / Double(total)) : 1
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "=", count: filled) + (filled < width ? ">" : "") + String(repeating: " ", count: max(0, width - filled - 1))
        var line = "\r\u{1B}[K\(label) [\(bar)] \(ByteCount.format(done))/\(ByteCount.format(total))"
        if let files { line += ", \(files.done)/\(files.total) files" }
        let elapsed = now.timeIntervalSince(started ?? now)
        if elapsed > 0.3, done > 0 {
            let rate = Double(done) / elapsed
            line += "  \(ByteCount.format(Int64(rate)))/s"
            if done < total { line += "  ETA \(Progress.duration(Double(total - done) / rate))" }
        }
        FileHandle.standardError.write(Data(line.utf8))
        visible = true
    }

    /// `42s`, `3m07s`, `1h02m`.
    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded(.up))
        if s < 60 { return "\(s)s" }
        if s < 3600 { return String(format: "%dm%02ds", s / 60, s % 60) }
        return String(format: "%dh%02dm", s / 3600, (s % 3600) / 60)
    }

    /// Erases the line; with `keepingRate`, the rate still counts from the first update (a line
    /// printed above the bar does not start the transfer over).
    func clear(keepingRate: Bool = false) {
        guard enabled else { return }
        lock.lock(); defer { lock.unlock() }
        if visible { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)); visible = false }
        if !keepingRate { started = nil }
    }
}
