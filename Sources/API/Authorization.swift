import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Outbox
import Synchronization

/// Who is calling: the API key of the request, as its scope and sender policy.
public struct APIPrincipal: Sendable, Hashable {
    /// The key's id (`ak_...`), or `env` for a key of `PIGEON_API_KEYS`. Safe to log.
    public var keyID: String
    /// What the key may do.
    public var scope: APIKeyScope
    /// The From domains the key may send as (lower case); empty means any.
    public var fromDomains: [String]
    /// The hex SHA-256 digest of the key: the idempotency scope and the rate-limit bucket.
    public var identity: String

    /// Whether the key may send with `mailFrom` as envelope sender.
    public func maySend(from mailFrom: String) -> Bool {
        guard !fromDomains.isEmpty else { return true }
        guard let at = mailFrom.lastIndex(of: "@") else { return false }
        let domain = mailFrom[mailFrom.index(after: at)...].lowercased()
        return fromDomains.contains(domain)
    }
}

/// Making bearer keys and their digests (the outbox stores only the digest).
public enum APIKeys {
    /// A new key: `pk_` + 43 base64url characters (32 bytes from the system's random generator).
    public static func generate() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let base64 = Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
        return "pk_" + base64
    }

    /// The SHA-256 digest of a key, as stored and compared.
    public static func digest(_ key: String) -> [UInt8] {
        Array(SHA256.hash(data: Data(key.utf8)))
    }

    /// Constant-time equality of two digests: every byte is looked at.
    static func equal(_ left: [UInt8], _ right: [UInt8]) -> Bool {
        guard left.count == right.count else { return false }
        var difference: UInt8 = 0
        for (a, b) in zip(left, right) { difference |= a ^ b }
        return difference == 0
    }
}

/// A per-key rate limit: `rate` emails a second on average, bursts up to `burst`.
///
/// Every `/v1` request costs one token (so reads and refused requests are limited
/// too), and a batch costs one per email: the request's token plus `count - 1` that
/// the batch handler takes after validation.
public struct RateLimit: Sendable, Hashable {
    /// Tokens added per second.
    public var rate: Double
    /// The bucket's size: the most emails a key can send at once, and so the largest batch it can ever send.
    public var burst: Int

    /// Creates a limit.
    public init(rate: Double, burst: Int) {
        self.rate = rate
        self.burst = max(1, burst)
    }
}

/// A token bucket (a pure value; time is given, STYLE.md habit 2).
public struct TokenBucket: Sendable, Hashable {
    /// The limit.
    public var limit: RateLimit
    /// Tokens now.
    public private(set) var tokens: Double
    /// When `tokens` was last brought up to date, in seconds on any monotonic clock.
    public private(set) var updatedAt: Double

    /// A full bucket at `now`.
    public init(limit: RateLimit, now: Double) {
        self.limit = limit
        self.tokens = Double(limit.burst)
        self.updatedAt = now
    }

    /// Puts back `count` tokens taken for work that did not happen (never above the burst).
    public mutating func giveBack(_ count: Int) {
        tokens = min(Double(limit.burst), tokens + Double(count))
    }

    /// Takes `count` tokens, all or none: nil when there were enough, else how long
    /// until the bucket holds `retryCost` tokens (by default `count`).
    ///
    /// All or none, so that a refused batch leaves the bucket as it found it.
    /// `retryCost` is for a caller that already took part of a request's cost: the
    /// batch handler takes `count - 1` after the middleware's one, and the client's
    /// retry will need all `count` again, so that is what `Retry-After` must wait for.
    /// A cost larger than the burst is answered with the wait for a full bucket; the
    /// batch handler refuses such a batch before it asks.
    public mutating func take(_ count: Int = 1, now: Double, retryCost: Int? = nil) -> Duration? {
        if now > updatedAt {
            tokens = min(Double(limit.burst), tokens + (now - updatedAt) * limit.rate)
            updatedAt = now
        }
        if tokens >= Double(count) {
            tokens -= Double(count)
            return nil
        }
        let needed = Double(min(retryCost ?? count, limit.burst))
        guard limit.rate > 0 else { return .seconds(3600) }
        return .milliseconds(Int64(((needed - tokens) / limit.rate * 1000).rounded(.up)))
    }
}

/// The buckets of every key seen (bounded by the number of valid keys: a bucket is
/// made only after the key is authenticated).
///
/// One instance is shared by `APIKeyMiddleware` (one token per request) and the batch
/// handler (the rest of a batch's cost); the lock makes each take atomic, so two
/// concurrent batches of one key cannot both spend the same tokens.
final class RateLimiter: Sendable {
    let limit: RateLimit
    private let buckets = Mutex<[String: TokenBucket]>([:])
    private let clock: @Sendable () -> Double

    init(limit: RateLimit, clock: @escaping @Sendable () -> Double = RateLimiter.monotonicSeconds) {
        self.limit = limit
        self.clock = clock
    }

