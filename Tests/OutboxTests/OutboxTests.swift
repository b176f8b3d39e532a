import Foundation
import GRDB
import Testing

@testable import Outbox

/// A fresh outbox file in a temporary directory.
final class TemporaryOutbox {
    let directory: String
    let path: String
    private(set) var outbox: SQLiteOutbox

    init(clock: @escaping @Sendable () -> Date = { Date() }) throws {
        directory = NSTemporaryDirectory() + "pigeon-outbox-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        path = directory + "/outbox.sqlite"
        outbox = try SQLiteOutbox(path: path, clock: clock)
    }

    /// Closes and reopens the file, as a restarted process would.
    func reopen(clock: @escaping @Sendable () -> Date = { Date() }) throws {
        outbox = try SQLiteOutbox(path: directory + "/placeholder.sqlite")  // drop the old instance first
        outbox = try SQLiteOutbox(path: path, clock: clock)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: directory)
    }
}

func sampleEmail(
    id: String = EmailID.make(),
    recipients: [String] = ["ada@example.com"],
    scheduledAt: Date? = nil,
    expiresAt: Date? = nil,
    tags: [String: String] = [:],
    size: Int = 200
) -> NewEmail {
    NewEmail(
        id: id,
        from: "Acme <noreply@acme.example>",
        mailFrom: "noreply@acme.example",
        subject: "Hello",
        messageID: "<\(UUID().uuidString)@acme.example>",
        data: Array(String(repeating: "x", count: size).utf8),
        recipients: recipients.map { .init(address: $0, kind: .to) },
        scheduledAt: scheduledAt,
        expiresAt: expiresAt,
        tags: tags
    )
}

/// A clock the test moves by hand.
final class ManualClock: @unchecked Sendable {
    private let lock = NSLock()
    private var current: Date

    init(_ start: Date = Date(timeIntervalSince1970: 1_800_000_000)) { current = start }

    var now: Date {
        lock.lock()
        defer { lock.unlock() }
        return current
    }

    func advance(_ seconds: TimeInterval) {
        lock.lock()
        current += seconds
        lock.unlock()
    }
}

@Suite("SQLite outbox")
struct OutboxTests {
    @Test("An accepted email is stored with its recipients and a queued event")
    func enqueueAndRead() async throws {
        let store = try TemporaryOutbox()
        let email = sampleEmail(recipients: ["a@example.com", "b@example.com"], tags: ["campaign": "spring"])
        let result = try await store.outbox.enqueue(email)
        #expect(result == EnqueueResult(id: email.id, status: .queued))

        let details = try #require(try await store.outbox.email(id: email.id))
        #expect(details.status == .queued)
        #expect(details.recipients.map(\.address) == ["a@example.com", "b@example.com"])
        #expect(details.recipients.allSatisfy { $0.status == .pending })
        #expect(details.tags == ["campaign": "spring"])
        #expect(details.nextAttemptAt != nil)

        let events = try await store.outbox.events(after: 0, limit: 10)
        #expect(events.map(\.type) == [.queued])
        #expect(events.first?.emailID == email.id)
        #expect(events.first?.payload.contains("\"campaign\":\"spring\"") == true)
        #expect(try await store.outbox.integrityCheck() == "ok")
    }

