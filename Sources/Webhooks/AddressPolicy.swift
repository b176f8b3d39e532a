import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An IPv4 or IPv6 address.
public enum IPAddress: Sendable, Hashable, CustomStringConvertible {
    /// An IPv4 address, in host order.
    case v4(UInt32)
    /// An IPv6 address: 16 bytes in network order.
    case v6([UInt8])

    /// Parses a host the way a URL parser does (WHATWG URL, "IPv4 parser", and `inet_aton`):
    /// `127.0.0.1`, but also `127.1`, `2130706433`, `0x7f000001`, `0177.0.0.1`; or an IPv6
    /// literal with or without brackets. Nil for a domain name or anything else.
    public init?(host: String) {
        var text = host
        if text.hasPrefix("[") && text.hasSuffix("]") { text = String(text.dropFirst().dropLast()) }
        if text.contains(":") {
            guard !text.contains("%") else { return nil }  // zone ids are never a webhook target
            var storage = in6_addr()
            guard inet_pton(AF_INET6, text, &storage) == 1 else { return nil }
            self = .v6(withUnsafeBytes(of: &storage) { Array($0) })
            return
        }
        guard let value = Self.parseIPv4(text) else { return nil }
        self = .v4(value)
    }

    /// Whether a host must be read as an IPv4 address (its last label is a number), as the
    /// WHATWG URL standard says; such a host that does not parse is not a valid host at all.
    public static func endsInNumber(_ host: String) -> Bool {
        var labels = host.split(separator: ".", omittingEmptySubsequences: false)
        if labels.last == "" && labels.count > 1 { labels.removeLast() }
        guard let last = labels.last, !last.isEmpty else { return false }
        if last.allSatisfy({ $0.isASCII && $0.isNumber }) { return true }
        let lower = last.lowercased()
        return lower.hasPrefix("0x") && lower.dropFirst(2).allSatisfy { $0.isHexDigit }
    }

    /// The WHATWG IPv4 parser: 1 to 4 parts, each decimal, octal (leading 0) or hex (0x).
    static func parseIPv4(_ text: String) -> UInt32? {
        var parts = text.split(separator: ".", omittingEmptySubsequences: false)
        if parts.count > 1 && parts.last == "" { parts.removeLast() }
        guard (1...4).contains(parts.count) else { return nil }
        var numbers: [UInt64] = []
        for part in parts {
            guard !part.isEmpty, part.count <= 32 else { return nil }
            var digits = Substring(part)
            var radix = 10
            if digits.lowercased().hasPrefix("0x") {
                digits = digits.dropFirst(2)
                radix = 16
            } else if digits.count > 1 && digits.hasPrefix("0") {
                digits = digits.dropFirst()
                radix = 8
            }
            if digits.isEmpty {
                numbers.append(0)
                continue
            }
            guard let number = UInt64(digits, radix: radix) else { return nil }
            numbers.append(number)
        }
        let last = numbers.removeLast()
        guard numbers.allSatisfy({ $0 <= 255 }) else { return nil }
        guard last < (UInt64(1) << (8 * UInt64(4 - numbers.count))) else { return nil }
        var value = last
        for (index, number) in numbers.enumerated() {
            value += number << (8 * UInt64(3 - index))
        }
        return UInt32(value)
    }

