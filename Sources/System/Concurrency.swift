import Synchronization

/// A raw pointer that may cross into the threads of one synchronous parallel region (the engine's
/// kernels, the optimizers' updates): the region ends before the memory can go away.
@frozen
public struct SendablePointer<Pointee>: @unchecked Sendable {
    public let p: UnsafeMutablePointer<Pointee>
    @inlinable public init(_ p: UnsafeMutablePointer<Pointee>) { self.p = p }
}

/// A flag one thread sets (a signal or cancellation handler) and another polls.
public final class AtomicFlag: Sendable {
    private let value = Atomic<Bool>(false)
    public init() {}
    public func set() { value.store(true, ordering: .releasing) }
    public var isSet: Bool { value.load(ordering: .acquiring) }
}
