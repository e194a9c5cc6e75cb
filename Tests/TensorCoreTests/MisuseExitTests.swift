import Foundation
import Testing
@testable import TensorCore

/// Bad input stops the program with a message that names the shapes: never a silent wrong answer.
/// `shapeError` ends in `fatalError`, so each misuse runs in a child process (a Swift Testing exit
/// test) whose stderr is checked for the message.
@Suite struct MisuseExitTests {
    /// One misuse and what its message must contain.
    enum Misuse: String, CaseIterable, Codable, Sendable {
        case mmShapeMismatch, viewInvalidForNumel, broadcastFailure, catMismatch, stackMismatch, matmulMismatch,
             bmmMismatch, linearMismatch, conv2dChannelMismatch, conv2dKernelLargerThanInput, maxPoolKernelLargerThanInput,
             crossEntropyTargetOutOfRangeFused, crossEntropyTargetOutOfRangeGeneric, nllLossTargetShape, mseLossShapes,
             indexOutOfBounds, sliceIndexOutOfBounds, indexSelectOutOfRange, gatherOutOfBounds, dimOutOfRange,
             backwardNonScalarWithoutGradient, backwardWithoutGrad, backwardGradientShape, secondBackwardWithoutRetainGraph,
             toCUDA, expandMismatch, requiresGradOnInt, itemOfManyElements, scalarsCountMismatch, raggedLiteral,
             viewOfTransposed, intToNegativeIntPower, scatterAddFloatIndex, zeroDDimOutOfRange, boolMinusBool

        /// Substrings the message must contain.
        var expected: [String] {
            switch self {
            case .mmShapeMismatch: return ["mm: shapes [2, 3] and [4, 5] cannot be multiplied"]
            case .viewInvalidForNumel: return ["shape [-1, 7] is invalid for 12 elements"]
            case .broadcastFailure: return ["shapes [2, 3] and [4] cannot be broadcast together"]
            case .catMismatch: return ["cat:", "[2, 3]", "[2, 4]"]
            case .stackMismatch: return ["stack expects each tensor to be equal size", "[2, 3]", "[3, 2]"]
            case .matmulMismatch: return ["matmul: shapes [2, 3, 4] and [5, 2] cannot be multiplied"]
            case .bmmMismatch: return ["bmm: shapes [2, 3, 4] and [3, 4, 5]"]
            case .linearMismatch: return ["linear: input of shape [2, 5] does not match weight [3, 4]"]
            case .conv2dChannelMismatch: return ["conv2d: input has 3 channels (shape [1, 3, 5, 5]) but weight [2, 4, 3, 3] expects 4"]
            case .conv2dKernelLargerThanInput: return ["conv2d: kernel 4x4", "larger than the padded input 2x2"]
            case .maxPoolKernelLargerThanInput: return ["maxPool2d: kernel 3 is larger than the input 2x2"]
            case .crossEntropyTargetOutOfRangeFused: return ["crossEntropy", "target 5 is out of bounds for 3 classes"]
            case .crossEntropyTargetOutOfRangeGeneric: return ["target 5 is out of bounds for 3 classes"]
            case .nllLossTargetShape: return ["nllLoss: target shape [3] does not match input [2, 4]"]
            case .mseLossShapes: return ["mseLoss: input shape [2, 3] and target shape [3, 2] differ"]
            case .indexOutOfBounds: return ["index 5 is out of bounds for dimension 0 with size 3"]
            case .sliceIndexOutOfBounds: return ["index -5 is out of bounds for dimension 1 with size 4"]
            case .indexSelectOutOfRange: return ["indexSelect: index 3 is out of range for dimension 0 of size 3"]
            case .gatherOutOfBounds: return ["gather: index 4 is out of bounds for dimension 1 with size 4"]
            case .dimOutOfRange: return ["dimension 2 is out of range for a tensor of shape [2, 3]"]
            case .backwardNonScalarWithoutGradient: return ["backward() needs gradient: for a non-scalar output of shape [3]"]
            case .backwardWithoutGrad: return ["does not require grad"]
            case .backwardGradientShape: return ["gradient shape [2] does not match output shape [3]"]
            case .secondBackwardWithoutRetainGraph: return ["a second time", "retainGraph: true"]
            case .toCUDA: return ["to(.cuda(99))"]
            case .expandMismatch: return ["expand: the size 3 at dim 1 must match 4", "[2, 3]"]
            case .requiresGradOnInt: return ["only floating point tensors can require gradients, got int64"]
            case .itemOfManyElements: return ["item(): a tensor with 6 elements cannot be converted to a scalar (shape [2, 3])"]
            case .scalarsCountMismatch: return ["shape [2, 3] holds 6 elements, got 5 scalars"]
            case .raggedLiteral: return ["ragged"]
            case .viewOfTransposed: return ["view size [6] is not compatible with input tensor's size [3, 2]", "use reshape"]
            case .intToNegativeIntPower: return ["negative integer powers"]
            case .scatterAddFloatIndex: return ["scatterAdd: index must be an int64 tensor with 2 dims, got float32"]
            case .boolMinusBool: return ["subtraction of two bool tensors is not supported"]
            case .zeroDDimOutOfRange: return ["dimension 1 is out of range for a tensor of shape []"]
            }
        }

