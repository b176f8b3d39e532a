import Foundation
import GRDB
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The outbox's operations, named after intent (STYLE.md habit 7).
///
/// `SQLiteOutbox` is the one implementation today; the protocol is the seam for a
/// PostgreSQL outbox shared by several instances (`FOR UPDATE SKIP LOCKED`).
public protocol OutboxStore: Sendable {
    /// Commits emails, their recipients, their `email.queued` events and the
    /// idempotency key (if any) in one transaction; a replayed key stores nothing.
    func enqueue(_ emails: [NewEmail], idempotency: IdempotencyRequest?) async throws -> EnqueueReply
    /// The first answer for a known, live idempotency key, or nil; reads only.
    func replay(_ idempotency: IdempotencyRequest) async throws -> EnqueueReply?
    /// Cancels an email not yet sent; throws `notFound` or `conflict`.
    func cancel(id: String, now: Date) async throws -> EmailDetails
    /// A page of emails, newest first.
    func listEmails(_ query: EmailQuery) async throws -> (emails: [EmailDetails], nextCursor: String?)
    /// The email with this id, or nil.
    func email(id: String) async throws -> EmailDetails?
    /// Leases up to `limit` due emails to `owner` until `leaseUntil`.
    func claimDue(now: Date, limit: Int, owner: String, leaseUntil: Date) async throws -> [ClaimedEmail]
    /// Extends a lease while a long attempt runs. False if the lease was lost.
    func renewLease(emailID: String, owner: String, until: Date) async throws -> Bool
    /// Records an attempt: recipients, the attempt row, the email's status and its event.
    func recordAttempt(_ record: AttemptRecord) async throws
    /// Gives a leased email back to the queue untouched (shutdown before the attempt ran).
    func releaseLease(emailID: String, owner: String, now: Date) async throws
    /// The earliest `next_attempt_at` of a waiting email, if any.
    func nextDueDate() async throws -> Date?
    /// Events after a sequence number, in commit order.
    func events(after sequence: Int64, limit: Int) async throws -> [OutboxEvent]
}

/// The SQLite outbox: one file, one writer, WAL, `synchronous=FULL`.
///
/// One process owns a file: `open` takes an exclusive `flock` on `<path>.lock` and
/// fails with `OutboxError.locked` if another process has it. Having the lock, it
/// returns every email left `sending` by an earlier process to the queue at once
/// (as Postfix does with its active queue), since no other process can hold a lease.
///
/// Writes from concurrent `enqueue` calls are committed together (group commit).
public final class SQLiteOutbox: OutboxStore {
    /// How the database is opened.
    public struct Options: Sendable {
        /// `PRAGMA synchronous`: `FULL` by default, so a 202 survives power loss.
        public var synchronousFull: Bool
        /// How long a writer waits for a lock before `unavailable`.
        public var busyTimeout: Duration
        /// Creates options.
        public init(synchronousFull: Bool = true, busyTimeout: Duration = .seconds(5)) {
            self.synchronousFull = synchronousFull
            self.busyTimeout = busyTimeout
        }
    }

    /// The database file.
    public let path: String
    let pool: DatabasePool
    private let lock: LockFile
    private let enqueuer: GroupCommitter<EnqueueJob, EnqueueReply>
    private let recorder: GroupCommitter<AttemptRecord, Void>
    private let signal = WorkSignal()
    private let clock: @Sendable () -> Date

