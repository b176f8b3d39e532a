import SMTPClient
import Testing

@Suite("SMTPRelayConfiguration from PIGEON_SMTP_URL")
struct SMTPRelayConfigurationTests {
    struct Valid: Sendable, CustomTestStringConvertible {
        var url: String
        var host: String
        var port: Int
        var tls: SMTPTLSMode
        var username: String?
        var password: String?
        var redacted: String
        var testDescription: String { url }
    }

    static let valid: [Valid] = [
        Valid(
            url: "smtp://mx.example.com",
            host: "mx.example.com",
            port: 25,
            tls: .opportunistic,
            redacted: "smtp://mx.example.com:25?tls=opportunistic"
        ),
        Valid(
            url: "smtp://user:pass@smtp.example.com:587",
            host: "smtp.example.com",
            port: 587,
            tls: .required,
            username: "user",
            password: "pass",
            redacted: "smtp://user:***@smtp.example.com:587?tls=required"
        ),
        Valid(url: "smtps://smtp.example.com", host: "smtp.example.com", port: 465, tls: .implicit, redacted: "smtps://smtp.example.com:465"),
        Valid(
            url: "SMTPS://u:p@Host:2465?tls=implicit",
            host: "host",
            port: 2465,
            tls: .implicit,
            username: "u",
            password: "p",
            redacted: "smtps://u:***@host:2465"
        ),
        Valid(url: "smtp://localhost:2525?tls=none", host: "localhost", port: 2525, tls: .none, redacted: "smtp://localhost:2525?tls=none"),
        Valid(
            url: "smtp://me%40example.com:p%3Ass%2Fw%25rd@127.0.0.1:25?tls=none",
            host: "127.0.0.1",
            port: 25,
            tls: .none,
            username: "me@example.com",
            password: "p:ss/w%rd",
            redacted: "smtp://me%40example.com:***@127.0.0.1:25?tls=none"
        ),
        Valid(url: "smtp://[::1]:25/?tls=opportunistic", host: "::1", port: 25, tls: .opportunistic, redacted: "smtp://[::1]:25?tls=opportunistic"),
        Valid(
            url: "smtp://u:p@mail.example:587?tls=opportunistic",
            host: "mail.example",
            port: 587,
            tls: .opportunistic,
            username: "u",
            password: "p",
            redacted: "smtp://u:***@mail.example:587?tls=opportunistic"
        ),
    ]

    @Test(arguments: valid)
    func parses(_ expected: Valid) throws {
        let configuration = try SMTPRelayConfiguration(url: expected.url)
        #expect(configuration.host == expected.host)
        #expect(configuration.port == expected.port)
        #expect(configuration.tlsMode == expected.tls)
        #expect(configuration.username == expected.username)
        #expect(configuration.password == expected.password)
        #expect(configuration.redactedDescription == expected.redacted)
        if let password = expected.password, password.count > 1 {
            #expect(!configuration.redactedDescription.contains(password))
        }
    }

    @Test(
        arguments: [
            "http://mx.example.com", "mx.example.com:25", "smtp://", "smtp://host:0", "smtp://host:99999", "smtp://host:abc",
            "smtp://host?tls=maybe", "smtp://host?tls=implicit", "smtps://host?tls=required", "smtps://host?tls=none",
            "smtp://u:p@mx.example.com?tls=none", "smtp://host/path", "smtp://host?foo=bar", "smtp://u:p%zz@host", "smtp://[::1",
        ]
    )
    func refuses(_ url: String) {
        #expect(throws: SMTPConfigurationError.self) { try SMTPRelayConfiguration(url: url) }
    }

    @Test("an error about the URL never contains the password")
    func noPasswordInErrors() {
        let error = #expect(throws: SMTPConfigurationError.self) { try SMTPRelayConfiguration(url: "smtp://u:hunter2@mx.example.com?tls=none") }
        #expect(error?.description.contains("hunter2") == false)
    }

    @Test(arguments: [("localhost", true), ("127.0.0.1", true), ("127.1.2.3", true), ("::1", true), ("10.0.0.1", false), ("mx.example", false)])
    func loopback(_ host: String, _ expected: Bool) {
        #expect(SMTPRelayConfiguration.isLoopback(host) == expected)
    }
}
