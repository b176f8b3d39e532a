/// An RFC 3463 enhanced mail system status code, such as `5.1.1`.
///
/// Written `class.subject.detail`; the class repeats the reply code's first digit
/// (2, 4 or 5). RFC 3463 section 3.1 bounds subject and detail to three digits.
public struct EnhancedStatusCode: Sendable, Hashable, CustomStringConvertible {
    /// The class: 2 (success), 4 (persistent transient failure) or 5 (permanent failure).
    public var klass: Int
    /// The subject, e.g. 1 for addressing status.
    public var subject: Int
    /// The detail within the subject.
    public var detail: Int

    /// Makes a code from its three parts.
    public init(klass: Int, subject: Int, detail: Int) {
        self.klass = klass
        self.subject = subject
        self.detail = detail
    }

    /// Parses `"5.1.1"`; returns nil for anything else (RFC 3463 section 2 grammar).
    public init?(_ text: Substring) {
        // Three dot-separated runs of ASCII digits: a class of one digit (2, 4 or 5),
        // then a subject and a detail of one to three digits each. Read as bytes.
        var values = (0, 0, 0)
        var part = 0
        var digits = 0
        for byte in text.utf8 {
            if byte == UInt8(ascii: ".") {
                guard digits > 0, part < 2 else { return nil }
                part += 1
                digits = 0
                continue
            }
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9"), digits < (part == 0 ? 1 : 3) else { return nil }
            digits += 1
            let digit = Int(byte - UInt8(ascii: "0"))
            switch part {
            case 0: values.0 = digit
            case 1: values.1 = values.1 * 10 + digit
            default: values.2 = values.2 * 10 + digit
            }
        }
        guard part == 2, digits > 0, [2, 4, 5].contains(values.0) else { return nil }
        self.init(klass: values.0, subject: values.1, detail: values.2)
    }

    /// `"class.subject.detail"`.
    public var description: String { "\(klass).\(subject).\(detail)" }
}

/// One complete SMTP reply, possibly of several lines (RFC 5321 section 4.2).
///
/// `lines` holds the text after the code and separator of every line. When the first
/// line starts with an enhanced status code (RFC 2034) whose class matches the reply
/// code, that code is parsed into `enhancedCode` and stripped from the start of every
/// line that repeats it, so `lines` is the human-readable text only.
public struct SMTPReply: Sendable, Hashable, CustomStringConvertible {
    /// The three-digit reply code, e.g. 250.
    public var code: Int
    /// The RFC 3463 code, when the server sent one.
    public var enhancedCode: EnhancedStatusCode?
    /// The text of each line, without the code, the separator and the enhanced code.
    public var lines: [String]

    /// Makes a reply from its parts.
    public init(code: Int, enhancedCode: EnhancedStatusCode? = nil, lines: [String]) {
        self.code = code
        self.enhancedCode = enhancedCode
        self.lines = lines
    }

    /// The lines joined with a space, for display and for the recipient's status.
    public var text: String { lines.joined(separator: " ") }

    /// 2xx or 3xx: the command was accepted (RFC 5321 section 4.2.1).
    public var isPositive: Bool { (200..<400).contains(code) }
    /// 2xx: completed.
    public var isPositiveCompletion: Bool { (200..<300).contains(code) }
    /// 4xx: the command failed but may succeed later.
    public var isTransientNegative: Bool { (400..<500).contains(code) }
    /// 5xx: the command failed and will fail again.
    public var isPermanentNegative: Bool { (500..<600).contains(code) }

    /// `"550 5.1.1 No such user"`, one line.
    public var description: String {
        var result = String(code)
        if let enhancedCode { result += " \(enhancedCode)" }
        if !lines.isEmpty { result += " " + text }
        return result
    }

    /// The reply as it would appear on the wire, one string per line, for transcripts.
    public var wireLines: [String] {
        let enhanced = enhancedCode.map { "\($0) " } ?? ""
        if lines.isEmpty { return ["\(code)"] }
        return lines.enumerated().map { index, line in
            let separator = index == lines.count - 1 ? " " : "-"
            return "\(code)\(separator)\(enhanced)\(line)"
        }
    }
}