    /// Takes `count` tokens from the key's bucket, all or none: nil when taken, else
    /// the wait until it holds `retryCost` (by default `count`).
    func take(_ identity: String, count: Int = 1, retryCost: Int? = nil) -> Duration? {
        let now = clock()
        let limit = self.limit
        return buckets.withLock { buckets in
            var bucket = buckets[identity] ?? TokenBucket(limit: limit, now: now)
            let wait = bucket.take(count, now: now, retryCost: retryCost)
            buckets[identity] = bucket
            return wait
        }
    }

    /// Puts back `count` tokens into the key's bucket: a batch charged before the outbox
    /// answered that it stored nothing new (an idempotent replay, a reused key, a 503).
    func giveBack(_ identity: String, count: Int) {
        guard count > 0 else { return }
        buckets.withLock { buckets in buckets[identity]?.giveBack(count) }
    }

    /// `Retry-After` in whole seconds, rounded up and at least 1 (RFC 9110 section 10.2.3).
    static func retryAfterSeconds(_ wait: Duration) -> Int {
        let components = wait.components
        return max(1, Int((Double(components.seconds) + Double(components.attoseconds) / 1e18).rounded(.up)))
    }

    /// `100/s, burst 200`, for problem details.
    static func format(_ limit: RateLimit) -> String {
        let rate = limit.rate == limit.rate.rounded() ? "\(Int(limit.rate))" : "\(limit.rate)"
        return "\(rate)/s, burst \(limit.burst)"
    }

    static let monotonicSeconds: @Sendable () -> Double = {
        let elapsed = RateLimiter.origin.duration(to: .now).components
        return Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
    }

    private static let origin = ContinuousClock.now
}

/// Requires `Authorization: Bearer <key>` on every `/v1` route, and applies the key's
/// scope and rate limit.
///
/// A key is one of `PIGEON_API_KEYS` (admin scope, any From domain) or a row of the
/// `api_key` table, found by the SHA-256 digest of the presented key and compared
/// again in constant time. Every configured key is compared, every byte, so neither
/// the position of a differing byte nor a key's length leaks through timing.
/// A revoked key is 401; a `send` key on `/v1/webhooks` is 403; over the rate limit
/// is 429 with `Retry-After`. Each request takes one token here; a batch's other
/// emails are charged by its handler (`PigeonAPI.chargeBatch`), on the same limiter.
struct APIKeyMiddleware<Context: RequestContext>: RouterMiddleware {
    let keyDigests: [[UInt8]]
    let store: (any APIKeyStore)?
    let limiter: RateLimiter?
    let usage = UsageRecorder()
    let logger: Logger

    /// `limiter` is shared with the handlers (`registerRoutes`), so a batch's emails come out of the same bucket.
    init(keys: [String], store: (any APIKeyStore)?, limiter: RateLimiter?, logger: Logger) {
        keyDigests = keys.map(APIKeys.digest)
        self.store = store
        self.limiter = limiter
        self.logger = logger
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        guard path.hasPrefix("/v1/") || path == "/v1" else {
            return try await next(request, context)
        }
        guard let header = request.headers[.authorization] else {
            throw APIProblem.unauthorized("Send the API key as `Authorization: Bearer <key>`.")
        }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else {
            throw APIProblem.unauthorized("The Authorization header must use the Bearer scheme.")
        }
        let presented = APIKeys.digest(parts[1].trimmingCharacters(in: .whitespaces))
        let principal = try await authenticate(presented)
        RequestLog.current?.setKeyID(principal.keyID)

        if path == "/v1/webhooks" || path.hasPrefix("/v1/webhooks/"), principal.scope != .admin {
            throw APIProblem(
                status: .forbidden,
                kind: "forbidden",
                title: "Forbidden",
                detail: "Managing webhooks needs a key with the admin scope; this key has the \(principal.scope.rawValue) scope."
            )
        }
        if let limiter, let wait = limiter.take(principal.identity) {
            let seconds = RateLimiter.retryAfterSeconds(wait)
            throw APIProblem(
                status: .tooManyRequests,
                kind: "rate-limited",
                title: "Too Many Requests",
                detail: "This API key is over its rate limit of \(RateLimiter.format(limiter.limit)); retry after \(seconds) s.",
                headers: [.retryAfter: "\(seconds)"]
            )
        }
        if principal.keyID != "env", let store, usage.shouldRecord(principal.keyID) {
            do {
                try await store.markUsed(id: principal.keyID, at: Date())
            } catch {
                // Only the `last_used_at` bookkeeping is lost; the request goes on.
                logger.warning("recording an API key's last use failed", metadata: ["key_id": "\(principal.keyID)", "error": "\(error)"])
            }
        }
        return try await APIKeyIdentity.$current.withValue(principal.identity) {
            try await APIKeyIdentity.$principal.withValue(principal) {
                try await next(request, context)
            }
        }
    }

