import Foundation
import Testing
import Data

/// The committed fixtures (see scripts/fixtures/data_fixtures.py).
enum Fixtures {
    static func url(_ name: String) throws -> URL {
        let dir = try #require(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        return dir.appendingPathComponent(name)
    }

    static func json(_ name: String) throws -> [String: Any] {
        let data = try Data(contentsOf: url(name))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }
}

/// A fresh directory under the system's temporary directory; removed by `cleanUp`.
struct TemporaryDirectory {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-data-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func file(_ name: String, _ contents: Data) throws -> URL {
        let u = url.appendingPathComponent(name)
        try contents.write(to: u)
        return u
    }

    func cleanUp() { try? FileManager.default.removeItem(at: url) }
}

/// The `DataError` that `body` throws, or nil (recording an issue) when it throws none or another error.
func dataError<T>(_ body: () throws -> T, sourceLocation: SourceLocation = #_sourceLocation) -> DataError? {
    do {
        _ = try body()
        Issue.record("expected a DataError, nothing was thrown", sourceLocation: sourceLocation)
    } catch let error as DataError {
        return error
    } catch {
        Issue.record("expected a DataError, got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

var isCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }

/// An IDX file's bytes, built by hand (not through `IDX.encode`) so the reader is checked against the format.
func idxBytes(magic: [UInt8], dims: [UInt32], payload: [UInt8]) -> Data {
    var d = Data(magic)
    for v in dims { d.append(contentsOf: [UInt8(v >> 24), UInt8((v >> 16) & 0xff), UInt8((v >> 8) & 0xff), UInt8(v & 0xff)]) }
    d.append(contentsOf: payload)
    return d
}
