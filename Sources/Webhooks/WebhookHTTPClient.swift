import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Resolves host names for the webhook client; the seam tests use to make a name resolve to loopback.
public protocol WebhookResolver: Sendable {
    /// Every address of `host` (A and AAAA).
    func resolve(host: String) async throws(WebhookURLError) -> [IPAddress]
}

/// The system resolver (`getaddrinfo`), run on NIO's blocking-I/O thread pool.
public struct SystemResolver: WebhookResolver {
    /// Creates a resolver.
    public init() {}

    /// Resolves with `getaddrinfo`.
    public func resolve(host: String) async throws(WebhookURLError) -> [IPAddress] {
        let result: [IPAddress]?
        do {
            result = try await NIOThreadPool.singleton.runIfActive { Self.lookup(host) }
        } catch {
            throw .unresolvable(host)
        }
        guard let result, !result.isEmpty else { throw .unresolvable(host) }
        return result
    }

    private static func lookup(_ host: String) -> [IPAddress]? {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Darwin)
        hints.ai_socktype = SOCK_STREAM
        #else
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #endif
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &list) == 0, let first = list else { return nil }
        defer { freeaddrinfo(first) }
        var addresses: [IPAddress] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let info = cursor {
            if let socketAddress = info.pointee.ai_addr {
                switch Int32(socketAddress.pointee.sa_family) {
                case AF_INET:
                    socketAddress.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { pointer in
                        addresses.append(.v4(UInt32(bigEndian: pointer.pointee.sin_addr.s_addr)))
                    }
                case AF_INET6:
                    socketAddress.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { pointer in
                        var address = pointer.pointee.sin6_addr
                        addresses.append(.v6(withUnsafeBytes(of: &address) { Array($0) }))
                    }
                default:
                    break
                }
            }
            cursor = info.pointee.ai_next
        }
        var seen = Set<IPAddress>()
        return addresses.filter { seen.insert($0).inserted }
    }
}

/// One webhook POST.
public struct WebhookRequest: Sendable {
    /// Where to.
    public var url: WebhookURL
    /// Extra header fields (the Standard Webhooks ones).
    public var headers: [(String, String)]
    /// The JSON body.
    public var body: [UInt8]

    /// Creates a request.
    public init(url: WebhookURL, headers: [(String, String)], body: [UInt8]) {
        self.url = url
        self.headers = headers
        self.body = body
    }
}

/// What the receiver answered: the status and the headers the retry policy reads.
public struct WebhookResponse: Sendable, Hashable {
    /// The HTTP status.
    public var status: Int
    /// `Retry-After`, as sent.
    public var retryAfter: String?

    /// Creates a response.
    public init(status: Int, retryAfter: String? = nil) {
        self.status = status
        self.retryAfter = retryAfter
    }
}

/// Why a webhook POST got no HTTP answer. The descriptions carry no secret.
public enum WebhookTransportError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The SSRF policy refused the target (at connect time).
    case refused(WebhookURLError)
    /// No connection could be made.
    case connectFailed(String)
    /// No answer within the timeout.
    case timeout
    /// The receiver reset the connection.
    case connectionReset
    /// The receiver closed the connection without an answer.
    case connectionClosed
    /// TLS failed (handshake, certificate).
    case tls(String)
    /// The answer was not HTTP/1.1.
    case invalidResponse(String)

    /// One line, recorded with the attempt.
    public var description: String {
        switch self {
        case .refused(let error): return "refused: \(error.description)"
        case .connectFailed(let reason): return "cannot connect: \(reason)"
        case .timeout: return "timeout"
        case .connectionReset: return "connection reset"
        case .connectionClosed: return "connection closed without a response"
        case .tls(let reason): return "TLS: \(reason)"
        case .invalidResponse(let reason): return "invalid response: \(reason)"
        }
    }
}

/// Sends one webhook POST; the seam the service is tested through.
public protocol WebhookTransport: Sendable {
    /// POSTs the request and returns the status, or throws `WebhookTransportError`.
    func send(_ request: WebhookRequest, timeout: Duration) async throws(WebhookTransportError) -> WebhookResponse
}

/// A minimal HTTP/1.1 client for webhooks, on SwiftNIO, that connects only to addresses
/// it has vetted itself.
///
/// Why not AsyncHTTPClient (which DESIGN.md names): it resolves the host name itself
/// and connects to whatever the resolver answers at that moment, with no hook to vet
/// the addresses in between. Checking the name beforehand leaves a DNS-rebinding gap
/// (a name answers a public address to the check and 127.0.0.1 to the connect). This
/// client resolves once, refuses the request if ANY resolved address is forbidden by
/// the `AddressPolicy`, and connects to those same vetted addresses, sending the
/// original host in `Host` and as the TLS SNI name (certificates are verified against
/// it). It needs only what a webhook needs: one POST per connection
/// (`Connection: close`), no redirects (a 3xx is returned as is, and is a failure),
/// no body read beyond the status line and headers, and a deadline for the whole
/// exchange. Trying the addresses in order stands in for Happy Eyeballs.
public struct NIOWebhookClient: WebhookTransport {
    let group: any EventLoopGroup
    let resolver: any WebhookResolver
    let policy: AddressPolicy
    let tlsContext: NIOSSLContext?

    /// Creates a client; `tlsConfiguration` defaults to full verification against the system roots.
    public init(
        policy: AddressPolicy,
        resolver: any WebhookResolver = SystemResolver(),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        tlsConfiguration: TLSConfiguration = .makeClientConfiguration()
    ) {
        self.policy = policy
        self.resolver = resolver
        self.group = group
        self.tlsContext = try? NIOSSLContext(configuration: tlsConfiguration)
    }

