import SMTP
import SMTPClient
import SMTPTestSupport
import Synchronization
import Testing

/// A server script: how to answer each command.
struct Script: Sendable {
    var respond: @Sendable (SMTPCommandContext) -> ScriptedResponse

    init(_ respond: @escaping @Sendable (SMTPCommandContext) -> ScriptedResponse) {
        self.respond = respond
    }

    /// `response` to every command with `verb`, the standard reply to the rest.
    static func on(_ verb: String, _ response: ScriptedResponse) -> Script {
        Script { $0.verb == verb ? response : .standard }
    }
}

/// Starts a server, runs `body` with a client for it, and stops both. `url` has
/// `PORT` where the server's port goes.
func withServer<T>(
    _ configuration: TestSMTPServer.Configuration = .init(),
    url: String = "smtp://127.0.0.1:PORT?tls=none",
    caFile: String? = nil,
    timeouts: SMTPTimeouts = .all(.seconds(5)),
    maxConnections: Int = 8,
    handler: Script? = nil,
    _ body: (TestSMTPServer, SMTPClient) async throws -> T
) async throws -> T {
    let server = TestSMTPServer(configuration: configuration)
    try await server.start()
    if let handler { server.setHandler(handler.respond) }
    let address = url.split(separator: "PORT", omittingEmptySubsequences: false).joined(separator: String(server.port))
    var relay = try SMTPRelayConfiguration(url: address, caFile: caFile)
    relay.timeouts = timeouts
    relay.maxConnections = maxConnections
    let client = SMTPClient(configuration: relay)
    do {
        let result = try await body(server, client)
        await client.shutdown()
        try await server.stop()
        return result
    } catch {
        await client.shutdown()
        try await server.stop()
        throw error
    }
}

let sampleBody = Array("Subject: test\r\n\r\nHello\r\n".utf8)
let sampleMessage = OutgoingMessage(mailFrom: "a@example.com", recipients: ["b@example.com", "c@example.com"], data: sampleBody)

/// Sends and returns the error it must throw.
func expectFailure(_ client: SMTPClient, _ message: OutgoingMessage = sampleMessage) async -> SMTPClientError? {
    do {
        let result = try await client.send(message)
        Issue.record("expected an error, got \(result.recipients.map(\.reply.code))")
        return nil
    } catch {
        return error
    }
}

@Suite("SMTPClient: every fault ends the attempt with a transient error, never a hang or a crash")
struct SMTPClientFaultTests {
    static let verbs = ["CONNECT", "EHLO", "MAIL", "RCPT", "DATA", "."]

    @Test("421 at any point is transient .serviceUnavailable with its reply", arguments: verbs)
    func serviceUnavailable(_ verb: String) async throws {
        try await withServer(handler: .on(verb, .reply("421 4.3.2 Shutting down"))) { server, client in
            let error = await expectFailure(client)
            #expect(error?.kind == .serviceUnavailable)
            #expect(error?.isTransient == true)
            #expect(error?.reply?.code == 421)
            #expect(server.messages.isEmpty)
        }
    }

    @Test("a hang in any phase ends with a transient timeout", arguments: verbs)
    func hang(_ verb: String) async throws {
        try await withServer(timeouts: .all(.milliseconds(300)), handler: .on(verb, .hang)) { _, client in
            let start = ContinuousClock.now
            let error = await expectFailure(client)
            #expect(error?.kind == .timeout)
            #expect(error?.isTransient == true)
            #expect(ContinuousClock.now - start < .seconds(3))
        }
    }

    @Test("a reset in any phase is transient", arguments: verbs)
    func disconnect(_ verb: String) async throws {
        try await withServer(handler: .on(verb, .disconnect)) { _, client in
            let error = await expectFailure(client)
            #expect(error?.kind == .closed)
            #expect(error?.isTransient == true)
        }
    }

    @Test("a 100 KB reply line is a transient protocol violation", arguments: ["CONNECT", "EHLO", "RCPT"])
    func hugeLine(_ verb: String) async throws {
        let huge = Array("250 ".utf8) + Array(repeating: UInt8(ascii: "x"), count: 100_000) + [13, 10]
        try await withServer(handler: .on(verb, .raw(huge))) { _, client in
            let error = await expectFailure(client)
            #expect(error?.kind == .protocolViolation)
            #expect(error?.isTransient == true)
        }
    }

