/// Content-Transfer-Encodings of RFC 2045 §6 and line-break canonicalisation.
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Standard base64 (RFC 4648 §4) without line breaks.
    static func encode(_ bytes: [UInt8]) -> String {
        String(decoding: encode(bytes, lineLength: nil), as: UTF8.self)
    }

    /// Base64 with CRLF after every `lineLength` characters (RFC 2045 §6.8: at most 76) and after
    /// the last line; without line breaks when `lineLength` is nil.
    static func encode(_ bytes: [UInt8], lineLength: Int?) -> [UInt8] {
        let encodedCount = (bytes.count + 2) / 3 * 4
        var out: [UInt8] = []
        if let lineLength {
            out.reserveCapacity(encodedCount + (encodedCount / lineLength + 1) * 2)
        } else {
            out.reserveCapacity(encodedCount)
        }
        let groupsPerLine = (lineLength ?? Int.max) / 4
        var groupsOnLine = 0
        var index = 0
        let count = bytes.count
        alphabet.withUnsafeBufferPointer { table in
            bytes.withUnsafeBufferPointer { input in
                while index + 3 <= count {
                    let b0 = Int(input[index])
                    let b1 = Int(input[index + 1])
                    let b2 = Int(input[index + 2])
                    out.append(table[b0 >> 2])
                    out.append(table[((b0 & 0x03) << 4) | (b1 >> 4)])
                    out.append(table[((b1 & 0x0F) << 2) | (b2 >> 6)])
                    out.append(table[b2 & 0x3F])
                    index += 3
                    groupsOnLine += 1
                    if lineLength != nil && groupsOnLine == groupsPerLine && index < count {
                        out.append(13)
                        out.append(10)
                        groupsOnLine = 0
                    }
                }
                let rest = count - index
                if rest > 0 {
                    let b0 = Int(input[index])
                    let b1 = rest > 1 ? Int(input[index + 1]) : 0
                    out.append(table[b0 >> 2])
                    out.append(table[((b0 & 0x03) << 4) | (b1 >> 4)])
                    out.append(rest > 1 ? table[(b1 & 0x0F) << 2] : UInt8(ascii: "="))
                    out.append(UInt8(ascii: "="))
                }
            }
        }
        if lineLength != nil && !out.isEmpty {
            out.append(13)
            out.append(10)
        }
        return out
    }

    /// Decodes standard base64, ignoring CR, LF, space and tab; nil when invalid.
    static func decode(_ text: String) -> [UInt8]? {
        var values: [UInt8] = []
        values.reserveCapacity(text.utf8.count)
        var padding = 0
        for b in text.utf8 {
            switch b {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): values.append(b - 65)
            case UInt8(ascii: "a")...UInt8(ascii: "z"): values.append(b - 97 + 26)
            case UInt8(ascii: "0")...UInt8(ascii: "9"): values.append(b - 48 + 52)
            case UInt8(ascii: "+"): values.append(62)
            case UInt8(ascii: "/"): values.append(63)
            case UInt8(ascii: "="): padding += 1
            case 13, 10, 32, 9: continue
            default: return nil
            }
            if padding > 0 && b != UInt8(ascii: "=") { return nil }
        }
        if padding > 2 || (values.count + padding) % 4 != 0 { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(values.count * 3 / 4)
        var index = 0
        while index + 4 <= values.count {
            let v = (UInt32(values[index]) << 18) | (UInt32(values[index + 1]) << 12) | (UInt32(values[index + 2]) << 6) | UInt32(values[index + 3])
            out.append(UInt8(truncatingIfNeeded: v >> 16))
            out.append(UInt8(truncatingIfNeeded: v >> 8))
            out.append(UInt8(truncatingIfNeeded: v))
            index += 4
        }
        let rest = values.count - index
        if rest == 2 {
            out.append(values[index] << 2 | values[index + 1] >> 4)
        } else if rest == 3 {
            out.append(values[index] << 2 | values[index + 1] >> 4)
            out.append((values[index + 1] & 0x0F) << 4 | values[index + 2] >> 2)
        } else if rest == 1 {
            return nil
        }
        return out
    }
}

enum TransferEncoding: String {
    case sevenBit = "7bit"
    case quotedPrintable = "quoted-printable"
    case base64 = "base64"

