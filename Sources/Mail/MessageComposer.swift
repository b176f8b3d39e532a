import Foundation

/// Validates an ``EmailDraft`` and renders it into RFC 5322 / MIME bytes, signed with DKIM
/// when a ``DKIMSigner`` is configured.
///
/// The output follows these rules (each checked by tests):
/// - CRLF line breaks only, every line at most 998 octets (RFC 5322 §2.1.1), header lines
///   folded at 78 where possible (§2.2.3).
/// - Headers, in order: `DKIM-Signature` (when signing), `Date`, `From`, `Reply-To`, `To`, `Cc`,
///   `Subject`, `Message-ID`, `MIME-Version`, user headers sorted by name, then the
///   `Content-Type` and `Content-Transfer-Encoding` of the root entity. `Bcc` never appears.
/// - Non-ASCII display names and subjects are RFC 2047 encoded words; addresses use the IDNA
///   A-label domain; a non-ASCII local part is written as UTF-8 (RFC 6532) and marks the message
///   as needing SMTPUTF8.
/// - Bodies: `text/plain` and `text/html` in UTF-8, line breaks canonicalised to CRLF and ending
///   with one; 7bit when printable ASCII, else quoted-printable, or base64 when mostly non-ASCII.
///   Both bodies form a multipart/alternative (RFC 2046 §5.1.4); parts with a content ID form a
///   multipart/related with the HTML (RFC 2387); other attachments a multipart/mixed (§5.1.3),
///   base64 with 76-character lines (RFC 2045 §6.8).
public struct MessageComposer: Sendable {
    /// The bounds applied to every draft.
    public var limits: CompositionLimits
    /// Signs every message when set.
    public var signer: DKIMSigner?

    /// Header names (lowercased) that Pigeon writes itself, refused in ``EmailDraft/headers``
    /// with code `reserved_header`: From, To, Cc, Bcc, Reply-To, Subject, Date, Message-ID,
    /// MIME-Version, Content-Type, Content-Transfer-Encoding, Content-Disposition, Content-ID,
    /// DKIM-Signature, Return-Path, Received, Sender.
    public static let reservedHeaderNames: Set<String> = [
        "from", "to", "cc", "bcc", "reply-to", "subject", "date", "message-id", "mime-version",
        "content-type", "content-transfer-encoding", "content-disposition", "content-id",
        "dkim-signature", "return-path", "received", "sender",
    ]

    /// Creates a composer.
    public init(limits: CompositionLimits = .default, signer: DKIMSigner? = nil) {
        self.limits = limits
        self.signer = signer
    }

    /// Validates and renders `draft`. All field problems are reported together in one
    /// ``ValidationError``.
    ///
    /// - Parameters:
    ///   - date: the `Date` header and the DKIM `t=` timestamp.
    ///   - messageID: `<id@domain>` (brackets optional) to reuse; by default
    ///     `<random@domain>` where domain is the DKIM domain when signing, else the From domain.
    public func compose(_ draft: EmailDraft, date: Date, messageID: String? = nil) throws(ValidationError) -> ComposedMessage {
        let valid = try validate(draft, messageID: messageID)
        return try render(valid, date: date)
    }

    /// Validates `draft` without rendering it.
    public func validate(_ draft: EmailDraft) throws(ValidationError) {
        _ = try validate(draft, messageID: nil)
    }

    // MARK: Validation

    struct ValidDraft {
        var from: EmailAddress
        var to: [EmailAddress]
        var cc: [EmailAddress]
        var bcc: [EmailAddress]
        var replyTo: [EmailAddress]
        var subject: String
        var text: String?
        var html: String?
        var headers: [(name: String, value: String)]
        var attachments: [ValidAttachment]
        var messageID: String?
    }

    struct ValidAttachment {
        var filename: String
        var content: [UInt8]
        var contentTypeTokens: [String]
        var contentID: String?
    }

