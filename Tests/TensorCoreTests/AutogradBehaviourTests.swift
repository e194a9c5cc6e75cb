import Foundation
import Testing
@testable import TensorCore

/// How autograd behaves beyond the values of gradients (those are the gradcheck suite's job):
/// accumulation, retained graphs, leaves, grad mode, aliasing of gradient storage, broadcasting
/// undone to the leaf's shape, and no leaks.
@Suite struct AutogradBehaviourTests {
    func values(_ t: Tensor?) -> [Double] { t?.scalars(as: Double.self) ?? [] }

    @Test func gradientsAccumulateOverTwoBackwardCalls() {
        let w = Tensor([1.0, 2.0], dtype: .float64, requiresGrad: true)
        (w * w).sum().backward()
        #expect(values(w.grad) == [2, 4])
        (w * 3).sum().backward()
        #expect(values(w.grad) == [5, 7])
        w.zeroGrad()
        #expect(w.grad == nil)
        (w * 3).sum().backward()
        #expect(values(w.grad) == [3, 3])
    }

    @Test func retainGraphAllowsASecondBackward() {
        let w = Tensor([1.0, -2.0], dtype: .float64, requiresGrad: true)
        let y = (w * w * w).sum()
        y.backward(retainGraph: true)
        #expect(values(w.grad) == [3, 12])
        y.backward()                       // the graph is still there
        #expect(values(w.grad) == [6, 24])
        // A third call stops (the graph was freed by the second): see MisuseExitTests.secondBackwardWithoutRetainGraph.
        #expect(y.gradFn?.rule == nil)
    }

    @Test func backwardOfALeafAndWithAnExplicitGradient() {
        let s = Tensor(3.0, requiresGrad: true)
        s.backward()
        #expect(s.grad?.item() == 1)
        let v = Tensor([1.0, 2.0, 3.0], requiresGrad: true)
        let g = Tensor([0.5, -1.0, 2.0])
        (v * 2).backward(gradient: g)
        #expect(v.grad?.scalars(as: Float.self) == [1, -2, 4])
        // The caller's gradient tensor is not adopted as .grad: changing it later changes nothing.
        let u = Tensor([1.0, 1.0], requiresGrad: true)
        let seed = Tensor([1.0, 2.0])
        u.backward(gradient: seed)
        seed.addInPlace(Tensor([10.0, 10.0]))
        #expect(u.grad?.scalars(as: Float.self) == [1, 2])
    }

    @Test func detachAndIsLeaf() {
        let a = Tensor([1.0, 2.0], requiresGrad: true)
        #expect(a.isLeaf && a.requiresGrad && a.gradFn == nil)
        let b = a * 2
        #expect(!b.isLeaf && b.requiresGrad && b.gradFn != nil)
        let d = b.detach()
        #expect(d.isLeaf && !d.requiresGrad && d.gradFn == nil)
        #expect(d.storage === b.storage, "detach shares storage")
        // No gradient flows through a detached value.
        let y = (a * d).sum() + (b.detach() * 5).sum()
        y.backward()
        #expect(a.grad?.scalars(as: Float.self) == [2, 4])
        // A tensor that does not require grad is a leaf; so is everything made under noGrad.
        #expect(Tensor([1.0]).isLeaf)
        #expect(noGrad { a * 2 }.isLeaf)
        // requiresGrad(true) on a leaf returns the tensor.
        let c = Tensor([1.0])
        #expect(c.requiresGrad(true) === c && c.requiresGrad)
    }

