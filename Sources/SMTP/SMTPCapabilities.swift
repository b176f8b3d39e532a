/// What a server announced in its EHLO reply (RFC 5321 section 4.1.1.1).
///
/// Keywords are matched case-insensitively. A reply to HELO has no capabilities.
public struct SMTPCapabilities: Sendable, Hashable {
    /// Every keyword, uppercased, mapped to its parameters.
    public var keywords: [String: [String]]

    /// Makes an empty set: what a HELO session has.
    public init() { self.keywords = [:] }

    /// Parses the lines of a 250 reply to EHLO; the first line is the server's name.
    public init(ehloReply: SMTPReply) {
        var keywords: [String: [String]] = [:]
        for line in ehloReply.lines.dropFirst() {
            // RFC 4954 section 4 allows the old "AUTH=PLAIN LOGIN" form too.
            let normalized = line.uppercased().hasPrefix("AUTH=") ? "AUTH " + line.dropFirst(5) : line
            let words = normalized.split(separator: " ", omittingEmptySubsequences: true)
            guard let keyword = words.first else { continue }
            let key = keyword.uppercased()
            let parameters = words.dropFirst().map(String.init)
            if key == "AUTH" {
                keywords[key, default: []].append(contentsOf: parameters.map { $0.uppercased() })
            } else {
                keywords[key] = parameters
            }
        }
        self.keywords = keywords
    }

    /// Whether `keyword` was announced.
    public func supports(_ keyword: String) -> Bool { keywords[keyword.uppercased()] != nil }

    /// STARTTLS, RFC 3207.
    public var supportsStartTLS: Bool { supports("STARTTLS") }
    /// PIPELINING, RFC 2920.
    public var supportsPipelining: Bool { supports("PIPELINING") }
    /// 8BITMIME, RFC 6152.
    public var supports8BitMIME: Bool { supports("8BITMIME") }
    /// SMTPUTF8, RFC 6531.
    public var supportsSMTPUTF8: Bool { supports("SMTPUTF8") }
    /// ENHANCEDSTATUSCODES, RFC 2034.
    public var supportsEnhancedStatusCodes: Bool { supports("ENHANCEDSTATUSCODES") }

    /// SIZE, RFC 1870: nil when not announced, 0 when announced without a limit.
    public var maximumMessageSize: Int? {
        guard let parameters = keywords["SIZE"] else { return nil }
        return parameters.first.flatMap { Int($0) } ?? 0
    }

    /// The SASL mechanisms announced with AUTH (RFC 4954), uppercased.
    public var authMechanisms: Set<String> { Set(keywords["AUTH"] ?? []) }
}
