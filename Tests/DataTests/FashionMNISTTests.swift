import Foundation
import Testing
import TensorCore
import Data

private let root = FashionMNISTFiles.defaultRoot
/// Under CI the files must be there (their absence fails the tests); elsewhere the tests skip without them.
private let filesPresent = FashionMNISTFiles.missingFiles(root: root).isEmpty || isCI

/// The real Fashion-MNIST files, checked against facts read by Python's gzip + struct when the fixtures were made.
@Suite(.enabled(if: filesPresent, "Fashion-MNIST is not installed (scripts/install-deps.sh installs Debian's dataset-fashion-mnist)"))
struct FashionMNISTTests {
    // Loaded once for the suite: the sets are large and tests only read them.
    static let train = Result { try FashionMNIST(root: root, train: true) }
    static let test = Result { try FashionMNIST(root: root, train: false) }

    func check(_ ds: FashionMNIST, against facts: [String: Any]) throws {
        let count = try #require(facts["count"] as? Int)
        #expect(ds.count == count)
        #expect(ds.sampleShape == [1, 28, 28])
        #expect(ds.data.features.count == count * 784)

        let firstLabels = try #require(facts["firstLabels"] as? [Int])
        #expect((0..<firstLabels.count).map { Int(ds[$0].label) } == firstLabels)
        #expect(Int(ds[count - 1].label) == (facts["lastLabel"] as? Int))
        var histogram = [Int](repeating: 0, count: 10)
        var outOfRange = 0
        for l in ds.data.labels {
            if (0..<10).contains(l) { histogram[Int(l)] += 1 } else { outOfRange += 1 }
        }
        #expect(outOfRange == 0)
        #expect(histogram == (facts["labelHistogram"] as? [Int]))

        // One pass over the 47M pixels: range and mean.
        var (lo, hi, sum) = (Float.infinity, -Float.infinity, 0.0)
        ds.data.features.withUnsafeBufferPointer { p in
            for v in p { lo = min(lo, v); hi = max(hi, v); sum += Double(v) }
        }
        #expect(lo == 0 && hi == 1)
        let mean = sum / Double(ds.data.features.count)
        #expect(abs(mean - (try #require(facts["pixelMean"] as? Double))) < 1e-6)

        // Pixels are byte / 255, so byte sums come back exactly.
        func byteSum(_ i: Int) -> Int { ds[i].features.reduce(0) { $0 + Int(($1 * 255).rounded()) } }
        #expect(byteSum(0) == (facts["firstImageByteSum"] as? Int))
        #expect(byteSum(count - 1) == (facts["lastImageByteSum"] as? Int))
        let brightest = try #require(facts["firstImageMax"] as? [Int])
        let first = ds[0].features
        let argmax = try #require(first.firstIndex(of: first.max() ?? 0))
        #expect([argmax / 28, argmax % 28, Int((first[argmax] * 255).rounded())] == brightest)
        #expect(first[argmax] == Float(brightest[2]) / 255)

    }

    @Test func trainSetMatchesPythonRead() throws {
        let ds = try Self.train.get()
        try check(ds, against: try #require(Fixtures.json("fashion_mnist_expected.json")["train"] as? [String: Any]))
        #expect(ds.train)
        #expect(ds[0].label == 9)        // the first training image is an ankle boot
        #expect(FashionMNIST.classes[9] == "Ankle boot")
    }

    @Test func testSetMatchesPythonRead() throws {
        try check(try Self.test.get(), against: try #require(Fixtures.json("fashion_mnist_expected.json")["test"] as? [String: Any]))
    }

    @Test func normalizeConstantsAreTheTrainingSetStatistics() throws {
        let facts = try #require(Fixtures.json("fashion_mnist_expected.json")["train"] as? [String: Any])
        #expect(abs(Double(Normalize.fashionMNIST.mean[0]) - (try #require(facts["pixelMean"] as? Double))) < 5e-4)
        #expect(abs(Double(Normalize.fashionMNIST.std[0]) - (try #require(facts["pixelStd"] as? Double))) < 5e-4)
    }

    @Test func normalizedLoadAppliesMeanAndStd() throws {
        let plain = try Self.test.get()
        let normalized = try FashionMNIST(root: root, train: false, normalize: .fashionMNIST)
        #expect(normalized.count == plain.count)
        for i in [0, 1, 9999] {
            let a = plain[i].features, b = normalized[i].features
            #expect(zip(a, b).allSatisfy { ($0 - 0.2860) / 0.3530 == $1 })
        }
        // The same as normalising the loaded dataset afterwards.
        #expect(try plain.data.normalized(.fashionMNIST).features == normalized.data.features)
    }

    @Test func loaderYieldsImageBatches() throws {
        let ds = try Self.test.get()
        let loader = DataLoader(ds, batchSize: 128, shuffle: true, seed: 0)
        #expect(loader.count == 79)
        var seen = 0
        var labelsSeen = [Int](repeating: 0, count: 10)
        for (x, y) in loader {
            #expect(x.shape == [y.shape[0], 1, 28, 28])
            #expect(x.dtype == .float32 && y.dtype == .int64)
            #expect(x.flatten(startDim: 1).shape == [y.shape[0], 784])
            for l in y.scalars(as: Int64.self) { labelsSeen[Int(l)] += 1 }
            seen += y.shape[0]
        }
        #expect(seen == 10_000)
        #expect(labelsSeen == [Int](repeating: 1000, count: 10))
    }

    @Test func missingRootNamesTheFile() throws {
        let error = dataError { try FashionMNIST(root: "/nonexistent/fashion", train: true) }
        guard case .fileNotFound(let path, let hint)? = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(path == "/nonexistent/fashion/train-images-idx3-ubyte.gz")
        #expect(hint.contains("dataset-fashion-mnist"))
    }
}
