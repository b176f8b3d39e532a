import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import OpenAPIRuntime
import Outbox
import Synchronization

/// Turns every error into an `application/problem+json` response (RFC 9457).
///
/// The OpenAPI layer wraps request-decoding failures in `ServerError`; this maps a
/// body that is not JSON to 400 and a JSON body of the wrong shape (a missing `to`,
/// a number where a string belongs) to 422 naming the field. Anything unexpected is a
/// 500 whose detail says nothing about the internals (the log has the error).
struct ProblemMiddleware<Context: RequestContext>: RouterMiddleware {
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let problem as APIProblem {
            return try problem.response(from: request, context: context)
        } catch let error as ServerError {
            return try map(error).response(from: request, context: context)
        } catch let error as any HTTPResponseError {
            let problem = APIProblem(
                status: error.status,
                kind: "http-\(error.status.code)",
                title: error.status.reasonPhrase
            )
            return try problem.response(from: request, context: context)
        } catch {
            logger.error("unhandled error", metadata: ["error": "\(error)", "path": "\(request.uri.path)"])
            return try APIProblem(status: .internalServerError, kind: "internal", title: "Internal Server Error")
                .response(from: request, context: context)
        }
    }

    func map(_ error: ServerError) -> APIProblem {
        if let problem = error.underlyingError as? APIProblem { return problem }
        if error.underlyingError is DecodingError, [.get, .delete, .head].contains(error.request.method) {
            // No body: the query or the path did not decode (a word where a number belongs).
            return APIProblem(
                status: .badRequest,
                kind: "bad-query",
                title: "Bad Request",
                detail: "A query parameter is not valid (see openapi.yaml for its type and range)."
            )
        }
        if let decoding = error.underlyingError as? DecodingError {
            return Self.problem(for: decoding)
        }
        if error.httpStatus == .internalServerError {
            logger.error("unhandled error", metadata: ["error": "\(error.underlyingError)", "operation": "\(error.operationID)"])
            return APIProblem(status: .internalServerError, kind: "internal", title: "Internal Server Error")
        }
        return APIProblem(
            status: error.httpStatus,
            kind: "http-\(error.httpStatus.code)",
            title: error.httpStatus.reasonPhrase,
            detail: error.causeDescription
        )
    }

    /// Maps a JSON decoding failure: not JSON at all -> 400; wrong shape -> 422 with the field.
    static func problem(for error: DecodingError) -> APIProblem {
        func path(_ codingPath: [any CodingKey], _ last: (any CodingKey)? = nil) -> String {
            var text = ""
            for key in codingPath + (last.map { [$0] } ?? []) {
                if let index = key.intValue {
                    text += "[\(index)]"
                } else {
                    text += text.isEmpty ? key.stringValue : ".\(key.stringValue)"
                }
            }
            return text
        }
        let field: ProblemDocument.FieldProblem
        switch error {
        case .dataCorrupted(let context) where context.codingPath.isEmpty:
            return APIProblem(status: .badRequest, kind: "malformed-json", title: "Malformed JSON", detail: "The request body is not valid JSON.")
        case .dataCorrupted(let context):
            field = .init(field: path(context.codingPath), code: "invalid", message: "the value is not valid here")
        case .keyNotFound(let key, let context):
            field = .init(field: path(context.codingPath, key), code: "required", message: "this field is required")
        case .valueNotFound(_, let context):
            field = .init(field: path(context.codingPath), code: "required", message: "this field must not be null")
        case .typeMismatch(let type, let context):
            field = .init(field: path(context.codingPath), code: "wrong_type", message: "expected \(Self.jsonTypeName(type))")
        @unknown default:
            return APIProblem(status: .badRequest, kind: "malformed-json", title: "Malformed JSON", detail: "The request body could not be read.")
        }
        return APIProblem(
            status: .unprocessableContent,
            kind: "validation",
            title: "Validation failed",
            detail: "1 field is invalid.",
            errors: [field]
        )
    }

    static func jsonTypeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Int.Type, is Double.Type: return "a number"
        case is Bool.Type: return "a boolean"
        default:
            let name = "\(type)"
            if name.hasPrefix("Array") { return "an array" }
            if name.hasPrefix("Dictionary") { return "an object" }
            return "an object"
        }
    }
}

