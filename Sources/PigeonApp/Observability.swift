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
        self.accepted = CoreMetrics.Counter(label: "pigeon_emails_accepted_total", factory: factory)
        self.outbox = outbox
        self.logger = logger
    }

    /// The Prometheus text exposition (format 0.0.4), the database gauges read now.
    func render() async -> String {
        do {
            let gauges = try await outbox.gauges()
            for status in EmailStatus.allCases {
                registry.makeGauge(name: "pigeon_emails", labels: [("status", status.rawValue)], help: "Emails in the outbox by status.")
                    .set(Double(gauges.emailsByStatus[status] ?? 0))
            }
            registry.makeGauge(
                name: "pigeon_queue_oldest_due_age_seconds",
                help: "Seconds since the oldest waiting email became due (0 when none is overdue)."
            ).set(gauges.oldestDueAge)
            for status in ["pending", "succeeded", "failed"] {
                registry.makeGauge(
                    name: "pigeon_webhook_deliveries",
                    labels: [("status", status)],
                    help: "Webhook deliveries by status (one per event and endpoint)."
                ).set(Double(gauges.webhookDeliveriesByStatus[status] ?? 0))
            }
            registry.makeGauge(name: "pigeon_outbox_readable", help: "1 when the last scrape could read the outbox.").set(1.0)
        } catch {
            logger.warning("metrics: reading the outbox failed", metadata: ["error": "\(error)"])
            registry.makeGauge(name: "pigeon_outbox_readable", help: "1 when the last scrape could read the outbox.").set(0.0)
        }
        return registry.emitToString()
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
