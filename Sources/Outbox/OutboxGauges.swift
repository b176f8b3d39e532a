import Foundation
import GRDB

/// What `/metrics` reads from the database at each scrape.
public struct OutboxGauges: Sendable {
    /// Emails by status.
    public var emailsByStatus: [EmailStatus: Int]
    /// Seconds since the oldest waiting email became due (0 when none is overdue).
    public var oldestDueAge: Double
    /// Webhook deliveries by status (`pending`, `succeeded`, `failed`).
    public var webhookDeliveriesByStatus: [String: Int]
}

extension SQLiteOutbox {
    /// Reads the gauges in one read transaction. The oldest due email is one step of
    /// the `email_due` index; the counts are `GROUP BY` scans.
    public func gauges(now: Date = Date()) async throws -> OutboxGauges {
        try await pool.read { db in
            var emails: [EmailStatus: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT status, COUNT(*) AS n FROM email GROUP BY status") {
                if let status = EmailStatus(rawValue: row["status"]) { emails[status] = row["n"] }
            }
            let oldest = try Int64.fetchOne(
                db,
                sql: """
                    SELECT next_attempt_at FROM email
                    WHERE next_attempt_at IS NOT NULL AND status != 'sending'
                    ORDER BY next_attempt_at LIMIT 1
                    """
            )
            let age = oldest.map { max(0, Double(now.millis - $0) / 1000) } ?? 0
            var webhooks: [String: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT status, COUNT(*) AS n FROM webhook_delivery GROUP BY status") {
                webhooks[row["status"]] = row["n"]
            }
            return OutboxGauges(emailsByStatus: emails, oldestDueAge: age, webhookDeliveriesByStatus: webhooks)
        }
    }
}
