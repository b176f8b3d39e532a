import CoreMetrics
import Delivery
import Foundation
import Logging
import Outbox
import Prometheus
import ServiceLifecycle
import Synchronization

/// The metrics of one application: a Prometheus registry of its own (not the global
/// `MetricsSystem`, so that several applications in one test process do not mix).
///
/// Counters move as things happen; the gauges are read from the database at each
/// scrape, so they are right after a restart too.
final class PigeonMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    let factory: PrometheusMetricsFactory
    let delivery: DeliveryMetrics
    let webhooks: WebhookMetrics
    let accepted: CoreMetrics.Counter
    let outbox: SQLiteOutbox
    let logger: Logger

    init(outbox: SQLiteOutbox, logger: Logger) {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets[DeliveryMetrics.durationLabel] = [
            .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
            .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30), .seconds(60),
        ]
        self.factory = factory
        self.delivery = DeliveryMetrics(factory: factory)
        self.webhooks = WebhookMetrics(factory: factory)
        self.accepted = CoreMetrics.Counter(label: "pigeon_emails_accepted_total", factory: factory)
        self.outbox = outbox
        self.logger = logger
    }

    /// The Prometheus text exposition (format 0.0.4), the database gauges read now.
    func render() async -> String {
        // Made at each scrape: `MetricNameDescriptor` is not Sendable, and the registry
        // returns the gauge it already has for a name and labels.
        let emails = MetricNameDescriptor(metricName: "pigeon_emails", unitName: "", helpText: "Emails in the outbox by status.")
        let oldestDueAge = MetricNameDescriptor(
            metricName: "pigeon_queue_oldest_due_age",
            unitName: "seconds",
            helpText: "Seconds since the oldest waiting email became due (0 when none is overdue)."
        )
        let webhookDeliveries = MetricNameDescriptor(
            metricName: "pigeon_webhook_deliveries",
            unitName: "",
            helpText: "Webhook deliveries by status (one per event and endpoint)."
        )
        let readable = MetricNameDescriptor(
            metricName: "pigeon_outbox_readable",
            unitName: "",
            helpText: "1 when the last scrape could read the outbox."
        )
        do {
            let gauges = try await outbox.gauges()
            for status in EmailStatus.allCases {
                registry.makeGauge(descriptor: emails, labels: [("status", status.rawValue)])
                    .set(Double(gauges.emailsByStatus[status] ?? 0))
            }
            registry.makeGauge(descriptor: oldestDueAge).set(gauges.oldestDueAge)
            for status in ["pending", "succeeded", "failed"] {
                registry.makeGauge(descriptor: webhookDeliveries, labels: [("status", status)])
                    .set(Double(gauges.webhookDeliveriesByStatus[status] ?? 0))
            }
            registry.makeGauge(descriptor: readable).set(1.0)
        } catch {
            logger.warning("metrics: reading the outbox failed", metadata: ["error": "\(error)"])
            registry.makeGauge(descriptor: readable).set(0.0)
        }
        return registry.emitToString()
    }
}

/// `pigeon_webhook_attempts_total{outcome}`: webhook POSTs by what the webhook service
/// decided after each, counted as they finish (`WebhookService.onAttemptFinished`).
///
/// The outcomes are the service's decisions: `succeeded` (a 2xx), `retrying` (a retry is
/// scheduled), `failed` (no retry left; the delivery failed for good, and after
/// `PIGEON_WEBHOOK_MAX_CONSECUTIVE_FAILURES` of those in a row the store disables the
/// endpoint), and `gone` (the receiver answered 410: the delivery failed and the
/// endpoint is disabled; the deliveries API and `webhook_attempt.outcome` record
/// such an attempt as `failed`, so `failed` plus `gone` here is what they call failed). The gauge `pigeon_webhook_deliveries{status}` says where the
/// deliveries stand; this counter says how the attempts went, so its rate shows a
/// receiver that has started failing before any delivery has run out of retries.
struct WebhookMetrics: Sendable {
    let succeeded: CoreMetrics.Counter
    let retrying: CoreMetrics.Counter
    let failed: CoreMetrics.Counter
    let gone: CoreMetrics.Counter

    static let label = "pigeon_webhook_attempts_total"

    /// Creates the four series on `factory`, so each is exported (at 0) from the start.
    init(factory: any MetricsFactory) {
        func counter(_ outcome: String) -> CoreMetrics.Counter {
            CoreMetrics.Counter(label: Self.label, dimensions: [("outcome", outcome)], factory: factory)
        }
        succeeded = counter("succeeded")
        retrying = counter("retrying")
        failed = counter("failed")
        gone = counter("gone")
    }

    /// Counts one finished attempt.
    func record(_ outcome: WebhookAttemptOutcome) {
        switch outcome {
        case .succeeded: succeeded.increment()
        case .retry: retrying.increment()
        case .failed: failed.increment()
        case .endpointGone: gone.increment()
        }
    }
}

/// Whether a service's `run()` is running; `/readyz` reads it for the delivery service.
final class RunningFlag: Sendable {
    private let state = Mutex(false)
    var isRunning: Bool { state.withLock { $0 } }
    func set(_ value: Bool) { state.withLock { $0 = value } }
}

/// Runs a service and keeps a flag up while its `run()` has not returned.
struct FlaggedService<Base: Service>: Service {
    let base: Base
    let flag: RunningFlag

    func run() async throws {
        flag.set(true)
        defer { flag.set(false) }
        try await base.run()
    }
}