    @Test(
        "garbage is a transient protocol violation",
        arguments: [
            Array("HTTP/1.1 400 Bad Request\r\n".utf8), [0, 1, 2, 255, 13, 10], Array("250-ok\r\n550 mixed codes\r\n".utf8),
            Array(repeating: UInt8(ascii: "2"), count: 5000),
        ]
    )
    func garbage(_ bytes: [UInt8]) async throws {
        try await withServer(handler: .on("MAIL", .raw(bytes))) { _, client in
            let error = await expectFailure(client)
            #expect(error?.kind == .protocolViolation || error?.kind == .timeout)
            #expect(error?.isTransient == true)
        }
    }

    @Test("421 to STARTTLS, to AUTH, and to EHLO after TLS is transient too", arguments: ["STARTTLS", "AUTH", "EHLO"])
    func serviceUnavailableWithTLS(_ verb: String) async throws {
        let identity = try TestTLSIdentity.generate()
        // EHLO: the first one is answered normally, the one after STARTTLS with 421.
        let script = Script { context in
            guard context.verb == verb, verb != "EHLO" || context.commandIndex == 2 else { return .standard }
            return .reply("421 4.3.2 Shutting down")
        }
        try await withServer(
            .init(tls: identity, authCredentials: .init(user: "u", password: "p")),
            url: "smtp://u:p@localhost:PORT",
            caFile: identity.caPEMPath,
            handler: script
        ) { server, client in
            let error = await expectFailure(client)
            #expect(error?.kind == .serviceUnavailable)
            #expect(error?.isTransient == true)
            #expect(!server.receivedCommands.contains { $0.line.hasPrefix("MAIL") })
        }
    }

    @Test("a slow but live server is waited for")
    func slow() async throws {
        try await withServer(handler: .on("RCPT", .delayed(.milliseconds(100), .standard))) { server, client in
            let result = try await client.send(sampleMessage)
            #expect(result.recipients.map(\.reply.code) == [250, 250])
        }
    }

    @Test("the transcript of a failure names the reply and redacts nothing it should not show")
    func failureTranscript() async throws {
        try await withServer(handler: .on("MAIL", .reply("421 4.7.0 Too many errors"))) { _, client in
            let error = await expectFailure(client)
            #expect(error?.transcript.contains("C: MAIL FROM:<a@example.com> SIZE=\(sampleBody.count)") == true)
            #expect(error?.transcript.contains("S: 421 4.7.0 Too many errors") == true)
            #expect(error?.description.contains("421") == true)
        }
    }
}

@Suite("SMTPClient: TLS")
struct SMTPClientTLSTests {
    @Test("plaintext pipelined after the 220 to STARTTLS is discarded; EHLO is sent again over TLS")
    func earlyPlaintext() async throws {
        let identity = try TestTLSIdentity.generate()
        let injected = Array("220 2.0.0 Ready\r\n250-injected\r\n250 AUTH PLAIN\r\n".utf8)
        try await withServer(
            .init(tls: identity),
            url: "smtp://localhost:PORT?tls=required",
            caFile: identity.caPEMPath,
            handler: .on("STARTTLS", .raw(injected))
        ) { server, client in
            let result = try await client.send(sampleMessage)
            #expect(result.recipients.map(\.reply.code) == [250, 250])
            #expect(result.transcript.contains { $0.contains("discarded") })
            let ehlos = server.receivedCommands.filter { $0.line.hasPrefix("EHLO") }
            #expect(ehlos.map(\.wasEncrypted) == [false, true])
            #expect(server.messages.first?.wasEncrypted == true)
        }
    }

