import Hummingbird
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
