/// An RFC 5322 mailbox (§3.4): an optional display name and an addr-spec, with the forms the
/// SMTP envelope needs.
///
/// Accepted inputs: `a@b.c`, `<a@b.c>`, `Name <a@b.c>`, `"Doe, J." <a@b.c>`,
/// `Zoë <zoe@exämple.de>`, `"quoted local"@b.c`, `用户@例子.广告` (SMTPUTF8, RFC 6531).
/// One string holds one mailbox: a display name may contain commas without quotes because the
/// JSON array already separates the addresses. Domain literals (`[192.0.2.1]`) and comments are
/// not accepted.
public struct EmailAddress: Sendable, Hashable, CustomStringConvertible {
    /// The display name, unquoted and unescaped; nil when absent, empty or only spaces and tabs.
    public var displayName: String?
    /// The local part as written (RFC 5321 §4.1.2 Local-part, quotes included when quoted).
    public var localPart: String
    /// The domain as written (Unicode allowed).
    public var domain: String
    /// The domain in IDNA A-label form (equal to ``domain`` when that is ASCII).
    public var asciiDomain: String
    /// True when the local part is not ASCII: the address can only travel with SMTPUTF8 (RFC 6531).
    public var requiresSMTPUTF8: Bool

    /// RFC 5321 §4.5.3.1.1: 64 octets for a local part.
    public static let maxLocalPartOctets = 64
    /// RFC 5321 §4.5.3.1.2: 255 octets for a domain.
    public static let maxDomainOctets = 255
    /// RFC 5321 §4.5.3.1.3: 256 octets for a path including `<` and `>`, so 254 for the address.
    public static let maxAddressOctets = 254
    /// Pigeon's own limit on display names, in Unicode scalars.
    public static let maxDisplayNameLength = 256
    /// The longest input the parser looks at, in UTF-8 octets (a 256-scalar name in quotes and escapes, plus an address).
    public static let maxInputOctets = 4_096

    /// The address for the SMTP envelope and for headers: `local@asciiDomain`.
    /// The local part is as written, so it is Unicode only when ``requiresSMTPUTF8`` is true.
    public var address: String { "\(localPart)@\(asciiDomain)" }

    /// The address as given to the parser, normalised: `Name <local@domain>` or `local@domain`.
    public var description: String {
        if let displayName { return "\(displayName) <\(localPart)@\(domain)>" }
        return "\(localPart)@\(domain)"
    }

    /// Creates an address from its parts. `domain` is converted with ``IDNA/toASCII(_:)``.
    public init(displayName: String? = nil, localPart: String, domain: String) throws(AddressParseError) {
        try self.init(parsing: "\(localPart)@\(domain)")
        if let displayName, !displayName.isEmpty {
            try Self.checkDisplayName(displayName)
            self.displayName = displayName
        }
    }

    /// Parses one mailbox (see the type's documentation for the accepted forms).
    public init(parsing text: String) throws(AddressParseError) {
        if text.unicodeScalars.contains(where: { $0 == "\r" || $0 == "\n" || $0 == "\0" }) {
            throw AddressParseError(code: "header_injection", message: "must not contain CR, LF or NUL")
        }
        // Bound the work before parsing: no valid mailbox comes near this (RFC 5321 §4.5.3.1).
        if text.utf8.count > Self.maxInputOctets {
            throw AddressParseError(code: "too_long", message: "is longer than \(Self.maxInputOctets) octets")
        }
        let trimmed = text.trimmingWSP()
        if trimmed.isEmpty {
            throw AddressParseError(code: "invalid_address", message: "is empty")
        }
        var name: String?
        var addrSpec = trimmed
        // RFC 5322 §3.4: name-addr = [display-name] angle-addr.
        if trimmed.hasSuffix(">") {
            guard let open = trimmed.lastIndex(of: "<") else {
                throw AddressParseError(code: "invalid_address", message: "has '>' without '<'")
            }
            addrSpec = String(trimmed[trimmed.index(after: open)..<trimmed.index(before: trimmed.endIndex)])
            let rawName = String(trimmed[..<open]).trimmingWSP()
            if !rawName.isEmpty {
                name = try Self.parseDisplayName(rawName)
            }
        } else if trimmed.contains("<") || trimmed.contains(">") {
            throw AddressParseError(code: "invalid_address", message: "has unbalanced angle brackets")
        }
        let (local, domain) = try Self.splitAddrSpec(addrSpec)
        try Self.checkLocalPart(local)
        guard let asciiDomain = IDNA.toASCII(domain) else {
            throw AddressParseError(code: "invalid_address", message: "has an invalid domain")
        }
        if asciiDomain.utf8.count > Self.maxDomainOctets {
            throw AddressParseError(code: "too_long", message: "domain is longer than 255 octets")
        }
        if local.utf8.count + 1 + asciiDomain.utf8.count > Self.maxAddressOctets {
            throw AddressParseError(code: "too_long", message: "is longer than 254 octets")
        }
        // A name of nothing but spaces and tabs is no name.
        if let name, !name.trimmingWSP().isEmpty {
            try Self.checkDisplayName(name)
            self.displayName = name
        } else {
            self.displayName = nil
        }
        self.localPart = local
        self.domain = domain
        self.asciiDomain = asciiDomain
        self.requiresSMTPUTF8 = !local.unicodeScalars.allSatisfy(\.isASCII)
    }

