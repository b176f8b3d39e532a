import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import PigeonApp
import SMTPTestSupport
import Synchronization
import Testing

/// Collects every log line (message and metadata) of the application, at trace level.
final class CapturedLogs: Sendable {
    let lines = Mutex<[String]>([])
    var text: String { lines.withLock { $0.joined(separator: "\n") } }

    var logger: Logger {
        var logger = Logger(label: "pigeon-test") { label in CapturingLogHandler(logs: self) }
        logger.logLevel = .trace
        return logger
    }
}

struct CapturingLogHandler: LogHandler {
    let logs: CapturedLogs
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let all = metadata.merging(event.metadata ?? [:]) { $1 }
        let line = "\(event.level) \(event.message) " + all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        logs.lines.withLock { $0.append(line) }
    }
}

/// The key printed by `OperatorCommands.createKey`.
func createKey(_ database: String, scope: String, domains: [String] = []) async throws -> (id: String, key: String) {
    let lines = try await OperatorCommands.createKey(database: database, name: "backend-\(scope)", scope: scope, fromDomains: domains)
    let id = try #require(lines.first { $0.hasPrefix("id: ") }).dropFirst(4)
    let key = try #require(lines.first { $0.hasPrefix("key: ") }).dropFirst(5)
    return (String(id), String(key))
}

extension TestClientProtocol {
    func call(
        _ uri: String,
        method: HTTPRequest.Method = .get,
        key: String?,
        json: String? = nil,
        headers extra: HTTPFields = [:]
    ) async throws
        -> TestResponse
    {
        var headers = extra
        if let key { headers[.authorization] = "Bearer \(key)" }
        if json != nil { headers[.contentType] = "application/json" }
        return try await execute(uri: uri, method: method, headers: headers, body: json.map { ByteBuffer(string: $0) })
    }
}

@Suite("Operations: API keys, scopes, sender policy, rate limits, logs, readiness, metrics")
struct OperationsEndToEndTests {
    static let email = #"{"from": "Acme <noreply@acme.example>", "to": ["ada@example.com"], "subject": "Hi", "text": "secret body 7f3a"}"#
    static let otherDomain = #"{"from": "noreply@evil.example", "to": ["ada@example.com"], "subject": "Hi", "text": "x"}"#

    @Test("a send key sends only from its domains (403 otherwise) and may not manage webhooks; an admin key may")
    func scopesAndSenderPolicy() async throws {
        let smtp = TestSMTPServer()
        try await smtp.start()
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let database = directory.path + "/outbox.sqlite"
        let sender = try await createKey(database, scope: "send", domains: ["acme.example"])
        let admin = try await createKey(database, scope: "admin")

        try await withPigeon(smtp: smtp, database: database, settings: ["PIGEON_WEBHOOK_ALLOW_PRIVATE": "true"]) { client in
            let accepted = try await client.call("/v1/emails", method: .post, key: sender.key, json: Self.email)
            #expect(accepted.status == .accepted)

            let refused = try await client.call("/v1/emails", method: .post, key: sender.key, json: Self.otherDomain)
            #expect(refused.status == .forbidden)
            #expect(refused.headers[.contentType] == "application/problem+json")
            let problem = try jsonObject(refused.body)
            #expect(problem["status"] as? Int == 403)
            #expect((problem["errors"] as? [[String: Any]])?.first?["field"] as? String == "from")

            let batch = try await client.call(
                "/v1/emails/batch",
                method: .post,
                key: sender.key,
                json: "{\"emails\": [\(Self.email), \(Self.otherDomain)]}"
            )
            #expect(batch.status == .forbidden)
            #expect((try jsonObject(batch.body)["errors"] as? [[String: Any]])?.first?["field"] as? String == "emails[1].from")

            let webhooks = try await client.call("/v1/webhooks", method: .get, key: sender.key)
            #expect(webhooks.status == .forbidden)
            #expect(webhooks.headers[.contentType] == "application/problem+json")
            let create = try await client.call(
                "/v1/webhooks",
                method: .post,
                key: sender.key,
                json: #"{"url": "http://127.0.0.1:9/hook"}"#
            )
            #expect(create.status == .forbidden)

            #expect(try await client.call("/v1/webhooks", method: .get, key: admin.key).status == .ok)
            #expect(try await client.call("/v1/emails", method: .post, key: admin.key, json: Self.otherDomain).status == .accepted)
            // The key of PIGEON_API_KEYS keeps working, with the admin scope.
            #expect(try await client.call("/v1/webhooks", method: .get, key: testKey).status == .ok)
            #expect(try await client.call("/v1/events", method: .get, key: sender.key).status == .ok)
        }
        // Nothing was stored for the refused requests.
        #expect(try await storedCounts(database).values.reduce(0, +) == 2)
    }

