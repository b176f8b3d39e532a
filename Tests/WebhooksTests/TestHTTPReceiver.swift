import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A tiny HTTP/1.1 server on 127.0.0.1 that records requests and answers as scripted:
/// a status with headers, no answer at all, or a TCP reset.
final class TestHTTPReceiver: Sendable {
    /// How to answer one request.
    enum Behavior: Sendable {
        case respond(Int, [(String, String)] = [])
        case hang
        case reset
    }

    /// A request as received.
    struct Received: Sendable {
        var path: String
        var headers: [String: String]
        var body: [UInt8]

        var text: String { String(decoding: body, as: UTF8.self) }
    }

    private struct State {
        var requests: [Received] = []
        var handler: @Sendable (Int) -> Behavior
    }

    private let state: Mutex<State>
    private let channel: Mutex<(any Channel)?> = Mutex(nil)

    init(_ handler: @escaping @Sendable (Int) -> Behavior = { _ in .respond(204) }) {
        state = Mutex(State(handler: handler))
    }

    /// Starts listening on a free port of 127.0.0.1.
    func start() async throws {
        let bound = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Handler(receiver: self))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        channel.withLock { $0 = bound }
    }

    var port: Int { channel.withLock { $0?.localAddress?.port ?? 0 } }
    var url: String { "http://127.0.0.1:\(port)/hooks" }
    var requests: [Received] { state.withLock { $0.requests } }

    func setHandler(_ handler: @escaping @Sendable (Int) -> Behavior) {
        state.withLock { $0.handler = handler }
    }

    func stop() async {
        let bound = channel.withLock { $0 }
        try? await bound?.close()
    }

    fileprivate func record(_ request: Received) -> Behavior {
        state.withLock { state in
            state.requests.append(request)
            return state.handler(state.requests.count - 1)
        }
    }

    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart

        let receiver: TestHTTPReceiver
        var head: HTTPRequestHead?
        var body: [UInt8] = []

        init(receiver: TestHTTPReceiver) {
            self.receiver = receiver
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head):
                self.head = head
                body = []
            case .body(var buffer):
                body += buffer.readBytes(length: buffer.readableBytes) ?? []
            case .end:
                guard let head else { return }
                var headers: [String: String] = [:]
                for (name, value) in head.headers { headers[name.lowercased()] = value }
                let behavior = receiver.record(Received(path: head.uri, headers: headers, body: body))
                switch behavior {
                case .respond(let status, let extra):
                    var responseHeaders = HTTPHeaders(extra)
                    responseHeaders.add(name: "Content-Length", value: "0")
                    responseHeaders.add(name: "Connection", value: "close")
                    let responseHead = HTTPResponseHead(
                        version: .http1_1,
                        status: HTTPResponseStatus(statusCode: status),
                        headers: responseHeaders
                    )
                    context.write(wrapOutboundOut(.head(responseHead)), promise: nil)
                    context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
                case .hang:
                    break
                case .reset:
                    // SO_LINGER 0: close sends RST instead of FIN.
                    if let provider = context.channel as? any SocketOptionProvider {
                        provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in context.close(promise: nil) }
                    } else {
                        context.close(promise: nil)
                    }
                }
            }
        }
    }
}