/// Refuses bodies larger than the limit with 413, before any of it is decoded.
struct RequestLimitMiddleware<Context: RequestContext>: RouterMiddleware {
    let maxBytes: Int

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var request = request
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > maxBytes {
            throw Self.tooLarge(maxBytes)
        }
        if request.head.method == .post || request.head.method == .put || request.head.method == .patch {
            do {
                _ = try await request.collectBody(upTo: maxBytes)
            } catch is NIOTooManyBytesError {
                throw Self.tooLarge(maxBytes)
            }
        }
        return try await next(request, context)
    }

    static func tooLarge(_ maxBytes: Int) -> APIProblem {
        APIProblem(
            status: .contentTooLarge,
            kind: "too-large",
            title: "Content Too Large",
            detail: "The request body is larger than \(maxBytes) bytes."
        )
    }
}

/// Removes the `Accept` header before the generated handlers see it: every operation
/// answers JSON or problem+json, and a client that asks only for `application/json`
/// must still get its 422 problem document rather than a 406.
struct IgnoreAcceptMiddleware: ServerMiddleware {
    func intercept(
        _ request: HTTPRequest,
        body: HTTPBody?,
        metadata: ServerRequestMetadata,
        operationID: String,
        next: @Sendable (HTTPRequest, HTTPBody?, ServerRequestMetadata) async throws -> (HTTPResponse, HTTPBody?)
    ) async throws -> (HTTPResponse, HTTPBody?) {
        var request = request
        request.headerFields[.accept] = nil
        return try await next(request, body, metadata)
    }
}

/// The identity of the API key of the request being handled (a hex SHA-256 digest,
/// never the key), set by `APIKeyMiddleware` for the handlers below it.
enum APIKeyIdentity {
    @TaskLocal static var current: String?
    /// The key's scope and sender policy.
    @TaskLocal static var principal: APIPrincipal?
}

/// One log line per request (`request` at info): method, path (without the query),
/// status, duration, the key's id (never the key) and a request id.
///
/// The request id is the client's `X-Request-Id` when it is 1-128 characters of
/// `A-Z a-z 0-9 - _ . : + / =`, otherwise a new `req_<ULID>`; it is echoed in the
/// response's `X-Request-Id` and is the `request_id` of the line.
struct RequestLogMiddleware<Context: RequestContext>: RouterMiddleware {
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        let requestID = request.headers[.requestID].flatMap(Self.sanitized) ?? "req_" + EmailID.ulid()
        let info = RequestLog()
        func line(_ status: Int) {
            let elapsed = start.duration(to: .now).components
            let millis = Double(elapsed.seconds) * 1000 + Double(elapsed.attoseconds) / 1e15
            var metadata: Logger.Metadata = [
                "request_id": "\(requestID)",
                "method": "\(request.method.rawValue)",
                "path": "\(request.uri.path)",
                "status": "\(status)",
                "duration_ms": "\(String(format: "%.1f", millis))",
            ]
            if let keyID = info.keyID { metadata["key_id"] = "\(keyID)" }
            logger.info("request", metadata: metadata)
        }
        do {
            var response = try await RequestLog.$current.withValue(info) {
                try await next(request, context)
            }
            response.headers[.requestID] = requestID
            line(Int(response.status.code))
            return response
        } catch {
            line((error as? any HTTPResponseError).map { Int($0.status.code) } ?? 500)
            throw error
        }
    }

    static func sanitized(_ value: String) -> String? {
        guard (1...128).contains(value.utf8.count) else { return nil }
        let allowed = value.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                true
            case UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: ":"), UInt8(ascii: "+"), UInt8(ascii: "/"),
                UInt8(ascii: "="):
                true
            default: false
            }
        }
        return allowed ? value : nil
    }
}

/// What inner middleware tells the request log (the key's id).
final class RequestLog: Sendable {
    @TaskLocal static var current: RequestLog?
    private let state = Mutex<String?>(nil)

    var keyID: String? { state.withLock { $0 } }

    func setKeyID(_ id: String) { state.withLock { $0 = id } }
}

extension HTTPField.Name {
    /// `X-Request-Id`.
    static let requestID = HTTPField.Name("X-Request-Id")!
}
