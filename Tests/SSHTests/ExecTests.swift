import FerryTestSupport
import Foundation
import SSH
import SSHTestSupport
import Testing

@Suite struct ExecTests {
    @Test func outputStreamsBeforeTheCommandEnds() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let session = try await sshd.connect(box)
        // Causal, not timed: the command cannot end until we answer what it printed first, so "a"
        // must reach us while it is still running (a buffered client would see "too-late").
        let process = try await session.execute("echo a; if read -r line; then echo \"got $line\" >&2; else echo too-late >&2; fi; sleep 0.2; echo c")
        var iterator = process.output.makeAsyncIterator()
        let first = try await iterator.next()
        #expect(first == .stdout(Data("a\n".utf8)))
        try await process.write("ack\n")
        var rest: [SSHOutputChunk] = []
        while let chunk = try await iterator.next() { rest.append(chunk) }
        #expect(rest == [.stderr(Data("got ack\n".utf8)), .stdout(Data("c\n".utf8))])
        #expect(try await process.exitStatus() == .exited(0))
        await session.close()
    }

    @Test func exitCodesAndSignals() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let session = try await sshd.connect(box)
        #expect(try await session.run("exit 3").status == .exited(3))
        #expect(try await session.run("true").status == .exited(0))
        let killed = try await session.run("kill -TERM $$")
        #expect(killed.status == .signaled("TERM"))
        #expect(killed.status.code == 143)
        #expect(try await session.run("kill -KILL $$").status == .signaled("KILL"))
        await session.close()
    }

    @Test func hostileArgumentsAreInert() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let session = try await sshd.connect(box)
        let marker = "/tmp/ferry-quote-\(UUID().uuidString)"
        let hostile = [
            "$(touch \(marker))", "`touch \(marker)`", "; touch \(marker)", "a' ; touch \(marker); echo '",
            "\"$(touch \(marker))\"", "line1\nline2\n", "tab\there", "ünïcødé ✓ 日本", "$HOME", "*", "--", "-n", "", " ", "back\\slash",
            "'", "''", "!", "&& touch \(marker)", "| touch \(marker)", "> \(marker)",
        ]
        for text in hostile {
            let result = try await session.run(ShellQuote.join(["printf", "%s", text]))
            #expect(result.stdout == Data(text.utf8), "for \(text.debugDescription): \(result.stdoutText.debugDescription)")
            #expect(result.status == .exited(0))
        }
        let all = try await session.run(arguments: ["printf", "%s|"] + hostile)
        #expect(all.stdoutText == hostile.map { $0 + "|" }.joined())
        #expect(try await session.run("test -e \(ShellQuote.quote(marker))").status == .exited(1), "the marker file was created")
        #expect(!FileManager.default.fileExists(atPath: marker))
        await session.close()
    }

    @Test func shellQuoteLeavesSafeWordsBare() {
        #expect(ShellQuote.quote("abc-1.2/x_y") == "abc-1.2/x_y")
        #expect(ShellQuote.quote("") == "''")
        #expect(ShellQuote.quote("it's") == "'it'\\''s'")
        #expect(ShellQuote.join(["a b", "c"]) == "'a b' c")
    }

    @Test func stdinIsWritable() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let session = try await sshd.connect(box)
        let process = try await session.execute("wc -c; cat >&2")
        let payload = Data((0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 * 7) })
        try await process.write(payload)
        try await process.closeInput()
        let result = try await process.collect()
        #expect(result.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines) == "3000000")
        #expect(result.status == .exited(0))
        await session.close()
    }

    @Test func cancellationClosesTheChannelAndStopsTheCommand() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let session = try await sshd.connect(box)
        let pidFile = "/tmp/ferry-cancel-\(UUID().uuidString)"
        // A command that keeps writing dies of SIGPIPE once the channel is gone.
        let process = try await session.execute("echo $$ > \(pidFile); while :; do echo tick; sleep 0.1; done")
        let reader = Task {
            var seen = ""
            for try await chunk in process.output { seen += String(decoding: chunk.data, as: UTF8.self) }
            return seen
        }
        // Wait for the command to start, then cancel the reading task.
        for _ in 0..<500 where !FileManager.default.fileExists(atPath: pidFile) { try await Task.sleep(for: .milliseconds(20)) }
        try await Task.sleep(for: .milliseconds(100))
        let start = ContinuousClock.now
        reader.cancel()
        let outcome = await reader.result
        #expect(throws: CancellationError.self) { try outcome.get() }
        #expect(elapsed(since: start) < 5)
        let pid = try String(contentsOfFile: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        defer { try? FileManager.default.removeItem(atPath: pidFile) }
        var gone = false
        for _ in 0..<50 where !gone {
            gone = try await session.run("kill -0 \(pid) 2>/dev/null").status != .exited(0)
            if !gone { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(gone, "remote command \(pid) still running after cancel")
        // The session is still usable.
        #expect(try await session.run("echo ok").stdoutText == "ok\n")
        await session.close()
    }

    @Test func manyCommandsRunConcurrentlyOnOneSession() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let session = try await sshd.connect(box)
        let rendezvous = box.path("rendezvous")
        try FileManager.default.createDirectory(atPath: rendezvous, withIntermediateDirectories: true)
        // Each command waits until all 8 have started: run one at a time, the first would time out.
        let dir = ShellQuote.quote(rendezvous)
        let outputs = try await withThrowingTaskGroup(of: String.self) { group in
            for i in 0..<8 {
                group.addTask {
                    try await session.run("touch \(dir)/\(i); n=0; while [ $(ls \(dir) | wc -l) -lt 8 ] && [ $n -lt 600 ]; do sleep 0.05; n=$((n+1)); done; [ $n -lt 600 ] && echo \(i) || echo timeout").stdoutText
                }
            }
            var all: [String] = []
            for try await o in group { all.append(o) }
            return all
        }
        #expect(Set(outputs) == Set((0..<8).map { "\($0)\n" }))
        await session.close()
    }

    @Test func largeOutputWithSlowConsumerArrivesWhole() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        let session = try await sshd.connect(box)
        let process = try await session.execute("head -c 20000000 /dev/zero | tr '\\0' x")
        var count = 0
        var first = true
        for try await chunk in process.output {
            if first { try await Task.sleep(for: .milliseconds(300)); first = false }   // let the queue fill
            count += chunk.data.count
        }
        #expect(count == 20_000_000)
        #expect(try await process.exitStatus() == .exited(0))
        await session.close()
    }
}
