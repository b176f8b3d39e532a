import Foundation
import Logging
import Outbox
import SMTP
import SMTPClient
import SMTPTestSupport
import ServiceLifecycle
import Testing

@testable import Delivery

/// A sender that must never be called (for the pure decision tests).
struct UnusedSender: MessageSender {
    func send(_ message: OutgoingMessage) async throws(SMTPClientError) -> SMTPSendResult {
        throw SMTPClientError(kind: .closed, isTransient: true, message: "unused")
    }
}

func temporaryOutbox() throws -> (SQLiteOutbox, String) {
    let directory = NSTemporaryDirectory() + "pigeon-delivery-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    return (try SQLiteOutbox(path: directory + "/outbox.sqlite"), directory)
}

func claimed(recipients: [String], attempt: Int = 1, createdAt: Date, expiresAt: Date? = nil) -> ClaimedEmail {
    ClaimedEmail(
        id: "em_test",
        mailFrom: "a@acme.example",
        messageID: "<x@acme.example>",
        data: [],
        recipients: recipients.enumerated().map { .init(position: $0.offset, address: $0.element, status: .pending) },
        allRecipientStatuses: Dictionary(uniqueKeysWithValues: recipients.indices.map { ($0, RecipientStatus.pending) }),
        attemptNumber: attempt,
        createdAt: createdAt,
        expiresAt: expiresAt,
        requiresSMTPUTF8: false,
        has8BitData: false,
        leaseOwner: "w",
        leaseUntil: createdAt + 60
    )
}

func reply(_ code: Int, _ enhanced: String? = nil, _ text: String = "text") -> SMTPReply {
    SMTPReply(code: code, enhancedCode: enhanced.flatMap { EnhancedStatusCode(Substring($0)) }, lines: [text])
}

@Suite("Delivery decisions")
struct DeliveryDecisionTests {
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    func service(
        _ policy: RetryPolicy = RetryPolicy(schedule: [.seconds(60)], maxQueueLifetime: .seconds(86_400), jitter: 0)
    )
        throws -> (DeliveryService, String)
    {
        let (outbox, directory) = try temporaryOutbox()
        return (DeliveryService(outbox: outbox, sender: UnusedSender(), policy: policy, now: { Self.now }), directory)
    }

