import Foundation
import System
import TensorCore

/// `ferry new NAME`: a job folder to start from, as pytorch-template's new_project.py makes one —
/// `config/config.json` (a layer-list CNN on Fashion-MNIST, editable without recompiling),
/// `config/mnist_lenet.json` (the template's own example), `data/`, `README.md`, `.ferryignore`.
public enum Scaffold {
    /// Creates the folder; returns the files written, relative to it.
    @discardableResult
    public static func create(at path: String) throws -> [String] {
        let root = URL(fileURLWithPath: path).standardizedFileURL
        let name = root.lastPathComponent
        let fm = FileManager.default
        if let items = try? fm.contentsOfDirectory(atPath: root.path), !items.isEmpty {
            throw TrainingError.scaffoldExists(path: path)
        }
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: root.path, isDirectory: &isDir), !isDir.boolValue {
            throw TrainingError.scaffoldExists(path: path)
        }
        let files: [(String, String)] = [
            ("config/config.json", JSONValue.object(mainConfig(name: name)).serialized(pretty: true) + "\n"),
            ("config/mnist_lenet.json", JSONValue.object(lenetConfig(name: name + "_lenet")).serialized(pretty: true) + "\n"),
            ("data/README.md", dataReadme),
            ("README.md", readme(name: name)),
            (".ferryignore", ferryignore),
            (".gitignore", "saved/\n"),
        ]
        for (relative, text) in files {
            let url = root.appendingPathComponent(relative)
            do {
                try AtomicFile.write(Data(text.utf8), to: url.path)
            } catch {
                throw TrainingError.io(path: url.path, reason: "\(error)")
            }
        }
        return files.map(\.0)
    }

    static func mainConfig(name: String) -> JSONObject {
        JSONObject([
            ("name", .string(name)),
            ("n_gpu", .int(0)),
            ("seed", .int(0)),
            ("arch", .object(JSONObject([("type", .string("Sequential")), ("args", .object(JSONObject([("layers", ComponentRegistry.cnnLayers())])))]))),
            ("data_loader", .object(JSONObject([("type", .string("FashionMnistDataLoader")), ("args", .object(JSONObject([
                ("data_dir", .string("/usr/share/datasets/fashion-mnist")), ("batch_size", .int(128)), ("shuffle", .bool(true)),
                ("validation_split", .double(0.1)), ("num_workers", .int(1)),
            ])))]))),
            ("optimizer", .object(JSONObject([("type", .string("Adam")), ("args", .object(JSONObject([("lr", .double(0.001))])))]))),
            ("loss", .string("cross_entropy")),
            ("metrics", .array([.string("accuracy"), .string("top_k_acc")])),
            ("lr_scheduler", .object(JSONObject([("type", .string("StepLR")), ("args", .object(JSONObject([("step_size", .int(10)), ("gamma", .double(0.5))])))]))),
            ("trainer", .object(JSONObject([
                ("epochs", .int(5)), ("save_dir", .string("saved/")), ("save_period", .int(5)), ("verbosity", .int(1)),
                ("monitor", .string("max val_accuracy")), ("early_stop", .int(3)), ("tensorboard", .bool(true)),
                ("save_top_k", .int(2)), ("save_last", .bool(true)),
            ]))),
        ])
    }

    /// pytorch-template's config.json as it ships, pointed at Debian's Fashion-MNIST files.
    public static func lenetConfig(name: String = "Mnist_LeNet", dataDir: String = "/usr/share/datasets/fashion-mnist") -> JSONObject {
        JSONObject([
            ("name", .string(name)),
            ("n_gpu", .int(1)),
            ("arch", .object(JSONObject([("type", .string("MnistModel")), ("args", .object(JSONObject()))]))),
            ("data_loader", .object(JSONObject([("type", .string("MnistDataLoader")), ("args", .object(JSONObject([
                ("data_dir", .string(dataDir)), ("batch_size", .int(128)), ("shuffle", .bool(true)),
                ("validation_split", .double(0.1)), ("num_workers", .int(2)),
            ])))]))),
            ("optimizer", .object(JSONObject([("type", .string("Adam")), ("args", .object(JSONObject([
                ("lr", .double(0.001)), ("weight_decay", .int(0)), ("amsgrad", .bool(true)),
            ])))]))),
            ("loss", .string("nll_loss")),
            ("metrics", .array([.string("accuracy"), .string("top_k_acc")])),
            ("lr_scheduler", .object(JSONObject([("type", .string("StepLR")), ("args", .object(JSONObject([("step_size", .int(50)), ("gamma", .double(0.1))])))]))),
            ("trainer", .object(JSONObject([
                ("epochs", .int(100)), ("save_dir", .string("saved/")), ("save_period", .int(1)), ("verbosity", .int(2)),
                ("monitor", .string("min val_loss")), ("early_stop", .int(10)), ("tensorboard", .bool(true)),
            ]))),
        ])
    }

    static let ferryignore = """
    # Paths ferry launch does not ship (gitignore syntax).
    saved/
    .git/
    __pycache__/
    *.pyc
    .DS_Store

    """

    static let dataReadme = """
    # data/

    Files here travel with the job. The configs read Fashion-MNIST from Debian's
    `dataset-fashion-mnist` package (`/usr/share/datasets/fashion-mnist`); to use your own copy of
    MNIST-layout IDX files (`train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`,
    `t10k-images-idx3-ubyte.gz`, `t10k-labels-idx1-ubyte.gz`), put them here and set
    `"data_dir": "data/"` in the config.

    """

    static func readme(name: String) -> String {
        """
        # \(name)

        A ferry training job in pytorch-template's layout.

        ```sh
        ferry train --check config/config.json     # validate only (exit 2 with every problem named by its JSON path)
        ferry train config/config.json             # train here; results in saved/\(name)/RUNID/
        ferry train config/config.json --lr 3e-4 --set trainer.epochs=10
        ferry train --resume saved/\(name)/RUNID/checkpoints/last   # continue a stopped run in its folder
        ferry test --resume saved/\(name)/RUNID/checkpoints/best    # loss and metrics on the test split
        ferry launch ...                           # the same job on a GPU host
        ```

        `config/config.json` declares the model as a layer list (`arch.type` `Sequential`), so you
        change the network by editing JSON; `ferry train --check` follows the shapes through it and
        names the layer that does not fit. `config/mnist_lenet.json` is pytorch-template's own example.

        A run folder holds `config.json` (as resolved), `run.json`, `train.log`, `metrics.jsonl`,
        `curves.svg`, TensorBoard scalars (`events.out.tfevents.*`) and `checkpoints/{best,last,epoch-N}/`,
        each with `model.safetensors` (PyTorch key names: `model.load_state_dict(safetensors.torch.load_file(path))`)
        and `train_state.safetensors`.

        """
    }
}
