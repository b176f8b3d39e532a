import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// A message the test server accepted.
public struct ReceivedMessage: Sendable {
    /// The reverse-path, without brackets.
    public var mailFrom: String
    /// The accepted forward-paths, without brackets, in RCPT order.
    public var recipients: [String]
    /// The data, un-dot-stuffed, lines joined with CRLF, without the final CRLF.CRLF.
    public var data: [UInt8]
    /// Whether some line of the data ended with a bare LF instead of CRLF (a client bug).
    public var hadBareLineFeed: Bool
    /// The MAIL parameters, e.g. `["SIZE=1234", "BODY=8BITMIME"]`.
    public var mailParameters: [String]
    /// Which connection (from 1) delivered it.
    public var connectionIndex: Int
    /// Whether that connection was encrypted when the message arrived.
    public var wasEncrypted: Bool

    /// The data as UTF-8 text.
    public var text: String { String(decoding: data, as: UTF8.self) }
}

/// What the server's handler sees of one command.
public struct SMTPCommandContext: Sendable {
    /// The verb, uppercased: `"EHLO"`, `"MAIL"`, `"RCPT"`, ...; `"CONNECT"` for the
    /// greeting and `"."` for the end of the message data.
    public var verb: String
    /// The rest of the line after the verb and a space.
    public var argument: String
    /// The whole line as received, without CRLF.
    public var line: String
    /// Which connection (from 1).
    public var connectionIndex: Int
    /// How many commands with this verb the server has seen so far, this one included (from 1).
    public var commandIndex: Int

    /// The pseudo-verb of the greeting.
    public static let greetingVerb = "CONNECT"
    /// The pseudo-verb of the end of the message data.
    public static let endOfDataVerb = "."
}

/// How the server answers one command.
public indirect enum ScriptedResponse: Sendable {
    /// What a well-behaved server says, with its side effects.
    case standard
    /// This reply instead, e.g. `"451 4.3.0 Try again later"`; several lines separated
    /// by `"\r\n"`. Side effects follow the reply's code (a 2xx to RCPT accepts it, a
    /// 354 to DATA starts the data, a 220 to STARTTLS starts TLS).
    case reply(String)
    /// These exact bytes (no CRLF added): garbage, an over-long line, several replies
    /// at once. Side effects follow the first three bytes, as for `reply`.
    case raw([UInt8])
    /// Close the connection without a reply.
    case disconnect
    /// Never answer, and ignore everything after, keeping the connection open.
    case hang
    /// The response after a delay; later commands wait their turn.
    case delayed(Duration, ScriptedResponse)
}

/// A line the server received, for asserting what a client sent.
public struct ReceivedCommand: Sendable {
    /// The line without CRLF (AUTH payloads included: it is a test server).
    public var line: String
    /// Which connection (from 1).
    public var connectionIndex: Int
    /// Whether the connection was encrypted when the line arrived.
    public var wasEncrypted: Bool
}

/// An in-process SMTP server for tests, with a scriptable reply per command.
///
/// Binds 127.0.0.1 on an ephemeral port. By default it behaves like a small Postfix:
/// EHLO with the configured extensions, STARTTLS when `tls` is set, AUTH PLAIN and
/// LOGIN when `authCredentials` is set (then MAIL needs AUTH), SIZE enforced, messages
/// kept in memory. `setHandler` overrides the reply to any command, to inject faults.
public final class TestSMTPServer: Sendable {
    /// A user name and password the server accepts.
    public struct Credentials: Sendable, Hashable {
        /// The user name.
        public var user: String
        /// The password.
        public var password: String

        /// Makes credentials.
        public init(user: String, password: String) {
            self.user = user
            self.password = password
        }
    }

    /// How the server behaves.
    public struct Configuration: Sendable {
        /// EHLO keywords after the greeting line, e.g. `["PIPELINING", "SIZE 10485760"]`.
        /// STARTTLS and AUTH are added by the server when they apply.
        public var extensions: [String]
        /// The certificate to use; STARTTLS is offered when set (and not `implicitTLS`).
        public var tls: TestTLSIdentity?
        /// TLS from the first byte (RFC 8314); needs `tls`.
        public var implicitTLS: Bool
        /// Credentials for AUTH; when set, AUTH PLAIN LOGIN is offered and MAIL needs it.
        public var authCredentials: Credentials?
        /// The name in the greeting and EHLO reply.
        public var hostname: String
        /// The SASL mechanisms announced when `authCredentials` is set (PLAIN, LOGIN and XOAUTH2 are implemented; for XOAUTH2 the password is the token).
        public var authMechanisms: [String]

        /// Makes a configuration; by default no TLS, no AUTH, PIPELINING, 8BITMIME,
        /// ENHANCEDSTATUSCODES and SIZE 10485760.
        public init(
            extensions: [String] = ["PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SIZE 10485760"],
            tls: TestTLSIdentity? = nil,
            implicitTLS: Bool = false,
            authCredentials: Credentials? = nil,
            hostname: String = "test.pigeon.invalid",
            authMechanisms: [String] = ["PLAIN", "LOGIN"]
        ) {
            self.authMechanisms = authMechanisms
            self.extensions = extensions
            self.tls = tls
            self.implicitTLS = implicitTLS
            self.authCredentials = authCredentials
            self.hostname = hostname
        }

