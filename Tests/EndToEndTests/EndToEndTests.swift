import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Outbox
import PigeonApp
import SMTPTestSupport
import Testing

@Suite("End to end: HTTP -> SQLite outbox -> SMTP")
struct EndToEndTests {
    @Test("A POSTed email arrives with the right envelope and headers; Bcc only in the envelope")
    func deliversAnEmail() async throws {
        let smtp = TestSMTPServer()
        try await smtp.start()
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let database = directory.path + "/outbox.sqlite"

        try await withPigeon(smtp: smtp, database: database) { client in
            let response = try await client.postEmail(
                """
                {"from": "Acme <noreply@acme.example>", "to": ["ada@example.com"], "cc": ["Bob <bob@example.org>"],
                 "bcc": ["audit@example.net"], "reply_to": ["help@acme.example"], "subject": "Welcome, Ada",
                 "text": "Hello Ada,\\n.\\nA line with a dot.", "headers": {"X-Campaign": "spring"}}
                """
            )
            #expect(response.status == .accepted)
            let accepted = try jsonObject(response.body)
            let id = try #require(accepted["id"] as? String)
            #expect(accepted["status"] as? String == "queued")

            let messages = try await smtp.waitForMessages(count: 1, timeout: .seconds(10))
            let message = try #require(messages.first)
            #expect(message.mailFrom == "noreply@acme.example")
            #expect(Set(message.recipients) == ["ada@example.com", "bob@example.org", "audit@example.net"])
            let text = message.text
            #expect(text.contains("From: Acme <noreply@acme.example>\r\n"))
            #expect(text.contains("To: ada@example.com\r\n"))
            #expect(text.contains("Cc: Bob <bob@example.org>\r\n"))
            #expect(text.contains("Reply-To: help@acme.example\r\n"))
            #expect(text.contains("Subject: Welcome, Ada\r\n"))
            #expect(text.contains("X-Campaign: spring\r\n"))
            #expect(text.contains("Message-ID: <"))
            #expect(!text.lowercased().contains("bcc"))
            #expect(!text.contains("audit@example.net"))
            #expect(text.contains("\r\n.\r\nA line with a dot."))  // dot-stuffing undone by the server

            let email = try await client.waitForStatus(id, "sent")
            #expect(email["attempt_count"] as? Int == 1)
            let recipients = try #require(email["recipients"] as? [[String: Any]])
            #expect(recipients.count == 3)
            #expect(recipients.allSatisfy { $0["status"] as? String == "sent" && $0["last_code"] as? Int == 250 })
            #expect(recipients.map { $0["kind"] as? String } == ["to", "cc", "bcc"])
            #expect(email["next_attempt_at"] == nil)
            let messageID = try #require(email["message_id"] as? String)
            #expect(text.contains("Message-ID: \(messageID)\r\n"))
        }
        let counts = try await storedCounts(database)
        #expect(counts == [.sent: 1])
    }

    @Test("451 to the first RCPT and 250 later ends sent after a retry, with the same Message-ID")
    func retriesATransientFailure() async throws {
        let smtp = TestSMTPServer()
        try await smtp.start()
        smtp.setHandler { command in
            if command.verb == "RCPT" && command.commandIndex == 1 {
                return .reply("451 4.3.0 Mailbox busy, try again later")
            }
            return .standard
        }
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let database = directory.path + "/outbox.sqlite"

        try await withPigeon(smtp: smtp, database: database) { client in
            let response = try await client.postEmail(
                #"{"from": "noreply@acme.example", "to": ["ada@example.com"], "subject": "Retry", "text": "x"}"#
            )
            #expect(response.status == .accepted)
            let id = try #require(try jsonObject(response.body)["id"] as? String)
            let email = try await client.waitForStatus(id, "sent")
            #expect(email["attempt_count"] as? Int == 2)
            let messages = try await smtp.waitForMessages(count: 1, timeout: .seconds(5))
            #expect(messages.count == 1)
            let recipient = try #require((email["recipients"] as? [[String: Any]])?.first)
            #expect(recipient["last_code"] as? Int == 250)
        }
    }

