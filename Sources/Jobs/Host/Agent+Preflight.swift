import Foundation
import System
#if canImport(Glibc)
import Glibc
#endif

// `hello` and `preflight`: what the host is and whether a job can run there.

/// What the host can tell about its engine libraries; the CLI supplies TensorCore's own checks
/// (Jobs does not import the engine), the default only tries to load the libraries.
public struct AgentProbes: Sendable {
    public var engine: @Sendable () -> (cpuMissing: [String], oneDNN: LibraryCheck, cuda: LibraryCheck)

    public init(engine: @escaping @Sendable () -> (cpuMissing: [String], oneDNN: LibraryCheck, cuda: LibraryCheck)) {
        self.engine = engine
    }

    /// dlopen of the names TensorCore tries.
    public static let loadOnly = AgentProbes {
        func load(_ names: [String]) -> LibraryCheck {
            var errors: [String] = []
            for name in names {
                if let handle = dlopen(name, RTLD_NOW | RTLD_LOCAL) {
                    dlclose(handle)
                    return LibraryCheck(available: true, detail: name)
                }
                errors.append(dlerror().map { String(cString: $0) } ?? name)
            }
            return LibraryCheck(available: false, detail: errors.joined(separator: "; "))
        }
        return ([], load(["libdnnl.so.2", "libdnnl.so.3", "libdnnl.so"]), load(["libcuda.so.1"]))
    }
}

extension Agent {
    func hello() -> AgentHello {
        var name = utsname()
        uname(&name)
        let sys = withUnsafeBytes(of: &name.sysname) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        let machine = withUnsafeBytes(of: &name.machine) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        return AgentHello(ferry: version, protocolVersion: AgentProtocol.version, home: home, binary: binary, system: "\(sys) \(machine)")
    }

