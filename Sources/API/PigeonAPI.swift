import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Mail
import OpenAPIHummingbird
import OpenAPIRuntime
import Outbox

/// What the HTTP layer needs to know.
public struct APIConfiguration: Sendable {
    /// Accepted bearer keys.
    public var apiKeys: [String]
    /// Largest request body accepted (413 above).
    public var maxRequestBytes: Int
    /// Validates and renders emails.
    public var composer: MessageComposer
    /// How long an Idempotency-Key is remembered.
    public var idempotencyTTL: Duration
    /// Keys made with `pigeon keys create` (besides `apiKeys`).
    public var keyStore: (any APIKeyStore)?
    /// The per-key rate limit, if any.
    public var rateLimit: RateLimit?
    /// Seconds on a monotonic clock, for the rate limit's buckets; nil is the process's
    /// monotonic clock. Tests set a clock that moves only when they move it.
    public var rateLimitClock: (@Sendable () -> Double)?
    /// Told how many emails each accepted request stored (for the metrics).
    public var onAccepted: @Sendable (Int) -> Void = { _ in }
    /// `/readyz` and `/metrics`.
    public var operations: OperationsEndpoints?

    /// Creates a configuration.
    public init(
        apiKeys: [String],
        maxRequestBytes: Int = 36_000_000,
        composer: MessageComposer = MessageComposer(),
        idempotencyTTL: Duration = .seconds(86_400)
    ) {
        self.apiKeys = apiKeys
        self.maxRequestBytes = maxRequestBytes
        self.composer = composer
        self.idempotencyTTL = idempotencyTTL
    }
}

/// Registers Pigeon's routes (generated from `openapi.yaml`) and its middleware on a router.
///
/// Order: the request log outermost (it sees every final status), then problem+json
/// errors, the API key check (scope, rate limit) for `/v1`, and the body size limit,
/// then the generated handlers.
public func registerRoutes<Context: RequestContext>(
    on router: Router<Context>,
    outbox: any OutboxStore,
    configuration: APIConfiguration,
    logger: Logger,
    now: @escaping @Sendable () -> Date = { Date() },
    webhooks: WebhookManagement? = nil
) throws {
    router.add(middleware: RequestLogMiddleware(logger: logger))
    router.add(middleware: ProblemMiddleware(logger: logger))
    // One limiter for the middleware (a token per request) and the batch handler (a token per further email).
    let limiter = configuration.rateLimit.map {
        RateLimiter(limit: $0, clock: configuration.rateLimitClock ?? RateLimiter.monotonicSeconds)
    }
    router.add(
        middleware: APIKeyMiddleware(
            keys: configuration.apiKeys,
            store: configuration.keyStore,
            limiter: limiter,
            logger: logger
        )
    )
    router.add(middleware: RequestLimitMiddleware(maxBytes: configuration.maxRequestBytes))
    router.add(middleware: ConformanceMiddleware())
    var handler = PigeonAPI(outbox: outbox, composer: configuration.composer, logger: logger, now: now)
    handler.webhooks = webhooks
    handler.onAccepted = configuration.onAccepted
    handler.operations = configuration.operations
    handler.rateLimiter = limiter
    let (seconds, attoseconds) = configuration.idempotencyTTL.components
    handler.idempotencyTTL = TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18
    try handler.registerHandlers(
        on: router,
        configuration: Configuration(dateTranscoder: RFC3339DateTranscoder()),
        middlewares: [IgnoreAcceptMiddleware()]
    )
}

