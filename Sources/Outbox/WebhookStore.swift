import Foundation
import GRDB

/// Why an endpoint stopped receiving webhooks.
public enum WebhookDisabledReason: String, Sendable, Codable, CaseIterable {
    /// Someone disabled it through the API.
    case user
    /// The receiver answered `410 Gone`.
    case gone
    /// Too many deliveries in a row failed for good.
    case failures
}

/// A webhook endpoint as stored; never carries its secrets.
public struct WebhookEndpoint: Sendable, Hashable {
    /// `wh_` + a ULID.
    public var id: String
    /// Where webhooks are POSTed.
    public var url: String
    /// Free text for the operator.
    public var description: String?
    /// The event types it receives.
    public var eventTypes: [EventType]
    /// Whether new events are delivered to it.
    public var enabled: Bool
    /// Why it is disabled, when it is.
    public var disabledReason: WebhookDisabledReason?
    /// Deliveries in a row that failed for good (reset by any success).
    public var consecutiveFailures: Int
    /// Whether this is the endpoint of `PIGEON_WEBHOOK_URL`.
    public var isDefault: Bool
    /// Until when the secret before the last rotation still signs (both signatures are sent).
    public var previousSecretExpiresAt: Date?
    /// When it was created.
    public var createdAt: Date
    /// When it last changed.
    public var updatedAt: Date
}

/// An endpoint to create.
public struct NewWebhookEndpoint: Sendable {
    /// Where webhooks are POSTed (already checked by the caller).
    public var url: String
    /// Free text.
    public var description: String?
    /// The event types it receives; all of them when empty.
    public var eventTypes: [EventType]
    /// Whether it starts enabled.
    public var enabled: Bool

    /// Creates a value.
    public init(url: String, description: String? = nil, eventTypes: [EventType] = [], enabled: Bool = true) {
        self.url = url
        self.description = description
        self.eventTypes = eventTypes
        self.enabled = enabled
    }
}

/// A change to an endpoint; nil fields stay as they are.
public struct WebhookEndpointUpdate: Sendable {
    /// A new URL (already checked by the caller).
    public var url: String?
    /// A new description.
    public var description: String?
    /// New event types; all of them when empty.
    public var eventTypes: [EventType]?
    /// Enable (resetting the failure count) or disable it (reason `user`).
    public var enabled: Bool?

    /// Creates a value.
    public init(url: String? = nil, description: String? = nil, eventTypes: [EventType]? = nil, enabled: Bool? = nil) {
        self.url = url
        self.description = description
        self.eventTypes = eventTypes
        self.enabled = enabled
    }
}

/// An endpoint with its new secret, shown once (at creation and after a rotation).
public struct WebhookEndpointWithSecret: Sendable {
    /// The endpoint.
    public var endpoint: WebhookEndpoint
    /// `whsec_<base64>`.
    public var secret: String
}

/// A delivery leased to the webhook service, with what it needs to sign and send it.
public struct ClaimedWebhookDelivery: Sendable {
    /// The delivery's row id.
    public var deliveryID: Int64
    /// The endpoint.
    public var endpointID: String
    /// The endpoint's URL.
    public var url: String
    /// The secrets to sign with: the current one first, then the previous one during its grace period.
    public var secrets: [String]
    /// 1 for the first attempt.
    public var attemptNumber: Int
    /// The event to send.
    public var event: OutboxEvent

    /// The `webhook-id`: the event's id, the same on every retry and for every endpoint.
    public var webhookID: String { event.id }
}

/// What an attempt decided.
public enum WebhookAttemptOutcome: Sendable, Hashable {
    /// A 2xx answer: the delivery is done.
    case succeeded
    /// Try again at this date.
    case retry(at: Date)
    /// No retry left: the delivery failed for good.
    case failed
    /// `410 Gone`: the delivery failed and the endpoint is disabled.
    case endpointGone
}

