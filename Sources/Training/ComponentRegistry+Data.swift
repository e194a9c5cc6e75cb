import Data
import Foundation

extension ComponentRegistry {
    /// The arguments every data loader takes (and the trainer reads): pytorch-template's plus ferry's: `limit` (use only the first N samples of
    /// each split, for tests and quick demos), `prefetch` (batches built ahead on a background
    /// thread), `drop_last`, and `normalize` (`[mean, std]`, replacing the dataset's own).
    public static var loaderArgs: [ArgSpec] {
        [ArgSpec("data_dir", .string), ArgSpec("batch_size", .integer(min: 1)),
         ArgSpec("shuffle", .boolean, default: .bool(true)),
         ArgSpec("validation_split", .custom("a fraction in [0, 1) or a number of samples"), default: .double(0)),
         ArgSpec("num_workers", .integer(min: 0), default: .int(1)),
         ArgSpec("training", .boolean, default: .bool(true)),
         ArgSpec("limit", .integer(min: 1), default: .null),
         ArgSpec("prefetch", .integer(min: 0), default: .int(2)),
         ArgSpec("drop_last", .boolean, default: .bool(false)),
         ArgSpec("normalize", .numbers(count: 2, .any), default: .null)]
    }

    static let mnistFacts = DatasetFacts(sampleShape: [1, 28, 28], classes: 10, trainCount: 60_000, testCount: 10_000)

    /// Checks that `data_dir` holds the split's two IDX files (gzip'd or not), as Data reads them.
    static func checkIDXFiles(_ a: Args, _ split: DataSplit, _ reader: ConfigReader, _ path: ConfigPath, hint: String) {
        let dir = a.string("data_dir")
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            reader.fail(path + "args" + "data_dir", "no directory \(dir) — \(hint)")
            return
        }
        let prefix = split == .train ? "train" : "t10k"
        for (kind, rank) in [("images", 3), ("labels", 1)] {
            let stems = ["\(prefix)-\(kind)-idx\(rank)-ubyte", "\(prefix)-\(kind).idx\(rank)-ubyte"]
            let found = stems.contains { stem in
                [stem + ".gz", stem].contains { FileManager.default.fileExists(atPath: (dir as NSString).appendingPathComponent($0)) }
            }
            if !found { reader.fail(path + "args" + "data_dir", "no \(stems[0]).gz in \(dir) — \(hint)") }
        }
    }

    static func normalizeArg(_ a: Args, default d: Normalize) -> Normalize {
        let v = a.doubleList("normalize")
        return v.count == 2 ? Normalize(mean: Float(v[0]), std: Float(v[1])) : d
    }

    static let builtinDataLoaders: [DataLoaderType] = [
        // pytorch-template's loader: MNIST's IDX files in data_dir, normalised with MNIST's statistics.
        DataLoaderType(name: "MnistDataLoader", args: loaderArgs, facts: { _ in mnistFacts },
                       check: { a, split, reader, path in
                           checkIDXFiles(a, split, reader, path, hint: "put MNIST's four IDX files (train-images-idx3-ubyte.gz, …) there, or Fashion-MNIST's (Debian: dataset-fashion-mnist)")
                       },
                       load: { a, split in
                           AnyDataset(try MNIST(root: a.string("data_dir"), train: split == .train, normalize: normalizeArg(a, default: .mnist)))
                       }),
        DataLoaderType(name: "FashionMnistDataLoader", args: loaderArgs, facts: { _ in mnistFacts },
                       check: { a, split, reader, path in
                           checkIDXFiles(a, split, reader, path, hint: "install Debian's dataset-fashion-mnist (its files are in \(FashionMNISTFiles.defaultRoot)) or point data_dir at the four IDX files")
                       },
                       load: { a, split in
                           AnyDataset(try FashionMNIST(root: a.string("data_dir"), train: split == .train, normalize: normalizeArg(a, default: .fashionMNIST)))
                       }),
    ]
}