/// The operations of `openapi.yaml`.
struct PigeonAPI: APIProtocol {
    let outbox: any OutboxStore
    let composer: MessageComposer
    let logger: Logger
    let now: @Sendable () -> Date
    var idempotencyTTL: TimeInterval = 86_400
    /// Counts accepted emails for the metrics.
    var onAccepted: @Sendable (Int) -> Void = { _ in }
    /// `/readyz` and `/metrics` (`PigeonAPI+Operations.swift`); nil answers ready and no metrics.
    var operations: OperationsEndpoints?
    /// Webhook endpoints and the event feed (`PigeonAPI+Webhooks.swift`); nil when not set up.
    var webhooks: WebhookManagement?
    /// The per-key limiter the API key middleware also takes from; nil without `PIGEON_RATE_LIMIT`.
    var rateLimiter: RateLimiter?

    func getHealth(_ input: Operations.GetHealth.Input) async throws -> Operations.GetHealth.Output {
        .ok(.init(body: .json(.init(status: .ok))))
    }

    func sendEmail(_ input: Operations.SendEmail.Input) async throws -> Operations.SendEmail.Output {
        guard case .json(let body) = input.body else { throw APIProblem.unsupportedMediaType }
        let email: NewEmail
        switch prepare(body, fieldPrefix: "") {
        case .success(let prepared):
            email = prepared
            try checkSenderPolicy([email], batch: false)
        case .failure(let error):
            let problem = Self.problem(for: error)
            if error.isTooLarge { return .contentTooLarge(.init(body: .applicationProblemJson(problem))) }
            return .unprocessableContent(.init(body: .applicationProblemJson(problem)))
        }
        let idempotency = idempotencyRequest(key: input.headers.idempotencyKey, body: body, namespace: "email")
        do {
            let reply = try await outbox.enqueue([email], idempotency: idempotency)
            guard let result = reply.results.first else { throw OutboxError.conflict("nothing stored") }
            if !reply.replayed { onAccepted(1) }
            return .accepted(.init(body: .json(.init(id: result.id, status: Self.status(result.status)))))
        } catch OutboxError.idempotencyMismatch {
            return .conflict(.init(body: .applicationProblemJson(Self.idempotencyMismatchProblem)))
        } catch {
            return .serviceUnavailable(unavailable(error))
        }
    }

    func sendEmailBatch(_ input: Operations.SendEmailBatch.Input) async throws -> Operations.SendEmailBatch.Output {
        guard case .json(let body) = input.body else { throw APIProblem.unsupportedMediaType }
        guard !body.emails.isEmpty, body.emails.count <= 100 else {
            let problem = Components.Schemas.Problem(
                _type: APIProblem.typeURI("validation"),
                title: "Validation failed",
                status: 422,
                detail: "A batch holds 1 to 100 emails.",
                errors: [.init(field: "emails", code: "count", message: "a batch holds 1 to 100 emails")]
            )
            return .unprocessableContent(.init(body: .applicationProblemJson(problem)))
        }
        var emails: [NewEmail] = []
        var errors: [FieldError] = []
        for (index, request) in body.emails.enumerated() {
            switch prepare(request, fieldPrefix: "emails[\(index)].") {
            case .success(let email): emails.append(email)
            case .failure(let error):
                errors += error.errors
            }
        }
        if !errors.isEmpty {
            let error = ValidationError(errors: errors)
            let problem = Self.problem(for: error)
            if error.isTooLarge { return .contentTooLarge(.init(body: .applicationProblemJson(problem))) }
            return .unprocessableContent(.init(body: .applicationProblemJson(problem)))
        }
        try checkSenderPolicy(emails, batch: true)
        let idempotency = idempotencyRequest(key: input.headers.idempotencyKey, body: body, namespace: "batch")
        if let refusal = chargeBatch(count: emails.count) {
            // A retry of a batch already stored costs nothing more: answer it as the
            // first request was answered rather than refuse it.
            guard let idempotency else { return refusal }
            do {
                guard let reply = try await outbox.replay(idempotency) else { return refusal }
                return Self.acceptedBatch(reply)
            } catch OutboxError.idempotencyMismatch {
                return .conflict(.init(body: .applicationProblemJson(Self.idempotencyMismatchProblem)))
            } catch {
                return refusal
            }
        }
        do {
            let reply = try await outbox.enqueue(emails, idempotency: idempotency)
            if reply.replayed { refundBatch(count: emails.count) } else { onAccepted(reply.results.count) }
            return Self.acceptedBatch(reply)
        } catch OutboxError.idempotencyMismatch {
            refundBatch(count: emails.count)
            return .conflict(.init(body: .applicationProblemJson(Self.idempotencyMismatchProblem)))
        } catch {
            refundBatch(count: emails.count)
            return .serviceUnavailable(unavailable(error))
        }
    }

