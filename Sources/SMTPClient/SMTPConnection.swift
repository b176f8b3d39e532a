import Logging
import NIOCore
import NIOPosix
import NIOSSL
import SMTP

/// One SMTP connection, driven by the pure state machines of the `SMTP` module.
///
/// A value owned by one task at a time (the pool hands it out); the channel and its
/// `SMTPReplyHandler` live on the channel's event loop.
struct SMTPConnection: Sendable {
    let channel: any Channel
    private let handler: NIOLoopBoundBox<SMTPReplyHandler>
    private let timeouts: SMTPTimeouts
    let configuration: SMTPRelayConfiguration
    private(set) var capabilities = SMTPCapabilities()
    /// Transactions completed on this connection.
    private(set) var messagesSent = 0
    /// The lines of the current send, for its result or error.
    private(set) var transcript: [String] = []
    /// Whether any reply arrived during the current send (a reused connection that
    /// fails before one did was closed by the server while idle, and is retried).
    private(set) var receivedReplyInCurrentSend = false

    var eventLoop: any EventLoop { channel.eventLoop }

    /// Opens a connection and runs the session up to the first transaction.
    static func open(
        configuration: SMTPRelayConfiguration,
        tlsContext: NIOSSLContext?,
        eventLoopGroup: any EventLoopGroup,
        logger: Logger
    ) async throws(SMTPClientError) -> SMTPConnection {
        let implicitTLS = configuration.tlsMode == .implicit
        let serverHostname = Self.sniHostname(configuration.host)
        let eventLoop = eventLoopGroup.next()
        let handler = NIOLoopBoundBox.makeBoxSendingValue(SMTPReplyHandler(), eventLoop: eventLoop)
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(TimeAmount(configuration.timeouts.connect))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if implicitTLS, let tlsContext {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tlsContext, serverHostname: serverHostname))
                    }
                    try channel.pipeline.syncOperations.addHandler(handler.value)
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: configuration.host, port: configuration.port).get()
        } catch {
            throw SMTPClientError(
                kind: .connect,
                isTransient: true,
                transcript: [],
                message: "cannot connect to \(configuration.nextHop): \(Self.describe(error))"
            )
        }
        var connection = SMTPConnection(channel: channel, handler: handler, timeouts: configuration.timeouts, configuration: configuration)
        logger.debug("SMTP connected", metadata: ["smtp.next_hop": "\(configuration.nextHop)"])
        do {
            try await connection.runSession(tlsContext: tlsContext, serverHostname: serverHostname)
        } catch {
            connection.close()
            throw SMTPClientError(error, transcript: connection.transcript)
        }
        return connection
    }

    private init(channel: any Channel, handler: NIOLoopBoundBox<SMTPReplyHandler>, timeouts: SMTPTimeouts, configuration: SMTPRelayConfiguration) {
        self.channel = channel
        self.handler = handler
        self.timeouts = timeouts
        self.configuration = configuration
    }

    // MARK: The session: greeting, EHLO, STARTTLS, AUTH

    private mutating func runSession(tlsContext: NIOSSLContext?, serverHostname: String?) async throws(SMTPSessionError) {
        var machine = SMTPSessionStateMachine(configuration: configuration.sessionConfiguration)
        var reply = try await nextReply(phase: .greeting)
        var action = machine.receive(reply)
        while true {
            switch action {
            case .send(let command):
                try await write([command])
                reply = try await nextReply(phase: machine.phase)
                action = machine.receive(reply)
            case .startTLS:
                guard let tlsContext else {
                    throw SMTPSessionError(kind: .tls, isTransient: true, message: "no TLS context")
                }
                try await startTLS(context: tlsContext, serverHostname: serverHostname)
                action = machine.tlsEstablished()
            case .ready(let capabilities):
                self.capabilities = capabilities
                return
            case .fail(let error):
                throw error
            }
        }
    }

    private mutating func startTLS(context: NIOSSLContext, serverHostname: String?) async throws(SMTPSessionError) {
        let handler = self.handler
        let channel = self.channel
        let timeout = TimeAmount(timeouts.startTLS)
        do {
            try await channel.eventLoop.flatSubmit { () -> EventLoopFuture<Void> in
                let handshake = handler.value.prepareForTLS(timeout: timeout, eventLoop: channel.eventLoop)
                do {
                    let tls = try NIOSSLClientHandler(context: context, serverHostname: serverHostname)
                    try channel.pipeline.syncOperations.addHandler(tls, position: .first)
                } catch {
                    handler.value.terminate(SMTPReplyHandler.classify(error))
                }
                return handshake
            }.get()
        } catch {
            throw SMTPReplyHandler.classify(error)
        }
        let discarded = try? await channel.eventLoop.submit { handler.value.discardedBytes }.get()
        if let discarded, discarded > 0 {
            transcript.append("-: discarded \(discarded) bytes received in plain text before the TLS handshake")
        }
        transcript.append("-: TLS established")
    }

    // MARK: Transactions

    /// Sends one message: one transaction, plus one more for each round of 452
    /// (too many recipients). Returns one reply per recipient.
    ///
    /// On a thrown error the connection is closed unless `isUsable` says otherwise
    /// (a message refused before anything was sent leaves the session intact).
    mutating func send(_ message: OutgoingMessage, resetFirst: Bool) async throws(SMTPClientError) -> [SMTPReply] {
        let envelope = message.envelope
        var replies: [SMTPReply?] = Array(repeating: nil, count: envelope.recipients.count)
        var pending = Array(envelope.recipients.indices)
        var resetFirst = resetFirst
        var isFirst = true
        while !pending.isEmpty {
            var subset = envelope
            subset.recipients = pending.map { envelope.recipients[$0] }
            do {
                let outcome = try await runTransaction(subset, data: message.data, resetFirst: resetFirst)
                for (position, reply) in outcome.replies.enumerated() { replies[pending[position]] = reply }
                pending = outcome.continuation.map { pending[$0] }
            } catch {
                if isFirst { throw SMTPClientError(error, transcript: transcript) }
                // Some recipients were decided in an earlier transaction: report them, and
                // give the rest this failure's reply, or a transient one.
                let fallback =
                    error.reply.flatMap { $0.isTransientNegative ? $0 : nil }
                    ?? SMTPReply(code: 451, enhancedCode: EnhancedStatusCode(klass: 4, subject: 4, detail: 2), lines: [error.description])
                for index in pending { replies[index] = fallback }
                pending = []
            }
            resetFirst = false
            isFirst = false
        }
        messagesSent += 1
        let missing = SMTPReply(code: 451, enhancedCode: EnhancedStatusCode(klass: 4, subject: 3, detail: 0), lines: ["no reply"])
        return replies.map { $0 ?? missing }
    }

    private mutating func runTransaction(
        _ envelope: SMTPEnvelope,
        data: [UInt8],
        resetFirst: Bool
    ) async throws(SMTPSessionError) -> SMTPTransactionStateMachine.Outcome {
        var machine = SMTPTransactionStateMachine(envelope: envelope, capabilities: capabilities, resetFirst: resetFirst)
        var action = machine.start()
        if case .fail(let error) = action { throw error }  // nothing was sent: the session stays usable
        do throws(SMTPSessionError) {
            while true {
                switch action {
                case .send(let commands):
                    try await write(commands)
                    action = try await receive(into: &machine)
                case .awaitReply:
                    action = try await receive(into: &machine)
                case .sendData:
                    try await writeData(data)
                    action = machine.dataSent()
                case .sendEmptyData:
                    try await writeBuffer(ByteBuffer(string: ".\r\n"), timeout: timeouts.dataBlock)
                    transcript.append("C: .")
                    action = machine.dataSent()
                case .finished(let outcome):
                    return outcome
                case .fail(let error):
                    throw error
                }
            }
        } catch {
            close()
            throw error
        }
    }

    /// Feeds the next reply to the machine, reading any further replies already received.
    private mutating func receive(
        into machine: inout SMTPTransactionStateMachine
    ) async throws(SMTPSessionError) -> SMTPTransactionStateMachine.Action {
        let replies = try await nextReplies(maximum: 64, phase: machine.phase)
        var action = SMTPTransactionStateMachine.Action.awaitReply
        for (index, reply) in replies.enumerated() {
            action = machine.receive(reply)
            switch action {
            case .awaitReply:
                continue
            case .fail:
                return action
            default:
                if index != replies.count - 1 {
                    throw SMTPSessionError(kind: .protocolViolation, reply: reply, isTransient: true, message: "more replies than commands")
                }
            }
        }
        return action
    }

    private mutating func writeData(_ data: [UInt8]) async throws(SMTPSessionError) {
        var encoder = SMTPDataEncoder()
        let chunkSize = 256 * 1024
        var offset = 0
        repeat {
            let end = min(offset + chunkSize, data.count)
            var buffer = channel.allocator.buffer(capacity: end - offset + (end - offset) / 32 + 8)
            encoder.encode(data[offset..<end], into: &buffer)
            if end == data.count { encoder.finish(into: &buffer) }
            try await writeBuffer(buffer, timeout: timeouts.dataBlock)
            offset = end
        } while offset < data.count
        transcript.append("C: <message data, \(data.count) bytes>")
        transcript.append("C: .")
    }

    // MARK: QUIT and close

    /// Sends QUIT, waits briefly for 221, and closes. Never throws.
    func quit() async {
        var connection = self
        do {
            try await connection.write([.quit])
            _ = try await connection.nextReply(phase: .quit)
        } catch {
            // The connection is going away either way; nothing to report.
        }
        close()
    }

    /// Closes the channel now.
    func close() {
        channel.close(promise: nil)
    }

    /// Whether the channel is still open.
    var isActive: Bool { channel.isActive }

    /// Starts a new send's transcript.
    mutating func beginSend() {
        transcript = []
        receivedReplyInCurrentSend = false
    }

    // MARK: Wire

    private mutating func write(_ commands: [SMTPCommand]) async throws(SMTPSessionError) {
        var buffer = channel.allocator.buffer(capacity: 64 * commands.count)
        for command in commands {
            command.encode(into: &buffer)
            transcript.append("C: " + command.transcriptLine)
        }
        try await writeBuffer(buffer, timeout: timeouts.dataBlock)
    }

    private func writeBuffer(_ buffer: ByteBuffer, timeout: Duration) async throws(SMTPSessionError) {
        let channel = self.channel
        let handler = self.handler
        let write = channel.eventLoop.makePromise(of: Void.self)
        channel.writeAndFlush(buffer, promise: write)
        let timer = channel.eventLoop.scheduleTask(in: TimeAmount(timeout)) {
            handler.value.terminate(SMTPSessionError(kind: .timeout, isTransient: true, message: "timed out writing"))
        }
        do {
            try await write.futureResult.get()
            timer.cancel()
        } catch {
            timer.cancel()
            // Prefer the reason the handler saw (a timeout, a TLS error) over the write's.
            let reason = try? await channel.eventLoop.submit { handler.value.currentError }.get()
            throw reason ?? SMTPReplyHandler.classify(error)
        }
    }

    private mutating func nextReply(phase: SMTPPhase) async throws(SMTPSessionError) -> SMTPReply {
        let replies = try await nextReplies(maximum: 1, phase: phase)
        guard let reply = replies.first else {
            throw SMTPSessionError(kind: .protocolViolation, isTransient: true, message: "no reply")
        }
        return reply
    }

    private mutating func nextReplies(maximum: Int, phase: SMTPPhase) async throws(SMTPSessionError) -> [SMTPReply] {
        let handler = self.handler
        let eventLoop = channel.eventLoop
        let timeout = TimeAmount(timeouts.timeout(for: phase))
        let replies: [SMTPReply]
        do {
            replies = try await eventLoop.flatSubmit {
                handler.value.nextReplies(maximum: maximum, timeout: timeout, phase: phase, eventLoop: eventLoop)
            }.get()
        } catch {
            throw SMTPReplyHandler.classify(error)
        }
        receivedReplyInCurrentSend = true
        for reply in replies {
            for line in reply.wireLines { transcript.append("S: " + line) }
        }
        return replies
    }

    private static func sniHostname(_ host: String) -> String? {
        // RFC 6066 section 3: SNI carries host names only. For an IP address NIOSSL
        // checks the certificate against the address itself.
        let isIPv4 = host.split(separator: ".").count == 4 && host.split(separator: ".").allSatisfy { UInt8($0) != nil }
        return isIPv4 || host.contains(":") ? nil : host
    }

    private static func describe(_ error: any Error) -> String {
        if let error = error as? IOError { return error.description }
        if let error = error as? ChannelError { return "\(error)" }
        return "\(error)"
    }
}

extension SMTPTimeouts {
    func timeout(for phase: SMTPPhase) -> Duration {
        switch phase {
        case .greeting: greeting
        case .ehlo, .auth: ehlo
        case .startTLS: startTLS
        case .rset: rset
        case .mail: mail
        case .rcpt: rcpt
        case .data: data
        case .dataDone: dataDone
        case .quit: quit
        }
    }
}
