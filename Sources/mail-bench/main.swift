// mail-bench: compose and DKIM-sign 1,000 emails with a 100 KB attachment, and print the time
// per email for each signing mode. Run it optimised:
//
//     swift run -c release mail-bench [count]
//
// Keys are generated fresh for the run (RSA 2048, Ed25519); nothing is written to disk.

import Crypto
import Foundation
import Mail
import _CryptoExtras

let count = CommandLine.arguments.dropFirst().first.flatMap(Int.init) ?? 1_000
let attachment = (0..<100 * 1024).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) }
let draft = EmailDraft(
    from: "Pigeon Bench <bench@example.com>",
    to: ["Empfänger <rcpt@exämple.de>"],
    cc: ["cc@example.org"],
    subject: "Monatsbericht – benchmark message with a 100 KB attachment",
    text: String(repeating: "The quick brown fox jumps over the lazy dog. Grüße! ", count: 40),
    html: "<p>" + String(repeating: "The quick brown fox jumps over the lazy dog. ", count: 40) + "</p>",
    headers: ["X-Campaign": "bench"],
    attachments: [Attachment(filename: "report-2026.pdf", content: attachment, contentType: "application/pdf")]
)

/// PKCS#8 (RFC 8410) PEM for an Ed25519 private key.
func ed25519PEM(_ key: Curve25519.Signing.PrivateKey) -> String {
    let der: [UInt8] =
        [0x30, 0x2E, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20] + Array(key.rawRepresentation)
    return "-----BEGIN PRIVATE KEY-----\n\(Data(der).base64EncodedString())\n-----END PRIVATE KEY-----\n"
}

do {
    let rsaPEM = try _RSA.Signing.PrivateKey(keySize: .bits2048).pemRepresentation
    let modes: [(String, DKIMSigner?)] = [
        ("unsigned", nil),
        ("rsa-sha256 (2048)", try DKIMSigner(domain: "example.com", selector: "bench", privateKeyPEM: rsaPEM)),
        ("ed25519-sha256", try DKIMSigner(domain: "example.com", selector: "bench", privateKeyPEM: ed25519PEM(Curve25519.Signing.PrivateKey()))),
    ]
    print("mail-bench: \(count) emails, 100 KB attachment each (\(attachment.count) bytes)")
    for (name, signer) in modes {
        let composer = MessageComposer(signer: signer)
        let date = Date()
        _ = try composer.compose(draft, date: date)  // warm-up
        var bytes = 0
        let clock = ContinuousClock()
        let elapsed = try clock.measure {
            for _ in 0..<count {
                bytes += try composer.compose(draft, date: date).data.count
            }
        }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let perEmail = seconds / Double(count) * 1_000
        print(
            "\(name.padding(toLength: 20, withPad: " ", startingAt: 0)) total \(String(format: "%.2f", seconds)) s, "
                + "\(String(format: "%.3f", perEmail)) ms per email, \(bytes / count) bytes per message"
        )
    }
} catch {
    print("mail-bench: \(error)")
    exit(1)
}