    @Test func gradFnNamesAreTorchs() {
        let x = Tensor([[0.2, 0.7, 0.4], [0.9, 0.3, 0.6]], requiresGrad: true)
        let y = Tensor([0.5, 0.8, 0.1], requiresGrad: true)
        let m = Tensor.rand([3, 4]).requiresGrad(true)
        let img = Tensor.rand([1, 2, 5, 5]).requiresGrad(true), kernel = Tensor.rand([3, 2, 3, 3]).requiresGrad(true)
        let names: [(String, Tensor)] = [
            ("AddBackward0", x + y), ("SubBackward0", x - y), ("MulBackward0", x * y), ("DivBackward0", x / y), ("NegBackward0", -x),
            ("PowBackward0", x ** 2), ("PowBackward1", x ** y), ("ExpBackward0", x.exp()), ("LogBackward0", x.log()),
            ("SqrtBackward0", x.sqrt()), ("AbsBackward0", x.abs()), ("ReluBackward0", x.relu()), ("SigmoidBackward0", x.sigmoid()),
            ("TanhBackward0", x.tanh()), ("GeluBackward0", x.gelu()), ("ClampBackward1", x.clamp(min: 0, max: 1)),
            ("ErfBackward0", x.erf()), ("Log1PBackward0", x.log1p()), ("MaximumBackward0", Tensor.maximum(x, y)),
            ("SumBackward0", x.sum()), ("SumBackward1", x.sum(dim: 1)), ("MeanBackward0", x.mean()), ("MeanBackward1", x.mean(dim: 1)),
            ("MaxBackward0", x.max(dim: 1).values), ("MaxBackward1", x.max()), ("MinBackward0", x.min(dim: 0).values), ("MinBackward1", x.min()),
            ("MmBackward0", x.mm(m)), ("BmmBackward0", x.unsqueeze(0).bmm(m.unsqueeze(0))), ("ViewBackward0", x.view(6)),
            ("ViewBackward0", x.flatten()), ("TransposeBackward0", x.transpose(0, 1)), ("PermuteBackward0", x.permute(1, 0)),
            ("ExpandBackward0", y.expand(2, 3)), ("UnsqueezeBackward0", x.unsqueeze(0)), ("SqueezeBackward1", x.unsqueeze(0).squeeze(dim: 0)),
            ("SoftmaxBackward0", x.softmax(dim: 1)), ("LogSoftmaxBackward0", x.logSoftmax(dim: 1)), ("CatBackward0", Tensor.cat([x, x])),
            ("ConvolutionBackward0", F.conv2d(img, kernel)), ("MaxPool2DWithIndicesBackward0", F.maxPool2d(img, kernelSize: 2)),
            ("AvgPool2DBackward0", F.avgPool2d(img, kernelSize: 2)), ("AddmmBackward0", F.linear(x, m.T, Tensor.zeros([4]).requiresGrad(true))),
            ("CloneBackward0", x.clone()), ("CloneBackward0", x.T.contiguous()), ("ToCopyBackward0", x.double()),
            ("IndexSelectBackward0", x.indexSelect(dim: 0, index: Tensor([0]))), ("GatherBackward0", x.gather(dim: 1, index: Tensor([[0], [1]]))),
            ("WhereBackward0", Tensor.where(x .> 0.5, x, y)), ("SliceBackward0", x[1...]),
        ]
        for (name, t) in names {
            #expect(t.gradFn?.name == name, "expected grad_fn=<\(name)>, got \(t.gradFn?.description ?? "nil")")
        }
        #expect((x + y).description.hasSuffix("grad_fn=<AddBackward0>)"))
    }

    /// Where TensorCore composes an op from others, its node is named after the last piece, not
    /// after PyTorch's fused backward. Recorded as known, so the day one is fixed this test says so.
    @Test func gradFnNamesThatDifferFromTorch() {
        let x = Tensor([[0.2, 0.7, 0.4], [0.9, 0.3, 0.6]], requiresGrad: true)
        let expected: [(String, Tensor)] = [
            ("VarBackward0", x.var(dim: 1)), ("StdBackward0", x.std()), ("DotBackward0", x[0].dot(x[1])),
            ("StackBackward0", Tensor.stack([x, x])), ("SelectBackward0", x[0]), ("LogsumexpBackward0", x.logsumexp(dim: 1)),
        ]
        for (name, t) in expected {
            withKnownIssue("TensorCore names this node \(t.gradFn?.name ?? "nil")") {
                #expect(t.gradFn?.name == name)
            }
        }
    }

    @Test func noGradRecordsNothingAndRestoresAfterwards() async throws {
        let a = Tensor([1.0, 2.0], requiresGrad: true)
        #expect(GradMode.isEnabled)
        let inside = noGrad { () -> Tensor in
            #expect(!GradMode.isEnabled)
            let nested = noGrad { a * 3 }
            #expect(!GradMode.isEnabled, "still off after a nested scope")
            return (a * 2 + nested).exp().sum()
        }
        #expect(!inside.requiresGrad && inside.gradFn == nil)
        #expect(GradMode.isEnabled)
        #expect((a * 2).requiresGrad)
        // A throwing body restores grad mode too.
        struct Boom: Error {}
        #expect(throws: Boom.self) { try noGrad { throw Boom() } }
        #expect(GradMode.isEnabled)
        // The async form.
        let asyncInside = await noGrad { () async -> Tensor in a * 2 }
        #expect(!asyncInside.requiresGrad)
        #expect(GradMode.isEnabled)
    }

    @Test func noGradIsPerTask() async {
        // Grad mode is task-local: a scope in one task does not switch it off in another.
        await withTaskGroup(of: Bool.self) { group in
            group.addTask { noGrad { GradMode.isEnabled } }
            group.addTask { GradMode.isEnabled }
            var results: [Bool] = []
            for await r in group { results.append(r) }
            #expect(results.filter { $0 }.count == 1 && results.count == 2)
        }
    }

