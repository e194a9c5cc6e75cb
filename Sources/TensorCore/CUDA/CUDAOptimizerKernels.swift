/// Fused float32 optimizer updates on a CUDA device (kernels.cu `sgd_step_f32`, `adam_step_f32`),
/// the same arithmetic as Optim's CPU loops, in place.
public enum CUDAOptimizerKernels {
    /// p -= lr · d with d = grad (+ wd·p), through a momentum buffer when `buffer` is given.
    public static func sgdStep(_ p: Tensor, grad: Tensor, buffer: Tensor?, lr: Double, momentum: Double, dampening: Double,
                               weightDecay: Double, nesterov: Bool, first: Bool) {
        let ctx = CUDAOps.context(p, grad)
        let args = KernelArgs().int(p.numel).tensor(p).tensor(grad)
        if let buffer { args.tensor(buffer) } else { args.null() }
        args.double(lr).double(momentum).double(dampening).double(weightDecay).int(nesterov ? 1 : 0).int(first ? 1 : 0)
        CUDAOps.launch(ctx, "sgd_step_f32", count: p.numel, args)
    }

    /// One Adam/AdamW step (`decoupled`: AdamW's weight decay); `maxExpAvgSq` for AMSGrad.
    public static func adamStep(_ p: Tensor, grad: Tensor, expAvg: Tensor, expAvgSq: Tensor, maxExpAvgSq: Tensor?,
                                beta1: Double, beta2: Double, eps: Double, weightDecay: Double, lr: Double,
                                stepSize: Double, invBiasCorrection2Sqrt: Double, decoupled: Bool) {
        let ctx = CUDAOps.context(p, grad, expAvg, expAvgSq)
        let args = KernelArgs().int(p.numel).tensor(p).tensor(grad).tensor(expAvg).tensor(expAvgSq)
        if let maxExpAvgSq { args.tensor(maxExpAvgSq) } else { args.null() }
        args.double(beta1).double(beta2).double(eps).double(weightDecay).double(lr).double(stepSize)
            .double(invBiasCorrection2Sqrt).int(decoupled ? 1 : 0)
        CUDAOps.launch(ctx, "adam_step_f32", count: p.numel, args)
    }
}

extension Tensor {
    /// Moves this tensor's elements to `device` in place — the storage, so every view of it moves
    /// too — and its gradient with it. What `Module.to(_:)` does to parameters and buffers, so that
    /// they keep their identity (an optimizer built before the move keeps working).
    public func moveStorage(to device: Device) {
        switch device {
        case .cpu: storage.move(to: nil)
        case .cuda(let n):
            if case .cuda(let m) = self.device, m == n, storage.cuda?.context.driver === CUDARuntime.current.driverObject { break }
            storage.move(to: CUDARuntime.context(n, for: "to(.cuda(\(n)))"))
        }
        grad?.moveStorage(to: device)
    }
}

extension Result where Success == any CUDADriver {
    var driverObject: AnyObject? { (try? get()).map { $0 as AnyObject } }
}
