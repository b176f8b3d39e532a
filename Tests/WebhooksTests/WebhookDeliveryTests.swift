import Foundation
import Logging
import Outbox
import Synchronization
import Testing
import Webhooks

/// A clock the tests move by hand: backoff is tested without sleeping.
final class TestClock: Sendable {
    private let date = Mutex(Date(timeIntervalSince1970: 1_800_000_000))

    func now() -> Date { date.withLock { $0 } }
    func advance(seconds: Double) { date.withLock { $0 = $0.addingTimeInterval(seconds) } }
}

/// A temporary SQLite outbox with a test clock, an endpoint, and a webhook service
/// delivering to a real local HTTP receiver.
struct Fixture {
    let directory: String
    let outbox: SQLiteOutbox
    let clock = TestClock()
    let receiver: TestHTTPReceiver

    init(receiver: TestHTTPReceiver) async throws {
        directory = NSTemporaryDirectory() + "pigeon-webhooks-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let clock = self.clock
        outbox = try SQLiteOutbox(path: directory + "/outbox.sqlite", options: .init(synchronousFull: false)) { clock.now() }
        self.receiver = receiver
        try await receiver.start()
    }

    func remove() async {
        await receiver.stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    func createEndpoint(types: [EventType] = []) async throws -> WebhookEndpointWithSecret {
        try await outbox.createEndpoint(NewWebhookEndpoint(url: receiver.url, eventTypes: types), now: clock.now())
    }

    /// Commits an email; its `email.queued` event fans out to the endpoints.
    @discardableResult
    func enqueue() async throws -> String {
        let email = NewEmail(
            from: "noreply@acme.example",
            mailFrom: "noreply@acme.example",
            subject: "Hi",
            messageID: "<\(UUID().uuidString)@acme.example>",
            data: Array("Subject: Hi\r\n\r\nHello\r\n".utf8),
            recipients: [.init(address: "ada@example.com", kind: .to)]
        )
        return try await outbox.enqueue(email).id
    }

    func service(
        timeout: Duration = .seconds(5),
        policy: WebhookRetryPolicy = .standard,
        maxConsecutiveFailures: Int = 10,
        resolver: any WebhookResolver = FakeResolver([:])
    ) -> WebhookService {
        var logger = Logger(label: "webhooks-test")
        logger.logLevel = .critical
        let clock = self.clock
        return WebhookService(
            store: outbox,
            transport: NIOWebhookClient(policy: AddressPolicy(allowPrivate: true), resolver: resolver),
            configuration: WebhookConfiguration(
                allowPrivate: true,
                timeout: timeout,
                retryPolicy: policy,
                maxConsecutiveFailures: maxConsecutiveFailures
            ),
            logger: logger,
            now: { clock.now() }
        )
    }
}

@Suite("Webhook delivery to a real local HTTP receiver")
struct WebhookDeliveryTests {
    @Test(
        "500, a timeout and a reset are retried on the schedule with the same webhook-id",
        arguments: [TestHTTPReceiver.Behavior.respond(500), .hang, .reset]
    )
    func retriedWithSameID(failure: TestHTTPReceiver.Behavior) async throws {
        let receiver = TestHTTPReceiver { index in index == 0 ? failure : .respond(204) }
        let fixture = try await Fixture(receiver: receiver)
        let endpoint = try await fixture.createEndpoint()
        try await fixture.enqueue()
        let service = fixture.service(timeout: .milliseconds(500))

        #expect(await service.deliverDue(limit: 10) == 1)
        var deliveries = try await fixture.outbox.deliveries(endpointID: endpoint.endpoint.id, limit: 10)
        #expect(deliveries.count == 1)
        #expect(deliveries[0].status == .pending)
        #expect(deliveries[0].attempts.map(\.outcome) == ["retrying"])
        let next = try #require(deliveries[0].nextAttemptAt)
        #expect(abs(next.timeIntervalSince(fixture.clock.now()) - 5) < 0.01)  // first retry after 5 s

        fixture.clock.advance(seconds: 4)
        #expect(await service.deliverDue(limit: 10) == 0)  // not due yet
        fixture.clock.advance(seconds: 1)
        #expect(await service.deliverDue(limit: 10) == 1)

        deliveries = try await fixture.outbox.deliveries(endpointID: endpoint.endpoint.id, limit: 10)
        #expect(deliveries[0].status == .succeeded)
        #expect(deliveries[0].attempts.map(\.outcome) == ["retrying", "succeeded"])
        #expect(deliveries[0].attempts[1].responseStatus == 204)
        let requests = receiver.requests
        #expect(requests.count == 2)
        #expect(requests[0].headers["webhook-id"] == deliveries[0].eventID)
        #expect(requests[1].headers["webhook-id"] == deliveries[0].eventID)
        #expect(requests[0].body == requests[1].body)
        // Each attempt is signed with its own timestamp.
        let secret = try WebhookSecret(endpoint.secret)
        for request in requests {
            let timestamp = try #require(Int64(request.headers["webhook-timestamp"] ?? ""))
            let expected = WebhookSigner.signature(id: deliveries[0].eventID, timestamp: timestamp, body: request.body, secrets: [secret])
            #expect(request.headers["webhook-signature"] == expected)
        }
        #expect(Int64(requests[1].headers["webhook-timestamp"] ?? "") == Int64(fixture.clock.now().timeIntervalSince1970))
        switch failure {
        case .respond: #expect(deliveries[0].attempts[0].responseStatus == 500)
        case .hang: #expect(deliveries[0].attempts[0].error == "timeout")
        case .reset:
            // The RST may come before or after the client's last write: either way no answer came.
            #expect(["connection reset", "connection closed without a response"].contains(deliveries[0].attempts[0].error ?? ""))
        }
        await fixture.remove()
    }

