/// Header encoding: RFC 5322 folding, RFC 2047 encoded words, RFC 2231 parameters, dates.
enum HeaderEncoding {
    /// RFC 5322 §2.1.1: lines SHOULD be at most 78 characters, excluding CRLF.
    static let foldWidth = 78
    /// RFC 5322 §2.1.1: lines MUST be at most 998 characters, excluding CRLF.
    static let maxLineLength = 998

    /// Renders `Name: tok1 tok2 ...` with a single space between tokens, replaced by CRLF SP
    /// (RFC 5322 §2.2.3 folding) where the line would pass 78 octets. Unfolding (removing the CRLFs)
    /// gives back the tokens joined by single spaces. No trailing CRLF.
    static func fold(name: String, tokens: [String]) -> String {
        var out = name + ":"
        var lineLength = out.utf8.count
        var lineHasToken = false
        for token in tokens {
            let length = token.utf8.count
            if lineHasToken && lineLength + 1 + length > foldWidth {
                out += "\r\n " + token
                lineLength = 1 + length
            } else {
                out += " " + token
                lineLength += 1 + length
            }
            lineHasToken = true
        }
        return out
    }

    /// True when `text` can go into a header as plain words: printable ASCII words separated by
    /// single spaces, no leading or trailing space, nothing that reads as an encoded word (`=?`),
    /// and no word longer than `maxWord`. Anything else is written as RFC 2047 encoded words so
    /// that it survives folding and unfolding exactly.
    static func isPlainText(_ text: String, maxWord: Int = 70) -> Bool {
        if text.isEmpty { return true }
        let bytes = Array(text.utf8)
        if bytes.first == 0x20 || bytes.last == 0x20 { return false }
        var word = 0
        var previous: UInt8 = 0
        for b in bytes {
            if b == 0x20 {
                if previous == 0x20 { return false }
                word = 0
            } else {
                if b < 0x21 || b > 0x7E { return false }
                if previous == UInt8(ascii: "=") && b == UInt8(ascii: "?") { return false }
                word += 1
                if word > maxWord { return false }
            }
            previous = b
        }
        return true
    }

    /// RFC 2047 §2, §4.1: `text` as "B"-encoded UTF-8 words of at most 75 characters each,
    /// split only between Unicode scalars (§5: each word holds whole characters).
    /// Adjacent encoded words separated by whitespace decode to their concatenation (§6.2).
    static func encodedWords(_ text: String) -> [String] {
        // "=?UTF-8?B?" + 60 base64 chars + "?=" = 72 <= 75; 60 base64 chars carry 45 octets.
        let maxOctets = 45
        var words: [String] = []
        var chunk: [UInt8] = []
        for scalar in text.unicodeScalars {
            let encoded = Array(String(scalar).utf8)
            if chunk.count + encoded.count > maxOctets {
                words.append("=?UTF-8?B?" + Base64.encode(chunk) + "?=")
                chunk.removeAll(keepingCapacity: true)
            }
            chunk += encoded
        }
        if !chunk.isEmpty || words.isEmpty {
            words.append("=?UTF-8?B?" + Base64.encode(chunk) + "?=")
        }
        return words
    }

    /// Unstructured text (RFC 5322 §3.2.5, e.g. Subject) as fold tokens.
    static func unstructuredTokens(_ text: String) -> [String] {
        if text.isEmpty { return [] }
        if isPlainText(text) {
            return text.split(separator: " ").map(String.init)
        }
        return encodedWords(text)
    }

    /// RFC 5322 §3.2.3 atext (ASCII).
    static func isASCIIAtext(_ b: UInt8) -> Bool {
        if (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) { return true }
        return atextSymbols.contains(b)
    }

    private static let atextSymbols = Set("!#$%&'*+-/=?^_`{|}~".utf8)

