import Foundation
import Testing

@testable import Mail

/// Splits a message into its CRLF-separated lines (the last, empty one dropped).
func lines(_ data: [UInt8]) -> [String] {
    var text = String(decoding: data, as: UTF8.self).components(separatedBy: "\r\n")
    if text.last == "" { text.removeLast() }
    return text
}

/// The header section, unfolded, as (name, value) pairs.
func headerFields(_ data: [UInt8]) -> [(String, String)] {
    var fields: [(String, String)] = []
    for line in lines(data) {
        if line.isEmpty { break }
        if line.hasPrefix(" ") || line.hasPrefix("\t"), let last = fields.popLast() {
            fields.append((last.0, last.1 + line))
        } else if let colon = line.firstIndex(of: ":") {
            fields.append((String(line[..<colon]), String(line[line.index(after: colon)...]).trimmingCharacters(in: .whitespaces)))
        }
    }
    return fields
}

/// Checks RFC 5322 §2.1 / §2.1.1 on the bytes: CRLF only, no line over 998 octets, ends with CRLF.
func expectWireSafe(_ data: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(MessageComposer.wireProblem(data) == nil, sourceLocation: sourceLocation)
    #expect(data.suffix(2) == [13, 10], sourceLocation: sourceLocation)
}

@Suite struct CompositionTests {
    static let date = Date(timeIntervalSince1970: 1_764_417_600)  // Sat, 29 Nov 2025 12:00:00 +0000

    static func compose(_ draft: EmailDraft, signer: DKIMSigner? = nil) throws -> ComposedMessage {
        try MessageComposer(signer: signer).compose(draft, date: date)
    }