    @Test func requiresGradPropagates() {
        let a = Tensor([1.0, 2.0], requiresGrad: true), b = Tensor([3.0, 4.0]), c = Tensor([5.0, 6.0])
        #expect((a + b).requiresGrad)
        #expect((b * c).requiresGrad == false && (b * c).gradFn == nil)
        #expect(((b * c) + a).requiresGrad)
        #expect(a.view(2, 1).requiresGrad && a[0].requiresGrad && a.T.requiresGrad)
        #expect(Tensor.cat([b, a]).requiresGrad && Tensor.cat([b, c]).requiresGrad == false)
        #expect(!(a .> b).requiresGrad, "comparisons are not differentiable")
        #expect(!a.argmax().requiresGrad)
        #expect(!(Tensor.arange(3) * 2).requiresGrad)
        // Only the operands that require grad get one.
        (a * b).sum().backward()
        #expect(a.grad != nil && b.grad == nil && c.grad == nil)
    }

    @Test func aPlusAGivesTwo() {
        let a = Tensor([1.0, -1.0, 0.5], requiresGrad: true)
        (a + a).sum().backward()
        #expect(a.grad?.scalars(as: Float.self) == [2, 2, 2])
        let b = Tensor([1.0, -1.0], requiresGrad: true)
        (b * b + b).sum().backward()
        #expect(b.grad?.scalars(as: Float.self) == [3, -1])
    }

    @Test func operandsOfOneOpGetDistinctGradientStorages() {
        let a = Tensor([1.0, 2.0], requiresGrad: true), b = Tensor([3.0, 4.0], requiresGrad: true)
        let c = a + b
        c.backward(gradient: Tensor([1.0, 1.0]))
        let ga = a.grad!, gb = b.grad!
        #expect(ga.storage !== gb.storage, "a.grad and b.grad share storage")
        ga.addInPlace(Tensor([100.0, 100.0]))                   // what an optimizer or clipping does
        #expect(gb.scalars(as: Float.self) == [1, 1], "modifying a.grad changed b.grad")
        // The same through a sum (the gradient arrives as an expanded view of one seed element).
        let p = Tensor([1.0, 2.0, 3.0], requiresGrad: true), q = Tensor([1.0, 2.0, 3.0], requiresGrad: true)
        (p - q).sum().backward()
        p.grad!.scaleInPlace(by: 7)
        #expect(q.grad!.scalars(as: Float.self) == [-1, -1, -1])
        #expect(p.grad!.isContiguous && q.grad!.isContiguous)
        // And through a view and a clone.
        let r = Tensor([[1.0, 2.0], [3.0, 4.0]], requiresGrad: true), s = Tensor([1.0, 2.0, 3.0, 4.0], requiresGrad: true)
        (r.view(4) + s.clone()).backward(gradient: Tensor([1.0, 2.0, 3.0, 4.0]))
        r.grad!.fill(0)
        #expect(s.grad!.scalars(as: Float.self) == [1, 2, 3, 4])
    }

    @Test func broadcastingIsUndoneToTheLeafShape() {
        let a = Tensor([[1.0], [2.0], [3.0]], requiresGrad: true)        // [3, 1]
        let b = Tensor([1.0, 2.0, 3.0, 4.0], requiresGrad: true)         // [4]
        let s = Tensor(2.0, requiresGrad: true)                           // 0-d
        let y = (a + b) * s
        #expect(y.shape == [3, 4])
        y.sum().backward()
        #expect(a.grad?.shape == [3, 1] && a.grad?.scalars(as: Float.self) == [8, 8, 8])
        #expect(b.grad?.shape == [4] && b.grad?.scalars(as: Float.self) == [6, 6, 6, 6])
        #expect(s.grad?.shape == [] && s.grad?.item() == 30 + 6 * 4)     // sum(a + b) = 4·6 + 3·10
        let e = Tensor([[1.0, 2.0]], requiresGrad: true)                  // [1, 2] expanded to [2, 3, 2]
        e.expand(2, 3, 2).sum().backward()
        #expect(e.grad?.shape == [1, 2] && e.grad?.scalars(as: Float.self) == [6, 6])
    }

    // MARK: no leaks

    /// Builds loss = f(x) for a tiny MLP and returns it with weak references to an intermediate's node
    /// and storage; the intermediate itself goes out of scope here.
    static func mlpLoss(_ x: Tensor, _ w1: Tensor, _ w2: Tensor) -> (loss: Tensor, node: Node?, hiddenNode: () -> Node?, hiddenStorage: () -> TensorStorage?) {
        let h = F.linear(x, w1).relu()
        weak let weakNode = h.gradFn
        weak let weakStorage = h.storage
        let loss = F.mseLoss(F.linear(h, w2), Tensor.zeros([x.shape[0], w2.shape[0]]))
        return (loss, loss.gradFn, { weakNode }, { weakStorage })
    }

