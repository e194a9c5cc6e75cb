import Foundation

/// ferry's folders on a host, under its FERRY_HOME (`~/.ferry`):
///
///     bin/ferry                      the agent (uploaded when the host has no ferry of this version)
///     lib/                           shared libraries the host lacked (the binary's rpath is $ORIGIN/../lib)
///     blobs/packs/NAME.pack, .idx    contents received by one upload, back to back, and their index (BlobPack)
///     blobs/sha256/ab/abcd…          content-addressed files, one per distinct content (older ferry)
///     blobs/partial/abcd…            a blob being received (resumable)
///     spares/NAME/work, manifest.json  a tree copied ahead for the next launch to take (SpareWork)
///     jobs/ID/spec.json              what to run
///     jobs/ID/work/                  the working directory, materialised from the manifest
///     jobs/ID/manifest.json          what work/ was made from
///     jobs/ID/output.log             stdout and stderr, append-only
///     jobs/ID/events.jsonl           the trainer's events ($FERRY_EVENTS)
///     jobs/ID/output/                results ($FERRY_OUTPUT): run folders, checkpoints
///     jobs/ID/status.json            state, written atomically by the supervisor
///     jobs/ID/cancel.json            a cancel request (its grace)
///     jobs/ID/supervisor.log         the supervisor's own messages
///
/// The client's registry lives beside these under `registry/`, so `--host local` shares one FERRY_HOME.
public struct HostLayout: Sendable {
    public let home: String

    public init(home: String) { self.home = home }

    func path(_ parts: String...) -> String {
        parts.reduce(home) { ($0 as NSString).appendingPathComponent($1) }
    }

    public var binDirectory: String { path("bin") }
    public var libDirectory: String { path("lib") }
    public var blobsDirectory: String { path("blobs", "sha256") }
    public var partialBlobsDirectory: String { path("blobs", "partial") }
    public var packsDirectory: String { path("blobs", "packs") }
    public var jobsDirectory: String { path("jobs") }
    public var sparesDirectory: String { path("spares") }

    public func blob(_ hash: String) -> String {
        path("blobs", "sha256", String(hash.prefix(2)), hash)
    }

    public func partialBlob(_ hash: String) -> String { path("blobs", "partial", hash) }

    public func job(_ id: String) -> JobPaths { JobPaths(directory: path("jobs", id)) }
}

/// The files of one job on its host.
public struct JobPaths: Sendable {
    public let directory: String
    func sub(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }
    public var spec: String { sub("spec.json") }
    public var manifest: String { sub("manifest.json") }
    public var work: String { sub("work") }
    public var log: String { sub("output.log") }
    public var events: String { sub("events.jsonl") }
    public var output: String { sub("output") }
    public var status: String { sub("status.json") }
    public var cancel: String { sub("cancel.json") }
    public var lock: String { sub(".lock") }
    public var supervisorLog: String { sub("supervisor.log") }
}
