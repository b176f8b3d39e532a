import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import SMTP
import SwiftASN1
import X509

/// What a relay offers, found by `SMTPClient.probe` (for `pigeon check`).
public struct SMTPProbeReport: Sendable {
    /// The relay's certificate, as presented.
    public struct Certificate: Sendable {
        /// The subject's distinguished name, RFC 4514 text.
        public var subject: String
        /// The issuer's distinguished name.
        public var issuer: String
        /// The end of its validity.
        public var notValidAfter: Date
        /// Whether the chain was verified (against PIGEON_SMTP_CA_FILE or the system store).
        public var verified: Bool
    }

    /// `host:port`.
    public var nextHop: String
    /// The TLS version, e.g. `TLS 1.3`; nil for a plain-text session.
    public var tlsVersion: String?
    /// The certificate, when TLS was used.
    public var certificate: Certificate?
    /// The EHLO keywords with their parameters, as the relay offered them (after STARTTLS when TLS was started).
    public var capabilities: [String]
    /// Whether AUTH was done: nil when the URL has no credentials, true when it was accepted.
    public var authenticated: Bool?
    /// The session's transcript (AUTH redacted).
    public var transcript: [String]
}

extension SMTPClient {
    /// Connects to the relay as a delivery would (greeting, EHLO, STARTTLS, AUTH), then
    /// sends QUIT instead of MAIL FROM: no mail is sent.
    ///
    /// Uses the same connection code and state machine as `send`, so it fails exactly
    /// where a delivery would: `tls=required` without STARTTLS is a `.tls` error, a
    /// refused password an `.authentication` error with the reply.
    public static func probe(
        configuration: SMTPRelayConfiguration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "pigeon.smtp")
    ) async throws(SMTPClientError) -> SMTPProbeReport {
        let tlsContext = try makeTLSContext(configuration).get()
        let connection = try await SMTPConnection.open(
            configuration: configuration,
            tlsContext: tlsContext,
            eventLoopGroup: eventLoopGroup,
            logger: logger
        )
        let capabilities = await connection.capabilities
        let channel = connection.channel
        let version = try? await channel.nioSSL_tlsVersion().get()
        let peer = try? await channel.nioSSL_peerCertificate().get()
        var certificate: SMTPProbeReport.Certificate?
        if let peer, let der = try? peer.toDERBytes(), let parsed = try? X509.Certificate(derEncoded: der) {
            let verified = !(configuration.tlsMode == .opportunistic && configuration.username == nil)
            certificate = .init(
                subject: parsed.subject.description,
                issuer: parsed.issuer.description,
                notValidAfter: parsed.notValidAfter,
                verified: verified
            )
        }
        await connection.quit()
        let transcript = await connection.transcript
        return SMTPProbeReport(
            nextHop: configuration.nextHop,
            tlsVersion: (version ?? nil).map(Self.name),
            certificate: certificate,
            capabilities: capabilities.keywords.keys.sorted().map { keyword in
                ([keyword] + (capabilities.keywords[keyword] ?? [])).joined(separator: " ")
            },
            authenticated: configuration.username == nil ? nil : true,
            transcript: transcript
        )
    }

    static func name(_ version: TLSVersion) -> String {
        switch version {
        case .tlsv1: "TLS 1.0"
        case .tlsv11: "TLS 1.1"
        case .tlsv12: "TLS 1.2"
        case .tlsv13: "TLS 1.3"
        }
    }
}
