import Mail
import Testing

@Suite struct DKIMKeyTests {
    @Test(arguments: [
        (TestKeys.rsaPKCS8, DKIMSigner.Algorithm.rsaSHA256),
        (TestKeys.rsaPKCS1, .rsaSHA256),
        (TestKeys.ed25519, .ed25519SHA256),
    ])
    func detectsTheKeyType(_ pem: String, _ algorithm: DKIMSigner.Algorithm) throws {
        let signer = try DKIMSigner(domain: "Example.COM", selector: "mail-2026", privateKeyPEM: pem)
        #expect(signer.algorithm == algorithm)
        #expect(signer.domain == "example.com")
        #expect(signer.dnsRecordName == "mail-2026._domainkey.example.com")
        #expect(signer.dnsRecordValue.hasPrefix("v=DKIM1; k=\(algorithm == .rsaSHA256 ? "rsa" : "ed25519"); p="))
    }

    @Test func pkcs1AndPKCS8OfOneKeyPublishTheSameRecord() throws {
        let a = try DKIMSigner(domain: "example.com", selector: "s", privateKeyPEM: TestKeys.rsaPKCS8)
        let b = try DKIMSigner(domain: "example.com", selector: "s", privateKeyPEM: TestKeys.rsaPKCS1)
        #expect(a.dnsRecordValue == b.dnsRecordValue)
    }

    static let bad: [(String, String, String)] = [
        ("empty", "", "not a PEM private key"),
        ("garbage", "hello", "not a PEM private key"),
        ("RSA 1024", TestKeys.rsa1024, "at least 2048"),
        ("EC P-256", TestKeys.ecP256, "unsupported key type"),
        (
            "public key", "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n",
            "public key"
        ),
        ("encrypted", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n", "encrypted"),
        ("truncated", String(TestKeys.rsaPKCS8.prefix(200)), "not a PEM private key"),
    ]

    @Test(arguments: bad)
    func refusesBadKeysWithOneClearLine(_ name: String, _ pem: String, _ reason: String) {
        do {
            _ = try DKIMSigner(domain: "example.com", selector: "s", privateKeyPEM: pem)
            Issue.record("\(name) was accepted")
        } catch {
            #expect(error.description.contains(reason), "\(name): \(error.description)")
            #expect(!error.description.contains("\n"))
            #expect(!error.description.contains("MII"))
        }
    }

    @Test(arguments: ["", "bad selector", "-x", "a..b"])
    func refusesBadSelectors(_ selector: String) {
        #expect(throws: DKIMKeyError.self) { try DKIMSigner(domain: "example.com", selector: selector, privateKeyPEM: TestKeys.ed25519) }
    }

    @Test(arguments: ["", "bad domain.com", "exa_mple.com"])
    func refusesBadDomains(_ domain: String) {
        #expect(throws: DKIMKeyError.self) { try DKIMSigner(domain: domain, selector: "s", privateKeyPEM: TestKeys.ed25519) }
    }
}
