import Foundation
import SSH
import System
#if canImport(Glibc)
import Glibc
#endif

/// Puts a file on a host through one exec channel (`sh` and `cat` there, nothing else needed): for
/// hosts before ferry's agent runs, also those without SFTP (dropbear without sftp-server, sshd
/// without a Subsystem, minimal images). Resumable — a `.ferry-partial` left by a cut upload is
/// continued from its size — and checked: the host's sha256sum (or shasum, or openssl) must give
/// this file's sha256 before the file gets its name; a host with none of them says so, and the
/// caller's next step (the agent's hello) proves the file instead.
enum StreamUpload {
    /// How the upload went.
    struct Outcome: Sendable {
        var report: TransferReport
        /// Whether the host computed the sha256 (false: it has no tool for it).
        var verifiedOnHost: Bool
    }

    static let script = #"""
    umask 077; p="$1.ferry-partial"
    if [ "$2" = 0 ]; then cat > "$p" || exit 1
    else
      [ "$(wc -c < "$p" 2>/dev/null)" -eq "$2" ] 2>/dev/null || { echo "the partial upload changed" >&2; cat > /dev/null; exit 3; }
      cat >> "$p" || exit 1
    fi
    sum=$( { sha256sum "$p" || shasum -a 256 "$p" || openssl dgst -sha256 -r "$p"; } 2>/dev/null | cut -c1-64)
    if [ -n "$sum" ] && [ "$sum" != "$3" ]; then rm -f "$p"; echo "sha256 on the host: $sum" >&2; exit 4; fi
    chmod "$4" "$p" && mv -f "$p" "$1" || exit 1
    echo "sha256=${sum:-none}"
    """#

    /// `partialSize`: the bytes of `remotePath`'s `.ferry-partial` on the host when the caller already
    /// asked (one command fewer); nil asks first.
    static func put(_ localPath: String, to remotePath: String, mode: UInt32, via transport: any Transport, partialSize: Int64? = nil,
                    progress: (@Sendable (Int64) -> Void)?) async throws -> Outcome {
        let sha = try HashCache.hashFile(localPath)
        for attempt in 0..<2 {
            // The partial a cut upload left: continue after its bytes (the sha256 at the end judges them).
            var offset: Int64 = 0
            if attempt == 0, let partialSize {
                offset = partialSize
            } else if attempt == 0 {
                let probe = try await transport.start(ShellQuote.join(["sh", "-c", #"wc -c < "$1.ferry-partial" 2>/dev/null || echo 0"#, "sh", remotePath]))
                try await probe.closeInput()
                let (out, _, _) = try await probe.collect()
                offset = Int64(String(decoding: out, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
            }
            let size = POSIX.fileSize(localPath) ?? 0
            if offset > size { offset = 0 }
            let command = try await transport.start(ShellQuote.join(["sh", "-c", script, "sh", remotePath, String(offset), sha,
                                                                     String(mode & 0o777, radix: 8)]))
            let reader = Task { try await command.collect() }
            do {
                try await send(localPath, from: offset, size: size, to: command, progress: progress)
                try await command.closeInput()
            } catch {
                // The host's sh may have ended first: what it said is the better message.
                if !(error is CancellationError), let (out, err, status) = try? await reader.value {
                    let text = String(decoding: err + out, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                    throw JobsError.transferFailed(path: remotePath, reason: "the host's sh/cat upload ended early (exit status \(status)): \(text.prefix(300)) — \(error)")
                }
                command.cancel()
                reader.cancel()
                throw error
            }
            let (out, err, status) = try await reader.value
            let text = String(decoding: out, as: UTF8.self)
            // The closing `sha256=` line stands for the exit status, which a server may lose (255).
            if status == 0 || status == 255, let line = text.split(separator: "\n").last(where: { $0.hasPrefix("sha256=") }) {
                let onHost = String(line.dropFirst(7))
                return Outcome(report: TransferReport(totalBytes: size, transferredBytes: size - offset, resumedFrom: offset, sha256: sha),
                               verifiedOnHost: onHost == sha)
            }
            let why = String(decoding: err, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            // A stale or damaged partial (status 3 or 4): once more from the start.
            if (status == 3 || status == 4) && attempt == 0 && offset > 0 { continue }
            if status == 4 { throw JobsError.checksumMismatch(path: remotePath, expected: sha, actual: why) }
            throw JobsError.transferFailed(path: remotePath, reason: "the host's sh/cat upload failed (exit status \(status)): \(why.prefix(300))")
        }
        throw JobsError.transferFailed(path: remotePath, reason: "the upload did not complete")
    }

    /// The file's bytes from `offset`, in 1 MiB writes.
    private static func send(_ path: String, from offset: Int64, size: Int64, to command: any RemoteCommand,
                             progress: (@Sendable (Int64) -> Void)?) async throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw JobsError.io(path: path, reason: SystemError.text(errno)) }
        defer { close(fd) }
        let chunk = 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 16)
        defer { buffer.deallocate() }
        var position = offset
        while position < size {
            try Task.checkCancellation()
            let n = FileIO.read(fd, into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<Int(min(Int64(chunk), size - position))]), at: position)
            guard n > 0 else { throw JobsError.io(path: path, reason: "it shrank while being sent") }
            try await command.write(Data(UnsafeRawBufferPointer(rebasing: buffer[0..<n])))
            position += Int64(n)
            progress?(position)
        }
    }
}