    @Test("a revoked key is 401 from the next request on, while the server runs")
    func revokedKey() async throws {
        let smtp = TestSMTPServer()
        try await smtp.start()
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let database = directory.path + "/outbox.sqlite"
        let key = try await createKey(database, scope: "send")

        try await withPigeon(smtp: smtp, database: database) { client in
            #expect(try await client.call("/v1/emails", method: .post, key: key.key, json: Self.email).status == .accepted)
            // `pigeon keys revoke` opens the database beside the running server.
            let lines = try await OperatorCommands.revokeKey(database: database, id: key.id)
            #expect(lines == ["revoked \(key.id)"])
            let refused = try await client.call("/v1/emails", method: .post, key: key.key, json: Self.email)
            #expect(refused.status == .unauthorized)
            #expect(refused.headers[.wwwAuthenticate]?.hasPrefix("Bearer") == true)
            #expect(try jsonObject(refused.body)["detail"] as? String == "The API key has been revoked.")
            #expect(try await client.call("/v1/emails", method: .post, key: "pk_not-a-key", json: Self.email).status == .unauthorized)
            let listed = try await OperatorCommands.listKeys(database: database).joined(separator: "\n")
            #expect(listed.contains(key.id))
            #expect(!listed.contains(key.key))
        }
        await #expect(throws: OperatorCommands.Failure.self) { try await OperatorCommands.revokeKey(database: database, id: "ak_nope") }
    }

    @Test("over the rate limit: 429 problem+json with Retry-After, per key")
    func rateLimit() async throws {
        let smtp = TestSMTPServer()
        try await smtp.start()
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let database = directory.path + "/outbox.sqlite"
        let other = try await createKey(database, scope: "send")

        try await withPigeon(smtp: smtp, database: database, settings: ["PIGEON_RATE_LIMIT": "0.2", "PIGEON_RATE_LIMIT_BURST": "2"]) { client in
            #expect(try await client.call("/v1/emails?limit=1", key: testKey).status == .ok)
            #expect(try await client.call("/v1/emails?limit=1", key: testKey).status == .ok)
            let limited = try await client.call("/v1/emails?limit=1", key: testKey)
            #expect(limited.status == .tooManyRequests)
            #expect(limited.headers[.contentType] == "application/problem+json")
            let retryAfter = try #require(limited.headers[.retryAfter].flatMap { Int($0) })
            #expect((1...5).contains(retryAfter))
            #expect(try jsonObject(limited.body)["status"] as? Int == 429)
            // Another key has its own bucket.
            #expect(try await client.call("/v1/emails?limit=1", key: other.key).status == .ok)
            // Health is not limited.
            #expect(try await client.call("/healthz", key: nil).status == .ok)
        }
    }

    @Test("the limit counts emails: burst 10, a batch of 8 passes, a second batch of 8 right after is 429 and stores nothing")
    func batchCostsOnePerEmail() async throws {
        let smtp = TestSMTPServer()
        try await smtp.start()
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let database = directory.path + "/outbox.sqlite"
        let batch = #"{"emails": ["# + Array(repeating: Self.email, count: 8).joined(separator: ",") + "]}"

        try await withPigeon(smtp: smtp, database: database, settings: ["PIGEON_RATE_LIMIT": "0.01", "PIGEON_RATE_LIMIT_BURST": "10"]) { client in
            #expect(try await client.call("/v1/emails/batch", method: .post, key: testKey, json: batch).status == .accepted)
            let limited = try await client.call("/v1/emails/batch", method: .post, key: testKey, json: batch)
            #expect(limited.status == .tooManyRequests)
            #expect(limited.headers[.contentType]?.hasPrefix("application/problem+json") == true)
            // 1 of the 2 tokens left went to the request; the retry needs 8 at 0.01/s: 700 s,
            // less what refilled between the two requests (a slow machine takes seconds).
            let retryAfter = try #require(limited.headers[.retryAfter].flatMap { Int($0) })
            #expect((680...700).contains(retryAfter))
            #expect(try jsonObject(limited.body)["status"] as? Int == 429)
        }
        let counts = try await storedCounts(database)
        #expect(counts.values.reduce(0, +) == 8)
    }

