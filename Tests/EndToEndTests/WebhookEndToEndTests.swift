import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Outbox
import PigeonApp
import SMTPTestSupport
import Synchronization
import Testing

/// Webhooks and the event feed, end to end: the real app, a real SMTP server, a real receiver.
@Suite("End to end: webhooks and the event feed")
struct WebhookEndToEndTests {
    static let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

    @Test(
        "Every webhook of a full send (queued, deferred, sent, failed) verifies with the standardwebhooks package",
        .enabled(if: Python.receiverAvailable || ProcessInfo.processInfo.environment["CI"] == "true")
    )
    func pythonVerifiesEveryWebhook() async throws {
        try #require(Python.receiverAvailable, "python3 with the standardwebhooks package is needed (pip install -r .ci/webhooks/requirements.txt)")
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let receiver = try Python.startReceiver(secret: Self.secret, directory: directory.path)
        defer { receiver.terminate() }
        let port = try await Python.waitForPort(directory: directory.path)

        let smtp = TestSMTPServer()
        try await smtp.start()
        let deferredOnce = Mutex(false)
        smtp.setHandler { command in
            if command.verb == "RCPT" && command.argument.contains("later@") {
                let first = deferredOnce.withLock { done in
                    defer { done = true }
                    return !done
                }
                if first { return .reply("451 4.3.0 Try again later") }
            }
            if command.verb == "RCPT" && command.argument.contains("bad@") {
                return .reply("550 5.1.1 No such user")
            }
            return .standard
        }
        let settings = [
            "PIGEON_WEBHOOK_URL": "http://127.0.0.1:\(port)/hook",
            "PIGEON_WEBHOOK_SECRET": Self.secret,
            "PIGEON_WEBHOOK_ALLOW_PRIVATE": "true",
        ]
        try await withPigeon(smtp: smtp, database: directory.path + "/outbox.sqlite", settings: settings) { client in
            let later = try jsonObject(
                try await client.postEmail(#"{"from": "a@acme.example", "to": ["later@example.com"], "subject": "S", "text": "x"}"#).body
            )
            let bad = try jsonObject(
                try await client.postEmail(#"{"from": "a@acme.example", "to": ["bad@example.com"], "subject": "S", "text": "x"}"#).body
            )
            let laterID = try #require(later["id"] as? String)
            let badID = try #require(bad["id"] as? String)
            _ = try await client.waitForStatus(laterID, "sent")
            _ = try await client.waitForStatus(badID, "failed")

            let expected: Set<String> = [
                "\(laterID) email.queued", "\(laterID) email.deferred", "\(laterID) email.sent",
                "\(badID) email.queued", "\(badID) email.failed",
            ]
            var lines: [[String: Any]] = []
            let deadline = ContinuousClock.now + .seconds(20)
            while ContinuousClock.now < deadline {
                lines = Python.receivedLines(directory: directory.path)
                let seen = Set(lines.compactMap { line in (line["email_id"] as? String).map { "\($0) \(line["type"] as? String ?? "")" } })
                if seen.isSuperset(of: expected) { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            let seen = Set(lines.compactMap { line in (line["email_id"] as? String).map { "\($0) \(line["type"] as? String ?? "")" } })
            #expect(seen == expected)
            #expect(lines.count == expected.count)
            for line in lines {
                #expect(line["ok"] as? Bool == true, "not verified: \(line)")
                #expect(line["tamper_rejected"] as? Bool == true)
                #expect(line["id"] as? String == line["body_id"] as? String)
            }
            // The ids are the event feed's ids.
            let feed = try await client.events(after: 0)
            let feedIDs = Set(feed.compactMap { $0["id"] as? String })
            #expect(Set(lines.compactMap { $0["id"] as? String }) == feedIDs)
        }
    }

    @Test("After a receiver outage of N events, GET /v1/events?after= returns exactly the missed ones, in order")
    func feedAfterOutage() async throws {
        let hooks = HookReceiver()
        let router = Router()
        router.post("/hook") { request, _ -> HTTPResponse.Status in
            let body = try await request.body.collect(upTo: 1 << 20)
            return hooks.receive(id: request.headers[HTTPField.Name("webhook-id")!] ?? "", body: body)
        }
        try await withPigeonPostingTo(router) { client in
            let first = try await client.sendSimpleEmail()
            _ = try await client.waitForStatus(first, "sent")
            try await hooks.waitFor(count: 2)
            let lastSeen = try #require(hooks.received.compactMap { Int64($0.dropFirst(4)) }.max())

            hooks.setDown(true)
            var missedEmails: [String] = []
            for _ in 0..<3 {
                let id = try await client.sendSimpleEmail()
                _ = try await client.waitForStatus(id, "sent")
                missedEmails.append(id)
            }
            try await hooks.waitFor(refused: 6)

            let feed = try await client.events(after: lastSeen)
            #expect(feed.count == 6)
            let sequences = feed.compactMap { $0["sequence"] as? Int64 ?? ($0["sequence"] as? Int).map(Int64.init) }
            #expect(sequences == sequences.sorted())
            #expect(sequences.allSatisfy { $0 > lastSeen })
            let summary = feed.map { event -> String in
                let data = event["data"] as? [String: Any]
                return "\(data?["email_id"] as? String ?? "?") \(event["type"] as? String ?? "?")"
            }
            #expect(summary == missedEmails.flatMap { ["\($0) email.queued", "\($0) email.sent"] })
            // Exactly the events whose webhooks the receiver refused.
            #expect(Set(feed.compactMap { $0["id"] as? String }) == Set(hooks.refused))

            // The deliveries say so, attempt by attempt.
            let endpoints = try await client.getJSON("/v1/webhooks")
            let endpoint = try #require((endpoints["data"] as? [[String: Any]])?.first)
            #expect(endpoint["is_default"] as? Bool == true)
            let endpointID = try #require(endpoint["id"] as? String)
            let deliveries = try #require(try await client.getJSON("/v1/webhooks/\(endpointID)/deliveries")["data"] as? [[String: Any]])
            #expect(deliveries.count == 8)
            let pending = deliveries.filter { $0["status"] as? String == "pending" }.compactMap { $0["event_id"] as? String }
            #expect(Set(pending) == Set(hooks.refused))
            for delivery in deliveries where delivery["status"] as? String == "pending" {
                let attempts = try #require(delivery["attempts"] as? [[String: Any]])
                #expect(attempts.first?["response_status"] as? Int == 503)
                #expect(attempts.first?["outcome"] as? String == "retrying")
            }
        }
    }

    @Test("/metrics counts webhook attempts by outcome: 200s succeed; 500s are retried, then fail for good")
    func attemptOutcomeMetrics() async throws {
        let status = Mutex(HTTPResponse.Status.ok)
        let router = Router()
        router.post("/hook") { request, _ -> HTTPResponse.Status in
            _ = try await request.body.collect(upTo: 1 << 20)
            return status.withLock { $0 }
        }
        try await withPigeonPostingTo(router, settings: ["PIGEON_WEBHOOK_RETRY_SCHEDULE": "200ms"]) { client in
            func attempts(_ outcome: String) -> String { "pigeon_webhook_attempts_total{outcome=\"\(outcome)\"}" }
            /// Scrapes until `done` holds (or 10 s pass) and returns the last scrape.
            func scrape(until done: ([String: Double]) -> Bool) async throws -> [String: Double] {
                var values: [String: Double] = [:]
                let deadline = ContinuousClock.now + .seconds(10)
                while ContinuousClock.now < deadline {
                    values = try metricValues(try await client.execute(uri: "/metrics", method: .get))
                    if done(values) { break }
                    try await Task.sleep(for: .milliseconds(50))
                }
                return values
            }

            let start = try await scrape { _ in true }
            for outcome in ["succeeded", "retrying", "failed", "gone"] {
                #expect(start[attempts(outcome)] == 0, "\(outcome) is exported from the start")
            }

            // email.queued and email.sent, both answered 200.
            _ = try await client.waitForStatus(try await client.sendSimpleEmail(), "sent")
            let delivered = try await scrape { $0[attempts("succeeded")] == 2 }
            #expect(delivered[attempts("succeeded")] == 2)
            #expect(delivered[attempts("retrying")] == 0)

            // Two more webhooks, answered 500: each is retried once after 200 ms, then fails for good.
            status.withLock { $0 = .internalServerError }
            _ = try await client.waitForStatus(try await client.sendSimpleEmail(), "sent")
            let failing = try await scrape { $0[attempts("failed")] == 2 }
            #expect(failing[attempts("succeeded")] == 2)
            #expect(failing[attempts("retrying")] == 2)
            #expect(failing[attempts("failed")] == 2)
            #expect(failing[attempts("gone")] == 0)
            #expect(failing["pigeon_webhook_deliveries{status=\"failed\"}"] == 2)
        }
    }

    /// The app with `PIGEON_WEBHOOK_URL` pointing at `router`'s `/hook`, served on a free
    /// loopback port, and an in-process SMTP server; both stop when `body` returns.
    func withPigeonPostingTo(
        _ router: Router<BasicRequestContext>,
        settings extra: [String: String] = [:],
        _ body: @Sendable (any TestClientProtocol) async throws -> Void
    ) async throws {
        let receiverApp = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await receiverApp.test(.live) { receiverClient in
            let port = try #require(receiverClient.port)
            let smtp = TestSMTPServer()
            try await smtp.start()
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let settings = [
                "PIGEON_WEBHOOK_URL": "http://127.0.0.1:\(port)/hook",
                "PIGEON_WEBHOOK_SECRET": Self.secret,
                "PIGEON_WEBHOOK_ALLOW_PRIVATE": "true",
            ].merging(extra) { $1 }
            try await withPigeon(smtp: smtp, database: directory.path + "/outbox.sqlite", settings: settings, body)
        }
    }

    @Test("A webhook endpoint that never answers does not slow email delivery")
    func downEndpointDoesNotSlowDelivery() async throws {
        // An endpoint that accepts connections and never answers: each POST waits the full 15 s timeout.
        let blackHole = TestSMTPServer()
        try await blackHole.start()
        blackHole.setHandler { _ in .hang }
        let smtp = TestSMTPServer()
        try await smtp.start()
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let settings = [
            "PIGEON_WEBHOOK_URL": "http://127.0.0.1:\(blackHole.port)/hook",
            "PIGEON_WEBHOOK_SECRET": Self.secret,
            "PIGEON_WEBHOOK_ALLOW_PRIVATE": "true",
            "PIGEON_WEBHOOK_TIMEOUT": "15s",
        ]
        let began = ContinuousClock.now
        try await withPigeon(smtp: smtp, database: directory.path + "/outbox.sqlite", settings: settings) { client in
            let start = ContinuousClock.now
            var ids: [String] = []
            for _ in 0..<20 {
                ids.append(try await client.sendSimpleEmail())
            }
            _ = try await smtp.waitForMessages(count: 20, timeout: .seconds(10))
            for id in ids {
                _ = try await client.waitForStatus(id, "sent")
            }
            let elapsed = ContinuousClock.now - start
            // 40 webhooks at 15 s each, 4 at a time, would take minutes; email delivery took a few seconds.
            #expect(elapsed < .seconds(5), "delivering 20 emails took \(elapsed)")
            let endpoints = try await client.getJSON("/v1/webhooks")
            let endpointID = try #require((endpoints["data"] as? [[String: Any]])?.first?["id"] as? String)
            let deliveries = try #require(try await client.getJSON("/v1/webhooks/\(endpointID)/deliveries?limit=200")["data"] as? [[String: Any]])
            #expect(deliveries.count == 40)
            #expect(deliveries.allSatisfy { $0["status"] as? String == "pending" })
        }
        // Shutting down does not wait for the POSTs in flight to time out either.
        #expect(ContinuousClock.now - began < .seconds(10))
    }

    @Test("Endpoint management: create shows the secret once, SSRF refusals name the url, update, rotate, delete")
    func endpointManagement() async throws {
        let smtp = TestSMTPServer()
        try await smtp.start()
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try await withPigeon(smtp: smtp, database: directory.path + "/outbox.sqlite") { client in
            for url in ["http://127.0.0.1:9/hook", "http://[::1]/hook", "http://0x7f000001/", "http://localhost:8080/", "ftp://example.com/"] {
                let response = try await client.sendJSON("/v1/webhooks", method: .post, #"{"url": "\#(url)"}"#)
                #expect(response.status == .unprocessableContent, "\(url)")
                let problem = try jsonObject(response.body)
                let errors = problem["errors"] as? [[String: Any]]
                #expect(errors?.first?["field"] as? String == "url")
            }
            #expect(try await client.getJSON("/v1/webhooks")["data"] as? [Any] != nil)
            #expect((try await client.getJSON("/v1/webhooks")["data"] as? [Any])?.isEmpty == true)
        }
        try await withPigeon(smtp: smtp, database: directory.path + "/outbox.sqlite", settings: ["PIGEON_WEBHOOK_ALLOW_PRIVATE": "true"]) { client in
            let created = try await client.sendJSON(
                "/v1/webhooks",
                method: .post,
                #"{"url": "http://127.0.0.1:9/hook", "event_types": ["email.sent", "email.failed"]}"#
            )
            #expect(created.status == .created)
            let endpoint = try jsonObject(created.body)
            let id = try #require(endpoint["id"] as? String)
            let secret = try #require(endpoint["secret"] as? String)
            #expect(secret.hasPrefix("whsec_"))
            #expect(endpoint["event_types"] as? [String] == ["email.sent", "email.failed"])
            let fetched = try await client.getJSON("/v1/webhooks/\(id)")
            #expect(fetched["secret"] == nil)
            #expect(fetched["enabled"] as? Bool == true)

            let updated = try await client.sendJSON("/v1/webhooks/\(id)", method: .patch, #"{"enabled": false}"#)
            #expect(updated.status == .ok)
            let disabled = try jsonObject(updated.body)
            #expect(disabled["enabled"] as? Bool == false)
            #expect(disabled["disabled_reason"] as? String == "user")

            let rotated = try await client.sendJSON("/v1/webhooks/\(id)/rotate-secret", method: .post, nil)
            #expect(rotated.status == .ok)
            let rotatedBody = try jsonObject(rotated.body)
            #expect((rotatedBody["secret"] as? String).map { $0 != secret && $0.hasPrefix("whsec_") } == true)
            #expect(rotatedBody["previous_secret_expires_at"] as? String != nil)

            #expect(try await client.sendJSON("/v1/webhooks/\(id)", method: .delete, nil).status == .noContent)
            #expect(try await client.sendJSON("/v1/webhooks/\(id)", method: .get, nil).status == .notFound)
            #expect(try await client.sendJSON("/v1/webhooks/\(id)/deliveries", method: .get, nil).status == .notFound)
            #expect(try await client.sendJSON("/v1/events?limit=0", method: .get, nil).status == .unprocessableContent)
            #expect(try await client.sendJSON("/v1/events?after=-1", method: .get, nil).status == .unprocessableContent)
            #expect(try await client.sendJSON("/v1/events?type=email.nope", method: .get, nil).status.code / 100 == 4)
            let long = String(repeating: "x", count: 501)
            let tooLong = try await client.sendJSON("/v1/webhooks", method: .post, #"{"url": "http://127.0.0.1:9/", "description": "\#(long)"}"#)
            #expect(tooLong.status == .unprocessableContent)
        }
    }
}

/// Records webhooks; while "down" it answers 503 and remembers what it refused.
final class HookReceiver: Sendable {
    private struct State {
        var down = false
        var received: [String] = []
        var refused: [String] = []
    }

    private let state = Mutex(State())

    var received: [String] { state.withLock { $0.received } }
    var refused: [String] { state.withLock { $0.refused } }

    func setDown(_ down: Bool) { state.withLock { $0.down = down } }

    func receive(id: String, body: ByteBuffer) -> HTTPResponse.Status {
        state.withLock { state in
            if state.down {
                if !state.refused.contains(id) { state.refused.append(id) }
                return .serviceUnavailable
            }
            state.received.append(id)
            return .noContent
        }
    }

    func waitFor(count: Int = 0, refused: Int = 0) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            let done = state.withLock { $0.received.count >= count && $0.refused.count >= refused }
            if done { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("the receiver got \(received.count) webhooks and refused \(self.refused.count)")
    }
}

/// The Python receiver of `.ci/webhooks/receiver.py`.
enum Python {
    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static let receiverAvailable: Bool = {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", "import standardwebhooks"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            return false
        }
        process.waitUntilExit()
        return process.terminationStatus == 0
    }()

    static func startReceiver(secret: String, directory: String) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", repositoryRoot.appendingPathComponent(".ci/webhooks/receiver.py").path, secret, directory]
        // The receiver exits when this pipe closes, i.e. with the test process at the latest.
        process.standardInput = Pipe()
        // Never share the test's output pipes: `swift test` waits for every writer to close them.
        process.standardOutput = FileHandle.nullDevice
        _ = FileManager.default.createFile(atPath: directory + "/receiver.log", contents: nil)
        process.standardError = FileHandle(forWritingAtPath: directory + "/receiver.log") ?? FileHandle.nullDevice
        try process.run()
        return process
    }

    static func waitForPort(directory: String) async throws -> Int {
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if let text = try? String(contentsOfFile: directory + "/port", encoding: .utf8), let port = Int(text) {
                return port
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw JSONShapeError()
    }

    static func receivedLines(directory: String) -> [[String: Any]] {
        guard let text = try? String(contentsOfFile: directory + "/webhooks.jsonl", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        }
    }
}

extension TestClientProtocol {
    /// POSTs a small email and returns its id.
    func sendSimpleEmail() async throws -> String {
        let response = try await postEmail(#"{"from": "a@acme.example", "to": ["ada@example.com"], "subject": "S", "text": "x"}"#)
        #expect(response.status == .accepted)
        return try #require(try jsonObject(response.body)["id"] as? String)
    }

    /// GET with the test key, as JSON.
    func getJSON(_ uri: String) async throws -> [String: Any] {
        let response = try await sendJSON(uri, method: .get, nil)
        #expect(response.status == .ok, "\(uri)")
        return try jsonObject(response.body)
    }

    /// A request with the test key and an optional JSON body.
    func sendJSON(_ uri: String, method: HTTPRequest.Method, _ json: String?) async throws -> TestResponse {
        var headers: HTTPFields = [.authorization: "Bearer \(testKey)"]
        if json != nil { headers[.contentType] = "application/json" }
        return try await execute(uri: uri, method: method, headers: headers, body: json.map { ByteBuffer(string: $0) })
    }

    /// The event feed after a cursor.
    func events(after: Int64) async throws -> [[String: Any]] {
        try await getJSON("/v1/events?after=\(after)&limit=1000")["data"] as? [[String: Any]] ?? []
    }
}

@Suite("Webhook settings")
struct WebhookSettingsTests {
    static let base = [
        "PIGEON_SMTP_URL": "smtp://127.0.0.1:2525?tls=none",
        "PIGEON_API_KEYS": testKey,
    ]

    @Test(
        "A bad webhook setting stops start-up with one line naming it",
        arguments: [
            (["PIGEON_WEBHOOK_URL": "https://hooks.example.com/x"], "PIGEON_WEBHOOK_SECRET"),
            (["PIGEON_WEBHOOK_SECRET": WebhookEndToEndTests.secret], "PIGEON_WEBHOOK_URL"),
            (["PIGEON_WEBHOOK_URL": "https://hooks.example.com/x", "PIGEON_WEBHOOK_SECRET": "whsec_c2hvcnQ="], "PIGEON_WEBHOOK_SECRET"),
            (["PIGEON_WEBHOOK_URL": "http://127.0.0.1:9000/x", "PIGEON_WEBHOOK_SECRET": WebhookEndToEndTests.secret], "PIGEON_WEBHOOK_URL"),
            (["PIGEON_WEBHOOK_URL": "ftp://hooks.example.com/", "PIGEON_WEBHOOK_SECRET": WebhookEndToEndTests.secret], "PIGEON_WEBHOOK_URL"),
            (["PIGEON_WEBHOOK_ALLOW_PRIVATE": "maybe"], "PIGEON_WEBHOOK_ALLOW_PRIVATE"),
            (["PIGEON_WEBHOOK_TIMEOUT": "soon"], "PIGEON_WEBHOOK_TIMEOUT"),
            (["PIGEON_WEBHOOK_TIMEOUT": "0s"], "PIGEON_WEBHOOK_TIMEOUT"),
            (["PIGEON_WEBHOOK_RETRY_SCHEDULE": "5s,often"], "PIGEON_WEBHOOK_RETRY_SCHEDULE"),
            (["PIGEON_WEBHOOK_MAX_CONSECUTIVE_FAILURES": "0"], "PIGEON_WEBHOOK_MAX_CONSECUTIVE_FAILURES"),
        ]
    )
    func badSetting(settings: [String: String], named: String) {
        var environment = Self.base
        environment.merge(settings) { $1 }
        #expect {
            _ = try PigeonConfiguration.load(environment: environment)
        } throws: { error in
            guard let error = error as? ConfigurationError else { return false }
            // The line names the setting and never echoes the secret.
            return error.setting == named && !error.description.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        }
    }

    @Test("The documented defaults load, and loopback is accepted with PIGEON_WEBHOOK_ALLOW_PRIVATE=true")
    func defaults() throws {
        _ = try PigeonConfiguration.load(environment: Self.base)
        let defaults = Dictionary(uniqueKeysWithValues: Setting.all.map { ($0.environment, $0.defaultValue) })
        #expect(defaults["PIGEON_WEBHOOK_TIMEOUT"] == "15s")
        #expect(defaults["PIGEON_WEBHOOK_RETRY_SCHEDULE"] == "5s,5m,30m,2h,5h,10h,10h")
        #expect(defaults["PIGEON_WEBHOOK_ALLOW_PRIVATE"] == "false")
        #expect(defaults["PIGEON_WEBHOOK_MAX_CONSECUTIVE_FAILURES"] == "10")
        var environment = Self.base
        environment.merge([
            "PIGEON_WEBHOOK_URL": "http://127.0.0.1:9000/x", "PIGEON_WEBHOOK_SECRET": WebhookEndToEndTests.secret,
            "PIGEON_WEBHOOK_ALLOW_PRIVATE": "true", "PIGEON_WEBHOOK_RETRY_SCHEDULE": "1s,2s",
        ]) { $1 }
        _ = try PigeonConfiguration.load(environment: environment)
    }
}
