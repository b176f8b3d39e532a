/// A small JSON writer for the outbox's own documents: the tags column and event
/// payloads, written on every accept and every attempt.
///
/// Foundation's `JSONEncoder` was a tenth of the accept path in a profile. This
/// writes the same JSON (object keys sorted, absent optionals left out, strings
/// escaped as RFC 8259 requires; `/` is not escaped), without the `Encoder` machinery.
/// Readers still decode with `JSONDecoder`.
struct JSONText {
    private(set) var bytes: [UInt8] = []

    init(capacity: Int = 256) {
        bytes.reserveCapacity(capacity)
    }

    var text: String { String(decoding: bytes, as: UTF8.self) }

    mutating func raw(_ text: StaticString) {
        text.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    mutating func string(_ value: String) {
        bytes.append(UInt8(ascii: "\""))
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\""): raw("\\\"")
            case UInt8(ascii: "\\"): raw("\\\\")
            case 0x0A: raw("\\n")
            case 0x0D: raw("\\r")
            case 0x09: raw("\\t")
            case 0x08: raw("\\b")
            case 0x0C: raw("\\f")
            case 0..<0x20:
                raw("\\u00")
                bytes.append(Hex.digits[Int(byte >> 4)])
                bytes.append(Hex.digits[Int(byte & 0x0F)])
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    mutating func number(_ value: Int) {
        bytes.append(contentsOf: String(value).utf8)
    }

    /// `"key":` (with a leading comma unless `first`).
    mutating func key(_ name: StaticString, first: Bool = false) {
        if !first { bytes.append(UInt8(ascii: ",")) }
        bytes.append(UInt8(ascii: "\""))
        raw(name)
        raw("\":")
    }

    /// An object of strings, keys in sorted order.
    mutating func object(_ dictionary: [String: String]) {
        bytes.append(UInt8(ascii: "{"))
        for (index, key) in dictionary.keys.sorted().enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            string(key)
            bytes.append(UInt8(ascii: ":"))
            string(dictionary[key] ?? "")
        }
        bytes.append(UInt8(ascii: "}"))
    }

    /// `dictionary` as a JSON object with sorted keys.
    static func encode(_ dictionary: [String: String]) -> String {
        var writer = JSONText(capacity: 64)
        writer.object(dictionary)
        return writer.text
    }
}

extension EventPayload {
    /// The payload as JSON, keys sorted (as `JSONEncoder` with `.sortedKeys` writes it).
    var json: String {
        var writer = JSONText(capacity: 128 + 96 * recipients.count)
        writer.raw("{")
        writer.key("email_id", first: true)
        writer.string(emailID)
        writer.key("recipients")
        writer.raw("[")
        for (index, recipient) in recipients.enumerated() {
            if index > 0 { writer.raw(",") }
            writer.raw("{")
            writer.key("address", first: true)
            writer.string(recipient.address)
            if let code = recipient.code {
                writer.key("code")
                writer.number(code)
            }
            if let enhancedCode = recipient.enhancedCode {
                writer.key("enhanced_code")
                writer.string(enhancedCode)
            }
            writer.key("kind")
            writer.string(recipient.kind)
            writer.key("status")
            writer.string(recipient.status)
            if let text = recipient.text {
                writer.key("text")
                writer.string(text)
            }
            writer.raw("}")
        }
        writer.raw("]")
        writer.key("status")
        writer.string(status)
        writer.key("tags")
        writer.object(tags)
        writer.raw("}")
        return writer.text
    }
}