    @Test("/readyz is 503 naming `disk` below PIGEON_MIN_FREE_DISK; 0 turns the check off")
    func readinessDiskSpace() async throws {
        let smtp = TestSMTPServer()
        try await smtp.start()
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let database = directory.path + "/outbox.sqlite"

        try await withPigeon(smtp: smtp, database: database, settings: ["PIGEON_MIN_FREE_DISK": "1PB"]) { client in
            let response = try await client.call("/readyz", key: nil)
            #expect(response.status == .serviceUnavailable)
            let body = try jsonObject(response.body)
            #expect(body["status"] as? String == "not_ready")
            let checks = try #require(body["checks"] as? [String: String])
            #expect(checks["database"] == "ok")
            #expect(checks["delivery"] == "ok")
            let disk = try #require(checks["disk"])
            #expect(disk.contains("free in \(directory.path)"), "\(disk)")
            #expect(disk.hasSuffix("less than PIGEON_MIN_FREE_DISK (1 PB)"), "\(disk)")
            // Accepting still works: readiness steers traffic, it refuses nothing.
            #expect(try await client.call("/v1/emails", method: .post, key: testKey, json: Self.email).status == .accepted)
        }
        try await withPigeon(smtp: smtp, database: database, settings: ["PIGEON_MIN_FREE_DISK": "0"]) { client in
            let response = try await client.call("/readyz", key: nil)
            #expect(response.status == .ok)
            #expect(try jsonObject(response.body)["checks"] as? [String: String] == ["database": "ok", "delivery": "ok"])
        }
    }