    @Test("Each finished attempt reports the service's decision: succeeded, retrying, failed for good, gone")
    func attemptOutcomesReported() async throws {
        // Email 1: 200. Email 2: 500, then 500 on its one retry. Email 3: 410.
        let receiver = TestHTTPReceiver { index in
            switch index {
            case 0: .respond(200)
            case 1, 2: .respond(500)
            default: .respond(410)
            }
        }
        let fixture = try await Fixture(receiver: receiver)
        _ = try await fixture.createEndpoint()
        var service = fixture.service(policy: WebhookRetryPolicy(schedule: [.seconds(5)]))
        let reported = Mutex<[String]>([])
        service.onAttemptFinished = { outcome in
            let name =
                switch outcome {
                case .succeeded: "succeeded"
                case .retry: "retrying"
                case .failed: "failed"
                case .endpointGone: "gone"
                }
            reported.withLock { $0.append(name) }
        }

        try await fixture.enqueue()
        #expect(await service.deliverDue(limit: 10) == 1)
        #expect(reported.withLock { $0 } == ["succeeded"])
        try await fixture.enqueue()
        #expect(await service.deliverDue(limit: 10) == 1)
        #expect(reported.withLock { $0 } == ["succeeded", "retrying"])
        fixture.clock.advance(seconds: 5)
        #expect(await service.deliverDue(limit: 10) == 1)
        #expect(reported.withLock { $0 } == ["succeeded", "retrying", "failed"])
        try await fixture.enqueue()
        #expect(await service.deliverDue(limit: 10) == 1)
        #expect(reported.withLock { $0 } == ["succeeded", "retrying", "failed", "gone"])
        #expect(receiver.requests.count == 4)
        await fixture.remove()
    }

    @Test("The body is the event, in Standard Webhooks' envelope, with the event's data")
    func body() async throws {
        let receiver = TestHTTPReceiver()
        let fixture = try await Fixture(receiver: receiver)
        _ = try await fixture.createEndpoint()
        let emailID = try await fixture.enqueue()
        await fixture.service().deliverDue(limit: 10)
        let request = try #require(receiver.requests.first)
        #expect(request.path == "/hooks")
        #expect(request.headers["content-type"] == "application/json")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any])
        #expect(json["type"] as? String == "email.queued")
        #expect(json["id"] as? String == request.headers["webhook-id"])
        let data = try #require(json["data"] as? [String: Any])
        #expect(data["email_id"] as? String == emailID)
        #expect(data["status"] as? String == "queued")
        await fixture.remove()
    }

