import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Outbox
import PigeonApp
import SMTPTestSupport
import Testing

extension TestClientProtocol {
    /// POSTs JSON to `path` with the test key and extra headers.
    func post(_ path: String, _ json: String, headers extra: HTTPFields = [:]) async throws -> TestResponse {
        var headers: HTTPFields = [.contentType: "application/json", .authorization: "Bearer \(testKey)"]
        headers.append(contentsOf: extra)
        return try await execute(uri: path, method: .post, headers: headers, body: ByteBuffer(string: json))
    }

    /// GETs `path` with the test key and parses the JSON object.
    func getObject(_ path: String) async throws -> (HTTPResponse.Status, [String: Any]) {
        let response = try await execute(uri: path, method: .get, headers: [.authorization: "Bearer \(testKey)"])
        return (response.status, try jsonObject(response.body))
    }
}

let idempotencyKeyField = HTTPField.Name("Idempotency-Key")!

func isoDate(_ date: Date) -> String {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return formatter.string(from: date)
}

@Suite("End to end: outbox semantics over HTTP")
struct OutboxEndToEndTests {
    @Test("20 concurrent POSTs with one Idempotency-Key make one email; another body with that key is 409")
    func idempotency() async throws {
        let smtp = TestSMTPServer()
        try await smtp.start()
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let database = directory.path + "/outbox.sqlite"
        let body = #"{"from": "a@acme.example", "to": ["b@example.com"], "subject": "once", "text": "only once"}"#

        try await withPigeon(smtp: smtp, database: database) { client in
            let ids = try await withThrowingTaskGroup(of: String?.self) { group in
                for _ in 0..<20 {
                    group.addTask {
                        let response = try await client.post("/v1/emails", body, headers: [idempotencyKeyField: "order-42"])
                        #expect(response.status == .accepted)
                        return try jsonObject(response.body)["id"] as? String
                    }
                }
                return try await group.reduce(into: Set<String?>()) { $0.insert($1) }
            }
            #expect(ids.count == 1)
            #expect(ids.first??.hasPrefix("em_") == true)

            let other = try await client.post(
                "/v1/emails",
                body.replacingOccurrences(of: "only once", with: "changed"),
                headers: [idempotencyKeyField: "order-42"]
            )
            #expect(other.status == .conflict)
            #expect(other.headers[.contentType]?.hasPrefix("application/problem+json") == true)

            _ = try await smtp.waitForMessages(count: 1, timeout: .seconds(10))
            try await Task.sleep(for: .milliseconds(300))
            #expect(smtp.messages.count == 1)
        }
        #expect(try await storedCounts(database) == [.sent: 1])
    }

    @Test("A batch is one transaction: all stored with a result each, or 422 naming emails[i] and nothing stored")
    func batch() async throws {
        let smtp = TestSMTPServer()
        try await smtp.start()
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let database = directory.path + "/outbox.sqlite"

        try await withPigeon(smtp: smtp, database: database) { client in
            let bad = try await client.post(
                "/v1/emails/batch",
                """
                {"emails": [
                  {"from": "a@acme.example", "to": ["one@example.com"], "subject": "1", "text": "x"},
                  {"from": "a@acme.example", "to": ["not an address"], "subject": "2", "text": "x"}
                ]}
                """
            )
            #expect(bad.status == .unprocessableContent)
            let problem = try jsonObject(bad.body)
            let errors = try #require(problem["errors"] as? [[String: Any]])
            #expect(errors.map { $0["field"] as? String } == ["emails[1].to[0]"])

            let good = try await client.post(
                "/v1/emails/batch",
                """
                {"emails": [
                  {"from": "a@acme.example", "to": ["one@example.com"], "subject": "1", "text": "x"},
                  {"from": "a@acme.example", "to": ["two@example.com"], "subject": "2", "text": "x"},
                  {"from": "a@acme.example", "to": ["three@example.com"], "subject": "3", "text": "x"}
                ]}
                """
            )
            #expect(good.status == .accepted)
            let data = try #require(try jsonObject(good.body)["data"] as? [[String: Any]])
            #expect(data.count == 3)
            #expect(Set(data.compactMap { $0["id"] as? String }).count == 3)
            let messages = try await smtp.waitForMessages(count: 3, timeout: .seconds(10))
            #expect(Set(messages.flatMap(\.recipients)) == ["one@example.com", "two@example.com", "three@example.com"])
        }
        let counts = try await storedCounts(database)
        #expect(counts.values.reduce(0, +) == 3)
    }

