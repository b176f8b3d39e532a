import Foundation
import NIOCore
import NIOPosix
import SMTP
import SMTPClient
import SMTPTestSupport
import Synchronization
import Testing

@Suite("SMTPClient against the in-process server")
struct SMTPClientBasicTests {
    static let body = Array("From: a@example.com\r\nTo: b@example.com\r\nSubject: Hi\r\n\r\nHello\r\n.leading dot\r\n".utf8)

    @Test("a message arrives with its envelope, dot-stuffing undone")
    func plainDelivery() async throws {
        let server = TestSMTPServer()
        try await server.start()
        var configuration = try SMTPRelayConfiguration(url: "smtp://127.0.0.1:\(server.port)?tls=none")
        configuration.timeouts = .all(.seconds(5))
        let client = SMTPClient(configuration: configuration)
        let result = try await client.send(
            OutgoingMessage(mailFrom: "a@example.com", recipients: ["b@example.com", "c@example.com"], data: Self.body)
        )
        #expect(result.recipients.map(\.reply.code) == [250, 250])
        #expect(result.nextHop == "127.0.0.1:\(server.port)")
        let messages = try await server.waitForMessages(count: 1, timeout: .seconds(5))
        #expect(messages[0].mailFrom == "a@example.com")
        #expect(messages[0].recipients == ["b@example.com", "c@example.com"])
        #expect(messages[0].text == "From: a@example.com\r\nTo: b@example.com\r\nSubject: Hi\r\n\r\nHello\r\n.leading dot")
        #expect(!messages[0].hadBareLineFeed)
        await client.shutdown()
        try await server.stop()
    }

