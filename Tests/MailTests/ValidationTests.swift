import Foundation
import Mail
import Testing

@Suite struct ValidationTests {
    static let date = Date(timeIntervalSince1970: 1_764_417_600)
    static let good = EmailDraft(from: "a@example.com", to: ["b@example.com"], subject: "Hi", text: "Hello")

    static func errors(_ draft: EmailDraft, limits: CompositionLimits = .default) -> [FieldError] {
        do {
            _ = try MessageComposer(limits: limits).compose(draft, date: date)
            return []
        } catch {
            return error.errors
        }
    }

    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var edit: @Sendable (inout EmailDraft) -> Void
        var field: String
        var code: String
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(name: "missing from", edit: { $0.from = "" }, field: "from", code: "required"),
        Case(name: "bad from", edit: { $0.from = "nobody" }, field: "from", code: "invalid_address"),
        Case(name: "no recipients", edit: { $0.to = [] }, field: "to", code: "required"),
        Case(name: "bad to", edit: { $0.to = ["ok@example.com", "bad@"] }, field: "to[1]", code: "invalid_address"),
        Case(name: "bad cc", edit: { $0.cc = ["x"] }, field: "cc[0]", code: "invalid_address"),
        Case(name: "bad bcc", edit: { $0.bcc = ["a@b.c", "a@b.c", "y@"] }, field: "bcc[2]", code: "invalid_address"),
        Case(name: "bad reply-to", edit: { $0.replyTo = ["z"] }, field: "reply_to[0]", code: "invalid_address"),
        Case(name: "no body", edit: { $0.text = nil }, field: "text", code: "required"),
        Case(
            name: "empty bodies",
            edit: {
                $0.text = ""
                $0.html = ""
            },
            field: "text",
            code: "required"
        ),
        Case(
            name: "too many recipients",
            edit: {
                $0.to = (0..<30).map { "r\($0)@example.com" }
                $0.bcc = (0..<21).map { "b\($0)@example.com" }
            },
            field: "to",
            code: "too_many_recipients"
        ),
        Case(name: "subject too long", edit: { $0.subject = String(repeating: "ß", count: 999) }, field: "subject", code: "too_long"),
        // Header injection: CR/LF/NUL in subject, display name, header value, header name.
        Case(name: "CRLF in subject", edit: { $0.subject = "Hi\r\nBcc: victim@example.com" }, field: "subject", code: "header_injection"),
        Case(name: "LF in subject", edit: { $0.subject = "Hi\nX: y" }, field: "subject", code: "header_injection"),
        Case(name: "CR in subject", edit: { $0.subject = "Hi\rX: y" }, field: "subject", code: "header_injection"),
        Case(name: "NUL in subject", edit: { $0.subject = "Hi\0" }, field: "subject", code: "header_injection"),
        Case(name: "LF in display name", edit: { $0.to = ["Eve\nBcc: x@y.z <e@example.com>"] }, field: "to[0]", code: "header_injection"),
        Case(name: "CR in from name", edit: { $0.from = "\"Eve\r\" <e@example.com>" }, field: "from", code: "header_injection"),
        Case(name: "CRLF in cc name", edit: { $0.cc = ["ok@example.com", "A\r\nB <c@example.com>"] }, field: "cc[1]", code: "header_injection"),
        Case(
            name: "CRLF in header value",
            edit: { $0.headers = ["X-Foo": "bar\r\nBcc: victim@example.com"] },
            field: "headers.X-Foo",
            code: "header_injection"
        ),
        Case(name: "LF in header name", edit: { $0.headers = ["X-Foo\nBcc": "x"] }, field: "headers.X-Foo\nBcc", code: "header_injection"),
        Case(name: "NUL in header value", edit: { $0.headers = ["X-Foo": "a\0b"] }, field: "headers.X-Foo", code: "header_injection"),
        Case(name: "colon in header name", edit: { $0.headers = ["X-Foo: bar": "x"] }, field: "headers.X-Foo: bar", code: "invalid_header_name"),
        Case(name: "space in header name", edit: { $0.headers = ["X Foo": "x"] }, field: "headers.X Foo", code: "invalid_header_name"),
        Case(name: "non-ASCII header name", edit: { $0.headers = ["X-Grüße": "x"] }, field: "headers.X-Grüße", code: "invalid_header_name"),
        Case(name: "empty header name", edit: { $0.headers = ["": "x"] }, field: "headers.", code: "invalid_header_name"),
        Case(name: "control in header value", edit: { $0.headers = ["X-A": "a\u{1B}b"] }, field: "headers.X-A", code: "invalid_header_value"),
        Case(name: "reserved Subject", edit: { $0.headers = ["Subject": "x"] }, field: "headers.Subject", code: "reserved_header"),
        Case(name: "reserved bcc", edit: { $0.headers = ["bcc": "x@y.z"] }, field: "headers.bcc", code: "reserved_header"),
        Case(name: "reserved DKIM", edit: { $0.headers = ["DKIM-Signature": "v=1"] }, field: "headers.DKIM-Signature", code: "reserved_header"),
        Case(
            name: "reserved Content-Type",
            edit: { $0.headers = ["CONTENT-TYPE": "text/x"] },
            field: "headers.CONTENT-TYPE",
            code: "reserved_header"
        ),
        Case(
            name: "header value too long",
            edit: { $0.headers = ["X-A": String(repeating: "a ", count: 3_000)] },
            field: "headers.X-A",
            code: "too_long"
        ),
        Case(
            name: "unfoldable header word",
            edit: { $0.headers = ["X-A": String(repeating: "a", count: 1_000)] },
            field: "headers.X-A",
            code: "too_long"
        ),
        Case(
            name: "attachment without filename",
            edit: { $0.attachments = [Attachment(filename: "", content: [1])] },
            field: "attachments[0].filename",
            code: "required"
        ),
        Case(
            name: "CRLF in filename",
            edit: { $0.attachments = [Attachment(filename: "a.txt", content: []), Attachment(filename: "a\r\nb", content: [])] },
            field: "attachments[1].filename",
            code: "header_injection"
        ),
        Case(
            name: "bad content type",
            edit: { $0.attachments = [Attachment(filename: "a", content: [], contentType: "pdf")] },
            field: "attachments[0].content_type",
            code: "invalid_content_type"
        ),
        Case(
            name: "injected content type",
            edit: { $0.attachments = [Attachment(filename: "a", content: [], contentType: "text/plain\r\nX: y")] },
            field: "attachments[0].content_type",
            code: "invalid_content_type"
        ),
        Case(
            name: "bad content id",
            edit: { $0.attachments = [Attachment(filename: "a", content: [], contentID: "has space")] },
            field: "attachments[0].content_id",
            code: "invalid_content_id"
        ),
        Case(
            name: "duplicate content id",
            edit: {
                $0.attachments = [
                    Attachment(filename: "a", content: [], contentID: "logo"), Attachment(filename: "b", content: [], contentID: "<LOGO>"),
                ]
            },
            field: "attachments[1].content_id",
            code: "duplicate_content_id"
        ),
    ]

    @Test(arguments: cases)
    func reportsTheField(_ case_: Case) {
        var draft = Self.good
        case_.edit(&draft)
        let errors = Self.errors(draft)
        #expect(errors.contains { $0.field == case_.field && $0.code == case_.code }, "\(errors)")
        #expect(errors.count == 1, "\(errors)")
    }

    @Test func reportsEveryProblemTogether() {
        let draft = EmailDraft(from: "x", to: ["y"], cc: ["ok@example.com", "z"], subject: "a\nb", headers: ["From": "me"])
        let fields = Set(Self.errors(draft).map(\.field))
        #expect(fields == ["from", "to[0]", "cc[1]", "subject", "text", "headers.From"])
    }

    @Test func attachmentSizeIsTooLarge() throws {
        let limits = CompositionLimits(maxAttachmentBytes: 1_000)
        var draft = Self.good
        draft.attachments = [
            Attachment(filename: "a.bin", content: Array(repeating: 1, count: 600)),
            Attachment(filename: "b.bin", content: Array(repeating: 2, count: 401)),
        ]
        do {
            _ = try MessageComposer(limits: limits).compose(draft, date: Self.date)
            Issue.record("expected too_large")
        } catch {
            #expect(error.errors == [FieldError(field: "attachments", code: "too_large", message: error.errors.first?.message ?? "")])
            #expect(error.isTooLarge)
        }
        draft.attachments[1].content.removeLast()
        _ = try MessageComposer(limits: limits).compose(draft, date: Self.date)
    }

    @Test func tooLargeWithOtherErrorsIsNotOnlyTooLarge() {
        var draft = Self.good
        draft.subject = "a\nb"
        draft.attachments = [Attachment(filename: "a.bin", content: Array(repeating: 1, count: 20))]
        do {
            _ = try MessageComposer(limits: CompositionLimits(maxAttachmentBytes: 10)).compose(draft, date: Self.date)
        } catch {
            #expect(!error.isTooLarge)
            #expect(error.errors.count == 2)
        }
    }

    @Test func defaultLimits() {
        let limits = CompositionLimits.default
        #expect(limits.maxRecipients == 50)
        #expect(limits.maxAttachmentBytes == 25 * 1024 * 1024)
    }

    @Test(arguments: ["<abc@example.com>", "abc@example.com"])
    func acceptsAGivenMessageID(_ id: String) throws {
        let message = try MessageComposer().compose(Self.good, date: Self.date, messageID: id)
        #expect(message.messageID == "<abc@example.com>")
        #expect(String(decoding: message.data, as: UTF8.self).contains("\r\nMessage-ID: <abc@example.com>\r\n"))
    }

    @Test(arguments: ["", "<>", "no-at-sign", "a b@c", "<a@b>\r\nX: y"])
    func refusesABadMessageID(_ id: String) {
        #expect(throws: ValidationError.self) { try MessageComposer().compose(Self.good, date: Self.date, messageID: id) }
    }
}

@Suite struct HugeInputTests {
    /// Every size that input controls is bounded before the expensive work: these fail fast.
    @Test func hugeInputsAreRefusedQuickly() {
        let huge = String(repeating: "ü", count: 1_000_000)
        let draft = EmailDraft(
            from: "x@" + huge + ".com",
            to: [huge + "@example.com", "\"" + huge + "\" <a@b.c>", "a@" + String(repeating: "a", count: 1_000_000)],
            subject: huge,
            text: String(repeating: "y", count: 6 * 1024 * 1024),
            headers: ["X-Big": huge],
            attachments: [Attachment(filename: huge, content: [], contentType: "text/" + huge, contentID: huge)]
        )
        let start = ContinuousClock.now
        do {
            _ = try MessageComposer().compose(draft, date: Date())
            Issue.record("accepted")
        } catch {
            let fields = Set(error.errors.map(\.field))
            #expect(
                fields.isSuperset(of: [
                    "from", "to[0]", "to[1]", "to[2]", "subject", "text", "headers.X-Big", "attachments[0].filename",
                    "attachments[0].content_type", "attachments[0].content_id",
                ]),
                "\(fields)"
            )
        }
        #expect(ContinuousClock.now - start < .seconds(5))
    }
}
