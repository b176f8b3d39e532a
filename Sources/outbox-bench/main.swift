// outbox-bench: does the outbox stay fast as it fills? (issue 5)
//
// Measures claiming (`claimDue`, 4 at a time, then recording each as sent) and GET by
// id (`email(id:)`) on an outbox with 10,000 queued emails, first with nothing else in
// it and then with 1,000,000 finished emails beside them, and prints the ratio. Both
// are index lookups (`email_due`, the primary key), so the goal is a ratio under 1.5.
//
// Usage: outbox-bench [finished-count]   (default 1000000)

import Foundation
import GRDB
import Outbox

let finishedCount = CommandLine.arguments.dropFirst().first.flatMap(Int.init) ?? 1_000_000
let queuedCount = 10_000
let samples = 2_000

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
}

func message(_ index: Int) -> NewEmail {
    NewEmail(
        from: "Bench <bench@acme.example>",
        mailFrom: "bench@acme.example",
        subject: "bench \(index)",
        messageID: "<bench-\(index)-\(UUID().uuidString)@acme.example>",
        data: Array(String(repeating: "x", count: 2000).utf8),
        recipients: [.init(address: "user\(index)@example.com", kind: .to)]
    )
}

/// Fills `finished` sent emails directly with SQL (the fast way to make a big file).
func fillFinished(_ path: String, count: Int) throws {
    let queue = try DatabaseQueue(path: path)
    try queue.write { db in
        try db.execute(
            sql: """
                WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
                INSERT INTO email (id, status, from_header, mail_from, subject, message_id, created_at, updated_at,
                    attempt_count, finished_at)
                SELECT printf('em_0%025d', i), 'sent', 'bench@acme.example', 'bench@acme.example', 'old',
                    printf('<old-%d@acme.example>', i), 1700000000000 + i, 1700000000000 + i, 1, 1700000000000 + i
                FROM n
                """,
            arguments: [count]
        )
        try db.execute(
            sql: """
                INSERT INTO recipient (email_id, position, address, kind, status, last_code, last_text, updated_at)
                SELECT id, 0, 'old@example.com', 'to', 'sent', 250, 'OK', created_at FROM email WHERE status = 'sent'
                """
        )
        try db.execute(
            sql: """
                INSERT INTO email_body (email_id, data) SELECT id, zeroblob(2000) FROM email WHERE status = 'sent'
                """
        )
    }
}

struct Measurement {
    var claimMicros: Double
    var getMicros: Double
}

func measure(finished: Int) async throws -> Measurement {
    let directory = NSTemporaryDirectory() + "pigeon-outbox-bench-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let path = directory + "/outbox.sqlite"
    do {
        _ = try SQLiteOutbox(path: path)  // create the schema, then let go of the lock
    }
    if finished > 0 { try fillFinished(path, count: finished) }
    let outbox = try SQLiteOutbox(path: path)
    var ids: [String] = []
    for start in stride(from: 0, to: queuedCount, by: 100) {
        let reply = try await outbox.enqueue((start..<start + 100).map(message), idempotency: nil)
        ids += reply.results.map(\.id)
    }

    var getTimes: [Double] = []
    for index in 0..<samples {
        let id = ids[(index * 7919) % ids.count]
        let start = ContinuousClock.now
        _ = try await outbox.email(id: id)
        getTimes.append(Double((ContinuousClock.now - start).components.attoseconds) / 1e12)
    }

    var claimTimes: [Double] = []
    let now = Date() + 1
    for _ in 0..<(samples / 4) {
        let start = ContinuousClock.now
        let claimed = try await outbox.claimDue(now: now, limit: 4, owner: "bench", leaseUntil: now + 300)
        claimTimes.append(Double((ContinuousClock.now - start).components.attoseconds) / 1e12)
        for email in claimed {
            try await outbox.recordAttempt(
                AttemptRecord(
                    emailID: email.id,
                    leaseOwner: "bench",
                    attemptNumber: email.attemptNumber,
                    startedAt: now,
                    finishedAt: now,
                    nextHop: "sink",
                    recipients: [.init(position: 0, status: .sent, code: 250, enhancedCode: nil, text: "OK")],
                    status: .sent,
                    nextAttemptAt: nil,
                    failureReason: nil,
                    error: nil,
                    transcript: nil
                )
            )
        }
    }
    return Measurement(claimMicros: median(claimTimes), getMicros: median(getTimes))
}

let empty = try await measure(finished: 0)
let full = try await measure(finished: finishedCount)
print()
print("outbox scaling: \(queuedCount) queued, median of \(samples) GETs and \(samples / 4) claims")
print("| operation | empty outbox | with \(finishedCount) finished | ratio |")
print("|---|---|---|---|")
print(String(format: "| claim 4 due emails | %.0f us | %.0f us | %.2fx |", empty.claimMicros, full.claimMicros, full.claimMicros / empty.claimMicros))
print(String(format: "| GET by id | %.0f us | %.0f us | %.2fx |", empty.getMicros, full.getMicros, full.getMicros / empty.getMicros))
