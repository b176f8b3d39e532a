import Foundation
import HTTPTypes
import Hummingbird
import Logging
import OpenAPIRuntime
import Outbox

/// What the webhook routes need, given by the application (the API does not import `Webhooks`).
public struct WebhookManagement: Sendable {
    /// Endpoints, deliveries and the event feed.
    public var store: any WebhookStore
    /// Checks an endpoint URL (syntax and SSRF policy); returns `(code, message)` when it is refused.
    public var checkURL: @Sendable (String) async -> (code: String, message: String)?
    /// How long the old secret keeps signing after a rotation.
    public var rotationGracePeriod: Duration

    /// Creates the value.
    public init(
        store: any WebhookStore,
        rotationGracePeriod: Duration = .seconds(86_400),
        checkURL: @escaping @Sendable (String) async -> (code: String, message: String)?
    ) {
        self.store = store
        self.checkURL = checkURL
        self.rotationGracePeriod = rotationGracePeriod
    }
}

// The event feed and webhook endpoint management (issue 7).
// Webhook endpoint management needs a key with the `admin` scope: `APIKeyMiddleware` answers 403 to a `send` key on `/v1/webhooks`.
extension PigeonAPI {
    func listEvents(_ input: Operations.ListEvents.Input) async throws -> Operations.ListEvents.Output {
        let after = input.query.after ?? 0
        let limit = input.query.limit ?? 100
        var errors: [Components.Schemas.FieldProblem] = []
        if after < 0 { errors.append(.init(field: "after", code: "out_of_range", message: "must be 0 or more")) }
        if !(1...1000).contains(limit) { errors.append(.init(field: "limit", code: "out_of_range", message: "must be 1 to 1000")) }
        if !errors.isEmpty { return .unprocessableContent(.init(body: .applicationProblemJson(Self.validationProblem(errors)))) }
        let type = input.query._type.flatMap { EventType(rawValue: $0.rawValue) }
        let events: [OutboxEvent]
        if let store = webhooks?.store {
            events = try await store.events(after: after, limit: limit, type: type)
        } else {
            events = try await outbox.events(after: after, limit: limit).filter { type == nil || $0.type == type }
        }
        let rendered = try events.map(Self.render)
        return .ok(.init(body: .json(.init(data: rendered, nextAfter: events.last?.sequence ?? after))))
    }

    func createWebhook(_ input: Operations.CreateWebhook.Input) async throws -> Operations.CreateWebhook.Output {
        guard case .json(let body) = input.body else { throw APIProblem.webhookUnsupportedMediaType }
        let management = try requireWebhooks()
        if let problem = Self.validate(description: body.description) {
            return .unprocessableContent(.init(body: .applicationProblemJson(problem)))
        }
        if let refusal = await management.checkURL(body.url) {
            return .unprocessableContent(.init(body: .applicationProblemJson(Self.urlProblem(refusal))))
        }
        let created = try await management.store.createEndpoint(
            NewWebhookEndpoint(
                url: body.url,
                description: body.description,
                eventTypes: Self.eventTypes(body.eventTypes),
                enabled: body.enabled ?? true
            ),
            now: now()
        )
        logger.info("webhook endpoint created", metadata: ["webhook_endpoint": "\(created.endpoint.id)"])
        return .created(.init(body: .json(Self.render(created))))
    }

    func listWebhooks(_ input: Operations.ListWebhooks.Input) async throws -> Operations.ListWebhooks.Output {
        let endpoints = try await requireWebhooks().store.listEndpoints()
        return .ok(.init(body: .json(.init(data: endpoints.map(Self.render)))))
    }

    func getWebhook(_ input: Operations.GetWebhook.Input) async throws -> Operations.GetWebhook.Output {
        guard let endpoint = try await requireWebhooks().store.endpoint(id: input.path.id) else {
            return .notFound(.init(body: .applicationProblemJson(Self.webhookNotFound)))
        }
        return .ok(.init(body: .json(Self.render(endpoint))))
    }

    func updateWebhook(_ input: Operations.UpdateWebhook.Input) async throws -> Operations.UpdateWebhook.Output {
        guard case .json(let body) = input.body else { throw APIProblem.webhookUnsupportedMediaType }
        let management = try requireWebhooks()
        if let problem = Self.validate(description: body.description) {
            return .unprocessableContent(.init(body: .applicationProblemJson(problem)))
        }
        if let url = body.url, let refusal = await management.checkURL(url) {
            return .unprocessableContent(.init(body: .applicationProblemJson(Self.urlProblem(refusal))))
        }
        let update = WebhookEndpointUpdate(
            url: body.url,
            description: body.description,
            eventTypes: body.eventTypes.map(Self.eventTypes),
            enabled: body.enabled
        )
        guard let endpoint = try await management.store.updateEndpoint(id: input.path.id, update, now: now()) else {
            return .notFound(.init(body: .applicationProblemJson(Self.webhookNotFound)))
        }
        return .ok(.init(body: .json(Self.render(endpoint))))
    }

    func deleteWebhook(_ input: Operations.DeleteWebhook.Input) async throws -> Operations.DeleteWebhook.Output {
        guard try await requireWebhooks().store.deleteEndpoint(id: input.path.id) else {
            return .notFound(.init(body: .applicationProblemJson(Self.webhookNotFound)))
        }
        return .noContent(.init())
    }

