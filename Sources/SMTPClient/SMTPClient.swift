import Logging
import NIOCore
import NIOPosix
import NIOSSL
import SMTP
import Synchronization

/// A client for one relay: a bounded pool of SMTP connections, reused with RSET.
///
/// `send(_:)` takes an idle connection (or opens one while fewer than
/// `maxConnections` are open; callers beyond that wait their turn), runs one mail
/// transaction and puts the connection back. An idle connection is closed with QUIT
/// after `timeouts.idle`, and after `maxMessagesPerConnection` messages. A reused
/// connection that the server closed while it sat idle is replaced once, transparently.
/// No task is created: idle timers run on the connection's event loop.
///
/// Thread affinity: a caller running on one of the client's event loops (a task that
/// prefers one of `taskExecutors`) is given an idle connection of that loop when there
/// is one, and a new connection opens on that loop. Its send then never leaves the
/// thread; any other caller pays one hop onto the connection's loop and one back.
public final class SMTPClient: Sendable {
    /// The relay and its settings.
    public let configuration: SMTPRelayConfiguration
    private let eventLoopGroup: any EventLoopGroup
    private let logger: Logger
    private let tlsContext: Result<NIOSSLContext?, SMTPClientError>
    private let pool: Mutex<PoolState>

    private struct IdleConnection: Sendable {
        var connection: SMTPConnection
        var uses: Int
        var idleSince: NIODeadline
    }

    private enum Lease: Sendable {
        /// An open connection and the number of messages it carried.
        case reuse(SMTPConnection, uses: Int)
        case open
    }

    private struct Waiter: Sendable {
        var id: Int
        var continuation: CheckedContinuation<Result<Lease, SMTPClientError>, Never>
    }

    private struct PoolState: Sendable {
        var idle: [IdleConnection] = []
        var open = 0
        var waiters: [Waiter] = []
        var nextID = 0
        var isShutdown = false
    }

