import Crypto
import Foundation
import _CryptoExtras

/// Signs messages with DKIM (RFC 6376), `rsa-sha256` or `ed25519-sha256` (RFC 8463),
/// relaxed/relaxed canonicalisation.
///
/// The signed header set is RFC 6376 §5.4.1's recommendation, as far as present: From,
/// Reply-To, Subject, Date, To, Cc, Message-ID, MIME-Version, Content-Type,
/// Content-Transfer-Encoding, In-Reply-To, References, the List-* headers (RFC 2369, RFC 2919,
/// RFC 8058's List-Unsubscribe-Post) and the Resent-* headers. `From` is listed once more than
/// it occurs (§8.15, "over-signing"), so a From added in transit breaks the signature.
public struct DKIMSigner: Sendable {
    /// The signing algorithm, as written in the `a=` tag.
    public enum Algorithm: String, Sendable, Hashable {
        /// RSASSA-PKCS1-v1_5 with SHA-256 (RFC 6376 §3.3.1); keys of at least 2048 bits (RFC 8301 §3.2).
        case rsaSHA256 = "rsa-sha256"
        /// Ed25519 over the SHA-256 hash (RFC 8463 §3).
        case ed25519SHA256 = "ed25519-sha256"
    }

    enum Key: Sendable {
        case rsa(_RSA.Signing.PrivateKey)
        case ed25519(Curve25519.Signing.PrivateKey)
    }

    /// The signing domain (`d=`), in A-label form.
    public let domain: String
    /// The selector (`s=`); the public key is published at `<selector>._domainkey.<domain>`.
    public let selector: String
    let key: Key

    /// Lowercased names of the headers signed when present (RFC 6376 §5.4.1).
    public static let signedHeaderNames: [String] = [
        "from", "reply-to", "subject", "date", "to", "cc", "message-id", "mime-version", "content-type",
        "content-transfer-encoding", "in-reply-to", "references", "list-id", "list-help", "list-unsubscribe",
        "list-unsubscribe-post", "list-subscribe", "list-post", "list-owner", "list-archive", "resent-date",
        "resent-from", "resent-to", "resent-cc",
    ]

    /// Creates a signer from a PEM private key: RSA in PKCS#1 (`BEGIN RSA PRIVATE KEY`) or
    /// PKCS#8 (`BEGIN PRIVATE KEY`), or Ed25519 in PKCS#8 (RFC 8410). RSA keys under 2048 bits,
    /// encrypted keys, public keys and other key types are refused with a one-line reason.
    public init(domain: String, selector: String, privateKeyPEM: String) throws(DKIMKeyError) {
        guard let asciiDomain = IDNA.toASCII(domain.lowercased()) else {
            throw DKIMKeyError("not a valid domain name: \(domain.prefix(64))")
        }
        // RFC 6376 §3.1: selector = sub-domain *( "." sub-domain ).
        guard !selector.isEmpty, selector.split(separator: ".", omittingEmptySubsequences: false).allSatisfy({ IDNA.isLDHLabel(String($0)) })
        else {
            throw DKIMKeyError("not a valid selector (letters, digits, hyphens and dots): \(selector.prefix(64))")
        }
        self.domain = asciiDomain
        self.selector = selector
        self.key = try Self.parseKey(pem: privateKeyPEM)
    }

    /// The algorithm the key implies.
    public var algorithm: Algorithm {
        switch key {
        case .rsa: return .rsaSHA256
        case .ed25519: return .ed25519SHA256
        }
    }

    /// The DNS name of the key record, `<selector>._domainkey.<domain>` (RFC 6376 §3.6.2.1).
    public var dnsRecordName: String { "\(selector)._domainkey.\(domain)" }

    /// The TXT record to publish (RFC 6376 §3.6.1): `v=DKIM1; k=rsa; p=<SubjectPublicKeyInfo>` or
    /// `v=DKIM1; k=ed25519; p=<32-byte public key>` (RFC 8463 §4).
    public var dnsRecordValue: String {
        switch key {
        case .rsa(let rsa):
            return "v=DKIM1; k=rsa; p=" + Base64.encode(Array(rsa.publicKey.derRepresentation))
        case .ed25519(let ed):
            return "v=DKIM1; k=ed25519; p=" + Base64.encode(Array(ed.publicKey.rawRepresentation))
        }
    }

    // MARK: Keys

