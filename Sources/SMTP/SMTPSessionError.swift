/// What kind of failure ended an SMTP attempt; stable names for logs and metrics.
public enum SMTPErrorKind: String, Sendable, Hashable {
    /// The TCP connection could not be made.
    case connect
    /// A phase's timeout ran out (RFC 5321 section 4.5.3.2).
    case timeout
    /// TLS could not be had: STARTTLS not offered or refused under `tls=required`, or the handshake failed.
    case tls
    /// The server sent something that is not SMTP: garbage, an over-long line, an unexpected code.
    case protocolViolation
    /// AUTH was refused, or could not be done safely.
    case authentication
    /// 421: the server is closing the connection (RFC 5321 section 3.8).
    case serviceUnavailable
    /// The message is larger than the server's SIZE (RFC 1870).
    case messageTooLarge
    /// The message needs SMTPUTF8 and the server does not offer it (RFC 6531 section 3.4).
    case smtputf8Unsupported
    /// Any other refusal, e.g. a 5xx greeting or 5xx to both EHLO and HELO.
    case rejected
    /// The server closed the connection.
    case closed
}

/// A failure of a session or a transaction, decided by the pure state machines.
///
/// The description names the phase and the reply code, never a password or the message.
public struct SMTPSessionError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of failure.
    public var kind: SMTPErrorKind
    /// The reply that caused it, if any.
    public var reply: SMTPReply?
    /// True when a later attempt may succeed (RFC 5321 section 4.2.1: 4xx, or no reply at all).
    public var isTransient: Bool
    /// A short explanation without secrets.
    public var message: String

    /// Makes an error.
    public init(kind: SMTPErrorKind, reply: SMTPReply? = nil, isTransient: Bool, message: String) {
        self.kind = kind
        self.reply = reply
        self.isTransient = isTransient
        self.message = message
    }

    /// An error caused by a negative reply: transient for 4xx, permanent for 5xx; 421 is `.serviceUnavailable`.
    public static func negativeReply(_ reply: SMTPReply, kind: SMTPErrorKind = .rejected, during phase: String) -> SMTPSessionError {
        if reply.code == 421 {
            return SMTPSessionError(kind: .serviceUnavailable, reply: reply, isTransient: true, message: "service unavailable (421) during \(phase)")
        }
        if !reply.isTransientNegative && !reply.isPermanentNegative {
            return SMTPSessionError(
                kind: .protocolViolation,
                reply: reply,
                isTransient: true,
                message: "unexpected reply \(reply.code) during \(phase)"
            )
        }
        return SMTPSessionError(kind: kind, reply: reply, isTransient: reply.isTransientNegative, message: "\(phase) refused with \(reply.code)")
    }

    /// `"tls: STARTTLS not offered (reply 250)"`-style text.
    public var description: String {
        var result = "\(kind.rawValue): \(message)"
        if let reply { result += " [\(reply.code)\(reply.enhancedCode.map { " \($0)" } ?? "")]" }
        return result
    }
}

/// The phase a client is waiting in; each has its own timeout (RFC 5321 section 4.5.3.2).
public enum SMTPPhase: String, Sendable, Hashable {
    /// Waiting for the 220 greeting.
    case greeting
    /// Waiting for the reply to EHLO or HELO.
    case ehlo
    /// Waiting for the reply to STARTTLS, or for the TLS handshake.
    case startTLS
    /// Waiting for a reply during AUTH.
    case auth
    /// Waiting for the reply to RSET.
    case rset
    /// Waiting for the reply to MAIL.
    case mail
    /// Waiting for the reply to RCPT.
    case rcpt
    /// Waiting for the reply to DATA.
    case data
    /// Waiting for the reply to the end of the data.
    case dataDone
    /// Waiting for the reply to QUIT.
    case quit
}
