import NIOCore

/// Why a stream of bytes is not a valid sequence of SMTP replies.
public enum SMTPReplyParseError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A line was longer than the parser's `maximumLineLength` (no CRLF within it).
    case lineTooLong(limit: Int)
    /// A reply had more lines than the parser's `maximumLineCount`.
    case tooManyLines(limit: Int)
    /// A line did not start with a three-digit code and a separator.
    case malformedLine
    /// A continuation line carried a different code from the reply's first line.
    case inconsistentCode

    /// A description without any of the server's text.
    public var description: String {
        switch self {
        case .lineTooLong(let limit): "reply line longer than \(limit) bytes"
        case .tooManyLines(let limit): "reply with more than \(limit) lines"
        case .malformedLine: "malformed reply line"
        case .inconsistentCode: "multi-line reply with inconsistent codes"
        }
    }
}

/// Frames and parses SMTP replies from a byte stream (RFC 5321 section 4.2).
///
/// Framing first: a line ends at LF (a preceding CR is dropped; a bare LF is
/// accepted, as Postfix does). Every buffer is bounded: a line longer than
/// `maximumLineLength` or a reply of more than `maximumLineCount` lines is an error,
/// detected as soon as the bytes arrive, so a hostile server cannot make us buffer
/// without limit. RFC 5321 section 4.5.3.1.5 limits a reply line to 512 octets; the
/// default allows 2048 to be lenient with real servers.
public struct SMTPReplyParser: Sendable {
    /// The longest accepted line, in bytes, excluding the line end.
    public var maximumLineLength: Int
    /// The most lines accepted in one reply.
    public var maximumLineCount: Int

    private var pendingCode: Int?
    private var pendingLines: [Substring] = []

    /// Makes a parser with the given bounds.
    public init(maximumLineLength: Int = 2048, maximumLineCount: Int = 100) {
        self.maximumLineLength = maximumLineLength
        self.maximumLineCount = maximumLineCount
    }

    /// Whether part of a multi-line reply has been read and the rest is awaited.
    public var hasPartialReply: Bool { pendingCode != nil }

    /// Consumes complete lines from `buffer` until one complete reply is read.
    ///
    /// Returns nil when more bytes are needed; unconsumed bytes stay in `buffer`.
    public mutating func parse(_ buffer: inout ByteBuffer) throws(SMTPReplyParseError) -> SMTPReply? {
        while true {
            let view = buffer.readableBytesView
            guard let newline = view.firstIndex(of: UInt8(ascii: "\n")) else {
                if view.count > maximumLineLength + 1 { throw .lineTooLong(limit: maximumLineLength) }
                return nil
            }
            var lineEnd = newline
            if lineEnd > view.startIndex, view[lineEnd - 1] == UInt8(ascii: "\r") { lineEnd -= 1 }
            let length = lineEnd - view.startIndex
            if length > maximumLineLength { throw .lineTooLong(limit: maximumLineLength) }
            let line = String(decoding: view[view.startIndex..<lineEnd], as: UTF8.self)
            buffer.moveReaderIndex(forwardBy: newline - view.startIndex + 1)
            if let reply = try consume(line: line) { return reply }
        }
    }

    private mutating func consume(line: String) throws(SMTPReplyParseError) -> SMTPReply? {
        let utf8 = Array(line.utf8.prefix(4))
        guard utf8.count >= 3,
            (UInt8(ascii: "2")...UInt8(ascii: "5")).contains(utf8[0]),
            utf8[1...2].allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) })
        else { throw .malformedLine }
        let code = Int(utf8[0] - 48) * 100 + Int(utf8[1] - 48) * 10 + Int(utf8[2] - 48)
        let isLast: Bool
        if utf8.count == 3 {
            isLast = true
        } else if utf8[3] == UInt8(ascii: " ") {
            isLast = true
        } else if utf8[3] == UInt8(ascii: "-") {
            isLast = false
        } else {
            throw .malformedLine
        }
        if let pendingCode, pendingCode != code { throw .inconsistentCode }
        pendingCode = code
        let text = line.dropFirst(min(4, line.count))
        pendingLines.append(text)
        if pendingLines.count > maximumLineCount { throw .tooManyLines(limit: maximumLineCount) }
        guard isLast else { return nil }
        defer {
            self.pendingCode = nil
            self.pendingLines = []
        }
        return Self.makeReply(code: code, lines: pendingLines)
    }

    /// Builds a reply, recognising an enhanced status code at the start of the first
    /// line whose class matches the reply code (RFC 2034 section 4).
    static func makeReply(code: Int, lines: [Substring]) -> SMTPReply {
        guard let first = lines.first,
            let space = first.firstIndex(of: " ") ?? (first.contains(".") ? first.endIndex : nil),
            let enhanced = EnhancedStatusCode(first[first.startIndex..<space]),
            enhanced.klass == code / 100
        else { return SMTPReply(code: code, lines: lines.map(String.init)) }
        let prefix = first[first.startIndex..<space]
        let stripped = lines.map { line -> String in
            guard line.hasPrefix(prefix) else { return String(line) }
            return String(line.dropFirst(prefix.count).drop { $0 == " " })
        }
        return SMTPReply(code: code, enhancedCode: enhanced, lines: stripped)
    }
}