    private static func parseKey(pem: String) throws(DKIMKeyError) -> Key {
        guard let (label, der) = decodePEM(pem) else {
            throw DKIMKeyError("not a PEM private key")
        }
        switch label {
        case "RSA PRIVATE KEY":
            return try rsaKey(pem: pem)
        case "PRIVATE KEY":
            // RFC 8410 §3: id-Ed25519 is 1.3.101.112, DER 06 03 2B 65 70.
            if let oid = find([0x06, 0x03, 0x2B, 0x65, 0x70], in: der) {
                // RFC 8410 §7: privateKey OCTET STRING wrapping CurvePrivateKey OCTET STRING (32 octets).
                guard let start = find([0x04, 0x22, 0x04, 0x20], in: der, from: oid), start + 4 + 32 <= der.count else {
                    throw DKIMKeyError("Ed25519 key is malformed")
                }
                let seed = Array(der[(start + 4)..<(start + 36)])
                do {
                    return .ed25519(try Curve25519.Signing.PrivateKey(rawRepresentation: seed))
                } catch {
                    throw DKIMKeyError("Ed25519 key is malformed")
                }
            }
            // rsaEncryption 1.2.840.113549.1.1.1.
            if find([0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01], in: der) != nil {
                return try rsaKey(pem: pem)
            }
            throw DKIMKeyError("unsupported key type (use RSA of at least 2048 bits or Ed25519)")
        case "ENCRYPTED PRIVATE KEY":
            throw DKIMKeyError("the private key is encrypted; give an unencrypted PEM key")
        case "PUBLIC KEY", "RSA PUBLIC KEY":
            throw DKIMKeyError("this is a public key; the private key is needed")
        default:
            throw DKIMKeyError("not a PEM private key (found \(label.prefix(40)))")
        }
    }

    private static func rsaKey(pem: String) throws(DKIMKeyError) -> Key {
        let key: _RSA.Signing.PrivateKey
        do {
            key = try _RSA.Signing.PrivateKey(unsafePEMRepresentation: pem)
        } catch {
            throw DKIMKeyError("RSA key could not be read")
        }
        // RFC 8301 §3.2: signers MUST use RSA keys of at least 1024 bits; 2048 is what receivers
        // (and RFC 8301's SHOULD) expect, and Pigeon requires it.
        guard key.keySizeInBits >= 2048 else {
            throw DKIMKeyError("RSA key has \(key.keySizeInBits) bits; DKIM needs at least 2048")
        }
        return .rsa(key)
    }

