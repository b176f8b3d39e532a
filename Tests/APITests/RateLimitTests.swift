import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Outbox
import Testing

@testable import API

@Suite("Token bucket (PIGEON_RATE_LIMIT)")
struct TokenBucketTests {
    @Test("a full bucket allows `burst` at once, then one per 1/rate seconds")
    func burstThenRate() {
        var bucket = TokenBucket(limit: RateLimit(rate: 2, burst: 3), now: 100)
        for _ in 0..<3 { #expect(bucket.take(now: 100) == nil) }
        #expect(bucket.take(now: 100) == .milliseconds(500))
        #expect(bucket.take(now: 100.25) == .milliseconds(250))
        #expect(bucket.take(now: 100.5) == nil)
        #expect(bucket.take(now: 100.5) != nil)
    }

    @Test("the bucket refills up to its size, never beyond")
    func refillIsCapped() {
        var bucket = TokenBucket(limit: RateLimit(rate: 10, burst: 2), now: 0)
        #expect(bucket.take(now: 0) == nil)
        #expect(bucket.take(now: 0) == nil)
        // An hour idle gives back 2 tokens, not 36,000.
        #expect(bucket.take(now: 3600) == nil)
        #expect(bucket.take(now: 3600) == nil)
        #expect(bucket.take(now: 3600) != nil)
    }

    @Test("a clock that goes backwards adds nothing")
    func clockBackwards() {
        var bucket = TokenBucket(limit: RateLimit(rate: 1, burst: 1), now: 50)
        #expect(bucket.take(now: 50) == nil)
        #expect(bucket.take(now: 10) == .seconds(1))
    }

    @Test("several tokens are taken all or none; the wait is for the retry's whole cost")
    func takeSeveral() {
        var bucket = TokenBucket(limit: RateLimit(rate: 1, burst: 10), now: 0)
        #expect(bucket.take(8, now: 0) == nil)
        #expect(bucket.tokens == 2)
        // 7 more do not fit: none are taken, and a retry needing 8 waits for 6 more tokens.
        #expect(bucket.take(7, now: 0, retryCost: 8) == .seconds(6))
        #expect(bucket.tokens == 2)
        #expect(bucket.take(2, now: 0) == nil)
        // A cost above the burst waits only for a full bucket (the batch handler refuses such a cost first).
        #expect(bucket.take(20, now: 0) == .seconds(10))
    }

    @Test("the limiter keeps one bucket per key")
    func perKey() {
        let limiter = RateLimiter(limit: RateLimit(rate: 1, burst: 1)) { 0 }
        #expect(limiter.take("a") == nil)
        #expect(limiter.take("a") != nil)
        #expect(limiter.take("b") == nil)
    }

    @Test(
        "X-Request-Id: sane values kept, others replaced",
        arguments: [
            ("abc-123", true), ("req_01J:xyz/+=.", true), ("", false), ("a b", false), ("é", false),
            (String(repeating: "a", count: 128), true), (String(repeating: "a", count: 129), false), ("a\r\nb", false),
        ]
    )
    func requestID(_ value: String, _ kept: Bool) {
        #expect((RequestLogMiddleware<BasicRequestContext>.sanitized(value) != nil) == kept)
    }

    @Test("the sender policy compares the envelope domain, case-insensitively; no domains means any")
    func senderPolicy() {
        let principal = APIPrincipal(keyID: "ak_1", scope: .send, fromDomains: ["acme.example"], identity: "x")
        #expect(principal.maySend(from: "noreply@acme.example"))
        #expect(principal.maySend(from: "noreply@ACME.example"))
        #expect(!principal.maySend(from: "noreply@evil.example"))
        #expect(!principal.maySend(from: "noreply@sub.acme.example"))
        #expect(!principal.maySend(from: "acme.example"))
        #expect(APIPrincipal(keyID: "env", scope: .admin, fromDomains: [], identity: "x").maySend(from: "a@b.example"))
    }
}

/// `PIGEON_RATE_LIMIT` counts emails: a batch costs one token per email.
@Suite("Rate limit in emails: a batch costs one per email")
struct BatchRateLimitTests {
    static let key = "rate-test-key-0123456789abcdef"

    /// The routes over a temporary outbox with a 0.1/s, burst 10 limit (refill is
    /// negligible while a test runs, so the token counts below are exact).
    func withAPI(_ body: @Sendable (any TestClientProtocol, SQLiteOutbox) async throws -> Void) async throws {
        var configuration = APIConfiguration(apiKeys: [Self.key])
        configuration.rateLimit = RateLimit(rate: 0.1, burst: 10)
        // Time stands still unless a test moves it: no refill between requests, however slow the machine.
        configuration.rateLimitClock = { 1_000 }
        try await withRoutes(configuration, body)
    }

    static func email(_ index: Int) -> String {
        #"{"from": "noreply@acme.example", "to": ["user\#(index)@example.com"], "subject": "Hi", "text": "x"}"#
    }