    @Test("implicit TLS (smtps) with a certificate generated in the test, AUTH LOGIN")
    func implicitTLS() async throws {
        let identity = try TestTLSIdentity.generate()
        try await withServer(
            .init(tls: identity, implicitTLS: true, authCredentials: .init(user: "u", password: "secret"), authMechanisms: ["LOGIN"]),
            url: "smtps://u:secret@localhost:PORT",
            caFile: identity.caPEMPath
        ) { server, client in
            let result = try await client.send(sampleMessage)
            #expect(result.recipients.map(\.reply.code) == [250, 250])
            #expect(result.transcript.contains("C: AUTH LOGIN"))
            #expect(result.transcript.filter { $0 == "C: <redacted>" }.count == 2)
            #expect(!result.transcript.joined().contains("c2VjcmV0"))
            #expect(server.receivedCommands.allSatisfy { $0.wasEncrypted })
        }
    }

    @Test("an IP address host is verified against the certificate's IP SAN")
    func ipAddress() async throws {
        let identity = try TestTLSIdentity.generate()
        try await withServer(.init(tls: identity, implicitTLS: true), url: "smtps://127.0.0.1:PORT", caFile: identity.caPEMPath) { _, client in
            let result = try await client.send(sampleMessage)
            #expect(result.recipients.map(\.reply.code) == [250, 250])
        }
    }

    @Test("an untrusted certificate fails the handshake: transient .tls, no AUTH, no MAIL, no plaintext fallback")
    func untrusted() async throws {
        let identity = try TestTLSIdentity.generate()
        let other = try TestTLSIdentity.generate()
        try await withServer(
            .init(tls: identity, authCredentials: .init(user: "u", password: "p")),
            url: "smtp://u:p@localhost:PORT",
            caFile: other.caPEMPath
        ) { server, client in
            let error = await expectFailure(client)
            #expect(error?.kind == .tls)
            #expect(error?.isTransient == true)
            #expect(!server.receivedCommands.contains { $0.line.hasPrefix("AUTH") || $0.line.hasPrefix("MAIL") })
            #expect(server.receivedCommands.filter { $0.line.hasPrefix("EHLO") }.count == 1)
        }
    }

    @Test("a certificate for another name fails")
    func wrongName() async throws {
        let identity = try TestTLSIdentity.generate(names: ["mail.example.org"])
        try await withServer(.init(tls: identity, implicitTLS: true), url: "smtps://localhost:PORT", caFile: identity.caPEMPath) { _, client in
            let error = await expectFailure(client)
            #expect(error?.kind == .tls)
        }
    }

    @Test("opportunistic without credentials encrypts without verifying (RFC 7435)")
    func opportunistic() async throws {
        let identity = try TestTLSIdentity.generate()
        try await withServer(.init(tls: identity), url: "smtp://localhost:PORT") { server, client in
            let result = try await client.send(sampleMessage)
            #expect(result.recipients.map(\.reply.code) == [250, 250])
            #expect(server.messages.first?.wasEncrypted == true)
        }
    }

    @Test("a refused password is a permanent .authentication error with its code")
    func refusedPassword() async throws {
        let identity = try TestTLSIdentity.generate()
        try await withServer(
            .init(tls: identity, authCredentials: .init(user: "u", password: "right")),
            url: "smtp://u:wrong@localhost:PORT",
            caFile: identity.caPEMPath
        ) { server, client in
            let error = await expectFailure(client)
            #expect(error?.kind == .authentication)
            #expect(error?.isTransient == false)
            #expect(error?.reply?.code == 535)
            #expect(error?.description.contains("wrong") == false)
            #expect(server.messages.isEmpty)
        }
    }

    @Test("tls=none with AUTH to loopback is allowed")
    func plaintextLoopbackAuth() async throws {
        try await withServer(.init(authCredentials: .init(user: "u", password: "p")), url: "smtp://u:p@127.0.0.1:PORT?tls=none") {
            server,
            client in
            let result = try await client.send(sampleMessage)
            #expect(result.recipients.map(\.reply.code) == [250, 250])
        }
    }

    @Test("a missing CA file is a transient .tls error naming the setting")
    func missingCAFile() async throws {
        try await withServer(url: "smtp://127.0.0.1:PORT?tls=required", caFile: "/nonexistent/ca.pem") { _, client in
            let error = await expectFailure(client)
            #expect(error?.kind == .tls)
            #expect(error?.description.contains("PIGEON_SMTP_CA_FILE") == true)
        }
    }
}

