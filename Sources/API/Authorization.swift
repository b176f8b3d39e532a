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

/// A per-key rate limit: `rate` requests a second on average, bursts up to `burst`.
public struct RateLimit: Sendable, Hashable {
    /// Tokens added per second.
    public var rate: Double
    /// The bucket's size.
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

    /// Takes one token: nil when there was one, else how long until there is.
    public mutating func take(now: Double) -> Duration? {
        if now > updatedAt {
            tokens = min(Double(limit.burst), tokens + (now - updatedAt) * limit.rate)
            updatedAt = now
        }
        if tokens >= 1 {
            tokens -= 1
            return nil
        }
        guard limit.rate > 0 else { return .seconds(3600) }
        return .milliseconds(Int64(((1 - tokens) / limit.rate * 1000).rounded(.up)))
    }
}

/// The buckets of every key seen (bounded by the number of valid keys: a bucket is
/// made only after the key is authenticated).
final class RateLimiter: Sendable {
    let limit: RateLimit
    private let buckets = Mutex<[String: TokenBucket]>([:])
    private let clock: @Sendable () -> Double

    init(limit: RateLimit, clock: @escaping @Sendable () -> Double = RateLimiter.monotonicSeconds) {
        self.limit = limit
        self.clock = clock
    }

    /// nil when the request may go on, else the wait before the next one can.
    func take(_ identity: String) -> Duration? {
        let now = clock()
        let limit = self.limit
        return buckets.withLock { buckets in
            var bucket = buckets[identity] ?? TokenBucket(limit: limit, now: now)
            let wait = bucket.take(now: now)
            buckets[identity] = bucket
            return wait
        }
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
/// is 429 with `Retry-After`.
struct APIKeyMiddleware<Context: RequestContext>: RouterMiddleware {
    let keyDigests: [[UInt8]]
    let store: (any APIKeyStore)?
    let limiter: RateLimiter?
    let usage = UsageRecorder()
    let logger: Logger

    init(keys: [String], store: (any APIKeyStore)? = nil, rateLimit: RateLimit? = nil, logger: Logger = Logger(label: "pigeon.api")) {
        keyDigests = keys.map(APIKeys.digest)
        self.store = store
        self.limiter = rateLimit.map { RateLimiter(limit: $0) }
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
            let seconds = max(1, Int((Double(wait.components.seconds) + Double(wait.components.attoseconds) / 1e18).rounded(.up)))
            throw APIProblem(
                status: .tooManyRequests,
                kind: "rate-limited",
                title: "Too Many Requests",
                detail: "This API key is over its rate limit of \(Self.format(limiter.limit)); retry after \(seconds) s.",
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

    static func format(_ limit: RateLimit) -> String {
        let rate = limit.rate == limit.rate.rounded() ? "\(Int(limit.rate))" : "\(limit.rate)"
        return "\(rate)/s, burst \(limit.burst)"
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
}