    static func acceptedBatch(_ reply: EnqueueReply) -> Operations.SendEmailBatch.Output {
        let data = reply.results.map { Components.Schemas.EmailAccepted(id: $0.id, status: Self.status($0.status)) }
        return .accepted(.init(body: .json(.init(data: data))))
    }

    func getEmail(_ input: Operations.GetEmail.Input) async throws -> Operations.GetEmail.Output {
        let id = input.path.id
        guard EmailID.isWellFormed(id), let email = try await outbox.email(id: id) else {
            return .notFound(.init(body: .applicationProblemJson(Self.notFoundProblem)))
        }
        return .ok(.init(body: .json(Self.render(email))))
    }

    func cancelEmail(_ input: Operations.CancelEmail.Input) async throws -> Operations.CancelEmail.Output {
        let id = input.path.id
        guard EmailID.isWellFormed(id) else { return .notFound(.init(body: .applicationProblemJson(Self.notFoundProblem))) }
        do {
            let email = try await outbox.cancel(id: id, now: now())
            return .ok(.init(body: .json(Self.render(email))))
        } catch OutboxError.notFound {
            return .notFound(.init(body: .applicationProblemJson(Self.notFoundProblem)))
        } catch OutboxError.conflict(let reason) {
            return .conflict(
                .init(
                    body: .applicationProblemJson(
                        .init(_type: APIProblem.typeURI("conflict"), title: "Conflict", status: 409, detail: reason)
                    )
                )
            )
        }
    }

    func listEmails(_ input: Operations.ListEmails.Input) async throws -> Operations.ListEmails.Output {
        let query = input.query
        var tag: (key: String, value: String)?
        if let text = query.tag {
            guard let colon = text.firstIndex(of: ":"), colon != text.startIndex else {
                throw APIProblem(
                    status: .badRequest,
                    kind: "bad-query",
                    title: "Bad Request",
                    detail: "`tag` is written key:value."
                )
            }
            tag = (String(text[..<colon]), String(text[text.index(after: colon)...]))
        }
        if let limit = query.limit, !(1...100).contains(limit) {
            throw APIProblem(status: .badRequest, kind: "bad-query", title: "Bad Request", detail: "`limit` is 1 to 100.")
        }
        if let cursor = query.cursor, !EmailID.isWellFormed(cursor) {
            throw APIProblem(status: .badRequest, kind: "bad-query", title: "Bad Request", detail: "`cursor` is not a cursor.")
        }
        let page = try await outbox.listEmails(
            EmailQuery(
                status: query.status.flatMap { EmailStatus(rawValue: $0.rawValue) },
                createdAfter: query.createdAfter,
                createdBefore: query.createdBefore,
                tag: tag,
                limit: min(max(query.limit ?? 50, 1), 100),
                cursor: query.cursor
            )
        )
        return .ok(.init(body: .json(.init(data: page.emails.map { Self.render($0, withAttempts: false) }, nextCursor: page.nextCursor))))
    }

    // MARK: Helpers

