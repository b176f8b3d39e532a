import Foundation

/// The state of an email in the outbox (DESIGN.md, "The states of an email").
public enum EmailStatus: String, Sendable, Codable, CaseIterable {
    /// Waiting for its first attempt.
    case queued
    /// Waiting for its `scheduled_at`.
    case scheduled
    /// Leased by a delivery worker; an attempt is running.
    case sending
    /// Every recipient accepted it.
    case sent
    /// At least one recipient is waiting for a retry; `next_attempt_at` says when.
    case deferred
    /// Every recipient failed for good, or the email expired.
    case failed
    /// Some recipients accepted it and the rest failed for good.
    case partiallyFailed = "partially_failed"
    /// Canceled before it was sent.
    case canceled

    /// Whether the email will not change any more.
    public var isFinal: Bool {
        switch self {
        case .sent, .failed, .partiallyFailed, .canceled: return true
        case .queued, .scheduled, .sending, .deferred: return false
        }
    }
}

/// The state of one recipient of an email.
public enum RecipientStatus: String, Sendable, Codable, CaseIterable {
    /// Not yet attempted.
    case pending
    /// The server accepted the message for this recipient.
    case sent
    /// A transient failure; retried with the email.
    case deferred
    /// A permanent failure (a 5xx reply, or expiry).
    case failed

    /// Whether this recipient still needs an attempt.
    public var needsAttempt: Bool { self == .pending || self == .deferred }
}

/// How a recipient is addressed: in To, in Cc, or only in the envelope (Bcc).
public enum RecipientKind: String, Sendable, Codable {
    case to
    case cc
    case bcc
}

/// The type of an event row; the names users and webhooks see.
public enum EventType: String, Sendable, Codable, CaseIterable {
    case queued = "email.queued"
    case sent = "email.sent"
    case deferred = "email.deferred"
    case failed = "email.failed"
    case partiallyFailed = "email.partially_failed"
    case canceled = "email.canceled"

    /// The event written when an email enters `status`, if that status is reported.
    public init?(status: EmailStatus) {
        switch status {
        case .queued, .scheduled: self = .queued
        case .sent: self = .sent
        case .deferred: self = .deferred
        case .failed: self = .failed
        case .partiallyFailed: self = .partiallyFailed
        case .canceled: self = .canceled
        case .sending: return nil
        }
    }
}

/// An email ready to be committed: validated and rendered to its final bytes.
public struct NewEmail: Sendable {
    /// A recipient of the envelope.
    public struct Recipient: Sendable, Hashable {
        /// The envelope address.
        public var address: String
        /// How the message addresses it.
        public var kind: RecipientKind
        /// Creates a recipient.
        public init(address: String, kind: RecipientKind) {
            self.address = address
            self.kind = kind
        }
    }

    /// The public id, e.g. `em_01JDZ8Q4S9X7W3V2T1R0P9N8M7`.
    public var id: String
    /// The From header as the user wrote it, for display.
    public var from: String
    /// The envelope sender (MAIL FROM).
    public var mailFrom: String
    /// The subject, for display.
    public var subject: String
    /// The Message-ID header, with angle brackets.
    public var messageID: String
    /// The complete RFC 5322 message, CRLF line ends, not dot-stuffed.
    public var data: [UInt8]
    /// The envelope recipients, de-duplicated, in order.
    public var recipients: [Recipient]
    /// Whether an envelope address needs SMTPUTF8 (RFC 6531).
    public var requiresSMTPUTF8: Bool
    /// Whether the message has octets above 127 (BODY=8BITMIME, RFC 6152).
    public var has8BitData: Bool
    /// When the first attempt is due; nil or past means now.
    public var scheduledAt: Date?
    /// After this instant the email fails with reason `expired`.
    public var expiresAt: Date?
    /// User tags, returned everywhere the email is.
    public var tags: [String: String]

    /// Creates an email to commit.
    public init(
        id: String = EmailID.make(),
        from: String,
        mailFrom: String,
        subject: String,
        messageID: String,
        data: [UInt8],
        recipients: [Recipient],
        requiresSMTPUTF8: Bool = false,
        has8BitData: Bool = false,
        scheduledAt: Date? = nil,
        expiresAt: Date? = nil,
        tags: [String: String] = [:]
    ) {
        self.id = id
        self.from = from
        self.mailFrom = mailFrom
        self.subject = subject
        self.messageID = messageID
        self.data = data
        self.recipients = recipients
        self.requiresSMTPUTF8 = requiresSMTPUTF8
        self.has8BitData = has8BitData
        self.scheduledAt = scheduledAt
        self.expiresAt = expiresAt
        self.tags = tags
    }
}

/// What `enqueue` answers: the stored email's id and first status.
public struct EnqueueResult: Sendable, Hashable {
    /// The email's id.
    public var id: String
    /// `queued`, or `scheduled` when `scheduled_at` is in the future.
    public var status: EmailStatus
}

