import ArgumentParser
import Data
import Foundation
import System
import Jobs
import SSH
import TensorCore
import Tunnels

/// `ferry doctor`: what this machine has of what ferry needs, each with what to do when missing.
struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check the libraries, data, binaries and disk ferry needs on this machine.")

    @Flag(name: .long, help: "Print one JSON object for scripts.")
    var json = false

    struct Check: Codable {
        enum Status: String, Codable { case ok, problem, info }
        var name: String
        var status: Status
        var detail: String
        var fix: String?
        var required: Bool
    }

    func run() throws {
        let checks = DoctorCommand.gather()
        let allRequired = !checks.contains { $0.required && $0.status == .problem }
        if json {
            struct Report: Codable { var ok: Bool; var version: String; var checks: [Check] }
            print(try JSONCoding.string(Report(ok: allRequired, version: FerryVersion.string, checks: checks)))
        } else {
            for c in checks {
                let mark = c.status == .ok ? "ok     " : c.status == .info ? "info   " : (c.required ? "PROBLEM" : "warn   ")
                print("\(mark)  \(c.name.padding(toLength: 14, withPad: " ", startingAt: 0)) \(c.detail)")
                if c.status == .problem, let fix = c.fix { print("         \(String(repeating: " ", count: 14)) → \(fix)") }
            }
            print(allRequired ? "\nall required parts are present" : "\nsome required parts are missing (see → above)")
        }
        if !allRequired { throw ExitCode(1) }
    }

    static func gather() -> [Check] {
        var checks: [Check] = []
        checks.append(Check(name: "libssh", status: .ok, detail: SSHSession.libraryVersion, fix: nil, required: true))
        checks.append(Check(name: "libcurl", status: .ok, detail: HTTPClient.libraryVersion, fix: nil, required: true))
        let missingCPU = EngineGuard.missingFeatures
        checks.append(missingCPU.isEmpty
            ? Check(name: "CPU", status: .ok, detail: "AVX2 and FMA present (the engine's kernels need them)", fix: nil, required: true)
            : Check(name: "CPU", status: .problem, detail: "lacks \(missingCPU.joined(separator: ", "))",
                    fix: "train on a newer CPU (x86-64-v3); the runner side works here", required: true))
        if !missingCPU.isEmpty {
            checks.append(Check(name: "oneDNN", status: .info, detail: "not checked (the CPU cannot run the engine)", fix: nil, required: false))
        } else { do {
            let version = try DNNL.versionString()
            let isa = try DNNL.effectiveISA()
            checks.append(Check(name: "oneDNN", status: .ok,
                                detail: "\(version), dispatching to \(isa), \(Threading.threadCount) threads" + (Threading.usesOpenMP ? " (OpenMP)" : ""),
                                fix: nil, required: true))
        } catch {
            checks.append(Check(name: "oneDNN", status: .problem, detail: "\(error)",
                                fix: "apt-get install libdnnl2 (needed to train; the runner side works without it)", required: true))
        } }
        let missing = FashionMNISTFiles.missingFiles()
        checks.append(missing.isEmpty
            ? Check(name: "Fashion-MNIST", status: .ok, detail: FashionMNISTFiles.defaultRoot, fix: nil, required: false)
            : Check(name: "Fashion-MNIST", status: .problem, detail: "missing \(missing.joined(separator: ", ")) in \(FashionMNISTFiles.defaultRoot)",
                    fix: "apt-get install dataset-fashion-mnist", required: false))
        for (binary, why) in [("ssh", "apt-get install openssh-client (only for your own use; ferry speaks SSH itself)"),
                              ("sshd", "apt-get install openssh-server (needed by `ferry host up` and the tests)")] {
            if let path = findExecutable(binary) {
                checks.append(Check(name: binary, status: .ok, detail: path, fix: nil, required: false))
            } else {
                checks.append(Check(name: binary, status: .problem, detail: "not found on PATH or in /usr/sbin", fix: why, required: false))
            }
        }
        let cuda = CUDARuntime.report()
        if cuda.available {
            // A GPU host: without cuBLAS or NVRTC a GPU config cannot train.
            checks.append(Check(name: "CUDA", status: cuda.missingLibraries == nil ? .ok : .problem, detail: cuda.lines.joined(separator: "; "),
                                fix: cuda.missingLibraries, required: false))
        } else {
            checks.append(Check(name: "CUDA", status: .info, detail: "not available: \(cuda.lines.joined(separator: "; ")) (CPU-only host)",
                                fix: nil, required: false))
        }
        let home = FerryHome.path
        if let free = FerryHome.freeBytes(at: home) {
            let gib = Double(free) / 1_073_741_824
            let enough = free >= 1 << 30
            checks.append(Check(name: "disk", status: enough ? .ok : .problem,
                                detail: String(format: "%.1f GiB free for %@", gib, home),
                                fix: enough ? nil : "free some space or point FERRY_HOME at a larger disk", required: true))
        } else {
            checks.append(Check(name: "disk", status: .problem, detail: "cannot stat \(home)",
                                fix: "check that FERRY_HOME points at a writable directory", required: true))
        }
        return checks
    }

    static func findExecutable(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin"] {
            let candidate = (dir as NSString).appendingPathComponent(name)
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}
