import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import Outbox
import Testing

@testable import API

@Suite("GET /readyz and GET /metrics")
struct ReadinessTests {
    func withAPI(
        readiness: @escaping @Sendable () async -> [(name: String, problem: String?)],
        _ body: @Sendable (any TestClientProtocol) async throws -> Void
    ) async throws {
        var configuration = APIConfiguration(apiKeys: ["ready-test-key-0123456789"])
        configuration.operations = OperationsEndpoints(readiness: readiness, metrics: { "# TYPE x counter\nx 1\n" })
        try await withRoutes(configuration) { client, _ in try await body(client) }
    }

    @Test("a failing check is 503 naming it; no key needed")
    func notReady() async throws {
        let failing: @Sendable () async -> [(name: String, problem: String?)] = {
            [("database", "outbox unavailable: the database is read-only"), ("delivery", nil)]
        }
        try await withAPI(readiness: failing) { client in
            let response = try await client.execute(uri: "/readyz", method: .get)
            #expect(response.status == .serviceUnavailable)
            let body = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
            #expect(body?["status"] as? String == "not_ready")
            #expect((body?["checks"] as? [String: String])?["database"] == "outbox unavailable: the database is read-only")
            #expect((body?["checks"] as? [String: String])?["delivery"] == "ok")
        }
    }

    @Test("all checks fine is 200; /metrics is text/plain without a key")
    func ready() async throws {
        let fine: @Sendable () async -> [(name: String, problem: String?)] = { [("database", nil), ("delivery", nil)] }
        try await withAPI(readiness: fine) { client in
            #expect(try await client.execute(uri: "/readyz", method: .get).status == .ok)
            let metrics = try await client.execute(uri: "/metrics", method: .get)
            #expect(metrics.status == .ok)
            #expect(metrics.headers[.contentType]?.hasPrefix("text/plain") == true)
            #expect(String(buffer: metrics.body).contains("x 1"))
        }
    }
}
