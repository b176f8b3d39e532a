import Foundation
import HTTPTypes
import Hummingbird

/// An RFC 9457 problem document, the body of every HTTP error.
public struct ProblemDocument: Codable, Sendable, Equatable {
    /// One invalid field.
    public struct FieldProblem: Codable, Sendable, Equatable {
        /// The JSON path of the field, e.g. `to[0]`.
        public var field: String
        /// A stable code, e.g. `invalid_address`.
        public var code: String
        /// Human text.
        public var message: String
    }

    /// A URI naming the kind of problem.
    public var type: String
    /// A short summary of the kind.
    public var title: String
    /// The HTTP status.
    public var status: Int
    /// What went wrong with this request.
    public var detail: String?
    /// For validation problems: each bad field.
    public var errors: [FieldProblem]?
}

/// An error that knows its problem+json response (as Hummingbird's `HTTPResponseError`).
public struct APIProblem: Error, HTTPResponseError, Sendable {
    /// The HTTP status.
    public var status: HTTPResponse.Status
    /// The problem's kind: the last part of its type URI, e.g. `validation`.
    public var kind: String
    /// The title.
    public var title: String
    /// The detail.
    public var detail: String?
    /// Field errors.
    public var errors: [ProblemDocument.FieldProblem]?
    /// Extra response headers (e.g. `WWW-Authenticate`, `Retry-After`).
    public var headers: HTTPFields

    /// Creates a problem.
    public init(
        status: HTTPResponse.Status,
        kind: String,
        title: String,
        detail: String? = nil,
        errors: [ProblemDocument.FieldProblem]? = nil,
        headers: HTTPFields = [:]
    ) {
        self.status = status
        self.kind = kind
        self.title = title
        self.detail = detail
        self.errors = errors
        self.headers = headers
    }

    /// The document.
    public var document: ProblemDocument {
        ProblemDocument(
            type: Self.typeURI(kind),
            title: title,
            status: Int(status.code),
            detail: detail,
            errors: errors
        )
    }

    /// The type URI for a kind.
    static func typeURI(_ kind: String) -> String { "https://pigeon.dev/problems/\(kind)" }

    /// Renders the problem+json response.
    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var fields = headers
        fields[.contentType] = "application/problem+json"
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        let data = (try? encoder.encode(document)) ?? Data("{}".utf8)
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// 415 for a body that is not JSON.
    static let unsupportedMediaType = APIProblem(
        status: .unsupportedMediaType,
        kind: "unsupported-media-type",
        title: "Unsupported Media Type",
        detail: "Send the body as application/json."
    )

    /// 401, with `WWW-Authenticate: Bearer`.
    static func unauthorized(_ detail: String) -> APIProblem {
        APIProblem(
            status: .unauthorized,
            kind: "unauthorized",
            title: "Unauthorized",
            detail: detail,
            headers: [.wwwAuthenticate: "Bearer realm=\"pigeon\""]
        )
    }
}
