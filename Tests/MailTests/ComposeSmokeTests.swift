import Foundation
import Mail
import Testing

@Suite struct ComposeSmokeTests {
    @Test func composesPlainAndHTML() throws {
        let draft = EmailDraft(
            from: "Zoë Ünïcode <zoe@exämple.de>",
            to: ["\"Doe, J.\" <j@example.com>", "b@example.org"],
            bcc: ["secret@example.net"],
            subject: "Grüße aus Köln – a fairly long subject line that needs to be folded somewhere",
            text: "Hello\nWorld ünïcode\n",
            html: "<p>Hello</p>",
            headers: ["X-Campaign": "spring"]
        )
        let message = try MessageComposer().compose(draft, date: Date(timeIntervalSince1970: 1_700_000_000))
        let text = String(decoding: message.data, as: UTF8.self)
        print(text)
        #expect(!text.contains("secret@"))
        #expect(message.recipients.count == 3)
    }
}