    @Test(
        "Per-recipient replies decide recipient and email status",
        arguments: [
            ([250, 250], [RecipientStatus.sent, .sent], EmailStatus.sent, nil as String?),
            ([250, 451], [.sent, .deferred], .deferred, nil),
            ([550, 550], [.failed, .failed], .failed, "rejected"),
            ([250, 550], [.sent, .failed], .partiallyFailed, "rejected"),
            ([451, 550], [.deferred, .failed], .deferred, nil),
            ([421, 421], [.deferred, .deferred], .deferred, nil),
        ] as [([Int], [RecipientStatus], EmailStatus, String?)]
    )
    func replies(codes: [Int], recipientStatuses: [RecipientStatus], status: EmailStatus, reason: String?) throws {
        let (service, directory) = try service()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let email = claimed(recipients: ["a@x.example", "b@x.example"], createdAt: Self.now)
        let result = SMTPSendResult(
            recipients: zip(email.recipients, codes).map { RecipientReply(recipient: $0.address, reply: reply($1, "\($1 / 100).0.0")) },
            transcript: ["S: 220"],
            nextHop: "relay:25"
        )
        let record = service.decide(email, startedAt: Self.now, outcome: .replies(result))
        #expect(record.recipients.map(\.status) == recipientStatuses)
        #expect(record.recipients.map(\.code) == codes)
        #expect(record.status == status)
        #expect(record.failureReason == reason)
        #expect(record.nextHop == "relay:25")
        #expect((record.nextAttemptAt != nil) == (status == .deferred))
        if status == .deferred { #expect(record.nextAttemptAt == Self.now + 60) }
    }

    @Test("A transient session failure defers every open recipient; a permanent one fails them")
    func sessionFailures() throws {
        let (service, directory) = try service()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let email = claimed(recipients: ["a@x.example", "b@x.example"], createdAt: Self.now)
        let transient = SMTPClientError(kind: .connect, isTransient: true, message: "connection refused")
        let deferred = service.decide(email, startedAt: Self.now, outcome: .failure(transient))
        #expect(deferred.status == .deferred)
        #expect(deferred.recipients.allSatisfy { $0.status == .deferred && $0.code == nil })
        #expect(deferred.error?.contains("connection refused") == true)

        let auth = SMTPClientError(kind: .authentication, reply: reply(535, "5.7.8", "bad credentials"), isTransient: false, message: "AUTH refused")
        let failed = service.decide(email, startedAt: Self.now, outcome: .failure(auth))
        #expect(failed.status == .failed)
        #expect(failed.recipients.allSatisfy { $0.status == .failed && $0.code == 535 && $0.enhancedCode == "5.7.8" })
    }

    @Test("A deferral past the deadline fails as expired")
    func expiry() throws {
        let (service, directory) = try service(RetryPolicy(schedule: [.seconds(3600)], maxQueueLifetime: .seconds(1800), jitter: 0))
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let email = claimed(recipients: ["a@x.example", "b@x.example"], createdAt: Self.now)
        let result = SMTPSendResult(
            recipients: [RecipientReply(recipient: "a@x.example", reply: reply(250)), RecipientReply(recipient: "b@x.example", reply: reply(451))],
            transcript: [],
            nextHop: "relay:25"
        )
        let record = service.decide(email, startedAt: Self.now, outcome: .replies(result))
        #expect(record.status == .partiallyFailed)
        #expect(record.failureReason == "expired")
        #expect(record.recipients.map(\.status) == [.sent, .failed])
        #expect(record.nextAttemptAt == nil)

        let old = claimed(recipients: ["a@x.example"], createdAt: Self.now - 7200)
        let expired = service.decide(old, startedAt: Self.now, outcome: .expired)
        #expect(expired.status == .failed)
        #expect(expired.failureReason == "expired")
    }

    @Test("Recipients decided earlier keep their status")
    func earlierRecipients() throws {
        let (service, directory) = try service()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var email = claimed(recipients: ["b@x.example"], attempt: 2, createdAt: Self.now)
        email.recipients = [.init(position: 1, address: "b@x.example", status: .deferred)]
        email.allRecipientStatuses = [0: .sent, 1: .deferred]
        let result = SMTPSendResult(recipients: [RecipientReply(recipient: "b@x.example", reply: reply(250))], transcript: [], nextHop: "r")
        let record = service.decide(email, startedAt: Self.now, outcome: .replies(result))
        #expect(record.status == .sent)
        #expect(record.recipients.map(\.position) == [1])
    }
}

@Suite("Delivery service")
struct DeliveryServiceTests {
    @Test("Graceful shutdown finishes the attempt in flight and leaves nothing sending")
    func gracefulShutdown() async throws {
        let smtp = TestSMTPServer()
        try await smtp.start()
        // Every DATA end waits a little, so shutdown arrives mid-attempt.
        smtp.setHandler { command in
            command.verb == SMTPCommandContext.endOfDataVerb ? .delayed(.milliseconds(300), .standard) : .standard
        }
        let (outbox, directory) = try temporaryOutbox()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for _ in 0..<20 {
            _ = try await outbox.enqueue(
                NewEmail(
                    from: "a@acme.example",
                    mailFrom: "a@acme.example",
                    subject: "s",
                    messageID: "<\(UUID())@acme.example>",
                    data: Array("Subject: s\r\n\r\nbody\r\n".utf8),
                    recipients: [.init(address: "b@example.com", kind: .to)]
                )
            )
        }
        let client = SMTPClient(configuration: try SMTPRelayConfiguration(url: "smtp://127.0.0.1:\(smtp.port)?tls=none"))
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let service = DeliveryService(
            outbox: outbox,
            sender: client,
            policy: .default,
            configuration: DeliveryConfiguration(concurrency: 2, claimBatch: 4, pollInterval: .milliseconds(50)),
            logger: logger
        )
        let group = ServiceGroup(configuration: .init(services: [service], logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            _ = try await smtp.waitForMessages(count: 1, timeout: .seconds(10))
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        await client.shutdown()
        let counts = try await outbox.countByStatus()
        #expect(counts[.sending] == nil, "left sending: \(counts)")
        #expect((counts[.sent] ?? 0) >= 1)
        #expect((counts[.sent] ?? 0) + (counts[.queued] ?? 0) == 20)
        #expect((counts[.sent] ?? 0) == smtp.messages.count)
    }
}
