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
        Valid(
            url: "smtp://me%40gmail.com:ya29.token@smtp.gmail.com:587?auth=xoauth2",
            host: "smtp.gmail.com",
            port: 587,
            tls: .required,
            username: "me@gmail.com",
            password: "ya29.token",
            redacted: "smtp://me%40gmail.com:***@smtp.gmail.com:587?tls=required&auth=xoauth2"
        ),
        Valid(
            url: "smtps://me@smtp.office365.com?auth=XOAUTH2&token_file=%2Frun%2Fsecrets%2Fsmtp%20token",
            host: "smtp.office365.com",
            port: 465,
            tls: .implicit,
            username: "me",
            redacted: "smtps://me@smtp.office365.com:465?auth=xoauth2&token_file=%2Frun%2Fsecrets%2Fsmtp%20token"
        ),
        Valid(
            url: "smtp://u:p@mx.example:587?auth=login",
            host: "mx.example",
            port: 587,
            tls: .required,
            username: "u",
            password: "p",
            redacted: "smtp://u:***@mx.example:587?tls=required&auth=login"
        ),
    ]

    @Test("auth= picks the one mechanism used; token_file= is kept as a decoded path")
    func authParameters() throws {
        #expect(try SMTPRelayConfiguration(url: "smtp://u:p@mx.example").authMechanisms == ["PLAIN", "LOGIN"])
        #expect(try SMTPRelayConfiguration(url: "smtp://u:p@mx.example?auth=login").authMechanisms == ["LOGIN"])
        let oauth = try SMTPRelayConfiguration(url: "smtp://u@mx.example?auth=xoauth2&token_file=%2Fetc%2Ftoken")
        #expect(oauth.authMechanisms == ["XOAUTH2"])
        #expect(oauth.tokenFile == "/etc/token")
        #expect(oauth.password == nil)
    }

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
            "smtp://host?tls", "smtp://u:p@host?auth=cram-md5", "smtp://host?auth=xoauth2", "smtp://u@host?auth=xoauth2",
            "smtp://u:t@host?auth=xoauth2&token_file=%2Ft", "smtp://u:p@host?token_file=%2Ft", "smtp://u@host?auth=xoauth2&token_file=",
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
