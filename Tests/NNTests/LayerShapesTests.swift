import NN
import TensorCore
import Testing

/// The shape rules the config check follows (NN's `LayerShapes`) predict what the layers' forward
/// passes really give, and their parameter counts what building allocates.
@Suite struct LayerShapesTests {
    /// The rule's output for `input` (batch as -1) with the real batch put back.
    func predicted(_ outcome: LayerShapes.Outcome, batch: Int) throws -> [Int] {
        let shape = try outcome.get()
        return [batch] + shape.dropFirst()
    }

    @Test func rulesAgreeWithTheLayers() throws {
        let x4 = Tensor.randn([2, 3, 11, 9]), s4 = [-1, 3, 11, 9]
        let conv = Conv2d(3, 5, kernelSize: (3, 2), stride: (2, 1), padding: (1, 0), dilation: (1, 2))
        #expect(conv(x4).shape == (try predicted(LayerShapes.conv2d(s4, inChannels: 3, outChannels: 5, kernel: (3, 2), stride: (2, 1),
                                                                    padding: (1, 0), dilation: (1, 2), source: "x"), batch: 2)))
        #expect(conv.parameterCount == LayerShapes.conv2dParameters(inChannels: 3, outChannels: 5, kernel: (3, 2), bias: true))
        #expect(MaxPool2d(3, stride: 2, padding: 1, dilation: 2)(x4).shape
                == (try predicted(LayerShapes.pool2d("MaxPool2d", s4, kernel: 3, stride: 2, padding: 1, dilation: 2, source: "x"), batch: 2)))
        #expect(AvgPool2d(2)(x4).shape == (try predicted(LayerShapes.pool2d("AvgPool2d", s4, kernel: 2, stride: nil, padding: 0, dilation: 1, source: "x"), batch: 2)))
        for (start, end) in [(1, -1), (2, 3), (0, 1), (-3, -2)] {
            #expect(Flatten(startDim: start, endDim: end)(x4).shape
                    == (try LayerShapes.flatten([2, 3, 11, 9], startDim: start, endDim: end, source: "x").get()))
        }
        let x3 = Tensor.randn([4, 6, 7])
        let linear = Linear(7, 3)
        #expect(linear(x3).shape == (try predicted(LayerShapes.linear([-1, 6, 7], inFeatures: 7, outFeatures: 3, source: "x"), batch: 4)))
        #expect(linear.parameterCount == LayerShapes.linearParameters(inFeatures: 7, outFeatures: 3, bias: true))
        #expect(Linear(7, 3, bias: false).parameterCount == LayerShapes.linearParameters(inFeatures: 7, outFeatures: 3, bias: false))
        let bn = BatchNorm1d(6)
        #expect(bn(x3).shape == (try predicted(LayerShapes.batchNorm("BatchNorm1d", [-1, 6, 7], numFeatures: 6, dims: [2, 3], source: "x"), batch: 4)))
        #expect(bn.namedStates().filter { $0.1.dtype == .float32 }.reduce(0) { $0 + $1.1.numel } == LayerShapes.batchNormValues(numFeatures: 6))
        let ln = LayerNorm([6, 7])
        #expect(ln(x3).shape == (try predicted(LayerShapes.layerNorm([-1, 6, 7], normalizedShape: [6, 7], source: "x"), batch: 4)))
        #expect(ln.parameterCount == LayerShapes.layerNormParameters(normalizedShape: [6, 7]))
    }

    @Test func rulesRefuseWhatTheLayersCannotTake() {
        func message(_ outcome: LayerShapes.Outcome) -> String? {
            if case .failure(let e) = outcome { return e.message }
            return nil
        }
        #expect(message(LayerShapes.linear([-1, 3, 28, 28], inFeatures: 784, outFeatures: 10, source: "layers[0]"))
                == "Linear expects 784 input features, layers[0] gives 28 (its output is [3, 28, 28]; put a Flatten before the Linear)")
        #expect(message(LayerShapes.conv2d([-1, 1, 4, 4], inChannels: 1, outChannels: 2, kernel: (5, 5), stride: (1, 1), padding: (0, 0),
                                           dilation: (1, 1), source: "the input")) == "Conv2d's 5×5 kernel does not fit the 4×4 input from the input")
        #expect(message(LayerShapes.conv2d([-1, 1, 4, 4], inChannels: 1, outChannels: 2, kernel: (1, Int.max), stride: (1, 1), padding: (0, 0),
                                           dilation: (1, 2), source: "the input"))?.contains("overflow integer arithmetic") == true)
        #expect(message(LayerShapes.pool2d("MaxPool2d", [-1, 1, 8, 8], kernel: 2, stride: nil, padding: 2, dilation: 1, source: "x"))
                == "MaxPool2d's padding 2 is more than half its kernel_size 2")
        #expect(message(LayerShapes.flatten([-1, Int.max, 4], startDim: 1, endDim: -1, source: "x"))?.contains("more elements than an integer holds") == true)
        #expect(message(LayerShapes.batchNorm("BatchNorm2d", [-1, 3, 8], numFeatures: 3, dims: [4], source: "x"))
                == "BatchNorm2d expects [channels, height, width] inputs, x gives [3, 8]")
        #expect(message(LayerShapes.alongDim("Softmax", [-1, 10], dim: 2, source: "x")) != nil)
        #expect(LayerShapes.linearParameters(inFeatures: Int.max, outFeatures: 2, bias: true) == nil)
    }
}