    @Test("410 Gone fails the delivery and disables the endpoint; later events make no deliveries")
    func goneDisables() async throws {
        let receiver = TestHTTPReceiver { _ in .respond(410) }
        let fixture = try await Fixture(receiver: receiver)
        let endpoint = try await fixture.createEndpoint()
        try await fixture.enqueue()
        await fixture.service().deliverDue(limit: 10)
        let stored = try #require(try await fixture.outbox.endpoint(id: endpoint.endpoint.id))
        #expect(!stored.enabled)
        #expect(stored.disabledReason == .gone)
        try await fixture.enqueue()
        let deliveries = try await fixture.outbox.deliveries(endpointID: endpoint.endpoint.id, limit: 10)
        #expect(deliveries.count == 1)
        #expect(deliveries[0].status == .failed)
        #expect(receiver.requests.count == 1)
        await fixture.remove()
    }

    @Test("A redirect is a failure and is not followed")
    func redirectIsFailure() async throws {
        let receiver = TestHTTPReceiver { index in
            index == 0 ? .respond(307, [("Location", "/elsewhere")]) : .respond(204)
        }
        let fixture = try await Fixture(receiver: receiver)
        let endpoint = try await fixture.createEndpoint()
        try await fixture.enqueue()
        await fixture.service().deliverDue(limit: 10)
        let deliveries = try await fixture.outbox.deliveries(endpointID: endpoint.endpoint.id, limit: 10)
        #expect(deliveries[0].status == .pending)
        #expect(deliveries[0].attempts.first?.responseStatus == 307)
        #expect(deliveries[0].attempts.first?.outcome == "retrying")
        #expect(receiver.requests.map(\.path) == ["/hooks"])
        await fixture.remove()
    }

    @Test("Retry-After is honoured on 429 and 503")
    func retryAfter() async throws {
        let receiver = TestHTTPReceiver { index in
            index == 0 ? .respond(429, [("Retry-After", "120")]) : .respond(503, [("Retry-After", "7")])
        }
        let fixture = try await Fixture(receiver: receiver)
        let endpoint = try await fixture.createEndpoint()
        try await fixture.enqueue()
        let service = fixture.service()
        await service.deliverDue(limit: 10)
        var delivery = try #require(try await fixture.outbox.deliveries(endpointID: endpoint.endpoint.id, limit: 1).first)
        #expect(abs((delivery.nextAttemptAt?.timeIntervalSince(fixture.clock.now()) ?? 0) - 120) < 0.01)
        fixture.clock.advance(seconds: 119)
        #expect(await service.deliverDue(limit: 10) == 0)
        fixture.clock.advance(seconds: 1)
        #expect(await service.deliverDue(limit: 10) == 1)
        delivery = try #require(try await fixture.outbox.deliveries(endpointID: endpoint.endpoint.id, limit: 1).first)
        #expect(abs((delivery.nextAttemptAt?.timeIntervalSince(fixture.clock.now()) ?? 0) - 7) < 0.01)
        await fixture.remove()
    }

    @Test("After the last retry the delivery fails; N such deliveries in a row disable the endpoint")
    func consecutiveFailuresDisable() async throws {
        let receiver = TestHTTPReceiver { _ in .respond(500) }
        let fixture = try await Fixture(receiver: receiver)
        let endpoint = try await fixture.createEndpoint()
        try await fixture.enqueue()
        try await fixture.enqueue()
        let service = fixture.service(policy: WebhookRetryPolicy(schedule: [.seconds(1), .seconds(2)]), maxConsecutiveFailures: 2)
        #expect(await service.deliverDue(limit: 10) == 2)
        fixture.clock.advance(seconds: 1)
        #expect(await service.deliverDue(limit: 10) == 2)
        fixture.clock.advance(seconds: 2)
        #expect(await service.deliverDue(limit: 10) == 2)
        let deliveries = try await fixture.outbox.deliveries(endpointID: endpoint.endpoint.id, limit: 10)
        #expect(deliveries.map(\.status) == [.failed, .failed])
        #expect(deliveries.allSatisfy { $0.attempts.map(\.outcome) == ["retrying", "retrying", "failed"] })
        let stored = try #require(try await fixture.outbox.endpoint(id: endpoint.endpoint.id))
        #expect(!stored.enabled)
        #expect(stored.disabledReason == .failures)
        #expect(stored.consecutiveFailures == 2)
        #expect(receiver.requests.count == 6)

        // Enabling it again resets the count; a success also would.
        let enabled = try #require(
            try await fixture.outbox.updateEndpoint(id: stored.id, WebhookEndpointUpdate(enabled: true), now: fixture.clock.now())
        )
        #expect(enabled.enabled && enabled.consecutiveFailures == 0 && enabled.disabledReason == nil)
        await fixture.remove()
    }

