import ArgumentParser
import Data
import Foundation
import RunContract
import SSH
import System
import TensorCore
import Tunnels

// How every module's error ends a command: the run contract's exit statuses, decided here and in
// the modules that import the contract (JobsError, TrainingError) — nowhere else.

extension SSHError: ExitStatusError {
    /// A connection that failed, as OpenSSH's `ssh` says it (255).
    public var exitStatus: ExitStatus { .connectionFailed }
}

extension TunnelError: ExitStatusError {
    /// A person has to act first (a flag, a key, a token): usage; else the attempt failed.
    public var exitStatus: ExitStatus { isPermanent ? .usage : .failed }
}

extension TensorError: ExitStatusError {
    public var exitStatus: ExitStatus { .failed }
}

extension DataError: ExitStatusError {
    public var exitStatus: ExitStatus { .failed }
}

extension SystemError: ExitStatusError {
    public var exitStatus: ExitStatus { .failed }
}

extension ExitCode {
    /// The contract's exit statuses (RunContract.ExitStatus), the same for every command.
    init(_ status: ExitStatus) { self.init(status.rawValue) }
}
