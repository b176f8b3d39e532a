import Foundation

/// How the client uses TLS with the relay (DESIGN.md, "The user-facing contract").
public enum SMTPTLSMode: String, Sendable, Hashable {
    /// `smtps://`: TLS from the first byte (RFC 8314), always verified.
    case implicit
    /// STARTTLS must be offered and succeed with a verified certificate before AUTH or MAIL.
    case required
    /// STARTTLS when offered, without requiring a verified certificate (RFC 7435),
    /// unless credentials are configured: AUTH is only sent after a verified handshake.
    case opportunistic
    /// Plain text. AUTH is allowed only to a loopback relay.
    case none
}

/// Per-phase timeouts (RFC 5321 section 4.5.3.2), defaulting to Postfix's `smtp_*_timeout`.
public struct SMTPTimeouts: Sendable, Hashable {
    /// TCP connect (Postfix `smtp_connect_timeout`, 30s).
    public var connect: Duration
    /// The 220 greeting (`smtp_helo_timeout`, 300s).
    public var greeting: Duration
    /// The reply to EHLO/HELO, and to AUTH (`smtp_helo_timeout`, 300s).
    public var ehlo: Duration
    /// The reply to STARTTLS and the TLS handshake (`smtp_starttls_timeout`, 300s).
    public var startTLS: Duration
    /// The reply to MAIL (`smtp_mail_timeout`, 300s).
    public var mail: Duration
    /// The reply to RCPT (`smtp_rcpt_timeout`, 300s).
    public var rcpt: Duration
    /// The reply to DATA (`smtp_data_init_timeout`, 120s).
    public var data: Duration
    /// Each write of message data (`smtp_data_xfer_timeout`, 180s).
    public var dataBlock: Duration
    /// The reply to the end of the data (`smtp_data_done_timeout`, 600s).
    public var dataDone: Duration
    /// The reply to RSET (`smtp_rset_timeout`, 20s).
    public var rset: Duration
    /// The reply to QUIT (`smtp_quit_timeout`, 300s; we use 10s, nothing waits on it).
    public var quit: Duration
    /// How long an unused pooled connection stays open (`smtp_connection_cache_time_limit`, 2s).
    public var idle: Duration

    /// Makes timeouts; every parameter defaults to Postfix's value.
    public init(
        connect: Duration = .seconds(30),
        greeting: Duration = .seconds(300),
        ehlo: Duration = .seconds(300),
        startTLS: Duration = .seconds(300),
        mail: Duration = .seconds(300),
        rcpt: Duration = .seconds(300),
        data: Duration = .seconds(120),
        dataBlock: Duration = .seconds(180),
        dataDone: Duration = .seconds(600),
        rset: Duration = .seconds(20),
        quit: Duration = .seconds(10),
        idle: Duration = .seconds(2)
    ) {
        self.connect = connect
        self.greeting = greeting
        self.ehlo = ehlo
        self.startTLS = startTLS
        self.mail = mail
        self.rcpt = rcpt
        self.data = data
        self.dataBlock = dataBlock
        self.dataDone = dataDone
        self.rset = rset
        self.quit = quit
        self.idle = idle
    }

    /// Postfix's defaults.
    public static let `default` = SMTPTimeouts()

    /// Every timeout set to `duration` (idle too), for tests.
    public static func all(_ duration: Duration) -> SMTPTimeouts {
        SMTPTimeouts(
            connect: duration,
            greeting: duration,
            ehlo: duration,
            startTLS: duration,
            mail: duration,
            rcpt: duration,
            data: duration,
            dataBlock: duration,
            dataDone: duration,
            rset: duration,
            quit: duration,
            idle: duration
        )
    }
}

/// A configuration that cannot work; the message names the problem, never the password.
public struct SMTPConfigurationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What is wrong.
    public var message: String

    /// Makes an error.
    public init(message: String) { self.message = message }

    /// The message.
    public var description: String { message }
}

