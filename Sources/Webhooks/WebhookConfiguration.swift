import Foundation
import Outbox

/// When to retry a webhook delivery, and when to give up (STYLE.md habit 8).
///
/// The default schedule is the one Standard Webhooks recommends: 5 s, 5 min, 30 min,
/// 2 h, 5 h, 10 h, 10 h after the first attempt, so a delivery gets 8 attempts over
/// about 27.6 hours. Only a 2xx answer is a success. `410 Gone` fails the delivery and
/// disables the endpoint. `429` and `503` with `Retry-After` (seconds or an HTTP date,
/// RFC 9110 section 10.2.3) are retried when the receiver asks, capped at
/// `maxRetryAfter`, instead of on the schedule. Everything else (3xx: redirects are
/// not followed; 4xx; 5xx; timeouts, resets, refused connections and refused
/// addresses) is retried on the schedule.
public struct WebhookRetryPolicy: Sendable, Hashable {
    /// The delay before retry 1, 2, ...; a delivery fails for good after the last one.
    public var schedule: [Duration]
    /// The longest `Retry-After` honoured.
    public var maxRetryAfter: Duration

    /// Standard Webhooks' schedule.
    public static let standard = WebhookRetryPolicy(
        schedule: [.seconds(5), .seconds(300), .seconds(1800), .seconds(7200), .seconds(18_000), .seconds(36_000), .seconds(36_000)]
    )

    /// Creates a policy.
    public init(schedule: [Duration], maxRetryAfter: Duration = .seconds(36_000)) {
        self.schedule = schedule
        self.maxRetryAfter = maxRetryAfter
    }

    /// The delay before the next attempt after attempt `attempt` (1-based), or nil when none is left.
    public func delay(afterAttempt attempt: Int) -> Duration? {
        guard attempt >= 1, attempt <= schedule.count else { return nil }
        return schedule[attempt - 1]
    }

    /// Whether an answer is a success.
    public static func isSuccess(status: Int) -> Bool { (200...299).contains(status) }

    /// What to do after attempt `attempt` ended with `result`, at `now`.
    public func outcome(
        afterAttempt attempt: Int,
        result: Result<WebhookResponse, WebhookTransportError>,
        now: Date
    ) -> WebhookAttemptOutcome {
        var delay = self.delay(afterAttempt: attempt)
        if case .success(let response) = result {
            if Self.isSuccess(status: response.status) { return .succeeded }
            if response.status == 410 { return .endpointGone }
            if response.status == 429 || response.status == 503, delay != nil,
                let asked = Self.parseRetryAfter(response.retryAfter, now: now)
            {
                delay = min(asked, maxRetryAfter)
            }
        }
        guard let delay else { return .failed }
        return .retry(at: now.addingTimeInterval(Double(delay.components.seconds) + Double(delay.components.attoseconds) / 1e18))
    }

    /// `Retry-After`: delta-seconds or an IMF-fixdate (RFC 9110 section 10.2.3); nil if absent or malformed.
    public static func parseRetryAfter(_ value: String?, now: Date) -> Duration? {
        guard let value = value?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
        if let seconds = Int64(value), seconds >= 0 { return .seconds(seconds) }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        guard let date = formatter.date(from: value) else { return nil }
        return .seconds(max(0, Int64(date.timeIntervalSince(now).rounded(.up))))
    }

    /// Parses `5s,5m,30m,2h`: `ms`, `s`, `m`, `h` or `d` suffixes; at least one entry.
    public static func parseSchedule(_ text: String) throws(WebhookSettingError) -> [Duration] {
        let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        guard !parts.isEmpty, parts.count <= 50 else { throw WebhookSettingError("give 1 to 50 delays, e.g. 5s,5m,30m,2h,5h,10h,10h") }
        return try parts.map { part throws(WebhookSettingError) in try parseDuration(part) }
    }

