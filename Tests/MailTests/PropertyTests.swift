import Foundation
import Testing

@testable import Mail

/// SplitMix64: a small seeded generator, so a failing case can be replayed from its seed.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Random Unicode text from ranges that exercise every encoder path.
enum RandomText {
    static let ranges: [ClosedRange<UInt32>] = [
        0x20...0x7E,  // printable ASCII, including quotes, backslash, '=', '?'
        0x20...0x7E,
        0x20...0x7E,
        0xA0...0x17F,  // Latin-1 and Latin Extended-A
        0x370...0x3FF,  // Greek
        0x400...0x4FF,  // Cyrillic
        0x5D0...0x5EA,  // Hebrew
        0x600...0x64A,  // Arabic
        0x300...0x36F,  // combining marks
        0x3040...0x309F,  // Hiragana
        0x4E00...0x9FFF,  // CJK
        0xAC00...0xD7A3,  // Hangul
        0x1F300...0x1F64F,  // emoji
        0x2000...0x206F,  // punctuation, including zero-width joiners and line/paragraph separators
    ]
    static let specials = ["=?", "?=", "=?UTF-8?B?", "\"", "\\", "  ", "\t", "<", ">", ",", ";", ":", "@", "(", ")"]

    static func scalar(using rng: inout SeededGenerator) -> Unicode.Scalar {
        let range = ranges[Int.random(in: 0..<ranges.count, using: &rng)]
        while true {
            if let s = Unicode.Scalar(UInt32.random(in: range, using: &rng)) { return s }
        }
    }

    /// A single-line string (no CR, LF or NUL) of up to `maxLength` scalars.
    static func line(maxLength: Int, using rng: inout SeededGenerator) -> String {
        var out = String.UnicodeScalarView()
        let length = Int.random(in: 0...maxLength, using: &rng)
        while out.count < length {
            if Int.random(in: 0..<10, using: &rng) == 0, let special = specials.randomElement(using: &rng) {
                out.append(contentsOf: special.unicodeScalars)
            } else {
                out.append(scalar(using: &rng))
            }
        }
        return String(String(out).unicodeScalars.prefix(maxLength))
    }

    /// Multi-line text with mixed line breaks and occasional very long lines.
    static func body(using rng: inout SeededGenerator) -> String {
        var lines: [String] = []
        for _ in 0..<Int.random(in: 1...8, using: &rng) {
            if Int.random(in: 0..<8, using: &rng) == 0 {
                lines.append(String(repeating: line(maxLength: 10, using: &rng), count: 150))
            } else {
                lines.append(line(maxLength: 120, using: &rng))
            }
        }
        var out = ""
        for (index, line) in lines.enumerated() {
            out += line
            if index < lines.count - 1 { out += ["\n", "\r\n", "\r"].randomElement(using: &rng) ?? "\n" }
        }
        return out
    }
}

@Suite struct PropertyTests {
    static let seed: UInt64 = {
        if let text = ProcessInfo.processInfo.environment["PIGEON_PROPERTY_SEED"], let seed = UInt64(text) { return seed }
        return 20_261_129
    }()
    static let count = 150

    struct Sample {
        var draft: EmailDraft
        var names: [String?]
        var message: ComposedMessage
    }

    static func quoted(_ name: String) -> String {
        // Escapes by scalar: a quote followed by a combining mark is one Character, still a quote.
        var out = String.UnicodeScalarView()
        for scalar in name.unicodeScalars {
            if scalar == "\"" || scalar == "\\" { out.append("\\") }
            out.append(scalar)
        }
        return "\"" + String(out) + "\""
    }

