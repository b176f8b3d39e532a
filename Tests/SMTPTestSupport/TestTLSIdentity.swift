import Crypto
import Foundation
import SwiftASN1
import X509

/// A throw-away certificate authority and a server certificate it signed, for
/// `localhost` and `127.0.0.1`, made when a test runs.
///
/// Generated in-process with swift-certificates and P-256 keys rather than by running
/// `openssl`: no external binary to find on CI, no files to parse, and well under a
/// millisecond. The CA's PEM is written to a temporary file so that a client trusts
/// it through `caFile`, the way an operator would use `PIGEON_SMTP_CA_FILE`.
public struct TestTLSIdentity: Sendable {
    /// The CA certificate, PEM.
    public var caPEM: String
    /// A file holding `caPEM`, for `SMTPRelayConfiguration.caFile`.
    public var caPEMPath: String
    /// The server certificate, PEM.
    public var certificatePEM: String
    /// The server's private key, PEM.
    public var privateKeyPEM: String

    /// Makes a CA and a server certificate for the given names (DNS names and IPv4
    /// addresses), valid from an hour ago for a day.
    public static func generate(names: [String] = ["localhost", "127.0.0.1"]) throws -> TestTLSIdentity {
        let now = Date()
        let notBefore = now.addingTimeInterval(-3600)
        let notAfter = now.addingTimeInterval(86400)
        let caKey = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let caName = try DistinguishedName {
            CommonName("Pigeon Test CA")
        }
        let ca = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: caKey.publicKey,
            notValidBefore: notBefore,
            notValidAfter: notAfter,
            issuer: caName,
            subject: caName,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            },
            issuerPrivateKey: caKey
        )
        let serverKey = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let alternativeNames = names.map { name -> GeneralName in
            let octets = name.split(separator: ".").compactMap { UInt8($0) }
            if octets.count == 4 && name.split(separator: ".").count == 4 {
                return .ipAddress(ASN1OctetString(contentBytes: ArraySlice(octets)))
            }
            return .dnsName(name)
        }
        let server = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: serverKey.publicKey,
            notValidBefore: notBefore,
            notValidAfter: notAfter,
            issuer: caName,
            subject: try DistinguishedName { CommonName(names.first ?? "localhost") },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames(alternativeNames)
            },
            issuerPrivateKey: caKey
        )
        let caPEM = try ca.serializeAsPEM().pemString
        let path = FileManager.default.temporaryDirectory
            .appendingPathComponent("pigeon-test-ca-\(UUID().uuidString).pem").path
        try Data(caPEM.utf8).write(to: URL(fileURLWithPath: path))
        return TestTLSIdentity(
            caPEM: caPEM,
            caPEMPath: path,
            certificatePEM: try server.serializeAsPEM().pemString,
            privateKeyPEM: try serverKey.serializeAsPEM().pemString
        )
    }
}
