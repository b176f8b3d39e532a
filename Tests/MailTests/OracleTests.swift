import Foundation
import Mail
import Testing

/// Python's `email` package reads Pigeon's messages back to exactly what went in; dkimpy
/// verifies Pigeon's signatures, also after an SMTP server (aiosmtpd) carried the message.
@Suite(.serialized) struct OracleTests {
    static let date = Date(timeIntervalSince1970: 1_764_417_600)

    struct Scenario: CustomTestStringConvertible, Sendable {
        var name: String
        var draft: EmailDraft
        var testDescription: String { name }
    }

    static let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + (0..<600).map { UInt8(truncatingIfNeeded: $0 &* 7) }
    static let binary: [UInt8] = (0..<5_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 11) }

    static let scenarios: [Scenario] = [
        Scenario(
            name: "plain",
            draft: EmailDraft(from: "sender@example.com", to: ["rcpt@example.org"], subject: "Hello", text: "Just text.\nTwo lines.")
        ),
        Scenario(
            name: "html and text",
            draft: EmailDraft(
                from: "Sender Name <sender@example.com>",
                to: ["\"Doe, Jane\" <jane@example.org>", "Bob <bob@example.org>"],
                cc: ["carol@example.net"],
                bcc: ["hidden@example.net"],
                replyTo: ["replies@example.com"],
                subject: "Your order #1234 has shipped",
                text: "Your order shipped.\r\n\r\n-- \r\nShop",
                html: "<html><body><p>Your order <b>shipped</b>.</p></body></html>",
                headers: ["X-Campaign": "autumn", "List-Unsubscribe": "<https://example.com/u/1>, <mailto:u@example.com>"]
            )
        ),
        Scenario(
            name: "attachments",
            draft: EmailDraft(
                from: "reports@example.com",
                to: ["boss@example.org"],
                subject: "Monthly report",
                text: "See attached.",
                attachments: [
                    Attachment(filename: "report.pdf", content: binary, contentType: "application/pdf"),
                    Attachment(filename: "data.csv", content: Array("a,b\r\n1,2\r\n".utf8)),
                    Attachment(filename: "empty.bin", content: []),
                ]
            )
        ),
        Scenario(
            name: "inline image",
            draft: EmailDraft(
                from: "news@example.com",
                to: ["reader@example.org"],
                subject: "Newsletter",
                text: "Our logo is in the HTML version.",
                html: "<p><img src=\"cid:logo@example.com\"> Hello</p>",
                attachments: [
                    Attachment(filename: "logo.png", content: png, contentType: "image/png", contentID: "logo@example.com"),
                    Attachment(filename: "terms.txt", content: Array("Terms\n".utf8)),
                ]
            )
        ),
        Scenario(
            name: "non-ASCII everywhere",
            draft: EmailDraft(
                from: "Zoë Ünïcödé <zoe@exämple.de>",
                to: ["Jürgen Weiß <juergen@bücher.de>", "\"Ωμέγα, Άλφα\" <omega@example.gr>", "山田太郎 <yamada@例え.jp>"],
                cc: ["Ελένη <eleni@example.gr>"],
                replyTo: ["Ответ <reply@пример.рф>"],
                subject: "Grüße, 你好, привет, مرحبا 👋🏽 — a subject long enough to be split into several encoded words",
                text: "Liebe Grüße aus Köln!\n日本語のテキスト\nEmoji: 👩‍👩‍👧‍👦\n" + String(repeating: "é", count: 300),
                html: "<p>Grüße — <b>你好</b></p>",
                headers: ["X-Note": "Ünïcode header välue"],
                attachments: [
                    Attachment(filename: "Übersicht März 2026 – Überweisungen und sehr lange Namen für Dateien.pdf", content: binary),
                    Attachment(filename: "报告.txt", content: Array("内容\n".utf8), contentType: "text/plain; charset=utf-8"),
                ]
            )
        ),
        Scenario(
            name: "SMTPUTF8 local parts",
            draft: EmailDraft(
                from: "Jörg <jörg@exämple.de>",
                to: ["用户@例子.广告", "Ολγα <όλγα@παράδειγμα.ελ>"],
                subject: "UTF-8 addresses",
                text: "Hallo"
            )
        ),
        Scenario(
            name: "long lines and special text",
            draft: EmailDraft(
                from: "a@example.com",
                to: ["b@example.com"],
                subject: "=?UTF-8?B?not-an-encoded-word?= with  double  spaces ",
                text: String(repeating: "x", count: 2_500) + "\n.leading dot\nFrom the start\ntrailing space \n\ttab\u{7}bell\r\nend",
                html: String(repeating: "<p>paragraph</p>", count: 200)
            )
        ),
    ]

    /// Line breaks (CR, LF, CRLF) as LF, by Unicode scalar: Foundation's string search treats a
    /// line break followed by a combining mark as one composed sequence and would miss it.
    static func normalized(_ text: String?) -> String? {
        guard let text else { return nil }
        var out = String.UnicodeScalarView()
        var previousCR = false
        for scalar in text.unicodeScalars {
            if scalar == "\n" && previousCR {
                previousCR = false
                continue
            }
            previousCR = scalar == "\r"
            out.append(scalar == "\r" ? "\n" : scalar)
        }
        return String(out)
    }

    /// What a text body reads back as: line breaks as LF, ending with one.
    static func expectedText(_ text: String?) -> String? {
        guard var lf = normalized(text) else { return nil }
        if lf.unicodeScalars.last != "\n" { lf.unicodeScalars.append("\n") }
        return lf
    }

    static func mailbox(_ text: String) throws -> ParsedMessage.Mailbox {
        let address = try EmailAddress(parsing: text)
        return ParsedMessage.Mailbox(name: address.displayName ?? "", addr: address.address)
    }

    @Test(.enabled(if: Oracle.runEmail), arguments: scenarios)
    func pythonReadsBackExactlyTheInputs(_ scenario: Scenario) throws {
        let draft = scenario.draft
        let message = try MessageComposer().compose(draft, date: Self.date)
        let path = try Oracle.temporaryFile(message.data)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let parsed = try Oracle.call(ParsedMessage.self, ["parse", path])

        // CPython flags every UTF-8 local part, which RFC 6532 §3.2 allows with SMTPUTF8.
        let defects = parsed.defects.filter { !(message.requiresSMTPUTF8 && $0 == "NonASCIILocalPartDefect") }
        #expect(defects.isEmpty, "\(parsed.defects)")
        #expect(parsed.subject == draft.subject)
        #expect(parsed.from == [try Self.mailbox(draft.from)])
        #expect(parsed.to == (draft.to.isEmpty ? nil : try draft.to.map(Self.mailbox)))
        #expect(parsed.cc == (draft.cc.isEmpty ? nil : try draft.cc.map(Self.mailbox)))
        #expect(parsed.reply_to == (draft.replyTo.isEmpty ? nil : try draft.replyTo.map(Self.mailbox)))
        #expect(!parsed.has_bcc)
        #expect(parsed.message_id == message.messageID)
        #expect(Self.normalized(parsed.text) == Self.expectedText(draft.text))
        #expect(Self.normalized(parsed.html) == Self.expectedText(draft.html))
        for (name, value) in draft.headers {
            #expect(parsed.headers[name] == value, "header \(name)")
        }
        #expect(parsed.attachments.count == draft.attachments.count)
        for (sent, got) in zip(draft.attachments, parsed.attachments) {
            #expect(got.filename == sent.filename)
            #expect(Data(base64Encoded: got.content) == Data(sent.content), "bytes of \(sent.filename)")
            if let type = sent.contentType {
                #expect(type.lowercased().hasPrefix(got.content_type))
            }
            if let id = sent.contentID {
                #expect(got.content_id == "<\(id)>")
                #expect(got.disposition == "inline")
            } else {
                #expect(got.disposition == "attachment")
            }
        }
    }

    static let signers: [(String, String)] = [
        ("rsa-sha256 PKCS#8", TestKeys.rsaPKCS8),
        ("rsa-sha256 PKCS#1", TestKeys.rsaPKCS1),
        ("ed25519-sha256", TestKeys.ed25519),
    ]

    @Test(.enabled(if: Oracle.runDKIM), arguments: signers.map(\.0))
    func dkimpyVerifiesSignatures(_ keyName: String) throws {
        let pem = Self.signers.first { $0.0 == keyName }?.1 ?? ""
        let signer = try DKIMSigner(domain: "example.com", selector: "pigeon2026", privateKeyPEM: pem)
        let composer = MessageComposer(signer: signer)
        let record = try Oracle.temporaryFile(Array(signer.dnsRecordValue.utf8), suffix: ".txt")
        defer { try? FileManager.default.removeItem(atPath: record) }
        for scenario in Self.scenarios {
            let message = try composer.compose(scenario.draft, date: Self.date)
            #expect(message.data.starts(with: Array("DKIM-Signature: v=1; a=\(signer.algorithm.rawValue);".utf8)))
            let path = try Oracle.temporaryFile(message.data)
            defer { try? FileManager.default.removeItem(atPath: path) }
            let result = try Oracle.call(DKIMResult.self, ["dkim", path, record])
            #expect(result.ok, "\(keyName), \(scenario.name)")

            // A changed body byte must break the signature (the oracle is not a yes-machine):
            // the last octet before the final CRLF, one bit flipped (still ASCII).
            var tampered = message.data
            tampered[tampered.count - 3] ^= 0x01
            let tamperedPath = try Oracle.temporaryFile(tampered)
            defer { try? FileManager.default.removeItem(atPath: tamperedPath) }
            #expect(try !Oracle.call(DKIMResult.self, ["dkim", tamperedPath, record]).ok)
        }
    }

    @Test(.enabled(if: Oracle.runSMTP), arguments: signers.map(\.0))
    func signaturesSurviveAnSMTPServer(_ keyName: String) throws {
        let pem = Self.signers.first { $0.0 == keyName }?.1 ?? ""
        let signer = try DKIMSigner(domain: "example.com", selector: "pigeon2026", privateKeyPEM: pem)
        let record = try Oracle.temporaryFile(Array(signer.dnsRecordValue.utf8), suffix: ".txt")
        defer { try? FileManager.default.removeItem(atPath: record) }
        for scenario in Self.scenarios {
            let message = try MessageComposer(signer: signer).compose(scenario.draft, date: Self.date)
            let path = try Oracle.temporaryFile(message.data)
            defer { try? FileManager.default.removeItem(atPath: path) }
            let result = try Oracle.call(
                DKIMResult.self,
                ["dkim-smtp", path, record, message.mailFrom] + message.recipients.map(\.address)
            )
            #expect(result.ok, "\(keyName), \(scenario.name)")
            #expect(result.identical == true, "the server received other bytes than were sent")
        }
    }
}

/// Pigeon's IDNA mapping against Python's `idna` package (IDNA 2008 with UTS #46 mapping).
@Suite struct IDNAOracleTests {
    static let domains = [
        "example.com", "exämple.de", "bücher.de", "Bücher.DE", "münchen.de", "例え.jp", "例子.广告", "пример.рф", "ÄÖÜ.de",
        "e\u{301}xample.com", "straße.de", "ｅｘａｍｐｌｅ.com", "例え。jp", "δοκιμή.gr", "مثال.إختبار", "उदाहरण.भारत",
        "테스트.한국", "xn--bcher-kva.de", "sub.domain.exämple.co.uk", "ελληνικά.ελ", "ça.fr", "ñandú.es",
    ]

    @Test(.enabled(if: Oracle.isCI || Oracle.hasModules(["idna"])))
    func matchesPythonIDNA() throws {
        let expected = try Oracle.call([String?].self, ["idna"] + Self.domains)
        for (domain, want) in zip(Self.domains, expected) {
            #expect(IDNA.toASCII(domain)?.lowercased() == want?.lowercased(), "\(domain)")
        }
    }
}