/// Where and how to reach the one relay Pigeon sends through.
///
/// Usually made from `PIGEON_SMTP_URL` with `init(url:caFile:)`.
public struct SMTPRelayConfiguration: Sendable, Hashable {
    /// The relay's host name or IP address (no brackets for IPv6).
    public var host: String
    /// The relay's port.
    public var port: Int
    /// How TLS is used.
    public var tlsMode: SMTPTLSMode
    /// The AUTH user, when the relay needs AUTH.
    public var username: String?
    /// The AUTH password.
    public var password: String?
    /// A PEM bundle of trusted CA certificates; nil for the system trust store.
    public var caFile: String?
    /// The name sent with EHLO. Defaults to `localhost`: Pigeon talks to one relay that
    /// knows it, and a wrong name is worse than an honest placeholder. Set it to the
    /// host's public name when the relay checks it.
    public var heloName: String
    /// Per-phase timeouts.
    public var timeouts: SMTPTimeouts
    /// The most connections open to the relay at once.
    public var maxConnections: Int
    /// The SASL mechanisms to use when the relay offers them, most preferred first:
    /// `PLAIN` (RFC 4616), `LOGIN` and `XOAUTH2` (an OAuth 2.0 access token as the
    /// password) are implemented. The URL's `auth=` picks one.
    public var authMechanisms: [String] = ["PLAIN", "LOGIN"]
    /// XOAUTH2: a file holding the access token, read again for every new connection,
    /// so that whatever refreshes the token (a sidecar, a cron job) only rewrites the
    /// file. Used instead of `password`. The URL's `token_file=`.
    public var tokenFile: String?
    /// The most messages sent over one connection before it is closed (Postfix
    /// `smtp_connection_reuse_count_limit`; 0 is no limit).
    public var maxMessagesPerConnection: Int

    /// Makes a configuration from parts; no URL needed.
    public init(
        host: String,
        port: Int,
        tlsMode: SMTPTLSMode,
        username: String? = nil,
        password: String? = nil,
        caFile: String? = nil,
        heloName: String = "localhost",
        timeouts: SMTPTimeouts = .default,
        maxConnections: Int = 8,
        maxMessagesPerConnection: Int = 100
    ) {
        self.host = host
        self.port = port
        self.tlsMode = tlsMode
        self.username = username
        self.password = password
        self.caFile = caFile
        self.heloName = heloName
        self.timeouts = timeouts
        self.maxConnections = maxConnections
        self.maxMessagesPerConnection = maxMessagesPerConnection
    }