    /// Dotted-quad or RFC 5952 text.
    public var description: String {
        switch self {
        case .v4(let value):
            return "\(value >> 24).\((value >> 16) & 0xFF).\((value >> 8) & 0xFF).\(value & 0xFF)"
        case .v6(let bytes):
            var storage = in6_addr()
            withUnsafeMutableBytes(of: &storage) { raw in
                for index in 0..<16 { raw[index] = bytes[index] }
            }
            var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            guard inet_ntop(AF_INET6, &storage, &buffer, socklen_t(buffer.count)) != nil else { return "::" }
            return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    /// What kind of address this is, for the SSRF policy.
    public var category: AddressCategory {
        switch self {
        case .v4(let value): return Self.categorize(v4: value)
        case .v6(let bytes): return Self.categorize(v6: bytes)
        }
    }

    private static func categorize(v4 value: UInt32) -> AddressCategory {
        func inRange(_ base: UInt32, _ prefix: UInt32) -> Bool {
            let mask: UInt32 = prefix == 0 ? 0 : ~UInt32(0) << (32 - prefix)
            return value & mask == base & mask
        }
        if value == 0xA9FE_A9FE { return .metadata }  // 169.254.169.254: cloud instance metadata
        if inRange(0x0000_0000, 8) { return .unspecified }  // 0.0.0.0/8 "this network" (RFC 791)
        if inRange(0x7F00_0000, 8) { return .loopback }  // 127.0.0.0/8 (RFC 1122)
        if inRange(0x0A00_0000, 8) || inRange(0xAC10_0000, 12) || inRange(0xC0A8_0000, 16) {
            return .privateUse  // RFC 1918
        }
        if inRange(0x6440_0000, 10) { return .privateUse }  // 100.64.0.0/10 shared address space (RFC 6598)
        if inRange(0xA9FE_0000, 16) { return .linkLocal }  // 169.254.0.0/16 (RFC 3927)
        if inRange(0xE000_0000, 4) { return .multicast }  // 224.0.0.0/4
        if inRange(0xC000_0000, 24) || inRange(0xC000_0200, 24) || inRange(0xC633_6400, 24) || inRange(0xCB00_7100, 24)
            || inRange(0xC612_0000, 15) || inRange(0xF000_0000, 4)
        {
            return .reserved  // RFC 6890: protocol assignments, documentation, benchmarking, 240/4, broadcast
        }
        return .global
    }

    private static func categorize(v6 bytes: [UInt8]) -> AddressCategory {
        let prefix12 = bytes[0..<12]
        if bytes.allSatisfy({ $0 == 0 }) { return .unspecified }  // ::
        if bytes[0..<15].allSatisfy({ $0 == 0 }) && bytes[15] == 1 { return .loopback }  // ::1
        let embedded = UInt32(bytes[12]) << 24 | UInt32(bytes[13]) << 16 | UInt32(bytes[14]) << 8 | UInt32(bytes[15])
        // ::ffff:a.b.c.d (mapped), ::a.b.c.d (compatible), 64:ff9b::a.b.c.d (NAT64, RFC 6052):
        // the IPv4 address inside decides.
        if prefix12.elementsEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF]) || prefix12.allSatisfy({ $0 == 0 })
            || prefix12.elementsEqual([0, 0x64, 0xFF, 0x9B, 0, 0, 0, 0, 0, 0, 0, 0])
        {
            return categorize(v4: embedded)
        }
        if bytes[0] == 0x20 && bytes[1] == 0x02 {  // 2002::/16, 6to4 (RFC 3056)
            return categorize(v4: UInt32(bytes[2]) << 24 | UInt32(bytes[3]) << 16 | UInt32(bytes[4]) << 8 | UInt32(bytes[5]))
        }
        if bytes[0..<4].elementsEqual([0xFD, 0x00, 0x0E, 0xC2]) { return .metadata }  // fd00:ec2::/32, AWS metadata
        if bytes[0] & 0xFE == 0xFC { return .uniqueLocal }  // fc00::/7 (RFC 4193)
        if bytes[0] == 0xFE && bytes[1] & 0xC0 == 0x80 { return .linkLocal }  // fe80::/10
        if bytes[0] == 0xFE && bytes[1] & 0xC0 == 0xC0 { return .privateUse }  // fec0::/10 site-local (deprecated)
        if bytes[0] == 0xFF { return .multicast }
        if bytes[0..<4].elementsEqual([0x20, 0x01, 0x0D, 0xB8]) { return .reserved }  // documentation
        if bytes[0..<4].elementsEqual([0x20, 0x01, 0x00, 0x00]) { return .reserved }  // Teredo: hides its IPv4 target
        if bytes[0] & 0xE0 != 0x20 { return .reserved }  // outside 2000::/3, global unicast
        return .global
    }
}

/// The kinds of address the SSRF policy tells apart.
public enum AddressCategory: String, Sendable, Hashable {
    /// Routable on the internet.
    case global
    /// 127.0.0.0/8, ::1.
    case loopback
    /// RFC 1918, RFC 6598 and IPv6 site-local.
    case privateUse = "private"
    /// 169.254.0.0/16, fe80::/10.
    case linkLocal = "link-local"
    /// Cloud instance metadata: 169.254.169.254, fd00:ec2::254.
    case metadata
    /// fc00::/7.
    case uniqueLocal = "unique-local"
    /// 0.0.0.0/8, ::.
    case unspecified
    /// 224.0.0.0/4, ff00::/8.
    case multicast
    /// Documentation, benchmarking, reserved and tunnelling ranges.
    case reserved
}

/// Why a webhook URL or the address it resolved to was refused. Names the host, never a secret.
public enum WebhookURLError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Not an absolute http(s) URL with a valid host.
    case invalid(String)
    /// The host is, or resolved to, an address the policy refuses.
    case forbiddenAddress(host: String, address: String, category: AddressCategory)
    /// The host is a name that always means this machine or its network (`localhost`, `.internal`).
    case forbiddenName(String)
    /// The name does not resolve.
    case unresolvable(String)

    /// A stable code for the API (`invalid_url`, `forbidden_address`, `unresolvable`).
    public var code: String {
        switch self {
        case .invalid: return "invalid_url"
        case .forbiddenAddress, .forbiddenName: return "forbidden_address"
        case .unresolvable: return "unresolvable"
        }
    }

    /// One line.
    public var description: String {
        switch self {
        case .invalid(let reason): return reason
        case .forbiddenAddress(let host, let address, let category):
            let target = host == address ? address : "\(host) resolves to \(address), which"
            return "\(target) is a \(category.rawValue) address; set PIGEON_WEBHOOK_ALLOW_PRIVATE=true to allow it"
        case .forbiddenName(let host):
            return "\(host) names a local or internal host; set PIGEON_WEBHOOK_ALLOW_PRIVATE=true to allow it"
        case .unresolvable(let host): return "\(host) does not resolve"
        }
    }
}