    @Test("After a rotation both secrets sign until the grace period ends")
    func rotation() async throws {
        let receiver = TestHTTPReceiver()
        let fixture = try await Fixture(receiver: receiver)
        let created = try await fixture.createEndpoint()
        let rotated = try #require(
            try await fixture.outbox.rotateSecret(id: created.endpoint.id, gracePeriod: .seconds(3600), now: fixture.clock.now())
        )
        #expect(rotated.secret != created.secret)
        try await fixture.enqueue()
        let service = fixture.service()
        await service.deliverDue(limit: 10)
        fixture.clock.advance(seconds: 3601)
        try await fixture.enqueue()
        await service.deliverDue(limit: 10)
        let requests = receiver.requests
        #expect(requests.count == 2)
        let new = try WebhookSecret(rotated.secret)
        let old = try WebhookSecret(created.secret)
        func expected(_ request: TestHTTPReceiver.Received, _ secrets: [WebhookSecret]) -> String {
            WebhookSigner.signature(
                id: request.headers["webhook-id"] ?? "",
                timestamp: Int64(request.headers["webhook-timestamp"] ?? "") ?? 0,
                body: request.body,
                secrets: secrets
            )
        }
        #expect(requests[0].headers["webhook-signature"] == expected(requests[0], [new, old]))
        #expect(requests[1].headers["webhook-signature"] == expected(requests[1], [new]))
        await fixture.remove()
    }

    @Test("Deliveries fan out only to enabled endpoints subscribed to the type, once per event and endpoint")
    func fanOut() async throws {
        let fixture = try await Fixture(receiver: TestHTTPReceiver())
        let all = try await fixture.createEndpoint()
        let sentOnly = try await fixture.createEndpoint(types: [.sent])
        let disabled = try await fixture.outbox.createEndpoint(
            NewWebhookEndpoint(url: fixture.receiver.url, enabled: false),
            now: fixture.clock.now()
        )
        try await fixture.enqueue()
        #expect(try await fixture.outbox.deliveries(endpointID: all.endpoint.id, limit: 10).count == 1)
        #expect(try await fixture.outbox.deliveries(endpointID: sentOnly.endpoint.id, limit: 10).isEmpty)
        #expect(try await fixture.outbox.deliveries(endpointID: disabled.endpoint.id, limit: 10).isEmpty)
        #expect(disabled.endpoint.disabledReason == .user)
        await fixture.remove()
    }
}