/// One finished attempt to record.
public struct WebhookAttemptRecord: Sendable {
    /// The delivery.
    public var deliveryID: Int64
    /// Its number (the claim's `attemptNumber`).
    public var attemptNumber: Int
    /// When the request started.
    public var startedAt: Date
    /// When it ended.
    public var finishedAt: Date
    /// The HTTP status, when one was received.
    public var responseStatus: Int?
    /// What went wrong, without secrets (e.g. `timeout`, `connection reset`).
    public var error: String?
    /// The decision.
    public var outcome: WebhookAttemptOutcome
    /// After this many deliveries in a row failed for good, the endpoint is disabled.
    public var maxConsecutiveFailures: Int

    /// Creates a record.
    public init(
        deliveryID: Int64,
        attemptNumber: Int,
        startedAt: Date,
        finishedAt: Date,
        responseStatus: Int?,
        error: String?,
        outcome: WebhookAttemptOutcome,
        maxConsecutiveFailures: Int
    ) {
        self.deliveryID = deliveryID
        self.attemptNumber = attemptNumber
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.responseStatus = responseStatus
        self.error = error
        self.outcome = outcome
        self.maxConsecutiveFailures = maxConsecutiveFailures
    }
}

/// The state of one event's delivery to one endpoint.
public enum WebhookDeliveryStatus: String, Sendable, Codable {
    /// Waiting for an attempt (or for its endpoint to be enabled again).
    case pending
    /// A 2xx answer was received.
    case succeeded
    /// Every retry failed, or the endpoint answered 410.
    case failed
}

/// One attempt of a delivery, as shown by the API.
public struct WebhookAttemptSummary: Sendable, Hashable {
    /// 1-based.
    public var number: Int
    /// When the request started.
    public var startedAt: Date
    /// When it ended.
    public var finishedAt: Date
    /// The HTTP status, when one was received.
    public var responseStatus: Int?
    /// What went wrong.
    public var error: String?
    /// `succeeded`, `retrying` or `failed`.
    public var outcome: String
}

/// A delivery with its attempts.
public struct WebhookDeliveryDetails: Sendable, Hashable {
    /// The row id.
    public var id: Int64
    /// The event's id (`evt_<sequence>`), which is also the `webhook-id`.
    public var eventID: String
    /// The event's type.
    public var eventType: EventType
    /// The endpoint.
    public var endpointID: String
    /// Its state.
    public var status: WebhookDeliveryStatus
    /// Attempts made.
    public var attemptCount: Int
    /// When the next attempt is due, while pending.
    public var nextAttemptAt: Date?
    /// When the event was fanned out to the endpoint.
    public var createdAt: Date
    /// When it last changed.
    public var updatedAt: Date
    /// Every attempt, oldest first.
    public var attempts: [WebhookAttemptSummary]
}

/// Webhook endpoints, their delivery outbox and the event feed, named after intent (STYLE.md habit 7).
///
/// Deliveries are made by the database itself: the `webhook_fan_out` trigger inserts
/// one `webhook_delivery` row per enabled, subscribed endpoint whenever an `event` row
/// is inserted, in the same transaction as the state change that wrote the event. So a
/// committed state change always has its webhook deliveries, and nothing else does.
///
/// Secrets are stored in clear, because signing needs them: the database file is as
/// sensitive as the secrets themselves (and as the email bodies it also holds).
public protocol WebhookStore: Sendable {
    /// Creates an endpoint with a new generated secret.
    func createEndpoint(_ endpoint: NewWebhookEndpoint, now: Date) async throws -> WebhookEndpointWithSecret
    /// Every endpoint, oldest first.
    func listEndpoints() async throws -> [WebhookEndpoint]
    /// The endpoint with this id, or nil.
    func endpoint(id: String) async throws -> WebhookEndpoint?
    /// Changes an endpoint; nil when there is no such endpoint.
    func updateEndpoint(id: String, _ update: WebhookEndpointUpdate, now: Date) async throws -> WebhookEndpoint?
    /// Deletes an endpoint with its deliveries; false when there was none.
    func deleteEndpoint(id: String) async throws -> Bool
    /// Generates a new secret; the old one keeps signing (both signatures are sent) for `gracePeriod`.
    func rotateSecret(id: String, gracePeriod: Duration, now: Date) async throws -> WebhookEndpointWithSecret?
    /// Creates or updates the endpoint of `PIGEON_WEBHOOK_URL` (all event types), or removes it when `url` is nil.
    func configureDefaultEndpoint(url: String?, secret: String?, now: Date) async throws
    /// Leases up to `limit` due deliveries of enabled endpoints until `leaseUntil`.
    func claimDueDeliveries(now: Date, limit: Int, leaseUntil: Date) async throws -> [ClaimedWebhookDelivery]
    /// Records an attempt and its decision; updates the endpoint's failure count and disables it if needed.
    func recordDeliveryAttempt(_ record: WebhookAttemptRecord) async throws
    /// The earliest due date of a delivery to an enabled endpoint, if any.
    func nextDeliveryDueDate() async throws -> Date?
    /// The newest deliveries of an endpoint with their attempts, newest first.
    func deliveries(endpointID: String, limit: Int) async throws -> [WebhookDeliveryDetails]
    /// Events after a sequence number, in commit order, optionally of one type.
    func events(after sequence: Int64, limit: Int, type: EventType?) async throws -> [OutboxEvent]
}