    private func validate(_ draft: EmailDraft, messageID: String?) throws(ValidationError) -> ValidDraft {
        var errors: [FieldError] = []

        func parse(_ text: String, field: String) -> EmailAddress? {
            do {
                return try EmailAddress(parsing: text)
            } catch {
                errors.append(FieldError(field: field, code: error.code, message: "address \(error.message)"))
                return nil
            }
        }
        func parseList(_ list: [String], field: String) -> [EmailAddress] {
            list.enumerated().compactMap { index, text in parse(text, field: "\(field)[\(index)]") }
        }

        var from: EmailAddress?
        if draft.from.trimmingWSP().isEmpty {
            errors.append(FieldError(field: "from", code: "required", message: "a sender address is required"))
        } else {
            from = parse(draft.from, field: "from")
        }
        let to = parseList(draft.to, field: "to")
        let cc = parseList(draft.cc, field: "cc")
        let bcc = parseList(draft.bcc, field: "bcc")
        let recipientCount = draft.to.count + draft.cc.count + draft.bcc.count
        if recipientCount == 0 {
            errors.append(FieldError(field: "to", code: "required", message: "at least one recipient (to, cc or bcc) is required"))
        } else if recipientCount > limits.maxRecipients {
            errors.append(
                FieldError(
                    field: "to",
                    code: "too_many_recipients",
                    message: "to, cc and bcc together may hold at most \(limits.maxRecipients) addresses"
                )
            )
        }
        let replyTo = parseList(draft.replyTo, field: "reply_to")
        if draft.replyTo.count > limits.maxReplyTo {
            errors.append(FieldError(field: "reply_to", code: "too_many", message: "at most \(limits.maxReplyTo) reply-to addresses"))
        }

        if Self.hasLineBreakOrNUL(draft.subject) {
            errors.append(FieldError(field: "subject", code: "header_injection", message: "must not contain CR, LF or NUL"))
        } else if draft.subject.unicodeScalars.count > limits.maxSubjectLength {
            errors.append(FieldError(field: "subject", code: "too_long", message: "at most \(limits.maxSubjectLength) characters"))
        }

        let text = draft.text.flatMap { $0.isEmpty ? nil : $0 }
        let html = draft.html.flatMap { $0.isEmpty ? nil : $0 }
        if text == nil && html == nil {
            errors.append(FieldError(field: "text", code: "required", message: "text or html is required"))
        }
        if let text, text.utf8.count > limits.maxBodyBytes {
            errors.append(FieldError(field: "text", code: "too_large", message: "at most \(limits.maxBodyBytes) bytes"))
        }
        if let html, html.utf8.count > limits.maxBodyBytes {
            errors.append(FieldError(field: "html", code: "too_large", message: "at most \(limits.maxBodyBytes) bytes"))
        }

        var headers: [(name: String, value: String)] = []
        if draft.headers.count > limits.maxHeaders {
            errors.append(FieldError(field: "headers", code: "too_many", message: "at most \(limits.maxHeaders) headers"))
        }
        for (name, value) in draft.headers.sorted(by: { $0.key < $1.key }) {
            if let error = checkHeader(name: name, value: value) {
                errors.append(error)
            } else {
                headers.append((name, value))
            }
        }

        var attachments: [ValidAttachment] = []
        if draft.attachments.count > limits.maxAttachments {
            errors.append(FieldError(field: "attachments", code: "too_many", message: "at most \(limits.maxAttachments) attachments"))
        }
        var totalBytes = 0
        var contentIDs: Set<String> = []
        for (index, attachment) in draft.attachments.enumerated() {
            let field = "attachments[\(index)]"
            totalBytes += attachment.content.count
            var ok = true
            // Leading and trailing white space is dropped, as mail clients do when they save a file.
            let filename = Self.trimmingWhiteSpace(attachment.filename)
            if let error = checkFilename(filename, field: field + ".filename") {
                errors.append(error)
                ok = false
            }
            let contentType = attachment.contentType ?? MediaType.guess(filename: attachment.filename)
            let typeTokens = MediaType.tokens(contentType)
            if typeTokens == nil {
                errors.append(
                    FieldError(field: field + ".content_type", code: "invalid_content_type", message: "must be a MIME type such as application/pdf")
                )
                ok = false
            }
            var contentID: String?
            if let rawID = attachment.contentID {
                if let id = Self.normalizeContentID(rawID) {
                    if contentIDs.insert(id.lowercased()).inserted {
                        contentID = id
                    } else {
                        errors.append(
                            FieldError(field: field + ".content_id", code: "duplicate_content_id", message: "is used by another attachment")
                        )
                        ok = false
                    }
                } else {
                    let code = Self.hasLineBreakOrNUL(rawID) ? "header_injection" : "invalid_content_id"
                    errors.append(
                        FieldError(field: field + ".content_id", code: code, message: "must look like name or name@domain, printable ASCII")
                    )
                    ok = false
                }
            }
            if ok, let typeTokens {
                attachments.append(
                    ValidAttachment(filename: filename, content: attachment.content, contentTypeTokens: typeTokens, contentID: contentID)
                )
            }
        }
        if totalBytes > limits.maxAttachmentBytes {
            errors.append(
                FieldError(
                    field: "attachments",
                    code: "too_large",
                    message: "attachments may hold at most \(limits.maxAttachmentBytes) decoded bytes per email"
                )
            )
        }

        var validMessageID: String?
        if let messageID {
            validMessageID = Self.normalizeMessageID(messageID)
            if validMessageID == nil {
                errors.append(FieldError(field: "message_id", code: "invalid_message_id", message: "must look like <id@domain>"))
            }
        }

        guard errors.isEmpty, let from else {
            throw ValidationError(errors: errors)
        }
        return ValidDraft(
            from: from,
            to: to,
            cc: cc,
            bcc: bcc,
            replyTo: replyTo,
            subject: draft.subject,
            text: text,
            html: html,
            headers: headers,
            attachments: attachments,
            messageID: validMessageID
        )
    }

