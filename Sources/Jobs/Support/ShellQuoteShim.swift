// TEMPORARY until the SSH branch (which has the public `ShellQuote`) is merged into main: the
import Foundation

// same function, so Jobs builds meanwhile. Delete this file after `git merge main`.
enum ShellQuote {
    private static let safe = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-".unicodeScalars)

    static func quote(_ argument: String) -> String {
        if argument.isEmpty { return "''" }
        if argument.unicodeScalars.allSatisfy({ safe.contains($0) }) { return argument }
        return "'" + argument.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    static func join(_ arguments: [String]) -> String { arguments.map(quote).joined(separator: " ") }
}