/// New webhook secrets.
public enum WebhookSecretGenerator {
    /// `whsec_` + base64 of 32 bytes from the system's cryptographic random generator.
    public static func make() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return "whsec_" + Data(bytes).base64EncodedString()
    }
}

extension Schema {
    /// Webhook endpoints, their subscriptions, the delivery outbox, attempts, and the fan-out trigger.
    static let v2Webhooks = """
        CREATE TABLE webhook_endpoint (
            id TEXT PRIMARY KEY NOT NULL,
            url TEXT NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
            description TEXT,
            enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
            disabled_reason TEXT CHECK (disabled_reason IN ('user','gone','failures')),
            -- In clear: signing needs it. The database file is as sensitive as the secret.
            secret TEXT NOT NULL,
            previous_secret TEXT,
            previous_secret_expires_at INTEGER,
            consecutive_failures INTEGER NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
            is_default INTEGER NOT NULL DEFAULT 0 CHECK (is_default IN (0, 1)),
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            CHECK ((enabled = 1) = (disabled_reason IS NULL)),
            CHECK ((previous_secret IS NULL) = (previous_secret_expires_at IS NULL))
        );
        CREATE UNIQUE INDEX webhook_endpoint_one_default ON webhook_endpoint(is_default) WHERE is_default = 1;

        CREATE TABLE webhook_subscription (
            endpoint_id TEXT NOT NULL REFERENCES webhook_endpoint(id) ON DELETE CASCADE,
            event_type TEXT NOT NULL CHECK (event_type IN ('email.queued','email.sent','email.deferred',
                'email.failed','email.partially_failed','email.canceled')),
            PRIMARY KEY (endpoint_id, event_type)
        ) WITHOUT ROWID;
        CREATE INDEX webhook_subscription_type ON webhook_subscription(event_type, endpoint_id);

        -- One row per event and endpoint. While pending, next_attempt_at is when it is
        -- due; a claim moves it to the end of the lease, so a crashed attempt is retried.
        CREATE TABLE webhook_delivery (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            event_sequence INTEGER NOT NULL REFERENCES event(sequence) ON DELETE CASCADE,
            endpoint_id TEXT NOT NULL REFERENCES webhook_endpoint(id) ON DELETE CASCADE,
            status TEXT NOT NULL CHECK (status IN ('pending','succeeded','failed')),
            attempt_count INTEGER NOT NULL DEFAULT 0 CHECK (attempt_count >= 0),
            next_attempt_at INTEGER,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            UNIQUE (event_sequence, endpoint_id),
            CHECK ((status = 'pending') = (next_attempt_at IS NOT NULL))
        );
        CREATE INDEX webhook_delivery_due ON webhook_delivery(next_attempt_at) WHERE next_attempt_at IS NOT NULL;
        CREATE INDEX webhook_delivery_endpoint ON webhook_delivery(endpoint_id, id);

        CREATE TABLE webhook_attempt (
            delivery_id INTEGER NOT NULL REFERENCES webhook_delivery(id) ON DELETE CASCADE,
            number INTEGER NOT NULL CHECK (number >= 1),
            started_at INTEGER NOT NULL,
            finished_at INTEGER NOT NULL,
            response_status INTEGER CHECK (response_status IS NULL OR response_status BETWEEN 100 AND 599),
            error TEXT,
            outcome TEXT NOT NULL CHECK (outcome IN ('succeeded','retrying','failed')),
            PRIMARY KEY (delivery_id, number)
        ) WITHOUT ROWID;

        CREATE INDEX event_type ON event(type, sequence);

        -- The fan-out: in the transaction of the state change that wrote the event.
        CREATE TRIGGER webhook_fan_out AFTER INSERT ON event
        BEGIN
            INSERT INTO webhook_delivery (event_sequence, endpoint_id, status, next_attempt_at, created_at, updated_at)
            SELECT NEW.sequence, s.endpoint_id, 'pending', NEW.created_at, NEW.created_at, NEW.created_at
            FROM webhook_subscription s JOIN webhook_endpoint e ON e.id = s.endpoint_id
            WHERE s.event_type = NEW.type AND e.enabled = 1;
        END;
        """
}

