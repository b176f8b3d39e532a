import Crypto
import Foundation

/// A Standard Webhooks secret: `whsec_` followed by the base64 of the key bytes.
///
/// Secrets are never part of a description or a log line.
public struct WebhookSecret: Sendable, Hashable, CustomStringConvertible {
    /// The HMAC key.
    let key: SymmetricKey

    /// Why a secret was refused (the text never contains the secret).
    public enum ParseError: Error, Sendable, CustomStringConvertible, Equatable {
        /// It does not start with `whsec_`.
        case missingPrefix
        /// The rest is not base64.
        case notBase64
        /// Fewer than 24 or more than 64 bytes (the Standard Webhooks range).
        case badLength(Int)

        /// One line.
        public var description: String {
            switch self {
            case .missingPrefix: return "a webhook secret starts with whsec_"
            case .notBase64: return "a webhook secret is whsec_ followed by base64"
            case .badLength(let count): return "a webhook secret has 24 to 64 bytes, this one has \(count)"
            }
        }
    }

    /// Parses `whsec_<base64>`; `minimumBytes` is 24 by default, as Standard Webhooks recommends.
    public init(_ text: String, minimumBytes: Int = 24) throws(ParseError) {
        guard text.hasPrefix("whsec_") else { throw .missingPrefix }
        guard let bytes = Data(base64Encoded: String(text.dropFirst(6))) else { throw .notBase64 }
        guard bytes.count >= minimumBytes, bytes.count <= 64 else { throw .badLength(bytes.count) }
        key = SymmetricKey(data: bytes)
    }

    /// Redacted.
    public var description: String { "whsec_<redacted>" }

    /// `==` compares keys in constant time.
    public static func == (lhs: WebhookSecret, rhs: WebhookSecret) -> Bool {
        lhs.key == rhs.key
    }

    /// Hashes nothing secret.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(key.bitCount)
    }
}

/// Signs webhooks as the Standard Webhooks specification says.
///
/// The signed content is `<webhook-id>.<webhook-timestamp>.<body>`; the signature is
/// `v1,` + base64(HMAC-SHA256(key, content)). With several secrets (during a rotation's
/// grace period) the header carries one signature per secret, separated by spaces, and
/// a receiver accepts the request when any of them verifies.
public enum WebhookSigner {
    /// The `webhook-signature` value for a message.
    public static func signature(id: String, timestamp: Int64, body: [UInt8], secrets: [WebhookSecret]) -> String {
        var content = Array("\(id).\(timestamp).".utf8)
        content.append(contentsOf: body)
        return secrets.map { secret in
            let mac = HMAC<SHA256>.authenticationCode(for: content, using: secret.key)
            return "v1," + Data(mac).base64EncodedString()
        }.joined(separator: " ")
    }

    /// The three Standard Webhooks headers, in order.
    public static func headers(id: String, timestamp: Int64, body: [UInt8], secrets: [WebhookSecret]) -> [(String, String)] {
        [
            ("webhook-id", id),
            ("webhook-timestamp", String(timestamp)),
            ("webhook-signature", signature(id: id, timestamp: timestamp, body: body, secrets: secrets)),
        ]
    }
}
