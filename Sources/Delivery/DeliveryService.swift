import Foundation
import Logging
import Outbox
import SMTP
import SMTPClient
import ServiceLifecycle

/// Sends something that `SMTPClient` can send; the seam that lets the service be
/// driven by any transport (the real pool in production).
public protocol MessageSender: Sendable {
    /// Runs one SMTP transaction; see `SMTPClient.send`.
    func send(_ message: OutgoingMessage) async throws(SMTPClientError) -> SMTPSendResult
    /// Executors the workers should run on (worker `i` on executor `i % count`); empty
    /// for no preference. `SMTPClient` gives its event loops, so that a worker's sends
    /// run on its connection's thread without a hop each way. They must outlive the
    /// service: a job given to a shut-down event loop never runs (the app uses NIO's
    /// singleton group, which is never shut down).
    var preferredExecutors: [any TaskExecutor] { get }
}

extension MessageSender {
    /// No preference: the workers run on the global executor.
    public var preferredExecutors: [any TaskExecutor] { [] }
}

extension SMTPClient: MessageSender {
    /// The client's event loops (`SMTPClient.taskExecutors`).
    public var preferredExecutors: [any TaskExecutor] { taskExecutors }
}

/// Tuning of the delivery service.
public struct DeliveryConfiguration: Sendable {
    /// How many emails are in flight at once (one worker each; match the SMTP pool size).
    public var concurrency: Int
    /// How many emails one worker claims in one transaction.
    public var claimBatch: Int
    /// How long a claim holds; renewed every third of it while an attempt runs.
    public var leaseDuration: Duration
    /// The longest a worker sleeps without looking for due emails.
    public var pollInterval: Duration
    /// This process's name in `lease_owner`.
    public var instanceID: String

    /// Creates a configuration.
    public init(
        concurrency: Int = 8,
        claimBatch: Int = 4,
        leaseDuration: Duration = .seconds(300),
        pollInterval: Duration = .seconds(1),
        instanceID: String = "pigeon-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString.prefix(8))"
    ) {
        self.concurrency = max(1, concurrency)
        self.claimBatch = max(1, claimBatch)
        self.leaseDuration = leaseDuration
        self.pollInterval = pollInterval
        self.instanceID = instanceID
    }
}

/// The delivery Service: claims due emails, sends them, records what happened.
///
/// `concurrency` workers each claim a few due emails with a lease, send each over the
/// SMTP pool, and record the attempt in one transaction (recipients, attempt row, the
/// email's status, its event). A 2xx reply marks a recipient `sent`, a 4xx `deferred`,
/// a 5xx `failed`; a transient session failure (connection, TLS, timeout, 421) defers
/// every open recipient, a permanent one (e.g. AUTH refused) fails them.
///
/// On graceful shutdown the workers stop claiming, finish the attempt in progress,
/// give back the leases of emails claimed but not started, and return; so the process
/// exits with no email left `sending`.
public struct DeliveryService: Service {
    let outbox: SQLiteOutbox
    let sender: any MessageSender
    let policy: RetryPolicy
    let configuration: DeliveryConfiguration
    let logger: Logger
    let now: @Sendable () -> Date
    /// Counters and the attempt-duration histogram (`DeliveryMetrics`); nil counts nothing.
    public var metrics: DeliveryMetrics?

    /// Creates the service.
    public init(
        outbox: SQLiteOutbox,
        sender: any MessageSender,
        policy: RetryPolicy,
        configuration: DeliveryConfiguration = DeliveryConfiguration(),
        logger: Logger = Logger(label: "pigeon.delivery"),
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.outbox = outbox
        self.sender = sender
        self.policy = policy
        self.configuration = configuration
        self.logger = logger
        self.now = now
    }

    /// Runs the workers until graceful shutdown or cancellation.
    public func run() async throws {
        logger.info("delivery started", metadata: ["workers": "\(configuration.concurrency)"])
        let executors = sender.preferredExecutors
        await withDiscardingTaskGroup { group in
            for index in 0..<configuration.concurrency {
                group.addTask(executorPreference: executors.isEmpty ? nil : executors[index % executors.count]) {
                    await worker(index)
                }
            }
        }
        logger.info("delivery stopped")
    }

