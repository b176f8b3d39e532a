import Foundation
import OpenAPIRuntime

/// RFC 3339 dates with or without fractional seconds.
///
/// The OpenAPI runtime's default transcoder takes `2026-11-29T12:00:00Z` but refuses
/// `2026-11-29T12:00:00.250Z`, which JavaScript's `toISOString()` and most clients
/// send. Pigeon reads both and writes milliseconds, since it stores them.
struct RFC3339DateTranscoder: DateTranscoder {
    func encode(_ date: Date) throws -> String {
        Date.ISO8601FormatStyle(includingFractionalSeconds: true).format(date)
    }

    func decode(_ text: String) throws -> Date {
        if let date = try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text) { return date }
        if let date = try? Date.ISO8601FormatStyle().parse(text) { return date }
        if let date = Self.decodeLargeOffset(text) { return date }
        throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "'\(text)' is not an RFC 3339 date-time"))
    }

    /// RFC 3339 allows offsets up to ±23:59; Foundation's parser stops at ±18:00. Reads
    /// the local time as UTC and takes the offset off by hand.
    static func decodeLargeOffset(_ text: String) -> Date? {
        let utf8 = Array(text.utf8)
        guard utf8.count > 6 else { return nil }
        let tail = utf8[(utf8.count - 6)...]
        let sign = tail[tail.startIndex]
        guard sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-"), tail[tail.startIndex + 3] == UInt8(ascii: ":"),
            let hours = Int(String(decoding: tail[(tail.startIndex + 1)..<(tail.startIndex + 3)], as: UTF8.self)),
            let minutes = Int(String(decoding: tail[(tail.startIndex + 4)...], as: UTF8.self)),
            (0...23).contains(hours), (0...59).contains(minutes)
        else { return nil }
        let local = String(decoding: utf8[..<(utf8.count - 6)], as: UTF8.self) + "Z"
        let parsed =
            (try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(local))
            ?? (try? Date.ISO8601FormatStyle().parse(local))
        guard let parsed else { return nil }
        let offset = TimeInterval((hours * 60 + minutes) * 60) * (sign == UInt8(ascii: "+") ? 1 : -1)
        return parsed.addingTimeInterval(-offset)
    }
}
