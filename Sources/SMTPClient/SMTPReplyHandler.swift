import NIOCore
import NIOSSL
import NIOTLS
import SMTP

/// The inbound end of an SMTP client channel: frames replies and hands them out one
/// request at a time, with a timeout per request.
///
/// Lives on the channel's event loop. Bounded: the parser bounds line length and line
/// count; at most `maximumQueuedReplies` unrequested replies are kept. The first error
/// (a parse error, a timeout, a TLS error, the peer closing) ends the channel and is
/// the answer to every later request.
final class SMTPReplyHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    static let maximumQueuedReplies = 1000

    private var buffer: ByteBuffer?
    private var parser = SMTPReplyParser()
    private var replies = CircularBuffer<SMTPReply>()
    private var waiter: (promise: EventLoopPromise<[SMTPReply]>, count: Int)?
    private var timeoutTask: Scheduled<Void>?
    private var tlsPromise: EventLoopPromise<Void>?
    private var terminalError: SMTPSessionError?
    private var context: ChannelHandlerContext?

    /// Replies received and not yet asked for.
    var queuedReplyCount: Int { replies.count }

    /// The error that ended the channel, if it ended.
    var currentError: SMTPSessionError? { terminalError }

    /// Bytes received and discarded when STARTTLS began (RFC 3207 section 6).
    private(set) var discardedBytes = 0

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard terminalError == nil else { return }
        var bytes = unwrapInboundIn(data)
        if buffer == nil {
            buffer = bytes
        } else {
            buffer?.writeBuffer(&bytes)
        }
        do {
            while var current = buffer, current.readableBytes > 0 {
                let reply = try parser.parse(&current)
                buffer = current
                guard let reply else { break }
                guard replies.count < Self.maximumQueuedReplies else {
                    throw SMTPSessionError(kind: .protocolViolation, isTransient: true, message: "too many unrequested replies")
                }
                replies.append(reply)
            }
            if buffer?.readableBytes == 0 { buffer = nil } else { buffer?.discardReadBytes() }
            serveWaiter()
        } catch let error as SMTPReplyParseError {
            serveWaiter()
            terminate(SMTPSessionError(kind: .protocolViolation, isTransient: true, message: error.description))
        } catch {
            serveWaiter()
            terminate(Self.classify(error))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        terminate(SMTPSessionError(kind: .closed, isTransient: true, message: "connection closed by the server"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        terminate(Self.classify(error))
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent {
            timeoutTask?.cancel()
            timeoutTask = nil
            let promise = tlsPromise
            tlsPromise = nil
            promise?.succeed()
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// The next `count` replies once they all arrived (fewer if the channel ends
    /// first, or the error when there are none). Later replies stay queued.
    func nextReplies(count: Int, timeout: TimeAmount, phase: SMTPPhase, eventLoop: any EventLoop) -> EventLoopFuture<[SMTPReply]> {
        let count = max(1, count)
        if replies.count >= count || (terminalError != nil && !replies.isEmpty) {
            return eventLoop.makeSucceededFuture(takeReplies(count))
        }
        if let terminalError { return eventLoop.makeFailedFuture(terminalError) }
        let promise = eventLoop.makePromise(of: [SMTPReply].self)
        waiter = (promise, count)
        armTimeout(timeout, phase: phase, eventLoop: eventLoop)
        return promise.futureResult
    }

    private func takeReplies(_ count: Int) -> [SMTPReply] {
        var result: [SMTPReply] = []
        result.reserveCapacity(min(count, replies.count))
        while result.count < count, let reply = replies.popFirst() { result.append(reply) }
        return result
    }

    /// Drops every byte and reply received so far and waits for the TLS handshake that
    /// the caller starts by adding an `NIOSSLClientHandler` in front of this one.
    func prepareForTLS(timeout: TimeAmount, eventLoop: any EventLoop) -> EventLoopFuture<Void> {
        if let terminalError { return eventLoop.makeFailedFuture(terminalError) }
        discardedBytes += buffer?.readableBytes ?? 0
        discardedBytes += replies.count
        buffer = nil
        replies.removeAll()
        parser = SMTPReplyParser(maximumLineLength: parser.maximumLineLength, maximumLineCount: parser.maximumLineCount)
        let promise = eventLoop.makePromise(of: Void.self)
        tlsPromise = promise
        armTimeout(timeout, phase: .startTLS, eventLoop: eventLoop)
        return promise.futureResult
    }

    /// Ends the channel with `error` unless it already ended.
    func terminate(_ error: SMTPSessionError) {
        guard terminalError == nil else { return }
        terminalError = error
        timeoutTask?.cancel()
        timeoutTask = nil
        buffer = nil
        let waiter = self.waiter
        self.waiter = nil
        let tlsPromise = self.tlsPromise
        self.tlsPromise = nil
        if let waiter {
            // Replies that came before the end are still answers (a 421 before closing).
            if replies.isEmpty { waiter.promise.fail(error) } else { waiter.promise.succeed(takeReplies(waiter.count)) }
        }
        tlsPromise?.fail(error)
        context?.close(promise: nil)
    }

    private func serveWaiter() {
        guard let waiter, replies.count >= waiter.count else { return }
        self.waiter = nil
        timeoutTask?.cancel()
        timeoutTask = nil
        waiter.promise.succeed(takeReplies(waiter.count))
    }

    private func armTimeout(_ timeout: TimeAmount, phase: SMTPPhase, eventLoop: any EventLoop) {
        timeoutTask?.cancel()
        let loopBound = NIOLoopBound(self, eventLoop: eventLoop)
        timeoutTask = eventLoop.scheduleTask(in: timeout) {
            loopBound.value.terminate(
                SMTPSessionError(kind: .timeout, isTransient: true, message: "timed out waiting in phase \(phase.rawValue)")
            )
        }
    }

    static func classify(_ error: any Error) -> SMTPSessionError {
        if let error = error as? SMTPSessionError { return error }
        if let error = error as? NIOSSLError {
            if case .uncleanShutdown = error {
                return SMTPSessionError(kind: .closed, isTransient: true, message: "connection closed by the server without TLS close")
            }
            return SMTPSessionError(kind: .tls, isTransient: true, message: "TLS failed: \(error)")
        }
        if error is BoringSSLError || error is NIOSSLExtraError {
            return SMTPSessionError(kind: .tls, isTransient: true, message: "TLS failed: \(error)")
        }
        if let error = error as? IOError {
            return SMTPSessionError(kind: .closed, isTransient: true, message: "connection failed: \(error.description)")
        }
        return SMTPSessionError(kind: .closed, isTransient: true, message: "connection failed: \(type(of: error))")
    }
}
