import Foundation
import Testing

@testable import Delivery

@Suite("Retry policy")
struct RetryPolicyTests {
    static let start = Date(timeIntervalSince1970: 1_800_000_000)

    @Test(
        "The delay follows the schedule and the last entry repeats",
        arguments: [(1, 300), (2, 600), (3, 1200), (4, 2400), (5, 3600), (6, 3600), (50, 3600), (0, 300)]
    )
    func schedule(attempt: Int, seconds: Int) {
        #expect(RetryPolicy.default.delay(afterAttempt: attempt) == .seconds(seconds))
    }

    @Test("Jitter stays within ±10% and spans it", arguments: [0.0, 0.25, 0.5, 0.75, 0.999_999])
    func jitterBounds(random: Double) {
        let policy = RetryPolicy.default
        let delay = policy.jitteredDelay(afterAttempt: 1, random: random).timeInterval
        #expect(delay >= 270 && delay <= 330)
        if random == 0 { #expect(abs(delay - 270) < 0.001) }
        if random == 0.5 { #expect(abs(delay - 300) < 0.001) }
    }

    @Test("The next attempt is now plus the jittered delay")
    func nextAttempt() {
        let policy = RetryPolicy(schedule: [.seconds(60)], maxQueueLifetime: .seconds(86_400), jitter: 0)
        let now = Self.start.addingTimeInterval(100)
        #expect(policy.nextAttempt(afterAttempt: 1, now: now, createdAt: Self.start, expiresAt: nil) == now.addingTimeInterval(60))
    }

    @Test("An email gives up once the next attempt would pass the queue lifetime")
    func lifetime() {
        let policy = RetryPolicy(schedule: [.seconds(3600)], maxQueueLifetime: .seconds(5 * 86_400), jitter: 0)
        let almost = Self.start.addingTimeInterval(5 * 86_400 - 7200)
        #expect(policy.nextAttempt(afterAttempt: 9, now: almost, createdAt: Self.start, expiresAt: nil) != nil)
        let late = Self.start.addingTimeInterval(5 * 86_400 - 1800)
        #expect(policy.nextAttempt(afterAttempt: 10, now: late, createdAt: Self.start, expiresAt: nil) == nil)
        #expect(policy.isExpired(at: Self.start.addingTimeInterval(5 * 86_400 + 1), createdAt: Self.start, expiresAt: nil))
    }

    @Test("An email's own expires_at wins over the lifetime")
    func expiresAt() {
        let policy = RetryPolicy(schedule: [.seconds(600)], maxQueueLifetime: .seconds(5 * 86_400), jitter: 0)
        let expires = Self.start.addingTimeInterval(900)
        #expect(policy.nextAttempt(afterAttempt: 1, now: Self.start, createdAt: Self.start, expiresAt: expires) != nil)
        #expect(policy.nextAttempt(afterAttempt: 2, now: Self.start.addingTimeInterval(400), createdAt: Self.start, expiresAt: expires) == nil)
        #expect(policy.isExpired(at: expires.addingTimeInterval(1), createdAt: Self.start, expiresAt: expires))
    }

    @Test(
        "Schedules parse",
        arguments: [
            ("1m,5m,15m,1h,4h", [60, 300, 900, 3600, 14_400]),
            ("30s", [30]),
            ("1d, 2d", [86_400, 172_800]),
            ("1.5m", [90]),
        ] as [(String, [Int])]
    )
    func parse(text: String, seconds: [Int]) throws {
        #expect(try RetryPolicy.parseSchedule(text) == seconds.map { .seconds($0) })
    }

    @Test("Bad schedules are refused", arguments: ["", "5", "5x", "m", "1m,,2m", "-1m", "0s", "1e99d", "nan s"])
    func parseErrors(text: String) {
        #expect(throws: DurationParseError.self) { try RetryPolicy.parseSchedule(text) }
    }

    @Test("Milliseconds are not minutes")
    func milliseconds() throws {
        #expect(try RetryPolicy.parseDuration("250ms") == .milliseconds(250))
        #expect(try RetryPolicy.parseDuration("2m") == .seconds(120))
    }
}
