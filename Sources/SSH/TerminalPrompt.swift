import Foundation
import System

/// Asks a question on the controlling terminal (/dev/tty) with echo off, as ssh does for
/// passphrases and passwords: never from argv, never from a pipe on stdin.
public enum TerminalPrompt {
    /// Whether a controlling terminal can be opened at all.
    public static var isAvailable: Bool {
        let fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC)
        if fd < 0 { return false }
        close(fd)
        return true
    }

    /// The line typed after `prompt`, without its newline; nil when there is no terminal or on EOF.
    public static func readSecret(_ prompt: String) -> String? {
        let fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var saved = termios()
        let hasTermios = tcgetattr(fd, &saved) == 0
        if hasTermios {
            var quiet = saved
            quiet.c_lflag &= ~tcflag_t(ECHO | ECHONL)
            quiet.c_lflag |= tcflag_t(ICANON)
            _ = tcsetattr(fd, TCSAFLUSH, &quiet)
        }
        defer {
            if hasTermios { var s = saved; _ = tcsetattr(fd, TCSAFLUSH, &s) }
            _ = "\n".withCString { write(fd, $0, 1) }
        }
        _ = prompt.withCString { write(fd, $0, strlen($0)) }
        var bytes: [UInt8] = []
        var c: UInt8 = 0
        while true {
            let n = Syscall.retrying { read(fd, &c, 1) }
            if n <= 0 { return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self) }
            if c == 10 || c == 13 { break }
            bytes.append(c)
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
