import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Outbox
import PigeonApp
import SMTPTestSupport
import Testing

let testKey = "test-key-0123456789abcdef"

/// A temporary directory removed at the end of the test.
struct TemporaryDirectory {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "pigeon-e2e-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Runs the real application (HTTP on a free port, a temporary SQLite file, delivery
/// to `smtp`) around `body`, then shuts it down gracefully. Logs only warnings unless
/// a `logger` is given.
func withPigeon(
    smtp: TestSMTPServer,
    database: String,
    settings: [String: String] = [:],
    logger: Logger? = nil,
    _ body: @Sendable (any TestClientProtocol) async throws -> Void
) async throws {
    var environment = [
        "PIGEON_LISTEN": "127.0.0.1:0",
        "PIGEON_DATABASE": database,
        "PIGEON_SMTP_URL": "smtp://127.0.0.1:\(smtp.port)?tls=none",
        "PIGEON_API_KEYS": testKey,
        "PIGEON_RETRY_SCHEDULE": "200ms",
    ]
    environment.merge(settings) { $1 }
    let configuration = try PigeonConfiguration.load(environment: environment)
    var quiet = Logger(label: "pigeon-test")
    quiet.logLevel = .warning
    let app = try await buildApplication(configuration, logger: logger ?? quiet)
    try await app.test(.live, body)
}

extension TestClientProtocol {
    /// POSTs JSON to `/v1/emails` with the test key.
    func postEmail(_ json: String, key: String? = testKey) async throws -> TestResponse {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let key { headers[.authorization] = "Bearer \(key)" }
        return try await execute(uri: "/v1/emails", method: .post, headers: headers, body: ByteBuffer(string: json))
    }

    /// GETs `/v1/emails/{id}` as JSON.
    func getEmail(_ id: String) async throws -> [String: Any] {
        let response = try await execute(
            uri: "/v1/emails/\(id)",
            method: .get,
            headers: [.authorization: "Bearer \(testKey)"]
        )
        #expect(response.status == .ok)
        return try jsonObject(response.body)
    }

    /// Polls GET until the email's status is `status` (or 30 s pass, for loaded CI machines).
    func waitForStatus(_ id: String, _ status: String) async throws -> [String: Any] {
        let deadline = ContinuousClock.now + .seconds(30)
        var last: [String: Any] = [:]
        while ContinuousClock.now < deadline {
            last = try await getEmail(id)
            if last["status"] as? String == status { return last }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("email \(id) never reached \(status); last: \(last)")
        return last
    }
}

func jsonObject(_ buffer: ByteBuffer) throws -> [String: Any] {
    let data = Data(buffer.readableBytesView)
    guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
        throw JSONShapeError()
    }
    return object
}

struct JSONShapeError: Error {}

/// Opens the outbox after the app stopped, to look at what is stored.
func storedCounts(_ database: String) async throws -> [EmailStatus: Int] {
    let outbox = try SQLiteOutbox(path: database)
    return try await outbox.countByStatus()
}
