import Foundation

/// Internationalised domain names: Unicode domains to their ASCII (A-label) form.
///
/// This is IDNA 2008 (RFC 5890, 5891) with a deliberately small mapping step instead of the full
/// UTS #46 table: the label separators `。` `．` `｡` count as dots (UTS #46 §4), each label is
/// lowercased and put in Unicode Normalization Form KC (Foundation; this also maps fullwidth
/// letters to ASCII), then checked (letters, marks, digits and hyphens only; no leading or
/// trailing hyphen) and Punycode-encoded (RFC 3492) with the `xn--` prefix. There is no
/// transitional processing (`ß` stays `ß`, as in IDNA 2008 and current browsers) and no
/// bidi or CONTEXTJ rule check (RFC 5893, RFC 5892 Appendix A); the result is always a valid
/// LDH name or an error. Tests compare the result with Python's `idna` package.
public enum IDNA {
    /// The ASCII-compatible form of `domain`, or nil when a label is empty, too long (63 octets,
    /// RFC 1035 §2.3.4) or contains characters a host name cannot have.
    public static func toASCII(_ domain: String) -> String? {
        if domain.isEmpty { return nil }
        var labels: [String] = []
        // UTS #46 §4 step 1 maps these full stops to ".".
        let separators: Set<Character> = [".", "\u{3002}", "\u{FF0E}", "\u{FF61}"]
        for label in domain.split(omittingEmptySubsequences: false, whereSeparator: { separators.contains($0) }) {
            guard let ascii = labelToASCII(String(label)) else { return nil }
            labels.append(ascii)
        }
        return labels.joined(separator: ".")
    }

    /// One label to its A-label (or unchanged LDH label).
    static func labelToASCII(_ label: String) -> String? {
        // An A-label has at most 63 octets, so a U-label has fewer scalars; this also bounds
        // the Punycode encoder's quadratic loop.
        if label.isEmpty || label.unicodeScalars.count > 63 { return nil }
        if label.unicodeScalars.allSatisfy(\.isASCII) {
            return isLDHLabel(label) ? label : nil
        }
        // The mapping step (see the type's documentation): lowercase, then NFKC.
        let mapped = label.lowercased().precomposedStringWithCompatibilityMapping
        if mapped.unicodeScalars.allSatisfy(\.isASCII) {
            return isLDHLabel(mapped) ? mapped : nil
        }
        for scalar in mapped.unicodeScalars {
            if scalar.isASCII {
                let v = scalar.value
                let isLDH =
                    (v >= 0x61 && v <= 0x7A) || (v >= 0x30 && v <= 0x39) || v == 0x2D
                if !isLDH { return nil }
            } else {
                // RFC 5892 in spirit: letters, combining marks and digits only.
                switch scalar.properties.generalCategory {
                case .lowercaseLetter, .uppercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter,
                    .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber:
                    break
                default:
                    return nil
                }
            }
        }
        // RFC 5891 §4.2.3.1: no hyphen at the start or end; no "--" in positions 3 and 4.
        if mapped.hasPrefix("-") || mapped.hasSuffix("-") { return nil }
        guard let encoded = Punycode.encode(mapped) else { return nil }
        let aLabel = "xn--" + encoded
        return aLabel.utf8.count <= 63 ? aLabel : nil
    }

    /// RFC 1035 §2.3.1 LDH label (letters, digits, hyphen; not starting or ending with a hyphen), at most 63 octets.
    static func isLDHLabel(_ label: String) -> Bool {
        let bytes = Array(label.utf8)
        guard !bytes.isEmpty, bytes.count <= 63 else { return false }
        if bytes.first == UInt8(ascii: "-") || bytes.last == UInt8(ascii: "-") { return false }
        return bytes.allSatisfy { b in
            (b >= 0x61 && b <= 0x7A) || (b >= 0x41 && b <= 0x5A) || (b >= 0x30 && b <= 0x39) || b == 0x2D
        }
    }
}

/// The Punycode encoder of RFC 3492 (Bootstring with the parameters of §5).
public enum Punycode {
    private static let base = 36
    private static let tMin = 1
    private static let tMax = 26
    private static let skew = 38
    private static let damp = 700
    private static let initialBias = 72
    private static let initialN = 128

    /// RFC 3492 §6.1: bias adaptation.
    private static func adapt(delta: Int, numPoints: Int, firstTime: Bool) -> Int {
        var delta = firstTime ? delta / damp : delta / 2
        delta += delta / numPoints
        var k = 0
        while delta > ((base - tMin) * tMax) / 2 {
            delta /= base - tMin
            k += base
        }
        return k + (base - tMin + 1) * delta / (delta + skew)
    }

    private static func digit(_ d: Int) -> Character {
        // 0..25 -> a..z, 26..35 -> 0..9 (RFC 3492 §5).
        let value = d < 26 ? 0x61 + d : 0x30 + d - 26
        return Character(Unicode.Scalar(UInt8(value)))
    }

    /// Encodes `input` (the Punycode part only, without `xn--`), RFC 3492 §6.3.
    /// Returns nil on overflow, which needs inputs far longer than any DNS label.
    public static func encode(_ input: String) -> String? {
        let codePoints = input.unicodeScalars.map { Int($0.value) }
        var output = ""
        for c in codePoints where c < 0x80 {
            output.append(Character(Unicode.Scalar(UInt8(c))))
        }
        let basicCount = output.unicodeScalars.count
        var handled = basicCount
        if basicCount > 0 { output.append("-") }

        var n = initialN
        var delta = 0
        var bias = initialBias
        let maxInt = Int(Int32.max)
        while handled < codePoints.count {
            guard let m = codePoints.filter({ $0 >= n }).min() else { return nil }
            let (product, overflow) = (m - n).multipliedReportingOverflow(by: handled + 1)
            if overflow || delta > maxInt - product { return nil }
            delta += product
            n = m
            for c in codePoints {
                if c < n {
                    delta += 1
                    if delta > maxInt { return nil }
                }
                if c == n {
                    var q = delta
                    var k = base
                    while true {
                        let t = k <= bias ? tMin : (k >= bias + tMax ? tMax : k - bias)
                        if q < t { break }
                        output.append(digit(t + (q - t) % (base - t)))
                        q = (q - t) / (base - t)
                        k += base
                    }
                    output.append(digit(q))
                    bias = adapt(delta: delta, numPoints: handled + 1, firstTime: handled == basicCount)
                    delta = 0
                    handled += 1
                }
            }
            delta += 1
            n += 1
        }
        return output
    }
}
