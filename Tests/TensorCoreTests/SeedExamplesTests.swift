import Foundation
import Testing
import TensorCore

/// Every example of the course notes (../shared/seeds/, "Day 6: PyTorch basics") in ferry's Swift
/// form: deterministic ones compared by value (and printed form), random ones by shape, dtype and
/// invariants.
@Suite struct SeedExamplesTests {
    @Test func floatTensorFromNdarray() {
        // n_array = np.arange(10).reshape(2,5); t_array = torch.FloatTensor(n_array)
        let t = Tensor.arange(10).reshape(2, 5).float()
        #expect(t.ndim == 2)
        #expect(t.shape == [2, 5])
        #expect(t.dtype == .float32)
        #expect(t.scalars(as: Float.self) == (0..<10).map(Float.init))
        #expect(t.description == "tensor([[0., 1., 2., 3., 4.],\n        [5., 6., 7., 8., 9.]])")
    }

    @Test func tensorFromList() {
        // data = [[3,5],[10,5]]; x_data = torch.tensor(data)
        let x = Tensor([[3, 5], [10, 5]])
        #expect(x.dtype == .int64)
        #expect(x.shape == [2, 2])
        #expect(x.description == "tensor([[ 3,  5],\n        [10,  5]])")
    }

    @Test func slicingFlattenOnesLikeNumpyShapeDtype() throws {
        let x = Tensor([[3, 5, 20], [10, 5, 50], [1, 5, 10]])
        // x_data[1:]
        #expect(x[1...].shape == [2, 3])
        #expect(x[1...].scalars(as: Int64.self) == [10, 5, 50, 1, 5, 10])
        // x_data[:2, 1:]
        #expect(x[..<2, 1...].scalars(as: Int64.self) == [5, 20, 5, 50])
        #expect(x[..<2, 1...].description == "tensor([[ 5, 20],\n        [ 5, 50]])")
        // x_data.flatten()
        #expect(x.flatten().scalars(as: Int64.self) == [3, 5, 20, 10, 5, 50, 1, 5, 10])
        // torch.ones_like(x_data)
        let ones = Tensor.ones(like: x)
        #expect(ones.dtype == .int64 && ones.shape == [3, 3] && ones.scalars(as: Int64.self).allSatisfy { $0 == 1 })
        // x_data.numpy() -> scalars(as:) and writeNPY(to:)
        #expect(x.scalars(as: Int64.self).count == 9)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("seed-\(UUID().uuidString).npy")
        defer { try? FileManager.default.removeItem(at: url) }
        try x.writeNPY(to: url)
        let back = try Tensor(npyFile: url)
        #expect(back.shape == [3, 3] && back.dtype == .int64 && back.scalars(as: Int64.self) == x.scalars(as: Int64.self))
        // x_data.shape, x_data.dtype
        #expect(x.shape == [3, 3])
        #expect(x.dtype == .int64)
    }

    @Test func deviceIsCPU() {
        let x = Tensor([[3, 5], [10, 5]])
        #expect(x.device == .cpu)
        #expect(x.device.description == "cpu")
        if Device.isCUDAAvailable == false {
            #expect(x.to(.cpu) === x)
        }
    }

    @Test func viewAndReshapeOfRand() {
        let t = GlobalRandom.withSeed(0) { Tensor.rand([2, 3, 2]) }
        #expect(t.shape == [2, 3, 2] && t.dtype == .float32)
        #expect(t.scalars(as: Float.self).allSatisfy { $0 >= 0 && $0 < 1 })
        let v = t.view([-1, 6]), r = t.reshape([-1, 6])
        #expect(v.shape == [2, 6] && r.shape == [2, 6])
        #expect(v.scalars(as: Float.self) == t.scalars(as: Float.self))
        #expect(r.scalars(as: Float.self) == t.scalars(as: Float.self))
        #expect(v.storage === t.storage, "view shares storage")
        // Deterministic under the same seed.
        #expect(GlobalRandom.withSeed(0) { Tensor.rand([2, 3, 2]) }.scalars(as: Float.self) == t.scalars(as: Float.self))
    }

    @Test func squeezeAndUnsqueeze() {
        let a = Tensor([[1, 2], [3, 4]])
        #expect(a.unsqueeze(0).shape == [1, 2, 2])
        #expect(a.unsqueeze(0).description == "tensor([[[1, 2],\n         [3, 4]]])")
        #expect(a.unsqueeze(1).shape == [2, 1, 2])
        #expect(a.unsqueeze(1).description == "tensor([[[1, 2]],\n\n        [[3, 4]]])")
        #expect(a.unsqueeze(2).shape == [2, 2, 1])
        #expect(a.unsqueeze(2).description == "tensor([[[1],\n         [2]],\n\n        [[3],\n         [4]]])")
        #expect(a.unsqueeze(0).squeeze().shape == [2, 2])
    }