    /// Validates one request and renders its message; field names get `fieldPrefix`.
    func prepare(_ body: Components.Schemas.SendEmailRequest, fieldPrefix: String) -> Result<NewEmail, ValidationError> {
        let tags = body.tags?.additionalProperties ?? [:]
        var extraErrors = Self.validateTags(tags).map { FieldError(field: $0.field, code: $0.code, message: $0.message) }
        let current = now()
        if let expiresAt = body.expiresAt {
            if expiresAt <= current {
                extraErrors.append(FieldError(field: "expires_at", code: "in_the_past", message: "must be in the future"))
            } else if let scheduledAt = body.scheduledAt, expiresAt <= scheduledAt {
                extraErrors.append(FieldError(field: "expires_at", code: "before_scheduled_at", message: "must be after scheduled_at"))
            }
        }
        if let scheduledAt = body.scheduledAt, scheduledAt.timeIntervalSince(current) > Self.maxScheduleAhead {
            extraErrors.append(FieldError(field: "scheduled_at", code: "too_far", message: "must be within 30 days"))
        }
        var attachments: [Attachment] = []
        for (index, attachment) in (body.attachments ?? []).enumerated() {
            guard let content = Attachment.decodeBase64(attachment.content) else {
                extraErrors.append(
                    FieldError(field: "attachments[\(index)].content", code: "invalid_base64", message: "is not valid base64")
                )
                continue
            }
            attachments.append(
                Attachment(
                    filename: attachment.filename,
                    content: content,
                    contentType: attachment.contentType,
                    contentID: attachment.contentId
                )
            )
        }
        let draft = EmailDraft(
            from: body.from,
            to: body.to ?? [],
            cc: body.cc ?? [],
            bcc: body.bcc ?? [],
            replyTo: body.replyTo ?? [],
            subject: body.subject,
            text: body.text,
            html: body.html,
            headers: body.headers?.additionalProperties ?? [:],
            attachments: attachments
        )
        let composed: ComposedMessage
        do {
            composed = try composer.compose(draft, date: current)
        } catch {
            var error = error
            error.errors += extraErrors
            return .failure(Self.prefixed(error, fieldPrefix))
        }
        if !extraErrors.isEmpty {
            return .failure(Self.prefixed(ValidationError(errors: extraErrors), fieldPrefix))
        }
        return .success(
            NewEmail(
                from: body.from,
                mailFrom: composed.mailFrom,
                subject: body.subject,
                messageID: composed.messageID,
                data: composed.data,
                recipients: composed.recipients.map { recipient in
                    NewEmail.Recipient(address: recipient.address, kind: RecipientKind(rawValue: recipient.kind.rawValue) ?? .to)
                },
                requiresSMTPUTF8: composed.requiresSMTPUTF8,
                has8BitData: composed.has8BitData,
                scheduledAt: body.scheduledAt,
                expiresAt: body.expiresAt,
                tags: tags
            )
        )
    }

    static let maxScheduleAhead: TimeInterval = 30 * 86_400

    static func prefixed(_ error: ValidationError, _ prefix: String) -> ValidationError {
        guard !prefix.isEmpty else { return error }
        var error = error
        error.errors = error.errors.map { FieldError(field: prefix + $0.field, code: $0.code, message: $0.message) }
        return error
    }

