import Foundation

/// A remote file's metadata.
public struct SFTPFileInfo: Sendable, Equatable {
    public enum Kind: Sendable, Equatable { case file, directory, symlink, other }
    public var name: String
    public var kind: Kind
    public var size: UInt64
    /// Permission bits (`0o644`).
    public var permissions: UInt32
    public var modified: Date
}

/// How a finished transfer is checked.
public enum SFTPVerification: Sendable, Equatable {
    /// Trust the transport (SSH already authenticates every packet).
    case none
    /// The sha256 of what arrived must be this (hex).
    case expected(String)
    /// Run `sha256sum` on the remote file and compare with ours (the remote needs coreutils).
    case remoteChecksum
    /// Hash what arrives and leave it in its partial file (`result.destination`), synced but not
    /// renamed: the caller compares the digest with one it gets elsewhere, and lands it or not.
    case deferred
}

/// How uploads move bytes. libssh 0.10 has no asynchronous SFTP write, so each `sftp_write` waits for
/// its reply; streaming into `cat` over an exec channel has no such round trip.
public enum SFTPUploadMethod: Sendable, Equatable {
    /// Sequential `sftp_write` of ≤ 255 KiB chunks (works with an sftp-only account).
    case sftpWrite
    /// `cat > tmp` on an exec channel (needs a POSIX shell on the remote).
    case catChannel

    /// The faster of the two, measured by `Benchmarks ssh` (loopback, 100 MB, 2 shared cores, median
    /// of 7): sequential sftp_write 202–238 MB/s, `cat >` channel 136–150 MB/s, scp 98–114 MB/s. The
    /// round trip per 255 KiB write is short on a fast link, while the channel path pays ssh_channel_write's
    /// waits on the 2 MB server window. Re-measure before switching.
    public static let fastest: SFTPUploadMethod = .sftpWrite
}

public struct SFTPTransferOptions: Sendable {
    /// Continue from the partial file a previous, interrupted transfer left (`NAME.ferry-partial`).
    public var resume: Bool
    public var verification: SFTPVerification
    /// Bytes asked for by each read request when downloading.
    public var readRequestSize: Int
    /// Read requests kept in flight when downloading.
    public var requestsInFlight: Int
    public var uploadMethod: SFTPUploadMethod
    /// Mode of the new file; the local file's mode on upload when nil, 0o644 on download.
    public var permissions: UInt32?
    /// fsync a downloaded file before renaming it into place, so a crash never leaves a torn file
    /// under the final name. Costs the time to flush it to disk.
    public var syncToDisk: Bool

    public init(resume: Bool = true, verification: SFTPVerification = .remoteChecksum, readRequestSize: Int = 128 * 1024,
                requestsInFlight: Int = 32, uploadMethod: SFTPUploadMethod = .fastest, permissions: UInt32? = nil,
                syncToDisk: Bool = true) {
        self.syncToDisk = syncToDisk
        self.resume = resume; self.verification = verification; self.readRequestSize = readRequestSize
        self.requestsInFlight = requestsInFlight; self.uploadMethod = uploadMethod; self.permissions = permissions
    }
}

/// Where a transfer stands; reported on the session thread, so keep the callback quick.
public struct SFTPProgress: Sendable, Equatable {
    /// Bytes of the file now at the destination (including a resumed part).
    public var completedBytes: UInt64
    public var totalBytes: UInt64
    /// Bytes moved by this call.
    public var transferredBytes: UInt64
}

public struct SFTPTransferResult: Sendable, Equatable {
    public var source: String
    public var destination: String
    public var totalBytes: UInt64
    /// Bytes moved by this call (total minus what was resumed).
    public var transferredBytes: UInt64
    /// Where this call started (0 unless resumed).
    public var resumedFrom: UInt64
    /// Hex sha256 of the whole file as it arrived; nil with `SFTPVerification.none` (not computed).
    public var sha256: String?
    /// Whether the digest was compared (with the expected value or the remote's).
    public var verified: Bool
    /// The most read requests that were in flight at once (downloads; 0 for uploads).
    public var maxRequestsInFlight: Int
    public var seconds: Double
}
