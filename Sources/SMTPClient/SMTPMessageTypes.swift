@_exported import SMTP

/// One message to send: the envelope and the RFC 5322 bytes.
public struct OutgoingMessage: Sendable {
    /// The reverse-path address without brackets; empty for `<>`.
    public var mailFrom: String
    /// The forward-path addresses without brackets.
    public var recipients: [String]
    /// RFC 5322 bytes with CRLF line ends, not dot-stuffed: the client dot-stuffs,
    /// turns any bare CR or LF into CRLF and appends `CRLF.CRLF`.
    public var data: [UInt8]
    /// Some address is not ASCII (MAIL gets SMTPUTF8). Also detected from the addresses.
    public var requiresSMTPUTF8: Bool
    /// The body has octets above 127 (MAIL gets BODY=8BITMIME). Also detected from the data.
    public var has8BitData: Bool

    /// Makes a message.
    public init(mailFrom: String, recipients: [String], data: [UInt8], requiresSMTPUTF8: Bool = false, has8BitData: Bool = false) {
        self.mailFrom = mailFrom
        self.recipients = recipients
        self.data = data
        self.requiresSMTPUTF8 = requiresSMTPUTF8
        self.has8BitData = has8BitData
    }

    var envelope: SMTPEnvelope {
        let nonASCII = requiresSMTPUTF8 || ([mailFrom] + recipients).contains { !$0.utf8.allSatisfy { $0 < 0x80 } }
        return SMTPEnvelope(
            mailFrom: mailFrom,
            recipients: recipients,
            messageSize: data.count,
            requiresSMTPUTF8: nonASCII,
            has8BitData: has8BitData || Self.hasHighBit(data)
        )
    }

    /// Whether some byte is above 127: an OR over the buffer, which the compiler
    /// vectorizes (this runs for every send).
    static func hasHighBit(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBufferPointer { buffer in
            var combined: UInt8 = 0
            for byte in buffer { combined |= byte }
            return combined >= 0x80
        }
    }
}

/// The server's decision about one recipient.
public struct RecipientReply: Sendable, Hashable {
    /// The recipient, as given in `OutgoingMessage.recipients`.
    public var recipient: String
    /// RCPT's reply when refused, the end-of-data reply when accepted, MAIL's reply when MAIL was refused.
    public var reply: SMTPReply

    /// Makes a recipient reply.
    public init(recipient: String, reply: SMTPReply) {
        self.recipient = recipient
        self.reply = reply
    }
}

/// The result of `SMTPClient.send(_:)`: a decision per recipient.
public struct SMTPSendResult: Sendable {
    /// One entry per recipient, in the order given.
    ///
    /// For a refused RCPT: that reply. For an accepted one: the reply to the end of
    /// DATA. When MAIL was refused, every recipient gets MAIL's reply. Recipients
    /// refused with 452 are retried in a further transaction on the same connection
    /// (RFC 5321 section 4.5.3.1.10); if that one ends with 421 or the connection
    /// fails, they get that reply (or a synthesized `451 4.4.2`), which is transient.
    public var recipients: [RecipientReply]
    /// The session's lines, `"C: ..."` and `"S: ..."`; AUTH payloads redacted, the
    /// message data replaced by a byte count. A reused connection's transcript starts
    /// at its RSET.
    public var transcript: [String]
    /// `"host:port"` of the relay.
    public var nextHop: String

    /// Makes a result.
    public init(recipients: [RecipientReply], transcript: [String], nextHop: String) {
        self.recipients = recipients
        self.transcript = transcript
        self.nextHop = nextHop
    }
}

/// Why no per-recipient decision was reached; the attempt as a whole failed.
///
/// The description names the kind, the phase and the reply code, never a password or
/// the message content. `isTransient` follows RFC 5321 section 4.2.1: connection
/// failures, timeouts, TLS failures (including `tls=required` with STARTTLS not
/// offered: the relay may be fixed), 421, other 4xx and garbage are transient; 5xx to
/// the greeting, to EHLO and HELO, 535 to AUTH, a message over SIZE and SMTPUTF8 not
/// offered are permanent.
public struct SMTPClientError: Error, Sendable, CustomStringConvertible {
    /// The kinds of failure (the same as `SMTPErrorKind`).
    public typealias Kind = SMTPErrorKind

    /// The kind of failure.
    public var kind: Kind
    /// The reply that caused it, if any.
    public var reply: SMTPReply?
    /// True when a later attempt may succeed.
    public var isTransient: Bool
    /// The session up to the failure (see `SMTPSendResult.transcript`).
    public var transcript: [String]
    /// A short explanation without secrets.
    public var message: String

    /// Makes an error.
    public init(kind: Kind, reply: SMTPReply? = nil, isTransient: Bool, transcript: [String] = [], message: String) {
        self.kind = kind
        self.reply = reply
        self.isTransient = isTransient
        self.transcript = transcript
        self.message = message
    }

    init(_ error: SMTPSessionError, transcript: [String]) {
        self.init(kind: error.kind, reply: error.reply, isTransient: error.isTransient, transcript: transcript, message: error.message)
    }

    /// `"transient tls: STARTTLS required but not offered"`, plus the reply code if any.
    public var description: String {
        var result = "\(isTransient ? "transient" : "permanent") \(kind.rawValue): \(message)"
        if let reply { result += " [\(reply.code)\(reply.enhancedCode.map { " \($0)" } ?? "")]" }
        return result
    }
}
