/// MIME entities (RFC 2045, RFC 2046) for the bodies and attachments of a message.
enum MIMEBuilder {
    /// An entity: its header fields (folded, without CRLF) and its body (ending with CRLF).
    struct Entity {
        var headers: [(name: String, text: String)]
        var body: [UInt8]
    }

    /// The root entity: text and/or html, related inline parts, mixed attachments.
    static func root(text: String?, html: String?, attachments: [MessageComposer.ValidAttachment]) -> Entity {
        var body: Entity
        let textPart = text.map { textEntity($0, subtype: "plain") }
        let htmlPart = html.map { textEntity($0, subtype: "html") }
        let inline = htmlPart == nil ? [] : attachments.filter { $0.contentID != nil }
        let regular = htmlPart == nil ? attachments : attachments.filter { $0.contentID == nil }

        // RFC 2387: the HTML and the parts it references by cid: travel together.
        var htmlEntity = htmlPart
        if let html = htmlPart, !inline.isEmpty {
            htmlEntity = multipart("related", parts: [html] + inline.map(attachmentEntity), extraParameters: ["type=\"text/html\""])
        }
        switch (textPart, htmlEntity) {
        case (let text?, let html?):
            // RFC 2046 §5.1.4: in increasing order of preference, so plain text first.
            body = multipart("alternative", parts: [text, html])
        case (let text?, nil):
            body = text
        case (nil, let html?):
            body = html
        case (nil, nil):
            body = textEntity("", subtype: "plain")
        }
        if !regular.isEmpty {
            body = multipart("mixed", parts: [body] + regular.map(attachmentEntity))
        }
        return body
    }

    static func textEntity(_ text: String, subtype: String) -> Entity {
        let canonical = TransferEncoding.canonicalLines(text)
        let encoding = TransferEncoding.choose(forCanonicalText: canonical)
        return Entity(
            headers: [
                ("Content-Type", HeaderEncoding.fold(name: "Content-Type", tokens: ["text/\(subtype);", "charset=utf-8"])),
                ("Content-Transfer-Encoding", "Content-Transfer-Encoding: \(encoding.rawValue)"),
            ],
            body: TransferEncoding.encode(canonical: canonical, as: encoding)
        )
    }

    static func attachmentEntity(_ attachment: MessageComposer.ValidAttachment) -> Entity {
        let typeTokens = parameterList(attachment.contentTypeTokens + HeaderEncoding.parameterTokens(name: "name", value: attachment.filename))
        let dispositionTokens = parameterList(
            [attachment.contentID == nil ? "attachment" : "inline"] + HeaderEncoding.parameterTokens(name: "filename", value: attachment.filename)
        )
        var headers: [(name: String, text: String)] = [
            ("Content-Type", HeaderEncoding.fold(name: "Content-Type", tokens: typeTokens)),
            ("Content-Disposition", HeaderEncoding.fold(name: "Content-Disposition", tokens: dispositionTokens)),
            ("Content-Transfer-Encoding", "Content-Transfer-Encoding: base64"),
        ]
        if let id = attachment.contentID {
            headers.append(("Content-ID", "Content-ID: <\(id)>"))
        }
        return Entity(headers: headers, body: Base64.encode(attachment.content, lineLength: 76))
    }

    /// `value; p1=...; p2=...`: a semicolon after every item but the last (RFC 2045 §5.1).
    static func parameterList(_ items: [String]) -> [String] {
        items.enumerated().map { index, item in index < items.count - 1 ? item + ";" : item }
    }

    /// RFC 2046 §5.1.1: parts between `--boundary` lines, closed by `--boundary--`. The CRLF
    /// before each delimiter belongs to the delimiter, so one is added after every part body.
    static func multipart(_ subtype: String, parts: [Entity], extraParameters: [String] = []) -> Entity {
        var boundary = newBoundary()
        while parts.contains(where: { contains($0, boundary: boundary) }) {
            boundary = newBoundary()
        }
        let delimiter = Array("--\(boundary)".utf8)
        var body: [UInt8] = []
        body.reserveCapacity(parts.reduce(0) { $0 + $1.body.count + 512 })
        for part in parts {
            body += delimiter
            body += [13, 10]
            for header in part.headers {
                body += Array(header.text.utf8)
                body += [13, 10]
            }
            body += [13, 10]
            body += part.body
            body += [13, 10]
        }
        body += delimiter
        body += Array("--\r\n".utf8)
        let tokens = parameterList(["multipart/\(subtype)"] + extraParameters + ["boundary=\"\(boundary)\""])
        return Entity(headers: [("Content-Type", HeaderEncoding.fold(name: "Content-Type", tokens: tokens))], body: body)
    }