/// One recipient as the status API shows it.
public struct RecipientState: Sendable, Hashable, Codable {
    /// Its position in the envelope, from 0.
    public var position: Int
    /// The envelope address.
    public var address: String
    /// To, Cc or Bcc.
    public var kind: RecipientKind
    /// Its status.
    public var status: RecipientStatus
    /// The last SMTP reply code for it, if any.
    public var lastCode: Int?
    /// The enhanced status code of that reply (RFC 3463), if any.
    public var lastEnhancedCode: String?
    /// The text of that reply.
    public var lastText: String?
    /// When it last changed.
    public var updatedAt: Date
}

/// A finished delivery attempt as the status API shows it.
public struct AttemptSummary: Sendable, Hashable {
    /// 1 for the first attempt.
    public var number: Int
    /// When it started.
    public var startedAt: Date
    /// When it ended.
    public var finishedAt: Date
    /// The relay it talked to, `host:port`, when it got that far.
    public var nextHop: String?
    /// The email's status after the attempt.
    public var outcome: EmailStatus
    /// A one-line reason when the attempt failed as a whole (connection, TLS, timeout).
    public var error: String?
    /// The SMTP conversation, AUTH redacted, message content omitted.
    public var transcript: String?
}

/// An email as the status API shows it.
public struct EmailDetails: Sendable {
    /// The id.
    public var id: String
    /// The status.
    public var status: EmailStatus
    /// The From header as given.
    public var from: String
    /// The subject.
    public var subject: String
    /// The Message-ID header.
    public var messageID: String
    /// Finished attempts.
    public var attemptCount: Int
    /// When the next attempt is due; nil once final.
    public var nextAttemptAt: Date?
    /// Why it failed (`rejected`, `expired`), if it did.
    public var failureReason: String?
    /// When it was accepted.
    public var createdAt: Date
    /// When it last changed.
    public var updatedAt: Date
    /// `scheduled_at`, if given.
    public var scheduledAt: Date?
    /// `expires_at`, if given.
    public var expiresAt: Date?
    /// User tags.
    public var tags: [String: String]
    /// Its recipients in envelope order.
    public var recipients: [RecipientState]
    /// Its attempts, oldest first.
    public var attempts: [AttemptSummary]
}

/// An email leased by a delivery worker.
public struct ClaimedEmail: Sendable {
    /// A recipient that still needs an attempt.
    public struct Recipient: Sendable, Hashable {
        /// Position in the envelope.
        public var position: Int
        /// The envelope address.
        public var address: String
        /// Its status before this attempt.
        public var status: RecipientStatus

        /// Creates a recipient.
        public init(position: Int, address: String, status: RecipientStatus) {
            self.position = position
            self.address = address
            self.status = status
        }
    }

    /// The email's id.
    public var id: String
    /// The envelope sender.
    public var mailFrom: String
    /// The Message-ID header.
    public var messageID: String
    /// The message bytes, exactly as accepted.
    public var data: [UInt8]
    /// Recipients still pending or deferred.
    public var recipients: [Recipient]
    /// Every recipient's status before this attempt, by position.
    public var allRecipientStatuses: [Int: RecipientStatus]
    /// The number this attempt will have (1 for the first).
    public var attemptNumber: Int
    /// When the email became due: accepted, or its `scheduled_at` if later. The
    /// queue lifetime counts from here.
    public var createdAt: Date
    /// The email's own deadline.
    public var expiresAt: Date?
    /// Whether SMTPUTF8 is needed.
    public var requiresSMTPUTF8: Bool
    /// Whether BODY=8BITMIME is needed.
    public var has8BitData: Bool
    /// Who holds the lease.
    public var leaseOwner: String
    /// Until when the lease holds unless renewed.
    public var leaseUntil: Date

    /// Creates a claimed email (the outbox does; tests may).
    public init(
        id: String,
        mailFrom: String,
        messageID: String,
        data: [UInt8],
        recipients: [Recipient],
        allRecipientStatuses: [Int: RecipientStatus],
        attemptNumber: Int,
        createdAt: Date,
        expiresAt: Date?,
        requiresSMTPUTF8: Bool,
        has8BitData: Bool,
        leaseOwner: String,
        leaseUntil: Date
    ) {
        self.id = id
        self.mailFrom = mailFrom
        self.messageID = messageID
        self.data = data
        self.recipients = recipients
        self.allRecipientStatuses = allRecipientStatuses
        self.attemptNumber = attemptNumber
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.requiresSMTPUTF8 = requiresSMTPUTF8
        self.has8BitData = has8BitData
        self.leaseOwner = leaseOwner
        self.leaseUntil = leaseUntil
    }
}

