import NIOCore
import SMTP
import Testing

@Suite("SMTPDataEncoder: CRLF only, dot-stuffing, terminator")
struct SMTPDataEncoderTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var input: String
        var wire: String
        var testDescription: String { input.debugDescription }
    }

    static let cases: [Case] = [
        Case(input: "", wire: ".\r\n"),
        Case(input: "a", wire: "a\r\n.\r\n"),
        Case(input: "a\r\n", wire: "a\r\n.\r\n"),
        Case(input: ".", wire: "..\r\n.\r\n"),
        Case(input: ".\r\n", wire: "..\r\n.\r\n"),
        Case(input: "a\r\n.b\r\n..c\r\n", wire: "a\r\n..b\r\n...c\r\n.\r\n"),
        Case(input: "a\nb\n", wire: "a\r\nb\r\n.\r\n"),
        Case(input: "a\rb\r", wire: "a\r\nb\r\n.\r\n"),
        Case(input: "a\r\r\nb", wire: "a\r\n\r\nb\r\n.\r\n"),
        Case(input: "\n.\n", wire: "\r\n..\r\n.\r\n"),
        Case(input: "x.y\r\n a.\r\n", wire: "x.y\r\n a.\r\n.\r\n"),
        Case(input: "a\r\n.\r\nb", wire: "a\r\n..\r\nb\r\n.\r\n"),
    ]

    @Test(arguments: cases)
    func encodes(_ testCase: Case) {
        let buffer = SMTPDataEncoder.encode(Array(testCase.input.utf8))
        #expect(String(buffer: buffer) == testCase.wire)
    }

    @Test("the output does not depend on where the input is split", arguments: cases)
    func chunked(_ testCase: Case) {
        let bytes = Array(testCase.input.utf8)
        for split in 0...bytes.count {
            var encoder = SMTPDataEncoder()
            var buffer = ByteBuffer()
            encoder.encode(bytes[..<split], into: &buffer)
            encoder.encode(bytes[split...], into: &buffer)
            encoder.finish(into: &buffer)
            #expect(String(buffer: buffer) == testCase.wire, "split at \(split)")
        }
    }

    @Test("the bulk path and the byte-at-a-time path agree on random input")
    func pathsAgree() {
        var generator = SystemRandomNumberGenerator()
        let alphabet: [UInt8] = [13, 10, UInt8(ascii: "."), UInt8(ascii: "a"), 0xC3]
        for _ in 0..<500 {
            let input = (0..<Int.random(in: 0..<60, using: &generator)).map { _ in alphabet.randomElement(using: &generator) ?? 10 }
            var bulk = SMTPDataEncoder()
            var bulkBuffer = ByteBuffer()
            bulk.encode(input[...], into: &bulkBuffer)
            bulk.finish(into: &bulkBuffer)
            var slow = SMTPDataEncoder()
            var slowBuffer = ByteBuffer()
            slow.encode(input.lazy.map { $0 }, into: &slowBuffer)
            slow.finish(into: &slowBuffer)
            #expect(bulkBuffer == slowBuffer, "\(input)")
        }
    }

    @Test("no bare CR or LF reaches the wire, whatever the input")
    func noBareLineEnds() {
        var generator = SystemRandomNumberGenerator()
        let alphabet: [UInt8] = [13, 10, UInt8(ascii: "."), UInt8(ascii: "a"), 0xC3]
        for _ in 0..<500 {
            let input = (0..<Int.random(in: 0..<40, using: &generator)).map { _ in alphabet.randomElement(using: &generator) ?? 10 }
            let wire = Array(SMTPDataEncoder.encode(input).readableBytesView)
            for (index, byte) in wire.enumerated() {
                if byte == 13 { #expect(index + 1 < wire.count && wire[index + 1] == 10) }
                if byte == 10 { #expect(index > 0 && wire[index - 1] == 13) }
            }
            #expect(wire.suffix(3) == [UInt8(ascii: "."), 13, 10])
            #expect(wire.count == 3 || wire.suffix(5).prefix(2) == [13, 10])
        }
    }
}

@Suite("SMTPCommand encoding and transcripts")
struct SMTPCommandTests {
    @Test(
        arguments: [
            (SMTPCommand.ehlo("client.example"), "EHLO client.example"),
            (.helo("client.example"), "HELO client.example"),
            (.mail(from: "a@example.com", parameters: ["SIZE=10", "BODY=8BITMIME"]), "MAIL FROM:<a@example.com> SIZE=10 BODY=8BITMIME"),
            (.mail(from: "", parameters: []), "MAIL FROM:<>"),
            (.rcpt(to: "b@example.com", parameters: []), "RCPT TO:<b@example.com>"),
            (.data, "DATA"), (.rset, "RSET"), (.quit, "QUIT"), (.startTLS, "STARTTLS"), (.noop, "NOOP"),
        ]
    )
    func encodes(_ command: SMTPCommand, _ line: String) {
        var buffer = ByteBuffer()
        command.encode(into: &buffer)
        #expect(String(buffer: buffer) == line + "\r\n")
        #expect(command.transcriptLine == line)
    }

    @Test("AUTH payloads are redacted in transcripts")
    func redaction() {
        #expect(SMTPCommand.authPlain(initialResponse: "AHVzZXIAcGFzcw==").transcriptLine == "AUTH PLAIN <redacted>")
        #expect(SMTPCommand.authResponse("cGFzcw==").transcriptLine == "<redacted>")
        #expect(SMTPCommand.authLogin.transcriptLine == "AUTH LOGIN")
    }

    @Test(arguments: [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")])
    func base64(_ plain: String, _ encoded: String) {
        #expect(SMTPBase64.encode(Array(plain.utf8)) == encoded)
        #expect(SMTPBase64.decode(encoded) == Array(plain.utf8))
    }

    @Test(arguments: ["a@example.com", "\"quoted\"@example.com", "用户@例子.广告", ""])
    func safeAddresses(_ address: String) {
        #expect(SMTPEnvelope.isSafeAddress(address))
    }

    @Test(arguments: ["a@example.com\r\nRCPT TO:<x@y>", "a@b\n", "a b@c", "<a@b>", "a@b>", "a\u{0}@b", String(repeating: "a", count: 300)])
    func unsafeAddresses(_ address: String) {
        #expect(!SMTPEnvelope.isSafeAddress(address))
    }
}

@Suite("SMTPCapabilities")
struct SMTPCapabilitiesTests {
    @Test("EHLO keywords are parsed case-insensitively with their parameters")
    func parses() {
        let reply = SMTPReply(
            code: 250,
            lines: [
                "mx.example Hello", "pipelining", "SIZE 35882577", "AUTH LOGIN plain", "AUTH=CRAM-MD5", "8BITMIME", "SMTPUTF8", "STARTTLS",
                "ENHANCEDSTATUSCODES",
            ]
        )
        let capabilities = SMTPCapabilities(ehloReply: reply)
        #expect(capabilities.supportsPipelining)
        #expect(capabilities.maximumMessageSize == 35_882_577)
        #expect(capabilities.authMechanisms == ["LOGIN", "PLAIN", "CRAM-MD5"])
        #expect(capabilities.supports8BitMIME && capabilities.supportsSMTPUTF8 && capabilities.supportsStartTLS)
        #expect(capabilities.supportsEnhancedStatusCodes)
        #expect(!capabilities.supports("CHUNKING"))
    }

    @Test("SIZE without a number means no fixed limit; no SIZE means unknown")
    func size() {
        #expect(SMTPCapabilities(ehloReply: SMTPReply(code: 250, lines: ["x", "SIZE"])).maximumMessageSize == 0)
        #expect(SMTPCapabilities(ehloReply: SMTPReply(code: 250, lines: ["x"])).maximumMessageSize == nil)
        #expect(SMTPCapabilities(ehloReply: SMTPReply(code: 250, lines: ["x", "SIZE"])).authMechanisms.isEmpty)
    }
}