    @Test func graphNodesAreReleasedAfterBackward() {
        let x = Tensor.rand([4, 3]), w1 = Tensor.rand([5, 3]).requiresGrad(true), w2 = Tensor.rand([2, 5]).requiresGrad(true)
        let (loss, _, hiddenNode, hiddenStorage) = Self.mlpLoss(x, w1, w2)
        #expect(hiddenNode() != nil && hiddenStorage() != nil, "the graph holds the intermediate before backward")
        loss.backward()
        #expect(hiddenNode() == nil, "an intermediate's grad_fn survived backward()")
        #expect(hiddenStorage() == nil, "an intermediate's storage survived backward()")
        #expect(w1.grad != nil && w2.grad != nil)
    }

    @Test func aGraphWithoutBackwardIsFreedWithItsOutput() {
        // No backward: dropping the output must free the whole graph (no retain cycles).
        let x = Tensor.rand([4, 3]).requiresGrad(true)
        func build(_ f: (Tensor) -> Tensor) -> () -> Node? {
            let y = f(x)
            weak let node = y.gradFn
            #expect(node != nil)
            return { node }
        }
        let ops: [(String, (Tensor) -> Tensor)] = [
            ("max()", { $0.max() }), ("min()", { $0.min() }), ("max(dim:)", { $0.max(dim: 1).values }), ("exp", { $0.exp() }),
            ("sigmoid", { $0.sigmoid() }), ("crossEntropy", { F.crossEntropy($0, Tensor([0, 1, 2, 0])) }),
            ("maxPool2d", { F.maxPool2d($0.view(1, 1, 4, 3), kernelSize: 2) }), ("linear", { F.linear($0, Tensor.rand([2, 3])) }),
            ("softmax", { $0.softmax(dim: 1) }), ("where", { Tensor.where($0 .> 0.5, $0, $0 * 2) }), ("gather", { $0.gather(dim: 1, index: Tensor([[0], [1], [2], [0]])) }),
        ]
        for (name, f) in ops {
            let node = build(f)
            #expect(node() == nil, "\(name): the graph outlived its output (retain cycle)")
        }
    }

    /// 10,000 forward/backward passes of a small MLP keep the resident set flat. Run in a child
    /// process, so that concurrently running tests do not move the resident set.
    @Test func tenThousandTrainingStepsDoNotGrowMemory() async {
        await #expect(processExitsWith: .success) {
            let growth = Self.residentGrowthOverTrainingSteps(warmup: 500, steps: 10_000, keepLosses: false)
            if growth > 2 << 20 {
                FileHandle.standardError.write(Data("resident set grew by \(growth) bytes over 10,000 steps\n".utf8))
                exit(1)
            }
        }
    }

    /// The same measurement registers a real leak: keeping every step's loss keeps its graph.
    @Test func theLeakCheckCanFail() async {
        await #expect(processExitsWith: .success) {
            let growth = Self.residentGrowthOverTrainingSteps(warmup: 500, steps: 2_000, keepLosses: true)
            if growth <= 2 << 20 {
                FileHandle.standardError.write(Data("2,000 retained graphs grew the resident set by only \(growth) bytes\n".utf8))
                exit(1)
            }
        }
    }

    static func residentBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        return fields.count > 1 ? (Int(fields[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE))) : 0
    }

    static func residentGrowthOverTrainingSteps(warmup: Int, steps: Int, keepLosses: Bool) -> Int {
        let (x, w1, b1, w2, b2, target) = GlobalRandom.withSeed(3) {
            (Tensor.randn([16, 8]), Tensor.randn([32, 8]).requiresGrad(true), Tensor.zeros([32], requiresGrad: true),
             Tensor.randn([4, 32]).requiresGrad(true), Tensor.zeros([4], requiresGrad: true), Tensor.randint(4, shape: [16]))
        }
        var kept: [Tensor] = []
        func step() {
            let h = F.linear(x, w1, b1).relu()
            let loss = F.crossEntropy(F.linear(h, w2, b2), target) + (h.max() * 0.001) + w1.pow(2).mean() * 1e-4
            loss.backward(retainGraph: keepLosses)
            if keepLosses { kept.append(loss) }
            noGrad {
                for p in [w1, b1, w2, b2] { p.addInPlace(p.grad!, alpha: -0.01); p.zeroGrad() }
            }
        }
        for _ in 0..<warmup { step() }
        let before = residentBytes()
        for _ in 0..<steps { step() }
        withExtendedLifetime(kept) {}
        return residentBytes() - before
    }
}
