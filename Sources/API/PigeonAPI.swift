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

    /// Creates a configuration.
    public init(apiKeys: [String], maxRequestBytes: Int = 36_000_000, composer: MessageComposer = MessageComposer()) {
        self.apiKeys = apiKeys
        self.maxRequestBytes = maxRequestBytes
        self.composer = composer
    }
}

/// Registers Pigeon's routes (generated from `openapi.yaml`) and its middleware on a router.
///
/// Order: problem+json errors outermost, then the request log, the API key check for
/// `/v1`, and the body size limit, then the generated handlers.
public func registerRoutes<Context: RequestContext>(
    on router: Router<Context>,
    outbox: any OutboxStore,
    configuration: APIConfiguration,
    logger: Logger,
    now: @escaping @Sendable () -> Date = { Date() },
    webhooks: WebhookManagement? = nil
) throws {
    router.add(middleware: ProblemMiddleware(logger: logger))
    router.add(middleware: LogRequestsMiddleware(.info))
    router.add(middleware: APIKeyMiddleware(keys: configuration.apiKeys))
    router.add(middleware: RequestLimitMiddleware(maxBytes: configuration.maxRequestBytes))
    var handler = PigeonAPI(outbox: outbox, composer: configuration.composer, logger: logger, now: now)
    handler.webhooks = webhooks
    try handler.registerHandlers(on: router, middlewares: [IgnoreAcceptMiddleware()])
}

/// The operations of `openapi.yaml`.
struct PigeonAPI: APIProtocol {
    let outbox: any OutboxStore
    let composer: MessageComposer
    let logger: Logger
    let now: @Sendable () -> Date
    /// Webhook endpoints and the event feed (`PigeonAPI+Webhooks.swift`); nil when not set up.
    var webhooks: WebhookManagement?

    func getHealth(_ input: Operations.GetHealth.Input) async throws -> Operations.GetHealth.Output {
        .ok(.init(body: .json(.init(status: .ok))))
    }

    func sendEmail(_ input: Operations.SendEmail.Input) async throws -> Operations.SendEmail.Output {
        guard case .json(let body) = input.body else {
            throw APIProblem(status: .unsupportedMediaType, kind: "unsupported-media-type", title: "Unsupported Media Type")
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
            attachments: []
        )
        let composed: ComposedMessage
        do {
            composed = try composer.compose(draft, date: now())
        } catch {
            let problem = Self.problem(for: error)
            if error.isTooLarge { return .contentTooLarge(.init(body: .applicationProblemJson(problem))) }
            return .unprocessableContent(.init(body: .applicationProblemJson(problem)))
        }
        let email = NewEmail(
            from: body.from,
            mailFrom: composed.mailFrom,
            subject: body.subject,
            messageID: composed.messageID,
            data: composed.data,
            recipients: composed.recipients.map { recipient in
                NewEmail.Recipient(address: recipient.address, kind: RecipientKind(rawValue: recipient.kind.rawValue) ?? .to)
            },
            requiresSMTPUTF8: composed.requiresSMTPUTF8,
            has8BitData: composed.has8BitData
        )
        do {
            let result = try await outbox.enqueue(email)
            return .accepted(.init(body: .json(.init(id: result.id, status: Self.status(result.status)))))
        } catch {
            // The transaction rolled back: nothing is stored, and the client may retry.
            logger.error("enqueue failed", metadata: ["error": "\(error)"])
            let detail = (error as? OutboxError)?.description ?? "The outbox cannot store the email right now."
            return .serviceUnavailable(
                .init(
                    headers: .init(retryAfter: 5),
                    body: .applicationProblemJson(
                        .init(_type: APIProblem.typeURI("unavailable"), title: "Service Unavailable", status: 503, detail: detail)
                    )
                )
            )
        }
    }

    func getEmail(_ input: Operations.GetEmail.Input) async throws -> Operations.GetEmail.Output {
        let id = input.path.id
        guard EmailID.isWellFormed(id), let email = try await outbox.email(id: id) else {
            return .notFound(
                .init(
                    body: .applicationProblemJson(
                        .init(_type: APIProblem.typeURI("not-found"), title: "Not Found", status: 404, detail: "No email has this id.")
                    )
                )
            )
        }
        return .ok(.init(body: .json(Self.render(email))))
    }

    static func render(_ email: EmailDetails) -> Components.Schemas.Email {
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