    @Test("no key appears in the logs (trace level) or in the database file")
    func keysNeverStoredOrLogged() async throws {
        let smtp = TestSMTPServer()
        try await smtp.start()
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let database = directory.path + "/outbox.sqlite"
        let made = try await createKey(database, scope: "admin")
        let logs = CapturedLogs()

        try await withPigeon(smtp: smtp, database: database, logger: logs.logger) { client in
            let response = try await client.call(
                "/v1/emails",
                method: .post,
                key: made.key,
                json: Self.email,
                headers: [HTTPField.Name("Idempotency-Key")!: "idem-1"]
            )
            #expect(response.status == .accepted)
            let id = try #require(try jsonObject(response.body)["id"] as? String)
            _ = try await smtp.waitForMessages(count: 1, timeout: .seconds(10))
            let deadline = ContinuousClock.now + .seconds(10)
            while ContinuousClock.now < deadline {
                let email = try jsonObject(try await client.call("/v1/emails/\(id)", key: made.key).body)
                if email["status"] as? String == "sent" { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(try await client.call("/v1/emails", method: .post, key: testKey, json: Self.email).status == .accepted)
            #expect(try await client.call("/v1/emails", method: .post, key: "wrong-key-0123456789", json: Self.email).status == .unauthorized)
        }
        let text = logs.text
        #expect(text.contains("request"))  // the request log ran
        #expect(text.contains("delivery attempt"))
        for secret in [made.key, testKey, "wrong-key-0123456789", "secret body 7f3a"] {
            #expect(!text.contains(secret), "a secret is in the log")
        }
        var bytes = Data()
        for suffix in ["", "-wal", "-shm"] {
            bytes += (try? Data(contentsOf: URL(fileURLWithPath: database + suffix))) ?? Data()
        }
        #expect(bytes.count > 0)
        for secret in [made.key, testKey] {
            #expect(bytes.range(of: Data(secret.utf8)) == nil, "a key is in the database file")
        }
    }

    @Test("one log line per request with a request id; X-Request-Id honoured when sane and echoed")
    func requestIDs() async throws {
        let smtp = TestSMTPServer()
        try await smtp.start()
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let logs = CapturedLogs()

        try await withPigeon(smtp: smtp, database: directory.path + "/outbox.sqlite", logger: logs.logger) { client in
            let given = try await client.call("/v1/emails", key: testKey, headers: [.requestID: "abc-123.XYZ"])
            #expect(given.headers[.requestID] == "abc-123.XYZ")
            let insane = try await client.call("/v1/emails", key: testKey, headers: [.requestID: "a b\u{7f}c"])
            let generated = try #require(insane.headers[.requestID])
            #expect(generated.hasPrefix("req_"))
            let unauthorized = try await client.call("/v1/emails", key: nil)
            #expect(unauthorized.status == .unauthorized)
            #expect(unauthorized.headers[.requestID]?.hasPrefix("req_") == true)
        }
        let requestLines = logs.lines.withLock { $0 }.filter { $0.hasPrefix("info request ") }
        #expect(requestLines.count == 3)
        #expect(requestLines.contains { $0.contains("request_id=abc-123.XYZ") && $0.contains("status=200") && $0.contains("key_id=env") })
        #expect(requestLines.contains { $0.contains("status=401") })
    }

    @Test("/readyz is 200 with its checks; /metrics parses and its counters move as emails are sent")
    func readinessAndMetrics() async throws {
        let smtp = TestSMTPServer()
        try await smtp.start()
        smtp.setHandler { command in
            command.verb == "RCPT" && command.argument.contains("bounce@") ? .reply("550 5.1.1 No such user") : .standard
        }
        let directory = try TemporaryDirectory()
        defer { directory.remove() }

        try await withPigeon(smtp: smtp, database: directory.path + "/outbox.sqlite") { client in
            let ready = try await client.call("/readyz", key: nil)
            #expect(ready.status == .ok)
            let body = try jsonObject(ready.body)
            #expect(body["status"] as? String == "ready")
            #expect(body["checks"] as? [String: String] == ["database": "ok", "delivery": "ok", "disk": "ok"])

            let before = try metricValues(try await client.call("/metrics", key: nil))
            #expect(before["pigeon_emails_accepted_total"] ?? 0 == 0)
            for _ in 0..<3 {
                #expect(try await client.call("/v1/emails", method: .post, key: testKey, json: Self.email).status == .accepted)
            }
            let bounce = #"{"from": "noreply@acme.example", "to": ["bounce@example.com"], "subject": "x", "text": "x"}"#
            #expect(try await client.call("/v1/emails", method: .post, key: testKey, json: bounce).status == .accepted)
            var after: [String: Double] = [:]
            let deadline = ContinuousClock.now + .seconds(10)
            while ContinuousClock.now < deadline {
                after = try metricValues(try await client.call("/metrics", key: nil))
                if after["pigeon_emails_sent_total"] == 3 && after["pigeon_emails_failed_total"] == 1 { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(after["pigeon_emails_accepted_total"] == 4)
            #expect(after["pigeon_emails_sent_total"] == 3)
            #expect(after["pigeon_emails_failed_total"] == 1)
            #expect(after["pigeon_smtp_replies_total{class=\"2xx\"}"] == 3)
            #expect(after["pigeon_smtp_replies_total{class=\"5xx\"}"] == 1)
            #expect(after["pigeon_emails{status=\"sent\"}"] == 3)
            #expect(after["pigeon_delivery_attempt_duration_seconds_count"] == 4)
            #expect(after["pigeon_queue_oldest_due_age_seconds"] != nil)
            #expect(after["pigeon_webhook_deliveries{status=\"pending\"}"] != nil)
        }
    }

    @Test("without PIGEON_API_KEYS, start-up needs a key in the database")
    func startupNeedsAKey() async throws {
        let smtp = TestSMTPServer()
        try await smtp.start()
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let database = directory.path + "/outbox.sqlite"
        let environment = ["PIGEON_DATABASE": database, "PIGEON_SMTP_URL": "smtp://127.0.0.1:\(smtp.port)?tls=none", "PIGEON_LISTEN": "127.0.0.1:0"]
        await #expect(throws: StartupError.self) {
            _ = try await buildApplication(try PigeonConfiguration.load(environment: environment))
        }
        let key = try await createKey(database, scope: "admin")
        try await withPigeon(smtp: smtp, database: database, settings: ["PIGEON_API_KEYS": ""]) { client in
            let fromDatabase = try await client.call("/v1/emails", method: .post, key: key.key, json: Self.email)
            #expect(fromDatabase.status == .accepted)
            let unknown = try await client.call("/v1/emails", method: .post, key: testKey, json: Self.email)
            #expect(unknown.status == .unauthorized)
        }
    }
}

extension HTTPField.Name {
    static let requestID = HTTPField.Name("X-Request-Id")!
}

/// The samples of a Prometheus text exposition, by `name{labels}`.
func metricValues(_ response: TestResponse) throws -> [String: Double] {
    #expect(response.status == .ok)
    var values: [String: Double] = [:]
    for line in String(buffer: response.body).split(separator: "\n") where !line.hasPrefix("#") {
        guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
        values[String(line[..<space])] = value
    }
    return values
}

/// `pigeon check` against aiosmtpd (PyPI) with STARTTLS and AUTH, from `.ci/interop/env`.
@Suite(
    "pigeon check: interop with aiosmtpd",
    .enabled(
        if: ProcessInfo.processInfo.environment["PIGEON_INTEROP_AIOSMTPD_STARTTLS"] != nil || ProcessInfo.processInfo.environment["CI"] == "true"
    )
)
struct CheckInteropTests {
    static func relay(password: String? = nil) throws -> (url: String, ca: String) {
        let environment = ProcessInfo.processInfo.environment
        let address = try #require(environment["PIGEON_INTEROP_AIOSMTPD_STARTTLS"], "source .ci/interop/env")
        let ca = try #require(environment["PIGEON_INTEROP_AIOSMTPD_CA"])
        let user = try #require(environment["PIGEON_INTEROP_AIOSMTPD_USER"])
        let secret = try #require(password ?? environment["PIGEON_INTEROP_AIOSMTPD_PASSWORD"])
        let port = address.split(separator: ":").last ?? ""
        return ("smtp://\(user):\(secret)@localhost:\(port)?tls=required", ca)
    }

    @Test("STARTTLS and AUTH: prints TLS, certificate, capabilities and AUTH, and succeeds")
    func succeeds() async throws {
        let relay = try Self.relay()
        let lines = try await OperatorCommands.check(smtpURL: relay.url, caFile: relay.ca)
        let text = lines.joined(separator: "\n")
        #expect(text.contains("tls: TLS 1."))
        #expect(text.contains("certificate issuer: CN=Pigeon Interop CA"))
        #expect(text.contains("certificate verified: yes"))
        #expect(text.contains("capabilities: ") && text.contains("AUTH"))
        #expect(text.contains("auth: succeeded as pigeon"))
        #expect(!text.contains(ProcessInfo.processInfo.environment["PIGEON_INTEROP_AIOSMTPD_PASSWORD"] ?? "-"))
    }

    @Test("a wrong password fails with one line naming authentication")
    func wrongPassword() async throws {
        let relay = try Self.relay(password: "wrong-password")
        do {
            _ = try await OperatorCommands.check(smtpURL: relay.url, caFile: relay.ca)
            Issue.record("expected a failure")
        } catch let failure as OperatorCommands.Failure {
            #expect(failure.description.contains("authentication failed"))
            #expect(failure.description.contains("535"))
            #expect(!failure.description.contains("wrong-password"))
            #expect(!failure.description.contains("\n"))
        }
    }

    @Test("tls=required against a relay without STARTTLS fails naming TLS")
    func noStartTLS() async throws {
        let server = TestSMTPServer(configuration: .init(authCredentials: .init(user: "u", password: "p")))
        try await server.start()
        do {
            _ = try await OperatorCommands.check(smtpURL: "smtp://u:p@127.0.0.1:\(server.port)?tls=required", caFile: nil)
            Issue.record("expected a failure")
        } catch let failure as OperatorCommands.Failure {
            #expect(failure.description.contains("TLS failed"))
            #expect(failure.description.contains("STARTTLS"))
        }
        #expect(server.messages.isEmpty)
    }
}

@Suite("Conformance to openapi.yaml")
struct ConformanceEndToEndTests {
    @Test("405 with Allow for a method the spec does not list; 400 for a bad query or Idempotency-Key; 422 for null")
    func conformance() async throws {
        let smtp = TestSMTPServer()
        try await smtp.start()
        let directory = try TemporaryDirectory()
        defer { directory.remove() }

        try await withPigeon(smtp: smtp, database: directory.path + "/outbox.sqlite") { client in
            let trace = try await client.call("/v1/emails", method: .put, key: testKey)
            #expect(trace.status == .methodNotAllowed)
            #expect(trace.headers[.allow] == "GET, POST")
            let health = try await client.call("/healthz", method: .delete, key: nil)
            #expect(health.status == .methodNotAllowed)
            #expect(health.headers[.allow] == "GET")
            #expect(try await client.call("/nowhere", key: nil).status == .notFound)

            for query in ["limit=abc", "limit=0", "limit=101", "status=nope", "created_after=yesterday", "cursor=em_1"] {
                let response = try await client.call("/v1/emails?\(query)", key: testKey)
                #expect(response.status == .badRequest, "\(query)")
                #expect(response.headers[.contentType] == "application/problem+json")
            }
            let late = try await client.call("/v1/emails?created_after=2026-01-01T00:00:00.250%2B23:30&limit=1", key: testKey)
            #expect(late.status == .ok)

            let longKey = try await client.call(
                "/v1/emails",
                method: .post,
                key: testKey,
                json: OperationsEndToEndTests.email,
                headers: [HTTPField.Name("Idempotency-Key")!: String(repeating: "k", count: 256)]
            )
            #expect(longKey.status == .badRequest)

            let withNull = try await client.call(
                "/v1/emails",
                method: .post,
                key: testKey,
                json: #"{"from": "a@acme.example", "to": ["b@example.com"], "subject": "s", "text": "t", "expires_at": null}"#
            )
            #expect(withNull.status == .unprocessableContent)
            #expect((try jsonObject(withNull.body)["errors"] as? [[String: Any]])?.first?["field"] as? String == "expires_at")
        }
        #expect(try await storedCounts(directory.path + "/outbox.sqlite").isEmpty)
    }
}

@Suite("Operations: secrets in SMTP transcripts, documentation")
struct OperationsDocumentationTests {
    @Test("at trace level the SMTP transcript is logged with AUTH redacted: no password, no AUTH PLAIN token")
    func authRedactedInTranscript() async throws {
        let password = "relay-pw-5e1f"
        let smtp = TestSMTPServer(configuration: .init(authCredentials: .init(user: "relayuser", password: password)))
        try await smtp.start()
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let logs = CapturedLogs()
        let settings = ["PIGEON_SMTP_URL": "smtp://relayuser:\(password)@127.0.0.1:\(smtp.port)?tls=none"]
        try await withPigeon(smtp: smtp, database: directory.path + "/outbox.sqlite", settings: settings, logger: logs.logger) {
            client in
            #expect(try await client.call("/v1/emails", method: .post, key: testKey, json: OperationsEndToEndTests.email).status == .accepted)
            _ = try await smtp.waitForMessages(count: 1, timeout: .seconds(10))
            try await Task.sleep(for: .milliseconds(200))
        }
        let text = logs.text
        #expect(text.contains("<redacted>"))
        let token = Data("\u{0}relayuser\u{0}\(password)".utf8).base64EncodedString()
        for secret in [password, token, Data(password.utf8).base64EncodedString()] {
            #expect(!text.contains(secret))
        }
    }

    @Test("README's configuration table has every setting of `pigeon serve`")
    func readmeHasEverySetting() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        for setting in Setting.all {
            #expect(readme.contains("| `\(setting.environment)` |"), "\(setting.environment) is not in README's table")
        }
    }
}