    /// `text` without leading and trailing Unicode White_Space scalars.
    static func trimmingWhiteSpace(_ text: String) -> String {
        let scalars = text.unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
            let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })
        else { return "" }
        return String(scalars[first...last])
    }

    static func hasLineBreakOrNUL(_ text: String) -> Bool {
        text.utf8.contains { $0 == 13 || $0 == 10 || $0 == 0 }
    }

    /// RFC 5322 §3.6.8: field-name = 1*ftext, ftext = %d33-57 / %d59-126.
    private func checkHeader(name: String, value: String) -> FieldError? {
        let field = "headers.\(name)"
        if Self.hasLineBreakOrNUL(name) || Self.hasLineBreakOrNUL(value) {
            return FieldError(field: field, code: "header_injection", message: "header names and values must not contain CR, LF or NUL")
        }
        if name.isEmpty || !name.utf8.allSatisfy({ $0 >= 33 && $0 <= 126 && $0 != UInt8(ascii: ":") }) {
            return FieldError(field: field, code: "invalid_header_name", message: "a header name is printable ASCII without ':' or spaces")
        }
        if Self.reservedHeaderNames.contains(name.lowercased()) {
            return FieldError(field: field, code: "reserved_header", message: "this header is set by Pigeon and cannot be overridden")
        }
        if name.utf8.count > limits.maxHeaderNameLength {
            return FieldError(field: field, code: "too_long", message: "header names are at most \(limits.maxHeaderNameLength) characters")
        }
        if value.utf8.count > limits.maxHeaderValueLength {
            return FieldError(field: field, code: "too_long", message: "header values are at most \(limits.maxHeaderValueLength) bytes")
        }
        if value.utf8.contains(where: { ($0 < 32 && $0 != 9) || $0 == 127 }) {
            return FieldError(field: field, code: "invalid_header_value", message: "header values must not contain control characters")
        }
        // An ASCII value is written as is, folded at its spaces: each word must fit on a line.
        if value.utf8.allSatisfy({ $0 < 0x80 }) {
            let longest = value.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(\.utf8.count).max() ?? 0
            if longest + name.utf8.count + 2 > HeaderEncoding.maxLineLength {
                return FieldError(field: field, code: "too_long", message: "a header value's words must fit a 998-character line")
            }
        }
        return nil
    }

    private func checkFilename(_ filename: String, field: String) -> FieldError? {
        if filename.isEmpty {
            return FieldError(field: field, code: "required", message: "a file name is required")
        }
        if Self.hasLineBreakOrNUL(filename) {
            return FieldError(field: field, code: "header_injection", message: "must not contain CR, LF or NUL")
        }
        if filename.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            return FieldError(field: field, code: "invalid_filename", message: "must not contain control characters")
        }
        if filename.unicodeScalars.count > limits.maxFilenameLength {
            return FieldError(field: field, code: "too_long", message: "at most \(limits.maxFilenameLength) characters")
        }
        return nil
    }

    /// A content ID without brackets: printable ASCII without spaces, `<`, `>`, `"`, `\`,
    /// `(`, `)`, `,`, `;`, `:`, `[`, `]` (RFC 5322 §3.6.4 id-left / id-right), at most 250 octets.
    static func normalizeContentID(_ raw: String) -> String? {
        var id = raw
        if id.hasPrefix("<") && id.hasSuffix(">") && id.count >= 2 {
            id = String(id.dropFirst().dropLast())
        }
        let forbidden = Set("<>\"\\(),;:[] ".utf8)
        guard !id.isEmpty, id.utf8.count <= 250, id.utf8.allSatisfy({ $0 > 32 && $0 < 127 && !forbidden.contains($0) }) else {
            return nil
        }
        return id
    }

    /// A Message-ID with brackets (RFC 5322 §3.6.4 msg-id), or nil when it does not look like `<left@right>`.
    static func normalizeMessageID(_ raw: String) -> String? {
        var id = raw
        if id.hasPrefix("<") && id.hasSuffix(">") && id.count >= 2 {
            id = String(id.dropFirst().dropLast())
        }
        guard let at = id.lastIndex(of: "@"), at != id.startIndex, id.index(after: at) != id.endIndex,
            normalizeContentID(id) != nil
        else { return nil }
        return "<\(id)>"
    }

    // MARK: Rendering

    private func render(_ draft: ValidDraft, date: Date) throws(ValidationError) -> ComposedMessage {
        let domain = signer?.domain ?? draft.from.asciiDomain
        let messageID = draft.messageID ?? "<\(Self.randomHex(16))@\(domain)>"
        let interval = date.timeIntervalSince1970
        // Date.distantPast/distantFuture fit; only a non-finite or absurd interval falls back to 1970.
        let seconds = interval.isFinite && abs(interval) < 1e15 ? Int64(interval.rounded(.down)) : 0

        var fields: [(name: String, text: String)] = []
        func add(_ name: String, _ tokens: [String]) {
            fields.append((name, HeaderEncoding.fold(name: name, tokens: tokens)))
        }
        add("Date", HeaderEncoding.rfc5322Date(secondsSince1970: seconds).split(separator: " ").map(String.init))
        add("From", HeaderEncoding.mailboxTokens(draft.from))
        if !draft.replyTo.isEmpty { add("Reply-To", HeaderEncoding.mailboxListTokens(draft.replyTo)) }
        if !draft.to.isEmpty { add("To", HeaderEncoding.mailboxListTokens(draft.to)) }
        if !draft.cc.isEmpty { add("Cc", HeaderEncoding.mailboxListTokens(draft.cc)) }
        add("Subject", HeaderEncoding.unstructuredTokens(draft.subject))
        add("Message-ID", [messageID])
        add("MIME-Version", ["1.0"])
        for header in draft.headers {
            let tokens: [String]
            if header.value.utf8.allSatisfy({ $0 < 0x80 }) {
                // Structured or not, an ASCII value is kept as written; only its spaces may fold.
                tokens = header.value.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            } else {
                tokens = HeaderEncoding.encodedWords(header.value)
            }
            fields.append((header.name, HeaderEncoding.fold(name: header.name, tokens: tokens)))
        }

        let root = MIMEBuilder.root(text: draft.text, html: draft.html, attachments: draft.attachments)
        for field in root.headers {
            fields.append(field)
        }

        var data: [UInt8] = []
        data.reserveCapacity(root.body.count + 4_096)
        if let signer {
            do {
                let signature = try signer.signatureField(headers: fields, body: root.body, timestamp: seconds)
                data += Array(signature.utf8)
                data += [13, 10]
            } catch {
                throw ValidationError(errors: [FieldError(field: "dkim", code: "signing_failed", message: "the DKIM signature could not be made")])
            }
        }
        for field in fields {
            data += Array(field.text.utf8)
            data += [13, 10]
        }
        data += [13, 10]
        data += root.body

        // Wire safety, checked on the result (RFC 5322 §2.1, §2.1.1): CRLF only, lines <= 998.
        if let problem = Self.wireProblem(data) {
            throw ValidationError(errors: [FieldError(field: "message", code: "unencodable", message: problem)])
        }

        var seen: Set<String> = []
        var recipients: [EnvelopeRecipient] = []
        for (list, kind) in [(draft.to, EnvelopeRecipient.Kind.to), (draft.cc, .cc), (draft.bcc, .bcc)] {
            for address in list where seen.insert(address.localPart + "@" + address.asciiDomain.lowercased()).inserted {
                recipients.append(EnvelopeRecipient(address: address.address, kind: kind))
            }
        }
        let everyAddress = [draft.from] + draft.to + draft.cc + draft.bcc + draft.replyTo
        return ComposedMessage(
            messageID: messageID,
            mailFrom: draft.from.address,
            recipients: recipients,
            data: data,
            requiresSMTPUTF8: everyAddress.contains(where: \.requiresSMTPUTF8),
            has8BitData: data.contains(where: { $0 >= 0x80 })
        )
    }

    /// Nil when `data` has CRLF line breaks only and no line over 998 octets; else what is wrong.
    static func wireProblem(_ data: [UInt8]) -> String? {
        var lineLength = 0
        var previous: UInt8 = 0
        for b in data {
            if b == 10 {
                if previous != 13 { return "bare LF" }
                lineLength = 0
            } else if previous == 13 {
                return "bare CR"
            } else if b != 13 {
                lineLength += 1
                if lineLength > HeaderEncoding.maxLineLength { return "line longer than 998 octets" }
            }
            previous = b
        }
        return previous == 13 ? "bare CR" : nil
    }

    static func randomHex(_ byteCount: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        let hex = Array("0123456789abcdef".unicodeScalars)
        var out = String.UnicodeScalarView()
        for _ in 0..<byteCount {
            let b = UInt8.random(in: 0...255, using: &generator)
            out.append(hex[Int(b >> 4)])
            out.append(hex[Int(b & 0x0F)])
        }
        return String(out)
    }
}
