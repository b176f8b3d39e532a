/// The envelope of one mail transaction (RFC 5321 section 3.3).
public struct SMTPEnvelope: Sendable, Hashable {
    /// The reverse-path without brackets; empty for the null reverse-path `<>`.
    public var mailFrom: String
    /// The forward-paths without brackets.
    public var recipients: [String]
    /// The size of the message in octets, declared with SIZE= (RFC 1870).
    public var messageSize: Int
    /// Some address is not ASCII: MAIL gets SMTPUTF8 (RFC 6531).
    public var requiresSMTPUTF8: Bool
    /// The body has octets above 127: MAIL gets BODY=8BITMIME when offered (RFC 6152).
    public var has8BitData: Bool

    /// Makes an envelope.
    public init(mailFrom: String, recipients: [String], messageSize: Int, requiresSMTPUTF8: Bool = false, has8BitData: Bool = false) {
        self.mailFrom = mailFrom
        self.recipients = recipients
        self.messageSize = messageSize
        self.requiresSMTPUTF8 = requiresSMTPUTF8
        self.has8BitData = has8BitData
    }

    /// The longest path RFC 5321 section 4.5.3.1.3 allows, brackets included.
    public static let maximumPathLength = 256

    /// Whether `address` can go between the brackets of a command without changing its
    /// meaning: no control characters (so no CR or LF), no brackets, no spaces outside
    /// quotes are checked loosely: no space at all, and no longer than the RFC allows.
    public static func isSafeAddress(_ address: String) -> Bool {
        guard address.utf8.count + 2 <= maximumPathLength else { return false }
        return address.unicodeScalars.allSatisfy { scalar in
            scalar.value > 0x20 && scalar.value != 0x7F && scalar != "<" && scalar != ">"
        }
    }
}

/// One mail transaction, MAIL to the end of DATA, as a pure state machine.
///
/// With PIPELINING (RFC 2920) RSET, MAIL, every RCPT and DATA go out in one write and
/// the replies are matched in order; without it, one command at a time. The outcome
/// holds one reply per recipient: the RCPT reply when refused, the reply to the end of
/// the data when accepted, MAIL's reply for all when MAIL was refused. Recipients
/// refused with 452 (too many recipients, RFC 5321 section 4.5.3.1.10) while others
/// were accepted are listed in `Outcome.continuation`, to be sent in a new
/// transaction. A 421 at any point fails the transaction with `.serviceUnavailable`.
public struct SMTPTransactionStateMachine: Sendable {
    /// The result of a finished transaction.
    public struct Outcome: Sendable, Hashable {
        /// One reply per recipient of the envelope, in its order.
        public var replies: [SMTPReply]
        /// Indices of recipients to send again in a new transaction (452 to RCPT).
        public var continuation: [Int]
    }

    /// What the transport must do next.
    public enum Action: Sendable, Hashable {
        /// Write the commands (in one write) and wait for the next reply.
        case send([SMTPCommand])
        /// Wait for the next reply.
        case awaitReply
        /// Write the encoded message data and its terminator, then call `dataSent()`.
        case sendData
        /// DATA was accepted but no recipient was: write only the terminator `.` and
        /// call `dataSent()` (RFC 2920 section 3.1).
        case sendEmptyData
        /// The transaction is over; the connection may take another one.
        case finished(Outcome)
        /// The transaction failed; close the connection.
        case fail(SMTPSessionError)
    }

    private enum Expected: Sendable, Hashable {
        case rset
        case mail
        case rcpt(Int)
        case data
        case dataDone
        case emptyDataDone
    }

    private let envelope: SMTPEnvelope
    private let capabilities: SMTPCapabilities
    private let resetFirst: Bool
    private var expected: [Expected] = []
    private var mailReply: SMTPReply?
    private var rcptReplies: [SMTPReply?]
    private var finalReply: SMTPReply?
    private var done = false

    /// Makes a transaction; `resetFirst` sends RSET first (a reused connection).
    public init(envelope: SMTPEnvelope, capabilities: SMTPCapabilities, resetFirst: Bool = false) {
        self.envelope = envelope
        self.capabilities = capabilities
        self.resetFirst = resetFirst
        self.rcptReplies = Array(repeating: nil, count: envelope.recipients.count)
    }

    /// The phase whose timeout applies now.
    public var phase: SMTPPhase {
        switch expected.last {
        case .rset: .rset
        case .mail: .mail
        case .rcpt: .rcpt
        case .data: .data
        case .dataDone, .emptyDataDone: .dataDone
        case nil: .mail
        }
    }

