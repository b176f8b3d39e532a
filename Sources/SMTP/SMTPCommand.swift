import NIOCore

/// A command the client sends (RFC 5321 section 4.1), encoded with CRLF only.
///
/// Addresses and arguments are checked by `SMTPEnvelope` before they become commands;
/// `encode(into:)` never writes a CR or LF except the final CRLF.
public enum SMTPCommand: Sendable, Hashable {
    /// `EHLO name`.
    case ehlo(String)
    /// `HELO name`, the fallback when EHLO is refused (RFC 5321 section 3.2).
    case helo(String)
    /// `STARTTLS` (RFC 3207).
    case startTLS
    /// `AUTH PLAIN <base64>` with the initial response (RFC 4616, RFC 4954).
    case authPlain(initialResponse: String)
    /// `AUTH LOGIN`.
    case authLogin
    /// `AUTH XOAUTH2 <base64>` with the initial response (an OAuth 2.0 bearer token, as
    /// Google's and Microsoft's mail servers take it).
    case authXOAuth2(initialResponse: String)
    /// A base64 line answering a 334 challenge; redacted in transcripts.
    case authResponse(String)
    /// `MAIL FROM:<address> parameters` (RFC 5321 section 4.1.1.2).
    case mail(from: String, parameters: [String])
    /// `RCPT TO:<address> parameters` (RFC 5321 section 4.1.1.3).
    case rcpt(to: String, parameters: [String])
    /// `DATA`.
    case data
    /// `RSET`.
    case rset
    /// `NOOP`.
    case noop
    /// `QUIT`.
    case quit

    /// The command line without CRLF. Secrets appear here; use `transcriptLine` for logs.
    public var line: String {
        switch self {
        case .ehlo(let name): "EHLO \(name)"
        case .helo(let name): "HELO \(name)"
        case .startTLS: "STARTTLS"
        case .authPlain(let response): "AUTH PLAIN \(response)"
        case .authLogin: "AUTH LOGIN"
        case .authXOAuth2(let response): "AUTH XOAUTH2 \(response)"
        case .authResponse(let response): response
        case .mail(let from, let parameters): (["MAIL FROM:<\(from)>"] + parameters).joined(separator: " ")
        case .rcpt(let to, let parameters): (["RCPT TO:<\(to)>"] + parameters).joined(separator: " ")
        case .data: "DATA"
        case .rset: "RSET"
        case .noop: "NOOP"
        case .quit: "QUIT"
        }
    }

    /// The line for a transcript or a log: AUTH payloads are replaced by `<redacted>`.
    public var transcriptLine: String {
        switch self {
        case .authPlain: "AUTH PLAIN <redacted>"
        case .authXOAuth2: "AUTH XOAUTH2 <redacted>"
        case .authResponse: "<redacted>"
        default: line
        }
    }

    /// Appends the command and CRLF to `buffer`.
    public func encode(into buffer: inout ByteBuffer) {
        buffer.writeString(line)
        buffer.writeStaticString("\r\n")
    }
}

/// Base64 (RFC 4648 section 4) for SASL payloads; small enough to keep the module pure.
public enum SMTPBase64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Encodes bytes with padding.
    public static func encode(_ bytes: some Collection<UInt8>) -> String {
        let input = Array(bytes)
        var output: [UInt8] = []
        output.reserveCapacity((input.count + 2) / 3 * 4)
        var index = 0
        while index + 2 < input.count {
            let value = UInt32(input[index]) << 16 | UInt32(input[index + 1]) << 8 | UInt32(input[index + 2])
            output += [alphabet[Int(value >> 18 & 63)], alphabet[Int(value >> 12 & 63)], alphabet[Int(value >> 6 & 63)], alphabet[Int(value & 63)]]
            index += 3
        }
        let remaining = input.count - index
        if remaining == 1 {
            let value = UInt32(input[index]) << 16
            output += [alphabet[Int(value >> 18 & 63)], alphabet[Int(value >> 12 & 63)], UInt8(ascii: "="), UInt8(ascii: "=")]
        } else if remaining == 2 {
            let value = UInt32(input[index]) << 16 | UInt32(input[index + 1]) << 8
            output += [alphabet[Int(value >> 18 & 63)], alphabet[Int(value >> 12 & 63)], alphabet[Int(value >> 6 & 63)], UInt8(ascii: "=")]
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// Decodes padded or unpadded base64; nil on any other character.
    public static func decode(_ text: String) -> [UInt8]? {
        var values: [UInt8] = []
        for byte in text.utf8 {
            if byte == UInt8(ascii: "=") { break }
            guard let index = alphabet.firstIndex(of: byte) else { return nil }
            values.append(UInt8(index))
        }
        var output: [UInt8] = []
        var index = 0
        while index < values.count {
            let chunk = values[index..<min(index + 4, values.count)]
            guard chunk.count >= 2 else { return nil }
            var value: UInt32 = 0
            for (offset, sextet) in chunk.enumerated() { value |= UInt32(sextet) << (18 - 6 * UInt32(offset)) }
            output.append(UInt8(value >> 16 & 0xFF))
            if chunk.count > 2 { output.append(UInt8(value >> 8 & 0xFF)) }
            if chunk.count > 3 { output.append(UInt8(value & 0xFF)) }
            index += 4
        }
        return output
    }
}