    /// Parses one duration: `250ms`, `30s`, `5m`, `2h`, `1d`.
    public static func parseDuration(_ text: String) throws(WebhookSettingError) -> Duration {
        let units: [(String, Int64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
        for (suffix, millis) in units where text.hasSuffix(suffix) {
            let number = text.dropLast(suffix.count)
            if suffix == "s" && number.hasSuffix("m") { continue }
            guard let value = Int64(number), value >= 0, value <= 1_000_000 else { break }
            return .milliseconds(value * millis)
        }
        throw WebhookSettingError("'\(text)' is not a duration like 250ms, 30s, 5m, 2h or 1d")
    }
}

/// A webhook setting that does not parse; the text never contains a secret.
public struct WebhookSettingError: Error, Sendable, CustomStringConvertible, Equatable {
    /// What is wrong.
    public var description: String

    /// Creates an error.
    public init(_ description: String) {
        self.description = description
    }
}

/// The webhook settings of `pigeon serve`.
public struct WebhookConfiguration: Sendable {
    /// `PIGEON_WEBHOOK_URL`, the endpoint for every event type (with `defaultSecret`).
    public var defaultURL: String?
    /// `PIGEON_WEBHOOK_SECRET`, `whsec_...`.
    public var defaultSecret: String?
    /// `PIGEON_WEBHOOK_ALLOW_PRIVATE`: allow loopback and private targets.
    public var allowPrivate: Bool
    /// `PIGEON_WEBHOOK_TIMEOUT`: the longest one POST may take.
    public var timeout: Duration
    /// `PIGEON_WEBHOOK_RETRY_SCHEDULE`.
    public var retryPolicy: WebhookRetryPolicy
    /// `PIGEON_WEBHOOK_MAX_CONSECUTIVE_FAILURES`: deliveries in a row that fail for good before the endpoint is disabled.
    public var maxConsecutiveFailures: Int
    /// How long the old secret keeps signing after a rotation.
    public var rotationGracePeriod: Duration
    /// POSTs in flight at once.
    public var concurrency: Int
    /// The longest the service sleeps without looking for due deliveries.
    public var pollInterval: Duration

    /// Creates a configuration with the documented defaults.
    public init(
        defaultURL: String? = nil,
        defaultSecret: String? = nil,
        allowPrivate: Bool = false,
        timeout: Duration = .seconds(15),
        retryPolicy: WebhookRetryPolicy = .standard,
        maxConsecutiveFailures: Int = 10,
        rotationGracePeriod: Duration = .seconds(86_400),
        concurrency: Int = 4,
        pollInterval: Duration = .milliseconds(250)
    ) {
        self.defaultURL = defaultURL
        self.defaultSecret = defaultSecret
        self.allowPrivate = allowPrivate
        self.timeout = timeout
        self.retryPolicy = retryPolicy
        self.maxConsecutiveFailures = max(1, maxConsecutiveFailures)
        self.rotationGracePeriod = rotationGracePeriod
        self.concurrency = max(1, concurrency)
        self.pollInterval = pollInterval
    }

    /// The SSRF policy.
    public var addressPolicy: AddressPolicy { AddressPolicy(allowPrivate: allowPrivate) }
}

/// Checks webhook URLs when endpoints are created or changed.
public struct WebhookURLChecker: Sendable {
    let policy: AddressPolicy
    let resolver: any WebhookResolver

    /// Creates a checker.
    public init(policy: AddressPolicy, resolver: any WebhookResolver = SystemResolver()) {
        self.policy = policy
        self.resolver = resolver
    }

    /// Parses `text` and checks its host: the literal address, the name, and, unless
    /// private targets are allowed, every address the name resolves to now. The same
    /// checks run again at every connection, since DNS answers change.
    public func check(_ text: String) async throws(WebhookURLError) -> WebhookURL {
        let url = try WebhookURL(text)
        try policy.checkHost(url)
        if url.literalAddress == nil && !policy.allowPrivate {
            try policy.check(try await resolver.resolve(host: url.host), host: url.host)
        }
        return url
    }
}
