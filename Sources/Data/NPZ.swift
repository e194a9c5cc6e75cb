import Foundation
import TensorCore

/// numpy's `.npz`: a zip archive of `.npy` files, as `np.savez` (stored) and `np.savez_compressed`
/// (deflated) write it. Keys are the entry names without `.npy`, as `np.load` gives them.
public enum NPZ {
    /// Reads every array of an `.npz` file.
    public static func read(_ url: URL) throws -> [String: Tensor] {
        try decode(readWholeFile(url), name: url.path)
    }

    /// Decodes `.npz` bytes; `name` labels errors (usually the file path).
    public static func decode(_ data: Data, name: String = "<npz>") throws -> [String: Tensor] {
        var arrays: [String: Tensor] = [:]
        for entry in try ZipArchive.read(data, name: name) {
            let key = entry.name.hasSuffix(".npy") ? String(entry.name.dropLast(4)) : entry.name
            do {
                arrays[key] = try NPY.decode(entry.contents, name: "\(name): \(entry.name)")
            } catch let TensorError.invalidFile(_, reason) {
                throw DataError.invalidContent(path: name, reason: "entry \(entry.name): \(reason)")
            }
        }
        return arrays
    }

    /// Writes `arrays` as an `.npz` file (atomically), deflated when `compressed`
    /// (`np.savez_compressed`) or stored (`np.savez`). Entries are written in key order.
    public static func write(_ arrays: [String: Tensor], to url: URL, compressed: Bool = false) throws {
        let data = try encode(arrays, compressed: compressed)
        do { try data.write(to: url, options: .atomic) } catch {
            throw DataError.unwritable(path: url.path, reason: error.localizedDescription)
        }
    }

    /// The `.npz` bytes for `arrays`.
    public static func encode(_ arrays: [String: Tensor], compressed: Bool = false) throws -> Data {
        try encode(arrays, compressed: compressed, zip64Threshold: 0xFFFF_FFFF)
    }

    static func encode(_ arrays: [String: Tensor], compressed: Bool, zip64Threshold: Int) throws -> Data {
        let entries = arrays.sorted { $0.key < $1.key }.map { (name: $0.key + ".npy", contents: NPY.encode($0.value)) }
        return try ZipArchive.write(entries, deflate: compressed, name: "<npz>", zip64Threshold: zip64Threshold)
    }
}
