import Foundation
import TunnelsTestSupport
import Testing
import Tunnels

/// The programs `host up` supervises: stdin from the data given, stdout and stderr appended to a
/// private log, their own process group, and a plain reason when they cannot start.
@Suite struct ChildProcessTests {
    @Test func outputGoesToAPrivateLogAndStdinCarriesTheData() async throws {
        let box = try Sandbox(); defer { box.remove() }
        let log = box.path("child.log")
        let child = try ChildProcess.spawn("/bin/sh", ["-c", "read secret; echo \"out $secret\"; echo err >&2; echo \"pgid $(cut -d' ' -f5 /proc/$$/stat)\""],
                                           environment: ["PATH": "/usr/bin:/bin"], logFile: log, stdinData: Data("s3cret\n".utf8))
        #expect(await child.waitForExit(timeout: 20) == 0)
        let text = box.read(log)
        #expect(text.contains("out s3cret\n") && text.contains("err\n"), "\(text)")
        #expect(text.contains("pgid \(child.pid)\n"), "its own process group: \(text)")
        let mode = (try FileManager.default.attributesOfItem(atPath: log)[.posixPermissions] as? Int) ?? 0
        #expect(mode == 0o600)
    }

    @Test func aProgramThatCannotStartIsSaidPlainly() throws {
        let box = try Sandbox(); defer { box.remove() }
        let notExecutable = try box.write("not-a-program", "hello\n", mode: 0o644)
        #expect { _ = try ChildProcess.spawn(notExecutable, [], environment: [:], logFile: nil) } throws: { error in
            "\(error)".contains("not-a-program") && "\(error)".contains("cannot start it: Permission denied")
        }
        #expect { _ = try ChildProcess.spawn(box.path("missing"), [], environment: [:], logFile: nil) } throws: { error in
            "\(error)".contains("cannot start it: No such file or directory")
        }
    }
}