/// The result of one attempt, to be recorded in one transaction.
public struct AttemptRecord: Sendable {
    /// What happened to one recipient.
    public struct RecipientResult: Sendable, Hashable {
        /// Position in the envelope.
        public var position: Int
        /// Its new status.
        public var status: RecipientStatus
        /// The SMTP reply code, if a reply was read.
        public var code: Int?
        /// The enhanced status code, if the reply had one.
        public var enhancedCode: String?
        /// The reply text (or the reason, when no reply was read).
        public var text: String?

        /// Creates a result.
        public init(position: Int, status: RecipientStatus, code: Int?, enhancedCode: String?, text: String?) {
            self.position = position
            self.status = status
            self.code = code
            self.enhancedCode = enhancedCode
            self.text = text
        }
    }

    /// The email.
    public var emailID: String
    /// The lease owner that ran the attempt; the record is refused if the lease was lost.
    public var leaseOwner: String
    /// The attempt number from the claim.
    public var attemptNumber: Int
    /// When the attempt started.
    public var startedAt: Date
    /// When it ended.
    public var finishedAt: Date
    /// `host:port` of the relay, if connected.
    public var nextHop: String?
    /// Per-recipient results for the recipients this attempt decided.
    public var recipients: [RecipientResult]
    /// The email's new status.
    public var status: EmailStatus
    /// When to try again (for `deferred`).
    public var nextAttemptAt: Date?
    /// `rejected`, `expired`, ... for failed emails.
    public var failureReason: String?
    /// A one-line error for a whole-attempt failure.
    public var error: String?
    /// The redacted transcript.
    public var transcript: String?

    /// Creates a record.
    public init(
        emailID: String,
        leaseOwner: String,
        attemptNumber: Int,
        startedAt: Date,
        finishedAt: Date,
        nextHop: String?,
        recipients: [RecipientResult],
        status: EmailStatus,
        nextAttemptAt: Date?,
        failureReason: String?,
        error: String?,
        transcript: String?
    ) {
        self.emailID = emailID
        self.leaseOwner = leaseOwner
        self.attemptNumber = attemptNumber
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.nextHop = nextHop
        self.recipients = recipients
        self.status = status
        self.nextAttemptAt = nextAttemptAt
        self.failureReason = failureReason
        self.error = error
        self.transcript = transcript
    }
}

/// An event row, as the feed and the webhooks read it.
public struct OutboxEvent: Sendable, Hashable {
    /// The position in commit order; the feed's cursor.
    public var sequence: Int64
    /// The stable public id, `evt_<sequence>`.
    public var id: String { "evt_\(sequence)" }
    /// The type.
    public var type: EventType
    /// The email it is about.
    public var emailID: String
    /// When it was committed.
    public var createdAt: Date
    /// The JSON payload (`email_id`, `status`, `recipients`, `tags`).
    public var payload: String
}

/// An `Idempotency-Key` as the outbox stores it.
public struct IdempotencyRequest: Sendable, Hashable {
    /// Whose key it is: a digest of the API key (never the key itself).
    public var scope: String
    /// The client's key.
    public var key: String
    /// A digest of the canonical request body.
    public var requestHash: String
    /// When the key may be forgotten.
    public var expiresAt: Date

    /// Creates a request.
    public init(scope: String, key: String, requestHash: String, expiresAt: Date) {
        self.scope = scope
        self.key = key
        self.requestHash = requestHash
        self.expiresAt = expiresAt
    }
}

/// What an enqueue answered: a result per email, and whether it is a replay.
public struct EnqueueReply: Sendable, Hashable {
    /// One result per email, in order.
    public var results: [EnqueueResult]
    /// True when an earlier request with the same idempotency key made these emails;
    /// nothing new was stored.
    public var replayed: Bool
}

/// Filters and paging of the email list.
public struct EmailQuery: Sendable, Hashable {
    /// Only this status.
    public var status: EmailStatus?
    /// Only emails created at or after this instant.
    public var createdAfter: Date?
    /// Only emails created before this instant.
    public var createdBefore: Date?
    /// Only emails with this tag key and value.
    public var tag: (key: String, value: String)? {
        get { tagKey.map { ($0, tagValue ?? "") } }
        set {
            tagKey = newValue?.key
            tagValue = newValue?.value
        }
    }
    var tagKey: String?
    var tagValue: String?
    /// Page size.
    public var limit: Int
    /// Continue after this email id (the previous page's last).
    public var cursor: String?

    /// Creates a query.
    public init(
        status: EmailStatus? = nil,
        createdAfter: Date? = nil,
        createdBefore: Date? = nil,
        tag: (key: String, value: String)? = nil,
        limit: Int = 50,
        cursor: String? = nil
    ) {
        self.status = status
        self.createdAfter = createdAfter
        self.createdBefore = createdBefore
        self.tagKey = tag?.key
        self.tagValue = tag?.value
        self.limit = limit
        self.cursor = cursor
    }
}