    /// Composes `count` random drafts from `seed`.
    static func samples(signer: DKIMSigner? = nil) throws -> [Sample] {
        var rng = SeededGenerator(seed: seed)
        var samples: [Sample] = []
        let domains = ["example.com", "exämple.de", "例え.jp", "пример.рф"]
        for index in 0..<count {
            let names = (0..<Int.random(in: 1...4, using: &rng)).map { _ in RandomText.line(maxLength: 60, using: &rng) }
            let addresses = names.enumerated().map { i, name in
                "\(quoted(name)) <user\(i)@\(domains[Int.random(in: 0..<domains.count, using: &rng)])>"
            }
            var draft = EmailDraft(
                from: addresses[0],
                to: Array(addresses.dropFirst()) + ["plain\(index)@example.org"],
                subject: RandomText.line(maxLength: 200, using: &rng),
                text: RandomText.body(using: &rng),
                html: Bool.random(using: &rng) ? "<p>" + RandomText.body(using: &rng) + "</p>" : nil
            )
            if Bool.random(using: &rng) {
                let bytes = (0..<Int.random(in: 0...3_000, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                var filename = String(
                    String.UnicodeScalarView(RandomText.line(maxLength: 80, using: &rng).unicodeScalars.filter { $0.value >= 0x20 })
                )
                if filename.isEmpty { filename = "file" }
                draft.attachments = [Attachment(filename: filename + ".bin", content: bytes)]
            }
            let message: ComposedMessage
            do {
                message = try MessageComposer(signer: signer).compose(draft, date: Date(timeIntervalSince1970: 1_764_417_600))
            } catch {
                Issue.record("seed \(seed), sample \(index): \(error) for \(draft.from.debugDescription) \(draft.to.debugDescription)")
                throw error
            }
            samples.append(
                Sample(draft: draft, names: names.map { $0.trimmingCharacters(in: .init(charactersIn: " \t")).isEmpty ? nil : $0 }, message: message)
            )
        }
        return samples
    }

    @Test func everyLineIsShortAndEndsInCRLF() throws {
        for sample in try Self.samples() {
            expectWireSafe(sample.message.data)
            #expect(!sample.message.has8BitData, "all local parts are ASCII, so no 8-bit octets")
            // Header lines stay near 78 octets: only unbreakable tokens may pass it.
            let headerLines = lines(sample.message.data).prefix { !$0.isEmpty }
            #expect(headerLines.allSatisfy { $0.utf8.count <= 100 }, "seed \(Self.seed)")
        }
    }

    @Test(.enabled(if: Oracle.runEmail)) func pythonParsesBackTheSameText() throws {
        let samples = try Self.samples()
        var paths: [String] = []
        defer { for path in paths { try? FileManager.default.removeItem(atPath: path) } }
        for sample in samples { paths.append(try Oracle.temporaryFile(sample.message.data)) }
        let parsed = try Oracle.call([ParsedMessage].self, ["parse-many"] + paths)
        #expect(parsed.count == samples.count)
        for (sample, got) in zip(samples, parsed) {
            let draft = sample.draft
            #expect(got.defects.isEmpty, "seed \(Self.seed): \(got.defects)")
            #expect(got.subject == draft.subject, "seed \(Self.seed)")
            // Names through CPython's RFC 2047 decoder (see mail_oracle.py on its address parser).
            #expect(got.from_rfc2047?.first?.name == sample.names[0] ?? "", "seed \(Self.seed)")
            #expect(got.to_rfc2047?.dropLast().map(\.name) == sample.names.dropFirst().map { $0 ?? "" }, "seed \(Self.seed)")
            #expect(got.from?.first?.addr == got.from_rfc2047?.first?.addr)
            let text = OracleTests.normalized(got.text)
            let expected = OracleTests.expectedText(draft.text)
            if text != expected, let text, let expected {
                let a = Array(text.unicodeScalars)
                let b = Array(expected.unicodeScalars)
                let index = (0..<min(a.count, b.count)).first { a[$0] != b[$0] } ?? min(a.count, b.count)
                Issue.record(
                    "text differs at scalar \(index): got \(String(String.UnicodeScalarView(a[max(0, index - 5)..<min(a.count, index + 5)])).debugDescription) expected \(String(String.UnicodeScalarView(b[max(0, index - 5)..<min(b.count, index + 5)])).debugDescription)"
                )
            }
            #expect(OracleTests.normalized(got.html) == OracleTests.expectedText(draft.html), "seed \(Self.seed)")
            #expect(got.attachments.count == draft.attachments.count)
            for (sent, received) in zip(draft.attachments, got.attachments) {
                #expect(received.filename == MessageComposer.trimmingWhiteSpace(sent.filename))
                #expect(Data(base64Encoded: received.content) == Data(sent.content))
            }
        }
    }
}