    static func batch(_ count: Int) -> ByteBuffer {
        ByteBuffer(string: #"{"emails": ["# + (0..<count).map(email).joined(separator: ",") + "]}")
    }

    /// A batch whose every email has a bad From.
    static func invalidBatch(_ count: Int) -> ByteBuffer {
        let email = #"{"from": "nope", "to": ["ada@example.com"], "subject": "s", "text": "x"}"#
        return ByteBuffer(string: #"{"emails": ["# + Array(repeating: email, count: count).joined(separator: ",") + "]}")
    }

    func post(_ client: any TestClientProtocol, _ uri: String, _ body: ByteBuffer, idempotencyKey: String? = nil) async throws -> TestResponse {
        var headers: HTTPFields = [.authorization: "Bearer \(Self.key)", .contentType: "application/json"]
        if let idempotencyKey { headers[HTTPField.Name("Idempotency-Key")!] = idempotencyKey }
        return try await client.execute(uri: uri, method: .post, headers: headers, body: body)
    }

    func ids(_ response: TestResponse) throws -> [String] {
        let object = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
        return (object?["data"] as? [[String: Any]])?.compactMap { $0["id"] as? String } ?? []
    }

    func stored(_ outbox: SQLiteOutbox) async throws -> Int {
        try await outbox.countByStatus().values.reduce(0, +)
    }

    @Test("burst 10: a batch of 8 passes; a second batch of 8 is 429 with Retry-After and stores nothing")
    func secondBatchIsLimited() async throws {
        try await withAPI { client, outbox in
            #expect(try await post(client, "/v1/emails/batch", Self.batch(8)).status == .accepted)
            #expect(try await stored(outbox) == 8)

            let limited = try await post(client, "/v1/emails/batch", Self.batch(8))
            #expect(limited.status == .tooManyRequests)
            #expect(limited.headers[.contentType]?.hasPrefix("application/problem+json") == true)
            // The request took 1 of the 2 tokens left; the retry needs all 8: 7 more at 0.1/s.
            #expect(limited.headers[.retryAfter] == "70")
            let problem = try JSONDecoder().decode(ProblemDocument.self, from: Data(limited.body.readableBytesView))
            #expect(problem.type == "https://pigeon.dev/problems/rate-limited")
            #expect(problem.status == 429)
            #expect(try await stored(outbox) == 8)

            // The refused batch took only its request's token: one email still passes, then the bucket is empty.
            let single = ByteBuffer(string: Self.email(99))
            #expect(try await post(client, "/v1/emails", single).status == .accepted)
            #expect(try await post(client, "/v1/emails", single).status == .tooManyRequests)
            #expect(try await stored(outbox) == 9)
        }
    }

    @Test("a retried batch (same Idempotency-Key) is answered as the first was, even with an empty bucket, and costs only its request")
    func replayIsNotRefused() async throws {
        try await withAPI { client, outbox in
            let first = try await post(client, "/v1/emails/batch", Self.batch(8), idempotencyKey: "retry-me")
            #expect(first.status == .accepted)
            // 2 tokens left; the replay's request takes 1 and its batch cannot be charged: answered anyway.
            let replay = try await post(client, "/v1/emails/batch", Self.batch(8), idempotencyKey: "retry-me")
            #expect(replay.status == .accepted)
            let firstIDs = try ids(first)
            #expect(firstIDs.count == 8)
            #expect(try ids(replay) == firstIDs)
            #expect(try await stored(outbox) == 8)
            // The same key with another body is still a conflict, not a 429.
            #expect(try await post(client, "/v1/emails/batch", Self.batch(7), idempotencyKey: "retry-me").status == .conflict)
        }
    }

    @Test("tokens charged to a batch that the outbox answers from an earlier request are given back")
    func replayRefunds() async throws {
        try await withAPI { client, outbox in
            let first = try await post(client, "/v1/emails/batch", Self.batch(4), idempotencyKey: "k")
            #expect(first.status == .accepted)
            // 6 left: the replay takes 1 + 3, the outbox replays, the 3 come back: 5 left.
            #expect(try await post(client, "/v1/emails/batch", Self.batch(4), idempotencyKey: "k").status == .accepted)
            #expect(try await stored(outbox) == 4)
            // A new batch of 5 needs all 5 (1 + 4): it passes only if the 3 came back.
            #expect(try await post(client, "/v1/emails/batch", Self.batch(5)).status == .accepted)
            #expect(try await stored(outbox) == 9)
            #expect(try await post(client, "/v1/emails", ByteBuffer(string: Self.email(99))).status == .tooManyRequests)
        }
    }

    @Test("a batch larger than the burst can never pass: 422 naming `emails`, nothing stored, no tokens spent beyond the request's")
    func batchOverBurst() async throws {
        try await withAPI { client, outbox in
            let response = try await post(client, "/v1/emails/batch", Self.batch(11))
            #expect(response.status == .unprocessableContent)
            let problem = try JSONDecoder().decode(ProblemDocument.self, from: Data(response.body.readableBytesView))
            #expect(problem.errors?.map(\.code) == ["exceeds_burst"])
            #expect(problem.errors?.map(\.field) == ["emails"])
            #expect(problem.detail?.contains("burst of 10") == true)
            #expect(try await stored(outbox) == 0)
            // 9 tokens are left: a batch of exactly 9 passes.
            #expect(try await post(client, "/v1/emails/batch", Self.batch(9)).status == .accepted)
            #expect(try await stored(outbox) == 9)
        }
    }

    @Test("an invalid batch costs one token (its request), not one per email")
    func invalidBatchCostsOne() async throws {
        try await withAPI { client, outbox in
            let invalid = try await post(client, "/v1/emails/batch", Self.invalidBatch(8))
            #expect(invalid.status == .unprocessableContent)
            #expect(try await post(client, "/v1/emails/batch", Self.batch(9)).status == .accepted)
            #expect(try await stored(outbox) == 9)
        }
    }
}