    /// `=_` never occurs in quoted-printable or base64 output, so only 7bit parts can clash;
    /// they are searched anyway, as are nested parts.
    static func newBoundary() -> String {
        "=_pigeon_" + MessageComposer.randomHex(12)
    }

    private static func contains(_ entity: Entity, boundary: String) -> Bool {
        let needle = Array(boundary.utf8)
        let hay = entity.body
        guard hay.count >= needle.count, let first = needle.first else { return false }
        var index = 0
        while index <= hay.count - needle.count {
            if hay[index] == first && Array(hay[index..<index + needle.count]) == needle { return true }
            index += 1
        }
        return false
    }
}

/// MIME media types (RFC 2045 §5.1) of attachments.
enum MediaType {
    private static let tspecials = Set("()<>@,;:\\\"/[]?=".utf8)

    /// RFC 2045 §5.1 token characters.
    static func isTokenByte(_ b: UInt8) -> Bool {
        b > 32 && b < 127 && !tspecials.contains(b)
    }

    /// The longest content type accepted, in octets.
    static let maxLength = 255

    /// `type/subtype` and each `p="v"` parameter, without semicolons (lowercased type and
    /// parameter names; values re-quoted), or nil when malformed.
    static func tokens(_ contentType: String) -> [String]? {
        if contentType.utf8.count > maxLength || MessageComposer.hasLineBreakOrNUL(contentType) { return nil }
        let pieces = contentType.split(separator: ";", omittingEmptySubsequences: false).map { String($0).trimmingWSP() }
        guard let mediaType = pieces.first else { return nil }
        let parts = mediaType.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.utf8.allSatisfy(isTokenByte) }) else { return nil }
        let type = mediaType.lowercased()
        if type.hasPrefix("multipart/") || type.hasPrefix("message/") { return nil }
        var tokens = [type]
        for piece in pieces.dropFirst() {
            if piece.isEmpty { continue }
            guard let eq = piece.firstIndex(of: "=") else { return nil }
            let name = String(piece[..<eq]).trimmingWSP().lowercased()
            var value = String(piece[piece.index(after: eq)...]).trimmingWSP()
            guard !name.isEmpty, name.utf8.allSatisfy(isTokenByte), name != "name" else { return nil }
            if value.hasPrefix("\"") && value.hasSuffix("\"") && value.count >= 2 {
                value = String(value.dropFirst().dropLast())
            }
            guard value.utf8.allSatisfy({ $0 >= 32 && $0 < 127 && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") }) else {
                return nil
            }
            tokens.append("\(name)=\"\(value)\"")
        }
        return tokens
    }

    private static let byExtension: [String: String] = [
        "pdf": "application/pdf", "zip": "application/zip", "gz": "application/gzip", "json": "application/json",
        "xml": "application/xml", "txt": "text/plain", "csv": "text/csv", "html": "text/html", "htm": "text/html",
        "ics": "text/calendar", "md": "text/markdown", "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg",
        "gif": "image/gif", "webp": "image/webp", "svg": "image/svg+xml", "mp3": "audio/mpeg", "mp4": "video/mp4",
        "doc": "application/msword", "xls": "application/vnd.ms-excel",
        "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "odt": "application/vnd.oasis.opendocument.text", "eml": "application/octet-stream",
    ]

    /// The type for a file name's extension; `application/octet-stream` when unknown.
    static func guess(filename: String) -> String {
        guard let dot = filename.lastIndex(of: ".") else { return "application/octet-stream" }
        let ext = filename[filename.index(after: dot)...].lowercased()
        return byExtension[ext] ?? "application/octet-stream"
    }
}
