import Foundation

/// Time-ordered, random public ids (`em_` + 26 Crockford base-32 characters, as ULID).
///
/// The first 48 bits are milliseconds since 1970, so new rows append to the end of the
/// primary-key index; the remaining 80 bits come from the system's random generator.
public enum EmailID {
    private static let alphabet = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ".utf8)

    /// A new email id.
    public static func make(now: Date = Date()) -> String {
        "em_" + ulid(now: now)
    }

    /// A new ULID string (26 characters).
    public static func ulid(now: Date = Date()) -> String {
        var generator = SystemRandomNumberGenerator()
        let millis = UInt64(max(0, (now.timeIntervalSince1970 * 1000).rounded()))
        var bytes = [UInt8](repeating: 0, count: 16)
        for index in 0..<6 {
            bytes[index] = UInt8(truncatingIfNeeded: millis >> (8 * (5 - index)))
        }
        for index in 6..<16 {
            bytes[index] = UInt8.random(in: 0...255, using: &generator)
        }
        // 128 bits -> 26 base-32 digits (the first digit carries 3 bits).
        var output = [UInt8]()
        output.reserveCapacity(26)
        var bitBuffer: UInt32 = 0
        var bitCount = 2  // pad 2 zero bits in front: 130 bits = 26 * 5
        for byte in bytes {
            bitBuffer = (bitBuffer << 8) | UInt32(byte)
            bitCount += 8
            while bitCount >= 5 {
                bitCount -= 5
                output.append(alphabet[Int((bitBuffer >> UInt32(bitCount)) & 0x1F)])
            }
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// Whether `text` has the shape of an email id (cheap check before a lookup).
    public static func isWellFormed(_ text: String) -> Bool {
        let utf8 = Array(text.utf8)
        guard utf8.count == 29, text.hasPrefix("em_") else { return false }
        return utf8[3...].allSatisfy { alphabet.contains($0) }
    }
}
