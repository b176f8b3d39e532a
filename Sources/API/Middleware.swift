import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import OpenAPIRuntime

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

/// Requires `Authorization: Bearer <key>` on every `/v1` route.
///
/// Keys are compared as SHA-256 digests with a constant-time comparison over every
/// configured key, so neither the position of the first differing byte nor the
/// length of a key leaks through timing.
struct APIKeyMiddleware<Context: RequestContext>: RouterMiddleware {
    let keyDigests: [SHA256Digest]

    init(keys: [String]) {
        keyDigests = keys.map { SHA256.hash(data: Data($0.utf8)) }
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard request.uri.path.hasPrefix("/v1/") || request.uri.path == "/v1" else {
            return try await next(request, context)
        }
        guard let header = request.headers[.authorization] else {
            throw APIProblem.unauthorized("Send the API key as `Authorization: Bearer <key>`.")
        }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else {
            throw APIProblem.unauthorized("The Authorization header must use the Bearer scheme.")
        }
        let presented = SHA256.hash(data: Data(parts[1].trimmingCharacters(in: .whitespaces).utf8))
        guard Self.matchesAny(presented, keyDigests) else {
            throw APIProblem.unauthorized("The API key is not valid.")
        }
        let identity = presented.map { String(format: "%02x", $0) }.joined()
        return try await APIKeyIdentity.$current.withValue(identity) {
            try await next(request, context)
        }
    }

    /// Constant-time: always compares against every key, every byte.
    static func matchesAny(_ digest: SHA256Digest, _ keys: [SHA256Digest]) -> Bool {
        let presented = Array(digest)
        var found: UInt8 = 0
        for key in keys {
            var difference: UInt8 = 0
            for (left, right) in zip(presented, Array(key)) { difference |= left ^ right }
            found |= difference == 0 ? 1 : 0
        }
        return found == 1
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
}