    func authenticate(_ presented: [UInt8]) async throws -> APIPrincipal {
        let identity = Hex.encode(presented)
        if Self.matchesAny(presented, keyDigests) {
            return APIPrincipal(keyID: "env", scope: .admin, fromDomains: [], identity: identity)
        }
        guard let store else { throw APIProblem.unauthorized("The API key is not valid.") }
        let found: (record: APIKeyRecord, digest: [UInt8])?
        do {
            found = try await store.key(digest: presented)
        } catch {
            throw APIProblem(
                status: .serviceUnavailable,
                kind: "unavailable",
                title: "Service Unavailable",
                detail: "The API key could not be checked now.",
                headers: [.retryAfter: "5"]
            )
        }
        guard let found, APIKeys.equal(found.digest, presented) else {
            throw APIProblem.unauthorized("The API key is not valid.")
        }
        guard found.record.revokedAt == nil else {
            throw APIProblem.unauthorized("The API key has been revoked.")
        }
        return APIPrincipal(keyID: found.record.id, scope: found.record.scope, fromDomains: found.record.fromDomains, identity: identity)
    }

    /// Constant-time: always compares against every key, every byte.
    static func matchesAny(_ digest: [UInt8], _ keys: [[UInt8]]) -> Bool {
        var found: UInt8 = 0
        for key in keys {
            found |= APIKeys.equal(digest, key) ? 1 : 0
        }
        return found == 1
    }
}

/// Writes `last_used_at` at most once a minute per key, so a busy key costs no write per request.
final class UsageRecorder: Sendable {
    private let lastWritten = Mutex<[String: ContinuousClock.Instant]>([:])

    func shouldRecord(_ keyID: String) -> Bool {
        let now = ContinuousClock.now
        return lastWritten.withLock { written in
            if let last = written[keyID], now - last < .seconds(60) { return false }
            written[keyID] = now
            return true
        }
    }
}

extension PigeonAPI {
    /// 403 unless the request's key may send as each email's envelope sender.
    func checkSenderPolicy(_ emails: [NewEmail], batch: Bool) throws {
        guard let principal = APIKeyIdentity.principal else { return }
        for (index, email) in emails.enumerated() where !principal.maySend(from: email.mailFrom) {
            let field = batch ? "emails[\(index)].from" : "from"
            throw APIProblem(
                status: .forbidden,
                kind: "sender-not-allowed",
                title: "Forbidden",
                detail: "This API key may send only from \(principal.fromDomains.joined(separator: ", ")).",
                errors: [.init(field: field, code: "sender_not_allowed", message: "this key may not send from this domain")]
            )
        }
    }

    /// Charges a batch's emails beyond the first to the key's bucket (the middleware
    /// took one token for the request): nil when the batch may go on, else the answer
    /// refusing it.
    ///
    /// Called after validation and the sender policy, so an invalid batch pays only the
    /// request's token, and before the enqueue, so a refused batch stores nothing; when
    /// the outbox then stores nothing new, `refundBatch` gives the tokens back. The tokens are taken all or none. A batch of more emails than the
    /// key's burst could never pass, so it is 422 naming `emails` rather than a 429
    /// whose `Retry-After` the client would obey forever. Otherwise an empty-enough
    /// bucket is 429 with `Retry-After` until the bucket holds the whole batch again,
    /// the request's own token included, since the client's retry pays for both.
    func chargeBatch(count: Int) -> Operations.SendEmailBatch.Output? {
        guard let limiter = rateLimiter, let identity = APIKeyIdentity.current else { return nil }
        let burst = limiter.limit.burst
        guard count <= burst else {
            let problem = Components.Schemas.Problem(
                _type: APIProblem.typeURI("validation"),
                title: "Validation failed",
                status: 422,
                detail:
                    "This batch holds \(count) emails, more than this API key's burst of \(burst) (PIGEON_RATE_LIMIT_BURST); send at most \(burst) at once.",
                errors: [.init(field: "emails", code: "exceeds_burst", message: "a batch may hold at most \(burst) emails for this key")]
            )
            return .unprocessableContent(.init(body: .applicationProblemJson(problem)))
        }
        guard count > 1, let wait = limiter.take(identity, count: count - 1, retryCost: count) else { return nil }
        let seconds = RateLimiter.retryAfterSeconds(wait)
        let problem = Components.Schemas.Problem(
            _type: APIProblem.typeURI("rate-limited"),
            title: "Too Many Requests",
            status: 429,
            detail:
                "This batch of \(count) emails is over this API key's rate limit of \(RateLimiter.format(limiter.limit)) (one per email); this request stored nothing; retry after \(seconds) s."
        )
        return .tooManyRequests(.init(headers: .init(retryAfter: seconds), body: .applicationProblemJson(problem)))
    }

    /// Gives back what `chargeBatch` took when the outbox stored nothing new: an
    /// idempotent replay (the first request paid), a key reused with another body (409),
    /// or an outbox that could not write (503).
    func refundBatch(count: Int) {
        guard let limiter = rateLimiter, let identity = APIKeyIdentity.current else { return }
        limiter.giveBack(identity, count: count - 1)
    }
}
