/// Lower-case hexadecimal text of bytes: key digests and request hashes.
///
/// Not `String(format: "%02x")` per byte, which is slow enough to show in a profile
/// of the accept path (it runs for every request's key digest).
public enum Hex {
    /// `bytes` as lower-case hex, two digits per byte.
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var text: [UInt8] = []
        text.reserveCapacity(bytes.underestimatedCount * 2)
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// The sixteen lower-case hex digits, by value (also used by `JSONText` for `\u00XX`).
    static let digits: [UInt8] = Array("0123456789abcdef".utf8)
}
