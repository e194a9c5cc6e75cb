import Crypto
import FerryTestSupport
import Foundation
import System
@testable import Jobs
import JobsTestSupport
import Testing

/// Frames for `BlobStore.receive`, written to a file and read back as the agent reads its stdin.
private struct PackStream {
    var bytes = Data()
    mutating func blob(_ content: Data, offset: Int = 0, claiming hash: String? = nil) {
        bytes.append(Data("\(hash ?? sha256(content)) \(content.count) \(offset)\n".utf8))
        bytes.append(content[offset...])
    }
    func reader(in dir: String, cutAt cut: Int? = nil) throws -> (ByteReader, Int32) {
        let path = dir + "/frames-\(UUID().uuidString.prefix(6))"
        try bytes.prefix(cut ?? bytes.count).write(to: URL(fileURLWithPath: path))
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        return (ByteReader(fd: fd), fd)
    }
}

private func sha256(_ data: Data) -> String { HashCache.hex(SHA256.hash(data: data)) }

private func randomData(_ count: Int) -> Data {
    var g = SystemRandomNumberGenerator()
    return Data((0..<count).map { _ in UInt8.random(in: 0...255, using: &g) })
}

/// The pack stream into the host's store, the store's safety, and fetch's path, link and mode rules.
@Suite struct TransferTests {
    @Test func packStreamCutMidwayResumesFromThePartial() throws {
        let box = try Sandbox(); defer { box.remove() }
        let store = BlobStore(layout: HostLayout(home: box.root + "/host"))
        let small = randomData(3000), large = randomData(1 << 20)
        var stream = PackStream()
        stream.blob(small)
        stream.blob(large)
        // Cut 300 kB into the large blob: the small one is stored, the large one's bytes wait in its partial.
        let (reader, fd) = try stream.reader(in: box.root, cutAt: stream.bytes.count - (1 << 20) + 300_000)
        #expect(throws: JobsError.self) { _ = try store.receive(from: reader) }
        close(fd)
        #expect(store.has(sha256(small)))
        #expect(!store.has(sha256(large)))
        let (missing, partial) = try store.missing([sha256(small), sha256(large)])
        #expect(missing == [sha256(large)])
        #expect(partial[sha256(large)] == 300_000)

        var rest = PackStream()
        rest.blob(large, offset: 300_000)
        let (again, fd2) = try rest.reader(in: box.root)
        defer { close(fd2) }
        let reply = try store.receive(from: again)
        #expect(reply.stored == 1 && reply.failed.isEmpty)
        #expect(reply.bytes == Int64((1 << 20) - 300_000))
        #expect(store.contents(sha256(large)) == large)
        #expect(store.contents(sha256(small)) == small)
        #expect(try store.missing([sha256(large)]).missing.isEmpty)
    }

    @Test func corruptedBlobIsRefusedAndCanBeSentAgain() throws {
        let box = try Sandbox(); defer { box.remove() }
        let store = BlobStore(layout: HostLayout(home: box.root + "/host"))
        let content = randomData(50_000)
        var damaged = content
        damaged[1234] ^= 0xFF
        var stream = PackStream()
        stream.blob(damaged, claiming: sha256(content))
        let (reader, fd) = try stream.reader(in: box.root)
        let reply = try store.receive(from: reader)
        close(fd)
        #expect(reply.failed == [sha256(content)])
        #expect(reply.stored == 0)
        #expect(!store.has(sha256(content)))
        #expect(try store.missing([sha256(content)]).partial.isEmpty, "a refused blob leaves no partial to resume")

        var good = PackStream()
        good.blob(content)
        let (reader2, fd2) = try good.reader(in: box.root)
        defer { close(fd2) }
        #expect(try store.receive(from: reader2).stored == 1)
        #expect(store.contents(sha256(content)) == content)
    }

