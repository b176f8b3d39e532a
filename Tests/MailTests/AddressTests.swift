import Mail
import Testing

@Suite struct AddressTests {
    struct Valid: Sendable, CustomTestStringConvertible {
        var input: String
        var name: String?
        var local: String
        var domain: String
        var ascii: String
        var smtputf8: Bool = false
        var testDescription: String { input }
    }

    static let valid: [Valid] = [
        Valid(input: "a@b.c", name: nil, local: "a", domain: "b.c", ascii: "b.c"),
        Valid(input: "  <a@b.c>  ", name: nil, local: "a", domain: "b.c", ascii: "b.c"),
        Valid(input: "Name <a@b.c>", name: "Name", local: "a", domain: "b.c", ascii: "b.c"),
        Valid(input: "\"Doe, J.\" <a@b.c>", name: "Doe, J.", local: "a", domain: "b.c", ascii: "b.c"),
        Valid(input: "Doe, J. <a@b.c>", name: "Doe, J.", local: "a", domain: "b.c", ascii: "b.c"),
        Valid(input: "\"Say \\\"hi\\\"\" <a@b.c>", name: "Say \"hi\"", local: "a", domain: "b.c", ascii: "b.c"),
        Valid(input: "\"\" <a@b.c>", name: nil, local: "a", domain: "b.c", ascii: "b.c"),
        Valid(input: "Zoë <zoe@exämple.de>", name: "Zoë", local: "zoe", domain: "exämple.de", ascii: "xn--exmple-cua.de"),
        Valid(input: "j@Bücher.DE", name: nil, local: "j", domain: "Bücher.DE", ascii: "xn--bcher-kva.DE"),
        Valid(input: "x@例え.jp", name: nil, local: "x", domain: "例え.jp", ascii: "xn--r8jz45g.jp"),
        Valid(input: "用户@例子.广告", name: nil, local: "用户", domain: "例子.广告", ascii: "xn--fsqu00a.xn--4rr70v", smtputf8: true),
        Valid(input: "first.last+tag@sub.example.com", name: nil, local: "first.last+tag", domain: "sub.example.com", ascii: "sub.example.com"),
        Valid(input: "\"john doe\"@example.com", name: nil, local: "\"john doe\"", domain: "example.com", ascii: "example.com"),
        Valid(input: "o'brien@example.ie", name: nil, local: "o'brien", domain: "example.ie", ascii: "example.ie"),
        Valid(input: "user@localhost", name: nil, local: "user", domain: "localhost", ascii: "localhost"),
    ]

    @Test(arguments: valid)
    func parsesValidAddresses(_ case_: Valid) throws {
        let address = try EmailAddress(parsing: case_.input)
        #expect(address.displayName == case_.name)
        #expect(address.localPart == case_.local)
        #expect(address.domain == case_.domain)
        #expect(address.asciiDomain == case_.ascii)
        #expect(address.requiresSMTPUTF8 == case_.smtputf8)
        #expect(address.address == "\(case_.local)@\(case_.ascii)")
    }

    static let invalid: [(String, String)] = [
        ("", "invalid_address"),
        ("   ", "invalid_address"),
        ("plainaddress", "invalid_address"),
        ("@example.com", "invalid_address"),
        ("user@", "invalid_address"),
        ("a..b@example.com", "invalid_address"),
        (".a@example.com", "invalid_address"),
        ("a.@example.com", "invalid_address"),
        ("a b@example.com", "invalid_address"),
        ("a@exa mple.com", "invalid_address"),
        ("a@-example.com", "invalid_address"),
        ("a@example..com", "invalid_address"),
        ("a@example.com.", "invalid_address"),
        ("a@[127.0.0.1]", "invalid_address"),
        ("Name <a@b.c", "invalid_address"),
        ("Name a@b.c>", "invalid_address"),
        ("\"unterminated <a@b.c>", "invalid_address"),
        ("a@b.c\r\nBcc: victim@example.com", "header_injection"),
        ("Evil\nName <a@b.c>", "header_injection"),
        ("a\0@b.c", "header_injection"),
        (String(repeating: "x", count: 65) + "@example.com", "too_long"),
        ("x@" + String(repeating: "a", count: 64) + ".com", "invalid_address"),
        ("x@" + Array(repeating: String(repeating: "a", count: 60), count: 5).joined(separator: "."), "too_long"),
        (String(repeating: "N", count: 257) + " <a@b.c>", "too_long"),
        ("a@exa_mple.com", "invalid_address"),
        ("a@ex😀.com", "invalid_address"),
    ]

    @Test(arguments: invalid)
    func rejectsInvalidAddresses(_ input: String, _ code: String) {
        #expect(throws: AddressParseError.self) { try EmailAddress(parsing: input) }
        do {
            _ = try EmailAddress(parsing: input)
        } catch {
            #expect(error.code == code, "\(input.debugDescription): \(error.message)")
        }
    }

    @Test func domainTooLongIsRefused() {
        let domain = Array(repeating: String(repeating: "a", count: 63), count: 4).joined(separator: ".")  // 255
        #expect(throws: AddressParseError.self) { try EmailAddress(parsing: "x@" + domain + "a") }
    }
}

@Suite struct PunycodeTests {
    /// RFC 3492 §7.1 sample strings and common names.
    static let vectors: [(String, String)] = [
        ("bücher", "bcher-kva"),
        ("münchen", "mnchen-3ya"),
        ("exämple", "exmple-cua"),
        (
            "\u{644}\u{64A}\u{647}\u{645}\u{627}\u{628}\u{62A}\u{643}\u{644}\u{645}\u{648}\u{634}\u{639}\u{631}\u{628}\u{64A}\u{61F}",
            "egbpdaj6bu4bxfgehfvwxn"
        ),
        ("\u{4ED6}\u{4EEC}\u{4E3A}\u{4EC0}\u{4E48}\u{4E0D}\u{8BF4}\u{4E2D}\u{6587}", "ihqwcrb4cv8a8dqg056pqjye"),
        (
            "\u{3072}\u{3068}\u{3064}\u{5C4B}\u{6839}\u{306E}\u{4E0B}2",
            "2-u9tlzr9756bt3uc0v"
        ),
        ("\u{0436}\u{0436}\u{0436}", "f1aaa"),
        ("-> $1.00 <-", "-> $1.00 <--"),
    ]

    @Test(arguments: vectors)
    func encodesRFC3492Samples(_ input: String, _ output: String) {
        #expect(Punycode.encode(input) == output)
    }

    static let domains: [(String, String?)] = [
        ("example.com", "example.com"),
        ("ÄÖÜ.de", "xn--4ca0bs.de"),
        ("пример.рф", "xn--e1afmkfd.xn--p1ai"),
        ("e\u{301}xample.com", "xn--xample-9ua.com"),  // NFC: e + combining acute = é
        ("bad label.com", nil),
        ("", nil),
        ("a..b", nil),
        ("-ü.de", nil),
    ]

    @Test(arguments: domains)
    func convertsDomainsToASCII(_ input: String, _ output: String?) {
        #expect(IDNA.toASCII(input) == output)
    }
}
