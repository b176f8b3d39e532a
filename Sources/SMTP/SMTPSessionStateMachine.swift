/// The client side of an SMTP session up to the first transaction: greeting, EHLO (or
/// HELO), STARTTLS and AUTH, as a pure state machine.
///
/// Feed it each reply and each transport event; it answers with the one thing the
/// transport must do next. It never touches a socket, so every path is tested with
/// values (see `SMTPTests`). Policy, from DESIGN.md:
/// - `tlsPolicy == .required`: STARTTLS must be offered and answered with 220, or the
///   session fails with `.tls` (transient: a relay's misconfiguration may be fixed)
///   before any AUTH or MAIL.
/// - `.opportunistic`: STARTTLS when offered; a refused STARTTLS continues in plain
///   text, but the transport never falls back after a failed handshake.
/// - AUTH only on an encrypted connection, unless `allowsPlaintextAuthentication`
///   (the caller sets it only for `tls=none` to a loopback relay).
public struct SMTPSessionStateMachine: Sendable {
    /// How TLS is used on a connection that did not start with TLS.
    public enum TLSPolicy: String, Sendable, Hashable {
        /// STARTTLS must succeed (RFC 3207).
        case required
        /// STARTTLS when offered (RFC 7435).
        case opportunistic
        /// Never STARTTLS.
        case none
    }

    /// A user name and password for AUTH PLAIN or LOGIN, or a user name and an OAuth 2.0
    /// access token for XOAUTH2.
    public struct Credentials: Sendable, Hashable {
        /// The authentication identity.
        public var username: String
        /// The password (the access token for XOAUTH2); never in a transcript or a description.
        public var password: String

        /// Makes credentials.
        public init(username: String, password: String) {
            self.username = username
            self.password = password
        }
    }

    /// What the session needs to know.
    public struct Configuration: Sendable, Hashable {
        /// The name sent with EHLO and HELO.
        public var heloName: String
        /// STARTTLS policy; ignored when `isImplicitTLS`.
        public var tlsPolicy: TLSPolicy
        /// The connection is TLS from its first byte (RFC 8314).
        public var isImplicitTLS: Bool
        /// Credentials, when the relay needs AUTH.
        public var credentials: Credentials?
        /// AUTH may be sent without TLS (only `tls=none` to loopback).
        public var allowsPlaintextAuthentication: Bool
        /// The SASL mechanisms to use, most preferred first; `PLAIN`, `LOGIN` and `XOAUTH2`
        /// are implemented.
        public var authMechanisms: [String]

        /// Makes a configuration.
        public init(
            heloName: String,
            tlsPolicy: TLSPolicy,
            isImplicitTLS: Bool = false,
            credentials: Credentials? = nil,
            allowsPlaintextAuthentication: Bool = false,
            authMechanisms: [String] = ["PLAIN", "LOGIN"]
        ) {
            self.authMechanisms = authMechanisms
            self.heloName = heloName
            self.tlsPolicy = tlsPolicy
            self.isImplicitTLS = isImplicitTLS
            self.credentials = credentials
            self.allowsPlaintextAuthentication = allowsPlaintextAuthentication
        }
    }

    /// What the transport must do next.
    public enum Action: Sendable, Hashable {
        /// Write the command and wait for its reply.
        case send(SMTPCommand)
        /// Discard every byte received so far (RFC 3207 section 6: plaintext that came
        /// early must not be trusted), start the TLS handshake, and call
        /// `tlsEstablished()` when it completes.
        case startTLS
        /// The session is ready for mail transactions.
        case ready(SMTPCapabilities)
        /// The session failed; close the connection.
        case fail(SMTPSessionError)
    }

    private enum State: Sendable, Hashable {
        case greeting
        case ehlo(afterTLS: Bool)
        case helo
        case startTLS
        case handshake
        case authPlain
        case authLogin(step: Int)
        case authXOAuth2
        /// The server answered the token with a 334 error challenge and was sent the
        /// empty response that ends the exchange; its final reply is awaited.
        case authXOAuth2Refused(challenge: String)
        case ready
        case failed
    }