    func preflight(_ request: PreflightRequest) throws -> PreflightReport {
        let free = FerryHome.freeBytes(at: home)
        var missing: BlobsMissingReply?
        var needed = request.neededBytes
        if let blobs = request.blobs {
            let (lacking, partial) = try self.blobs.missing(Array(blobs.keys))
            missing = BlobsMissingReply(missing: lacking, partial: partial)
            let toReceive = lacking.reduce(Int64(0)) { $0 + (blobs[$1] ?? 0) - (partial[$1] ?? 0) }
            needed += toReceive + blobs.values.reduce(0, +) + (16 << 20)
        }
        // The engine's checks load oneDNN and look for CUDA: only for a job that runs the engine.
        let engine = request.needsEngine ? probes.engine() : (cpuMissing: [], oneDNN: LibraryCheck.notChecked, cuda: LibraryCheck.notChecked)
        let (gpus, smiError) = NvidiaSMI.query()
        let userHome = FerryHome.userHome
        var missingPaths: [String] = []
        for path in request.paths {
            let expanded = path == "~" ? userHome : path.hasPrefix("~/") ? (userHome as NSString).appendingPathComponent(String(path.dropFirst(2))) : path
            if expanded.hasPrefix("/") && !POSIX.exists(expanded) { missingPaths.append(path) }
        }
        var problems: [String] = []
        if let free, needed > 0, free < needed {
            problems.append("only \(ByteCount.format(free)) free in \(home); the job needs \(ByteCount.format(needed))")
        }
        if !missingPaths.isEmpty { problems.append("missing on the host: \(missingPaths.joined(separator: ", "))") }
        if let wanted = request.gpuCount, wanted > gpus.count {
            problems.append("the job asks for \(wanted) GPU\(wanted == 1 ? "" : "s") and this host has \(gpus.count)" + (smiError.map { " (\($0))" } ?? ""))
        }
        if let modelBytes = request.modelBytes, let memory = FerryHome.physicalMemory,
           modelBytes < 0 || modelBytes.multipliedReportingOverflow(by: 4).overflow || modelBytes * 4 > memory {
            // Weights, gradients and two Adam moments: four copies at the least.
            problems.append("the model's \(ByteCount.format(modelBytes)) of parameters need about \(ByteCount.format(modelBytes * 4)) to train; this host has \(ByteCount.format(memory)) of memory: use a smaller model or a host with more memory")
        }
        if request.needsEngine {
            if !engine.cpuMissing.isEmpty {
                problems.append("the host's CPU lacks \(engine.cpuMissing.joined(separator: ", ")), which ferry's engine needs")
            } else if !engine.oneDNN.available {
                problems.append("oneDNN does not load on the host: \(engine.oneDNN.detail)")
            }
            // A GPU job never trains silently on the CPU: the engine must reach CUDA (driver, cuBLAS, NVRTC).
            if let wanted = request.gpuCount, wanted > 0, !gpus.isEmpty, !engine.cuda.available {
                problems.append("the job asks for \(wanted) GPU\(wanted == 1 ? "" : "s") but ferry's engine cannot use CUDA on this host: \(engine.cuda.detail)")
            }
        }
        var report = PreflightReport(ferry: version, home: home, freeBytes: free, cpus: ProcessInfo.processInfo.activeProcessorCount,
                                     gpus: gpus, nvidiaSmi: smiError, cuda: engine.cuda, oneDNN: engine.oneDNN, cpuMissing: engine.cpuMissing,
                                     missingPaths: missingPaths, missingLibraries: Agent.missingLibraries(in: engine.oneDNN.available ? "" : engine.oneDNN.detail),
                                     problems: problems, missing: missing, neededBytes: needed)
        report.sbatch = Spawn.searchPath("sbatch", in: ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        return report
    }

    /// `node-check ID`, run by a Slurm job's batch script on its compute node before the payload (the
    /// login node that answered the launch's preflight often has no GPU, or other libraries): can
    /// this node run ferry's engine (CPU features, oneDNN), and CUDA when the job asks for GPUs? The
    /// verdict goes to stdout (the job's log); on a failure the problems also go to
    /// `slurm-check.txt` beside the script, for `ferry status`, and the status is 1.
    func nodeCheck(_ id: String) throws -> Int32 {
        let paths = try store.paths(id)
        let spec = try store.spec(id)
        let file = (paths.directory as NSString).appendingPathComponent(SlurmBatchScript.checkFile)
        let node = POSIX.hostName
        guard spec.needs.engine else {
            unlink(file)
            return 0
        }
        let engine = probes.engine()
        var wanted = 0
        switch spec.gpus.flatMap(GPURequest.init(parsing:)) {
        case .count(let n)?: wanted = n
        case .list(let list)?: wanted = list.split(separator: ",").count
        case nil: wanted = 0
        }
        var problems: [String] = []
        if !engine.cpuMissing.isEmpty {
            problems.append("the CPU lacks \(engine.cpuMissing.joined(separator: ", ")), which ferry's engine needs")
        } else if !engine.oneDNN.available {
            problems.append("oneDNN does not load: \(engine.oneDNN.detail)")
        }
        // Slurm gave the job its GPUs: a GPU job never trains silently on the CPU.
        if wanted > 0, !engine.cuda.available {
            problems.append("the job asks for \(wanted) GPU\(wanted == 1 ? "" : "s") but ferry's engine cannot use CUDA here: \(engine.cuda.detail)")
        }
        if problems.isEmpty {
            unlink(file)
            let cuda = wanted > 0 ? ", CUDA ok" : ""
            FileHandle.standardOutput.write(Data("ferry: engine check on \(node): oneDNN \(engine.oneDNN.detail)\(cuda)\n".utf8))
            return 0
        }
        let text = "on node \(node): " + problems.joined(separator: "; ")
        try JobsError.system { try AtomicFile.write(Data((text + "\n").utf8), to: file, mode: .exact(0o644)) }
        FileHandle.standardOutput.write(Data("""
            ferry: engine check failed \(text)
            ferry: the job ends here without running; install what is missing on the compute nodes or load it with the host's setup lines (`ferry hosts add NAME TARGET --slurm --setup 'module load cuda'`), or launch without --gpus

            """.utf8))
        return 1
    }

    /// `libgomp.so.1` from the loader's "libgomp.so.1: cannot open shared object file: ..." (or "file
    /// too short", "invalid ELF header": a library present but unusable), as ld.so and dlerror say it.
    static func missingLibraries(in text: String) -> [String] {
        var names: [String] = []
        let reasons = [": cannot open shared object file", ": file too short", ": invalid ELF header", ": wrong ELF class"]
        for line in text.split(whereSeparator: { $0 == "\n" || $0 == ";" }) {
            for reason in reasons {
                guard let range = line.range(of: reason) else { continue }
                let before = line[..<range.lowerBound]
                guard let word = before.split(whereSeparator: { $0 == " " || $0 == ":" || $0 == "/" }).last else { continue }
                let name = String(word)
                if name.hasPrefix("lib") && name.contains(".so") && !names.contains(name) { names.append(name) }
            }
        }
        return names
    }
}

/// nvidia-smi's view of the GPUs, when it is installed.
enum NvidiaSMI {
    static func query() -> ([GPUInfo], String?) {
        let env = ProcessInfo.processInfo.environment
        guard let smi = Spawn.searchPath("nvidia-smi", in: (env["PATH"] ?? "") + ":/usr/bin:/usr/local/bin:/usr/local/nvidia/bin") else { return ([], nil) }
        let result = Subprocess.capture([smi, "--query-gpu=index,name,memory.total,memory.used,utilization.gpu", "--format=csv,noheader,nounits"],
                                        environment: env, timeout: 15)
        guard result.status == 0 else {
            let text = String(decoding: result.output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            return ([], "nvidia-smi failed (status \(result.status)): \(text.prefix(300))")
        }
        return (parse(String(decoding: result.output, as: UTF8.self)), nil)
    }

    static func parse(_ text: String) -> [GPUInfo] {
        text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            guard f.count >= 2, let index = Int(f[0]) else { return nil }
            return GPUInfo(index: index, name: f[1], memoryTotalMib: f.count > 2 ? Int(f[2]) : nil,
                           memoryUsedMib: f.count > 3 ? Int(f[3]) : nil, utilizationPercent: f.count > 4 ? Int(f[4]) : nil)
        }
    }
}
