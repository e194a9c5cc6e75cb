import Foundation
import TensorCore

/// Fashion-MNIST as Debian's `dataset-fashion-mnist` installs it.
public enum FashionMNISTFiles {
    /// Debian's location of the four gzip'd IDX files.
    public static let defaultRoot = "/usr/share/datasets/fashion-mnist"
    public static let fileNames = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                   "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]

    /// The files missing under `root` (empty when all four are present).
    public static func missingFiles(root: String = defaultRoot) -> [String] {
        fileNames.filter { !FileManager.default.fileExists(atPath: (root as NSString).appendingPathComponent($0)) }
    }
}

/// Zalando's Fashion-MNIST: 60,000 training and 10,000 test images of 28×28 grey pixels in 10
/// classes. Samples are float32 `[1, 28, 28]` in [0, 1] (then `normalize`), labels 0–9.
/// Reads `train-images-idx3-ubyte.gz` etc. under `root`, gzip'd or not.
public struct FashionMNIST: TensorBackedDataset {
    /// The class names, by label.
    public static let classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    /// The images and labels in memory.
    public let data: TensorDataset
    public let train: Bool

    public init(root: String = FashionMNISTFiles.defaultRoot, train: Bool = true, normalize: Normalize? = nil) throws {
        self.train = train
        data = try loadMNISTLayout(root: root, train: train, normalize: normalize,
                                   hint: "install Debian's dataset-fashion-mnist (scripts/install-deps.sh) or pass the directory holding the four IDX files as root:")
    }

}

/// A dataset whose samples are one `TensorDataset`'s, under a name of its own (FashionMNIST, MNIST).
public protocol TensorBackedDataset: Dataset {
    var data: TensorDataset { get }
}

extension TensorBackedDataset {
    public var count: Int { data.count }
    public var sampleShape: [Int] { data.sampleShape }
    public func example(at index: Int) -> Example { data.example(at: index) }
    public func fillBatch(indices: [Int], into batch: inout Batch) { data.fillBatch(indices: indices, into: &batch) }
}

/// LeCun's MNIST digits in the same layout as Fashion-MNIST (`train-images-idx3-ubyte[.gz]` etc.).
public struct MNIST: TensorBackedDataset {
    public static let classes = (0..<10).map(String.init)
    public let data: TensorDataset
    public let train: Bool

    public init(root: String, train: Bool = true, normalize: Normalize? = nil) throws {
        self.train = train
        data = try loadMNISTLayout(root: root, train: train, normalize: normalize,
                                   hint: "pass the directory holding MNIST's four IDX files (train-images-idx3-ubyte.gz, …) as root:")
    }

}

/// Finds `<prefix>-images-idx3-ubyte` and its labels under `root` (`.gz` or not; also the
/// `train-images.idx3-ubyte` spelling some mirrors use) and loads them as 28×28 images in 10 classes.
func loadMNISTLayout(root: String, train: Bool, normalize: Normalize?, hint: String) throws -> TensorDataset {
    let prefix = train ? "train" : "t10k"
    let rootURL = URL(fileURLWithPath: root, isDirectory: true)
    func locate(_ kind: String, _ rank: Int) throws -> URL {
        let stems = ["\(prefix)-\(kind)-idx\(rank)-ubyte", "\(prefix)-\(kind).idx\(rank)-ubyte"]
        for stem in stems {
            for name in [stem + ".gz", stem] {
                let url = rootURL.appendingPathComponent(name)
                if FileManager.default.fileExists(atPath: url.path) { return url }
            }
        }
        throw DataError.fileNotFound(path: rootURL.appendingPathComponent(stems[0] + ".gz").path, hint: hint)
    }
    let images = try locate("images", 3)
    let labels = try locate("labels", 1)
    return try loadIDXPair(images: images, labels: labels, normalize: normalize, numClasses: 10,
                           imageSize: (28, 28), transposed: false)
}