@Suite("SSRF at connect time: nothing is sent to a refused address")
struct ConnectTimeSSRFTests {
    @Test(
        "Loopback targets are refused at connect time without the allow setting",
        arguments: [
            "http://127.0.0.1:PORT/hooks", "http://[::1]:PORT/hooks", "http://0x7f000001:PORT/hooks", "http://localhost:PORT/hooks",
            "http://rebind.example.com:PORT/hooks",
        ]
    )
    func refusedAtConnect(template: String) async throws {
        let receiver = TestHTTPReceiver()
        try await receiver.start()
        let url = try WebhookURL(template.replacingOccurrences(of: "PORT", with: String(receiver.port)))
        let client = NIOWebhookClient(
            policy: AddressPolicy(allowPrivate: false),
            resolver: FakeResolver(["rebind.example.com": [.v4(0x7F00_0001)], "localhost": [.v4(0x7F00_0001)]])
        )
        await #expect(throws: WebhookTransportError.self) {
            try await client.send(WebhookRequest(url: url, headers: [], body: []), timeout: .seconds(2))
        }
        do throws(WebhookTransportError) {
            _ = try await client.send(WebhookRequest(url: url, headers: [], body: []), timeout: .seconds(2))
        } catch {
            guard case .refused = error else {
                Issue.record("expected refused, got \(error)")
                return
            }
        }
        #expect(receiver.requests.isEmpty)
        await receiver.stop()
    }

    @Test("DNS rebinding: a name that passed the check at creation and resolves to loopback later is refused at connect time")
    func rebinding() async throws {
        let receiver = TestHTTPReceiver()
        try await receiver.start()
        let resolver = FakeResolver(sequence: ["rebind.example.com": [[.v4(0x5DB8_D822)], [.v4(0x7F00_0001)]]])
        let policy = AddressPolicy(allowPrivate: false)
        let text = "http://rebind.example.com:\(receiver.port)/hooks"
        _ = try await WebhookURLChecker(policy: policy, resolver: resolver).check(text)  // creation: 93.184.216.34, fine
        let client = NIOWebhookClient(policy: policy, resolver: resolver)
        let url = try WebhookURL(text)
        do throws(WebhookTransportError) {
            _ = try await client.send(WebhookRequest(url: url, headers: [], body: []), timeout: .seconds(2))
            Issue.record("the request was sent")
        } catch {
            #expect(error == .refused(.forbiddenAddress(host: "rebind.example.com", address: "127.0.0.1", category: .loopback)))
        }
        #expect(receiver.requests.isEmpty)
        await receiver.stop()
    }

    @Test("With the allow setting, a name resolving to loopback is delivered to")
    func allowedWithSetting() async throws {
        let receiver = TestHTTPReceiver()
        try await receiver.start()
        let client = NIOWebhookClient(policy: AddressPolicy(allowPrivate: true), resolver: FakeResolver(["hooks.example.com": [.v4(0x7F00_0001)]]))
        let url = try WebhookURL("http://hooks.example.com:\(receiver.port)/hooks")
        let response = try await client.send(
            WebhookRequest(url: url, headers: [("webhook-id", "evt_1")], body: Array("{}".utf8)),
            timeout: .seconds(2)
        )
        #expect(response.status == 204)
        #expect(receiver.requests.first?.headers["host"] == "hooks.example.com:\(receiver.port)")
        await receiver.stop()
    }
}

@Suite("Webhook retry policy")
struct WebhookRetryPolicyTests {
    @Test("Standard Webhooks schedule: 8 attempts, then failed")
    func schedule() {
        let policy = WebhookRetryPolicy.standard
        let now = Date(timeIntervalSince1970: 0)
        let expected: [Double] = [5, 300, 1800, 7200, 18_000, 36_000, 36_000]
        for (index, seconds) in expected.enumerated() {
            #expect(
                policy.outcome(afterAttempt: index + 1, result: .success(.init(status: 500)), now: now)
                    == .retry(at: Date(timeIntervalSince1970: seconds))
            )
        }
        #expect(policy.outcome(afterAttempt: 8, result: .success(.init(status: 500)), now: now) == .failed)
        #expect(policy.outcome(afterAttempt: 8, result: .success(.init(status: 200)), now: now) == .succeeded)
        #expect(policy.outcome(afterAttempt: 1, result: .success(.init(status: 299)), now: now) == .succeeded)
        #expect(policy.outcome(afterAttempt: 1, result: .success(.init(status: 301)), now: now) == .retry(at: Date(timeIntervalSince1970: 5)))
        #expect(policy.outcome(afterAttempt: 1, result: .success(.init(status: 410)), now: now) == .endpointGone)
        #expect(policy.outcome(afterAttempt: 1, result: .failure(.timeout), now: now) == .retry(at: Date(timeIntervalSince1970: 5)))
        // Retry-After only on 429 and 503, capped.
        #expect(
            policy.outcome(afterAttempt: 1, result: .success(.init(status: 500, retryAfter: "60")), now: now)
                == .retry(at: Date(timeIntervalSince1970: 5))
        )
        #expect(
            policy.outcome(afterAttempt: 1, result: .success(.init(status: 503, retryAfter: "999999")), now: now)
                == .retry(at: Date(timeIntervalSince1970: 36_000))
        )
    }

    @Test("Retry-After as seconds or an HTTP date; garbage ignored")
    func retryAfterParsing() {
        let now = Date(timeIntervalSince1970: 1_445_412_480)  // Wed, 21 Oct 2015 07:28:00 GMT
        #expect(WebhookRetryPolicy.parseRetryAfter("120", now: now) == .seconds(120))
        #expect(WebhookRetryPolicy.parseRetryAfter("Wed, 21 Oct 2015 07:29:00 GMT", now: now) == .seconds(60))
        #expect(WebhookRetryPolicy.parseRetryAfter("soon", now: now) == nil)
        #expect(WebhookRetryPolicy.parseRetryAfter("-5", now: now) == nil)
    }

    @Test("Schedules parse; bad ones name the problem")
    func parsing() throws {
        #expect(try WebhookRetryPolicy.parseSchedule("5s,5m,30m,2h,5h,10h,10h") == WebhookRetryPolicy.standard.schedule)
        #expect(try WebhookRetryPolicy.parseSchedule("250ms") == [.milliseconds(250)])
        #expect(throws: WebhookSettingError.self) { try WebhookRetryPolicy.parseSchedule("5x") }
        #expect(throws: WebhookSettingError.self) { try WebhookRetryPolicy.parseSchedule("") }
    }
}

