import Logging
import NIOCore
import NIOPosix
import NIOSSL
import SMTP

/// One SMTP connection, driven by the pure state machines of the `SMTP` module.
///
/// An actor whose executor is the channel's event loop: the state machines, the
/// channel and its `SMTPReplyHandler` all run on the same thread, so a whole pipelined
/// transaction costs two hops between the caller's task and the event loop, not one
/// per reply. The pool hands a connection to one task at a time.
actor SMTPConnection {
    nonisolated let channel: any Channel
    private let handler: NIOLoopBoundBox<SMTPReplyHandler>
    private let timeouts: SMTPTimeouts
    private let configuration: SMTPRelayConfiguration
    private(set) var capabilities = SMTPCapabilities()
    /// The lines of the current send, for its result or error.
    private(set) var transcript: [String] = []
    /// Whether any reply arrived during the current send (a reused connection that
    /// fails before one did was closed by the server while idle, and is retried).
    private(set) var receivedReplyInCurrentSend = false

    nonisolated var unownedExecutor: UnownedSerialExecutor { channel.eventLoop.executor.asUnownedSerialExecutor() }

    nonisolated var eventLoop: any EventLoop { channel.eventLoop }

    /// Whether the channel is still open.
    nonisolated var isActive: Bool { channel.isActive }

    /// Opens a connection and runs the session up to the first transaction.
    static func open(
        configuration: SMTPRelayConfiguration,
        tlsContext: NIOSSLContext?,
        eventLoopGroup: any EventLoopGroup,
        logger: Logger
    ) async throws(SMTPClientError) -> SMTPConnection {
        let implicitTLS = configuration.tlsMode == .implicit
        let serverHostname = Self.sniHostname(configuration.host)
        // `any()` is the caller's own loop when it runs on one of the group's loops.
        let eventLoop = eventLoopGroup.any()
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
        let connection = SMTPConnection(channel: channel, handler: handler, configuration: configuration)
        logger.debug("SMTP connected", metadata: ["smtp.next_hop": "\(configuration.nextHop)"])
        try await connection.runSession(tlsContext: tlsContext, serverHostname: serverHostname)
        return connection
    }

    private init(channel: any Channel, handler: NIOLoopBoundBox<SMTPReplyHandler>, configuration: SMTPRelayConfiguration) {
        self.channel = channel
        self.handler = handler
        self.timeouts = configuration.timeouts
        self.configuration = configuration
    }

    // MARK: The session: greeting, EHLO, STARTTLS, AUTH

    private func runSession(tlsContext: NIOSSLContext?, serverHostname: String?) async throws(SMTPClientError) {
        do throws(SMTPSessionError) {
            var machine = SMTPSessionStateMachine(configuration: try configuration.currentSessionConfiguration())
            var action = machine.receive(try await nextReply(phase: .greeting))
            while true {
                switch action {
                case .send(let command):
                    write([command])
                    action = machine.receive(try await nextReply(phase: machine.phase))
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
        } catch {
            close()
            throw SMTPClientError(error, transcript: transcript)
        }
    }

    private func startTLS(context: NIOSSLContext, serverHostname: String?) async throws(SMTPSessionError) {
        let handshake = handler.value.prepareForTLS(timeout: TimeAmount(timeouts.startTLS), eventLoop: eventLoop)
        do {
            let tls = try NIOSSLClientHandler(context: context, serverHostname: serverHostname)
            try channel.pipeline.syncOperations.addHandler(tls, position: .first)
        } catch {
            handler.value.terminate(SMTPReplyHandler.classify(error))
        }
        do {
            try await value(of: handshake)
        } catch {
            throw SMTPReplyHandler.classify(error)
        }
        let discarded = handler.value.discardedBytes
        if discarded > 0 {
            transcript.append("-: discarded \(discarded) bytes received in plain text before the TLS handshake")
        }
        transcript.append("-: TLS established")
    }

    // MARK: Transactions

    /// Sends one message: one transaction, plus one more for each round of 452
    /// (too many recipients). Returns one reply per recipient and the transcript.
    ///
    /// After a thrown error the channel is closed, unless the message was refused
    /// before anything was sent (size, SMTPUTF8, address): the session stays usable.
    func send(_ message: OutgoingMessage, resetFirst: Bool) async throws(SMTPClientError) -> (replies: [SMTPReply], transcript: [String]) {
        if resetFirst {
            transcript = []
            receivedReplyInCurrentSend = false
        }
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
                // give the rest this failure's reply if transient, or a transient one.
                let fallback =
                    error.reply.flatMap { $0.isTransientNegative ? $0 : nil }
                    ?? SMTPReply(code: 451, enhancedCode: EnhancedStatusCode(klass: 4, subject: 4, detail: 2), lines: [error.description])
                for index in pending { replies[index] = fallback }
                pending = []
            }
            resetFirst = false
            isFirst = false
        }
        let missing = SMTPReply(code: 451, enhancedCode: EnhancedStatusCode(klass: 4, subject: 3, detail: 0), lines: ["no reply"])
        return (replies.map { $0 ?? missing }, transcript)
    }

    private func runTransaction(
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
                    write(commands)
                    action = try await receive(into: &machine, expecting: commands.count)
                case .awaitReply:
                    action = try await receive(into: &machine, expecting: 1)
                case .sendData:
                    try await writeData(data)
                    action = machine.dataSent()
                case .sendEmptyData:
                    channel.writeAndFlush(ByteBuffer(string: ".\r\n"), promise: nil)
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

    /// Waits for `expecting` replies (fewer if the connection ends first) and feeds them
    /// to the machine in order.
    private func receive(
        into machine: inout SMTPTransactionStateMachine,
        expecting: Int
    ) async throws(SMTPSessionError) -> SMTPTransactionStateMachine.Action {
        let replies = try await nextReplies(count: expecting, phase: machine.phase)
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

    /// Writes the encoded message in chunks; waits for each chunk but the last to be
    /// written (bounded by the `dataBlock` timeout), so a large message is never
    /// buffered whole and a stalled reader is noticed.
    private func writeData(_ data: [UInt8]) async throws(SMTPSessionError) {
        var encoder = SMTPDataEncoder()
        let chunkSize = 256 * 1024
        var offset = 0
        repeat {
            let end = min(offset + chunkSize, data.count)
            var buffer = channel.allocator.buffer(capacity: end - offset + (end - offset) / 32 + 8)
            encoder.encode(data[offset..<end], into: &buffer)
            if end == data.count {
                encoder.finish(into: &buffer)
                channel.writeAndFlush(buffer, promise: nil)
            } else {
                try await writeAndWait(buffer, timeout: timeouts.dataBlock)
            }
            offset = end
        } while offset < data.count
        transcript.append("C: <message data, \(data.count) bytes>")
        transcript.append("C: .")
    }

    // MARK: QUIT and close

    /// Sends QUIT, waits for the reply up to the QUIT timeout, and closes. Never throws.
    func quit() async {
        write([.quit])
        _ = try? await nextReply(phase: .quit)
        close()
    }

    /// Closes the channel now.
    nonisolated func close() {
        channel.close(promise: nil)
    }

    // MARK: Wire

    /// Writes commands in one flush. A failed write closes the channel, which the
    /// next read reports; nothing is lost by not waiting here.
    private func write(_ commands: [SMTPCommand]) {
        // A reply nobody asked for would be taken as the answer to this command.
        if handler.value.queuedReplyCount > 0 {
            handler.value.terminate(SMTPSessionError(kind: .protocolViolation, isTransient: true, message: "reply without a command"))
            return
        }
        var buffer = channel.allocator.buffer(capacity: 64 * commands.count)
        for command in commands {
            command.encode(into: &buffer)
            transcript.append("C: " + command.transcriptLine)
        }
        channel.writeAndFlush(buffer, promise: nil)
    }

    private func writeAndWait(_ buffer: ByteBuffer, timeout: Duration) async throws(SMTPSessionError) {
        let handler = self.handler
        let write = eventLoop.makePromise(of: Void.self)
        channel.writeAndFlush(buffer, promise: write)
        let timer = eventLoop.scheduleTask(in: TimeAmount(timeout)) {
            handler.value.terminate(SMTPSessionError(kind: .timeout, isTransient: true, message: "timed out writing"))
        }
        do {
            try await value(of: write.futureResult)
            timer.cancel()
        } catch {
            timer.cancel()
            // Prefer the reason the handler saw (a timeout, a TLS error) over the write's.
            throw handler.value.currentError ?? SMTPReplyHandler.classify(error)
        }
    }

    private func nextReply(phase: SMTPPhase) async throws(SMTPSessionError) -> SMTPReply {
        let replies = try await nextReplies(count: 1, phase: phase)
        guard let reply = replies.first else {
            throw SMTPSessionError(kind: .protocolViolation, isTransient: true, message: "no reply")
        }
        return reply
    }

    private func nextReplies(count: Int, phase: SMTPPhase) async throws(SMTPSessionError) -> [SMTPReply] {
        let future = handler.value.nextReplies(count: count, timeout: TimeAmount(timeouts.timeout(for: phase)), phase: phase, eventLoop: eventLoop)
        let replies: [SMTPReply]
        do {
            replies = try await value(of: future)
        } catch {
            throw SMTPReplyHandler.classify(error)
        }
        receivedReplyInCurrentSend = true
        for reply in replies {
            for line in reply.wireLines { transcript.append("S: " + line) }
        }
        return replies
    }

    /// The future's value, resumed on this actor's executor (the event loop).
    ///
    /// `EventLoopFuture.get()` is a nonisolated async function: awaiting it from here
    /// would hop to the global executor and back for every reply. A continuation made
    /// here resumes straight on the event loop.
    private func value<Value: Sendable>(of future: EventLoopFuture<Value>) async throws -> Value {
        try await withUnsafeThrowingContinuation { continuation in
            future.whenComplete { continuation.resume(with: $0) }
        }
    }

    private static func sniHostname(_ host: String) -> String? {
        // RFC 6066 section 3: SNI carries host names only. For an IP address NIOSSL
        // checks the certificate against the address itself.
        let isIPv4 = host.split(separator: ".").count == 4 && host.split(separator: ".").allSatisfy { UInt8($0) != nil }
        return isIPv4 || host.contains(":") ? nil : host
    }

    private static func describe(_ error: any Error) -> String {
        if let error = error as? IOError { return error.description }
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