    @Test("A 550 ends failed with the code and text visible in GET")
    func permanentFailure() async throws {
        let smtp = TestSMTPServer()
        try await smtp.start()
        smtp.setHandler { command in
            command.verb == "RCPT" ? .reply("550 5.1.1 No such user here") : .standard
        }
        let directory = try TemporaryDirectory()
        defer { directory.remove() }

        try await withPigeon(smtp: smtp, database: directory.path + "/outbox.sqlite") { client in
            let response = try await client.postEmail(
                #"{"from": "noreply@acme.example", "to": ["ghost@example.com"], "subject": "Hi", "text": "x"}"#
            )
            let id = try #require(try jsonObject(response.body)["id"] as? String)
            let email = try await client.waitForStatus(id, "failed")
            #expect(email["failure_reason"] as? String == "rejected")
            let recipient = try #require((email["recipients"] as? [[String: Any]])?.first)
            #expect(recipient["status"] as? String == "failed")
            #expect(recipient["last_code"] as? Int == 550)
            #expect(recipient["last_enhanced_code"] as? String == "5.1.1")
            #expect((recipient["last_text"] as? String)?.contains("No such user here") == true)
            #expect(smtp.messages.isEmpty)
        }
    }

    @Test("Without a valid key every /v1 route is 401 problem+json")
    func requiresAKey() async throws {
        let smtp = TestSMTPServer()
        try await smtp.start()
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let database = directory.path + "/outbox.sqlite"

        try await withPigeon(smtp: smtp, database: database) { client in
            let body = #"{"from": "a@acme.example", "to": ["b@example.com"], "subject": "s", "text": "t"}"#
            for key in [nil, "wrong-key-0123456789abcdef", ""] as [String?] {
                let response = try await client.postEmail(body, key: key)
                #expect(response.status == .unauthorized)
                #expect(response.headers[.contentType]?.hasPrefix("application/problem+json") == true)
                #expect(response.headers[.wwwAuthenticate]?.hasPrefix("Bearer") == true)
                let problem = try jsonObject(response.body)
                #expect(problem["status"] as? Int == 401)
            }
            let get = try await client.execute(uri: "/v1/emails/em_01JDZ8Q4S9X7W3V2T1R0P9N8M7", method: .get)
            #expect(get.status == .unauthorized)
            let health = try await client.execute(uri: "/healthz", method: .get)
            #expect(health.status == .ok)
        }
        #expect(try await storedCounts(database).isEmpty)
    }

