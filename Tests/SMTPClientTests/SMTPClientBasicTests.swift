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
