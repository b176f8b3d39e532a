import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// Makes the server answer what `openapi.yaml` says for requests the generated
/// handlers would otherwise treat loosely:
///
/// - a method the spec does not list for a known path: 405 with `Allow` (RFC 9110
///   section 15.5.6), not 404;
/// - `Idempotency-Key` outside 1-255 characters: 400;
/// - `null` as the value of any field of a JSON body: 422 naming the field (the
///   decoder would read it as "absent", which the spec does not allow).
struct ConformanceMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if let allowed = Self.allowedMethods(request.uri.path), !allowed.contains(request.method) {
            let allow = allowed.map(\.rawValue).joined(separator: ", ")
            throw APIProblem(
                status: .methodNotAllowed,
                kind: "method-not-allowed",
                title: "Method Not Allowed",
                detail: "\(request.uri.path) allows \(allow).",
                headers: [.allow: allow]
            )
        }
        if let key = request.headers[.idempotencyKey], !(1...255).contains(key.count) {
            throw APIProblem(
                status: .badRequest,
                kind: "bad-header",
                title: "Bad Request",
                detail: "Idempotency-Key must have 1 to 255 characters."
            )
        }
        if request.method == .post || request.method == .patch,
            request.headers[.contentType]?.lowercased().hasPrefix("application/json") == true
        {
            var request = request
            // RequestLimitMiddleware (outside this one) already bounded and collected the body.
            let body = try await request.collectBody(upTo: .max)
            if let field = Self.firstNullField(body) {
                throw APIProblem(
                    status: .unprocessableContent,
                    kind: "validation",
                    title: "Validation failed",
                    detail: "1 field is invalid.",
                    errors: [.init(field: field, code: "null", message: "null is not a value here; leave the field out instead")]
                )
            }
            return try await next(request, context)
        }
        return try await next(request, context)
    }

    /// The methods of the spec's path that matches, or nil for a path it does not have.
    static func allowedMethods(_ path: String) -> [HTTPRequest.Method]? {
        let segments = path.split(separator: "/").map(String.init)
        for route in SpecRoutes.all where route.segments.count == segments.count {
            let matches = zip(route.segments, segments).allSatisfy { template, actual in template == "{id}" || template == actual }
            if matches { return route.methods }
        }
        return nil
    }

    /// The JSON path of the first `null` in the body, if it is JSON and has one.
    static func firstNullField(_ body: ByteBuffer) -> String? {
        guard containsNullLiteral(body),
            let object = try? JSONSerialization.jsonObject(with: Data(body.readableBytesView), options: [.fragmentsAllowed])
        else { return nil }
        return nullPath(object, prefix: "")
    }

    /// Whether the bytes `null` occur anywhere (in a string too: then the parse
    /// that follows finds no null value). A plain loop over the bytes: this runs for
    /// every JSON request, and the generic `firstRange(of:)` cost a tenth of the CPU
    /// of the accept path in a profile.
    static func containsNullLiteral(_ body: ByteBuffer) -> Bool {
        body.withUnsafeReadableBytes { bytes in
            guard bytes.count >= 4 else { return false }
            var index = 0
            let last = bytes.count - 4
            while index <= last {
                if bytes[index] == UInt8(ascii: "n"), bytes[index + 1] == UInt8(ascii: "u"),
                    bytes[index + 2] == UInt8(ascii: "l"), bytes[index + 3] == UInt8(ascii: "l")
                {
                    return true
                }
                index += 1
            }
            return false
        }
    }

    static func nullPath(_ value: Any, prefix: String) -> String? {
        switch value {
        case is NSNull:
            return prefix
        case let dictionary as [String: Any]:
            for key in dictionary.keys.sorted() {
                if let dictionaryValue = dictionary[key],
                    let found = nullPath(dictionaryValue, prefix: prefix.isEmpty ? key : "\(prefix).\(key)")
                {
                    return found
                }
            }
            return nil
        case let array as [Any]:
            for (index, element) in array.enumerated() {
                if let found = nullPath(element, prefix: "\(prefix)[\(index)]") { return found }
            }
            return nil
        default:
            return nil
        }
    }
}

/// The spec's paths (templates with `{id}`) and their methods.
enum SpecRoutes {
    static let all: [(segments: [String], methods: [HTTPRequest.Method])] = [
        ("/healthz", [.get]), ("/readyz", [.get]), ("/metrics", [.get]),
        ("/v1/emails", [.get, .post]), ("/v1/emails/batch", [.post]), ("/v1/emails/{id}", [.get]),
        ("/v1/emails/{id}/cancel", [.post]), ("/v1/events", [.get]), ("/v1/webhooks", [.get, .post]),
        ("/v1/webhooks/{id}", [.get, .patch, .delete]), ("/v1/webhooks/{id}/rotate-secret", [.post]),
        ("/v1/webhooks/{id}/deliveries", [.get]),
    ].map { (path: String, methods: [HTTPRequest.Method]) in (path.split(separator: "/").map(String.init), methods) }
}

extension HTTPField.Name {
    /// `Idempotency-Key`.
    static let idempotencyKey = HTTPField.Name("Idempotency-Key")!
}
