import Foundation
import Testing
@testable import TensorCore

/// int64 and bool element ops on cuda:0 (mock): each issues a kernel and equals the CPU, so none
/// falls back to a host closure (which stops on a device tensor).
@Suite struct CUDAIntegerOpsTests {
    static var ints: Tensor { Tensor([[-3, 0, 7], [2, -1, 5]]) }
    static var others: Tensor { Tensor([[2, -4, 7], [0, 3, -5]]) }
    static var flags: Tensor { Tensor(shape: [2, 3], scalars: [true, false, true, true, false, false]) }
    static var flags2: Tensor { Tensor(shape: [2, 3], scalars: [false, false, true, true, true, false]) }

    static var unaryCases: [(String, (Tensor) -> Tensor)] { [
        ("neg", { $0.neg() }), ("-", { -$0 }), ("abs", { $0.abs() }), ("sign", { $0.sign() }), ("relu", { $0.relu() }),
        ("clamp", { $0.clamp(min: -1, max: 4) }), ("clamp min", { $0.clamp(min: 0) }), ("clamp fractional", { $0.clamp(min: 0.5) }),
        ("pow 2", { $0.pow(2) }), ("pow 3", { $0.pow(3) }), ("** 0", { $0 ** 0 }), ("sqrt", { $0.abs().sqrt() }), ("exp", { $0.exp() }),
        ("+ 1", { $0 + 1 }), ("* 3", { $0 * 3 }), ("1 - x", { 1 - $0 }), ("/ 2", { $0 / 2 }), ("* 0.5", { $0 * 0.5 }),
        ("== 0", { $0 .== 0 }), (".> 1", { $0 .> 1.0 }), ("eq 7", { $0.eq(7) }),
        ("sum", { $0.sum() }), ("sum dim", { $0.sum(dim: 1) }), ("max", { $0.max() }), ("min", { $0.min() }),
        ("argmax", { $0.argmax(dim: 1) }), ("to float", { $0.to(.float32) }), ("to bool", { $0.to(.bool) }),
        ("transpose contiguous", { $0.T.contiguous() }), ("mm", { $0.mm($0.T) }),
    ] }
    static var binaryCases: [(String, (Tensor, Tensor) -> Tensor)] { [
        ("+", { $0 + $1 }), ("-", { $0 - $1 }), ("*", { $0 * $1 }), ("/", { $0 / $1 }), ("maximum", { Tensor.maximum($0, $1) }),
        ("minimum", { Tensor.minimum($0, $1) }), ("pow tensor", { $0.pow($1.abs()) }), ("eq", { $0.eq($1) }), ("ne", { $0.ne($1) }),
        ("lt", { $0.lt($1) }), ("le", { $0.le($1) }), ("gt", { $0.gt($1) }), ("ge", { $0.ge($1) }),
        ("where", { Tensor.where($0 .> 0.0, $0, $1) }), ("broadcast +", { $0 + $1[0] }),
    ] }
    static var boolCases: [(String, (Tensor, Tensor) -> Tensor)] { [
        ("logicalAnd", { a, b in a.logicalAnd(b) }), ("logicalOr", { a, b in a.logicalOr(b) }), ("logicalNot", { a, _ in a.logicalNot() }),
        ("bool +", { a, b in a + b }), ("bool *", { a, b in a * b }), ("bool maximum", { a, b in Tensor.maximum(a, b) }),
        ("bool eq", { a, b in a.eq(b) }), ("bool lt", { a, b in a.lt(b) }), ("bool .!= other", { a, b in a .!= b }),
        ("bool where", { a, b in Tensor.where(a, b, a.logicalNot()) }),
        ("bool abs", { a, _ in a.abs() }), ("bool sign", { a, _ in a.sign() }),
        ("bool sum", { a, _ in a.sum() }), ("bool to int", { a, _ in a.to(.int64) }), ("bool to float", { a, _ in a.to(.float64) }),
        ("bool pow", { a, _ in a.pow(2) }), ("bool * 2", { a, _ in a * 2 }), ("bool == 1", { a, _ in a .== 1 }),
    ] }

    static func check(_ name: String, _ inputs: [Tensor], _ body: ([Tensor]) -> Tensor, mock: MockCUDADriver) {
        let cpu = body(inputs)
        let before = mock.operationCount
        let gpu = body(inputs.map { $0.cuda() })
        #expect(mock.operationCount > before, "\(name): no kernel launch")
        #expect(gpu.device == .cuda(0), "\(name): result on \(gpu.device)")
        #expect(gpu.dtype == cpu.dtype && gpu.shape == cpu.shape, "\(name): \(gpu.dtype) \(gpu.shape) vs CPU \(cpu.dtype) \(cpu.shape)")
        #expect(gpu.scalars(as: Double.self) == cpu.scalars(as: Double.self), "\(name): \(gpu.scalars(as: Double.self)) vs CPU \(cpu.scalars(as: Double.self))")
    }

    @Test func integerAndBoolElementOpsRunOnTheDevice() {
        let mock = MockCUDADriver(devices: 1, memoryBytes: 16 << 20)
        withCUDADriver(mock) {
            for (name, f) in Self.unaryCases { Self.check("int64 " + name, [Self.ints], { f($0[0]) }, mock: mock) }
            for (name, f) in Self.binaryCases { Self.check("int64 " + name, [Self.ints, Self.others], { f($0[0], $0[1]) }, mock: mock) }
            for (name, f) in Self.boolCases { Self.check(name, [Self.flags, Self.flags2], { f($0[0], $0[1]) }, mock: mock) }
        }
    }
}
