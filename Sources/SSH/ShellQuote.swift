/// Quoting for a POSIX shell (sh, dash, bash, zsh): every remote command ferry builds goes through it,
/// so a file name like `$(rm -rf ~)` reaches the remote program as those exact characters.
public enum ShellQuote {
    /// Characters that never need quoting.
    private static let safe = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-".unicodeScalars)

    /// `argument` as one shell word: left bare when only safe characters, else single-quoted with
    /// each `'` written as `'\''`. Newlines and any Unicode stay literal inside the quotes.
    public static func quote(_ argument: String) -> String {
        if argument.isEmpty { return "''" }
        if argument.unicodeScalars.allSatisfy({ safe.contains($0) }) { return argument }
        return "'" + argument.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    /// The arguments as one command line, each quoted.
    public static func join(_ arguments: [String]) -> String {
        arguments.map(quote).joined(separator: " ")
    }
}