    /// Tags: at most 10; keys 1-64 of `A-Z a-z 0-9 _ - .`; values at most 256 characters.
    static func validateTags(_ tags: [String: String]) -> [ProblemDocument.FieldProblem] {
        var problems: [ProblemDocument.FieldProblem] = []
        if tags.count > 10 { problems.append(.init(field: "tags", code: "too_many", message: "at most 10 tags")) }
        for (key, value) in tags.sorted(by: { $0.key < $1.key }) {
            let keyOK =
                (1...64).contains(key.count)
                && key.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "_-.".unicodeScalars.contains($0)) }
            if !keyOK {
                problems.append(.init(field: "tags", code: "invalid_key", message: "tag keys are 1-64 of A-Z, a-z, 0-9, _, - and ."))
            } else if value.count > 256 {
                problems.append(.init(field: "tags.\(key)", code: "too_long", message: "at most 256 characters"))
            }
        }
        return problems
    }

    /// The idempotency record for a request: scoped to the caller's API key, keyed by a
    /// digest of the canonical (sorted-keys) JSON of the decoded body.
    func idempotencyRequest<Body: Encodable>(key: String?, body: Body, namespace: String) -> IdempotencyRequest? {
        guard let key else { return nil }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .millisecondsSince1970
        let canonical = (try? encoder.encode(body)) ?? Data()
        let hash = SHA256.hash(data: Data(namespace.utf8) + [0] + canonical)
        return IdempotencyRequest(
            scope: APIKeyIdentity.current ?? "anonymous",
            key: key,
            requestHash: Hex.encode(hash),
            expiresAt: now().addingTimeInterval(idempotencyTTL)
        )
    }

    func unavailable(_ error: any Error) -> Components.Responses.Unavailable {
        // The transaction rolled back: nothing is stored, and the client may retry.
        logger.error("enqueue failed", metadata: ["error": "\(error)"])
        let detail = (error as? OutboxError)?.description ?? "The outbox cannot store the email right now."
        return .init(
            headers: .init(retryAfter: 5),
            body: .applicationProblemJson(
                .init(_type: APIProblem.typeURI("unavailable"), title: "Service Unavailable", status: 503, detail: detail)
            )
        )
    }

    static let notFoundProblem = Components.Schemas.Problem(
        _type: APIProblem.typeURI("not-found"),
        title: "Not Found",
        status: 404,
        detail: "No email has this id."
    )

    static let idempotencyMismatchProblem = Components.Schemas.Problem(
        _type: APIProblem.typeURI("idempotency-key-reused"),
        title: "Conflict",
        status: 409,
        detail: "This Idempotency-Key was already used with a different request body."
    )

    static func render(_ email: EmailDetails, withAttempts: Bool = true) -> Components.Schemas.Email {
        Components.Schemas.Email(
            id: email.id,
            status: status(email.status),
            from: email.from,
            subject: email.subject,
            messageId: email.messageID,
            recipients: email.recipients.map { recipient in
                Components.Schemas.Recipient(
                    address: recipient.address,
                    kind: .init(rawValue: recipient.kind.rawValue) ?? .to,
                    status: .init(rawValue: recipient.status.rawValue) ?? .pending,
                    lastCode: recipient.lastCode,
                    lastEnhancedCode: recipient.lastEnhancedCode,
                    lastText: recipient.lastText,
                    updatedAt: recipient.updatedAt
                )
            },
            attemptCount: email.attemptCount,
            nextAttemptAt: email.nextAttemptAt,
            failureReason: email.failureReason,
            scheduledAt: email.scheduledAt,
            expiresAt: email.expiresAt,
            tags: .init(additionalProperties: email.tags),
            attempts: withAttempts
                ? email.attempts.map { attempt in
                    Components.Schemas.Attempt(
                        number: attempt.number,
                        startedAt: attempt.startedAt,
                        finishedAt: attempt.finishedAt,
                        nextHop: attempt.nextHop,
                        outcome: status(attempt.outcome),
                        error: attempt.error,
                        transcript: attempt.transcript
                    )
                } : nil,
            createdAt: email.createdAt,
            updatedAt: email.updatedAt
        )
    }

    static func status(_ status: EmailStatus) -> Components.Schemas.EmailStatus {
        Components.Schemas.EmailStatus(rawValue: status.rawValue) ?? .queued
    }

    static func problem(for error: ValidationError) -> Components.Schemas.Problem {
        let count = error.errors.count
        return Components.Schemas.Problem(
            _type: APIProblem.typeURI(error.isTooLarge ? "too-large" : "validation"),
            title: error.isTooLarge ? "Content Too Large" : "Validation failed",
            status: error.isTooLarge ? 413 : 422,
            detail: count == 1 ? "1 field is invalid." : "\(count) fields are invalid.",
            errors: error.errors.map { .init(field: $0.field, code: $0.code, message: $0.message) }
        )
    }
}
