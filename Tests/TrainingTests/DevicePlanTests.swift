import Testing
import TensorCore
@testable import Training

/// n_gpu and --device to a device, as pytorch-template's prepare_device.
@Suite struct DevicePlanTests {
    @Test func nGPUChoosesTheDevice() throws {
        #expect(try DevicePlan.choose(nGPU: 0, requested: nil, available: 2, driver: "").device == .cpu)
        let one = try DevicePlan.choose(nGPU: 1, requested: nil, available: 2, driver: "")
        #expect(one.device == .cuda(0) && one.warnings.isEmpty && one.notes == ["training on cuda:0"])
        let none = try DevicePlan.choose(nGPU: 1, requested: nil, available: 0, driver: "")
        #expect(none.device == .cpu && none.warnings == ["Warning: There's no GPU available on this machine, training will be performed on CPU."])
        let more = try DevicePlan.choose(nGPU: 4, requested: nil, available: 2, driver: "")
        #expect(more.device == .cuda(0))
        #expect(more.warnings == ["Warning: The number of GPU's configured to use is 4, but only 2 are available on this machine."])
        #expect(more.notes.last == "n_gpu is 2: ferry trains on one GPU (cuda:0); the others stay idle (no data parallelism)")
    }

    @Test func explicitDeviceWins() throws {
        #expect(try DevicePlan.choose(nGPU: 1, requested: .cpu, available: 1, driver: "").device == .cpu)
        #expect(try DevicePlan.choose(nGPU: 0, requested: .cuda(1), available: 2, driver: "").device == .cuda(1))
        #expect(throws: TrainingError.self) { try DevicePlan.choose(nGPU: 0, requested: .cuda(0), available: 0, driver: "no libcuda") }
    }
}
