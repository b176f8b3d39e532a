import Foundation
import Testing

@testable import Outbox

@Suite("JSONText: the outbox's own JSON writer")
struct JSONTextTests {
    static let awkward = [
        "", "plain", "quote \" and backslash \\", "line\nfeed\rreturn\ttab", "bell \u{07} nul \u{00} esc \u{1B} del \u{7F}",
        "slash / and </script>", "héllo wörld", "日本語", "emoji 🕊️ and a combining é", "\u{2028} line separator",
    ]

    @Test("event payloads read back equal with JSONDecoder, byte for byte what JSONEncoder writes but for `\\/`")
    func eventPayloads() throws {
        var recipients: [EventPayload.Recipient] = []
        for (index, text) in Self.awkward.enumerated() {
            recipients.append(
                EventPayload.Recipient(
                    address: "user\(index)@example.com",
                    kind: ["to", "cc", "bcc"][index % 3],
                    status: "deferred",
                    code: index.isMultiple(of: 2) ? 400 + index : nil,
                    enhancedCode: index.isMultiple(of: 3) ? "4.\(index).0" : nil,
                    text: index.isMultiple(of: 4) ? nil : text
                )
            )
        }
        let tags = Dictionary(uniqueKeysWithValues: Self.awkward.enumerated().map { ("k\($0.offset)\($0.element)", $0.element) })
        for payload in [
            EventPayload(emailID: "em_1", status: "queued", recipients: [], tags: [:]),
            EventPayload(emailID: "em_2", status: "deferred", recipients: recipients, tags: tags),
        ] {
            let json = payload.json
            #expect(try JSONDecoder().decode(EventPayload.self, from: Data(json.utf8)) == payload)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            let reference = String(decoding: try encoder.encode(payload), as: UTF8.self)
            #expect(json == reference)
        }
    }

    @Test("tags: sorted keys, escaped strings")
    func tags() throws {
        let tags = ["b": "2", "a": "say \"hi\"\n", "c": "ü"]
        let json = JSONText.encode(tags)
        #expect(json == #"{"a":"say \"hi\"\n","b":"2","c":"ü"}"#)
        #expect(try JSONDecoder().decode([String: String].self, from: Data(json.utf8)) == tags)
        #expect(JSONText.encode([:]) == "{}")
    }
}
