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