    @Test("Concurrent accepts share transactions, and each returns after its own commit")
    func groupCommit() async throws {
        let store = try TemporaryOutbox()
        let outbox = store.outbox
        let ids = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<200 {
                group.addTask { try await outbox.enqueue(sampleEmail()).id }
            }
            var ids: [String] = []
            for try await id in group {
                // Returned means committed: a reader sees it at once.
                #expect(try await outbox.email(id: id) != nil)
                ids.append(id)
            }
            return ids
        }
        #expect(Set(ids).count == 200)
        #expect(try await outbox.countByStatus() == [.queued: 200])
        let transactions = outbox.enqueueTransactionCount
        #expect(transactions < 200, "200 concurrent accepts used \(transactions) transactions")
    }

    @Test("Claiming leases due emails only, through the email_due index")
    func claimDue() async throws {
        let clock = ManualClock()
        let store = try TemporaryOutbox(clock: { clock.now })
        let outbox = store.outbox
        let now = clock.now
        let due = try await outbox.enqueue(sampleEmail())
        let later = try await outbox.enqueue(sampleEmail(scheduledAt: now.addingTimeInterval(3600)))
        #expect(later.status == .scheduled)

        let claimed = try await outbox.claimDue(now: now, limit: 10, owner: "w1", leaseUntil: now.addingTimeInterval(60))
        #expect(claimed.map(\.id) == [due.id])
        #expect(claimed.first?.attemptNumber == 1)
        #expect(claimed.first?.data.count == 200)
        #expect(try await outbox.email(id: due.id)?.status == .sending)

        // Nothing else is due, and a leased email is not claimed twice.
        #expect(try await outbox.claimDue(now: now, limit: 10, owner: "w2", leaseUntil: now.addingTimeInterval(60)).isEmpty)
        // The scheduled one becomes due at its time.
        let atSchedule = now.addingTimeInterval(3601)
        let second = try await outbox.claimDue(now: atSchedule, limit: 10, owner: "w2", leaseUntil: atSchedule.addingTimeInterval(60))
        #expect(second.map(\.id).contains(later.id))

        let plan = try await outbox.pool.read { db in
            try Row.fetchAll(
                db,
                sql: "EXPLAIN QUERY PLAN SELECT id FROM email WHERE next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
                arguments: [0, 10]
            ).map { $0["detail"] as String }.joined(separator: "; ")
        }
        #expect(plan.contains("email_due"), "plan: \(plan)")
        #expect(!plan.contains("SCAN email"), "plan: \(plan)")
    }

    @Test("A crashed worker's lease runs out and the email is claimed again; the lost lease cannot record")
    func leaseExpiry() async throws {
        let clock = ManualClock()
        let store = try TemporaryOutbox(clock: { clock.now })
        let outbox = store.outbox
        let now = clock.now
        let email = try await outbox.enqueue(sampleEmail())
        let first = try await outbox.claimDue(now: now, limit: 1, owner: "crashed", leaseUntil: now.addingTimeInterval(300))
        #expect(first.count == 1)
        #expect(try await outbox.claimDue(now: now.addingTimeInterval(299), limit: 1, owner: "w2", leaseUntil: now.addingTimeInterval(600)).isEmpty)
        let again = try await outbox.claimDue(now: now.addingTimeInterval(301), limit: 1, owner: "w2", leaseUntil: now.addingTimeInterval(900))
        #expect(again.map(\.id) == [email.id])

        let record = AttemptRecord(
            emailID: email.id,
            leaseOwner: "crashed",
            attemptNumber: 1,
            startedAt: now,
            finishedAt: now,
            nextHop: nil,
            recipients: [],
            status: .sent,
            nextAttemptAt: nil,
            failureReason: nil,
            error: nil,
            transcript: nil
        )
        await #expect(throws: OutboxError.leaseLost(emailID: email.id)) { try await outbox.recordAttempt(record) }
        #expect(try await outbox.renewLease(emailID: email.id, owner: "crashed", until: now.addingTimeInterval(999)) == false)
        #expect(try await outbox.renewLease(emailID: email.id, owner: "w2", until: now.addingTimeInterval(999)) == true)
    }

    @Test("Recording an attempt updates recipients, the email, the attempt row and the event in one go")
    func recordAttempt() async throws {
        let store = try TemporaryOutbox()
        let outbox = store.outbox
        let now = Date()
        let email = try await outbox.enqueue(sampleEmail(recipients: ["a@example.com", "b@example.com"]))
        let claimed = try #require(try await outbox.claimDue(now: Date() + 1, limit: 1, owner: "w", leaseUntil: now + 60).first)
        try await outbox.recordAttempt(
            AttemptRecord(
                emailID: email.id,
                leaseOwner: "w",
                attemptNumber: claimed.attemptNumber,
                startedAt: now,
                finishedAt: now,
                nextHop: "relay:25",
                recipients: [
                    .init(position: 0, status: .sent, code: 250, enhancedCode: "2.0.0", text: "OK"),
                    .init(position: 1, status: .deferred, code: 451, enhancedCode: "4.3.0", text: "later"),
                ],
                status: .deferred,
                nextAttemptAt: now + 300,
                failureReason: nil,
                error: nil,
                transcript: "S: 220 hi"
            )
        )
        let details = try #require(try await outbox.email(id: email.id))
        #expect(details.status == .deferred)
        #expect(details.attemptCount == 1)
        #expect(details.recipients.map(\.status) == [.sent, .deferred])
        #expect(details.recipients.map(\.lastCode) == [250, 451])
        #expect(details.attempts.map(\.nextHop) == ["relay:25"])
        #expect(abs((details.nextAttemptAt ?? .distantPast).timeIntervalSince(now + 300)) < 0.01)
        let events = try await outbox.events(after: 0, limit: 10).map(\.type)
        #expect(events == [.queued, .deferred])

        // The next claim only carries the recipient that is still open.
        let next = try #require(try await outbox.claimDue(now: now + 301, limit: 1, owner: "w", leaseUntil: now + 400).first)
        #expect(next.recipients.map(\.address) == ["b@example.com"])
        #expect(next.attemptNumber == 2)
    }

    @Test("A restarted process returns emails left sending to the queue at once")
    func restartRequeues() async throws {
        let store = try TemporaryOutbox()
        let now = Date()
        let email = try await store.outbox.enqueue(sampleEmail())
        _ = try await store.outbox.claimDue(now: Date() + 1, limit: 1, owner: "old", leaseUntil: now + 3600)
        #expect(try await store.outbox.email(id: email.id)?.status == .sending)
        try store.reopen()
        let details = try #require(try await store.outbox.email(id: email.id))
        #expect(details.status == .queued)
        let claimed = try await store.outbox.claimDue(now: Date(), limit: 1, owner: "new", leaseUntil: Date() + 60)
        #expect(claimed.map(\.id) == [email.id])
    }

    @Test("A full disk is `unavailable`, stores nothing, and leaves a sound file")
    func fullDisk() async throws {
        let store = try TemporaryOutbox()
        let outbox = store.outbox
        _ = try await outbox.enqueue(sampleEmail())
        let pages = try await outbox.pool.read { db in try Int.fetchOne(db, sql: "PRAGMA page_count") ?? 0 }
        try await outbox.limitPageCountForTesting(pages + 2)
        await #expect(throws: OutboxError.unavailable("the disk is full")) {
            _ = try await outbox.enqueue(sampleEmail(size: 200_000))
        }
        #expect(try await outbox.countByStatus() == [.queued: 1])
        #expect(try await outbox.integrityCheck() == "ok")
        #expect(try await outbox.events(after: 0, limit: 10).count == 1)
    }

    @Test("Cancel works while waiting and is refused while sending or finished")
    func cancel() async throws {
        let store = try TemporaryOutbox()
        let outbox = store.outbox
        let now = Date()
        let waiting = try await outbox.enqueue(sampleEmail(scheduledAt: now + 3600))
        let canceled = try await outbox.cancel(id: waiting.id, now: now)
        #expect(canceled.status == .canceled)
        #expect(canceled.nextAttemptAt == nil)
        #expect(try await outbox.events(after: 0, limit: 10).map(\.type) == [.queued, .canceled])
        await #expect(throws: OutboxError.self) { _ = try await outbox.cancel(id: waiting.id, now: now) }

        let busy = try await outbox.enqueue(sampleEmail())
        let claimed = try await outbox.claimDue(now: Date() + 1, limit: 1, owner: "w", leaseUntil: Date() + 60)
        #expect(claimed.map(\.id) == [busy.id])
        await #expect(throws: OutboxError.conflict("The email cannot be canceled: it is being sent right now.")) {
            _ = try await outbox.cancel(id: busy.id, now: now)
        }
        await #expect(throws: OutboxError.notFound("em_nope")) { _ = try await outbox.cancel(id: "em_nope", now: now) }
    }

    @Test("Idempotency: same key and body replays, a different body is refused, keys are per scope")
    func idempotency() async throws {
        let store = try TemporaryOutbox()
        let outbox = store.outbox
        let expires = Date() + 3600
        let key = IdempotencyRequest(scope: "s1", key: "k", requestHash: "h1", expiresAt: expires)
        let first = try await outbox.enqueue([sampleEmail()], idempotency: key)
        let replay = try await outbox.enqueue([sampleEmail()], idempotency: key)
        #expect(!first.replayed)
        #expect(replay.replayed)
        #expect(replay.results == first.results)
        #expect(try await outbox.countByStatus() == [.queued: 1])

        var other = key
        other.requestHash = "h2"
        await #expect(throws: OutboxError.idempotencyMismatch) { _ = try await outbox.enqueue([sampleEmail()], idempotency: other) }

        var otherScope = key
        otherScope.scope = "s2"
        #expect(try await outbox.enqueue([sampleEmail()], idempotency: otherScope).replayed == false)
        #expect(try await outbox.countByStatus() == [.queued: 2])
    }

    @Test("20 concurrent requests with one key make one email")
    func concurrentIdempotency() async throws {
        let store = try TemporaryOutbox()
        let outbox = store.outbox
        let key = IdempotencyRequest(scope: "s", key: "same", requestHash: "h", expiresAt: Date() + 3600)
        let replies = try await withThrowingTaskGroup(of: EnqueueReply.self) { group in
            for _ in 0..<20 { group.addTask { try await outbox.enqueue([sampleEmail()], idempotency: key) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(Set(replies.flatMap(\.results).map(\.id)).count == 1)
        #expect(replies.filter { !$0.replayed }.count == 1)
        #expect(try await outbox.countByStatus() == [.queued: 1])
    }

    @Test("An expired idempotency key is forgotten")
    func idempotencyExpiry() async throws {
        let store = try TemporaryOutbox()
        let outbox = store.outbox
        let key = IdempotencyRequest(scope: "s", key: "k", requestHash: "h", expiresAt: Date() - 1)
        _ = try await outbox.enqueue([sampleEmail()], idempotency: key)
        #expect(try await outbox.enqueue([sampleEmail()], idempotency: key).replayed == false)
    }

    @Test("Listing filters by status, time and tag, newest first, with a cursor")
    func list() async throws {
        let store = try TemporaryOutbox()
        let outbox = store.outbox
        var ids: [String] = []
        for index in 0..<7 {
            let id = EmailID.make(now: Date(timeIntervalSince1970: 1_800_000_000 + Double(index)))
            ids.append(try await outbox.enqueue(sampleEmail(id: id, tags: ["n": index.isMultiple(of: 2) ? "even" : "odd"])).id)
        }
        let first = try await outbox.listEmails(EmailQuery(limit: 3))
        #expect(first.emails.map(\.id) == Array(ids.reversed().prefix(3)))
        let second = try await outbox.listEmails(EmailQuery(limit: 3, cursor: first.nextCursor))
        #expect(second.emails.map(\.id) == Array(ids.reversed().dropFirst(3).prefix(3)))
        let last = try await outbox.listEmails(EmailQuery(limit: 3, cursor: second.nextCursor))
        #expect(last.emails.map(\.id) == [ids[0]])
        #expect(last.nextCursor == nil)

        let even = try await outbox.listEmails(EmailQuery(tag: ("n", "even"), limit: 100))
        #expect(even.emails.count == 4)
        #expect(try await outbox.listEmails(EmailQuery(status: .sent)).emails.isEmpty)
    }

    @Test("Retention purges finished emails in batches and keeps the rest")
    func retention() async throws {
        let store = try TemporaryOutbox()
        let outbox = store.outbox
        let now = Date()
        for _ in 0..<5 {
            let email = try await outbox.enqueue(sampleEmail(scheduledAt: now + 3600))
            _ = try await outbox.cancel(id: email.id, now: now)
        }
        let waiting = try await outbox.enqueue(sampleEmail())
        #expect(try await outbox.purgeFinished(before: now - 1, now: now, limit: 2) == 0)
        #expect(try await outbox.purgeFinished(before: now + 1, now: now, limit: 2) == 2)
        #expect(try await outbox.purgeFinished(before: now + 1, now: now, limit: 10) == 3)
        #expect(try await outbox.countByStatus() == [.queued: 1])
        #expect(try await outbox.email(id: waiting.id) != nil)
        #expect(try await outbox.events(after: 0, limit: 100).allSatisfy { $0.emailID == waiting.id })
        #expect(try await outbox.integrityCheck() == "ok")
    }

    @Test("Email ids are time-ordered and well-formed", arguments: [0, 1, 1000, 1_800_000_000_000])
    func emailIDs(millis: Int) {
        let a = EmailID.make(now: Date(timeIntervalSince1970: Double(millis) / 1000))
        let b = EmailID.make(now: Date(timeIntervalSince1970: Double(millis + 1) / 1000))
        #expect(EmailID.isWellFormed(a))
        #expect(a < b)
        #expect(!EmailID.isWellFormed("em_" + String(repeating: "U", count: 26)))
    }
}
