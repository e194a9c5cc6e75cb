import CCurl
import Foundation

/// A minimal blocking HTTP GET over libcurl: enough to read a local agent's JSON API (ngrok's
/// `http://127.0.0.1:4040/api/tunnels`).
public enum HTTPClient {
    private static let globalInit: Bool = { curl_global_init(Int(CURL_GLOBAL_DEFAULT)) == CURLE_OK }()

    /// libcurl's version string, e.g. "7.88.1".
    public static var libraryVersion: String {
        guard let info = curl_version_info(CURLVERSION_TENTH), let v = info.pointee.version else { return "unknown" }
        return String(cString: v)
    }

    /// Fetches `url`; returns the status code and body. Throws when the transfer itself fails.
    public static func get(_ url: String, timeoutSeconds: Int = 10) throws -> (status: Int, body: Data) {
        _ = globalInit
        guard let curl = curl_easy_init() else { throw TunnelError.httpFailed(url: url, reason: "curl_easy_init failed") }
        defer { curl_easy_cleanup(curl) }
        final class Sink { var data = Data() }
        let sink = Sink()
        let unmanaged = Unmanaged.passRetained(sink)
        defer { unmanaged.release() }
        _ = ferry_curl_setopt_string(curl, CURLOPT_URL, url)
        _ = ferry_curl_setopt_long(curl, CURLOPT_TIMEOUT, timeoutSeconds)
        _ = ferry_curl_setopt_long(curl, CURLOPT_NOSIGNAL, 1)
        _ = ferry_curl_setopt_long(curl, CURLOPT_FOLLOWLOCATION, 0)
        _ = ferry_curl_setopt_long(curl, CURLOPT_CONNECTTIMEOUT, min(timeoutSeconds, 5))
        // A local agent's API never goes through an http_proxy from the environment.
        _ = ferry_curl_setopt_string(curl, CURLOPT_NOPROXY, "*")
        _ = ferry_curl_setopt_pointer(curl, CURLOPT_WRITEDATA, unmanaged.toOpaque())
        _ = ferry_curl_setopt_write_function(curl) { ptr, size, count, user in
            let n = size * count
            guard let ptr, let user else { return 0 }
            Unmanaged<Sink>.fromOpaque(user).takeUnretainedValue().data.append(UnsafeRawPointer(ptr).assumingMemoryBound(to: UInt8.self), count: n)
            return n
        }
        var errorBuffer = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        let code = errorBuffer.withUnsafeMutableBufferPointer { buf -> CURLcode in
            _ = ferry_curl_setopt_pointer(curl, CURLOPT_ERRORBUFFER, buf.baseAddress)
            return curl_easy_perform(curl)
        }
        guard code == CURLE_OK else {
            let detail = String(decoding: errorBuffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw TunnelError.httpFailed(url: url, reason: detail.isEmpty ? String(cString: curl_easy_strerror(code)) : detail)
        }
        var status = 0
        _ = ferry_curl_getinfo_long(curl, CURLINFO_RESPONSE_CODE, &status)
        return (status, sink.data)
    }
}