    @Test func headersInOrderBccNeverInMessage() throws {
        let draft = EmailDraft(
            from: "Sender <s@example.com>",
            to: ["t@example.org"],
            cc: ["c@example.org"],
            bcc: ["hidden@example.net"],
            replyTo: ["r@example.com"],
            subject: "Hello there",
            text: "Body",
            headers: ["X-B": "2", "X-A": "1", "List-Unsubscribe": "<mailto:u@example.com>"]
        )
        let message = try Self.compose(draft)
        let names = headerFields(message.data).map(\.0)
        #expect(
            names == [
                "Date", "From", "Reply-To", "To", "Cc", "Subject", "Message-ID", "MIME-Version", "List-Unsubscribe", "X-A", "X-B",
                "Content-Type", "Content-Transfer-Encoding",
            ]
        )
        let text = String(decoding: message.data, as: UTF8.self)
        #expect(!text.contains("hidden"))
        #expect(!text.lowercased().contains("bcc"))
        #expect(text.hasPrefix("Date: Sat, 29 Nov 2025 12:00:00 +0000\r\n"))
        #expect(message.recipients.map(\.kind) == [.to, .cc, .bcc])
        #expect(message.recipients.last?.address == "hidden@example.net")
        #expect(message.mailFrom == "s@example.com")
        #expect(message.messageID.hasSuffix("@example.com>") && message.messageID.hasPrefix("<"))
        expectWireSafe(message.data)
    }

    @Test func recipientsAreDeduplicatedCaseInsensitiveDomainOnly() throws {
        let draft = EmailDraft(
            from: "s@example.com",
            to: ["a@Example.COM", "A@example.com"],
            cc: ["a@example.com", "b@bücher.de"],
            bcc: ["b@xn--bcher-kva.de", "c@example.com"],
            text: "x"
        )
        let message = try Self.compose(draft)
        #expect(message.recipients.map(\.address) == ["a@Example.COM", "A@example.com", "b@xn--bcher-kva.de", "c@example.com"])
        #expect(message.recipients.map(\.kind) == [.to, .to, .cc, .bcc])
    }

    @Test func smtputf8AndEightBitFlags() throws {
        let ascii = try Self.compose(EmailDraft(from: "Zoë <z@exämple.de>", to: ["b@c.de"], subject: "Grüße", text: "é"))
        #expect(!ascii.requiresSMTPUTF8)
        #expect(!ascii.has8BitData)

        let utf8 = try Self.compose(EmailDraft(from: "s@example.com", to: ["用户@例子.广告"], text: "x"))
        #expect(utf8.requiresSMTPUTF8)
        #expect(utf8.has8BitData)
        #expect(utf8.recipients.first?.address == "用户@xn--fsqu00a.xn--4rr70v")

        let replyTo = try Self.compose(EmailDraft(from: "s@example.com", to: ["a@b.c"], replyTo: ["jörg@example.com"], text: "x"))
        #expect(replyTo.requiresSMTPUTF8)
    }

    static let structures: [(String, EmailDraft, String)] = [
        ("text only", EmailDraft(from: "a@b.c", to: ["d@e.f"], text: "t"), "text/plain"),
        ("html only", EmailDraft(from: "a@b.c", to: ["d@e.f"], html: "<p>h</p>"), "text/html"),
        ("both", EmailDraft(from: "a@b.c", to: ["d@e.f"], text: "t", html: "<p>h</p>"), "multipart/alternative"),
        (
            "attachment", EmailDraft(from: "a@b.c", to: ["d@e.f"], text: "t", attachments: [Attachment(filename: "f.pdf", content: [1, 2])]),
            "multipart/mixed"
        ),
        (
            "inline image with html",
            EmailDraft(
                from: "a@b.c",
                to: ["d@e.f"],
                html: "<img src=cid:i>",
                attachments: [Attachment(filename: "i.png", content: [1], contentID: "i")]
            ),
            "multipart/related"
        ),
        (
            "inline image without html",
            EmailDraft(from: "a@b.c", to: ["d@e.f"], text: "t", attachments: [Attachment(filename: "i.png", content: [1], contentID: "i")]),
            "multipart/mixed"
        ),
    ]

    @Test(arguments: structures)
    func rootContentType(_ name: String, _ draft: EmailDraft, _ type: String) throws {
        let message = try Self.compose(draft)
        let contentType = headerFields(message.data).first { $0.0 == "Content-Type" }?.1 ?? ""
        #expect(contentType.hasPrefix(type), "\(name): \(contentType)")
        expectWireSafe(message.data)
    }

    @Test func relatedNestsInsideAlternativeInsideMixed() throws {
        let draft = EmailDraft(
            from: "a@b.c",
            to: ["d@e.f"],
            text: "t",
            html: "<img src=cid:i>",
            attachments: [Attachment(filename: "i.png", content: [1], contentID: "i"), Attachment(filename: "doc.pdf", content: [2])]
        )
        let text = String(decoding: try Self.compose(draft).data, as: UTF8.self)
        let order = ["multipart/mixed", "multipart/alternative", "text/plain", "multipart/related", "text/html", "image/png", "application/pdf"]
        var position = text.startIndex
        for type in order {
            guard let range = text.range(of: "Content-Type: " + type, range: position..<text.endIndex) else {
                Issue.record("\(type) missing or out of order")
                return
            }
            position = range.upperBound
        }
        #expect(text.contains("Content-ID: <i>"))
        #expect(text.contains("Content-Disposition: inline; filename=\"i.png\""))
    }

    static let bodies: [(String, String)] = [
        ("plain ascii\nline two", "7bit"),
        ("trailing space is fine in 7bit ", "7bit"),
        ("Grüße aus Köln", "quoted-printable"),
        (String(repeating: "a", count: 999), "quoted-printable"),
        ("bell \u{7} control", "quoted-printable"),
        ("日本語のテキストです", "base64"),
    ]

    @Test(arguments: bodies)
    func textTransferEncoding(_ body: String, _ encoding: String) throws {
        let message = try Self.compose(EmailDraft(from: "a@b.c", to: ["d@e.f"], text: body))
        #expect(headerFields(message.data).first { $0.0 == "Content-Transfer-Encoding" }?.1 == encoding)
        expectWireSafe(message.data)
    }

    @Test func lineBreaksBecomeCRLF() throws {
        let message = try Self.compose(EmailDraft(from: "a@b.c", to: ["d@e.f"], text: "a\nb\rc\r\nd"))
        #expect(String(decoding: message.data, as: UTF8.self).hasSuffix("\r\n\r\na\r\nb\r\nc\r\nd\r\n"))
    }

    @Test func attachmentsAreBase64In76CharacterLines() throws {
        let content = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 * 13) }
        let message = try Self.compose(
            EmailDraft(from: "a@b.c", to: ["d@e.f"], text: "t", attachments: [Attachment(filename: "x.bin", content: content)])
        )
        let all = lines(message.data)
        guard let start = all.firstIndex(of: "Content-Disposition: attachment; filename=\"x.bin\"") else {
            Issue.record("no attachment part")
            return
        }
        let body = all[(start + 3)...].prefix { !$0.isEmpty }
        #expect(body.dropLast().allSatisfy { $0.count == 76 })
        #expect(Data(base64Encoded: body.joined()) == Data(content))
    }

    @Test func nonASCIIFilenameUsesRFC2231() throws {
        let message = try Self.compose(
            EmailDraft(from: "a@b.c", to: ["d@e.f"], text: "t", attachments: [Attachment(filename: "Grüße €.txt", content: [1])])
        )
        let text = String(decoding: message.data, as: UTF8.self)
        #expect(text.contains("filename*=utf-8''Gr%C3%BC%C3%9Fe%20%E2%82%AC.txt"))
        #expect(!message.has8BitData)
    }

    @Test func longSubjectsFoldAt78() throws {
        let words = (0..<60).map { "word\($0)" }.joined(separator: " ")
        let message = try Self.compose(EmailDraft(from: "a@b.c", to: ["d@e.f"], subject: words, text: "t"))
        let headerLines = lines(message.data).prefix { !$0.isEmpty }
        #expect(headerLines.allSatisfy { $0.utf8.count <= 78 })
        #expect(headerFields(message.data).first { $0.0 == "Subject" }?.1 == words)
    }

    @Test func manyRecipientsFoldAt78() throws {
        let to = (0..<40).map { "Person Number \($0) <person\($0)@example.com>" }
        let message = try Self.compose(EmailDraft(from: "a@b.c", to: to, text: "t"))
        #expect(lines(message.data).prefix { !$0.isEmpty }.allSatisfy { $0.utf8.count <= 78 })
    }

    @Test func messageIDUsesTheDKIMDomainWhenSigning() throws {
        let signer = try DKIMSigner(domain: "mail.example.net", selector: "s1", privateKeyPEM: TestKeys.ed25519)
        let message = try Self.compose(EmailDraft(from: "a@example.com", to: ["d@e.f"], text: "t"), signer: signer)
        #expect(message.messageID.hasSuffix("@mail.example.net>"))
        #expect(message.data.starts(with: Array("DKIM-Signature: ".utf8)))
        expectWireSafe(message.data)
    }

    @Test func messageIDsAreUnique() throws {
        let draft = EmailDraft(from: "a@b.c", to: ["d@e.f"], text: "t")
        let ids = try (0..<100).map { _ in try Self.compose(draft).messageID }
        #expect(Set(ids).count == 100)
    }
}