    /// The label and DER bytes of the first PEM block (RFC 7468), or nil.
    static func decodePEM(_ pem: String) -> (String, [UInt8])? {
        let lines = pem.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }).map { String($0).trimmingWSP() }
        guard let begin = lines.firstIndex(where: { $0.hasPrefix("-----BEGIN ") && $0.hasSuffix("-----") }) else { return nil }
        let label = String(lines[begin].dropFirst(11).dropLast(5))
        guard let end = lines[begin...].firstIndex(of: "-----END \(label)-----") else { return nil }
        let body = lines[(begin + 1)..<end].filter { !$0.contains(":") }.joined()
        guard let der = Base64.decode(body), !der.isEmpty else { return nil }
        return (label, der)
    }

    private static func find(_ needle: [UInt8], in hay: [UInt8], from start: Int = 0) -> Int? {
        guard needle.count <= hay.count, start <= hay.count - needle.count else { return nil }
        for index in start...(hay.count - needle.count) where Array(hay[index..<index + needle.count]) == needle {
            return index
        }
        return nil
    }

    // MARK: Signing

    /// The complete `DKIM-Signature` field (folded, no trailing CRLF) for a message whose header
    /// fields are `headers` (top to bottom, each folded without CRLF) and whose body is `body`.
    func signatureField(headers: [(name: String, text: String)], body: [UInt8], timestamp: Int64) throws -> String {
        // RFC 6376 §3.7: body hash over the relaxed body (§3.4.4).
        let bodyHash = Base64.encode(Array(SHA256.hash(data: Self.relaxedBody(body))))

        // §5.4.2: each name in h= takes the next instance from the bottom.
        var signedNames: [String] = []
        for field in headers where Self.signedHeaderNames.contains(field.name.lowercased()) {
            signedNames.append(field.name.lowercased())
        }
        signedNames.append("from")  // over-signing (§8.15)

        var tags = [
            "v=1;", "a=\(algorithm.rawValue);", "c=relaxed/relaxed;", "d=\(domain);", "s=\(selector);", "t=\(timestamp);",
        ]
        tags += Self.colonList(signedNames, prefix: "h=", suffix: ";")
        tags.append("bh=\(bodyHash);")
        let unsigned = HeaderEncoding.fold(name: "DKIM-Signature", tokens: tags + ["b="])

        var input: [UInt8] = []
        var used: [String: Int] = [:]
        for name in signedNames {
            let instances = headers.enumerated().filter { $0.element.name.lowercased() == name }.map(\.offset)
            let alreadyUsed = used[name, default: 0]
            used[name] = alreadyUsed + 1
            guard alreadyUsed < instances.count else { continue }  // a non-existent instance is the null string
            input += Self.relaxedHeader(headers[instances[instances.count - 1 - alreadyUsed]].text)
            input += [13, 10]
        }
        // §3.7: the DKIM-Signature field itself, with an empty b=, and without a trailing CRLF.
        input += Self.relaxedHeader(unsigned)

        let signature: [UInt8]
        switch key {
        case .rsa(let rsa):
            signature = Array(try rsa.signature(for: SHA256.hash(data: input), padding: .insecurePKCS1v1_5).rawRepresentation)
        case .ed25519(let ed):
            // RFC 8463 §3: PureEdDSA over the SHA-256 hash of the header data.
            signature = Array(try ed.signature(for: Array(SHA256.hash(data: input))))
        }
        let encoded = Base64.encode(signature)
        var chunks: [String] = []
        var rest = Substring(encoded)
        var first = true
        while !rest.isEmpty {
            let size = first ? 62 : 72
            chunks.append(String(rest.prefix(size)))
            rest = rest.dropFirst(size)
            first = false
        }
        if let head = chunks.first {
            chunks[0] = "b=" + head
        }
        return HeaderEncoding.fold(name: "DKIM-Signature", tokens: tags + chunks)
    }

    /// `h=a:b:c;` as tokens breaking after colons (FWS is allowed around ':' in h=, §3.5).
    static func colonList(_ names: [String], prefix: String, suffix: String) -> [String] {
        var tokens: [String] = []
        var current = prefix
        for (index, name) in names.enumerated() {
            current += name + (index < names.count - 1 ? ":" : suffix)
            if current.utf8.count > 50 {
                tokens.append(current)
                current = ""
            }
        }
        if !current.isEmpty { tokens.append(current) }
        return tokens
    }

    /// RFC 6376 §3.4.2 relaxed header canonicalisation of one field (no CRLF appended).
    static func relaxedHeader(_ field: String) -> [UInt8] {
        let bytes = Array(field.utf8)
        guard let colon = bytes.firstIndex(of: UInt8(ascii: ":")) else { return bytes }
        var name = Array(bytes[..<colon])
        while let last = name.last, last == 32 || last == 9 { name.removeLast() }
        var out: [UInt8] = name.map { $0 >= 65 && $0 <= 90 ? $0 + 32 : $0 }
        out.append(UInt8(ascii: ":"))
        var value: [UInt8] = []
        var pendingSpace = false
        for b in bytes[(colon + 1)...] {
            if b == 13 || b == 10 { continue }  // unfold
            if b == 32 || b == 9 {
                pendingSpace = true
                continue
            }
            if pendingSpace && !value.isEmpty { value.append(32) }
            pendingSpace = false
            value.append(b)
        }
        return out + value
    }

    /// RFC 6376 §3.4.4 relaxed body canonicalisation.
    static func relaxedBody(_ body: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(body.count)
        var pendingSpace = false
        var emptyLinesPending = 0
        var lineHasContent = false
        var line: [UInt8] = []
        var index = 0
        let count = body.count
        func endLine() {
            if line.isEmpty {
                emptyLinesPending += 1
            } else {
                for _ in 0..<emptyLinesPending { out += [13, 10] }
                emptyLinesPending = 0
                out += line
                out += [13, 10]
            }
            line.removeAll(keepingCapacity: true)
            pendingSpace = false
            lineHasContent = false
        }
        while index < count {
            let b = body[index]
            if b == 13 && index + 1 < count && body[index + 1] == 10 {
                endLine()
                index += 2
                continue
            }
            if b == 32 || b == 9 {
                pendingSpace = true
            } else {
                if pendingSpace { line.append(32) }
                pendingSpace = false
                line.append(b)
                lineHasContent = true
            }
            index += 1
        }
        if !line.isEmpty || lineHasContent { endLine() }
        return out
    }
}
