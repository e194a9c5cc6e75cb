import FerryTestSupport
import Foundation
import System
@testable import Jobs
import JobsTestSupport
import TensorCore
import TrainingTestSupport
import Testing

/// `ferry launch --gpus 1` of a training config to a GPU host, end to end, on the CPU stand-in
/// driver: the host's preflight sees its GPU (a fake `nvidia-smi` on the host's PATH) and ferry's
/// engine reaching CUDA (`FERRY_CUDA_DRIVER=mock` in the host's environment); the job trains on
/// cuda:0, says so in its log and in `ferry status`, and the fetched checkpoint loads on a CPU.
@Suite struct JobsGPULaunchCLITests {
    /// A host whose `nvidia-smi` reports one GPU.
    static func fakeGPUHost(_ box: Sandbox) throws -> [String: String] {
        let bin = box.root + "/gpu-bin"
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
        let smi = bin + "/nvidia-smi"
        try Data("#!/bin/sh\necho '0, NVIDIA H100 80GB HBM3, 81559, 1, 0'\n".utf8).write(to: URL(fileURLWithPath: smi))
        chmod(smi, 0o755)
        return ["PATH": bin + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")]
    }

    @Test(.enabled(if: fashionOrCI)) func aGPUConfigTrainsOnTheHostsGPU() throws {
        let box = try Sandbox(); defer { box.remove() }
        var env = try Self.fakeGPUHost(box)
        env["FERRY_CUDA_DRIVER"] = "mock"
        try box.write("gpu.json", TrainJobConfig.text(limit: 200, epochs: 1).replacingOccurrences(of: "\"n_gpu\": 0", with: "\"n_gpu\": 1"))
        let launched = try TestFerry.run(["launch", "--host", "local", "--gpus", "1", "gpu.json"], sandbox: box, extraEnvironment: env)
        #expect(launched.status == 0, "\(launched.stdout)\n\(launched.stderr)")
        #expect(launched.stdout.contains("training on cuda:0"), "\(launched.stdout)")
        let id = try #require(Registry(home: box.home).jobs().first?.id)
        let status = try TestFerry.run(["status", id], sandbox: box, extraEnvironment: env)
        #expect(status.status == 0 && status.stdout.contains("on cuda:0"), "\(status.stdout)\n\(status.stderr)")
        let out = box.root + "/out"
        let fetched = try TestFerry.run(["fetch", id, "--what", "all", "--dest", out], sandbox: box, extraEnvironment: env)
        #expect(fetched.status == 0, "\(fetched.stderr)")
        let found = FileManager.default.enumerator(atPath: out)?.compactMap { $0 as? String }
            .filter { $0.hasSuffix("last/model.safetensors") } ?? []
        let path = try #require(found.first, "no checkpoint fetched: \(fetched.stdout)")
        let weights = try SafeTensors.read(URL(fileURLWithPath: out + "/" + path))
        #expect(!weights.isEmpty && weights.values.allSatisfy { $0.device == .cpu && $0.dtype == .float32 })
        #expect(weights.values.allSatisfy { $0.scalars(as: Float.self).allSatisfy(\.isFinite) })
    }

    /// A GPU job never trains silently on the CPU: a host with a GPU whose CUDA ferry's engine cannot
    /// load (no libcuda here) refuses the job at preflight, saying why, and starts nothing.
    @Test func aGPUConfigOnAHostWithoutUsableCUDAStopsAtPreflight() throws {
        let box = try Sandbox(); defer { box.remove() }
        var env = try Self.fakeGPUHost(box)
        env["FERRY_CUDA_LIB_DIR"] = box.root + "/no-cuda"
        if FileManager.default.fileExists(atPath: "/usr/lib/x86_64-linux-gnu/libcuda.so.1") { return }   // a real GPU machine
        try box.write("gpu.json", TrainJobConfig.text(limit: 100, epochs: 1).replacingOccurrences(of: "\"n_gpu\": 0", with: "\"n_gpu\": 1"))
        var full = TestFerry.environment(box)
        full.removeValue(forKey: "FERRY_CUDA_DRIVER")
        for (k, v) in env { full[k] = v }
        let result = try runProcess(TestFerry.binary, ["launch", "--host", "local", "--gpus", "1", "gpu.json"], environment: full,
                                    currentDirectory: URL(fileURLWithPath: box.project))
        #expect(result.status != 0)
        #expect(result.stderr.contains("asks for 1 GPU but ferry's engine cannot use CUDA on this host"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: box.home + "/jobs") || Registry(home: box.home).jobs().isEmpty, "a job was started")
    }
}