extension SQLiteOutbox: WebhookStore {
    public func createEndpoint(_ endpoint: NewWebhookEndpoint, now: Date) async throws -> WebhookEndpointWithSecret {
        let id = "wh_" + EmailID.ulid(now: now)
        let secret = WebhookSecretGenerator.make()
        return try await write { db in
            try db.execute(
                sql: """
                    INSERT INTO webhook_endpoint (id, url, description, enabled, disabled_reason, secret, created_at, updated_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    id, endpoint.url, endpoint.description, endpoint.enabled, endpoint.enabled ? nil : WebhookDisabledReason.user.rawValue,
                    secret, now.millis, now.millis,
                ]
            )
            try Self.setSubscriptions(endpointID: id, endpoint.eventTypes, db: db)
            guard let stored = try Self.fetchEndpoint(id: id, db: db) else { throw OutboxError.notFound(id) }
            return WebhookEndpointWithSecret(endpoint: stored, secret: secret)
        }
    }

    public func listEndpoints() async throws -> [WebhookEndpoint] {
        try await read { db in
            try String.fetchAll(db, sql: "SELECT id FROM webhook_endpoint ORDER BY created_at, id").compactMap { id in
                try Self.fetchEndpoint(id: id, db: db)
            }
        }
    }

    public func endpoint(id: String) async throws -> WebhookEndpoint? {
        try await read { db in try Self.fetchEndpoint(id: id, db: db) }
    }

    public func updateEndpoint(id: String, _ update: WebhookEndpointUpdate, now: Date) async throws -> WebhookEndpoint? {
        try await write { db in
            guard try Self.fetchEndpoint(id: id, db: db) != nil else { return nil }
            if let url = update.url {
                try db.execute(sql: "UPDATE webhook_endpoint SET url = ? WHERE id = ?", arguments: [url, id])
            }
            if let description = update.description {
                try db.execute(sql: "UPDATE webhook_endpoint SET description = ? WHERE id = ?", arguments: [description, id])
            }
            if let types = update.eventTypes {
                try Self.setSubscriptions(endpointID: id, types, db: db)
            }
            if let enabled = update.enabled {
                try Self.setEnabled(id: id, enabled, reason: .user, db: db)
            }
            try db.execute(sql: "UPDATE webhook_endpoint SET updated_at = ? WHERE id = ?", arguments: [now.millis, id])
            return try Self.fetchEndpoint(id: id, db: db)
        }
    }

    public func deleteEndpoint(id: String) async throws -> Bool {
        try await write { db in
            try db.execute(sql: "DELETE FROM webhook_endpoint WHERE id = ?", arguments: [id])
            return db.changesCount > 0
        }
    }

    public func rotateSecret(id: String, gracePeriod: Duration, now: Date) async throws -> WebhookEndpointWithSecret? {
        let secret = WebhookSecretGenerator.make()
        let graceEnd = now.addingTimeInterval(Double(gracePeriod.components.seconds)).millis
        return try await write { db in
            try db.execute(
                sql: """
                    UPDATE webhook_endpoint SET previous_secret = secret, previous_secret_expires_at = ?, secret = ?, updated_at = ?
                    WHERE id = ?
                    """,
                arguments: [graceEnd, secret, now.millis, id]
            )
            guard db.changesCount > 0, let endpoint = try Self.fetchEndpoint(id: id, db: db) else { return nil }
            return WebhookEndpointWithSecret(endpoint: endpoint, secret: secret)
        }
    }

    public func configureDefaultEndpoint(url: String?, secret: String?, now: Date) async throws {
        try await write { db in
            let existing = try String.fetchOne(db, sql: "SELECT id FROM webhook_endpoint WHERE is_default = 1")
            guard let url, let secret else {
                if let existing {
                    try db.execute(sql: "DELETE FROM webhook_endpoint WHERE id = ?", arguments: [existing])
                }
                return
            }
            let id: String
            if let existing {
                id = existing
                try db.execute(
                    sql: """
                        UPDATE webhook_endpoint SET url = ?, updated_at = ?,
                            previous_secret = CASE WHEN secret = ? THEN previous_secret ELSE NULL END,
                            previous_secret_expires_at = CASE WHEN secret = ? THEN previous_secret_expires_at ELSE NULL END,
                            secret = ?
                        WHERE id = ? AND (url != ? OR secret != ?)
                        """,
                    arguments: [url, now.millis, secret, secret, secret, id, url, secret]
                )
            } else {
                id = "wh_" + EmailID.ulid(now: now)
                try db.execute(
                    sql: """
                        INSERT INTO webhook_endpoint (id, url, description, secret, is_default, created_at, updated_at)
                        VALUES (?, ?, 'PIGEON_WEBHOOK_URL', ?, 1, ?, ?)
                        """,
                    arguments: [id, url, secret, now.millis, now.millis]
                )
            }
            try Self.setSubscriptions(endpointID: id, [], db: db)
        }
    }

    public func claimDueDeliveries(now: Date, limit: Int, leaseUntil: Date) async throws -> [ClaimedWebhookDelivery] {
        let nowMillis = now.millis
        return try await write { db in
            let claimed = try Row.fetchAll(
                db,
                sql: """
                    UPDATE webhook_delivery SET next_attempt_at = ?, updated_at = ?
                    WHERE id IN (SELECT d.id FROM webhook_delivery d JOIN webhook_endpoint e ON e.id = d.endpoint_id
                                 WHERE d.next_attempt_at <= ? AND e.enabled = 1
                                 ORDER BY d.next_attempt_at LIMIT ?)
                    RETURNING id, event_sequence, endpoint_id, attempt_count
                    """,
                arguments: [leaseUntil.millis, nowMillis, nowMillis, limit]
            )
            return try claimed.compactMap { row -> ClaimedWebhookDelivery? in
                let endpointID: String = row["endpoint_id"]
                guard
                    let endpoint = try Row.fetchOne(
                        db,
                        sql: "SELECT url, secret, previous_secret, previous_secret_expires_at FROM webhook_endpoint WHERE id = ?",
                        arguments: [endpointID]
                    ),
                    let event = try Self.fetchEvents(db: db, sql: "WHERE sequence = ?", arguments: [row["event_sequence"] as Int64]).first
                else { return nil }
                var secrets: [String] = [endpoint["secret"]]
                if let previous: String = endpoint["previous_secret"],
                    let expires: Int64 = endpoint["previous_secret_expires_at"], expires > nowMillis
                {
                    secrets.append(previous)
                }
                let attempts: Int = row["attempt_count"]
                return ClaimedWebhookDelivery(
                    deliveryID: row["id"],
                    endpointID: endpointID,
                    url: endpoint["url"],
                    secrets: secrets,
                    attemptNumber: attempts + 1,
                    event: event
                )
            }
        }
    }

    public func recordDeliveryAttempt(_ record: WebhookAttemptRecord) async throws {
        try await write { db in
            guard
                let delivery = try Row.fetchOne(
                    db,
                    sql: "SELECT endpoint_id, attempt_count, status FROM webhook_delivery WHERE id = ?",
                    arguments: [record.deliveryID]
                )
            else { return }  // the endpoint was deleted meanwhile
            let attemptCount: Int = delivery["attempt_count"]
            let status: String = delivery["status"]
            // Recorded already, or finished: nothing to do (the claim was stale).
            guard attemptCount == record.attemptNumber - 1, status == WebhookDeliveryStatus.pending.rawValue else { return }
            let endpointID: String = delivery["endpoint_id"]
            let now = record.finishedAt.millis
            let (newStatus, next, attemptOutcome): (WebhookDeliveryStatus, Int64?, String)
            switch record.outcome {
            case .succeeded: (newStatus, next, attemptOutcome) = (.succeeded, nil, "succeeded")
            case .retry(let at): (newStatus, next, attemptOutcome) = (.pending, at.millis, "retrying")
            case .failed, .endpointGone: (newStatus, next, attemptOutcome) = (.failed, nil, "failed")
            }
            try db.execute(
                sql: """
                    INSERT INTO webhook_attempt (delivery_id, number, started_at, finished_at, response_status, error, outcome)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    record.deliveryID, record.attemptNumber, record.startedAt.millis, now, record.responseStatus,
                    record.error.map { String($0.prefix(500)) }, attemptOutcome,
                ]
            )
            try db.execute(
                sql: "UPDATE webhook_delivery SET status = ?, attempt_count = ?, next_attempt_at = ?, updated_at = ? WHERE id = ?",
                arguments: [newStatus.rawValue, record.attemptNumber, next, now, record.deliveryID]
            )
            switch record.outcome {
            case .succeeded:
                try db.execute(
                    sql: "UPDATE webhook_endpoint SET consecutive_failures = 0 WHERE id = ? AND consecutive_failures != 0",
                    arguments: [endpointID]
                )
            case .retry:
                break
            case .failed:
                try db.execute(
                    sql: "UPDATE webhook_endpoint SET consecutive_failures = consecutive_failures + 1, updated_at = ? WHERE id = ?",
                    arguments: [now, endpointID]
                )
                let failures = try Int.fetchOne(
                    db,
                    sql: "SELECT consecutive_failures FROM webhook_endpoint WHERE id = ?",
                    arguments: [endpointID]
                )
                if let failures, failures >= record.maxConsecutiveFailures {
                    try Self.setEnabled(id: endpointID, false, reason: .failures, db: db)
                }
            case .endpointGone:
                try Self.setEnabled(id: endpointID, false, reason: .gone, db: db)
                try db.execute(sql: "UPDATE webhook_endpoint SET updated_at = ? WHERE id = ?", arguments: [now, endpointID])
            }
        }
    }

    public func nextDeliveryDueDate() async throws -> Date? {
        let millis = try await read { db in
            try Int64.fetchOne(
                db,
                sql: """
                    SELECT d.next_attempt_at FROM webhook_delivery d
                    WHERE d.next_attempt_at IS NOT NULL
                        AND EXISTS (SELECT 1 FROM webhook_endpoint e WHERE e.id = d.endpoint_id AND e.enabled = 1)
                    ORDER BY d.next_attempt_at LIMIT 1
                    """
            )
        }
        return millis.map(Date.init(millis:))
    }

    public func deliveries(endpointID: String, limit: Int) async throws -> [WebhookDeliveryDetails] {
        try await read { db in
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT d.*, ev.type AS event_type FROM webhook_delivery d JOIN event ev ON ev.sequence = d.event_sequence
                    WHERE d.endpoint_id = ? ORDER BY d.id DESC LIMIT ?
                    """,
                arguments: [endpointID, limit]
            )
            return try rows.map { row in
                let id: Int64 = row["id"]
                let attempts = try Row.fetchAll(
                    db,
                    sql: "SELECT * FROM webhook_attempt WHERE delivery_id = ? ORDER BY number",
                    arguments: [id]
                ).map { attempt in
                    WebhookAttemptSummary(
                        number: attempt["number"],
                        startedAt: Date(millis: attempt["started_at"]),
                        finishedAt: Date(millis: attempt["finished_at"]),
                        responseStatus: attempt["response_status"],
                        error: attempt["error"],
                        outcome: attempt["outcome"]
                    )
                }
                let sequence: Int64 = row["event_sequence"]
                return WebhookDeliveryDetails(
                    id: id,
                    eventID: "evt_\(sequence)",
                    eventType: EventType(rawValue: row["event_type"]) ?? .queued,
                    endpointID: row["endpoint_id"],
                    status: WebhookDeliveryStatus(rawValue: row["status"]) ?? .pending,
                    attemptCount: row["attempt_count"],
                    nextAttemptAt: (row["next_attempt_at"] as Int64?).map(Date.init(millis:)),
                    createdAt: Date(millis: row["created_at"]),
                    updatedAt: Date(millis: row["updated_at"]),
                    attempts: attempts
                )
            }
        }
    }

    public func events(after sequence: Int64, limit: Int, type: EventType?) async throws -> [OutboxEvent] {
        try await read { db in
            if let type {
                return try Self.fetchEvents(
                    db: db,
                    sql: "WHERE type = ? AND sequence > ? ORDER BY sequence LIMIT ?",
                    arguments: [type.rawValue, sequence, limit]
                )
            }
            return try Self.fetchEvents(db: db, sql: "WHERE sequence > ? ORDER BY sequence LIMIT ?", arguments: [sequence, limit])
        }
    }

    // MARK: Helpers

    private func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try await pool.write(body)
        } catch {
            throw OutboxError.map(error)
        }
    }

    private func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try await pool.read(body)
        } catch {
            throw OutboxError.map(error)
        }
    }

    private static func fetchEvents(db: Database, sql: String, arguments: StatementArguments) throws -> [OutboxEvent] {
        try Row.fetchAll(db, sql: "SELECT * FROM event " + sql, arguments: arguments).map { row in
            OutboxEvent(
                sequence: row["sequence"],
                type: EventType(rawValue: row["type"]) ?? .queued,
                emailID: row["email_id"],
                createdAt: Date(millis: row["created_at"]),
                payload: row["payload"]
            )
        }
    }

    private static func fetchEndpoint(id: String, db: Database) throws -> WebhookEndpoint? {
        guard let row = try Row.fetchOne(db, sql: "SELECT * FROM webhook_endpoint WHERE id = ?", arguments: [id]) else {
            return nil
        }
        let types = try String.fetchAll(
            db,
            sql: "SELECT event_type FROM webhook_subscription WHERE endpoint_id = ?",
            arguments: [id]
        ).compactMap(EventType.init(rawValue:))
        return WebhookEndpoint(
            id: row["id"],
            url: row["url"],
            description: row["description"],
            eventTypes: EventType.allCases.filter(types.contains),
            enabled: row["enabled"],
            disabledReason: (row["disabled_reason"] as String?).flatMap(WebhookDisabledReason.init(rawValue:)),
            consecutiveFailures: row["consecutive_failures"],
            isDefault: row["is_default"],
            previousSecretExpiresAt: (row["previous_secret_expires_at"] as Int64?).map(Date.init(millis:)),
            createdAt: Date(millis: row["created_at"]),
            updatedAt: Date(millis: row["updated_at"])
        )
    }

    /// Replaces the subscriptions; an empty list subscribes to every type.
    private static func setSubscriptions(endpointID: String, _ types: [EventType], db: Database) throws {
        try db.execute(sql: "DELETE FROM webhook_subscription WHERE endpoint_id = ?", arguments: [endpointID])
        for type in Set(types.isEmpty ? EventType.allCases : types) {
            try db.execute(
                sql: "INSERT INTO webhook_subscription (endpoint_id, event_type) VALUES (?, ?)",
                arguments: [endpointID, type.rawValue]
            )
        }
    }

    /// Enables (resetting the failure count) or disables an endpoint.
    private static func setEnabled(id: String, _ enabled: Bool, reason: WebhookDisabledReason, db: Database) throws {
        if enabled {
            try db.execute(
                sql: "UPDATE webhook_endpoint SET enabled = 1, disabled_reason = NULL, consecutive_failures = 0 WHERE id = ? AND enabled = 0",
                arguments: [id]
            )
        } else {
            try db.execute(
                sql: "UPDATE webhook_endpoint SET enabled = 0, disabled_reason = ? WHERE id = ? AND enabled = 1",
                arguments: [reason.rawValue, id]
            )
        }
    }
}
