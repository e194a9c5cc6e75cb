import Foundation
import Testing
import Data

/// Corrupt and truncated IDX files (written to a temporary directory) and the errors that name them.
struct IDXTests {
    static let labelsMagic: [UInt8] = [0, 0, 0x08, 0x01]
    static let imagesMagic: [UInt8] = [0, 0, 0x08, 0x03]

    /// A small, valid MNIST-layout set: `n` images of 28×28 where pixel p of image i is (i + p) % 256.
    static func writeSet(in dir: TemporaryDirectory, n: Int = 5, gzip: Bool, labels: [UInt8]? = nil) throws -> (images: URL, labels: URL) {
        let pixels = (0..<(n * 784)).map { UInt8(($0 / 784 + $0 % 784) % 256) }
        var images = idxBytes(magic: imagesMagic, dims: [UInt32(n), 28, 28], payload: pixels)
        var labelData = idxBytes(magic: labelsMagic, dims: [UInt32(n)], payload: labels ?? (0..<n).map { UInt8($0 % 10) })
        let suffix = gzip ? ".gz" : ""
        if gzip {
            images = try Gzip.compress(images)
            labelData = try Gzip.compress(labelData)
        }
        return (try dir.file("train-images-idx3-ubyte" + suffix, images), try dir.file("train-labels-idx1-ubyte" + suffix, labelData))
    }