/// A parsed webhook URL.
public struct WebhookURL: Sendable, Hashable {
    /// `http` or `https`.
    public var scheme: String
    /// The host as written (lowercased, without brackets): the `Host` header and the TLS SNI name.
    public var host: String
    /// The address, when the host is an IP literal in any form.
    public var literalAddress: IPAddress?
    /// The port.
    public var port: Int
    /// Path and query, at least `/`.
    public var target: String

    /// Parses `text`: an absolute `http`/`https` URL, no user info, a host that is a
    /// domain name or an IP literal (odd IPv4 forms are read the way browsers read them).
    public init(_ text: String) throws(WebhookURLError) {
        guard text.count <= 2048, let components = URLComponents(string: text) else { throw .invalid("not a URL") }
        guard let scheme = components.scheme?.lowercased(), scheme == "http" || scheme == "https" else {
            throw .invalid("the URL must start with http:// or https://")
        }
        guard components.percentEncodedUser == nil, components.percentEncodedPassword == nil else {
            throw .invalid("the URL must not carry a user name or password")
        }
        guard var host = components.percentEncodedHost?.lowercased(), !host.isEmpty else { throw .invalid("the URL has no host") }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host.hasSuffix(".") && !host.contains(":") { host.removeLast() }
        guard !host.isEmpty, host.count <= 253, !host.contains("%") else { throw .invalid("the URL's host is not valid") }
        self.scheme = scheme
        self.host = host
        if let address = IPAddress(host: host) {
            literalAddress = address
        } else if host.contains(":") || IPAddress.endsInNumber(host) {
            throw .invalid("the URL's host is not a valid IP address")
        } else {
            let allowed = host.unicodeScalars.allSatisfy { scalar in
                scalar.isASCII && (CharacterSet.alphanumerics.contains(scalar) || scalar == "-" || scalar == "." || scalar == "_")
            }
            guard allowed else { throw .invalid("the URL's host is not a valid name (use its punycode form)") }
            literalAddress = nil
        }
        let port = components.port ?? (scheme == "https" ? 443 : 80)
        guard (1...65535).contains(port) else {
            throw .invalid("the URL's port is not valid")
        }
        self.port = port
        let path = components.percentEncodedPath.isEmpty ? "/" : components.percentEncodedPath
        target = path + (components.percentEncodedQuery.map { "?" + $0 } ?? "")
    }

    /// `host` or `host:port` for the `Host` header (brackets around IPv6).
    public var hostHeader: String {
        let name = host.contains(":") ? "[\(host)]" : host
        let defaultPort = scheme == "https" ? 443 : 80
        return port == defaultPort ? name : "\(name):\(port)"
    }
}

/// The SSRF policy: which webhook targets may be connected to.
///
/// Refused unless `allowPrivate`: every address that is not `global` (loopback, RFC 1918,
/// link-local, cloud metadata, unique-local, unspecified, multicast, reserved), IPv4
/// inside IPv6 by the IPv4 address it carries, and the names `localhost`, `*.localhost`
/// (RFC 6761), `*.internal` and `*.local`. A name is refused when ANY of its addresses
/// is refused, so a name cannot smuggle a private address next to a public one.
public struct AddressPolicy: Sendable, Hashable {
    /// Whether private and loopback targets are allowed (`PIGEON_WEBHOOK_ALLOW_PRIVATE`).
    public var allowPrivate: Bool

    /// Creates a policy.
    public init(allowPrivate: Bool) {
        self.allowPrivate = allowPrivate
    }

    /// Checks what can be checked without resolving: the literal address or the name.
    public func checkHost(_ url: WebhookURL) throws(WebhookURLError) {
        guard !allowPrivate else { return }
        if let address = url.literalAddress {
            try check(address, host: url.host)
            return
        }
        let name = url.host
        if name == "localhost" || name.hasSuffix(".localhost") || name.hasSuffix(".internal") || name.hasSuffix(".local")
            || !name.contains(".")
        {
            throw .forbiddenName(name)
        }
    }

    /// Checks one address of `host`.
    public func check(_ address: IPAddress, host: String) throws(WebhookURLError) {
        guard !allowPrivate else { return }
        let category = address.category
        guard category == .global else {
            throw .forbiddenAddress(host: host, address: address.description, category: category)
        }
    }

    /// Checks every address of `host`.
    public func check(_ addresses: [IPAddress], host: String) throws(WebhookURLError) {
        for address in addresses { try check(address, host: host) }
    }
}