    /// Makes a client; nothing connects until the first `send`.
    ///
    /// The TLS context is built here once. A `caFile` that cannot be read makes every
    /// send fail with a transient `.tls` error naming the problem.
    public init(
        configuration: SMTPRelayConfiguration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "pigeon.smtp")
    ) {
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        self.tlsContext = Self.makeTLSContext(configuration)
        self.pool = Mutex(PoolState())
    }

    /// One task executor per event loop of the client's group: run callers on them
    /// (`TaskGroup.addTask(executorPreference:)`) to send without thread hops.
    ///
    /// The group must outlive every task that prefers one of them: NIO drops a job
    /// given to a loop that has shut down, and that task would never resume.
    public var taskExecutors: [EventLoopTaskExecutor] {
        eventLoopGroup.makeIterator().map { EventLoopTaskExecutor(eventLoop: $0) }
    }

    /// Runs one mail transaction on a pooled connection.
    ///
    /// Throws `SMTPClientError` when no per-recipient decision was reached: the
    /// connection failed, TLS or AUTH failed, the server answered 421, or the message
    /// cannot be sent to this server (too large, needs SMTPUTF8).
    public func send(_ message: OutgoingMessage) async throws(SMTPClientError) -> SMTPSendResult {
        var lease = try await acquire()
        var retriedStaleConnection = false
        while true {
            let connection: SMTPConnection
            let reused: Bool
            var uses = 0
            switch lease {
            case .reuse(let idle, let previousUses):
                connection = idle
                uses = previousUses
                reused = true
            case .open:
                do {
                    connection = try await SMTPConnection.open(
                        configuration: configuration,
                        tlsContext: try tlsContext.get(),
                        eventLoopGroup: eventLoopGroup,
                        logger: logger
                    )
                } catch {
                    release(nil)
                    logger.info("SMTP attempt failed", metadata: ["smtp.error": "\(error)", "smtp.next_hop": "\(configuration.nextHop)"])
                    throw error
                }
                reused = false
                startIdleSweeper(for: connection)
            }
            do {
                let (replies, transcript) = try await connection.send(message, resetFirst: reused)
                logTranscript(transcript)
                release(connection, uses: uses + 1)
                return SMTPSendResult(
                    recipients: zip(message.recipients, replies).map { RecipientReply(recipient: $0, reply: $1) },
                    transcript: transcript,
                    nextHop: configuration.nextHop
                )
            } catch {
                logTranscript(error.transcript)
                if connection.isActive && !isConnectionError(error) {
                    // Refused before anything was sent (size, SMTPUTF8, address): keep the session.
                    release(connection, uses: uses)
                    throw error
                }
                connection.close()
                let receivedReply = await connection.receivedReplyInCurrentSend
                if reused && !receivedReply && !retriedStaleConnection {
                    // The server closed the idle connection; try once more on a new one.
                    retriedStaleConnection = true
                    lease = .open
                    continue
                }
                release(nil)
                throw error
            }
        }
    }

    /// Sends QUIT on every idle connection and closes them; later sends fail with
    /// `.closed`. Connections in use are closed when their send ends. Safe to call twice.
    public func shutdown() async {
        let (idle, waiters) = pool.withLock { state in
            state.isShutdown = true
            let idle = state.idle
            let waiters = state.waiters
            state.idle = []
            state.waiters = []
            state.open -= idle.count
            return (idle, waiters)
        }
        for waiter in waiters { waiter.continuation.resume(returning: .failure(Self.shutdownError)) }
        await withTaskGroup(of: Void.self) { group in
            for entry in idle {
                group.addTask { await entry.connection.quit() }
            }
        }
    }

    // MARK: Pool

    private static let shutdownError = SMTPClientError(kind: .closed, isTransient: true, message: "the SMTP client was shut down")

    private func acquire() async throws(SMTPClientError) -> Lease {
        enum Immediate {
            case lease(Lease)
            case failure(SMTPClientError)
            case wait(Int)
        }
        let immediate = pool.withLock { state -> Immediate in
            if state.isShutdown { return .failure(Self.shutdownError) }
            // Prefer the newest idle connection of the caller's own event loop.
            if let index = state.idle.lastIndex(where: { $0.connection.eventLoop.inEventLoop }) {
                let entry = state.idle.remove(at: index)
                if entry.connection.isActive { return .lease(.reuse(entry.connection, uses: entry.uses)) }
                entry.connection.close()
                state.open -= 1
            }
            while let entry = state.idle.popLast() {
                if entry.connection.isActive { return .lease(.reuse(entry.connection, uses: entry.uses)) }
                entry.connection.close()
                state.open -= 1
            }
            if state.open < max(1, configuration.maxConnections) {
                state.open += 1
                return .lease(.open)
            }
            state.nextID += 1
            return .wait(state.nextID)
        }
        switch immediate {
        case .lease(let lease):
            return lease
        case .failure(let error):
            throw error
        case .wait(let id):
            let result = await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Result<Lease, SMTPClientError>, Never>) in
                    let cancelled = pool.withLock { state -> Bool in
                        if Task.isCancelled { return true }
                        state.waiters.append(Waiter(id: id, continuation: continuation))
                        return false
                    }
                    if cancelled {
                        continuation.resume(returning: .failure(Self.cancelledError))
                    }
                }
            } onCancel: {
                let waiter = pool.withLock { state -> Waiter? in
                    guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                    return state.waiters.remove(at: index)
                }
                waiter?.continuation.resume(returning: .failure(Self.cancelledError))
            }
            return try result.get()
        }
    }

    private static let cancelledError = SMTPClientError(kind: .closed, isTransient: true, message: "cancelled while waiting for a connection")

    /// Returns a connection to the pool (or its slot, when `connection` is nil).
    private func release(_ connection: SMTPConnection?, uses: Int = 0) {
        var connection = connection
        if let current = connection, !current.isActive || uses >= limitPerConnection {
            connection = nil
            closeGracefully(current)
        }
        enum Next {
            case handOver(Waiter, Lease)
            case closeConnection(SMTPConnection)
            case nothing
        }
        let next = pool.withLock { state -> Next in
            if let connection, state.isShutdown {
                state.open -= 1
                return .closeConnection(connection)
            }
            if !state.waiters.isEmpty {
                let waiter = state.waiters.removeFirst()
                if let connection { return .handOver(waiter, .reuse(connection, uses: uses)) }
                return .handOver(waiter, .open)
            }
            if let connection {
                state.idle.append(IdleConnection(connection: connection, uses: uses, idleSince: .now()))
            } else {
                state.open -= 1
            }
            return .nothing
        }
        switch next {
        case .handOver(let waiter, let lease):
            waiter.continuation.resume(returning: .success(lease))
        case .closeConnection(let connection):
            closeGracefully(connection)
        case .nothing:
            break
        }
    }

    private var limitPerConnection: Int {
        configuration.maxMessagesPerConnection > 0 ? configuration.maxMessagesPerConnection : Int.max
    }

    /// Closes the connection with QUIT once it has been idle for `timeouts.idle`.
    ///
    /// One repeated check per connection on its event loop, rather than a timer armed
    /// and cancelled for every message: a busy connection costs nothing.
    private func startIdleSweeper(for connection: SMTPConnection) {
        let idle = TimeAmount(configuration.timeouts.idle)
        let interval = max(TimeAmount.milliseconds(10), .nanoseconds(idle.nanoseconds / 4))
        let identity = ObjectIdentifier(connection)
        let task = connection.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [self] task in
            let now = NIODeadline.now()
            let expired = pool.withLock { state -> SMTPConnection? in
                guard let index = state.idle.firstIndex(where: { ObjectIdentifier($0.connection) == identity }),
                    now - state.idle[index].idleSince >= idle
                else { return nil }
                state.open -= 1
                return state.idle.remove(at: index).connection
            }
            if let expired {
                task.cancel()
                closeGracefully(expired)
            }
        }
        connection.channel.closeFuture.whenComplete { _ in task.cancel() }
    }

    /// QUIT and close on the event loop, without a task: write QUIT, wait for any
    /// reply up to the QUIT timeout, close.
    private func closeGracefully(_ connection: SMTPConnection) {
        let channel = connection.channel
        var buffer = channel.allocator.buffer(capacity: 8)
        SMTPCommand.quit.encode(into: &buffer)
        channel.writeAndFlush(buffer, promise: nil)
        let close = channel.eventLoop.scheduleTask(in: TimeAmount(configuration.timeouts.quit)) { channel.close(promise: nil) }
        channel.closeFuture.whenComplete { _ in close.cancel() }
    }

    private func isConnectionError(_ error: SMTPClientError) -> Bool {
        switch error.kind {
        case .messageTooLarge, .smtputf8Unsupported: false
        case .rejected: error.reply != nil
        default: true
        }
    }

    private func logTranscript(_ transcript: [String]) {
        guard logger.logLevel <= .debug else { return }
        logger.debug(
            "SMTP transcript",
            metadata: ["smtp.next_hop": "\(configuration.nextHop)", "smtp.transcript": "\(transcript.joined(separator: "\n"))"]
        )
    }

    static func makeTLSContext(_ configuration: SMTPRelayConfiguration) -> Result<NIOSSLContext?, SMTPClientError> {
        guard configuration.tlsMode != .none else { return .success(nil) }
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        if let caFile = configuration.caFile { tls.trustRoots = .file(caFile) }
        // RFC 7435: opportunistic TLS without credentials encrypts without verifying.
        // With credentials every mode verifies, so AUTH only follows a verified handshake.
        if configuration.tlsMode == .opportunistic && configuration.username == nil {
            tls.certificateVerification = .none
        } else {
            tls.certificateVerification = .fullVerification
        }
        do {
            return .success(try NIOSSLContext(configuration: tls))
        } catch {
            return .failure(SMTPClientError(kind: .tls, isTransient: true, message: "cannot set up TLS (check PIGEON_SMTP_CA_FILE): \(error)"))
        }
    }
}
