import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Outbox
import Testing

@testable import API

@Suite("HTTP layer")
struct APITests {
    static let key = "api-test-key-0123456789abcdef"

    /// The routes over a real temporary outbox, driven in process by Hummingbird's router tester.
    func withAPI(_ body: @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        try await withRoutes(APIConfiguration(apiKeys: [Self.key], maxRequestBytes: 10_000)) { client, _ in try await body(client) }
    }

    @Test(
        "Decoding failures become 400 for broken JSON and 422 naming the field for the wrong shape",
        arguments: [
            ("{", 400, nil),
            ("[]", 422, nil),
            (#"{"from": 1, "subject": "s"}"#, 422, "from"),
            (#"{"from": "a@b.example", "subject": "s", "to": [1]}"#, 422, "to[0]"),
            (#"{"from": "a@b.example", "subject": "s", "headers": {"X": 1}}"#, 422, "headers.X"),
            (#"{"subject": "s"}"#, 422, "from"),
        ] as [(String, Int, String?)]
    )
    func decodingProblems(body: String, status: Int, field: String?) async throws {
        try await withAPI { client in
            let response = try await client.execute(
                uri: "/v1/emails",
                method: .post,
                headers: [.authorization: "Bearer \(Self.key)", .contentType: "application/json", .accept: "application/json"],
                body: ByteBuffer(string: body)
            )
            #expect(Int(response.status.code) == status)
            #expect(response.headers[.contentType]?.hasPrefix("application/problem+json") == true)
            let problem = try JSONDecoder().decode(ProblemDocument.self, from: Data(response.body.readableBytesView))
            #expect(problem.status == status)
            if let field { #expect(problem.errors?.map(\.field) == [field]) }
        }
    }

    @Test("A body over the declared-length limit is 413 before it is decoded")
    func bodyLimit() async throws {
        try await withAPI { client in
            let big = ByteBuffer(string: String(repeating: "x", count: 20_000))
            let response = try await client.execute(
                uri: "/v1/emails",
                method: .post,
                headers: [.authorization: "Bearer \(Self.key)", .contentType: "application/json"],
                body: big
            )
            #expect(response.status == .contentTooLarge)
            #expect(response.headers[.contentType]?.hasPrefix("application/problem+json") == true)
        }
    }

    @Test("Keys: missing, malformed scheme, wrong key are 401; the right key passes")
    func keys() async throws {
        try await withAPI { client in
            for header in [nil, "Basic abc", "Bearer", "Bearer wrong-key-0123456789abcdef", "Bearer \(Self.key)x"] as [String?] {
                var headers: HTTPFields = [:]
                if let header { headers[.authorization] = header }
                let response = try await client.execute(uri: "/v1/emails?limit=1", method: .get, headers: headers)
                #expect(response.status == .unauthorized, "\(header ?? "none")")
            }
            let ok = try await client.execute(uri: "/v1/emails?limit=1", method: .get, headers: [.authorization: "Bearer \(Self.key)"])
            #expect(ok.status == .ok)
        }
    }

    @Test(
        "Tags are checked: count, key characters, value length",
        arguments: [
            ([:], []),
            (["campaign": "spring"], []),
            (["bad key": "x"], ["tags"]),
            (["k": String(repeating: "v", count: 257)], ["tags.k"]),
            (Dictionary(uniqueKeysWithValues: (0..<11).map { ("k\($0)", "v") }), ["tags"]),
        ] as [([String: String], [String])]
    )
    func tags(tags: [String: String], fields: [String]) {
        #expect(PigeonAPI.validateTags(tags).map(\.field) == fields)
    }

    @Test("Scheduling and deadlines are validated with the field named")
    func scheduleValidation() async throws {
        try await withAPI { client in
            let past = ISO8601DateFormatter().string(from: Date() - 60)
            let farFuture = ISO8601DateFormatter().string(from: Date() + 40 * 86_400)
            for (body, field) in [
                (#"{"from": "a@b.example", "to": ["c@d.example"], "subject": "s", "text": "t", "expires_at": "\#(past)"}"#, "expires_at"),
                (#"{"from": "a@b.example", "to": ["c@d.example"], "subject": "s", "text": "t", "scheduled_at": "\#(farFuture)"}"#, "scheduled_at"),
            ] {
                let response = try await client.execute(
                    uri: "/v1/emails",
                    method: .post,
                    headers: [.authorization: "Bearer \(Self.key)", .contentType: "application/json"],
                    body: ByteBuffer(string: body)
                )
                #expect(response.status == .unprocessableContent)
                let problem = try JSONDecoder().decode(ProblemDocument.self, from: Data(response.body.readableBytesView))
                #expect(problem.errors?.contains { $0.field == field } == true)
            }
        }
    }
}