/// Counts RCPTs per transaction, for the 452 test.
final class RecipientLimit: Sendable {
    let count = Mutex(0)
    let limit: Int
    init(limit: Int) { self.limit = limit }

    func respond(_ context: SMTPCommandContext) -> ScriptedResponse {
        switch context.verb {
        case "MAIL":
            count.withLock { $0 = 0 }
            return .standard
        case "RCPT":
            let seen = count.withLock { value -> Int in
                value += 1
                return value
            }
            return seen > limit ? .reply("452 4.5.3 Too many recipients") : .standard
        default:
            return .standard
        }
    }
}

@Suite("SMTPClient: extensions and transactions")
struct SMTPClientExtensionTests {
    @Test("452 too many recipients continues in new transactions on the same connection")
    func tooManyRecipients() async throws {
        let limit = RecipientLimit(limit: 2)
        try await withServer(handler: Script(limit.respond)) { server, client in
            let recipients = (1...5).map { "r\($0)@example.com" }
            let result = try await client.send(OutgoingMessage(mailFrom: "a@example.com", recipients: recipients, data: sampleBody))
            #expect(result.recipients.map(\.recipient) == recipients)
            #expect(result.recipients.map(\.reply.code) == [250, 250, 250, 250, 250])
            let messages = server.messages
            #expect(messages.map(\.recipients) == [["r1@example.com", "r2@example.com"], ["r3@example.com", "r4@example.com"], ["r5@example.com"]])
            #expect(server.connectionCount == 1)
        }
    }

    @Test("HELO fallback when EHLO is refused; no pipelining then")
    func heloFallback() async throws {
        try await withServer(handler: .on("EHLO", .reply("502 5.5.2 Error: command not recognized"))) { server, client in
            let result = try await client.send(sampleMessage)
            #expect(result.recipients.map(\.reply.code) == [250, 250])
            #expect(server.receivedCommands.contains { $0.line == "HELO localhost" })
            #expect(server.messages.first?.mailParameters == [])
        }
    }

    @Test("SIZE is declared, and a message over the limit is refused before MAIL; the connection stays usable")
    func size() async throws {
        try await withServer(.init(extensions: ["PIPELINING", "SIZE 1000"])) { server, client in
            let big = OutgoingMessage(
                mailFrom: "a@example.com",
                recipients: ["b@example.com"],
                data: Array(repeating: UInt8(ascii: "x"), count: 2000)
            )
            let error = await expectFailure(client, big)
            #expect(error?.kind == .messageTooLarge)
            #expect(error?.isTransient == false)
            #expect(!server.receivedCommands.contains { $0.line.hasPrefix("MAIL") })
            let result = try await client.send(sampleMessage)
            #expect(result.recipients.map(\.reply.code) == [250, 250])
            #expect(server.messages.first?.mailParameters == ["SIZE=\(sampleBody.count)"])
            #expect(server.connectionCount == 1)
        }
    }

    @Test("a non-ASCII address without SMTPUTF8 offered is a permanent .smtputf8Unsupported")
    func smtputf8Unsupported() async throws {
        try await withServer { server, client in
            let error = await expectFailure(client, OutgoingMessage(mailFrom: "a@example.com", recipients: ["jöran@example.com"], data: sampleBody))
            #expect(error?.kind == .smtputf8Unsupported)
            #expect(error?.isTransient == false)
        }
    }

    @Test("SMTPUTF8 and BODY=8BITMIME are declared when the message needs them")
    func smtputf8() async throws {
        try await withServer(.init(extensions: ["PIPELINING", "8BITMIME", "SMTPUTF8"])) { server, client in
            let message = OutgoingMessage(mailFrom: "a@example.com", recipients: ["jöran@example.com"], data: Array("Subject: ü\r\n\r\nü\r\n".utf8))
            let result = try await client.send(message)
            #expect(result.recipients.map(\.reply.code) == [250])
            #expect(server.messages.first?.mailParameters == ["BODY=8BITMIME", "SMTPUTF8"])
            #expect(server.messages.first?.recipients == ["jöran@example.com"])
        }
    }