    @Test(
        "Bad input is 400/422 problem+json naming the field, and stores nothing",
        arguments: [
            (#"{"from": "a@acme.example", "to": ["b@example.com"], "subject": "#, 400, nil),
            (#"not json at all"#, 400, nil),
            (#"{"from": "a@acme.example", "subject": "s", "text": "t"}"#, 422, "to"),
            (#"{"from": "a@acme.example", "to": ["not-an-address"], "subject": "s", "text": "t"}"#, 422, "to[0]"),
            (#"{"from": "a@acme.example", "to": "b@example.com", "subject": "s", "text": "t"}"#, 422, "to"),
            (#"{"from": "a@acme.example", "to": ["b@example.com"], "subject": "s\r\nBcc: x@evil.example", "text": "t"}"#, 422, "subject"),
            (
                #"{"from": "a@acme.example", "to": ["b@example.com"], "subject": "s", "text": "t", "headers": {"X-A": "1\r\nBcc: x@evil.example"}}"#,
                422, "headers.X-A"
            ),
            (#"{"to": ["b@example.com"], "subject": "s", "text": "t"}"#, 422, "from"),
            (#"{"from": "a@acme.example", "to": ["Eve\r\nBcc: x@evil.example <b@example.com>"], "subject": "s", "text": "t"}"#, 422, "to[0]"),
            (#"{"from": "Eve\nX: y <a@acme.example>", "to": ["b@example.com"], "subject": "s", "text": "t"}"#, 422, "from"),
            (#"{"from": "a@acme.example", "to": ["b@example.com"], "subject": "s", "text": "t", "headers": {"X-A\r\nBcc": "x"}}"#, 422, nil),
            (
                #"{"from": "a@acme.example", "to": ["b@example.com"], "subject": "s", "text": "t", "headers": {"Subject": "x"}}"#, 422,
                "headers.Subject"
            ),
        ] as [(String, Int, String?)]
    )
    func rejectsBadInput(body: String, status: Int, field: String?) async throws {
        let smtp = TestSMTPServer()
        try await smtp.start()
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let database = directory.path + "/outbox.sqlite"

        try await withPigeon(smtp: smtp, database: database) { client in
            let response = try await client.postEmail(body)
            #expect(Int(response.status.code) == status)
            #expect(response.headers[.contentType]?.hasPrefix("application/problem+json") == true)
            let problem = try jsonObject(response.body)
            #expect(problem["status"] as? Int == status)
            #expect(problem["type"] as? String != nil)
            if let field {
                let errors = try #require(problem["errors"] as? [[String: Any]])
                #expect(errors.contains { $0["field"] as? String == field }, "errors: \(errors)")
            }
        }
        #expect(try await storedCounts(database).isEmpty)
    }

    @Test("A body over the size limit is 413 and stores nothing")
    func refusesAHugeBody() async throws {
        let smtp = TestSMTPServer()
        try await smtp.start()
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let database = directory.path + "/outbox.sqlite"

        try await withPigeon(smtp: smtp, database: database, settings: ["PIGEON_MAX_REQUEST_BYTES": "100000"]) { client in
            let big = String(repeating: "a", count: 200_000)
            let response = try await client.postEmail(
                #"{"from": "a@acme.example", "to": ["b@example.com"], "subject": "s", "text": "\#(big)"}"#
            )
            #expect(response.status == .contentTooLarge)
            #expect(response.headers[.contentType]?.hasPrefix("application/problem+json") == true)
        }
        #expect(try await storedCounts(database).isEmpty)
    }

    @Test("GET of an unknown id is 404 problem+json")
    func unknownEmail() async throws {
        let smtp = TestSMTPServer()
        try await smtp.start()
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try await withPigeon(smtp: smtp, database: directory.path + "/outbox.sqlite") { client in
            for id in ["em_01JDZ8Q4S9X7W3V2T1R0P9N8M7", "nope", "em_%27%3B--"] {
                let response = try await client.execute(
                    uri: "/v1/emails/\(id)",
                    method: .get,
                    headers: [.authorization: "Bearer \(testKey)"]
                )
                #expect(response.status == .notFound)
                #expect(response.headers[.contentType]?.hasPrefix("application/problem+json") == true)
            }
        }
    }

    @Test("A bad DKIM key stops start-up with one line naming the setting")
    func badDKIMKey() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let keyFile = directory.path + "/dkim.pem"
        try "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n".write(toFile: keyFile, atomically: true, encoding: .utf8)
        let configuration = try PigeonConfiguration.load(environment: [
            "PIGEON_DATABASE": directory.path + "/outbox.sqlite",
            "PIGEON_SMTP_URL": "smtp://127.0.0.1:2525?tls=none",
            "PIGEON_API_KEYS": testKey,
            "PIGEON_DKIM_DOMAIN": "acme.example",
            "PIGEON_DKIM_SELECTOR": "s1",
            "PIGEON_DKIM_KEY_FILE": keyFile,
        ])
        do {
            _ = try await buildApplication(configuration)
            Issue.record("start-up accepted a bad DKIM key")
        } catch let error as StartupError {
            #expect(error.description.hasPrefix("PIGEON_DKIM_KEY_FILE: "))
            #expect(!error.description.contains("\n"))
        }
    }

    @Test("A second process on the same outbox refuses to start")
    func outboxIsLocked() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.path + "/outbox.sqlite"
        let first = try SQLiteOutbox(path: path)
        #expect(throws: OutboxError.locked(path: path)) { try SQLiteOutbox(path: path) }
        _ = first
    }
}
