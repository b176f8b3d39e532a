import Foundation
import SMTP
import SMTPClient
import Testing

/// Where the interop servers are, from `.ci/interop/env` (written by
/// `.ci/interop/start-smtp-servers.sh`). Without them the tests are skipped, unless
/// `CI=true`: then a missing variable is a failure, so CI cannot pass by skipping.
enum Interop {
    static let environment = ProcessInfo.processInfo.environment
    static let isCI = environment["CI"] == "true"
    static let isConfigured = environment["PIGEON_INTEROP_POSTFIX"] != nil
    static let enabled = isCI || isConfigured

    static func variable(_ name: String) -> String? {
        guard let value = environment[name], !value.isEmpty else {
            Issue.record("\(name) is not set; run .ci/interop/start-smtp-servers.sh and source .ci/interop/env")
            return nil
        }
        return value
    }

    static let body = Array(
        """
        From: Pigeon <pigeon@example.com>\r
        To: someone@example.org\r
        Subject: Pigeon interop\r
        Message-ID: <interop@pigeon.test>\r
        \r
        Hello from the interop tests.\r
        .a line starting with a dot\r

        """.utf8
    )
}

@Suite("Interop: Postfix (Debian package)", .enabled(if: Interop.enabled), .serialized)
struct PostfixInteropTests {
    @Test("STARTTLS with a verified certificate, PIPELINING, per-recipient replies")
    func startTLS() async throws {
        guard let address = Interop.variable("PIGEON_INTEROP_POSTFIX"), let ca = Interop.variable("PIGEON_INTEROP_POSTFIX_CA") else { return }
        var configuration = try SMTPRelayConfiguration(url: "smtp://localhost:\(address.split(separator: ":").last ?? "")?tls=required", caFile: ca)
        configuration.timeouts = .all(.seconds(20))
        let client = SMTPClient(configuration: configuration)
        let message = OutgoingMessage(mailFrom: "pigeon@example.com", recipients: ["someone@example.org", "reject@example.net"], data: Interop.body)
        let result = try await client.send(message)
        #expect(result.recipients.map(\.reply.code) == [250, 550])
        #expect(result.recipients[1].reply.enhancedCode?.description == "5.1.1")
        #expect(result.transcript.contains("-: TLS established"))
        // PIPELINING: MAIL, both RCPTs and DATA went out before the first reply came back.
        let mail = try #require(result.transcript.firstIndex { $0.hasPrefix("C: MAIL FROM:") })
        #expect(result.transcript[mail + 1].hasPrefix("C: RCPT TO:"))
        #expect(result.transcript[mail + 3] == "C: DATA")
        for _ in 0..<3 {
            let again = try await client.send(message)
            #expect(again.recipients.map(\.reply.code) == [250, 550])
            #expect(again.transcript.first == "C: RSET")
        }
        await client.shutdown()
    }

    @Test("SMTPUTF8 and 8BITMIME are accepted")
    func smtputf8() async throws {
        guard let address = Interop.variable("PIGEON_INTEROP_POSTFIX"), let ca = Interop.variable("PIGEON_INTEROP_POSTFIX_CA") else { return }
        let port = address.split(separator: ":").last ?? ""
        let client = SMTPClient(configuration: try SMTPRelayConfiguration(url: "smtp://localhost:\(port)?tls=required", caFile: ca))
        let data = Array(
            "Subject: =?UTF-8?Q?gr=C3=BC=C3=9Fe?=\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße\r\n".utf8
        )
        let result = try await client.send(OutgoingMessage(mailFrom: "pigeon@example.com", recipients: ["jöran@例え.jp"], data: data))
        #expect(result.recipients.map(\.reply.code) == [250])
        #expect(result.transcript.contains { $0.hasPrefix("C: MAIL FROM:") && $0.contains("BODY=8BITMIME") && $0.contains("SMTPUTF8") })
        await client.shutdown()
    }

    @Test("an untrusted certificate under tls=required fails before MAIL, transient")
    func untrusted() async throws {
        guard let address = Interop.variable("PIGEON_INTEROP_POSTFIX") else { return }
        let port = address.split(separator: ":").last ?? ""
        // The system trust store does not know the interop CA.
        let client = SMTPClient(configuration: try SMTPRelayConfiguration(url: "smtp://localhost:\(port)?tls=required"))
        do {
            _ = try await client.send(OutgoingMessage(mailFrom: "pigeon@example.com", recipients: ["someone@example.org"], data: Interop.body))
            Issue.record("expected a TLS failure")
        } catch {
            #expect(error.kind == .tls)
            #expect(error.isTransient)
            #expect(!error.transcript.contains { $0.hasPrefix("C: MAIL") })
        }
        await client.shutdown()
    }
}