    @Test("without PIPELINING, commands go one at a time and still work")
    func noPipelining() async throws {
        try await withServer(.init(extensions: [])) { server, client in
            let result = try await client.send(sampleMessage)
            #expect(result.recipients.map(\.reply.code) == [250, 250])
        }
    }

    @Test("MAIL refused: every recipient gets MAIL's reply, and the connection is reused after RSET")
    func mailRefused() async throws {
        let script = Script { $0.verb == "MAIL" && $0.commandIndex == 1 ? .reply("553 5.7.1 Sender rejected") : .standard }
        try await withServer(handler: script) { server, client in
            let result = try await client.send(sampleMessage)
            #expect(result.recipients.map(\.reply.code) == [553, 553])
            let second = try await client.send(sampleMessage)
            #expect(second.recipients.map(\.reply.code) == [250, 250])
            #expect(second.transcript.first == "C: RSET")
            #expect(server.connectionCount == 1)
        }
    }

    @Test("bare LF in the data never reaches the wire; leading dots survive")
    func lineEnds() async throws {
        try await withServer { server, client in
            let message = OutgoingMessage(mailFrom: "a@example.com", recipients: ["b@example.com"], data: Array("Subject: x\n\n.\n..two\rend".utf8))
            _ = try await client.send(message)
            #expect(server.messages.first?.hadBareLineFeed == false)
            #expect(server.messages.first?.text == "Subject: x\r\n\r\n.\r\n..two\r\nend")
        }
    }
}

@Suite("SMTPClient: connection reuse and the pool")
struct SMTPClientPoolTests {
    @Test("several messages share one connection, RSET between them")
    func reuse() async throws {
        try await withServer { server, client in
            for _ in 0..<3 { _ = try await client.send(sampleMessage) }
            #expect(server.connectionCount == 1)
            #expect(server.receivedCommands.filter { $0.line == "RSET" }.count == 2)
            #expect(server.messages.count == 3)
        }
    }

    @Test("at most maxConnections are open; callers beyond that wait their turn")
    func bound() async throws {
        try await withServer(maxConnections: 2, handler: .on(".", .delayed(.milliseconds(20), .standard))) { server, client in
            try await withThrowingTaskGroup(of: SMTPSendResult.self) { group in
                for _ in 0..<10 { group.addTask { try await client.send(sampleMessage) } }
                for try await result in group { #expect(result.recipients.map(\.reply.code) == [250, 250]) }
            }
            #expect(server.messages.count == 10)
            #expect(server.connectionCount <= 2)
        }
    }

    @Test("an idle connection is closed with QUIT after the idle timeout")
    func idle() async throws {
        var timeouts = SMTPTimeouts.all(.seconds(5))
        timeouts.idle = .milliseconds(200)
        try await withServer(timeouts: timeouts) { server, client in
            _ = try await client.send(sampleMessage)
            #expect(server.openConnectionCount == 1)
            try await Task.sleep(for: .milliseconds(800))
            #expect(server.receivedCommands.last?.line == "QUIT")
            #expect(server.openConnectionCount == 0)
        }
    }

    @Test("a pooled connection the server dropped is replaced transparently")
    func stale() async throws {
        try await withServer { server, client in
            _ = try await client.send(sampleMessage)
            await server.dropConnections()
            try await Task.sleep(for: .milliseconds(50))
            let result = try await client.send(sampleMessage)
            #expect(result.recipients.map(\.reply.code) == [250, 250])
            #expect(server.connectionCount == 2)
        }
    }

    @Test("shutdown sends QUIT on idle connections, is safe twice, and later sends fail")
    func shutdown() async throws {
        try await withServer { server, client in
            _ = try await client.send(sampleMessage)
            await client.shutdown()
            await client.shutdown()
            try await Task.sleep(for: .milliseconds(100))
            #expect(server.receivedCommands.last?.line == "QUIT")
            let error = await expectFailure(client)
            #expect(error?.kind == .closed)
        }
    }
}