@Suite("Webhook delivery leases")
struct WebhookLeaseTests {
    @Test("A claimed delivery is not claimed twice; an attempt that never got recorded is made again when its lease runs out")
    func lease() async throws {
        let fixture = try await Fixture(receiver: TestHTTPReceiver())
        let endpoint = try await fixture.createEndpoint()
        try await fixture.enqueue()
        let now = fixture.clock.now()
        let first = try await fixture.outbox.claimDueDeliveries(now: now, limit: 10, leaseUntil: now.addingTimeInterval(75))
        #expect(first.count == 1)
        #expect(first.first?.attemptNumber == 1)
        #expect(try await fixture.outbox.claimDueDeliveries(now: now, limit: 10, leaseUntil: now.addingTimeInterval(75)).isEmpty)

        // The process died mid-POST: nothing was recorded. After the lease the same attempt is made again.
        fixture.clock.advance(seconds: 74)
        #expect(try await fixture.outbox.claimDueDeliveries(now: fixture.clock.now(), limit: 10, leaseUntil: now).isEmpty)
        fixture.clock.advance(seconds: 1)
        let again = try await fixture.outbox.claimDueDeliveries(
            now: fixture.clock.now(),
            limit: 10,
            leaseUntil: fixture.clock.now().addingTimeInterval(75)
        )
        #expect(again.map(\.deliveryID) == first.map(\.deliveryID))
        #expect(again.first?.attemptNumber == 1)
        #expect(again.first?.webhookID == first.first?.webhookID)

        // A stale record (same attempt number twice) is ignored.
        let record = WebhookAttemptRecord(
            deliveryID: again[0].deliveryID,
            attemptNumber: 1,
            startedAt: fixture.clock.now(),
            finishedAt: fixture.clock.now(),
            responseStatus: 204,
            error: nil,
            outcome: .succeeded,
            maxConsecutiveFailures: 10
        )
        try await fixture.outbox.recordDeliveryAttempt(record)
        try await fixture.outbox.recordDeliveryAttempt(record)
        let deliveries = try await fixture.outbox.deliveries(endpointID: endpoint.endpoint.id, limit: 10)
        #expect(deliveries.first?.attempts.count == 1)
        #expect(deliveries.first?.status == .succeeded)
        await fixture.remove()
    }

    @Test("The default endpoint follows PIGEON_WEBHOOK_URL: created, updated in place, removed")
    func defaultEndpoint() async throws {
        let fixture = try await Fixture(receiver: TestHTTPReceiver())
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        try await fixture.outbox.configureDefaultEndpoint(url: "http://127.0.0.1:1/a", secret: secret, now: fixture.clock.now())
        let created = try #require(try await fixture.outbox.listEndpoints().first)
        #expect(created.isDefault && created.url == "http://127.0.0.1:1/a" && created.eventTypes == EventType.allCases)
        try await fixture.outbox.configureDefaultEndpoint(url: "http://127.0.0.1:1/b", secret: secret, now: fixture.clock.now())
        let endpoints = try await fixture.outbox.listEndpoints()
        #expect(endpoints.count == 1)
        #expect(endpoints.first?.id == created.id)
        #expect(endpoints.first?.url == "http://127.0.0.1:1/b")
        try await fixture.outbox.configureDefaultEndpoint(url: nil, secret: nil, now: fixture.clock.now())
        #expect(try await fixture.outbox.listEndpoints().isEmpty)
        await fixture.remove()
    }
}