    /// Resolves, vets every address, then POSTs within `timeout`.
    public func send(_ request: WebhookRequest, timeout: Duration) async throws(WebhookTransportError) -> WebhookResponse {
        let addresses = try await vettedAddresses(request.url)
        let deadline =
            NIODeadline.now()
            + TimeAmount.nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000)
        var lastError = WebhookTransportError.connectFailed("no address")
        for address in addresses {
            do {
                return try await exchange(request, address: address, deadline: deadline)
            } catch let error as WebhookTransportError {
                lastError = error
                guard case .connectFailed = error else { throw error }
            } catch {
                throw Self.map(error)
            }
        }
        throw lastError
    }

    /// The addresses to connect to, each allowed by the policy; throws `refused` if any is not.
    func vettedAddresses(_ url: WebhookURL) async throws(WebhookTransportError) -> [IPAddress] {
        do {
            try policy.checkHost(url)
            if let literal = url.literalAddress { return [literal] }
            let addresses = try await resolver.resolve(host: url.host)
            try policy.check(addresses, host: url.host)
            return addresses
        } catch {
            if case .unresolvable = error { throw .connectFailed(error.description) }
            throw .refused(error)
        }
    }

    private func exchange(_ request: WebhookRequest, address: IPAddress, deadline: NIODeadline) async throws -> WebhookResponse {
        let socketAddress: SocketAddress
        do {
            socketAddress = try SocketAddress(ipAddress: address.description, port: request.url.port)
        } catch {
            throw WebhookTransportError.connectFailed("bad address \(address)")
        }
        let url = request.url
        var tls: (context: NIOSSLContext, serverName: String?)?
        if url.scheme == "https" {
            guard let tlsContext else { throw WebhookTransportError.tls("no TLS context") }
            tls = (tlsContext, url.literalAddress == nil ? url.host : nil)
        }
        let tlsSettings = tls
        let remaining = max(deadline - NIODeadline.now(), .milliseconds(1))
        let channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(remaining)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .connect(to: socketAddress) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let tlsSettings {
                            let handler = try NIOSSLClientHandler(context: tlsSettings.context, serverHostname: tlsSettings.serverName)
                            try channel.pipeline.syncOperations.addHandler(handler)
                        }
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            if case ChannelError.connectTimeout = error { throw WebhookTransportError.timeout }
            throw WebhookTransportError.connectFailed("\(address.description) port \(url.port): \(Self.reason(error))")
        }
        let underlying = channel.channel
        let timeout = underlying.eventLoop.scheduleTask(deadline: deadline) {
            underlying.close(promise: nil)
        }
        defer { timeout.cancel() }
        do {
            return try await withTaskCancellationHandler {
                try await channel.executeThenClose { inbound, outbound in
                    var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: url.target)
                    head.headers.add(name: "Host", value: url.hostHeader)
                    head.headers.add(name: "User-Agent", value: "pigeon-webhooks/1")
                    head.headers.add(name: "Content-Type", value: "application/json")
                    head.headers.add(name: "Content-Length", value: String(request.body.count))
                    head.headers.add(name: "Connection", value: "close")
                    for (name, value) in request.headers { head.headers.add(name: name, value: value) }
                    // A receiver may answer and close as soon as it has the body, before the
                    // writer is done: a failed write does not hide an answer already received.
                    var writeError: (any Error)?
                    do {
                        try await outbound.write(contentsOf: [.head(head), .body(.byteBuffer(ByteBuffer(bytes: request.body))), .end(nil)])
                    } catch {
                        writeError = error
                    }
                    for try await part in inbound {
                        guard case .head(let response) = part else { continue }
                        // 1xx answers are interim (RFC 9110 section 15.2); wait for the final one.
                        if response.status.code < 200 && response.status.code != 101 { continue }
                        return WebhookResponse(status: Int(response.status.code), retryAfter: response.headers.first(name: "Retry-After"))
                    }
                    if let writeError { throw writeError }
                    throw WebhookTransportError.connectionClosed
                }
            } onCancel: {
                underlying.close(promise: nil)
            }
        } catch let error as WebhookTransportError {
            if NIODeadline.now() >= deadline { throw WebhookTransportError.timeout }
            throw error
        } catch {
            if NIODeadline.now() >= deadline { throw WebhookTransportError.timeout }
            throw Self.map(error)
        }
    }

    static func map(_ error: any Error) -> WebhookTransportError {
        if let error = error as? WebhookTransportError { return error }
        if let error = error as? IOError {
            if error.errnoCode == ECONNRESET || error.errnoCode == EPIPE { return .connectionReset }
            return .connectFailed(reason(error))
        }
        if let error = error as? NIOSSLError { return .tls("\(error)") }
        if error is BoringSSLError { return .tls("\(error)") }
        if let error = error as? HTTPParserError { return .invalidResponse("\(error)") }
        if let error = error as? ChannelError {
            switch error {
            case .ioOnClosedChannel, .alreadyClosed, .outputClosed, .eof: return .connectionClosed
            default: return .connectFailed("\(error)")
            }
        }
        return .connectFailed(reason(error))
    }

    static func reason(_ error: any Error) -> String {
        if let error = error as? IOError { return String(cString: strerror(error.errnoCode)) }
        if let error = error as? NIOConnectionError, let first = error.connectionErrors.first {
            return reason(first.error)
        }
        return "\(error)"
    }
}
