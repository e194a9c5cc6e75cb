/// Errors a user can act on: files, libraries, devices. Shape misuse inside an expression is a
/// programmer error and stops the program with a message naming the shapes (see `shapeError`).
public enum TensorError: Error, CustomStringConvertible, Equatable {
    case libraryUnavailable(name: String, tried: [String], hint: String)
    case deviceUnavailable(device: String, hint: String)
    case invalidFile(path: String, reason: String)
    case invalidArgument(String)
    /// A CUDA allocation failed even after the caching allocator freed its cache.
    case cudaOutOfMemory(device: String, requested: Int, free: Int, cached: Int)

    public var description: String {
        switch self {
        case .libraryUnavailable(let name, let tried, let hint):
            return "\(name) could not be loaded (\(tried.joined(separator: "; "))) — \(hint)"
        case .deviceUnavailable(let device, let hint):
            return "device \(device) is not available — \(hint)"
        case .invalidFile(let path, let reason):
            return "\(path): \(reason)"
        case .invalidArgument(let message):
            return message
        case .cudaOutOfMemory(let device, let requested, let free, let cached):
            return "CUDA out of memory on \(device): tried to allocate \(requested) bytes; \(free) bytes free, \(cached) bytes were cached by ferry's allocator (freed and retried once) — use a smaller batch or call CUDAMemory.emptyCache()"
        }
    }
}