    /// Opens (creating if needed) and migrates the outbox at `path`, taking its lock.
    public init(path: String, options: Options = Options(), clock: @escaping @Sendable () -> Date = { Date() }) throws {
        self.path = path
        self.clock = clock
        self.lock = try LockFile(databasePath: path)
        var configuration = Configuration()
        configuration.busyMode = .timeout(TimeInterval(options.busyTimeout.components.seconds))
        configuration.foreignKeysEnabled = true
        let synchronous = options.synchronousFull ? "FULL" : "NORMAL"
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = \(synchronous)")
            // A 32 MiB page cache and memory-mapped reads per connection keep the upper
            // levels of the indexes in memory however large the file grows, so claims and
            // lookups cost the same with a million finished emails as with none.
            try db.execute(sql: "PRAGMA cache_size = -32768")
            try db.execute(sql: "PRAGMA mmap_size = 268435456")
        }
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
            try Schema.migrator.migrate(pool)
        } catch {
            throw OutboxError.cannotOpen("\(path): \(error)")
        }
        let pool = self.pool
        let clock = self.clock
        enqueuer = GroupCommitter { batch in
            await Self.enqueueBatch(batch, pool: pool, now: clock())
        }
        recorder = GroupCommitter { batch in
            await Self.recordBatch(batch, pool: pool)
        }
        do {
            try requeueAbandoned()
        } catch {
            throw OutboxError.cannotOpen("\(path): \(error)")
        }
    }

    /// Returns emails left `sending` by an earlier process to the queue, due now.
    private func requeueAbandoned() throws {
        let now = clock().millis
        try pool.write { db in
            try db.execute(
                sql: """
                    UPDATE email SET
                        status = CASE WHEN attempt_count = 0 THEN
                            (CASE WHEN scheduled_at IS NOT NULL THEN 'scheduled' ELSE 'queued' END)
                            ELSE 'deferred' END,
                        lease_owner = NULL, lease_until = NULL, next_attempt_at = ?, updated_at = ?
                    WHERE status = 'sending'
                    """,
                arguments: [now, now]
            )
        }
    }

    // MARK: Accepting

    public func enqueue(_ emails: [NewEmail], idempotency: IdempotencyRequest?) async throws -> EnqueueReply {
        let reply = try await enqueuer.submit(EnqueueJob(emails: emails, idempotency: idempotency))
        if !reply.replayed { signal.notify() }
        return reply
    }

    /// Commits one email (see `enqueue(_:idempotency:)`).
    public func enqueue(_ email: NewEmail) async throws -> EnqueueResult {
        let reply = try await enqueue([email], idempotency: nil)
        guard let first = reply.results.first else { throw OutboxError.conflict("nothing enqueued") }
        return first
    }

    private static func enqueueBatch(_ batch: [EnqueueJob], pool: DatabasePool, now: Date) async -> [Result<EnqueueReply, any Error>] {
        await writeInSavepoints(batch, pool: pool) { job, db in try insert(job, db: db, now: now) }
    }

    /// Runs every job of a group commit in one transaction, each in its own savepoint,
    /// so one job's failure (a lost lease, a reused idempotency key) is its own. A full
    /// disk or an I/O error may have rolled the whole transaction back: then the batch
    /// fails with that cause rather than commit a part.
    static func writeInSavepoints<Job: Sendable, Output: Sendable>(
        _ batch: [Job],
        pool: DatabasePool,
        _ body: @escaping @Sendable (Job, Database) throws -> Output
    ) async -> [Result<Output, any Error>] {
        do {
            return try await pool.write { db in
                var results: [Result<Output, any Error>] = []
                results.reserveCapacity(batch.count)
                for job in batch {
                    do {
                        var output: Output?
                        try db.inSavepoint {
                            output = try body(job, db)
                            return .commit
                        }
                        if let output { results.append(.success(output)) }
                    } catch {
                        let mapped = OutboxError.map(error)
                        if case OutboxError.unavailable = mapped { throw mapped }
                        results.append(.failure(mapped))
                    }
                }
                return results
            }
        } catch {
            let mapped = OutboxError.map(error)
            return batch.map { _ in .failure(mapped) }
        }
    }

    /// One request's emails and idempotency key, inside the group transaction.
    static func insert(_ job: EnqueueJob, db: Database, now: Date) throws -> EnqueueReply {
        if let idempotency = job.idempotency {
            switch try lookUp(idempotency, db: db, now: now) {
            case .replay(let reply):
                return reply
            case .expired:
                try db.execute(
                    sql: "DELETE FROM idempotency_key WHERE scope = ? AND key = ?",
                    arguments: [idempotency.scope, idempotency.key]
                )
            case .unknown:
                break
            }
        }
        var results: [EnqueueResult] = []
        for email in job.emails {
            results.append(try insert(email, db: db, now: now))
        }
        if let idempotency = job.idempotency {
            let stored = results.map { StoredResult(id: $0.id, status: $0.status.rawValue) }
            try db.execute(
                sql: """
                    INSERT INTO idempotency_key (scope, key, request_hash, response, created_at, expires_at)
                    VALUES (?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    idempotency.scope, idempotency.key, idempotency.requestHash, try encodeJSON(stored), now.millis,
                    idempotency.expiresAt.millis,
                ]
            )
        }
        return EnqueueReply(results: results, replayed: false)
    }

    enum IdempotencyLookup {
        case unknown
        case expired
        case replay(EnqueueReply)
    }

    /// What the outbox knows of an idempotency key: the first request's answer while
    /// the key lives; `idempotencyMismatch` when it was used with another body.
    static func lookUp(_ idempotency: IdempotencyRequest, db: Database, now: Date) throws -> IdempotencyLookup {
        let row = try Row.fetchOne(
            db.cachedStatement(sql: "SELECT request_hash, response, expires_at FROM idempotency_key WHERE scope = ? AND key = ?"),
            arguments: [idempotency.scope, idempotency.key]
        )
        guard let row else { return .unknown }
        let expiresAt: Int64 = row["expires_at"]
        guard expiresAt > now.millis else { return .expired }
        guard row["request_hash"] == idempotency.requestHash else { throw OutboxError.idempotencyMismatch }
        let response: String = row["response"]
        let stored = try JSONDecoder().decode([StoredResult].self, from: Data(response.utf8))
        return .replay(
            EnqueueReply(
                results: stored.map { EnqueueResult(id: $0.id, status: EmailStatus(rawValue: $0.status) ?? .queued) },
                replayed: true
            )
        )
    }

    /// The first request's answer if this idempotency key is known and alive (a read;
    /// nothing is stored). Throws `idempotencyMismatch` when the key was used with
    /// another body. `enqueue` checks the same inside its transaction; this is for a
    /// caller that must decide before enqueueing (the rate limit of a batch).
    public func replay(_ idempotency: IdempotencyRequest) async throws -> EnqueueReply? {
        let now = clock()
        do {
            return try await pool.read { db in
                if case .replay(let reply) = try Self.lookUp(idempotency, db: db, now: now) { return reply }
                return nil
            }
        } catch {
            throw OutboxError.map(error)
        }
    }

    static func insert(_ email: NewEmail, db: Database, now: Date) throws -> EnqueueResult {
        let nowMillis = now.millis
        let due = max(email.scheduledAt?.millis ?? nowMillis, 0)
        let status: EmailStatus = due > nowMillis ? .scheduled : .queued
        let tagsJSON = JSONText.encode(email.tags)
        try db.cachedStatement(
            sql: """
                INSERT INTO email (id, status, from_header, mail_from, subject, message_id, requires_smtputf8,
                    has_8bit, tags, created_at, updated_at, scheduled_at, expires_at, next_attempt_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """
        ).execute(
            arguments: [
                email.id, status.rawValue, email.from, email.mailFrom, email.subject, email.messageID,
                email.requiresSMTPUTF8, email.has8BitData, tagsJSON, nowMillis, nowMillis,
                email.scheduledAt?.millis, email.expiresAt?.millis, due,
            ]
        )
        try db.cachedStatement(
            sql: "INSERT INTO email_body (email_id, data) VALUES (?, ?)"
        ).execute(
            arguments: [email.id, Data(email.data)]
        )
        for (position, recipient) in email.recipients.enumerated() {
            try db.cachedStatement(
                sql: """
                    INSERT INTO recipient (email_id, position, address, kind, status, updated_at)
                    VALUES (?, ?, ?, ?, 'pending', ?)
                    """
            ).execute(
                arguments: [email.id, position, recipient.address, recipient.kind.rawValue, nowMillis]
            )
        }
        // The payload from what was just inserted, rather than read back.
        let payload = EventPayload(
            emailID: email.id,
            status: status.rawValue,
            recipients: email.recipients.map {
                EventPayload.Recipient(address: $0.address, kind: $0.kind.rawValue, status: RecipientStatus.pending.rawValue)
            },
            tags: email.tags
        )
        try insertEvent(.queued, emailID: email.id, payload: payload, db: db, now: nowMillis)
        return EnqueueResult(id: email.id, status: status)
    }

    /// Writes an event row whose payload is the email's state as committed by this transaction.
    static func insertEvent(_ type: EventType, emailID: String, status: EmailStatus, db: Database, now: Int64) throws {
        let tagsText = try String.fetchOne(db.cachedStatement(sql: "SELECT tags FROM email WHERE id = ?"), arguments: [emailID]) ?? "{}"
        let tags = (try? JSONDecoder().decode([String: String].self, from: Data(tagsText.utf8))) ?? [:]
        let rows = try Row.fetchAll(
            db.cachedStatement(
                sql: """
                    SELECT address, kind, status, last_code, last_enhanced_code, last_text
                    FROM recipient WHERE email_id = ? ORDER BY position
                    """
            ),
            arguments: [emailID]
        )
        let payload = EventPayload(
            emailID: emailID,
            status: status.rawValue,
            recipients: rows.map { row in
                EventPayload.Recipient(
                    address: row["address"],
                    kind: row["kind"],
                    status: row["status"],
                    code: row["last_code"],
                    enhancedCode: row["last_enhanced_code"],
                    text: row["last_text"]
                )
            },
            tags: tags
        )
        try insertEvent(type, emailID: emailID, payload: payload, db: db, now: now)
    }

    /// Writes an event row with this payload.
    static func insertEvent(_ type: EventType, emailID: String, payload: EventPayload, db: Database, now: Int64) throws {
        try db.cachedStatement(
            sql: "INSERT INTO event (type, email_id, created_at, payload) VALUES (?, ?, ?, ?)"
        ).execute(
            arguments: [type.rawValue, emailID, now, payload.json]
        )
    }

    // MARK: Reading

    public func email(id: String) async throws -> EmailDetails? {
        do {
            return try await pool.read { db in try Self.fetchDetails(id: id, db: db) }
        } catch {
            throw OutboxError.map(error)
        }
    }

    static func fetchDetails(id: String, db: Database, withAttempts: Bool = true) throws -> EmailDetails? {
        guard let row = try Row.fetchOne(db, sql: "SELECT * FROM email WHERE id = ?", arguments: [id]) else {
            return nil
        }
        let recipients = try Row.fetchAll(
            db,
            sql: "SELECT * FROM recipient WHERE email_id = ? ORDER BY position",
            arguments: [id]
        ).map { row in
            RecipientState(
                position: row["position"],
                address: row["address"],
                kind: RecipientKind(rawValue: row["kind"]) ?? .to,
                status: RecipientStatus(rawValue: row["status"]) ?? .pending,
                lastCode: row["last_code"],
                lastEnhancedCode: row["last_enhanced_code"],
                lastText: row["last_text"],
                updatedAt: Date(millis: row["updated_at"])
            )
        }
        let attempts = try Row.fetchAll(
            db,
            sql: "SELECT * FROM attempt WHERE email_id = ? ORDER BY number",
            arguments: [id]
        ).map { row in
            AttemptSummary(
                number: row["number"],
                startedAt: Date(millis: row["started_at"]),
                finishedAt: Date(millis: row["finished_at"]),
                nextHop: row["next_hop"],
                outcome: EmailStatus(rawValue: row["outcome"]) ?? .deferred,
                error: row["error"],
                transcript: row["transcript"]
            )
        }
        let tagsText: String = row["tags"]
        return EmailDetails(
            id: row["id"],
            status: EmailStatus(rawValue: row["status"]) ?? .queued,
            from: row["from_header"],
            subject: row["subject"],
            messageID: row["message_id"],
            attemptCount: row["attempt_count"],
            nextAttemptAt: (row["next_attempt_at"] as Int64?).map(Date.init(millis:)),
            failureReason: row["failure_reason"],
            createdAt: Date(millis: row["created_at"]),
            updatedAt: Date(millis: row["updated_at"]),
            scheduledAt: (row["scheduled_at"] as Int64?).map(Date.init(millis:)),
            expiresAt: (row["expires_at"] as Int64?).map(Date.init(millis:)),
            tags: (try? JSONDecoder().decode([String: String].self, from: Data(tagsText.utf8))) ?? [:],
            recipients: recipients,
            attempts: attempts
        )
    }

    public func nextDueDate() async throws -> Date? {
        let millis = try await pool.read { db in
            try Int64.fetchOne(
                db,
                sql: "SELECT MIN(next_attempt_at) FROM email WHERE next_attempt_at IS NOT NULL"
            )
        }
        return millis.map(Date.init(millis:))
    }

    public func events(after sequence: Int64, limit: Int) async throws -> [OutboxEvent] {
        try await pool.read { db in
            try Row.fetchAll(
                db,
                sql: "SELECT * FROM event WHERE sequence > ? ORDER BY sequence LIMIT ?",
                arguments: [sequence, limit]
            ).map { row in
                OutboxEvent(
                    sequence: row["sequence"],
                    type: EventType(rawValue: row["type"]) ?? .queued,
                    emailID: row["email_id"],
                    createdAt: Date(millis: row["created_at"]),
                    payload: row["payload"]
                )
            }
        }
    }

    // MARK: Delivering

    /// Waits until an email may have become due: an enqueue happened, or `deadline` passed.
    public func waitForWork(until deadline: ContinuousClock.Instant) async {
        await signal.wait(until: deadline)
    }

    public func claimDue(now: Date, limit: Int, owner: String, leaseUntil: Date) async throws -> [ClaimedEmail] {
        let nowMillis = now.millis
        let leaseMillis = leaseUntil.millis
        do {
            return try await pool.write { db in
                // One indexed statement: the subquery walks `email_due` from its start.
                let claimed = try Row.fetchAll(
                    db.cachedStatement(
                        sql: """
                            UPDATE email SET status = 'sending', lease_owner = ?, lease_until = ?,
                                next_attempt_at = ?, updated_at = ?
                            WHERE id IN (SELECT id FROM email WHERE next_attempt_at <= ?
                                         ORDER BY next_attempt_at LIMIT ?)
                            RETURNING id, mail_from, message_id, attempt_count, MAX(created_at, COALESCE(scheduled_at, 0)) AS due_since,
                                expires_at, requires_smtputf8, has_8bit
                            """
                    ),
                    arguments: [owner, leaseMillis, leaseMillis, nowMillis, nowMillis, limit]
                )
                return try claimed.map { row in
                    let id: String = row["id"]
                    let data =
                        try Data.fetchOne(db.cachedStatement(sql: "SELECT data FROM email_body WHERE email_id = ?"), arguments: [id]) ?? Data()
                    let recipientRows = try Row.fetchAll(
                        db.cachedStatement(sql: "SELECT position, address, status FROM recipient WHERE email_id = ? ORDER BY position"),
                        arguments: [id]
                    )
                    var all: [Int: RecipientStatus] = [:]
                    var open: [ClaimedEmail.Recipient] = []
                    for recipientRow in recipientRows {
                        let status = RecipientStatus(rawValue: recipientRow["status"]) ?? .pending
                        let position: Int = recipientRow["position"]
                        all[position] = status
                        if status.needsAttempt {
                            open.append(.init(position: position, address: recipientRow["address"], status: status))
                        }
                    }
                    let attemptCount: Int = row["attempt_count"]
                    return ClaimedEmail(
                        id: id,
                        mailFrom: row["mail_from"],
                        messageID: row["message_id"],
                        data: [UInt8](data),
                        recipients: open,
                        allRecipientStatuses: all,
                        attemptNumber: attemptCount + 1,
                        createdAt: Date(millis: row["due_since"]),
                        expiresAt: (row["expires_at"] as Int64?).map(Date.init(millis:)),
                        requiresSMTPUTF8: row["requires_smtputf8"],
                        has8BitData: row["has_8bit"],
                        leaseOwner: owner,
                        leaseUntil: leaseUntil
                    )
                }
            }
        } catch {
            throw OutboxError.map(error)
        }
    }

    public func renewLease(emailID: String, owner: String, until: Date) async throws -> Bool {
        try await pool.write { db in
            try db.execute(
                sql: """
                    UPDATE email SET lease_until = ?, next_attempt_at = ?
                    WHERE id = ? AND status = 'sending' AND lease_owner = ?
                    """,
                arguments: [until.millis, until.millis, emailID, owner]
            )
            return db.changesCount == 1
        }
    }

    public func releaseLease(emailID: String, owner: String, now: Date) async throws {
        try await pool.write { db in
            try db.execute(
                sql: """
                    UPDATE email SET
                        status = CASE WHEN attempt_count = 0 THEN
                            (CASE WHEN scheduled_at IS NOT NULL THEN 'scheduled' ELSE 'queued' END)
                            ELSE 'deferred' END,
                        lease_owner = NULL, lease_until = NULL, next_attempt_at = ?, updated_at = ?
                    WHERE id = ? AND status = 'sending' AND lease_owner = ?
                    """,
                arguments: [now.millis, now.millis, emailID, owner]
            )
        }
    }

    public func recordAttempt(_ record: AttemptRecord) async throws {
        try await recorder.submit(record)
        if !record.status.isFinal { signal.notify() }
    }

    /// Records attempts that finished at about the same time in one transaction
    /// (group commit, as for accepts), each in its own savepoint: a lost lease fails
    /// only its own record.
    private static func recordBatch(_ batch: [AttemptRecord], pool: DatabasePool) async -> [Result<Void, any Error>] {
        await writeInSavepoints(batch, pool: pool) { record, db in try write(record, db: db) }
    }

    /// One attempt: recipients, the attempt row, the email's status and its event.
    static func write(_ record: AttemptRecord, db: Database) throws {
        // Cached statements: this runs for every attempt.
        let owner = try String.fetchOne(
            db.cachedStatement(sql: "SELECT lease_owner FROM email WHERE id = ? AND status = 'sending'"),
            arguments: [record.emailID]
        )
        guard owner == record.leaseOwner else { throw OutboxError.leaseLost(emailID: record.emailID) }
        let now = record.finishedAt.millis
        for result in record.recipients {
            try db.cachedStatement(
                sql: """
                    UPDATE recipient SET status = ?, last_code = ?, last_enhanced_code = ?, last_text = ?,
                        updated_at = ?
                    WHERE email_id = ? AND position = ?
                    """
            ).execute(
                arguments: [
                    result.status.rawValue, result.code, result.enhancedCode, result.text.map { String($0.prefix(1000)) },
                    now, record.emailID, result.position,
                ]
            )
        }
        try db.cachedStatement(
            sql: """
                INSERT INTO attempt (email_id, number, started_at, finished_at, next_hop, outcome, error, transcript)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """
        ).execute(
            arguments: [
                record.emailID, record.attemptNumber, record.startedAt.millis, now, record.nextHop,
                record.status.rawValue, record.error, record.transcript,
            ]
        )
        let final = record.status.isFinal
        try db.cachedStatement(
            sql: """
                UPDATE email SET status = ?, attempt_count = ?, next_attempt_at = ?, lease_owner = NULL,
                    lease_until = NULL, failure_reason = ?, updated_at = ?, finished_at = ?
                WHERE id = ?
                """
        ).execute(
            arguments: [
                record.status.rawValue, record.attemptNumber,
                final ? nil : (record.nextAttemptAt ?? record.finishedAt).millis,
                record.failureReason, now, final ? now : nil, record.emailID,
            ]
        )
        if let type = EventType(status: record.status) {
            try Self.insertEvent(type, emailID: record.emailID, status: record.status, db: db, now: now)
        }
    }

    public func cancel(id: String, now: Date) async throws -> EmailDetails {
        do {
            return try await pool.write { db in
                guard let status = try String.fetchOne(db, sql: "SELECT status FROM email WHERE id = ?", arguments: [id]) else {
                    throw OutboxError.notFound(id)
                }
                guard ["queued", "scheduled", "deferred"].contains(status) else {
                    let why = status == "sending" ? "it is being sent right now" : "it is already \(status)"
                    throw OutboxError.conflict("The email cannot be canceled: \(why).")
                }
                let nowMillis = now.millis
                try db.execute(
                    sql: """
                        UPDATE recipient SET status = 'failed', last_text = 'canceled', updated_at = ?
                        WHERE email_id = ? AND status IN ('pending', 'deferred')
                        """,
                    arguments: [nowMillis, id]
                )
                try db.execute(
                    sql: """
                        UPDATE email SET status = 'canceled', next_attempt_at = NULL, failure_reason = 'canceled',
                            updated_at = ?, finished_at = ?
                        WHERE id = ?
                        """,
                    arguments: [nowMillis, nowMillis, id]
                )
                try Self.insertEvent(.canceled, emailID: id, status: .canceled, db: db, now: nowMillis)
                guard let details = try Self.fetchDetails(id: id, db: db) else { throw OutboxError.notFound(id) }
                return details
            }
        } catch {
            throw OutboxError.map(error)
        }
    }

    public func listEmails(_ query: EmailQuery) async throws -> (emails: [EmailDetails], nextCursor: String?) {
        var conditions: [String] = []
        var arguments: StatementArguments = []
        if let status = query.status {
            conditions.append("status = ?")
            _ = arguments.append(contentsOf: [status.rawValue])
        }
        if let after = query.createdAfter {
            conditions.append("created_at >= ?")
            _ = arguments.append(contentsOf: [after.millis])
        }
        if let before = query.createdBefore {
            conditions.append("created_at < ?")
            _ = arguments.append(contentsOf: [before.millis])
        }
        if let key = query.tagKey {
            conditions.append("EXISTS (SELECT 1 FROM json_each(email.tags) WHERE json_each.key = ? AND json_each.value = ?)")
            _ = arguments.append(contentsOf: [key, query.tagValue ?? ""])
        }
        if let cursor = query.cursor {
            conditions.append("id < ?")
            _ = arguments.append(contentsOf: [cursor])
        }
        let limit = min(max(query.limit, 1), 100)
        _ = arguments.append(contentsOf: [limit + 1])
        let whereClause = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        let sql = "SELECT id FROM email \(whereClause) ORDER BY id DESC LIMIT ?"
        let finalArguments = arguments
        return try await pool.read { db in
            let ids = try String.fetchAll(db, sql: sql, arguments: finalArguments)
            let page = Array(ids.prefix(limit))
            var emails: [EmailDetails] = []
            for id in page {
                if var details = try Self.fetchDetails(id: id, db: db, withAttempts: false) {
                    details.attempts = []
                    emails.append(details)
                }
            }
            return (emails, ids.count > limit ? page.last : nil)
        }
    }

    /// Deletes up to `limit` finished emails (with their bodies, recipients, attempts
    /// and events) that finished before `before`, and expired idempotency keys.
    /// Small batches keep each write short, so accepts are not held up.
    public func purgeFinished(before: Date, now: Date, limit: Int = 500) async throws -> Int {
        try await pool.write { db in
            try db.execute(
                sql: """
                    DELETE FROM email WHERE id IN
                        (SELECT id FROM email WHERE finished_at IS NOT NULL AND finished_at < ? LIMIT ?)
                    """,
                arguments: [before.millis, limit]
            )
            let emails = db.changesCount
            try db.execute(
                sql: """
                    DELETE FROM idempotency_key WHERE (scope, key) IN
                        (SELECT scope, key FROM idempotency_key WHERE expires_at <= ? LIMIT ?)
                    """,
                arguments: [now.millis, limit]
            )
            return emails
        }
    }

    /// How many group-commit transactions enqueues have used so far.
    public var enqueueTransactionCount: Int { enqueuer.batchCount }

    /// Caps the file at `pages` pages (`PRAGMA max_page_count`), which makes SQLite
    /// answer SQLITE_FULL as a full disk would. For tests of the full-disk path.
    public func limitPageCountForTesting(_ pages: Int) async throws {
        try await pool.barrierWriteWithoutTransaction { db in
            try db.execute(sql: "PRAGMA max_page_count = \(pages)")
        }
    }

    /// Runs `PRAGMA integrity_check`; "ok" when the file is sound.
    public func integrityCheck() async throws -> String {
        try await pool.read { db in try String.fetchOne(db, sql: "PRAGMA integrity_check") ?? "" }
    }

    /// Counts emails by status (for tests, metrics and the shutdown check).
    public func countByStatus() async throws -> [EmailStatus: Int] {
        try await pool.read { db in
            var counts: [EmailStatus: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT status, COUNT(*) AS n FROM email GROUP BY status") {
                if let status = EmailStatus(rawValue: row["status"]) { counts[status] = row["n"] }
            }
            return counts
        }
    }
}

/// The work of one enqueue request inside a group commit.
struct EnqueueJob: Sendable {
    var emails: [NewEmail]
    var idempotency: IdempotencyRequest?
}

/// An email id and status as stored for an idempotency key's replay.
struct StoredResult: Codable {
    var id: String
    var status: String
}

/// The JSON payload of an event row.
struct EventPayload: Codable, Equatable {
    struct Recipient: Codable, Equatable {
        var address: String
        var kind: String
        var status: String
        var code: Int?
        var enhancedCode: String?
        var text: String?

        enum CodingKeys: String, CodingKey {
            case address, kind, status, code, text
            case enhancedCode = "enhanced_code"
        }
    }

    var emailID: String
    var status: String
    var recipients: [Recipient]
    var tags: [String: String]

    enum CodingKeys: String, CodingKey {
        case status, recipients, tags
        case emailID = "email_id"
    }
}

func encodeJSON<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}

extension Date {
    /// Milliseconds since 1970, as stored.
    var millis: Int64 { Int64((timeIntervalSince1970 * 1000).rounded(.down)) }

    init(millis: Int64) {
        self.init(timeIntervalSince1970: TimeInterval(millis) / 1000)
    }
}

/// The exclusive `flock` on `<database>.lock` that makes one process the owner of an
/// outbox, released (closed) exactly once, when this is deallocated.
///
/// Its own object, so that no error path of `SQLiteOutbox.init` closes the descriptor
/// by hand: a throwing init that fails after every property is set also runs `deinit`,
/// and a second `close` of the same number can close a descriptor another thread has
/// just opened (another outbox's lock file, whose `flock` then fails).
final class LockFile: Sendable {
    let descriptor: Int32

    init(databasePath: String) throws(OutboxError) {
        let lockPath = databasePath + ".lock"
        let descriptor = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw OutboxError.cannotOpen("\(lockPath): \(String(cString: strerror(errno)))")
        }
        // Only EWOULDBLOCK means another process has it; a signal (EINTR) is retried,
        // and any other error is named.
        var result = flock(descriptor, LOCK_EX | LOCK_NB)
        while result != 0 && errno == EINTR { result = flock(descriptor, LOCK_EX | LOCK_NB) }
        guard result == 0 else {
            let error = errno
            close(descriptor)
            if error == EWOULDBLOCK { throw OutboxError.locked(path: databasePath) }
            throw OutboxError.cannotOpen("\(lockPath): flock: \(String(cString: strerror(error)))")
        }
        self.descriptor = descriptor
    }

    deinit {
        close(descriptor)
    }
}
