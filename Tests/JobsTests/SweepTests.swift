import Foundation
@testable import Jobs
import RunContract
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

    /// A run's progress keeps the trainer's monitored metric and its best value (the trainer's own
    /// `best`, else the best epoch read), not only the latest metrics.
    @Test func progressKeepsTheBestMonitoredValue() {
        let events = """
        {"event":"epoch","epoch":1,"metrics":{"val_loss":0.9},"monitor":"min val_loss","best":0.9}
        {"event":"epoch","epoch":2,"metrics":{"val_loss":0.5},"monitor":"min val_loss","best":0.5}
        {"event":"epoch","epoch":3,"metrics":{"val_loss":0.7},"monitor":"min val_loss","best":0.5}

        """
        let p = JobProgress.parse(Data(events.utf8))
        #expect(p.monitor == "min val_loss" && p.best == 0.5 && p.metrics["val_loss"] == 0.7, "\(p)")
        // Events without `best`: the best of the epochs read, in the monitor's direction.
        let bare = """
        {"event":"epoch","epoch":1,"metrics":{"val_accuracy":0.6},"monitor":"max val_accuracy"}
        {"event":"epoch","epoch":2,"metrics":{"val_accuracy":0.8},"monitor":"max val_accuracy"}
        {"event":"epoch","epoch":3,"metrics":{"val_accuracy":0.7},"monitor":"max val_accuracy"}

        """
        let q = JobProgress.parse(Data(bare.utf8))
        #expect(q.monitor == "max val_accuracy" && q.best == 0.8, "\(q)")
        #expect(RunEvent.Monitored("min val_loss")?.improves(0.1, on: 0.2) == true && RunEvent.Monitored("max acc")?.improves(0.1, on: 0.2) == false)
        #expect(RunEvent.Monitored("off") == nil && RunEvent.Monitored("median val_loss") == nil)
        // Sent by the agent to an older client and back: the new fields are optional.
        let old = try? JSONDecoder().decode(JobProgress.self, from: Data(#"{"metrics":{},"checkpoints":{}}"#.utf8))
        #expect(old?.best == nil && old?.monitor == nil)
    }
}