@Suite struct EncodingTests {
    static let dates: [(Int64, String)] = [
        (0, "Thu, 1 Jan 1970 00:00:00 +0000"),
        (951_782_400, "Tue, 29 Feb 2000 00:00:00 +0000"),
        (1_764_417_600, "Sat, 29 Nov 2025 12:00:00 +0000"),
        (4_102_444_799, "Thu, 31 Dec 2099 23:59:59 +0000"),
        (-1, "Wed, 31 Dec 1969 23:59:59 +0000"),
    ]

    @Test(arguments: dates)
    func rfc5322Dates(_ seconds: Int64, _ text: String) {
        #expect(HeaderEncoding.rfc5322Date(secondsSince1970: seconds) == text)
    }

    static let quotedPrintable: [(String, String)] = [
        ("abc\r\n", "abc\r\n"),
        ("a=b\r\n", "a=3Db\r\n"),
        ("trailing \r\n", "trailing=20\r\n"),
        ("tab\t\r\n", "tab=09\r\n"),
        (".dot\r\n", "=2Edot\r\n"),
        ("é\r\n", "=C3=A9\r\n"),
        (String(repeating: "x", count: 80) + "\r\n", String(repeating: "x", count: 75) + "=\r\n" + "xxxxx\r\n"),
        (String(repeating: "x", count: 76) + "\r\n", String(repeating: "x", count: 76) + "\r\n"),
        (String(repeating: "x", count: 74) + "é\r\n", String(repeating: "x", count: 74) + "=\r\n=C3=A9\r\n"),
    ]