    @Test("a caller on one of the client's event loops is kept to a connection of that loop")
    func eventLoopAffinity() async throws {
        let server = TestSMTPServer()
        try await server.start()
        // While `slow`, MAIL is answered late, so the first two sends overlap and open two connections.
        let slow = Atomic<Bool>(true)
        server.setHandler { context in
            context.verb == "MAIL" && slow.load(ordering: .relaxed) ? .delayed(.milliseconds(200), .standard) : .standard
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        var configuration = try SMTPRelayConfiguration(url: "smtp://127.0.0.1:\(server.port)?tls=none")
        configuration.maxConnections = 2
        configuration.timeouts = .all(.seconds(5))
        let client = SMTPClient(configuration: configuration, eventLoopGroup: group)
        let executors = client.taskExecutors
        #expect(executors.count == 2)
        func message(_ loop: Int) -> OutgoingMessage {
            OutgoingMessage(mailFrom: "loop\(loop)@example.com", recipients: ["b@example.com"], data: Self.body)
        }
        try await withThrowingTaskGroup(of: Bool.self) { tasks in
            for (index, executor) in executors.enumerated() {
                tasks.addTask(executorPreference: executor) {
                    _ = try await client.send(message(index))
                    return executor.eventLoop.inEventLoop
                }
            }
            for try await ranOnItsLoop in tasks { #expect(ranOnItsLoop) }
        }
        slow.store(false, ordering: .relaxed)
        for _ in 0..<10 {
            for (index, executor) in executors.enumerated() {
                try await withTaskExecutorPreference(executor) { _ = try await client.send(message(index)) }
            }
        }
        let messages = try await server.waitForMessages(count: 22, timeout: .seconds(5))
        let connectionsByLoop = Dictionary(grouping: messages, by: \.mailFrom).mapValues { Set($0.map(\.connectionIndex)) }
        #expect(server.connectionCount == 2)
        #expect(connectionsByLoop["loop0@example.com"]?.count == 1)
        #expect(connectionsByLoop["loop1@example.com"]?.count == 1)
        #expect(connectionsByLoop["loop0@example.com"] != connectionsByLoop["loop1@example.com"])
        await client.shutdown()
        try await server.stop()
        try await group.shutdownGracefully()
    }

    @Test("XOAUTH2 over STARTTLS: the token is read from token_file at each new connection, a refused one is transient")
    func xoauth2TokenFile() async throws {
        let identity = try TestTLSIdentity.generate()
        let server = TestSMTPServer(
            configuration: .init(
                tls: identity,
                authCredentials: .init(user: "me@example.com", password: "ya29.fresh-token"),
                authMechanisms: ["PLAIN", "XOAUTH2"]
            )
        )
        try await server.start()
        let tokenFile = NSTemporaryDirectory() + "pigeon-token-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: tokenFile) }
        try "ya29.expired-token\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let url = "smtp://me%40example.com@localhost:\(server.port)?auth=xoauth2&token_file=\(tokenFile.replacingOccurrences(of: "/", with: "%2F"))"
        let client = SMTPClient(configuration: try SMTPRelayConfiguration(url: url, caFile: identity.caPEMPath))
        let message = OutgoingMessage(mailFrom: "me@example.com", recipients: ["b@example.com"], data: Self.body)

        let refused = await #expect(throws: SMTPClientError.self) { try await client.send(message) }
        #expect(refused?.kind == .authentication)
        #expect(refused?.isTransient == true)
        #expect(refused?.description.contains("XOAUTH2 token refused with 535") == true)
        #expect(refused?.description.contains(#""status":"401""#) == true)
        #expect(refused?.transcript.contains("C: AUTH XOAUTH2 <redacted>") == true)
        // Neither the token nor the base64 SASL message carrying it is in the transcript.
        let payload = SMTPBase64.encode(Array("user=me@example.com\u{1}auth=Bearer ya29.expired-token\u{1}\u{1}".utf8))
        #expect(refused?.transcript.joined().contains("ya29") == false)
        #expect(refused?.transcript.joined().contains(payload) == false)

        // Whatever refreshes the token rewrites the file; the next connection reads it.
        try "ya29.fresh-token\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let result = try await client.send(message)
        #expect(result.recipients.map(\.reply.code) == [250])
        let auths = server.receivedCommands.filter { $0.line.hasPrefix("AUTH XOAUTH2") }
        #expect(auths.count == 2)
        #expect(auths.allSatisfy { $0.wasEncrypted })
        #expect(Set(auths.map(\.connectionIndex)).count == 2)
        #expect(try await server.waitForMessages(count: 1, timeout: .seconds(5)).count == 1)

        // A file that is gone is a transient authentication error naming the file.
        try FileManager.default.removeItem(atPath: tokenFile)
        await client.shutdown()
        let fresh = SMTPClient(configuration: try SMTPRelayConfiguration(url: url, caFile: identity.caPEMPath))
        let missing = await #expect(throws: SMTPClientError.self) { try await fresh.send(message) }
        #expect(missing?.kind == .authentication)
        #expect(missing?.isTransient == true)
        #expect(missing?.description.contains(tokenFile) == true)
        await fresh.shutdown()
        try await server.stop()
    }

    @Test("STARTTLS with a generated certificate, then AUTH PLAIN")
    func startTLSAndAuth() async throws {
        let identity = try TestTLSIdentity.generate()
        let server = TestSMTPServer(
            configuration: .init(tls: identity, authCredentials: .init(user: "user", password: "p@ss word"))
        )
        try await server.start()
        let client = SMTPClient(
            configuration: try SMTPRelayConfiguration(url: "smtp://user:p%40ss%20word@localhost:\(server.port)", caFile: identity.caPEMPath)
        )
        let result = try await client.send(OutgoingMessage(mailFrom: "a@example.com", recipients: ["b@example.com"], data: Self.body))
        #expect(result.recipients.map(\.reply.code) == [250])
        #expect(result.transcript.contains("C: AUTH PLAIN <redacted>"))
        #expect(!result.transcript.joined().contains("cEBzcyB3b3Jk"))
        let messages = try await server.waitForMessages(count: 1, timeout: .seconds(5))
        #expect(messages[0].wasEncrypted)
        let auth = server.receivedCommands.first { $0.line.hasPrefix("AUTH") }
        #expect(auth?.wasEncrypted == true)
        await client.shutdown()
        try await server.stop()
    }

    @Test("per-recipient replies: 550 for one recipient, 250 for the other")
    func perRecipient() async throws {
        let server = TestSMTPServer()
        try await server.start()
        server.setHandler { context in
            context.verb == "RCPT" && context.argument.contains("bad@") ? .reply("550 5.1.1 No such user") : .standard
        }
        let client = SMTPClient(configuration: try SMTPRelayConfiguration(url: "smtp://127.0.0.1:\(server.port)?tls=none"))
        let result = try await client.send(
            OutgoingMessage(mailFrom: "a@example.com", recipients: ["bad@example.com", "good@example.com"], data: Self.body)
        )
        #expect(result.recipients.map(\.reply.code) == [550, 250])
        #expect(result.recipients[0].reply.enhancedCode?.description == "5.1.1")
        #expect(result.recipients[0].reply.isPermanentNegative)
        await client.shutdown()
        try await server.stop()
    }

    @Test("tls=required and no STARTTLS offered: transient .tls error before MAIL")
    func requiredTLSNotOffered() async throws {
        let server = TestSMTPServer()
        try await server.start()
        let client = SMTPClient(configuration: try SMTPRelayConfiguration(url: "smtp://127.0.0.1:\(server.port)?tls=required"))
        let error = await #expect(throws: SMTPClientError.self) {
            try await client.send(OutgoingMessage(mailFrom: "a@example.com", recipients: ["b@example.com"], data: Self.body))
        }
        #expect(error?.kind == .tls)
        #expect(error?.isTransient == true)
        #expect(!server.receivedCommands.contains { $0.line.hasPrefix("MAIL") || $0.line.hasPrefix("AUTH") })
        await client.shutdown()
        try await server.stop()
    }
}