    /// A display name as phrase tokens (RFC 5322 §3.2.5): atoms, a quoted-string split at its
    /// spaces (FWS is allowed inside, §3.2.4), or RFC 2047 encoded words (§5 (3)).
    static func phraseTokens(_ name: String) -> [String] {
        guard isPlainText(name, maxWord: 60) else { return encodedWords(name) }
        let words = name.split(separator: " ").map(String.init)
        if words.allSatisfy({ $0.utf8.allSatisfy(isASCIIAtext) }) {
            return words
        }
        var quoted = "\""
        for scalar in name.unicodeScalars {
            if scalar == "\"" || scalar == "\\" { quoted += "\\" }
            quoted.unicodeScalars.append(scalar)
        }
        quoted += "\""
        return quoted.split(separator: " ").map(String.init)
    }

    /// A mailbox (RFC 5322 §3.4) as fold tokens: `[phrase...] <addr>` or `addr`.
    static func mailboxTokens(_ address: EmailAddress) -> [String] {
        guard let name = address.displayName, !name.isEmpty else { return [address.address] }
        return phraseTokens(name) + ["<\(address.address)>"]
    }

    /// A mailbox list (RFC 5322 §3.4 address-list), comma-separated.
    static func mailboxListTokens(_ addresses: [EmailAddress]) -> [String] {
        var tokens: [String] = []
        for (index, address) in addresses.enumerated() {
            var mailbox = mailboxTokens(address)
            if index < addresses.count - 1, let last = mailbox.popLast() {
                mailbox.append(last + ",")
            }
            tokens += mailbox
        }
        return tokens
    }

    // MARK: RFC 2231 parameters

    /// RFC 2045 §5.1 tspecials plus the RFC 2231 §7 exclusions (`*`, `'`, `%`).
    private static let notAttributeChar = Set("()<>@,;:\\\"/[]?=*'% ".utf8)

    /// `name=value` as fold tokens: a quoted-string when `value` is short printable ASCII,
    /// else RFC 2231 §3/§4 `name*=utf-8''percent-encoded`, split into `name*0*`, `name*1*`, ...
    /// continuations so that every line stays near 78 octets.
    static func parameterTokens(name: String, value: String) -> [String] {
        let bytes = Array(value.utf8)
        let simple =
            bytes.count <= 60 && !bytes.isEmpty
            && bytes.allSatisfy { $0 >= 0x20 && $0 <= 0x7E && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") }
            && !value.contains("=?")
        if simple {
            return ["\(name)=\"\(value)\""]
        }
        var pieces: [String] = []
        var current = ""
        let hex = Array("0123456789ABCDEF".utf8)
        for b in bytes {
            var unit: String
            if b > 0x20 && b < 0x7F && !notAttributeChar.contains(b) {
                unit = String(UnicodeScalar(b))
            } else {
                unit = "%"
                unit.unicodeScalars.append(UnicodeScalar(hex[Int(b >> 4)]))
                unit.unicodeScalars.append(UnicodeScalar(hex[Int(b & 0x0F)]))
            }
            if current.utf8.count + unit.utf8.count > 48 {
                pieces.append(current)
                current = ""
            }
            current += unit
        }
        pieces.append(current)
        if pieces.count == 1 {
            return ["\(name)*=utf-8''\(pieces[0])"]
        }
        return pieces.enumerated().map { index, piece in
            index == 0 ? "\(name)*0*=utf-8''\(piece)" : "\(name)*\(index)*=\(piece)"
        }
    }

    // MARK: RFC 5322 §3.3 date-time

    /// `Sun, 29 Nov 2026 12:23:03 +0000` for seconds since 1970 (UTC).
    static func rfc5322Date(secondsSince1970: Int64) -> String {
        let days = secondsSince1970 >= 0 ? secondsSince1970 / 86_400 : (secondsSince1970 - 86_399) / 86_400
        let secondsOfDay = Int(secondsSince1970 - days * 86_400)
        // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        let weekday = Int(((days % 7) + 7 + 4) % 7)  // 1970-01-01 was a Thursday.
        let weekdays = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
        let h = secondsOfDay / 3_600
        let m = (secondsOfDay % 3_600) / 60
        let s = secondsOfDay % 60
        return "\(weekdays[weekday]), \(day) \(months[Int(month) - 1]) \(year) \(two(h)):\(two(m)):\(two(s)) +0000"
    }
}
