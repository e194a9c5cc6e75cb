import Foundation
@testable import Jobs
import Testing

@Suite struct SweepTests {
    @Test func axesAndTheirGrid() throws {
        let lr = try Sweep.axis(parsing: "optimizer.args.lr=1e-3, 3e-4")
        #expect(lr == Sweep.Axis(key: "optimizer.args.lr", values: ["1e-3", "3e-4"]))
        let batch = try Sweep.axis(parsing: "data_loader.args.batch_size=[64,128]")
        #expect(batch.values == ["64", "128"])
        #expect(try Sweep.axis(parsing: #"arch.type=["MLP","CNN"]"#).values == ["MLP", "CNN"])
        #expect(try Sweep.axis(parsing: "arch.args.hidden=[[32],[64,64]]").values == ["[32]", "[64,64]"])   // list-valued keys
        #expect(try Sweep.grid([lr, batch]) == [
            ["optimizer.args.lr=1e-3", "data_loader.args.batch_size=64"], ["optimizer.args.lr=1e-3", "data_loader.args.batch_size=128"],
            ["optimizer.args.lr=3e-4", "data_loader.args.batch_size=64"], ["optimizer.args.lr=3e-4", "data_loader.args.batch_size=128"],
        ])
        for bad in ["lr", "=1,2", "lr=", "lr=1,,2", "lr=[1,", "a b=1"] {
            #expect(throws: JobsError.self, "\(bad)") { _ = try Sweep.axis(parsing: bad) }
        }
        #expect(throws: JobsError.self) { _ = try Sweep.grid(Array(repeating: Sweep.Axis(key: "k", values: (0..<11).map(String.init)), count: 3)) }
    }

    @Test func sweepAndRunIDs() throws {
        let id = Sweep.newID(name: "tiny")
        #expect(id.hasPrefix("tiny-sweep-") && Names.isValidJobID(id + "-12"))
        #expect(Sweep.sweepID(ofRun: id + "-12") == id)
        #expect(Sweep.sweepID(ofRun: "tiny-20250101-000000-abcd") == nil)
        #expect(Sweep.sweepID(ofRun: id) == nil || Sweep.sweepID(ofRun: id) != id)
    }
}
