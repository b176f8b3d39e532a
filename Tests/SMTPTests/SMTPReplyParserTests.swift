import NIOCore
import SMTP
import Testing

@Suite("SMTPReplyParser")
struct SMTPReplyParserTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var input: String
        var code: Int
        var enhanced: String?
        var lines: [String]
        var testDescription: String { input.debugDescription }
    }

    static let cases: [Case] = [
        Case(input: "250 OK\r\n", code: 250, enhanced: nil, lines: ["OK"]),
        Case(input: "250 2.1.0 Ok\r\n", code: 250, enhanced: "2.1.0", lines: ["Ok"]),
        Case(
            input: "250-mx.example\r\n250-PIPELINING\r\n250 SIZE 100\r\n",
            code: 250,
            enhanced: nil,
            lines: ["mx.example", "PIPELINING", "SIZE 100"]
        ),
        Case(input: "550-5.1.1 No such\r\n550 5.1.1 user\r\n", code: 550, enhanced: "5.1.1", lines: ["No such", "user"]),
        Case(input: "220\r\n", code: 220, enhanced: nil, lines: [""]),
        Case(input: "354 End data\n", code: 354, enhanced: nil, lines: ["End data"]),
        Case(input: "550 4.1.1 mismatched class is text\r\n", code: 550, enhanced: nil, lines: ["4.1.1 mismatched class is text"]),
    ]

    @Test(arguments: cases)
    func parses(_ testCase: Case) throws {
        var parser = SMTPReplyParser()
        var buffer = ByteBuffer(string: testCase.input)
        let reply = try #require(try parser.parse(&buffer))
        #expect(reply.code == testCase.code)
        #expect(reply.enhancedCode?.description == testCase.enhanced)
        #expect(reply.lines == testCase.lines)
        #expect(buffer.readableBytes == 0)
    }

    @Test("a reply split across reads is assembled")
    func partial() throws {
        var parser = SMTPReplyParser()
        var buffer = ByteBuffer(string: "250-a\r\n25")
        #expect(try parser.parse(&buffer) == nil)
        buffer.writeString("0 b\r\n")
        #expect(try parser.parse(&buffer)?.lines == ["a", "b"])
    }

    @Test("a 100 KB line is an error as soon as 2 KB have arrived")
    func longLine() {
        var parser = SMTPReplyParser()
        var buffer = ByteBuffer(string: "250 " + String(repeating: "x", count: 3000))
        #expect(throws: SMTPReplyParseError.lineTooLong(limit: 2048)) { try parser.parse(&buffer) }
    }

    @Test(
        "enhanced status codes: a class of one digit (2, 4, 5), then two parts of one to three digits",
        arguments: [
            ("2.0.0", "2.0.0"), ("5.7.8", "5.7.8"), ("4.4.2", "4.4.2"), ("2.1.23", "2.1.23"), ("5.123.999", "5.123.999"),
            ("3.0.0", nil), ("22.0.0", nil), ("2.0", nil), ("2.0.0.0", nil), ("2..0", nil), ("2.0.", nil), (".2.0", nil),
            ("2.1000.0", nil), ("2.0.x", nil), ("2.0.٣", nil), ("", nil),
        ] as [(String, String?)]
    )
    func enhancedCodes(_ text: String, _ expected: String?) {
        #expect(EnhancedStatusCode(Substring(text))?.description == expected)
    }

    @Test("a line that is not UTF-8 is read without error, its bytes replaced")
    func invalidUTF8() throws {
        var parser = SMTPReplyParser()
        var buffer = ByteBuffer(bytes: Array("550 5.1.1 caf".utf8) + [0xE9] + Array(" \r\n".utf8))
        let reply = try #require(try parser.parse(&buffer))
        #expect(reply.enhancedCode?.description == "5.1.1")
        #expect(reply.lines == ["caf\u{FFFD} "])
    }

    @Test(arguments: ["hello\r\n", "25\r\n", "250x\r\n", "650 x\r\n", "\r\n"])
    func garbage(_ input: String) {
        var parser = SMTPReplyParser()
        var buffer = ByteBuffer(string: input)
        #expect(throws: SMTPReplyParseError.malformedLine) { try parser.parse(&buffer) }
    }
}
