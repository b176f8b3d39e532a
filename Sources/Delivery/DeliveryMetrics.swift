import CoreMetrics
import Foundation
import Outbox

/// What the delivery service counts, through swift-metrics (the application gives the
/// factory; Prometheus in `pigeon serve`).
///
/// - `pigeon_emails_sent_total`, `pigeon_emails_failed_total`,
///   `pigeon_emails_partially_failed_total`, `pigeon_emails_deferred_total`: attempts
///   that ended with the email in that status (a deferral counts each time);
/// - `pigeon_smtp_replies_total{class="2xx|4xx|5xx"}`: per-recipient replies, and the
///   reply that ended an attempt early (a 421 greeting, a 535 to AUTH);
/// - `pigeon_delivery_attempt_duration_seconds`: a histogram of SMTP attempt durations.
public struct DeliveryMetrics: Sendable {
    let sent: Counter
    let failed: Counter
    let partiallyFailed: Counter
    let deferred: Counter
    let replies: [Int: Counter]
    let duration: CoreMetrics.Timer

    /// The histogram's name, for the factory's buckets.
    public static let durationLabel = "pigeon_delivery_attempt_duration_seconds"

    /// Creates the metrics on `factory`.
    public init(factory: any MetricsFactory) {
        sent = Counter(label: "pigeon_emails_sent_total", factory: factory)
        failed = Counter(label: "pigeon_emails_failed_total", factory: factory)
        partiallyFailed = Counter(label: "pigeon_emails_partially_failed_total", factory: factory)
        deferred = Counter(label: "pigeon_emails_deferred_total", factory: factory)
        var replies: [Int: Counter] = [:]
        for klass in 2...5 {
            replies[klass] = Counter(label: "pigeon_smtp_replies_total", dimensions: [("class", "\(klass)xx")], factory: factory)
        }
        self.replies = replies
        duration = CoreMetrics.Timer(label: Self.durationLabel, factory: factory)
    }

    /// Counts one attempt's outcome.
    func record(_ record: AttemptRecord) {
        switch record.status {
        case .sent: sent.increment()
        case .failed: failed.increment()
        case .partiallyFailed: partiallyFailed.increment()
        case .deferred: deferred.increment()
        default: break
        }
        for recipient in record.recipients {
            if let code = recipient.code { replies[code / 100]?.increment() }
        }
        if record.nextHop != nil || record.error != nil {
            let nanoseconds = max(0, record.finishedAt.timeIntervalSince(record.startedAt)) * 1e9
            duration.recordNanoseconds(Int64(nanoseconds))
        }
    }
}