        /// Does the wrong thing (in the child process).
        func perform() {
            let a23 = Tensor.zeros([2, 3])
            switch self {
            case .mmShapeMismatch: _ = a23.mm(Tensor.zeros([4, 5]))
            case .viewInvalidForNumel: _ = Tensor.arange(12).view(-1, 7)
            case .broadcastFailure: _ = a23 + Tensor.zeros([4])
            case .catMismatch: _ = Tensor.cat([a23, Tensor.zeros([2, 4])], dim: 0)
            case .stackMismatch: _ = Tensor.stack([a23, Tensor.zeros([3, 2])])
            case .matmulMismatch: _ = Tensor.zeros([2, 3, 4]).matmul(Tensor.zeros([5, 2]))
            case .bmmMismatch: _ = Tensor.zeros([2, 3, 4]).bmm(Tensor.zeros([3, 4, 5]))
            case .linearMismatch: _ = F.linear(Tensor.zeros([2, 5]), Tensor.zeros([3, 4]))
            case .conv2dChannelMismatch: _ = F.conv2d(Tensor.zeros([1, 3, 5, 5]), Tensor.zeros([2, 4, 3, 3]))
            case .conv2dKernelLargerThanInput: _ = F.conv2d(Tensor.zeros([1, 1, 2, 2]), Tensor.zeros([1, 1, 4, 4]), nil, stride: 3)
            case .maxPoolKernelLargerThanInput: _ = F.maxPool2d(Tensor.zeros([1, 1, 2, 2]), kernelSize: 3, stride: 2)
            case .crossEntropyTargetOutOfRangeFused: _ = F.crossEntropy(a23, Tensor([0, 5]))
            case .crossEntropyTargetOutOfRangeGeneric: _ = F.crossEntropy(a23.double(), Tensor([0, 5]))
            case .nllLossTargetShape: _ = F.nllLoss(Tensor.zeros([2, 4]), Tensor([0, 1, 2]))
            case .mseLossShapes: _ = F.mseLoss(a23, Tensor.zeros([3, 2]))
            case .indexOutOfBounds: _ = Tensor.zeros([3, 4])[5]
            case .sliceIndexOutOfBounds: _ = Tensor.zeros([3, 4])[.all, -5]
            case .indexSelectOutOfRange: _ = Tensor.zeros([3, 2]).indexSelect(dim: 0, index: Tensor([0, 3]))
            case .gatherOutOfBounds: _ = Tensor.zeros([2, 4]).gather(dim: 1, index: Tensor([[0], [4]]))
            case .dimOutOfRange: _ = a23.sum(dim: 2)
            case .backwardNonScalarWithoutGradient: (Tensor.zeros([3], requiresGrad: true) * 2).backward()
            case .backwardWithoutGrad: a23.sum().backward()
            case .backwardGradientShape: (Tensor.zeros([3], requiresGrad: true) * 2).backward(gradient: Tensor([1.0, 1.0]))
            case .secondBackwardWithoutRetainGraph:
                let y = (Tensor.ones([3], requiresGrad: true) * 2).sum()
                y.backward()
                y.backward()
            case .toCUDA: _ = a23.to(.cuda(99))
            case .expandMismatch: _ = a23.expand(2, 4)
            case .requiresGradOnInt: Tensor.arange(3).requiresGrad = true
            case .itemOfManyElements: _ = a23.item()
            case .scalarsCountMismatch: _ = Tensor(shape: [2, 3], scalars: [Float](repeating: 0, count: 5))
            case .raggedLiteral: _ = Tensor([[1, 2], [3]])
            case .viewOfTransposed: _ = a23.T.view(6)
            case .intToNegativeIntPower: _ = Tensor([2, 3]).pow(Tensor([1, -1]))
            case .scatterAddFloatIndex: _ = a23.scatterAdd(dim: 1, index: Tensor([[0.0, 1.0], [2.0, 0.0]]), source: Tensor.ones([2, 2]))
            case .boolMinusBool: _ = Tensor([true]) - Tensor([false])
            case .zeroDDimOutOfRange: _ = Tensor(1.0).sum(dim: 1)
            }
        }
    }

    @Test("misuse stops with a message naming the shapes", arguments: Misuse.allCases)
    func misuseStops(_ misuse: Misuse) async throws {
        let result = try await #require(processExitsWith: .failure, observing: [\.standardErrorContent]) { [misuse] in
            misuse.perform()
        }
        let stderr = String(decoding: result.standardErrorContent, as: UTF8.self)
        for needle in misuse.expected {
            #expect(stderr.contains(needle), "stderr lacks \"\(needle)\":\n\(stderr.prefix(600))")
        }
        #expect(stderr.contains("Fatal error"), "not stopped by shapeError/fatalError:\n\(stderr.prefix(600))")
    }

    /// Without a driver (no GPU, no FERRY_CUDA_DRIVER=mock), to(.cuda(0)) says CUDA is unavailable and why.
    @Test(.enabled(if: !Device.isCUDAAvailable)) func toCUDASaysWhy() async throws {
        let result = try await #require(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = Tensor([1.0]).to(.cuda(0))
        }
        let stderr = String(decoding: result.standardErrorContent, as: UTF8.self)
        #expect(stderr.contains("CUDA is not available on this machine"), "\(stderr.prefix(600))")
    }

    /// The exit-test machinery itself can tell a correct program from a stopped one.
    @Test func correctUseDoesNotStop() async {
        await #expect(processExitsWith: .success) {
            _ = Tensor.arange(12).view(-1, 6)
            _ = Tensor.zeros([2, 3]).mm(Tensor.zeros([3, 5]))
        }
    }
}
