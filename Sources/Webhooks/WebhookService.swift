import Foundation
import Logging
import Outbox
import ServiceLifecycle

/// The webhook Service: claims due deliveries, POSTs them signed, records what happened.
///
/// `concurrency` workers each lease a few due deliveries (the lease is the delivery's
/// `next_attempt_at` moved past the timeout, so a crash only delays it), build the body
/// (`{"data":…,"id":"evt_N","timestamp":…,"type":…}`), sign it with every live secret
/// of the endpoint (Standard Webhooks: `webhook-id` is the event id, the same on every
/// retry; `webhook-timestamp` is the attempt's time), POST it with `NIOWebhookClient`
/// and record the attempt with the retry policy's decision in one transaction.
///
/// Email delivery never waits for a webhook: deliveries are rows made by a trigger in
/// the email's transaction, and this service works them off on its own workers.
/// On graceful shutdown the workers stop; a POST in progress is abandoned unrecorded,
/// and its lease (the timeout plus a minute) runs out so it is made after the next start.
public struct WebhookService: Service {
    let store: any WebhookStore
    let transport: any WebhookTransport
    let configuration: WebhookConfiguration
    let logger: Logger
    let now: @Sendable () -> Date
    /// Told the decision of each attempt as it finishes, for `pigeon_webhook_attempts_total{outcome}`.
    ///
    /// A closure rather than swift-metrics counters so that this module needs no metrics
    /// dependency (the HTTP layer counts accepted emails the same way); PigeonApp turns
    /// it into counters on the application's registry. It is called once per POST that
    /// got an answer or a transport error, after the attempt is recorded (so the counter
    /// is never ahead of the `pigeon_webhook_deliveries` gauge) or its recording failed
    /// (the POST was made all the same), and not for a POST abandoned by shutdown.
    public var onAttemptFinished: @Sendable (WebhookAttemptOutcome) -> Void = { _ in }

    /// Creates the service.
    public init(
        store: any WebhookStore,
        transport: any WebhookTransport,
        configuration: WebhookConfiguration,
        logger: Logger = Logger(label: "pigeon.webhooks"),
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.store = store
        self.transport = transport
        self.configuration = configuration
        self.logger = logger
        self.now = now
    }

    /// Runs the workers until graceful shutdown or cancellation.
    public func run() async throws {
        await withDiscardingTaskGroup { group in
            for _ in 0..<configuration.concurrency {
                group.addTask { await worker() }
            }
        }
    }

    private func worker() async {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            // A shutdown interrupts a POST in progress (it may wait up to the timeout);
            // that attempt is not recorded and its lease runs out, so it is made again.
            // `deliverDue` does not throw, so neither does this (`rethrows`).
            let sent = await cancelWhenGracefulShutdown { await deliverDue(limit: 2) }
            if sent == 0 { await waitForWork() }
        }
    }

    /// Sleeps until a delivery is due (or shutdown), polling with reads only, so an idle
    /// service never takes the database's write lock.
    private func waitForWork() async {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            var wait = configuration.pollInterval
            if let due = try? await store.nextDeliveryDueDate() {
                let untilDue = due.timeIntervalSince(now())
                if untilDue <= 0 { return }
                wait = min(wait, .milliseconds(Int64(untilDue * 1000)))
            }
            let until = max(wait, .milliseconds(5))
            _ = try? await cancelWhenGracefulShutdown {
                try await Task.sleep(for: until)
            }
        }
    }

    /// Claims up to `limit` deliveries due now, sends them one after the other, and
    /// returns how many it claimed. The unit the workers loop over; tests drive it with
    /// an injected clock.
    @discardableResult
    public func deliverDue(limit: Int) async -> Int {
        let start = now()
        let claimed: [ClaimedWebhookDelivery]
        do {
            let lease = configuration.timeout + .seconds(60)
            claimed = try await store.claimDueDeliveries(
                now: start,
                limit: limit,
                leaseUntil: start.addingTimeInterval(Double(lease.components.seconds))
            )
        } catch {
            logger.error("claiming webhook deliveries failed", metadata: ["error": "\(error)"])
            return 0
        }
        for delivery in claimed {
            await deliver(delivery)
        }
        return claimed.count
    }

    /// The JSON body of a delivery: the event as the feed shows it, in Standard Webhooks' envelope.
    public static func body(for event: OutboxEvent) -> [UInt8] {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let timestamp = formatter.string(from: event.createdAt)
        return Array(
            "{\"data\":\(event.payload),\"id\":\"\(event.id)\",\"timestamp\":\"\(timestamp)\",\"type\":\"\(event.type.rawValue)\"}".utf8
        )
    }

    private func deliver(_ delivery: ClaimedWebhookDelivery) async {
        let startedAt = now()
        var metadata: Logger.Metadata = [
            "webhook_endpoint": "\(delivery.endpointID)", "event_id": "\(delivery.webhookID)",
            "attempt": "\(delivery.attemptNumber)",
        ]
        let result: Result<WebhookResponse, WebhookTransportError>
        do {
            let url = try WebhookURL(delivery.url)
            let secrets = delivery.secrets.compactMap { try? WebhookSecret($0, minimumBytes: 1) }
            let body = Self.body(for: delivery.event)
            let headers = WebhookSigner.headers(
                id: delivery.webhookID,
                timestamp: Int64(startedAt.timeIntervalSince1970),
                body: body,
                secrets: secrets
            )
            result = .success(try await transport.send(WebhookRequest(url: url, headers: headers, body: body), timeout: configuration.timeout))
        } catch let error as WebhookURLError {
            result = .failure(.refused(error))
        } catch let error as WebhookTransportError {
            result = .failure(error)
        } catch {
            result = .failure(.connectFailed("\(error)"))
        }
        if Task.isCancelled {
            logger.notice("webhook attempt interrupted by shutdown; it will be made again", metadata: metadata)
            return
        }
        let finishedAt = now()
        let outcome = configuration.retryPolicy.outcome(afterAttempt: delivery.attemptNumber, result: result, now: finishedAt)
        var status: Int?
        var errorText: String?
        switch result {
        case .success(let response):
            status = response.status
            metadata["status"] = "\(response.status)"
            if !WebhookRetryPolicy.isSuccess(status: response.status) { errorText = "HTTP \(response.status)" }
        case .failure(let error):
            errorText = error.description
            metadata["error"] = "\(error.description)"
        }
        switch outcome {
        case .succeeded: logger.info("webhook delivered", metadata: metadata)
        case .retry(let at):
            metadata["next_attempt_at"] = "\(at)"
            logger.warning("webhook attempt failed, will retry", metadata: metadata)
        case .failed: logger.error("webhook delivery failed for good", metadata: metadata)
        case .endpointGone: logger.error("webhook endpoint answered 410 Gone; it is disabled", metadata: metadata)
        }
        do {
            try await store.recordDeliveryAttempt(
                WebhookAttemptRecord(
                    deliveryID: delivery.deliveryID,
                    attemptNumber: delivery.attemptNumber,
                    startedAt: startedAt,
                    finishedAt: finishedAt,
                    responseStatus: status,
                    error: errorText,
                    outcome: outcome,
                    maxConsecutiveFailures: configuration.maxConsecutiveFailures
                )
            )
        } catch {
            // The lease runs out and the delivery is tried again: at least once, never lost.
            logger.error("recording a webhook attempt failed", metadata: ["error": "\(error)", "event_id": "\(delivery.webhookID)"])
        }
        onAttemptFinished(outcome)
    }
}