    private func worker(_ index: Int) async {
        let owner = "\(configuration.instanceID)/\(index)"
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let claimed: [ClaimedEmail]
            do {
                let start = now()
                claimed = try await outbox.claimDue(
                    now: start,
                    limit: configuration.claimBatch,
                    owner: owner,
                    leaseUntil: start.addingTimeInterval(configuration.leaseDuration.timeInterval)
                )
            } catch {
                logger.error("claiming failed", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: configuration.pollInterval)
                continue
            }
            if claimed.isEmpty {
                await waitForWork()
                continue
            }
            for (position, email) in claimed.enumerated() {
                if Task.isCancelled || Task.isShuttingDownGracefully {
                    await release(Array(claimed[position...]), owner: owner)
                    break
                }
                await attempt(email)
            }
        }
    }

    private func waitForWork() async {
        var deadline = ContinuousClock.now.advanced(by: configuration.pollInterval)
        if let due = try? await outbox.nextDueDate() {
            let untilDue = Duration.milliseconds(Int64(max(0, due.timeIntervalSince(now())) * 1000))
            if untilDue < configuration.pollInterval {
                deadline = ContinuousClock.now.advanced(by: max(untilDue, .milliseconds(5)))
            }
        }
        let until = deadline
        // A graceful shutdown ends the wait at once.
        await cancelWhenGracefulShutdown {
            await outbox.waitForWork(until: until)
        }
    }

    private func release(_ emails: [ClaimedEmail], owner: String) async {
        for email in emails {
            do {
                try await outbox.releaseLease(emailID: email.id, owner: owner, now: now())
            } catch {
                logger.error("releasing a lease failed", metadata: ["email_id": "\(email.id)", "error": "\(error)"])
            }
        }
    }

    /// Runs one attempt for a claimed email and records it.
    func attempt(_ email: ClaimedEmail) async {
        let startedAt = now()
        var record: AttemptRecord
        if policy.isExpired(at: startedAt, createdAt: email.createdAt, expiresAt: email.expiresAt) {
            record = decide(email, startedAt: startedAt, outcome: .expired)
        } else {
            let message = OutgoingMessage(
                mailFrom: email.mailFrom,
                recipients: email.recipients.map(\.address),
                data: email.data,
                requiresSMTPUTF8: email.requiresSMTPUTF8,
                has8BitData: email.has8BitData
            )
            let outcome = await sendRenewingLease(message, email: email)
            record = decide(email, startedAt: startedAt, outcome: outcome)
        }
        log(record, email: email)
        metrics?.record(record)
        do {
            try await outbox.recordAttempt(record)
        } catch {
            logger.error(
                "recording an attempt failed; the lease will run out and the email will be tried again",
                metadata: ["email_id": "\(email.id)", "error": "\(error)"]
            )
        }
    }

    enum Outcome {
        case replies(SMTPSendResult)
        case failure(SMTPClientError)
        case expired
    }

    private func sendRenewingLease(_ message: OutgoingMessage, email: ClaimedEmail) async -> Outcome {
        let sender = self.sender
        return await withTaskGroup(of: Outcome?.self) { group in
            group.addTask {
                do throws(SMTPClientError) {
                    return .replies(try await sender.send(message))
                } catch {
                    return .failure(error)
                }
            }
            group.addTask {
                let interval = configuration.leaseDuration / 3
                while !Task.isCancelled {
                    do { try await Task.sleep(for: interval) } catch { return nil }
                    let until = now().addingTimeInterval(configuration.leaseDuration.timeInterval)
                    let kept = (try? await outbox.renewLease(emailID: email.id, owner: email.leaseOwner, until: until)) ?? false
                    if !kept {
                        logger.warning("lease lost during an attempt", metadata: ["email_id": "\(email.id)"])
                        return nil
                    }
                }
                return nil
            }
            var result: Outcome = .expired
            for await value in group {
                if let value {
                    result = value
                    group.cancelAll()
                }
            }
            return result
        }
    }

    /// Turns an attempt's outcome into the record to commit (pure; unit-tested).
    func decide(_ email: ClaimedEmail, startedAt: Date, outcome: Outcome) -> AttemptRecord {
        let finishedAt = now()
        var results: [AttemptRecord.RecipientResult] = []
        var statuses = email.allRecipientStatuses
        var nextHop: String?
        var attemptError: String?
        var transcript: String?
        var expired = false

        switch outcome {
        case .expired:
            expired = true
            for recipient in email.recipients {
                results.append(
                    .init(
                        position: recipient.position,
                        status: .failed,
                        code: nil,
                        enhancedCode: nil,
                        text: "expired: not delivered before the deadline"
                    )
                )
            }
        case .failure(let error):
            attemptError = error.description
            transcript = error.transcript.joined(separator: "\n")
            let status: RecipientStatus = error.isTransient ? .deferred : .failed
            for recipient in email.recipients {
                results.append(
                    .init(
                        position: recipient.position,
                        status: status,
                        code: error.reply?.code,
                        enhancedCode: error.reply?.enhancedCode?.description,
                        text: error.reply.map { $0.text } ?? error.description
                    )
                )
            }
        case .replies(let sendResult):
            nextHop = sendResult.nextHop
            transcript = sendResult.transcript.joined(separator: "\n")
            for (index, recipient) in email.recipients.enumerated() {
                guard index < sendResult.recipients.count else {
                    results.append(
                        .init(position: recipient.position, status: .deferred, code: nil, enhancedCode: nil, text: "no reply for this recipient")
                    )
                    continue
                }
                let reply = sendResult.recipients[index].reply
                let status: RecipientStatus
                if reply.code >= 200 && reply.code < 300 {
                    status = .sent
                } else if reply.code >= 500 {
                    status = .failed
                } else {
                    status = .deferred
                }
                results.append(
                    .init(
                        position: recipient.position,
                        status: status,
                        code: reply.code,
                        enhancedCode: reply.enhancedCode?.description,
                        text: reply.text
                    )
                )
            }
        }
        for result in results { statuses[result.position] = result.status }

        var nextAttemptAt: Date?
        if statuses.values.contains(where: \.needsAttempt) {
            nextAttemptAt = policy.nextAttempt(
                afterAttempt: email.attemptNumber,
                now: finishedAt,
                createdAt: email.createdAt,
                expiresAt: email.expiresAt
            )
            if nextAttemptAt == nil {
                expired = true
                for index in results.indices where results[index].status.needsAttempt {
                    results[index].status = .failed
                    results[index].text = "expired: \(results[index].text ?? "not delivered before the deadline")"
                }
                for (position, status) in statuses where status.needsAttempt { statuses[position] = .failed }
            }
        }
        let values = Array(statuses.values)
        let status: EmailStatus
        var failureReason: String?
        if values.contains(where: \.needsAttempt) {
            status = .deferred
        } else if values.allSatisfy({ $0 == .sent }) {
            status = .sent
        } else if values.allSatisfy({ $0 == .failed }) {
            status = .failed
            failureReason = expired ? "expired" : "rejected"
        } else {
            status = .partiallyFailed
            failureReason = expired ? "expired" : "rejected"
        }
        return AttemptRecord(
            emailID: email.id,
            leaseOwner: email.leaseOwner,
            attemptNumber: email.attemptNumber,
            startedAt: startedAt,
            finishedAt: finishedAt,
            nextHop: nextHop,
            recipients: results,
            status: status,
            nextAttemptAt: status == .deferred ? nextAttemptAt : nil,
            failureReason: failureReason,
            error: attemptError,
            transcript: transcript
        )
    }

    private func log(_ record: AttemptRecord, email: ClaimedEmail) {
        var metadata: Logger.Metadata = [
            "email_id": "\(email.id)",
            "attempt": "\(record.attemptNumber)",
            "status": "\(record.status.rawValue)",
        ]
        if let hop = record.nextHop { metadata["next_hop"] = "\(hop)" }
        if let error = record.error { metadata["error"] = "\(error)" }
        if let first = record.recipients.first(where: { $0.code != nil }), let code = first.code {
            metadata["reply"] = "\(code) \(first.enhancedCode ?? "") \(first.text ?? "")"
        }
        if let next = record.nextAttemptAt { metadata["next_attempt_at"] = "\(next)" }
        logger.info("delivery attempt", metadata: metadata)
        if let transcript = record.transcript, logger.logLevel <= .debug {
            logger.debug("smtp transcript", metadata: ["email_id": "\(email.id)", "transcript": "\(transcript)"])
        }
    }
}
