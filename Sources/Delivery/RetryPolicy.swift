import Foundation

/// When to try a deferred email again, and when to give up (STYLE.md habit 8).
///
/// The schedule lists the delay after each attempt; after the last entry the last
/// delay repeats. The default follows Postfix (`minimal_backoff_time` 300s doubling up
/// to `maximal_backoff_time` 3600s): 5m, 10m, 20m, 40m, 1h. Each delay is spread by
/// up to ±`jitter` (a fraction, default 0.1) so that emails deferred together do not
/// come back together. An email gives up with reason `expired` once the next attempt
/// would fall after its own `expires_at` or after `created_at + maxQueueLifetime`
/// (Postfix's `maximal_queue_lifetime`, default 5 days).
public struct RetryPolicy: Sendable, Hashable {
    /// Delays after attempt 1, 2, ...; the last one repeats.
    public var schedule: [Duration]
    /// How long an email may stay in the queue.
    public var maxQueueLifetime: Duration
    /// The fraction by which a delay may be shortened or lengthened at random.
    public var jitter: Double

    /// The default policy.
    public static let `default` = RetryPolicy(
        schedule: [.seconds(300), .seconds(600), .seconds(1200), .seconds(2400), .seconds(3600)],
        maxQueueLifetime: .seconds(5 * 86_400),
        jitter: 0.1
    )

    /// Creates a policy. An empty schedule means one minute between attempts.
    public init(schedule: [Duration], maxQueueLifetime: Duration, jitter: Double = 0.1) {
        self.schedule = schedule.isEmpty ? [.seconds(60)] : schedule
        self.maxQueueLifetime = maxQueueLifetime
        self.jitter = min(max(jitter, 0), 0.5)
    }

    /// The delay before the next attempt after attempt number `attempt` (1-based), without jitter.
    public func delay(afterAttempt attempt: Int) -> Duration {
        schedule[min(max(attempt, 1), schedule.count) - 1]
    }

    /// The delay with jitter applied, using `random` in [0, 1).
    public func jitteredDelay(afterAttempt attempt: Int, random: Double) -> Duration {
        let base = delay(afterAttempt: attempt)
        let factor = 1 + jitter * (2 * random - 1)
        return base * factor
    }

    /// When to try again, or nil when the email must fail as `expired`.
    public func nextAttempt(
        afterAttempt attempt: Int,
        now: Date,
        createdAt: Date,
        expiresAt: Date?,
        random: Double = Double.random(in: 0..<1)
    ) -> Date? {
        let delay = jitteredDelay(afterAttempt: attempt, random: random)
        let next = now.addingTimeInterval(delay.timeInterval)
        if isExpired(at: next, createdAt: createdAt, expiresAt: expiresAt) { return nil }
        return next
    }

    /// Whether an email created at `createdAt` is past its deadline at `date`.
    public func isExpired(at date: Date, createdAt: Date, expiresAt: Date?) -> Bool {
        if let expiresAt, date > expiresAt { return true }
        return date > createdAt.addingTimeInterval(maxQueueLifetime.timeInterval)
    }

    /// Parses `1m,5m,15m,1h,4h` (units `ms`, `s`, `m`, `h`, `d`).
    public static func parseSchedule(_ text: String) throws(DurationParseError) -> [Duration] {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        guard !parts.isEmpty, !parts.contains(where: \.isEmpty) else { throw DurationParseError(text: text) }
        var result: [Duration] = []
        for part in parts {
            let duration = try parseDuration(part)
            guard duration > .zero else { throw DurationParseError(text: part) }
            result.append(duration)
        }
        return result
    }

    /// Parses one duration such as `90s`, `5m`, `3d`, `250ms`.
    public static func parseDuration(_ text: String) throws(DurationParseError) -> Duration {
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86_400)]
        for (suffix, seconds) in units where text.hasSuffix(suffix) {
            let number = text.dropLast(suffix.count)
            // "ms" must win over "s": skip "s" when the number part still ends in "m".
            if suffix == "s", number.hasSuffix("m") { continue }
            guard let value = Double(number), value.isFinite, value >= 0, value < 1e9 else { break }
            return .milliseconds(Int64((value * seconds * 1000).rounded()))
        }
        throw DurationParseError(text: text)
    }
}

/// A duration setting that could not be read.
public struct DurationParseError: Error, Sendable, CustomStringConvertible {
    /// The text that was given.
    public var text: String
    /// One line naming the problem.
    public var description: String { "'\(text)' is not a duration (use e.g. 30s, 5m, 1h, 3d)" }
}

extension Duration {
    /// The duration in seconds, as a `TimeInterval`.
    public var timeInterval: TimeInterval {
        let (seconds, attoseconds) = components
        return TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18
    }
}