    func rotateWebhookSecret(_ input: Operations.RotateWebhookSecret.Input) async throws -> Operations.RotateWebhookSecret.Output {
        let management = try requireWebhooks()
        guard
            let rotated = try await management.store.rotateSecret(
                id: input.path.id,
                gracePeriod: management.rotationGracePeriod,
                now: now()
            )
        else {
            return .notFound(.init(body: .applicationProblemJson(Self.webhookNotFound)))
        }
        return .ok(.init(body: .json(Self.render(rotated))))
    }

    func listWebhookDeliveries(_ input: Operations.ListWebhookDeliveries.Input) async throws -> Operations.ListWebhookDeliveries.Output {
        let store = try requireWebhooks().store
        guard try await store.endpoint(id: input.path.id) != nil else {
            return .notFound(.init(body: .applicationProblemJson(Self.webhookNotFound)))
        }
        let limit = input.query.limit ?? 50
        guard (1...200).contains(limit) else {
            let error = Components.Schemas.FieldProblem(field: "limit", code: "out_of_range", message: "must be 1 to 200")
            return .unprocessableContent(.init(body: .applicationProblemJson(Self.validationProblem([error]))))
        }
        let deliveries = try await store.deliveries(endpointID: input.path.id, limit: limit)
        return .ok(.init(body: .json(.init(data: deliveries.map(Self.render)))))
    }

    // MARK: Rendering

    private func requireWebhooks() throws -> WebhookManagement {
        guard let webhooks else {
            throw APIProblem(status: .serviceUnavailable, kind: "unavailable", title: "Service Unavailable", detail: "Webhooks are not set up.")
        }
        return webhooks
    }

    static let webhookNotFound = Components.Schemas.Problem(
        _type: APIProblem.typeURI("not-found"),
        title: "Not Found",
        status: 404,
        detail: "No webhook endpoint has this id."
    )

    static func urlProblem(_ refusal: (code: String, message: String)) -> Components.Schemas.Problem {
        validationProblem([.init(field: "url", code: refusal.code, message: refusal.message)])
    }

    static func validationProblem(_ errors: [Components.Schemas.FieldProblem]) -> Components.Schemas.Problem {
        Components.Schemas.Problem(
            _type: APIProblem.typeURI("validation"),
            title: "Validation failed",
            status: 422,
            detail: errors.count == 1 ? "1 field is invalid." : "\(errors.count) fields are invalid.",
            errors: errors
        )
    }

    static func validate(description: String?) -> Components.Schemas.Problem? {
        guard let description, description.count > 500 else { return nil }
        return validationProblem([.init(field: "description", code: "too_long", message: "at most 500 characters")])
    }

    static func eventTypes(_ types: [Components.Schemas.EventType]?) -> [EventType] {
        (types ?? []).compactMap { EventType(rawValue: $0.rawValue) }
    }

    static func render(_ event: OutboxEvent) throws -> Components.Schemas.Event {
        let data = try JSONDecoder().decode(Components.Schemas.EventData.self, from: Data(event.payload.utf8))
        return Components.Schemas.Event(
            id: event.id,
            sequence: event.sequence,
            _type: Components.Schemas.EventType(rawValue: event.type.rawValue) ?? .email_queued,
            createdAt: event.createdAt,
            data: data
        )
    }

    static func render(_ endpoint: WebhookEndpoint) -> Components.Schemas.WebhookEndpoint {
        Components.Schemas.WebhookEndpoint(
            id: endpoint.id,
            url: endpoint.url,
            description: endpoint.description,
            eventTypes: endpoint.eventTypes.compactMap { Components.Schemas.EventType(rawValue: $0.rawValue) },
            enabled: endpoint.enabled,
            disabledReason: endpoint.disabledReason.flatMap { .init(rawValue: $0.rawValue) },
            consecutiveFailures: endpoint.consecutiveFailures,
            isDefault: endpoint.isDefault,
            previousSecretExpiresAt: endpoint.previousSecretExpiresAt,
            createdAt: endpoint.createdAt,
            updatedAt: endpoint.updatedAt
        )
    }

    static func render(_ created: WebhookEndpointWithSecret) -> Components.Schemas.WebhookEndpointWithSecret {
        Components.Schemas.WebhookEndpointWithSecret(value1: render(created.endpoint), value2: .init(secret: created.secret))
    }

    static func render(_ delivery: WebhookDeliveryDetails) -> Components.Schemas.WebhookDelivery {
        Components.Schemas.WebhookDelivery(
            id: delivery.id,
            eventId: delivery.eventID,
            eventType: Components.Schemas.EventType(rawValue: delivery.eventType.rawValue) ?? .email_queued,
            status: .init(rawValue: delivery.status.rawValue) ?? .pending,
            attemptCount: delivery.attemptCount,
            nextAttemptAt: delivery.nextAttemptAt,
            createdAt: delivery.createdAt,
            updatedAt: delivery.updatedAt,
            attempts: delivery.attempts.map { attempt in
                Components.Schemas.WebhookAttempt(
                    number: attempt.number,
                    startedAt: attempt.startedAt,
                    finishedAt: attempt.finishedAt,
                    responseStatus: attempt.responseStatus,
                    error: attempt.error,
                    outcome: .init(rawValue: attempt.outcome) ?? .failed
                )
            }
        )
    }
}

extension APIProblem {
    /// 415 for a body that is not JSON.
    static let webhookUnsupportedMediaType = APIProblem(
        status: .unsupportedMediaType,
        kind: "unsupported-media-type",
        title: "Unsupported Media Type"
    )
}