    @Test(arguments: quotedPrintable)
    func quotedPrintableEncoding(_ input: String, _ output: String) {
        #expect(String(decoding: QuotedPrintable.encode(canonical: Array(input.utf8)), as: UTF8.self) == output)
    }

    @Test(arguments: [0, 1, 2, 3, 56, 57, 58, 1_000])
    func base64MatchesFoundation(_ count: Int) {
        let bytes = (0..<count).map { UInt8(truncatingIfNeeded: $0 * 7 + 3) }
        #expect(Base64.encode(bytes) == Data(bytes).base64EncodedString())
        #expect(Base64.decode(Base64.encode(bytes)) == bytes)
        let lined = String(decoding: Base64.encode(bytes, lineLength: 76), as: UTF8.self)
        #expect(lined.replacingOccurrences(of: "\r\n", with: "") == Data(bytes).base64EncodedString())
    }

    @Test func encodedWordsAreAtMost75AndSplitOnScalars() {
        let text = String(repeating: "😀é", count: 40)
        let words = HeaderEncoding.encodedWords(text)
        #expect(words.allSatisfy { $0.utf8.count <= 75 && $0.hasPrefix("=?UTF-8?B?") && $0.hasSuffix("?=") })
        let decoded = words.map { word -> String in
            let payload = word.dropFirst(10).dropLast(2)
            return String(decoding: Base64.decode(String(payload)) ?? [], as: UTF8.self)
        }
        #expect(decoded.joined() == text)
        #expect(decoded.allSatisfy { !$0.contains("\u{FFFD}") })
    }

    @Test(arguments: [
        ("Plain words", true), ("", true), (" leading", false), ("trailing ", false), ("two  spaces", false), ("=?x?=", false),
        ("Grüße", false), ("tab\there", false), (String(repeating: "y", count: 71), false),
    ])
    func plainTextDetection(_ text: String, _ plain: Bool) {
        #expect(HeaderEncoding.isPlainText(text) == plain)
    }

    @Test func displayNamesQuoteWhenNeeded() {
        #expect(HeaderEncoding.phraseTokens("John Smith") == ["John", "Smith"])
        #expect(HeaderEncoding.phraseTokens("Doe, J.") == ["\"Doe,", "J.\""])
        #expect(HeaderEncoding.phraseTokens("Say \"hi\"") == ["\"Say", "\\\"hi\\\"\""])
    }

    @Test func rfc2231Continuations() {
        let tokens = HeaderEncoding.parameterTokens(name: "filename", value: String(repeating: "ä", count: 40))
        #expect(tokens.count > 1)
        #expect(tokens[0].hasPrefix("filename*0*=utf-8''%C3%A4"))
        #expect(tokens[1].hasPrefix("filename*1*=%C3%A4"))
        #expect(tokens.allSatisfy { $0.utf8.count < 70 })
    }

    /// RFC 6376 §3.4.5's example.
    @Test func relaxedCanonicalisationExample() {
        #expect(String(decoding: DKIMSigner.relaxedHeader("A: X"), as: UTF8.self) == "a:X")
        #expect(String(decoding: DKIMSigner.relaxedHeader("B : Y\t\r\n\tZ  "), as: UTF8.self) == "b:Y Z")
        #expect(String(decoding: DKIMSigner.relaxedBody(Array(" C \r\nD \t E\r\n\r\n\r\n".utf8)), as: UTF8.self) == " C\r\nD E\r\n")
        #expect(DKIMSigner.relaxedBody(Array("\r\n\r\n".utf8)).isEmpty)
        #expect(String(decoding: DKIMSigner.relaxedBody(Array("a\r\n\r\nb".utf8)), as: UTF8.self) == "a\r\n\r\nb\r\n")
    }
}

@Suite struct Base64InputTests {
    @Test(arguments: [
        ("", [UInt8]()), ("AA==", [0]), ("AAE=", [0, 1]), ("AAEC", [0, 1, 2]), ("AAEC\r\nAw==", [0, 1, 2, 3]),
    ])
    func decodes(_ text: String, _ bytes: [UInt8]) {
        #expect(Attachment.decodeBase64(text) == bytes)
    }

    @Test(arguments: ["A", "AA", "AA=", "A===", "AA==AA==", "AA!=", "ÄÄ==", "AAA=A"])
    func refuses(_ text: String) {
        #expect(Attachment.decodeBase64(text) == nil)
    }
}
