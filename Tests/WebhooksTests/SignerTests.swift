import Foundation
import Outbox
import Testing
import Webhooks

@Suite("Standard Webhooks signing")
struct SignerTests {
    @Test("Reproduces the Standard Webhooks test vector")
    func testVector() throws {
        let secret = try WebhookSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        let signature = WebhookSigner.signature(
            id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
            timestamp: 1_614_265_330,
            body: Array(#"{"test": 2432232314}"#.utf8),
            secrets: [secret]
        )
        #expect(signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
    }

    @Test("During a rotation both signatures are sent, new secret first, space-separated")
    func twoSecrets() throws {
        let old = try WebhookSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        let new = try WebhookSecret(WebhookSecretGenerator.make())
        let body = Array(#"{"test": 2432232314}"#.utf8)
        let both = WebhookSigner.signature(id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1_614_265_330, body: body, secrets: [new, old])
        let parts = both.split(separator: " ").map(String.init)
        #expect(parts.count == 2)
        #expect(parts[1] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        #expect(parts[0] == WebhookSigner.signature(id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1_614_265_330, body: body, secrets: [new]))
    }

    @Test(
        "Malformed secrets are refused without echoing them",
        arguments: [
            ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", WebhookSecret.ParseError.missingPrefix),
            ("whsec_***not base64***", .notBase64),
            ("whsec_c2hvcnQ=", .badLength(5)),
        ]
    )
    func badSecrets(text: String, expected: WebhookSecret.ParseError) {
        #expect(throws: expected) { try WebhookSecret(text) }
        #expect(!expected.description.contains(text))
    }

    @Test("Generated secrets are whsec_ + 32 random bytes, and parse")
    func generated() throws {
        let secret = WebhookSecretGenerator.make()
        #expect(secret.hasPrefix("whsec_"))
        #expect(Data(base64Encoded: String(secret.dropFirst(6)))?.count == 32)
        _ = try WebhookSecret(secret)
        #expect(secret != WebhookSecretGenerator.make())
        #expect("\(try WebhookSecret(secret))" == "whsec_<redacted>")
    }
}