    /// Checks the envelope against the server's capabilities and returns the first commands.
    ///
    /// A message the server cannot take fails here, before anything is sent, with a
    /// permanent error: an unsafe address, SMTPUTF8 needed but not offered, a size over
    /// the server's SIZE.
    public mutating func start() -> Action {
        let addresses = [envelope.mailFrom] + envelope.recipients
        guard !envelope.recipients.isEmpty,
            envelope.recipients.allSatisfy({ !$0.isEmpty }),
            addresses.allSatisfy(SMTPEnvelope.isSafeAddress)
        else {
            return fail(SMTPSessionError(kind: .rejected, isTransient: false, message: "invalid envelope address"))
        }
        if envelope.requiresSMTPUTF8 && !capabilities.supportsSMTPUTF8 {
            return fail(
                SMTPSessionError(kind: .smtputf8Unsupported, isTransient: false, message: "server does not offer SMTPUTF8 for a non-ASCII address")
            )
        }
        if let limit = capabilities.maximumMessageSize, limit > 0, envelope.messageSize > limit {
            return fail(
                SMTPSessionError(
                    kind: .messageTooLarge,
                    isTransient: false,
                    message: "message of \(envelope.messageSize) bytes over the server's SIZE \(limit)"
                )
            )
        }
        var parameters: [String] = []
        if capabilities.maximumMessageSize != nil { parameters.append("SIZE=\(envelope.messageSize)") }
        if envelope.has8BitData && capabilities.supports8BitMIME { parameters.append("BODY=8BITMIME") }
        if envelope.requiresSMTPUTF8 { parameters.append("SMTPUTF8") }
        let mail = SMTPCommand.mail(from: envelope.mailFrom, parameters: parameters)

        if capabilities.supportsPipelining {
            var commands: [SMTPCommand] = []
            if resetFirst {
                commands.append(.rset)
                expected.append(.rset)
            }
            commands.append(mail)
            expected.append(.mail)
            for (index, recipient) in envelope.recipients.enumerated() {
                commands.append(.rcpt(to: recipient, parameters: []))
                expected.append(.rcpt(index))
            }
            commands.append(.data)
            expected.append(.data)
            expected.reverse()
            return .send(commands)
        }
        if resetFirst {
            expected = [.rset]
            return .send([.rset])
        }
        expected = [.mail]
        return .send([mail])
    }

    /// Handles the next reply, in the order the commands were sent.
    public mutating func receive(_ reply: SMTPReply) -> Action {
        guard !done, let current = expected.popLast() else {
            return fail(SMTPSessionError(kind: .protocolViolation, reply: reply, isTransient: true, message: "unexpected reply"))
        }
        if reply.code == 421 { return fail(.negativeReply(reply, during: "\(current)")) }
        // RFC 5321 section 4.3.2: the codes each command may answer with. Anything else
        // (a 354 to MAIL, a 250 to DATA) must not be mistaken for a decision.
        let isExpectedCode: Bool =
            switch current {
            case .data: reply.code == 354 || reply.isTransientNegative || reply.isPermanentNegative
            default: reply.isPositiveCompletion || reply.isTransientNegative || reply.isPermanentNegative
            }
        guard isExpectedCode else {
            return fail(SMTPSessionError(kind: .protocolViolation, reply: reply, isTransient: true, message: "unexpected reply \(reply.code)"))
        }
        let pipelined = capabilities.supportsPipelining
        switch current {
        case .rset:
            guard reply.isPositiveCompletion else {
                var error = SMTPSessionError.negativeReply(reply, during: "RSET")
                error.isTransient = true
                return fail(error)
            }
            if pipelined { return .awaitReply }
            return startMail()

        case .mail:
            mailReply = reply
            if pipelined { return .awaitReply }
            guard reply.isPositiveCompletion else { return finish() }
            expected = [.rcpt(0)]
            return .send([.rcpt(to: envelope.recipients[0], parameters: [])])

        case .rcpt(let index):
            rcptReplies[index] = reply
            if pipelined { return .awaitReply }
            let next = index + 1
            if next < envelope.recipients.count {
                expected = [.rcpt(next)]
                return .send([.rcpt(to: envelope.recipients[next], parameters: [])])
            }
            guard acceptedCount > 0 else { return finish() }
            expected = [.data]
            return .send([.data])

        case .data:
            if reply.code == 354 {
                if mailReply?.isPositiveCompletion == true && acceptedCount > 0 {
                    expected = [.dataDone]
                    return .sendData
                }
                expected = [.emptyDataDone]
                return .sendEmptyData
            }
            finalReply = reply
            return finish()

        case .dataDone:
            finalReply = reply
            return finish()

        case .emptyDataDone:
            return finish()
        }
    }

    /// The message data (or the lone terminator) was written; wait for the reply.
    public mutating func dataSent() -> Action {
        .awaitReply
    }

    private mutating func startMail() -> Action {
        var parameters: [String] = []
        if capabilities.maximumMessageSize != nil { parameters.append("SIZE=\(envelope.messageSize)") }
        if envelope.has8BitData && capabilities.supports8BitMIME { parameters.append("BODY=8BITMIME") }
        if envelope.requiresSMTPUTF8 { parameters.append("SMTPUTF8") }
        expected = [.mail]
        return .send([.mail(from: envelope.mailFrom, parameters: parameters)])
    }

    private var acceptedCount: Int {
        rcptReplies.reduce(0) { $0 + ($1?.isPositiveCompletion == true ? 1 : 0) }
    }

    private mutating func finish() -> Action {
        done = true
        expected = []
        let missing = SMTPReply(code: 451, enhancedCode: EnhancedStatusCode(klass: 4, subject: 3, detail: 0), lines: ["no reply"])
        guard let mailReply, mailReply.isPositiveCompletion else {
            return .finished(Outcome(replies: Array(repeating: mailReply ?? missing, count: envelope.recipients.count), continuation: []))
        }
        let accepted = acceptedCount
        var replies: [SMTPReply] = []
        var continuation: [Int] = []
        for (index, rcptReply) in rcptReplies.enumerated() {
            let rcptReply = rcptReply ?? missing
            if rcptReply.isPositiveCompletion {
                replies.append(finalReply ?? missing)
            } else {
                if rcptReply.code == 452 && accepted > 0 { continuation.append(index) }
                replies.append(rcptReply)
            }
        }
        return .finished(Outcome(replies: replies, continuation: continuation))
    }

    private mutating func fail(_ error: SMTPSessionError) -> Action {
        done = true
        expected = []
        return .fail(error)
    }
}