    @Test func mmDotMatmul() {
        let t1 = Tensor.arange(10).reshape(2, 5).float()
        let t2 = Tensor.arange(10).reshape(5, 2).float()
        let mm = t1.mm(t2)
        #expect(mm.scalars(as: Float.self) == [60, 70, 160, 195])
        #expect(t1.matmul(t2).scalars(as: Float.self) == [60, 70, 160, 195])
        #expect(mm.description == "tensor([[ 60.,  70.],\n        [160., 195.]])")
        // dot of 1-d vectors
        #expect(Tensor([1.0, 2.0, 3.0]).dot(Tensor([4.0, 5.0, 6.0])).item() == 32)
    }

    @Test func matmulBroadcastsLikeTheNotes() {
        // a = torch.rand(5,2,3); b = torch.rand(3); a.matmul(b) == stack of a[i].mm(b.unsqueeze(1))
        let (a, b) = GlobalRandom.withSeed(1) { (Tensor.rand(5, 2, 3), Tensor.rand(3)) }
        let r = a.matmul(b)
        #expect(r.shape == [5, 2])
        for i in 0..<5 {
            let expected = a[i].mm(b.unsqueeze(1)).squeeze()
            #expect(r[i].allClose(expected, rtol: 1e-6, atol: 1e-6))
        }
    }

    @Test func softmaxOfTheNotes() {
        let tensor = Tensor([0.5, 0.7, 0.1])
        let h = F.softmax(tensor, dim: 0)
        #expect(h.description == "tensor([0.3458, 0.4224, 0.2318])")
        #expect(Swift.abs(h.sum().item() - 1) < 1e-6)
    }

    @Test func randintArgmaxOneHot() {
        let y = GlobalRandom.withSeed(2) { Tensor.randint(5, shape: [10, 5]) }
        #expect(y.shape == [10, 5] && y.dtype == .int64)
        #expect(y.scalars(as: Int64.self).allSatisfy { (0..<5).contains($0) })
        let label = y.argmax(dim: 1)
        #expect(label.shape == [10] && label.dtype == .int64)
        // argmax picks a largest value of each row (first one on ties).
        let rows = y.scalars(as: Int64.self), idx = label.scalars(as: Int64.self)
        for r in 0..<10 {
            let row = Array(rows[(r * 5)..<(r * 5 + 5)])
            #expect(Int(idx[r]) == row.firstIndex(of: row.max()!)!)
        }
        let onehot = F.oneHot(label)
        let classes = Int(idx.max()!) + 1
        #expect(onehot.shape == [10, classes] && onehot.dtype == .int64)
        #expect(onehot.sum(dim: 1).scalars(as: Int64.self).allSatisfy { $0 == 1 })
        #expect(onehot.argmax(dim: 1).scalars(as: Int64.self) == idx)
        // The printed one-hot of the notes' labels.
        let notes = F.oneHot(Tensor([2, 0, 2, 3, 0, 0, 2, 2, 2, 2]))
        #expect(notes.description == """
        tensor([[0, 0, 1, 0],
                [1, 0, 0, 0],
                [0, 0, 1, 0],
                [0, 0, 0, 1],
                [1, 0, 0, 0],
                [1, 0, 0, 0],
                [0, 0, 1, 0],
                [0, 0, 1, 0],
                [0, 0, 1, 0],
                [0, 0, 1, 0]])
        """)
    }

    @Test func autogradScalarGives40() {
        let w = Tensor(2.0, requiresGrad: true)
        let y = w ** 2
        let z = 10 * y + 2
        z.backward()
        #expect(w.grad?.item() == 40)
        #expect(w.grad?.description == "tensor(40.)")
    }

    @Test func autogradVectorGives36And81() {
        let a = Tensor([2.0, 3.0], requiresGrad: true)
        let b = Tensor([6.0, 4.0], requiresGrad: true)
        let q = 3 * a ** 3 - b ** 2
        q.backward(gradient: Tensor([1.0, 1.0]))
        #expect(a.grad?.scalars(as: Float.self) == [36, 81])
        #expect(b.grad?.scalars(as: Float.self) == [-12, -8])
        #expect(a.grad?.description == "tensor([36., 81.])")
        #expect(b.grad?.description == "tensor([-12.,  -8.])")
    }
}