    private let configuration: Configuration
    private var state: State = .greeting
    /// Whether the connection is encrypted (implicit TLS, or after STARTTLS).
    public private(set) var isEncrypted: Bool
    /// The capabilities from the latest EHLO reply.
    public private(set) var capabilities = SMTPCapabilities()

    /// Makes a machine waiting for the greeting.
    public init(configuration: Configuration) {
        self.configuration = configuration
        self.isEncrypted = configuration.isImplicitTLS
    }

    /// The phase whose timeout applies now.
    public var phase: SMTPPhase {
        switch state {
        case .greeting: .greeting
        case .ehlo, .helo: .ehlo
        case .startTLS, .handshake: .startTLS
        case .authPlain, .authLogin, .authXOAuth2, .authXOAuth2Refused: .auth
        case .ready, .failed: .mail
        }
    }

    /// Handles a complete reply from the server.
    public mutating func receive(_ reply: SMTPReply) -> Action {
        switch state {
        case .greeting:
            guard reply.code == 220 else {
                return fail(.negativeReply(reply, during: "greeting"))
            }
            state = .ehlo(afterTLS: false)
            return .send(.ehlo(configuration.heloName))

        case .ehlo(let afterTLS):
            if reply.code == 250 {
                capabilities = SMTPCapabilities(ehloReply: reply)
                return afterCapabilities()
            }
            // RFC 5321 section 3.2: a server that does not know EHLO answers 5xx; try HELO.
            if reply.isPermanentNegative && !afterTLS {
                state = .helo
                return .send(.helo(configuration.heloName))
            }
            return fail(.negativeReply(reply, during: "EHLO"))

        case .helo:
            guard reply.code == 250 else { return fail(.negativeReply(reply, during: "HELO")) }
            capabilities = SMTPCapabilities()
            return afterCapabilities()

        case .startTLS:
            if reply.code == 220 {
                state = .handshake
                return .startTLS
            }
            if reply.code == 421 { return fail(.negativeReply(reply, during: "STARTTLS")) }
            if configuration.tlsPolicy == .required {
                return fail(SMTPSessionError(kind: .tls, reply: reply, isTransient: true, message: "STARTTLS refused"))
            }
            return proceedToAuthentication()

        case .handshake:
            return fail(SMTPSessionError(kind: .protocolViolation, reply: reply, isTransient: true, message: "reply during TLS handshake"))

        case .authPlain:
            if reply.code == 235 { return becomeReady() }
            return fail(authFailure(reply))

        case .authLogin(let step):
            if reply.code == 235 && step == 2 { return becomeReady() }
            guard reply.code == 334, let credentials = configuration.credentials, step < 2 else {
                return fail(authFailure(reply))
            }
            state = .authLogin(step: step + 1)
            let secret = step == 0 ? credentials.username : credentials.password
            return .send(.authResponse(SMTPBase64.encode(Array(secret.utf8))))

        case .authXOAuth2:
            if reply.code == 235 { return becomeReady() }
            guard reply.code == 334 else { return fail(authFailure(reply)) }
            // The token was refused: the 334 carries a base64 JSON error, and the client
            // sends an empty line before the server's final (5xx) reply.
            state = .authXOAuth2Refused(challenge: Self.challengeText(reply))
            return .send(.authResponse(""))

        case .authXOAuth2Refused(let challenge):
            // A refused token is transient, unlike a refused password: access tokens
            // expire within hours and whoever writes them refreshes them.
            return fail(
                SMTPSessionError(
                    kind: .authentication,
                    reply: reply,
                    isTransient: true,
                    message: "XOAUTH2 token refused with \(reply.code)\(challenge.isEmpty ? "" : " (\(challenge))")"
                )
            )

        case .ready, .failed:
            return fail(SMTPSessionError(kind: .protocolViolation, reply: reply, isTransient: true, message: "unexpected reply"))
        }
    }

