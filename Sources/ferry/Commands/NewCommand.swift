import ArgumentParser
import Foundation
import SSH
import Training

/// `ferry new NAME`: a job folder to start from (pytorch-template's new_project.py).
struct NewCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "new",
        abstract: "Create a job folder: config/, data/, README.md, .ferryignore.")

    @Argument(help: "The folder to create (its name names the run).")
    var name: String

    func run() throws {
        try EngineGuard.require()
        let files: [String]
        do { files = try Scaffold.create(at: name) } catch let error as TrainingError {
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            throw ExitCode(error.exitCode)
        }
        let path = URL(fileURLWithPath: name).standardizedFileURL.path
        print("New job folder at \(path):")
        for f in files { print("    \(f)") }
        print("Next: cd \(ShellQuote.quote(name)) && ferry train --check config/config.json && ferry train config/config.json")
    }
}