    /// Text in canonical form (RFC 2046 §4.1.1): every CR, LF and CRLF becomes CRLF, and the
    /// text ends with CRLF.
    static func canonicalLines(_ text: String) -> [UInt8] {
        let input = Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(input.count + input.count / 40 + 2)
        var index = 0
        while index < input.count {
            let b = input[index]
            if b == 13 {
                out.append(13)
                out.append(10)
                if index + 1 < input.count && input[index + 1] == 10 { index += 1 }
            } else if b == 10 {
                out.append(13)
                out.append(10)
            } else {
                out.append(b)
            }
            index += 1
        }
        if out.count < 2 || out[out.count - 2] != 13 || out[out.count - 1] != 10 {
            out.append(13)
            out.append(10)
        }
        return out
    }

    /// The encoding a canonical text body needs: 7bit when it is printable ASCII with lines of
    /// at most 998 octets (RFC 5322 §2.1.1), base64 when more than a third of it is non-ASCII,
    /// quoted-printable otherwise (RFC 2045 §6.7).
    static func choose(forCanonicalText bytes: [UInt8]) -> TransferEncoding {
        var lineLength = 0
        var needsEncoding = false
        var nonASCII = 0
        for b in bytes {
            if b == 13 || b == 10 {
                lineLength = 0
                continue
            }
            lineLength += 1
            if lineLength > 998 { needsEncoding = true }
            if b >= 0x80 {
                nonASCII += 1
                needsEncoding = true
            } else if (b < 0x20 && b != 9) || b == 0x7F {
                needsEncoding = true
            }
        }
        if !needsEncoding { return .sevenBit }
        return nonASCII * 3 > bytes.count ? .base64 : .quotedPrintable
    }

    /// Encodes canonical text (CRLF line breaks, ending with CRLF); the result ends with CRLF.
    static func encode(canonical bytes: [UInt8], as encoding: TransferEncoding) -> [UInt8] {
        switch encoding {
        case .sevenBit: return bytes
        case .base64: return Base64.encode(bytes, lineLength: 76)
        case .quotedPrintable: return QuotedPrintable.encode(canonical: bytes)
        }
    }
}

enum QuotedPrintable {
    private static let hex = Array("0123456789ABCDEF".utf8)

    /// RFC 2045 §6.7 quoted-printable of canonical text: line breaks stay hard CRLF (rule 4),
    /// encoded lines are at most 76 characters with `=` soft breaks (rule 5), space and tab are
    /// encoded at the end of a line (rule 3), and `=` and non-printable octets are `=XX` (rules 1, 2).
    /// A `.` at the start of a line is encoded too, so that the body never depends on dot-stuffing.
    static func encode(canonical bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + bytes.count / 8)
        var lineLength = 0
        var index = 0
        let count = bytes.count
        while index < count {
            let b = bytes[index]
            if b == 13 && index + 1 < count && bytes[index + 1] == 10 {
                out.append(13)
                out.append(10)
                lineLength = 0
                index += 2
                continue
            }
            let atLineEnd = index + 1 >= count || (bytes[index + 1] == 13 && index + 2 < count && bytes[index + 2] == 10)
            let literal: Bool
            if b == 0x20 || b == 0x09 {
                literal = !atLineEnd
            } else if b == UInt8(ascii: ".") && lineLength == 0 {
                literal = false
            } else {
                literal = b >= 0x21 && b <= 0x7E && b != UInt8(ascii: "=")
            }
            let unitLength = literal ? 1 : 3
            // Keep room for the soft break "=" unless this unit ends the line.
            let limit = atLineEnd ? 76 : 75
            if lineLength + unitLength > limit {
                out.append(UInt8(ascii: "="))
                out.append(13)
                out.append(10)
                lineLength = 0
                if b == UInt8(ascii: ".") {
                    // A new line now starts with this dot: encode it (see above).
                    out.append(UInt8(ascii: "="))
                    out.append(hex[Int(b >> 4)])
                    out.append(hex[Int(b & 0x0F)])
                    lineLength = 3
                    index += 1
                    continue
                }
            }
            if literal {
                out.append(b)
            } else {
                out.append(UInt8(ascii: "="))
                out.append(hex[Int(b >> 4)])
                out.append(hex[Int(b & 0x0F)])
            }
            lineLength += unitLength
            index += 1
        }
        return out
    }
}