    /// The TLS handshake after STARTTLS completed: EHLO again (RFC 3207 section 4.2).
    public mutating func tlsEstablished() -> Action {
        guard state == .handshake else {
            return fail(SMTPSessionError(kind: .protocolViolation, isTransient: true, message: "TLS established out of order"))
        }
        isEncrypted = true
        capabilities = SMTPCapabilities()
        state = .ehlo(afterTLS: true)
        return .send(.ehlo(configuration.heloName))
    }

    private mutating func afterCapabilities() -> Action {
        if !isEncrypted {
            switch configuration.tlsPolicy {
            case .required:
                guard capabilities.supportsStartTLS else {
                    return fail(SMTPSessionError(kind: .tls, isTransient: true, message: "STARTTLS required but not offered"))
                }
                state = .startTLS
                return .send(.startTLS)
            case .opportunistic where capabilities.supportsStartTLS:
                state = .startTLS
                return .send(.startTLS)
            case .opportunistic, .none:
                break
            }
        }
        return proceedToAuthentication()
    }

    private mutating func proceedToAuthentication() -> Action {
        guard let credentials = configuration.credentials else { return becomeReady() }
        guard isEncrypted || configuration.allowsPlaintextAuthentication else {
            return fail(SMTPSessionError(kind: .tls, isTransient: true, message: "refusing to send credentials without TLS"))
        }
        let mechanisms = capabilities.authMechanisms
        for mechanism in configuration.authMechanisms where mechanisms.contains(mechanism.uppercased()) {
            switch mechanism.uppercased() {
            case "PLAIN":
                state = .authPlain
                // RFC 4616: authzid NUL authcid NUL passwd.
                let payload = [0] + Array(credentials.username.utf8) + [0] + Array(credentials.password.utf8)
                return .send(.authPlain(initialResponse: SMTPBase64.encode(payload)))
            case "LOGIN":
                state = .authLogin(step: 0)
                return .send(.authLogin)
            case "XOAUTH2":
                state = .authXOAuth2
                // user=<user>^Aauth=Bearer <token>^A^A, base64 (Google's and Microsoft's SASL XOAUTH2).
                let payload = "user=\(credentials.username)\u{1}auth=Bearer \(credentials.password)\u{1}\u{1}"
                return .send(.authXOAuth2(initialResponse: SMTPBase64.encode(Array(payload.utf8))))
            default:
                continue
            }
        }
        let wanted = configuration.authMechanisms.map { $0.uppercased() }.joined(separator: ", ")
        let message = mechanisms.isEmpty ? "server offers no AUTH" : "server offers no AUTH mechanism we use (\(wanted))"
        return fail(SMTPSessionError(kind: .authentication, isTransient: true, message: message))
    }

    /// The decoded error of an XOAUTH2 334 challenge (JSON such as
    /// `{"status":"401","schemes":"Bearer",...}`), printable ASCII only, at most 200 characters.
    static func challengeText(_ reply: SMTPReply) -> String {
        guard let line = reply.lines.first, let bytes = SMTPBase64.decode(line) else { return "" }
        return String(decoding: bytes.filter { (0x20..<0x7F).contains($0) }.prefix(200), as: UTF8.self)
    }

    private func authFailure(_ reply: SMTPReply) -> SMTPSessionError {
        if reply.isTransientNegative || reply.isPermanentNegative {
            return .negativeReply(reply, kind: .authentication, during: "AUTH")
        }
        return SMTPSessionError(kind: .protocolViolation, reply: reply, isTransient: true, message: "unexpected reply \(reply.code) during AUTH")
    }

    private mutating func becomeReady() -> Action {
        state = .ready
        return .ready(capabilities)
    }

    private mutating func fail(_ error: SMTPSessionError) -> Action {
        state = .failed
        return .fail(error)
    }
}
