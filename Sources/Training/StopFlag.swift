import Dispatch
import Foundation
import RunContract
import Synchronization

/// A request to stop, checked by the training loop between steps. SIGTERM and SIGINT set it (see
/// `installSignalHandlers`); tests set it directly.
public final class StopFlag: Sendable {
    private let count = Atomic<Int>(0)

    public init() {}

    /// Whether a stop was requested.
    public var isRequested: Bool { count.load(ordering: .acquiring) > 0 }

    /// Records a request; returns how many there have been.
    @discardableResult
    public func request() -> Int { count.add(1, ordering: .acquiringAndReleasing).newValue }

    /// Routes SIGTERM, SIGINT and SIGUSR2 (a scheduler's warning before preemption or the time
    /// limit, as Slurm's `--signal=USR2@…` sends it) to this flag: the first finishes the current
    /// step, writes `last/` and ends with status 75; a second SIGINT exits at once (status 130).
    public func installSignalHandlers(message: @escaping @Sendable (String) -> Void) {
        for sig in [SIGTERM, SIGINT, SIGUSR2] {
            signal(sig, SIG_IGN)   // the dispatch source sees the signal; the default action must not end the process first
            let source = DispatchSource.makeSignalSource(signal: sig, queue: SignalSources.queue)
            source.setEventHandler { [self] in
                let deliveries = max(1, Int(source.data))
                var total = 0
                for _ in 0..<deliveries { total = request() }
                if total == deliveries {
                    message("\(sig == SIGTERM ? "SIGTERM" : sig == SIGUSR2 ? "SIGUSR2" : "SIGINT"): stopping after this step and saving last/ (Ctrl-C again to quit at once)")
                }
                if total > 1 && sig == SIGINT {
                    message("SIGINT again: quitting without saving")
                    _exit(ExitStatus.interrupted.rawValue)
                }
            }
            source.resume()
            SignalSources.keep(source)
        }
    }
}

/// Keeps the signal sources alive for the life of the process.
enum SignalSources {
    static let queue = DispatchQueue(label: "ferry.training.signals")
    private static let sources = Mutex<[SignalSourceBox]>([])

    struct SignalSourceBox: @unchecked Sendable {   // only stored, never used again
        let source: DispatchSourceSignal
    }

    static func keep(_ source: DispatchSourceSignal) { sources.withLock { $0.append(SignalSourceBox(source: source)) } }
}
