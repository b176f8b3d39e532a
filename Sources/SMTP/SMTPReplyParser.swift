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
    private var pendingLines: [String] = []

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
    /// Works on the bytes: only each line's text becomes a `String`.
    public mutating func parse(_ buffer: inout ByteBuffer) throws(SMTPReplyParseError) -> SMTPReply? {
        while true {
            let view = buffer.readableBytesView
            guard let newline = view.firstIndex(of: UInt8(ascii: "\n")) else {
                if view.count > maximumLineLength + 1 { throw .lineTooLong(limit: maximumLineLength) }
                return nil
            }
            let start = view.startIndex
            var lineEnd = newline
            if lineEnd > start, view[lineEnd - 1] == UInt8(ascii: "\r") { lineEnd -= 1 }
            if lineEnd - start > maximumLineLength { throw .lineTooLong(limit: maximumLineLength) }
            let reply = try consume(line: view[start..<lineEnd])
            buffer.moveReaderIndex(forwardBy: newline - start + 1)
            if let reply { return reply }
        }
    }

    private mutating func consume(line: ByteBufferView) throws(SMTPReplyParseError) -> SMTPReply? {
        let start = line.startIndex
        guard line.count >= 3,
            (UInt8(ascii: "2")...UInt8(ascii: "5")).contains(line[start]),
            Self.isDigit(line[start + 1]), Self.isDigit(line[start + 2])
        else { throw .malformedLine }
        let code = Int(line[start] - 48) * 100 + Int(line[start + 1] - 48) * 10 + Int(line[start + 2] - 48)
        let isLast: Bool
        if line.count == 3 || line[start + 3] == UInt8(ascii: " ") {
            isLast = true
        } else if line[start + 3] == UInt8(ascii: "-") {
            isLast = false
        } else {
            throw .malformedLine
        }
        if let pendingCode, pendingCode != code { throw .inconsistentCode }
        pendingCode = code
        pendingLines.append(String(decoding: line[min(start + 4, line.endIndex)...], as: UTF8.self))
        if pendingLines.count > maximumLineCount { throw .tooManyLines(limit: maximumLineCount) }
        guard isLast else { return nil }
        defer {
            self.pendingCode = nil
            self.pendingLines = []
        }
        return Self.makeReply(code: code, lines: pendingLines)
    }

    private static func isDigit(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }

    /// Builds a reply, recognising an enhanced status code at the start of the first
    /// line whose class matches the reply code (RFC 2034 section 4).
    static func makeReply(code: Int, lines: [String]) -> SMTPReply {
        guard let first = lines.first else { return SMTPReply(code: code, lines: lines) }
        let bytes = first.utf8
        let space = bytes.firstIndex(of: UInt8(ascii: " ")) ?? (bytes.contains(UInt8(ascii: ".")) ? bytes.endIndex : nil)
        guard let space,
            let enhanced = EnhancedStatusCode(first[..<space]),
            enhanced.klass == code / 100
        else { return SMTPReply(code: code, lines: lines) }
        let prefix = bytes[..<space]
        let stripped = lines.map { line -> String in
            guard line.utf8.starts(with: prefix) else { return line }
            return String(Substring(line.utf8.dropFirst(prefix.count).drop { $0 == UInt8(ascii: " ") }))
        }
        return SMTPReply(code: code, enhancedCode: enhanced, lines: stripped)
    }
}
