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
        throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "'\(text)' is not an RFC 3339 date-time"))
    }
}