    @Test("scheduled_at holds an email back; cancel stops it; a sent email cannot be canceled")
    func scheduleAndCancel() async throws {
        let smtp = TestSMTPServer()
        try await smtp.start()
        let directory = try TemporaryDirectory()
        defer { directory.remove() }

        try await withPigeon(smtp: smtp, database: directory.path + "/outbox.sqlite") { client in
            let soon = isoDate(Date() + 3)
            let scheduled = try await client.post(
                "/v1/emails",
                #"{"from": "a@acme.example", "to": ["soon@example.com"], "subject": "s", "text": "t", "scheduled_at": "\#(soon)"}"#
            )
            #expect(scheduled.status == .accepted)
            let scheduledBody = try jsonObject(scheduled.body)
            #expect(scheduledBody["status"] as? String == "scheduled")
            let scheduledID = try #require(scheduledBody["id"] as? String)

            let later = isoDate(Date() + 3600)
            let canceledResponse = try await client.post(
                "/v1/emails",
                #"{"from": "a@acme.example", "to": ["never@example.com"], "subject": "s", "text": "t", "scheduled_at": "\#(later)"}"#
            )
            let canceledID = try #require(try jsonObject(canceledResponse.body)["id"] as? String)
            let cancel = try await client.post("/v1/emails/\(canceledID)/cancel", "")
            #expect(cancel.status == .ok)
            #expect(try jsonObject(cancel.body)["status"] as? String == "canceled")
            let again = try await client.post("/v1/emails/\(canceledID)/cancel", "")
            #expect(again.status == .conflict)

            try await Task.sleep(for: .milliseconds(500))
            #expect(smtp.messages.isEmpty, "a scheduled email went out early")
            let (_, pending) = try await client.getObject("/v1/emails/\(scheduledID)")
            #expect(pending["status"] as? String == "scheduled")

            let sent = try await client.waitForStatus(scheduledID, "sent")
            #expect(sent["status"] as? String == "sent")
            #expect(smtp.messages.flatMap(\.recipients) == ["soon@example.com"])
            let tooLate = try await client.post("/v1/emails/\(scheduledID)/cancel", "")
            #expect(tooLate.status == .conflict)
        }
    }

    @Test("An email that keeps getting 4xx fails as expired at its expires_at, with every attempt visible")
    func expiry() async throws {
        let smtp = TestSMTPServer()
        try await smtp.start()
        smtp.setHandler { $0.verb == "RCPT" ? .reply("451 4.7.1 Greylisted, try again") : .standard }
        let directory = try TemporaryDirectory()
        defer { directory.remove() }

        try await withPigeon(smtp: smtp, database: directory.path + "/outbox.sqlite", settings: ["PIGEON_RETRY_SCHEDULE": "300ms"]) {
            client in
            let expires = isoDate(Date() + 2)
            let response = try await client.post(
                "/v1/emails",
                #"{"from": "a@acme.example", "to": ["grey@example.com"], "subject": "s", "text": "t", "expires_at": "\#(expires)"}"#
            )
            let id = try #require(try jsonObject(response.body)["id"] as? String)
            let email = try await client.waitForStatus(id, "failed")
            #expect(email["failure_reason"] as? String == "expired")
            let attempts = try #require(email["attempts"] as? [[String: Any]])
            #expect(!attempts.isEmpty)
            #expect(attempts.dropLast().allSatisfy { $0["outcome"] as? String == "deferred" })
            #expect(attempts.last?["outcome"] as? String == "failed")
            #expect(attempts.allSatisfy { ($0["transcript"] as? String)?.contains("451") == true })
            let recipient = try #require((email["recipients"] as? [[String: Any]])?.first)
            #expect(recipient["status"] as? String == "failed")
            #expect(recipient["last_code"] as? Int == 451)
        }
    }

