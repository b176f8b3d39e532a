/// A file attached to an email, or an inline part when it has a ``contentID``.
public struct Attachment: Sendable, Hashable {
    /// The file name shown to the recipient (Unicode allowed; RFC 2231 encoded when needed).
    /// Leading and trailing white space is dropped.
    public var filename: String
    /// The decoded bytes. The API layer decodes the JSON's base64 and reports bad base64 itself.
    public var content: [UInt8]
    /// A MIME type such as `application/pdf`, optionally with parameters; guessed from the file
    /// name's extension when nil (`application/octet-stream` when unknown).
    public var contentType: String?
    /// For inline parts referenced from HTML as `cid:<contentID>`; such parts go into a
    /// multipart/related next to the HTML (RFC 2387). Given without angle brackets.
    public var contentID: String?

    /// Decodes the base64 of a JSON `content` field (RFC 4648 §4; CR, LF, space and tab ignored,
    /// padding required); nil when it is not base64, for the API's `invalid_base64`.
    public static func decodeBase64(_ text: String) -> [UInt8]? {
        Base64.decode(text)
    }

    /// Creates an attachment.
    public init(filename: String, content: [UInt8], contentType: String? = nil, contentID: String? = nil) {
        self.filename = filename
        self.content = content
        self.contentType = contentType
        self.contentID = contentID
    }
}

/// An email as the API receives it, before validation. Addresses are strings, parsed by
/// ``MessageComposer/compose(_:date:messageID:)``.
public struct EmailDraft: Sendable {
    /// The author (RFC 5322 `From`) and envelope sender.
    public var from: String
    /// `To` recipients.
    public var to: [String]
    /// `Cc` recipients.
    public var cc: [String]
    /// Blind recipients: in the envelope only, never in the message.
    public var bcc: [String]
    /// `Reply-To` addresses.
    public var replyTo: [String]
    /// The subject (any Unicode; empty allowed).
    public var subject: String
    /// The plain-text body; nil or empty when absent.
    public var text: String?
    /// The HTML body; nil or empty when absent.
    public var html: String?
    /// Extra headers by name (e.g. `List-Unsubscribe`), emitted sorted by name. Names Pigeon
    /// owns are refused (see ``MessageComposer/reservedHeaderNames``).
    public var headers: [String: String]
    /// Attachments and inline parts, in order.
    public var attachments: [Attachment]

    /// Creates a draft.
    public init(
        from: String,
        to: [String] = [],
        cc: [String] = [],
        bcc: [String] = [],
        replyTo: [String] = [],
        subject: String = "",
        text: String? = nil,
        html: String? = nil,
        headers: [String: String] = [:],
        attachments: [Attachment] = []
    ) {
        self.from = from
        self.to = to
        self.cc = cc
        self.bcc = bcc
        self.replyTo = replyTo
        self.subject = subject
        self.text = text
        self.html = html
        self.headers = headers
        self.attachments = attachments
    }
}

/// One SMTP envelope recipient (`RCPT TO`).
public struct EnvelopeRecipient: Sendable, Hashable {
    /// Where the address came from in the draft.
    public enum Kind: String, Sendable, Hashable {
        /// A `To` recipient.
        case to
        /// A `Cc` recipient.
        case cc
        /// A `Bcc` recipient (not in the message).
        case bcc
    }

    /// The envelope address, `local@ascii-domain` (see ``EmailAddress/address``).
    public var address: String
    /// Which list the address came from.
    public var kind: Kind

    /// Creates an envelope recipient.
    public init(address: String, kind: Kind) {
        self.address = address
        self.kind = kind
    }
}

/// A rendered message, ready to store and to stream over SMTP as is.
public struct ComposedMessage: Sendable {
    /// The Message-ID with angle brackets, `<...@domain>`.
    public var messageID: String
    /// The envelope sender (`MAIL FROM`): the From address.
    public var mailFrom: String
    /// To, Cc and Bcc recipients in that order, each address once (the local part compared
    /// exactly, the domain without regard to case; the first occurrence wins).
    public var recipients: [EnvelopeRecipient]
    /// The complete message: CRLF line breaks only, every line at most 998 octets, and the
    /// DKIM-Signature header first when signed. Not dot-stuffed.
    public var data: [UInt8]
    /// True when an address in the envelope or in the headers has a non-ASCII local part:
    /// the message must be sent with the SMTPUTF8 extension (RFC 6531 §3.4).
    public var requiresSMTPUTF8: Bool
    /// True when `data` holds an octet above 127 (send with `BODY=8BITMIME`, RFC 6152).
    public var has8BitData: Bool

    /// Creates a composed message (mostly for tests and stores that load one back).
    public init(
        messageID: String,
        mailFrom: String,
        recipients: [EnvelopeRecipient],
        data: [UInt8],
        requiresSMTPUTF8: Bool,
        has8BitData: Bool
    ) {
        self.messageID = messageID
        self.mailFrom = mailFrom
        self.recipients = recipients
        self.data = data
        self.requiresSMTPUTF8 = requiresSMTPUTF8
        self.has8BitData = has8BitData
    }
}

/// Bounds on what one draft may hold. Every count and size that input controls has one.
public struct CompositionLimits: Sendable, Hashable {
    /// To + Cc + Bcc addresses together, counted before de-duplication (default 50, as
    /// common providers allow per message).
    public var maxRecipients: Int
    /// Decoded attachment bytes per email, all attachments together (default 25 MiB, 26,214,400).
    /// Above it the draft is refused with `too_large` on `attachments` (HTTP 413).
    public var maxAttachmentBytes: Int
    /// Number of attachments and inline parts (default 100).
    public var maxAttachments: Int
    /// Subject length in Unicode scalars (default 998).
    public var maxSubjectLength: Int
    /// Size of `text` and of `html`, each, in UTF-8 octets (default 5 MiB).
    public var maxBodyBytes: Int
    /// Number of user headers (default 50).
    public var maxHeaders: Int
    /// Length of a user header name in octets (default 76, so that `Name: ` fits a folded line).
    public var maxHeaderNameLength: Int
    /// Length of a user header value in UTF-8 octets (default 4,096).
    public var maxHeaderValueLength: Int
    /// Number of Reply-To addresses (default 10).
    public var maxReplyTo: Int
    /// Attachment file name length in Unicode scalars (default 255).
    public var maxFilenameLength: Int

    /// Creates limits; every parameter defaults to the value documented on its property.
    public init(
        maxRecipients: Int = 50,
        maxAttachmentBytes: Int = 25 * 1024 * 1024,
        maxAttachments: Int = 100,
        maxSubjectLength: Int = 998,
        maxBodyBytes: Int = 5 * 1024 * 1024,
        maxHeaders: Int = 50,
        maxHeaderNameLength: Int = 76,
        maxHeaderValueLength: Int = 4_096,
        maxReplyTo: Int = 10,
        maxFilenameLength: Int = 255
    ) {
        self.maxRecipients = maxRecipients
        self.maxAttachmentBytes = maxAttachmentBytes
        self.maxAttachments = maxAttachments
        self.maxSubjectLength = maxSubjectLength
        self.maxBodyBytes = maxBodyBytes
        self.maxHeaders = maxHeaders
        self.maxHeaderNameLength = maxHeaderNameLength
        self.maxHeaderValueLength = maxHeaderValueLength
        self.maxReplyTo = maxReplyTo
        self.maxFilenameLength = maxFilenameLength
    }

    /// The defaults documented on each property.
    public static let `default` = CompositionLimits()
}
