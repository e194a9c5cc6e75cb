import Foundation

/// JSON as ferry writes it everywhere (registry, job folders, agent protocol, `--json` output):
/// snake_case keys from Swift's camelCase names, sorted, dates as seconds since 1970 (ISO 8601 with
/// `isoDates`, for what people read: `--json` output, host up's state).
/// Dictionary keys (environment names, metric names) are data and pass through unchanged.
/// A property with an initialism is spelled so the round trip holds (`bootId`, not `bootId`:
/// "boot_id" reads back as "bootId").
public enum JSONCoding {
    public static func encoder(pretty: Bool = false, isoDates: Bool = false) -> JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        e.dateEncodingStrategy = isoDates ? .iso8601 : .secondsSince1970
        e.keyEncodingStrategy = .convertToSnakeCase
        return e
    }

    public static func decoder(isoDates: Bool = false) -> JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = isoDates ? .iso8601 : .secondsSince1970
        d.keyDecodingStrategy = .convertFromSnakeCase
        return d
    }

    /// `value` as text (pretty: indented, for people).
    public static func string<T: Encodable>(_ value: T, pretty: Bool = true, isoDates: Bool = false) throws -> String {
        String(decoding: try encoder(pretty: pretty, isoDates: isoDates).encode(value), as: UTF8.self)
    }

    /// Why a document did not decode, by coding path ("missing id at jobs.0").
    public static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, let ctx):
            return "missing \(key.stringValue) at \(ctx.codingPath.map(\.stringValue).joined(separator: "."))"
        case DecodingError.typeMismatch(_, let ctx), DecodingError.valueNotFound(_, let ctx), DecodingError.dataCorrupted(let ctx):
            return "\(ctx.debugDescription) at \(ctx.codingPath.map(\.stringValue).joined(separator: "."))"
        default: return "\(error)"
        }
    }
}
