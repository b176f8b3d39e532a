import Foundation
import SMTP
import SMTPClient
import SMTPTestSupport
import Testing

@Suite("SMTPClient.probe (pigeon check)")
struct ProbeTests {
    @Test("a plain-text relay: capabilities listed, QUIT after EHLO, no MAIL")
    func plainText() async throws {
        let server = TestSMTPServer()
        try await server.start()
        var configuration = try SMTPRelayConfiguration(url: "smtp://127.0.0.1:\(server.port)?tls=none")
        configuration.timeouts = .all(.seconds(5))
        let report = try await SMTPClient.probe(configuration: configuration)
        #expect(report.tlsVersion == nil)
        #expect(report.certificate == nil)
        #expect(report.capabilities.contains("PIPELINING"))
        #expect(report.capabilities.contains("SIZE 10485760"))
        #expect(report.authenticated == nil)
        #expect(report.transcript.contains("C: QUIT"))
        #expect(!report.transcript.contains { $0.hasPrefix("C: MAIL") })
        #expect(server.messages.isEmpty)
    }

    @Test("tls=required and no STARTTLS offered: a .tls error, before AUTH")
    func noStartTLS() async throws {
        let server = TestSMTPServer(configuration: .init(authCredentials: .init(user: "u", password: "p")))
        try await server.start()
        var configuration = try SMTPRelayConfiguration(url: "smtp://u:p@127.0.0.1:\(server.port)?tls=required")
        configuration.timeouts = .all(.seconds(5))
        do {
            _ = try await SMTPClient.probe(configuration: configuration)
            Issue.record("expected a TLS failure")
        } catch {
            #expect(error.kind == .tls)
            #expect(error.description.contains("STARTTLS"))
            #expect(!error.transcript.contains { $0.hasPrefix("C: AUTH") })
        }
    }

    @Test("STARTTLS with a verified certificate and AUTH: TLS version, certificate and AUTH reported")
    func startTLSAndAuth() async throws {
        let identity = try TestTLSIdentity.generate()
        let server = TestSMTPServer(configuration: .init(tls: identity, authCredentials: .init(user: "u", password: "secret-pw")))
        try await server.start()
        var configuration = try SMTPRelayConfiguration(url: "smtp://u:secret-pw@localhost:\(server.port)?tls=required", caFile: identity.caPEMPath)
        configuration.timeouts = .all(.seconds(5))
        let report = try await SMTPClient.probe(configuration: configuration)
        #expect(report.tlsVersion?.hasPrefix("TLS 1.") == true)
        let certificate = try #require(report.certificate)
        #expect(certificate.verified)
        #expect(certificate.notValidAfter > Date())
        #expect(!certificate.subject.isEmpty && !certificate.issuer.isEmpty)
        #expect(report.authenticated == true)
        #expect(report.capabilities.contains { $0.hasPrefix("AUTH") })
        #expect(!report.transcript.joined().contains("secret-pw"))
        #expect(server.messages.isEmpty)
    }

    @Test("a refused password: an .authentication error with the reply")
    func wrongPassword() async throws {
        let identity = try TestTLSIdentity.generate()
        let server = TestSMTPServer(configuration: .init(tls: identity, authCredentials: .init(user: "u", password: "right")))
        try await server.start()
        var configuration = try SMTPRelayConfiguration(url: "smtp://u:wrong@localhost:\(server.port)?tls=required", caFile: identity.caPEMPath)
        configuration.timeouts = .all(.seconds(5))
        do {
            _ = try await SMTPClient.probe(configuration: configuration)
            Issue.record("expected an authentication failure")
        } catch {
            #expect(error.kind == .authentication)
            #expect(error.reply?.code == 535)
        }
    }
}