    private static func checkDisplayName(_ name: String) throws(AddressParseError) {
        if name.unicodeScalars.contains(where: { $0 == "\r" || $0 == "\n" || $0 == "\0" }) {
            throw AddressParseError(code: "header_injection", message: "display name must not contain CR, LF or NUL")
        }
        if name.unicodeScalars.count > maxDisplayNameLength {
            throw AddressParseError(code: "too_long", message: "display name is longer than \(maxDisplayNameLength) characters")
        }
    }

    /// A display name: a quoted-string (RFC 5322 §3.2.4) is unquoted and unescaped; anything else
    /// is taken as written (a phrase, possibly with Unicode per RFC 6532 §3.2).
    private static func parseDisplayName(_ raw: String) throws(AddressParseError) -> String {
        let scalars = Array(raw.unicodeScalars)
        guard scalars.first == "\"" else {
            if raw.contains("\"") {
                throw AddressParseError(code: "invalid_address", message: "display name has a stray quote")
            }
            return raw
        }
        var result = String.UnicodeScalarView()
        var index = 1
        var closed = false
        while index < scalars.count {
            let s = scalars[index]
            if s == "\\" {
                index += 1
                guard index < scalars.count else { break }
                result.append(scalars[index])
            } else if s == "\"" {
                closed = true
                index += 1
                break
            } else {
                result.append(s)
            }
            index += 1
        }
        if !closed || index != scalars.count {
            throw AddressParseError(code: "invalid_address", message: "display name has an unterminated or stray quote")
        }
        return String(result)
    }

    private static func splitAddrSpec(_ spec: String) throws(AddressParseError) -> (String, String) {
        guard let at = spec.lastIndex(of: "@") else {
            throw AddressParseError(code: "invalid_address", message: "has no '@'")
        }
        let local = String(spec[..<at])
        let domain = String(spec[spec.index(after: at)...])
        if local.isEmpty { throw AddressParseError(code: "invalid_address", message: "has an empty local part") }
        if domain.isEmpty { throw AddressParseError(code: "invalid_address", message: "has an empty domain") }
        return (local, domain)
    }

    /// RFC 5321 §4.1.2 Local-part = Dot-string / Quoted-string, with UTF-8 allowed by RFC 6531 §3.3.
    private static func checkLocalPart(_ local: String) throws(AddressParseError) {
        if local.utf8.count > maxLocalPartOctets {
            throw AddressParseError(code: "too_long", message: "local part is longer than 64 octets")
        }
        let scalars = Array(local.unicodeScalars)
        if scalars.first == "\"" {
            // Quoted-string: qtextSMTP / quoted-pairSMTP between DQUOTEs.
            guard scalars.count >= 2, scalars.last == "\"" else {
                throw AddressParseError(code: "invalid_address", message: "local part has an unterminated quote")
            }
            var index = 1
            while index < scalars.count - 1 {
                let s = scalars[index]
                if s == "\\" {
                    index += 1
                    guard index < scalars.count - 1, scalars[index].value >= 32, scalars[index].value != 127 else {
                        throw AddressParseError(code: "invalid_address", message: "local part has a bad escape")
                    }
                } else if s == "\"" || s.value < 32 || s.value == 127 {
                    throw AddressParseError(code: "invalid_address", message: "local part has a character not allowed in quotes")
                }
                index += 1
            }
            return
        }
        // Dot-string = Atom *("." Atom).
        for atom in local.split(separator: ".", omittingEmptySubsequences: false) {
            if atom.isEmpty {
                throw AddressParseError(code: "invalid_address", message: "local part has an empty dot-separated part")
            }
            for s in atom.unicodeScalars where !isAtext(s) {
                throw AddressParseError(code: "invalid_address", message: "local part has a character that needs quoting")
            }
        }
    }

    /// RFC 5322 §3.2.3 atext, extended with non-ASCII by RFC 6532 §3.2.
    static func isAtext(_ s: Unicode.Scalar) -> Bool {
        if !s.isASCII {
            // UTF8-non-ascii, but no controls or whitespace.
            switch s.properties.generalCategory {
            case .control, .format, .lineSeparator, .paragraphSeparator, .spaceSeparator, .unassigned, .surrogate, .privateUse:
                return false
            default:
                return true
            }
        }
        let v = s.value
        if (v >= 0x41 && v <= 0x5A) || (v >= 0x61 && v <= 0x7A) || (v >= 0x30 && v <= 0x39) { return true }
        return "!#$%&'*+-/=?^_`{|}~".unicodeScalars.contains(s)
    }
}

extension String {
    /// Without leading and trailing spaces and tabs.
    func trimmingWSP() -> String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { $0 != " " && $0 != "\t" }),
            let last = scalars.lastIndex(where: { $0 != " " && $0 != "\t" })
        else { return "" }
        return String(scalars[first...last])
    }
}