        var maximumSize: Int? {
            for keyword in extensions {
                let words = keyword.split(separator: " ")
                if words.first?.uppercased() == "SIZE", words.count > 1, let value = Int(words[1]), value > 0 { return value }
            }
            return nil
        }
    }

    struct State: Sendable {
        var handler: @Sendable (SMTPCommandContext) -> ScriptedResponse = { _ in .standard }
        var messages: [ReceivedMessage] = []
        var commands: [ReceivedCommand] = []
        var verbCounts: [String: Int] = [:]
        var connectionCount = 0
        var channel: (any Channel)?
        var port = 0
        var openChannels: [ObjectIdentifier: any Channel] = [:]
    }

    let configuration: Configuration
    let state = Mutex(State())
    private let group: MultiThreadedEventLoopGroup
    let sslContext: NIOSSLContext?

    /// Makes a server; call `start()` to listen.
    public init(configuration: Configuration = .init()) {
        self.configuration = configuration
        self.group = MultiThreadedEventLoopGroup.singleton
        if let identity = configuration.tls,
            let certificate = try? NIOSSLCertificate(bytes: Array(identity.certificatePEM.utf8), format: .pem),
            let key = try? NIOSSLPrivateKey(bytes: Array(identity.privateKeyPEM.utf8), format: .pem)
        {
            let tls = TLSConfiguration.makeServerConfiguration(certificateChain: [.certificate(certificate)], privateKey: .privateKey(key))
            self.sslContext = try? NIOSSLContext(configuration: tls)
        } else {
            self.sslContext = nil
        }
    }

    /// Binds 127.0.0.1 on an ephemeral port.
    public func start() async throws {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    let index = state.withLock { state in
                        state.connectionCount += 1
                        state.openChannels[ObjectIdentifier(channel)] = channel
                        return state.connectionCount
                    }
                    channel.closeFuture.whenComplete { [self] _ in
                        _ = state.withLock { $0.openChannels.removeValue(forKey: ObjectIdentifier(channel)) }
                    }
                    if configuration.implicitTLS, let sslContext {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext))
                    }
                    try channel.pipeline.syncOperations.addHandler(
                        TestSMTPServerHandler(server: self, connectionIndex: index, encrypted: configuration.implicitTLS)
                    )
                }
            }
        let channel = try await bootstrap.bind(host: "127.0.0.1", port: 0).get()
        state.withLock { state in
            state.channel = channel
            state.port = channel.localAddress?.port ?? 0
        }
    }

    /// The port the server listens on (0 before `start()`).
    public var port: Int { state.withLock { $0.port } }

    /// Replaces the handler that chooses the response to each command.
    public func setHandler(_ handler: @escaping @Sendable (SMTPCommandContext) -> ScriptedResponse) {
        state.withLock { $0.handler = handler }
    }

    /// The messages accepted so far.
    public var messages: [ReceivedMessage] { state.withLock { $0.messages } }

    /// Every command line received so far, in order.
    public var receivedCommands: [ReceivedCommand] { state.withLock { $0.commands } }

    /// How many connections were accepted so far.
    public var connectionCount: Int { state.withLock { $0.connectionCount } }

    /// How many connections are open now.
    public var openConnectionCount: Int { state.withLock { $0.openChannels.count } }

    /// Waits until at least `count` messages arrived and returns them all.
    public func waitForMessages(count: Int, timeout: Duration) async throws -> [ReceivedMessage] {
        let deadline = ContinuousClock.now + timeout
        while true {
            let messages = self.messages
            if messages.count >= count { return messages }
            guard ContinuousClock.now < deadline else { throw TestSMTPServerError.timedOut(expected: count, received: messages.count) }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Closes every open connection without a word, as a server restarting would.
    public func dropConnections() async {
        let children = state.withLock { Array($0.openChannels.values) }
        for child in children { try? await child.close() }
    }

    /// Closes the listener and every open connection.
    public func stop() async throws {
        let (listener, children) = state.withLock { state in
            let result = (state.channel, Array(state.openChannels.values))
            state.channel = nil
            return result
        }
        for child in children { try? await child.close() }
        try await listener?.close()
    }

    func handler(for verb: String, argument: String, line: String, connectionIndex: Int) -> ScriptedResponse {
        let (handler, context) = state.withLock { state in
            state.verbCounts[verb, default: 0] += 1
            let context = SMTPCommandContext(
                verb: verb,
                argument: argument,
                line: line,
                connectionIndex: connectionIndex,
                commandIndex: state.verbCounts[verb, default: 1]
            )
            return (state.handler, context)
        }
        return handler(context)
    }
}

/// Errors of the test server's helpers.
public enum TestSMTPServerError: Error, CustomStringConvertible {
    /// `waitForMessages` ran out of time.
    case timedOut(expected: Int, received: Int)

    /// Says how many messages came.
    public var description: String {
        switch self {
        case .timedOut(let expected, let received): "expected \(expected) messages, received \(received)"
        }
    }
}