    /// Small blobs reach the pack through a 1 MiB buffer: a damaged one that began before a flush
    /// and ended after it is cut from the file, one inside the buffer from the buffer, and the
    /// blobs around them are stored whole at the right offsets.
    @Test func damagedBlobsAcrossTheWriteBufferAreCutOff() throws {
        let box = try Sandbox(); defer { box.remove() }
        let store = BlobStore(layout: HostLayout(home: box.root + "/host"))
        // 1 spans the first flush (700 kB + 700 kB > 1 MiB); 3 lies inside the buffer.
        let sizes = [700_000, 700_000, 100_000, 50_000, 100_000, 700_000]
        let blobs = sizes.enumerated().map { i, n in Data(repeating: UInt8(i), count: n) + randomData(64) }
        var stream = PackStream()
        for (i, blob) in blobs.enumerated() {
            var sent = blob
            if i == 1 || i == 3 { sent[100] ^= 0xFF }
            stream.blob(sent, claiming: sha256(blob))
        }
        let (reader, fd) = try stream.reader(in: box.root)
        defer { close(fd) }
        let reply = try store.receive(from: reader)
        #expect(Set(reply.failed) == [sha256(blobs[1]), sha256(blobs[3])])
        #expect(reply.stored == 4)
        let fresh = BlobStore(layout: store.layout)
        for i in [0, 2, 4, 5] { #expect(fresh.contents(sha256(blobs[i])) == blobs[i], "blob \(i)") }
        #expect(!fresh.has(sha256(blobs[1])) && !fresh.has(sha256(blobs[3])))
        let pack = fresh.index.packPath(try #require(fresh.index.location(sha256(blobs[0]))).pack)
        #expect(POSIX.fileSize(pack) == Int64([0, 2, 4, 5].reduce(0) { $0 + blobs[$1].count }), "nothing of the damaged ones is left in the pack")
    }

    /// A job that rewrites a file of work/ in place — as root here, so the store's modes would not
    /// stop it — changes only its own copy: of a small content (in a pack with others) and of a
    /// large one (a pack of one).
    @Test func rewritingAWorkFileInPlaceNeverChangesTheStore() throws {
        let box = try Sandbox(); defer { box.remove() }
        let store = BlobStore(layout: HostLayout(home: box.root + "/host"))
        let content = randomData(200_000), other = randomData(5_000), large = randomData(3 << 19)
        var stream = PackStream()
        stream.blob(other)
        stream.blob(content)
        stream.blob(large)
        let (reader, fd) = try stream.reader(in: box.root)
        #expect(try store.receive(from: reader).stored == 3)
        close(fd)
        let hash = sha256(content), bigHash = sha256(large)
        var manifest = Manifest()
        manifest.files = [Manifest.File(path: "data/train.bin", sha256: hash, size: Int64(content.count), executable: false),
                          Manifest.File(path: "copy.bin", sha256: hash, size: Int64(content.count), executable: true),
                          Manifest.File(path: "big/model.bin", sha256: bigHash, size: Int64(large.count), executable: false)]
        let work = box.root + "/work"
        try store.materialise(manifest, into: work)
        let index = store.index
        let packs = [hash, bigHash].map { index.packPath(index.location($0)!.pack) }
        #expect(packs[0] != packs[1], "a large content is a pack of its own")
        for (pack, file) in zip(packs, ["data/train.bin", "big/model.bin"]) {
            var packStat = stat(), workStat = stat()
            #expect(stat(pack, &packStat) == 0 && stat(work + "/" + file, &workStat) == 0)
            #expect(packStat.st_ino != workStat.st_ino, "work/ holds a copy, not a hard link")
            #expect(packStat.st_nlink == 1)
            #expect(packStat.st_mode & 0o777 == 0o400)
            #expect(workStat.st_mode & 0o777 == 0o644)
        }
        #expect(try HashCache.hashFile(work + "/big/model.bin") == bigHash)
        #expect(try HashCache.hashFile(work + "/copy.bin") == hash)
        // In place: no truncation, no new inode; then through the other copies too.
        for file in ["data/train.bin", "copy.bin", "big/model.bin"] {
            let out = open(work + "/" + file, O_WRONLY | O_CLOEXEC)
            #expect(out >= 0)
            let junk = [UInt8](repeating: 0x41, count: 4096)
            #expect(pwrite(out, junk, junk.count, 1000) == junk.count)
            close(out)
        }
        let fresh = BlobStore(layout: store.layout)
        #expect(fresh.contents(hash).map(sha256) == hash)
        #expect(fresh.contents(bigHash).map(sha256) == bigHash)
        #expect(fresh.contents(sha256(other)) == other)
        #expect(try HashCache.hashFile(work + "/data/train.bin") != hash)
        // A second job gets the store's bytes, not the first job's rewrite.
        try fresh.materialise(manifest, into: box.root + "/work2")
        #expect(try HashCache.hashFile(box.root + "/work2/data/train.bin") == hash)
        #expect(try HashCache.hashFile(box.root + "/work2/big/model.bin") == bigHash)
    }

    /// A large content is lent to one job as a hard link (written once, never copied); a job that
    /// rewrites it in place breaks its seal, so before any further use the store hashes it again,
    /// drops it and asks for it again, while another job got a copy of the original bytes. A lent
    /// pack whose job is gone is hashed once more and kept.
    @Test func aLargeContentIsLentToOneJobAndVerifiedBeforeReuse() throws {
        let box = try Sandbox(); defer { box.remove() }
        let layout = HostLayout(home: box.root + "/host")
        var large = Data(count: Int(LentPack.minimumSize) + 4096)
        large.replaceSubrange(0..<4096, with: randomData(4096))
        let hash = sha256(large)
        func send() throws {
            var stream = PackStream()
            stream.blob(large)
            let (reader, fd) = try stream.reader(in: box.root)
            defer { close(fd) }
            #expect(try BlobStore(layout: layout).receive(from: reader).stored == 1)
        }
        func inode(_ path: String) -> ino_t { var st = stat(); return stat(path, &st) == 0 ? st.st_ino : 0 }
        func hashOf(_ path: String) -> String? { try? HashCache.hashFile(path) }
        try send()
        var manifest = Manifest()
        manifest.files = [Manifest.File(path: "model.bin", sha256: hash, size: Int64(large.count), executable: false),
                          Manifest.File(path: "again/model.bin", sha256: hash, size: Int64(large.count), executable: false)]
        let store = BlobStore(layout: layout)
        try store.materialise(manifest, into: box.root + "/work1", lending: true)
        let pack = store.index.packPath(try #require(store.index.location(hash)).pack)
        #expect(inode(box.root + "/work1/model.bin") == inode(pack), "lent: the job's file is the store's")
        #expect(inode(box.root + "/work1/again/model.bin") != inode(pack), "the same content twice in a job: one of them a copy")
        var st = stat()
        #expect(stat(box.root + "/work1/model.bin", &st) == 0 && st.st_mode & 0o777 == 0o644)
        #expect(FileManager.default.fileExists(atPath: LentPack.sealPath(ofPack: pack)))
        // Held by the first job: a second one gets a copy.
        try BlobStore(layout: layout).materialise(manifest, into: box.root + "/work2", lending: true)
        #expect(inode(box.root + "/work2/model.bin") != inode(pack) && hashOf(box.root + "/work2/model.bin") == hash)

        // The first job rewrites its file in place (as root: no mode stops it).
        let out = open(box.root + "/work1/model.bin", O_WRONLY | O_CLOEXEC)
        let junk = [UInt8](repeating: 0x41, count: 4096)
        #expect(out >= 0 && pwrite(out, junk, junk.count, 100) == junk.count)
        close(out)
        let after = BlobStore(layout: layout)
        #expect(after.contents(hash) == nil, "a changed lent pack is not served")
        #expect(try after.missing([hash]).missing == [hash], "and is asked for again")
        #expect(!FileManager.default.fileExists(atPath: pack))
        #expect(hashOf(box.root + "/work1/model.bin") != hash, "the job keeps its rewrite")
        #expect(hashOf(box.root + "/work2/model.bin") == hash, "the other job never saw it")

        // Sent again, lent again; once that job's folder is gone, the pack is hashed once more and kept.
        try send()
        let third = BlobStore(layout: layout)
        try third.materialise(manifest, into: box.root + "/work3", lending: true)
        let pack3 = third.index.packPath(try #require(third.index.location(hash)).pack)
        #expect(inode(box.root + "/work3/model.bin") == inode(pack3) && hashOf(box.root + "/work3/model.bin") == hash)
        try FileManager.default.removeItem(atPath: box.root + "/work3")
        #expect(BlobStore(layout: layout).contents(hash) == large)
        #expect(!FileManager.default.fileExists(atPath: LentPack.sealPath(ofPack: pack3)), "no longer lent")
    }

    /// A pack written before this boot (a crash may have lost its unsynced bytes) is read back and
    /// hashed before it is trusted: a damaged content is dropped (and sent again), the rest kept,
    /// and the index marked checked. Leftovers of a crashed upload (a pack without an index, a
    /// verified blob of the old layout) are removed once their writer is gone.
    @Test func packsOfAnEarlierBootAreCheckedAndCrashLeftoversRemoved() throws {
        let box = try Sandbox(); defer { box.remove() }
        let layout = HostLayout(home: box.root + "/host")
        let good = randomData(30_000), bad = randomData(20_000)
        var stream = PackStream()
        stream.blob(good)
        stream.blob(bad)
        let (reader, fd) = try stream.reader(in: box.root)
        #expect(try BlobStore(layout: layout).receive(from: reader).stored == 2)
        close(fd)
        let index = BlobStore(layout: layout).index
        let at = try #require(index.location(sha256(bad)))
        let packPath = index.packPath(at.pack)
        let idxPath = String(packPath.dropLast(5)) + ".idx"
        // As if written in another boot, and a crash lost some of the second content's bytes.
        let text = try String(contentsOfFile: idxPath, encoding: .utf8)
        #expect(text.hasPrefix("ferry-pack 1 boot="))
        let lines = text.split(separator: "\n")
        let older = (["ferry-pack 1 boot=00000000-0000-0000-0000-000000000000"] + lines.dropFirst()).joined(separator: "\n") + "\n"
        chmod(idxPath, 0o600)
        try older.write(toFile: idxPath, atomically: true, encoding: .utf8)
        chmod(packPath, 0o600)
        let out = open(packPath, O_WRONLY | O_CLOEXEC)
        #expect(pwrite(out, [UInt8](repeating: 0, count: 100), 100, off_t(at.offset + 50)) == 100)
        close(out)

        let after = BlobStore(layout: layout)
        #expect(after.has(sha256(good)))
        #expect(!after.has(sha256(bad)))
        #expect(try after.missing([sha256(good), sha256(bad)]).missing == [sha256(bad)])
        #expect(try String(contentsOfFile: idxPath, encoding: .utf8).hasPrefix("ferry-pack 1 checked\n"))
        #expect(after.contents(sha256(good)) == good)

        // Leftovers: a pack without an index and an old-layout verified blob, both of a dead pid and
        // untouched for over an hour; the same of a live one (this process) stay, and so do fresh
        // ones of a dead pid (on a shared filesystem another node's agent may be writing them).
        let dead = Subprocess.capture(["sh", "-c", "echo $$"], timeout: 10).text.trimmingCharacters(in: .whitespacesAndNewlines)
        let mine = String(getpid())
        try POSIX.makeDirectory(layout.partialBlobsDirectory, mode: 0o700)
        let leftovers = [layout.packsDirectory + "/\(dead)-abc.pack", layout.partialBlobsDirectory + "/\(sha256(bad)).ok.\(dead)"]
        let kept = [layout.packsDirectory + "/\(mine)-abc.pack", layout.partialBlobsDirectory + "/\(sha256(good)).ok.\(mine)",
                    layout.packsDirectory + "/\(dead)-fresh.pack"]
        for path in leftovers + kept { try Data("x".utf8).write(to: URL(fileURLWithPath: path)) }
        let old = Date().addingTimeInterval(-2 * PackWriter.leftoverAge)
        for path in leftovers + kept.prefix(2) { try FileManager.default.setAttributes([.modificationDate: old], ofItemAtPath: path) }
        var again = PackStream()
        again.blob(bad)
        let (reader2, fd2) = try again.reader(in: box.root)
        defer { close(fd2) }
        #expect(try BlobStore(layout: layout).receive(from: reader2).stored == 1)
        for path in leftovers { #expect(!FileManager.default.fileExists(atPath: path), "\(path) left") }
        for path in kept { #expect(FileManager.default.fileExists(atPath: path), "\(path) removed") }
        #expect(BlobStore(layout: layout).contents(sha256(bad)) == bad)
    }

    @Test func tenThousandFilesArriveByteIdentical() async throws {
        let box = try Sandbox(); defer { box.remove() }
        var g = SystemRandomNumberGenerator()
        for i in 0..<10_000 {
            let dir = box.project + "/d\(i / 500)"
            if i % 500 == 0 { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
            var data = Data(count: 64 + i % 200)
            data.withUnsafeMutableBytes { raw in for j in 0..<raw.count { raw[j] = UInt8.random(in: 0...255, using: &g) } }
            if i % 1000 == 7 { data = Data("same content in several files\n".utf8) }
            try data.write(to: URL(fileURLWithPath: dir + "/f\(i).bin"))
        }
        let context = box.context()
        let (result, client) = try await Launcher(context: context).launch(
            LaunchRequest(host: "local", name: "many", workingDirectory: box.project, kind: "command", command: ["true"], follow: false))
        await client.close()
        #expect(result.files == 10_000)
        let work = box.localJob(result.id).work
        let diff = Subprocess.capture(["diff", "-r", box.project, work], timeout: 120)
        #expect(diff.status == 0, "\(diff.text.prefix(500))")
    }

    /// Many small files come home in batches (one sync per batch, then their names): every one
    /// lands whole with the host's mode, and no partial is left; fetching again sends nothing.
    @Test func manySmallFilesAreFetchedInBatches() async throws {
        let box = try Sandbox(); defer { box.remove() }
        try box.write("make.sh", """
        mkdir -p "$FERRY_OUTPUT/many"
        i=0; while [ $i -lt 300 ]; do echo "file $i" > "$FERRY_OUTPUT/many/f$i.txt"; i=$((i+1)); done
        chmod 600 "$FERRY_OUTPUT/many/f7.txt"
        head -c 3000000 /dev/urandom > "$FERRY_OUTPUT/many/big.bin"
        """)
        let context = box.context()
        let (result, client) = try await Launcher(context: context).launch(
            LaunchRequest(host: "local", name: "many", workingDirectory: box.project, kind: "command", command: ["sh", "make.sh"]))
        let jobs = JobsClient(context: context)
        #expect(try await jobs.follower(result.id, host: try context.registry.host("local")).resume(from: 0, first: client, onData: { _ in })?.state == .succeeded)
        let dest = box.root + "/dest"
        func fetch() async throws -> [FetchedFile] {
            let c = try await jobs.agent(for: result.id)
            return try await c.using { try await Fetcher(client: $0).fetch(result.id, what: "many", into: dest) }
        }
        let files = try await fetch()
        #expect(files.count == 301 && files.allSatisfy { !$0.unchanged })
        for i in 0..<300 { #expect(fileText(dest + "/many/f\(i).txt") == "file \(i)\n") }
        let output = box.localJob(result.id).output
        #expect(try HashCache.hashFile(dest + "/many/big.bin") == HashCache.hashFile(output + "/many/big.bin"))
        var st = stat()
        #expect(lstat(dest + "/many/f7.txt", &st) == 0 && st.st_mode & 0o777 == 0o600)
        let left = try FileManager.default.contentsOfDirectory(atPath: dest + "/many").filter { $0.hasSuffix(partialSuffix) }
        #expect(left.isEmpty, "\(left.prefix(3))")
        #expect(try await fetch().allSatisfy(\.unchanged))
        // The host's hashes forgotten: its listing has none, the client sends the hash of each copy
        // it has, and the host answers "unchanged" for each without sending a byte.
        unlink(box.localJob(result.id).directory + "/.hashes")
        let again = try await fetch()
        #expect(again.count == 301 && again.allSatisfy { $0.unchanged && $0.transferredBytes == 0 })
        // A copy of the same size that differs is sent again, and only that one.
        unlink(box.localJob(result.id).directory + "/.hashes")
        try Data("fxle 1\n".utf8).write(to: URL(fileURLWithPath: dest + "/many/f1.txt"))
        let mended = try await fetch()
        #expect(mended.filter { !$0.unchanged }.map(\.remotePath) == ["output/many/f1.txt"])
        #expect(fileText(dest + "/many/f1.txt") == "file 1\n")
    }

    /// Each fetched file's bytes are hashed as they arrive and checked against the sha256 the host
    /// sends after them (hashed while it read them), and against the listing's when it had one:
    /// a file the host saw change while reading it, bytes that hash otherwise, or a file replaced
    /// since the listing are refused with nothing landed, so the fetch lists again.
    @Test func eachFetchedFileIsCheckedAgainstTheHashTheHostSent() async throws {
        let box = try Sandbox(); defer { box.remove() }
        let content = Data("hello, ferry\n".utf8)
        func receiver(_ name: String, listed: String = "") -> FetchReceiver {
            let entry = FileListing.Entry(path: "output/" + name, size: Int64(content.count), sha256: listed, modified: Date(), mode: 0o640, local: name)
            return FetchReceiver(wants: [.init(listed: 0, entry: entry, local: box.root + "/" + name, offset: 0)], events: nil)
        }
        func stream(_ trailer: String) -> Data { Data("F 0 0 \(content.count) 640\n".utf8) + content + Data("H \(trailer)\nE\n".utf8) }
        func refused(_ r: FetchReceiver, _ bytes: Data) -> Bool {
            do { try r.feed(bytes); return false } catch JobsError.checksumMismatch { return true } catch { return false }
        }
        let good = receiver("a.txt")
        try good.feed(stream(sha256(content)))
        try await good.landAll()
        var st = stat()
        #expect(good.complete && fileText(box.root + "/a.txt") == "hello, ferry\n")
        #expect(lstat(box.root + "/a.txt", &st) == 0 && st.st_mode & 0o777 == 0o640)
        let listedToo = receiver("b.txt", listed: sha256(content))
        try listedToo.feed(stream(sha256(content)))
        #expect(listedToo.complete)

        #expect(refused(receiver("changed.txt"), stream("-")))
        #expect(refused(receiver("other.txt"), stream(sha256(Data("something else".utf8)))))
        #expect(refused(receiver("replaced.txt", listed: sha256(Data("the listed one".utf8))), stream(sha256(content))))
        for name in ["changed.txt", "other.txt", "replaced.txt"] {
            #expect(!FileManager.default.fileExists(atPath: box.root + "/" + name))
            #expect(!FileManager.default.fileExists(atPath: box.root + "/" + name + partialSuffix))
        }
        // A file without its hash, or "unchanged" for a copy the client never offered: a broken stream.
        #expect(throws: FilesStreamError.self) { try receiver("c.txt").feed(Data("F 0 0 \(content.count) 640\n".utf8) + content + Data("E\n".utf8)) }
        #expect(throws: FilesStreamError.self) { try receiver("d.txt").feed(Data("U 0\nE\n".utf8)) }
    }

    /// The partials of a fetch are made ahead by threads of their own, a folder's run at a time,
    /// in order and within the window; the receiver takes each new and empty; a path left nil or
    /// already there is left to the receiver; stopping removes the ones nobody took.
    @Test func partialsAreMadeAheadAndThoseNotTakenRemoved() throws {
        let box = try Sandbox(); defer { box.remove() }
        for folder in ["a", "b", "c"] { try POSIX.makeDirectory(box.root + "/" + folder) }
        var paths: [String?] = []
        for folder in ["a", "b", "c"] { for i in 0..<30 { paths.append(box.root + "/\(folder)/f\(i)" + partialSuffix) } }
        paths[40] = nil
        try Data("mine".utf8).write(to: URL(fileURLWithPath: paths[41]!))
        func made() -> Int {
            ["a", "b", "c"].reduce(0) { count, folder in
                count + ((try? FileManager.default.contentsOfDirectory(atPath: box.root + "/" + folder)) ?? []).filter { $0.hasSuffix(partialSuffix) }.count
            }
        }
        let maker = PartialMaker(paths: paths, threads: 2, ahead: 8)
        // Nothing taken yet: only the first run (8 files of a/) is made, the window holds the rest.
        let deadline = Date().addingTimeInterval(5)
        while made() < 1 + 8 && Date() < deadline { usleep(10_000) }
        usleep(200_000)
        #expect(made() == 1 + 8)
        for index in 0..<50 {
            let fd = maker.take(index)
            if index == 40 || index == 41 { #expect(fd == nil, "file #\(index)"); continue }
            guard let fd else { Issue.record("file #\(index) was not made"); continue }
            var st = stat()
            #expect(fstat(fd, &st) == 0 && st.st_size == 0 && st.st_mode & 0o777 == 0o600)
            #expect(lstat(paths[index]!, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG)
            close(fd)
        }
        #expect(fileText(paths[41]!) == "mine")
        maker.stop()
        // The 48 taken and the one that was there stay; the ones made ahead past #49 are gone.
        #expect(made() == 48 + 1)
        for index in 50..<90 { #expect(!FileManager.default.fileExists(atPath: paths[index]!), "file #\(index)") }
    }

    /// A fetch that fails part way keeps the partial of the large file it was writing (to resume)
    /// and leaves none of those made ahead for files that never came, nor of a small file held in
    /// memory until whole; the small files already checked are still written and land.
    @Test func aFailedFetchLeavesOnlyThePartialItWasWriting() async throws {
        let box = try Sandbox(); defer { box.remove() }
        let content = Data("hello, ferry\n".utf8)
        let large = Int64(FetchReceiver.smallFileSize) + 1
        let wants = (0..<200).map { i in
            FetchReceiver.Want(listed: i, entry: FileListing.Entry(path: "output/f\(i)", size: i == 2 ? large : Int64(content.count), sha256: "", modified: Date(), mode: 0o644, local: "f\(i)"),
                               local: box.root + "/f\(i)", offset: 0)
        }
        func whole(_ i: Int) -> Data { Data("F \(i) 0 \(content.count) 644\n".utf8) + content + Data("H \(sha256(content))\n".utf8) }
        // Two small files whole, the large one begun: the connection drops there.
        let receiver = FetchReceiver(wants: wants, events: nil)
        try receiver.feed(whole(0) + whole(1) + Data("F 2 0 \(large) 644\n".utf8) + content.prefix(5))
        #expect(!receiver.complete)
        receiver.abandon()
        try? await receiver.landAll()
        var left = try FileManager.default.contentsOfDirectory(atPath: box.root).filter { $0.hasPrefix("f") }.sorted()
        #expect(left == ["f0", "f1", "f2" + partialSuffix])
        #expect(POSIX.fileSize(box.root + "/f2" + partialSuffix) == 5)
        #expect(fileText(box.root + "/f1") == "hello, ferry\n")
        // A small file begun when the stream drops leaves nothing: it was only in memory.
        let again = FetchReceiver(wants: wants, events: nil)
        try again.feed(whole(0) + Data("F 1 0 \(content.count) 644\n".utf8) + content.prefix(5))
        again.abandon()
        try? await again.landAll()
        left = try FileManager.default.contentsOfDirectory(atPath: box.root).filter { $0.hasPrefix("f") }.sorted()
        #expect(left == ["f0", "f1", "f2" + partialSuffix])
        // An empty partial an earlier fetch left is taken over, and the file lands whole with its mode.
        try Data("stale".utf8).write(to: URL(fileURLWithPath: box.root + "/f3" + partialSuffix))
        truncate(box.root + "/f3" + partialSuffix, 0)
        let third = FetchReceiver(wants: wants, events: nil)
        try third.feed(whole(0) + whole(1) + Data("F 2 0 \(large) 644\n".utf8) + Data(count: Int(large)) + Data("H \(sha256(Data(count: Int(large))))\n".utf8) + whole(3))
        try await third.landAll()
        var st = stat()
        #expect(fileText(box.root + "/f3") == "hello, ferry\n" && lstat(box.root + "/f3", &st) == 0 && st.st_mode & 0o777 == 0o644)
        #expect(!FileManager.default.fileExists(atPath: box.root + "/f3" + partialSuffix))
        #expect(POSIX.fileSize(box.root + "/f2") == large)
    }

    @Test func fetchPathRulesLinksAndModesLocally() async throws {
        let box = try Sandbox(); defer { box.remove() }
        try await TransferScenarios.fetchRules(box, host: "local", context: box.context())
    }

    @Test func fetchPathRulesLinksAndModesOverSSH() async throws {
        guard let sshd = try TestSSHD.shared() else { return }
        let box = try Sandbox(); defer { box.remove() }
        try box.addSSHHost(sshd)
        try await TransferScenarios.fetchRules(box, host: "box", context: box.sshContext(sshd))
    }

    /// sshd without an sftp Subsystem: the agent is installed, files go up and come home, ls works —
    /// all through exec channels, within a deadline (it used to spin forever).
    @Test func hostWithoutSFTP() async throws {
        guard try TestSSHD.shared() != nil else { return }
        let box = try Sandbox(); defer { box.remove() }
        let sshd = try TestSSHD.start(directory: box.root + "/sshd-nosftp", noSFTP: true)
        defer { sshd.stop() }
        try box.addSSHHost(sshd, preinstalled: false)
        nonisolated(unsafe) let sandbox = box
        let context = box.sshContext(sshd)
        try await withDeadline(seconds: 120) { try await TransferScenarios.roundTrip(sandbox, host: "box", context: context, sftp: false) }
    }

    /// dropbear without sftp-server (a minimal image's SSH server).
    @Test func dropbearWithoutSFTP() async throws {
        guard try TestSSHD.shared() != nil else { return }
        let box = try Sandbox(); defer { box.remove() }
        guard let dropbear = try TestSSHD.startDropbear(directory: box.root + "/dropbear") else {
            print("dropbearWithoutSFTP: skipped (needs root and dropbear-bin: scripts/install-deps.sh)")
            return
        }
        defer { dropbear.stop() }
        try box.addSSHHost(dropbear, preinstalled: false)
        nonisolated(unsafe) let sandbox = box
        let context = box.sshContext(dropbear)
        try await withDeadline(seconds: 120) { try await TransferScenarios.roundTrip(sandbox, host: "box", context: context, sftp: false) }
    }
}

enum TransferScenarios {
    /// `--what P`: work/P, then output/P, both an error naming both; log and events; a link on the
    /// way refused; links inside left out; the host's modes kept.
    static func fetchRules(_ box: Sandbox, host: String, context: JobsContext) async throws {
        try box.write("out/a.txt", "sent\n")
        try box.write("both/x.txt", "from work\n")
        let outside = box.root + "/outside"
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        try Data("not yours\n".utf8).write(to: URL(fileURLWithPath: outside + "/secret.txt"))
        try box.write("make.sh", """
        mkdir -p "$FERRY_OUTPUT/res" "$FERRY_OUTPUT/both" "$FERRY_OUTPUT/ck"
        echo b > "$FERRY_OUTPUT/res/b.txt"
        echo y > "$FERRY_OUTPUT/both/y.txt"
        echo w > "$FERRY_OUTPUT/ck/w.bin"
        umask 077; echo token > "$FERRY_OUTPUT/creds.txt"; umask 022
        printf '#!/bin/sh\\n' > "$FERRY_OUTPUT/run.sh"; chmod 750 "$FERRY_OUTPUT/run.sh"
        ln -s \(outside) "$FERRY_OUTPUT/link"
        ln -s \(outside)/secret.txt "$FERRY_OUTPUT/ck/secret-link"
        echo '{"event":"start","time":1}' >> "$FERRY_EVENTS"
        echo done
        """)
        let (result, client) = try await Launcher(context: context).launch(
            LaunchRequest(host: host, name: "rules", workingDirectory: box.project, kind: "command", command: ["sh", "make.sh"]))
        let follower = JobsClient(context: context).follower(result.id, host: try context.registry.host(host))
        #expect(try await follower.resume(from: 0, first: client, onData: { _ in })?.state == .succeeded)
        let dest = box.root + "/dest"
        func fetch(_ what: String) async throws -> [FetchedFile] {
            let c = try await JobsClient(context: context).agent(for: result.id)
            return try await c.using { try await Fetcher(client: $0).fetch(result.id, what: what, into: dest) }
        }
        func mode(_ path: String) -> Int { var st = stat(); return lstat(path, &st) == 0 ? Int(st.st_mode & 0o777) : -1 }

        _ = try await fetch("out")
        #expect(fileText(dest + "/out/a.txt") == "sent\n")
        _ = try await fetch("res")
        #expect(fileText(dest + "/res/b.txt") == "b\n")
        _ = try await fetch("out/a.txt")
        #expect(fileText(dest + "/out/a.txt") == "sent\n")
        do {
            _ = try await fetch("both")
            Issue.record("--what both should name work/both and output/both")
        } catch let error as JobsError {
            #expect(error.description.contains("work/both") && error.description.contains("output/both"), "\(error)")
        }
        _ = try await fetch("output/both")   // the job folder's own path still works
        #expect(fileText(dest + "/output/both/y.txt") == "y\n")
        _ = try await fetch("log")
        #expect(fileText(dest + "/output.log").contains("done"))
        _ = try await fetch("events")
        #expect(fileText(dest + "/events.jsonl").contains("\"start\""))

        // A link on the way is refused, on the host, before anything is written here.
        await #expect(throws: JobsError.self) { _ = try await fetch("link/secret.txt") }
        await #expect(throws: JobsError.self) { _ = try await fetch("link") }
        #expect(!FileManager.default.fileExists(atPath: dest + "/link"))
        // Links inside a fetched folder are left out; modes are the host's, never wider.
        let all = try await fetch("all")
        #expect(!all.contains { $0.remotePath.contains("link") })
        #expect(!FileManager.default.fileExists(atPath: dest + "/ck/secret-link"))
        #expect(fileText(dest + "/ck/w.bin") == "w\n")
        #expect(mode(dest + "/creds.txt") == 0o600)
        #expect(mode(dest + "/run.sh") == 0o750)
        #expect(mode(dest + "/res/b.txt") == 0o644)

        // One file by its path, the fast way: over SSH (the test sshd has SFTP) it comes over SFTP
        // while the probe's agent lists and hashes it; here, as usual. The same bytes, modes and rules.
        let ahead = box.root + "/ahead"
        func fetchAhead(_ what: String) async throws -> FetchedFile? {
            let (c, got) = try await JobsClient(context: context).agent(for: result.id, fetchingAhead: what, into: ahead)
            await c.close()
            return got
        }
        let overSSH = host != HostRecord.localName
        for (what, text, bits) in [("creds.txt", "token\n", 0o600), ("run.sh", "#!/bin/sh\n", 0o750), ("out/a.txt", "sent\n", 0o644),
                                   ("both/y.txt", "y\n", 0o644)] {
            let got = try await fetchAhead(what)
            #expect((got != nil) == overSSH, "\(what)")
            if let got {
                #expect(got.localPath == ahead + "/" + what && !got.unchanged && got.transferredBytes == Int64(text.utf8.count))
                #expect(fileText(ahead + "/" + what) == text && mode(ahead + "/" + what) == bits, "\(what)")
                #expect(!FileManager.default.fileExists(atPath: ahead + "/" + what + partialSuffix))
            }
        }
        // A copy here already: the usual fetch, which finds it unchanged.
        #expect(try await fetchAhead("creds.txt") == nil)
        // A link on the way, a folder, both places: not this way (the usual fetch then refuses or takes them).
        for what in ["link/secret.txt", "res", "both"] { #expect(try await fetchAhead(what) == nil, "\(what)") }
        #expect(!FileManager.default.fileExists(atPath: ahead + "/link"))
        #expect(!FileManager.default.fileExists(atPath: ahead + "/link/secret.txt" + partialSuffix))
    }

    /// Install (no agent there), launch with files to send, follow, fetch, list.
    /// `sftp`: whether the host serves SFTP (nil: either).
    static func roundTrip(_ box: Sandbox, host: String, context: JobsContext, sftp: Bool? = nil) async throws {
        try box.writeRandom("data/blob.bin", bytes: 3 << 20)
        for i in 0..<50 { try box.write("src/f\(i).txt", "file \(i)\n") }
        try box.write("run.sh", """
        cp data/blob.bin "$FERRY_OUTPUT/blob.bin"; umask 077; echo key > "$FERRY_OUTPUT/creds.txt"; echo ran
        """)
        let (result, client) = try await Launcher(context: context).launch(
            LaunchRequest(host: host, name: "nosftp", workingDirectory: box.project, kind: "command", command: ["sh", "run.sh"]))
        #expect(result.files == 52)
        let jobs = JobsClient(context: context)
        let follower = jobs.follower(result.id, host: try context.registry.host(host))
        #expect(try await follower.resume(from: 0, first: client, onData: { _ in })?.state == .succeeded)
        let c = try await jobs.agent(for: result.id)
        let files = try await c.using { try await Fetcher(client: $0).fetch(result.id, what: "all", into: box.root + "/got") }
        #expect(Set(files.map(\.remotePath)) == ["output/blob.bin", "output/creds.txt"])
        #expect(try HashCache.hashFile(box.root + "/got/blob.bin") == HashCache.hashFile(box.project + "/data/blob.bin"))
        var st = stat()
        #expect(lstat(box.root + "/got/creds.txt", &st) == 0 && st.st_mode & 0o777 == 0o600)
        let listed = await jobs.list()
        #expect(listed.first { $0.host == host }?.jobs.contains { $0.spec.id == result.id } == true)
        // One file by its path: over SFTP where the server has it, else the usual way on the same
        // session; the same bytes either way.
        let (c2, ahead) = try await jobs.agent(for: result.id, fetchingAhead: "blob.bin", into: box.root + "/one")
        if let sftp { #expect((ahead != nil) == sftp) }
        let one = try await c2.using { c in
            if let ahead { return [ahead] }
            return try await Fetcher(client: c).fetch(result.id, what: "blob.bin", into: box.root + "/one")
        }
        #expect(one.count == 1 && (try? HashCache.hashFile(box.root + "/one/blob.bin")) == (try? HashCache.hashFile(box.project + "/data/blob.bin")))
    }

}

/// Work folders made ahead (`SpareWork`): a relaunch takes one with a rename and patches only what
/// changed; the result equals a fresh copy, and the store stays what it was.
@Suite struct SpareWorkTests {
    /// A relaunch's tree (the same paths in the same order, some contents and modes changed) is
    /// diffed in one pass, to what the general way finds; other changes take the general way.
    @Test func theSamePathsAreDiffedInOnePassAlike() {
        func hash(_ i: Int, _ salt: String = "") -> String { sha256(Data("\(i)\(salt)".utf8)) }
        var old = Manifest(symlinks: [Manifest.Symlink(path: "d1/link", target: "../d0/f0.bin")], directories: ["empty"])
        for i in 0..<300 { old.files.append(Manifest.File(path: "d\(i / 100)/f\(i).bin", sha256: hash(i), size: 10, executable: i % 9 == 0)) }
        var new = old
        for i in stride(from: 0, to: 300, by: 37) { new.files[i].sha256 = hash(i, "changed") }
        for i in stride(from: 5, to: 300, by: 50) { new.files[i].executable.toggle() }
        let fast = SpareWork.difference(from: old, to: new)
        #expect(fast == SpareWork.anyDifference(from: old, to: new))
        #expect(fast.write.count == 9 && fast.remove.count == 9 && fast.chmod.count == 6)
        #expect(fast.links.isEmpty && fast.folders.isEmpty && fast.removeFolders.isEmpty)
        // A file renamed: not the same paths, so the general way (and the same answer).
        var moved = new
        moved.files[10].path = "d9/moved.bin"
        #expect(SpareWork.difference(from: old, to: moved) == SpareWork.anyDifference(from: old, to: moved))
        #expect(SpareWork.difference(from: old, to: moved).folders == ["d9"])
    }

    /// A maker that fails (here: its job has no folder) says why in spares/maker.log.
    @Test func aMakerThatFailsSaysWhyInItsLog() async throws {
        let box = try Sandbox(); defer { box.remove() }
        let (store, manifest, _) = try storeAndTree(box, count: SpareWork.minFiles)
        let agent = Agent(home: store.layout.home, version: "test", binary: TestFerry.binary)
        agent.startPreparingWork("gone-1", manifest: manifest, tree: SpareWork.treeID(manifest))
        let log = SpareWork(layout: store.layout, blobs: store).directory + "/maker.log"
        #expect(await eventually(20) { fileText(log).contains("gone-1") }, "\(fileText(log))")
    }

    /// A store holding `count` small contents, and the tree that names them.
    private func storeAndTree(_ box: Sandbox, count: Int) throws -> (BlobStore, Manifest, [Data]) {
        let store = BlobStore(layout: HostLayout(home: box.root + "/host"))
        var stream = PackStream()
        var contents: [Data] = []
        var manifest = Manifest()
        for i in 0..<count {
            let data = randomData(100 + i % 50)
            contents.append(data)
            stream.blob(data)
            manifest.files.append(Manifest.File(path: "d\(i / 100)/f\(i).bin", sha256: sha256(data), size: Int64(data.count), executable: i % 7 == 0))
        }
        let (reader, fd) = try stream.reader(in: box.root)
        defer { close(fd) }
        #expect(try store.receive(from: reader).stored == count)
        return (store, manifest, contents)
    }

    /// Every entry under `root`: kind, mode and bytes (or link target), by relative path.
    private func snapshot(_ root: String) throws -> [String: String] {
        var result: [String: String] = [:]
        let walker = FileManager.default.enumerator(atPath: root)
        while let item = walker?.nextObject() as? String {
            var st = stat()
            #expect(lstat(root + "/" + item, &st) == 0)
            switch st.st_mode & S_IFMT {
            case S_IFDIR: result[item] = "dir \(String(st.st_mode & 0o777, radix: 8))"
            case S_IFLNK: result[item] = "link " + ((try? FileManager.default.destinationOfSymbolicLink(atPath: root + "/" + item)) ?? "?")
            default: result[item] = "file \(String(st.st_mode & 0o777, radix: 8)) " + (try HashCache.hashFile(root + "/" + item))
            }
        }
        return result
    }

    @Test func aRelaunchTakesTheSpareAndPatchesWhatChanged() throws {
        let box = try Sandbox(); defer { box.remove() }
        var (store, old, _) = try storeAndTree(box, count: 400)
        old.symlinks = [Manifest.Symlink(path: "d0/link", target: "f1.bin"), Manifest.Symlink(path: "gone-link", target: "d1")]
        old.directories = ["empty", "becomes-file"]
        old.files.append(Manifest.File(path: "becomes-dir", sha256: old.files[5].sha256, size: old.files[5].size))
        let spares = SpareWork(layout: store.layout, blobs: store)
        try spares.prepare(old)
        #expect(try FileManager.default.contentsOfDirectory(atPath: spares.directory).filter { !$0.hasPrefix(".") }.count == 1)

        // The next tree: one content changed, one file gone, one new (in a new folder), one whose
        // mode changed, a file that became a folder and a folder that became a file, links changed.
        var new = old
        new.files[3] = Manifest.File(path: new.files[3].path, sha256: new.files[10].sha256, size: new.files[10].size)
        new.files.remove(at: 20)
        new.files[30].executable.toggle()
        new.files.removeAll { $0.path == "becomes-dir" }
        new.files.append(Manifest.File(path: "becomes-dir/inside.bin", sha256: old.files[6].sha256, size: old.files[6].size))
        new.files.append(Manifest.File(path: "becomes-file", sha256: old.files[7].sha256, size: old.files[7].size, executable: true))
        new.files.append(Manifest.File(path: "fresh/deep/new.bin", sha256: old.files[8].sha256, size: old.files[8].size))
        new.directories = ["empty"]
        new.symlinks = [Manifest.Symlink(path: "d0/link", target: "f2.bin")]
        try new.validate()
        let work = box.root + "/job/work"
        try FileManager.default.createDirectory(atPath: box.root + "/job", withIntermediateDirectories: true)
        #expect(try spares.take(new, into: work, claim: "job-1"))
        try store.materialise(new, into: box.root + "/fresh")
        let patched = try snapshot(work), fresh = try snapshot(box.root + "/fresh")
        #expect(patched.count == fresh.count)
        for (path, value) in fresh where patched[path] != value { Issue.record("\(path): \(patched[path] ?? "absent") instead of \(value)") }
        for path in patched.keys where fresh[path] == nil { Issue.record("\(path) should not be there") }
        // Taken: no spare left, and nothing half-taken either.
        #expect(try FileManager.default.contentsOfDirectory(atPath: spares.directory).filter { $0 != ".lock" }.isEmpty)
        // Nothing left to take: the next launch copies every file.
        #expect(try !spares.take(new, into: box.root + "/job/work2", claim: "job-2"))
    }

    /// A relaunch right after the launch that asked for a spare waits for it (its folder is
    /// announced before that launch answered) and patches it, rather than copying every file beside it.
    @Test func aRelaunchWaitsForTheSpareBeingMade() throws {
        let box = try Sandbox(); defer { box.remove() }
        let (store, tree, _) = try storeAndTree(box, count: 300)
        let spares = SpareWork(layout: store.layout, blobs: store)
        try POSIX.makeDirectory(spares.directory, mode: 0o700)
        let name = SpareWork.newName()
        let building = try spares.announce(name, builder: getpid(), manifest: tree, manifestFile: nil)
        nonisolated(unsafe) let maker = store
        let ready = spares.directory + "/" + name
        let started = Date()
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.5) {
            try? maker.materialise(tree, into: building + "/work")
            _ = rename(building, ready)
        }
        var changed = tree
        changed.files[0].sha256 = tree.files[1].sha256
        changed.files[0].size = tree.files[1].size
        let work = box.root + "/work"
        #expect(try spares.take(changed, into: work, claim: "job-1"))
        #expect(Date().timeIntervalSince(started) >= 0.45, "it took the spare before it was made")
        try store.materialise(changed, into: box.root + "/fresh")
        #expect(try snapshot(work) == snapshot(box.root + "/fresh"))
        // One whose maker is gone is not waited for.
        _ = try spares.announce(SpareWork.newName(), builder: 999_999, manifest: tree, manifestFile: nil)
        let again = Date()
        #expect(try !spares.take(tree, into: box.root + "/work2", claim: "job-2"))
        #expect(Date().timeIntervalSince(again) < 1)
    }

    @Test func aTreeTooDifferentGetsAFreshCopyAndTheSpareStays() throws {
        let box = try Sandbox(); defer { box.remove() }
        let (store, tree, _) = try storeAndTree(box, count: 300)
        let spares = SpareWork(layout: store.layout, blobs: store)
        try spares.prepare(tree)
        var other = tree
        for i in other.files.indices { other.files[i].path = "moved/" + other.files[i].path }
        #expect(try !spares.take(other, into: box.root + "/work", claim: "job-1"))
        #expect(!POSIX.exists(box.root + "/work"))
        #expect(try spares.take(tree, into: box.root + "/work", claim: "job-2"))
        // A tree too small for a spare gets none, and takes none.
        var small = tree
        small.files = Array(tree.files.prefix(10))
        try spares.prepare(small)
        #expect(try FileManager.default.contentsOfDirectory(atPath: spares.directory).filter { !$0.hasPrefix(".") }.isEmpty)
    }

    /// A job that rewrites its files in place (a spare became its work/) changes neither the store
    /// nor the next spare; at most `keep` spares stay, the newest.
    @Test func aJobsRewriteNeverReachesTheStoreOrTheNextSpare() throws {
        let box = try Sandbox(); defer { box.remove() }
        let (store, tree, contents) = try storeAndTree(box, count: 300)
        let spares = SpareWork(layout: store.layout, blobs: store)
        try spares.prepare(tree)
        let work = box.root + "/work"
        #expect(try spares.take(tree, into: work, claim: "job-1"))
        let out = open(work + "/" + tree.files[0].path, O_WRONLY | O_CLOEXEC)
        #expect(out >= 0)
        #expect(pwrite(out, [UInt8](repeating: 0x41, count: 50), 50, 0) == 50)
        close(out)
        try spares.prepare(tree)
        #expect(try spares.take(tree, into: box.root + "/work2", claim: "job-2"))
        #expect(try HashCache.hashFile(box.root + "/work2/" + tree.files[0].path) == tree.files[0].sha256)
        #expect(BlobStore(layout: store.layout).contents(tree.files[0].sha256) == contents[0])

        var trees: [Manifest] = []
        for k in 0..<3 {
            var t = tree
            t.files[k].sha256 = tree.files[k + 100].sha256
            t.files[k].size = tree.files[k + 100].size
            trees.append(t)
            try spares.prepare(t)
            usleep(20_000)
        }
        let left = try FileManager.default.contentsOfDirectory(atPath: spares.directory).filter { !$0.hasPrefix(".") }
        #expect(left.count == SpareWork.keep)
        let kept = left.compactMap { POSIX.read(spares.directory + "/" + $0 + "/tree").map { String(decoding: $0, as: UTF8.self) } }
        #expect(Set(kept) == Set(trees.suffix(2).map(SpareWork.treeID)))
    }
}