    @Test(arguments: [true, false])
    func readsGzippedAndRawFiles(gzip: Bool) throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        _ = try Self.writeSet(in: dir, gzip: gzip)
        let ds = try MNIST(root: dir.url.path, train: true)
        #expect(ds.count == 5)
        #expect(ds.sampleShape == [1, 28, 28])
        #expect(ds[3].label == 3)
        #expect(ds[3].features[10] == Float(13) / 255)
        #expect(ds[4].features[783] == Float((4 + 783) % 256) / 255)
    }

    @Test func readsTheDottedSpellingOfSomeMirrors() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let (images, labels) = try Self.writeSet(in: dir, gzip: false)
        try FileManager.default.moveItem(at: images, to: dir.url.appendingPathComponent("train-images.idx3-ubyte"))
        try FileManager.default.moveItem(at: labels, to: dir.url.appendingPathComponent("train-labels.idx1-ubyte"))
        #expect(try MNIST(root: dir.url.path, train: true).count == 5)
    }

    @Test func genericReaderAndEncoderAgree() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let array = IDXArray(dimensions: [2, 3, 4], bytes: (0..<24).map { UInt8($0 * 7) })
        let url = try dir.file("a.idx.gz", try Gzip.compress(IDX.encode(array)))
        #expect(try IDX.read(url) == array)
        #expect(try IDX.readImages(url) == array)
        #expect(IDX.encode(array) == idxBytes(magic: Self.imagesMagic, dims: [2, 3, 4], payload: array.bytes))
    }

    @Test func badMagicNamesTheFile() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let url = try dir.file("labels", idxBytes(magic: [0x1f, 0x00, 0x08, 0x01], dims: [3], payload: [1, 2, 3]))
        guard case .badMagic(let path, let expected, let found)? = dataError({ try IDX.readLabels(url) }) else {
            Issue.record("expected badMagic"); return
        }
        #expect(path == url.path && expected == "0x00000801" && found == "0x1f000801")

        // An image file where labels belong: the magic says three dimensions, not one.
        let images = try dir.file("images", idxBytes(magic: Self.imagesMagic, dims: [1, 2, 2], payload: [0, 0, 0, 0]))
        guard case .badMagic(images.path, "0x00000801", "0x00000803")? = dataError({ try IDX.readLabels(images) }) else {
            Issue.record("expected badMagic for an image file read as labels"); return
        }
        let text = try dir.file("text", Data("hello, world".utf8))
        #expect(dataError { try IDX.read(text) }?.path == text.path)
    }

    @Test func unsupportedDtypeIsNamed() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let url = try dir.file("floats", idxBytes(magic: [0, 0, 0x0D, 0x01], dims: [1], payload: [0, 0, 0, 0]))
        guard case .unsupportedFormat(url.path, let reason)? = dataError({ try IDX.read(url) }) else {
            Issue.record("expected unsupportedFormat"); return
        }
        #expect(reason.contains("0xd"))
    }

    @Test(arguments: [true, false])
    func truncatedPayloadNamesTheFileAndSizes(gzip: Bool) throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        var bytes = idxBytes(magic: Self.imagesMagic, dims: [5, 28, 28], payload: [UInt8](repeating: 7, count: 4 * 784 + 100))
        if gzip { bytes = try Gzip.compress(bytes) }
        let url = try dir.file("train-images-idx3-ubyte" + (gzip ? ".gz" : ""), bytes)
        guard case .truncated(let path, let expected, let actual)? = dataError({ try IDX.readImages(url) }) else {
            Issue.record("expected truncated"); return
        }
        #expect(path == url.path)
        #expect(expected == 16 + 5 * 784)
        #expect(actual == 16 + 4 * 784 + 100)
        // A header cut short.
        let short = try dir.file("short", Data([0, 0, 8, 3, 0, 0]))
        guard case .truncated(short.path, 16, 6)? = dataError({ try IDX.readImages(short) }) else {
            Issue.record("expected truncated header"); return
        }
    }

    /// The image loader inflates and converts chunk by chunk; a header split across gzip members
    /// (each member is a chunk of its own) must still come together.
    @Test func headerSplitAcrossGzipMembers() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let (images, _) = try Self.writeSet(in: dir, n: 3, gzip: false)
        let bytes = try Data(contentsOf: images)
        let pieces = [0..<2, 2..<7, 7..<16, 16..<1000, 1000..<bytes.count]
        try pieces.map { try Gzip.compress(bytes[$0]) }.reduce(Data(), +).write(to: images.appendingPathExtension("gz"))
        try FileManager.default.removeItem(at: images)
        let ds = try MNIST(root: dir.url.path)
        #expect(ds.count == 3 && ds[2].label == 2)
        #expect(ds[2].features[5] == Float(7) / 255)
    }

    @Test(arguments: [true, false])
    func imageLoaderRejectsShortAndLongPayloads(gzip: Bool) throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let (images, _) = try Self.writeSet(in: dir, n: 3, gzip: gzip)
        let full = gzip ? try Gzip.decompress(Data(contentsOf: images)) : try Data(contentsOf: images)
        func write(_ d: Data) throws { try (gzip ? Gzip.compress(d) : d).write(to: images) }

        try write(full.prefix(full.count - 10))
        guard case .truncated(images.path, 16 + 3 * 784, 16 + 3 * 784 - 10)? = dataError({ try MNIST(root: dir.url.path) }) else {
            Issue.record("expected truncated"); return
        }
        try write(full + Data([1, 2, 3]))
        guard case .badDimensions(images.path, let reason)? = dataError({ try MNIST(root: dir.url.path) }) else {
            Issue.record("expected badDimensions"); return
        }
        #expect(reason.contains("\(3 * 784 + 3) follow the header"))
        try write(full.prefix(9))
        guard case .truncated(images.path, 16, 9)? = dataError({ try MNIST(root: dir.url.path) }) else {
            Issue.record("expected truncated header"); return
        }
    }

    @Test func wrongDimensionsAreRejected() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        // 27×27 images where MNIST needs 28×28.
        let images = try dir.file("train-images-idx3-ubyte", idxBytes(magic: Self.imagesMagic, dims: [2, 27, 27], payload: [UInt8](repeating: 0, count: 2 * 729)))
        _ = try dir.file("train-labels-idx1-ubyte", idxBytes(magic: Self.labelsMagic, dims: [2], payload: [0, 1]))
        guard case .badDimensions(let path, let reason)? = dataError({ try MNIST(root: dir.url.path) }) else {
            Issue.record("expected badDimensions"); return
        }
        #expect(path == images.path && reason.contains("27×27"))

        // More payload than the dimensions describe.
        let extra = try dir.file("extra", idxBytes(magic: Self.labelsMagic, dims: [2], payload: [0, 1, 2]))
        guard case .badDimensions(extra.path, _)? = dataError({ try IDX.readLabels(extra) }) else {
            Issue.record("expected badDimensions for extra bytes"); return
        }
        // Dimensions whose product cannot be a file.
        let huge = try dir.file("huge", idxBytes(magic: Self.imagesMagic, dims: [0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF], payload: []))
        guard case .badDimensions(huge.path, _)? = dataError({ try IDX.readImages(huge) }) else {
            Issue.record("expected badDimensions for huge dims"); return
        }
    }

    @Test func corruptGzipNamesTheFile() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let garbage = try dir.file("garbage.gz", Data([0x1f, 0x8b, 0x08, 0x00] + [UInt8](repeating: 0xAB, count: 64)))
        guard case .corruptCompressedData(garbage.path, _)? = dataError({ try IDX.read(garbage) }) else {
            Issue.record("expected corruptCompressedData"); return
        }
        // A valid gzip stream cut in half.
        let whole = try Gzip.compress(idxBytes(magic: Self.labelsMagic, dims: [1000], payload: (0..<1000).map { UInt8(($0 * 37) % 251) }))
        let cut = try dir.file("cut.gz", whole.prefix(whole.count / 2))
        guard case .corruptCompressedData(cut.path, let reason)? = dataError({ try IDX.readLabels(cut) }) else {
            Issue.record("expected corruptCompressedData for a cut stream"); return
        }
        #expect(reason.contains("truncated"))
        // A flipped byte in the middle of a stream: zlib's CRC (or the stream itself) catches it.
        var flipped = whole
        flipped[flipped.count / 2] ^= 0xFF
        let bad = try dir.file("flipped.gz", flipped)
        #expect(dataError { try IDX.readLabels(bad) }?.path == bad.path)
        #expect(dataError { try IDX.readLabels(bad) }?.description.contains(bad.path) == true)
    }

    @Test func mismatchedCountsAndLabelsOutOfRange() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let (images, labels) = try Self.writeSet(in: dir, gzip: true)
        try Gzip.compress(idxBytes(magic: Self.labelsMagic, dims: [4], payload: [0, 1, 2, 3])).write(to: labels)
        guard case .mismatchedFiles(images.path, labels.path, let reason)? = dataError({ try MNIST(root: dir.url.path) }) else {
            Issue.record("expected mismatchedFiles"); return
        }
        #expect(reason == "5 images but 4 labels")
        try Gzip.compress(idxBytes(magic: Self.labelsMagic, dims: [5], payload: [0, 1, 12, 3, 4])).write(to: labels)
        guard case .invalidContent(labels.path, let why)? = dataError({ try MNIST(root: dir.url.path) }) else {
            Issue.record("expected invalidContent"); return
        }
        #expect(why.contains("label 2 is 12"))
    }

    @Test func missingFileNamesIt() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let url = dir.url.appendingPathComponent("nope.gz")
        guard case .fileNotFound(url.path, _)? = dataError({ try IDX.read(url) }) else { Issue.record("expected fileNotFound"); return }
        guard case .unreadable(dir.url.path, _)? = dataError({ try IDX.read(dir.url) }) else { Issue.record("expected unreadable"); return }
    }

    @Test func transposedImagesComeOutUpright() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        // One 2×3 image stored column-major, as EMNIST stores its images.
        let upright: [UInt8] = [1, 2, 3, 4, 5, 6]        // rows [1 2 3] [4 5 6]
        let stored: [UInt8] = [1, 4, 2, 5, 3, 6]
        let images = try dir.file("i", idxBytes(magic: Self.imagesMagic, dims: [1, 2, 3], payload: stored))
        let labels = try dir.file("l", idxBytes(magic: Self.labelsMagic, dims: [1], payload: [0]))
        let ds = try IDXDataset(images: images, labels: labels, transposed: true)
        #expect(ds.sampleShape == [1, 2, 3])
        #expect(ds[0].features == upright.map { Float($0) / 255 })
        #expect(try IDXDataset(images: images, labels: labels)[0].features == stored.map { Float($0) / 255 })
    }
}

struct GzipTests {
    @Test func roundTripAndConcatenatedMembers() throws {
        let a = Data((0..<100_000).map { UInt8(($0 * 31) % 256) }), b = Data("tail".utf8)
        #expect(try Gzip.decompress(Gzip.compress(a)) == a)
        #expect(try Gzip.decompress(Gzip.compress(Data())) == Data())
        // `cat a.gz b.gz` is one gzip file holding a then b.
        #expect(try Gzip.decompress(Gzip.compress(a) + Gzip.compress(b)) == a + b)
        #expect(Gzip.isGzip(try Gzip.compress(b)) && !Gzip.isGzip(b))
    }

    @Test func emptyAndGarbageInputThrow() {
        guard case .corruptCompressedData("x", _)? = dataError({ try Gzip.decompress(Data(), name: "x") }) else {
            Issue.record("expected corruptCompressedData"); return
        }
        #expect(dataError { try Gzip.decompress(Data("not gzip at all".utf8)) } != nil)
    }
}