@Suite("Interop: aiosmtpd (PyPI)", .enabled(if: Interop.enabled), .serialized)
struct AiosmtpdInteropTests {
    static func configuration(_ variable: String, scheme: String, password: String? = nil, mechanism: String) throws -> SMTPRelayConfiguration? {
        guard let address = Interop.variable(variable), let ca = Interop.variable("PIGEON_INTEROP_AIOSMTPD_CA"),
            let user = Interop.variable("PIGEON_INTEROP_AIOSMTPD_USER"), let realPassword = Interop.variable("PIGEON_INTEROP_AIOSMTPD_PASSWORD")
        else { return nil }
        let port = address.split(separator: ":").last ?? ""
        let secret = password ?? realPassword
        var configuration = try SMTPRelayConfiguration(url: "\(scheme)://\(user):\(secret)@localhost:\(port)", caFile: ca)
        configuration.authMechanisms = [mechanism]
        configuration.timeouts = .all(.seconds(20))
        return configuration
    }

    @Test(
        "AUTH over implicit TLS and over STARTTLS, PLAIN, LOGIN and XOAUTH2",
        arguments: [
            ("PIGEON_INTEROP_AIOSMTPD_SMTPS", "smtps", "PLAIN"), ("PIGEON_INTEROP_AIOSMTPD_SMTPS", "smtps", "LOGIN"),
            ("PIGEON_INTEROP_AIOSMTPD_STARTTLS", "smtp", "PLAIN"), ("PIGEON_INTEROP_AIOSMTPD_STARTTLS", "smtp", "LOGIN"),
            ("PIGEON_INTEROP_AIOSMTPD_SMTPS", "smtps", "XOAUTH2"), ("PIGEON_INTEROP_AIOSMTPD_STARTTLS", "smtp", "XOAUTH2"),
        ]
    )
    func authenticated(_ variable: String, _ scheme: String, _ mechanism: String) async throws {
        guard let configuration = try Self.configuration(variable, scheme: scheme, mechanism: mechanism) else { return }
        let client = SMTPClient(configuration: configuration)
        let message = OutgoingMessage(mailFrom: "pigeon@example.com", recipients: ["someone@example.org", "reject@example.net"], data: Interop.body)
        let result = try await client.send(message)
        #expect(result.recipients.map(\.reply.code) == [250, 550])
        #expect(result.transcript.contains { $0.hasPrefix("C: AUTH \(mechanism)") })
        #expect(result.transcript.contains { $0.hasPrefix("S: 235") })
        #expect(!result.transcript.joined().contains(configuration.password ?? "-"))
        // The secret travels base64-encoded: every AUTH payload line is redacted.
        let authLines = result.transcript.filter { $0.hasPrefix("C: AUTH") }
        #expect(authLines.count == 1)
        #expect(authLines.allSatisfy { $0 == "C: AUTH LOGIN" || $0 == "C: AUTH \(mechanism) <redacted>" }, "\(authLines)")
        #expect(result.transcript.filter { $0 == "C: <redacted>" }.count == (mechanism == "LOGIN" ? 2 : 0))
        await client.shutdown()
    }

    @Test(
        "a refused password is a permanent failure with its code",
        arguments: ["PIGEON_INTEROP_AIOSMTPD_SMTPS", "PIGEON_INTEROP_AIOSMTPD_STARTTLS"]
    )
    func refusedPassword(_ variable: String) async throws {
        let scheme = variable.hasSuffix("SMTPS") ? "smtps" : "smtp"
        guard let configuration = try Self.configuration(variable, scheme: scheme, password: "wrong-password", mechanism: "PLAIN") else { return }
        let client = SMTPClient(configuration: configuration)
        do {
            _ = try await client.send(OutgoingMessage(mailFrom: "pigeon@example.com", recipients: ["someone@example.org"], data: Interop.body))
            Issue.record("expected an authentication failure")
        } catch {
            #expect(error.kind == .authentication)
            #expect(!error.isTransient)
            #expect(error.reply?.code == 535)
            #expect(!error.description.contains("wrong-password"))
        }
        await client.shutdown()
    }

    @Test("a refused XOAUTH2 token (334 error challenge, then 535) is a transient failure naming the server's error")
    func refusedToken() async throws {
        guard
            let configuration = try Self.configuration(
                "PIGEON_INTEROP_AIOSMTPD_STARTTLS",
                scheme: "smtp",
                password: "expired-token",
                mechanism: "XOAUTH2"
            )
        else { return }
        let client = SMTPClient(configuration: configuration)
        do {
            _ = try await client.send(OutgoingMessage(mailFrom: "pigeon@example.com", recipients: ["someone@example.org"], data: Interop.body))
            Issue.record("expected an authentication failure")
        } catch {
            #expect(error.kind == .authentication)
            #expect(error.isTransient)
            #expect(error.reply?.code == 535)
            #expect(error.description.contains(#""status": "401""#))
            #expect(!error.description.contains("expired-token"))
        }
        await client.shutdown()
    }
}