    @Test("The list filters by tag and status and pages with a cursor; tags come back")
    func list() async throws {
        let smtp = TestSMTPServer()
        try await smtp.start()
        let directory = try TemporaryDirectory()
        defer { directory.remove() }

        try await withPigeon(smtp: smtp, database: directory.path + "/outbox.sqlite") { client in
            var ids: [String] = []
            for index in 0..<5 {
                let tag = index < 3 ? "spring" : "autumn"
                let response = try await client.post(
                    "/v1/emails",
                    #"{"from": "a@acme.example", "to": ["u\#(index)@example.com"], "subject": "s", "text": "t", "tags": {"campaign": "\#(tag)"}}"#
                )
                ids.append(try #require(try jsonObject(response.body)["id"] as? String))
                try await Task.sleep(for: .milliseconds(2))
            }
            let (status, page1) = try await client.getObject("/v1/emails?tag=campaign:spring&limit=2")
            #expect(status == .ok)
            let data1 = try #require(page1["data"] as? [[String: Any]])
            #expect(data1.compactMap { $0["id"] as? String } == [ids[2], ids[1]])
            #expect((data1.first?["tags"] as? [String: String]) == ["campaign": "spring"])
            let cursor = try #require(page1["next_cursor"] as? String)
            let (_, page2) = try await client.getObject("/v1/emails?tag=campaign:spring&limit=2&cursor=\(cursor)")
            #expect((page2["data"] as? [[String: Any]])?.compactMap { $0["id"] as? String } == [ids[0]])
            #expect(page2["next_cursor"] == nil)

            _ = try await smtp.waitForMessages(count: 5, timeout: .seconds(10))
            for id in ids { _ = try await client.waitForStatus(id, "sent") }
            let (_, sent) = try await client.getObject("/v1/emails?status=sent&limit=100")
            #expect((sent["data"] as? [[String: Any]])?.count == 5)
            let (badStatus, _) = try await client.getObject("/v1/emails?tag=nocolon")
            #expect(badStatus == .badRequest)
        }
    }

    @Test("Attachments arrive intact; more than the attachment limit is 413 and stores nothing")
    func attachments() async throws {
        let smtp = TestSMTPServer()
        try await smtp.start()
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let database = directory.path + "/outbox.sqlite"
        let bytes = (0..<3000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let content = Data(bytes).base64EncodedString()

        try await withPigeon(smtp: smtp, database: database, settings: ["PIGEON_MAX_ATTACHMENT_BYTES": "10000"]) { client in
            let ok = try await client.post(
                "/v1/emails",
                #"{"from": "a@acme.example", "to": ["b@example.com"], "subject": "file", "text": "see attached", "attachments": [{"filename": "data.bin", "content": "\#(content)"}]}"#
            )
            #expect(ok.status == .accepted)
            let message = try #require(try await smtp.waitForMessages(count: 1, timeout: .seconds(10)).first)
            #expect(message.text.contains("filename=data.bin") || message.text.contains("filename=\"data.bin\""))
            let base64Lines = content.chunked(76)
            #expect(message.text.contains(base64Lines[0]))

            let big = Data(repeating: 7, count: 20_000).base64EncodedString()
            let tooBig = try await client.post(
                "/v1/emails",
                #"{"from": "a@acme.example", "to": ["b@example.com"], "subject": "big", "text": "x", "attachments": [{"filename": "big.bin", "content": "\#(big)"}]}"#
            )
            #expect(tooBig.status == .contentTooLarge)
            let badBase64 = try await client.post(
                "/v1/emails",
                #"{"from": "a@acme.example", "to": ["b@example.com"], "subject": "bad", "text": "x", "attachments": [{"filename": "x.bin", "content": "***"}]}"#
            )
            #expect(badBase64.status == .unprocessableContent)
            let errors = try #require(try jsonObject(badBase64.body)["errors"] as? [[String: Any]])
            #expect(errors.contains { $0["field"] as? String == "attachments[0].content" })
        }
        let counts = try await storedCounts(database)
        #expect(counts.values.reduce(0, +) == 1)
    }
}

extension String {
    func chunked(_ size: Int) -> [String] {
        var result: [String] = []
        var index = startIndex
        while index < endIndex {
            let end = self.index(index, offsetBy: size, limitedBy: endIndex) ?? endIndex
            result.append(String(self[index..<end]))
            index = end
        }
        return result
    }
}