    /// Parses `smtp://user:pass@host:587?tls=required|opportunistic|none` or `smtps://host:465`.
    ///
    /// `tls` defaults to `required` when the URL has credentials, else `opportunistic`.
    /// Ports default to 25 (smtp) and 465 (smtps). User and password are
    /// percent-decoded. Refused: another scheme, a missing host, a bad port, an unknown
    /// `tls` value or query parameter, `smtps` with a `tls` other than `implicit`, and
    /// `tls=none` with credentials to a host that is not loopback (DESIGN.md: plain text
    /// AUTH only to loopback).
    ///
    /// `auth=plain|login|xoauth2` uses that SASL mechanism only (by default PLAIN, else
    /// LOGIN). With `auth=xoauth2` the password is the OAuth 2.0 access token, or
    /// `token_file=/path` names a file holding it (percent-encoded like the rest).
    public init(url: String, caFile: String? = nil) throws(SMTPConfigurationError) {
        guard let colon = url.firstIndex(of: ":"), url[colon...].hasPrefix("://") else {
            throw SMTPConfigurationError(message: "PIGEON_SMTP_URL must start with smtp:// or smtps://")
        }
        let scheme = url[..<colon].lowercased()
        guard scheme == "smtp" || scheme == "smtps" else {
            throw SMTPConfigurationError(message: "PIGEON_SMTP_URL scheme must be smtp or smtps, not \(scheme)")
        }
        var rest = url[url.index(colon, offsetBy: 3)...]
        var query: Substring = ""
        if let questionMark = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: questionMark)...]
            rest = rest[..<questionMark]
        }
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        guard !rest.contains("/") else { throw SMTPConfigurationError(message: "PIGEON_SMTP_URL must not have a path") }

        var username: String?
        var password: String?
        var hostPort = rest
        if let at = rest.lastIndex(of: "@") {
            let userInfo = rest[..<at]
            hostPort = rest[rest.index(after: at)...]
            let parts = userInfo.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            username = try Self.percentDecode(parts[0])
            password = parts.count > 1 ? try Self.percentDecode(parts[1]) : nil
            if username?.isEmpty == true { throw SMTPConfigurationError(message: "PIGEON_SMTP_URL has an empty user name") }
        }

        var host: String
        var portText: Substring?
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else {
                throw SMTPConfigurationError(message: "PIGEON_SMTP_URL has an unclosed [ in the host")
            }
            host = String(hostPort[hostPort.index(after: hostPort.startIndex)..<close])
            let after = hostPort[hostPort.index(after: close)...]
            if after.hasPrefix(":") {
                portText = after.dropFirst()
            } else if !after.isEmpty {
                throw SMTPConfigurationError(message: "PIGEON_SMTP_URL has text after the host")
            }
        } else if let colon = hostPort.firstIndex(of: ":") {
            host = String(hostPort[..<colon])
            portText = hostPort[hostPort.index(after: colon)...]
        } else {
            host = String(hostPort)
        }
        host = host.lowercased()
        guard !host.isEmpty else { throw SMTPConfigurationError(message: "PIGEON_SMTP_URL has no host") }
        var port = scheme == "smtps" ? 465 : 25
        if let portText {
            guard let parsed = Int(portText), (1...65535).contains(parsed) else {
                throw SMTPConfigurationError(message: "PIGEON_SMTP_URL has an invalid port")
            }
            port = parsed
        }

        var tlsValue: String?
        var authValue: String?
        var tokenFile: String?
        for item in query.split(separator: "&") where !item.isEmpty {
            let pair = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard pair.count == 2 else {
                throw SMTPConfigurationError(message: "PIGEON_SMTP_URL parameter \(pair[0]) needs a value")
            }
            switch pair[0] {
            case "tls": tlsValue = String(pair[1]).lowercased()
            case "auth": authValue = String(pair[1]).lowercased()
            case "token_file": tokenFile = try Self.percentDecode(pair[1])
            default:
                throw SMTPConfigurationError(
                    message: "PIGEON_SMTP_URL has an unknown parameter \(pair[0]); the known ones are tls=, auth= and token_file="
                )
            }
        }
        var authMechanisms = ["PLAIN", "LOGIN"]
        if let authValue {
            guard ["plain", "login", "xoauth2"].contains(authValue) else {
                throw SMTPConfigurationError(message: "PIGEON_SMTP_URL: auth must be plain, login or xoauth2")
            }
            guard username != nil else {
                throw SMTPConfigurationError(message: "PIGEON_SMTP_URL: auth=\(authValue) needs a user name (smtp://user@host)")
            }
            authMechanisms = [authValue.uppercased()]
        }
        if authValue == "xoauth2" {
            guard (password == nil) != (tokenFile == nil) else {
                throw SMTPConfigurationError(
                    message: "PIGEON_SMTP_URL: auth=xoauth2 takes the access token as the password or from token_file=, one of them"
                )
            }
        } else if tokenFile != nil {
            throw SMTPConfigurationError(message: "PIGEON_SMTP_URL: token_file= is for auth=xoauth2")
        }
        if tokenFile?.isEmpty == true { throw SMTPConfigurationError(message: "PIGEON_SMTP_URL: token_file= is empty") }
        let hasCredentials = username != nil
        let tlsMode: SMTPTLSMode
        if scheme == "smtps" {
            guard tlsValue == nil || tlsValue == "implicit" else {
                throw SMTPConfigurationError(message: "PIGEON_SMTP_URL: smtps:// is always implicit TLS; drop tls=\(tlsValue ?? "")")
            }
            tlsMode = .implicit
        } else if let tlsValue {
            guard let mode = SMTPTLSMode(rawValue: tlsValue), mode != .implicit else {
                throw SMTPConfigurationError(message: "PIGEON_SMTP_URL: tls must be required, opportunistic or none (use smtps:// for implicit TLS)")
            }
            tlsMode = mode
        } else {
            tlsMode = hasCredentials ? .required : .opportunistic
        }
        if tlsMode == .none && hasCredentials && !Self.isLoopback(host) {
            throw SMTPConfigurationError(message: "PIGEON_SMTP_URL: tls=none with credentials is allowed only to a loopback relay")
        }
        self.init(host: host, port: port, tlsMode: tlsMode, username: username, password: password, caFile: caFile)
        self.authMechanisms = authMechanisms
        self.tokenFile = tokenFile
    }

    /// The URL without the password, for logs: `smtp://user:***@host:587?tls=required`.
    public var redactedDescription: String {
        let scheme = tlsMode == .implicit ? "smtps" : "smtp"
        var userInfo = ""
        if let username {
            userInfo = Self.percentEncode(username) + (password == nil ? "" : ":***") + "@"
        }
        let hostText = host.contains(":") ? "[\(host)]" : host
        var parameters: [String] = tlsMode == .implicit ? [] : ["tls=\(tlsMode.rawValue)"]
        if authMechanisms.count == 1, let mechanism = authMechanisms.first { parameters.append("auth=\(mechanism.lowercased())") }
        if let tokenFile { parameters.append("token_file=\(Self.percentEncode(tokenFile))") }
        let query = parameters.isEmpty ? "" : "?" + parameters.joined(separator: "&")
        return "\(scheme)://\(userInfo)\(hostText):\(port)\(query)"
    }

    /// `"host:port"`, as reported in `SMTPSendResult.nextHop`.
    public var nextHop: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// Whether `host` is a loopback name or address: `localhost`, 127.0.0.0/8, `::1`.
    public static func isLoopback(_ host: String) -> Bool {
        let host = host.lowercased()
        if host == "localhost" || host.hasSuffix(".localhost") || host == "::1" || host == "0:0:0:0:0:0:0:1" { return true }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }

    /// The session's configuration with the secret as of now: `password`, or the
    /// access token read from `tokenFile` (a file that cannot be read, or that holds no
    /// token, is a transient authentication error naming the file, never its content).
    func currentSessionConfiguration() throws(SMTPSessionError) -> SMTPSessionStateMachine.Configuration {
        guard let tokenFile else { return sessionConfiguration }
        let text: String
        do {
            text = try String(contentsOfFile: tokenFile, encoding: .utf8)
        } catch {
            throw SMTPSessionError(kind: .authentication, isTransient: true, message: "cannot read the XOAUTH2 token_file \(tokenFile)")
        }
        let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
        // An access token is printable ASCII without spaces; anything else would corrupt the SASL message.
        guard !token.isEmpty, token.utf8.allSatisfy({ (0x21..<0x7F).contains($0) }) else {
            throw SMTPSessionError(kind: .authentication, isTransient: true, message: "the XOAUTH2 token_file \(tokenFile) holds no access token")
        }
        var configuration = sessionConfiguration
        configuration.credentials?.password = token
        return configuration
    }

    var sessionConfiguration: SMTPSessionStateMachine.Configuration {
        let credentials = username.map { SMTPSessionStateMachine.Credentials(username: $0, password: password ?? "") }
        let policy: SMTPSessionStateMachine.TLSPolicy =
            switch tlsMode {
            case .implicit, .required: .required
            case .opportunistic: .opportunistic
            case .none: .none
            }
        return SMTPSessionStateMachine.Configuration(
            heloName: heloName,
            tlsPolicy: policy,
            isImplicitTLS: tlsMode == .implicit,
            credentials: credentials,
            allowsPlaintextAuthentication: tlsMode == .none && Self.isLoopback(host),
            authMechanisms: authMechanisms
        )
    }

    private static func percentDecode(_ text: Substring) throws(SMTPConfigurationError) -> String {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next(), let low = iterator.next(),
                let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16)
            else { throw SMTPConfigurationError(message: "PIGEON_SMTP_URL has a bad percent escape in its user info") }
            bytes.append(value)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func percentEncode(_ text: String) -> String {
        var result = ""
        for byte in text.utf8 {
            let scalar = Unicode.Scalar(byte)
            if byte < 0x80 && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || "-._~".unicodeScalars.contains(scalar)) {
                result.unicodeScalars.append(scalar)
            } else {
                result += "%" + String(byte, radix: 16, uppercase: true).leftPadded
            }
        }
        return result
    }
}

extension String {
    fileprivate var leftPadded: String { count == 1 ? "0" + self : self }
}
