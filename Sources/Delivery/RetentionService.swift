import Foundation
import Logging
import Outbox
import ServiceLifecycle

/// Purges finished emails (bodies, recipients, attempts, events) older than the
/// retention period, and expired idempotency keys.
///
/// It deletes in batches of `batchSize` rows, one short write each, and yields between
/// batches, so accepts waiting for the writer are never held up for long.
public struct RetentionService: Service {
    let outbox: SQLiteOutbox
    let retention: Duration
    let interval: Duration
    let batchSize: Int
    let logger: Logger
    let now: @Sendable () -> Date

    /// Creates the service.
    public init(
        outbox: SQLiteOutbox,
        retention: Duration,
        interval: Duration = .seconds(600),
        batchSize: Int = 500,
        logger: Logger,
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.outbox = outbox
        self.retention = retention
        self.interval = interval
        self.batchSize = batchSize
        self.logger = logger
        self.now = now
    }

    /// Purges every `interval` until graceful shutdown.
    public func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            _ = await purgeOnce()
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
            } catch {
                return
            }
        }
    }

    /// One pass: batches until nothing old is left. Returns how many emails went.
    @discardableResult
    public func purgeOnce() async -> Int {
        var total = 0
        while !Task.isCancelled {
            let current = now()
            let cutoff = current.addingTimeInterval(-retention.timeInterval)
            do {
                let purged = try await outbox.purgeFinished(before: cutoff, now: current, limit: batchSize)
                total += purged
                if purged < batchSize { break }
                await Task.yield()
            } catch {
                logger.error("retention purge failed", metadata: ["error": "\(error)"])
                break
            }
        }
        if total > 0 { logger.info("retention purge", metadata: ["emails": "\(total)"]) }
        return total
    }
}
