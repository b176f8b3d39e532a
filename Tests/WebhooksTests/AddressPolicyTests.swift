import Foundation
import Synchronization
import Testing
import Webhooks

/// The SSRF classifier. These tests classify addresses; none sends a packet anywhere.
@Suite("SSRF: address classification and URL parsing")
struct AddressPolicyTests {
    @Test(
        "Addresses are classified (odd IPv4 forms read as browsers read them)",
        arguments: [
            ("127.0.0.1", AddressCategory.loopback),
            ("127.1", .loopback),
            ("0x7f000001", .loopback),
            ("2130706433", .loopback),
            ("0177.0.0.1", .loopback),
            ("0x7f.1", .loopback),
            ("127.0.0.1.", .loopback),
            ("::1", .loopback),
            ("[::1]", .loopback),
            ("::ffff:127.0.0.1", .loopback),
            ("::ffff:7f00:1", .loopback),
            ("64:ff9b::7f00:1", .loopback),
            ("2002:7f00:1::", .loopback),
            ("10.0.0.1", .privateUse),
            ("172.16.5.4", .privateUse),
            ("192.168.1.1", .privateUse),
            ("100.64.0.1", .privateUse),
            ("012.0.0.1", .privateUse),
            ("169.254.169.254", .metadata),
            ("0xa9fea9fe", .metadata),
            ("fd00:ec2::254", .metadata),
            ("169.254.1.1", .linkLocal),
            ("fe80::1", .linkLocal),
            ("fd00::1", .uniqueLocal),
            ("fc12:3456::1", .uniqueLocal),
            ("0.0.0.0", .unspecified),
            ("0", .unspecified),
            ("::", .unspecified),
            ("224.0.0.1", .multicast),
            ("ff02::1", .multicast),
            ("255.255.255.255", .reserved),
            ("192.0.2.1", .reserved),
            ("2001:db8::1", .reserved),
            ("8.8.8.8", .global),
            ("93.184.216.34", .global),
            ("2606:4700:4700::1111", .global),
        ]
    )
    func classify(host: String, expected: AddressCategory) throws {
        let address = try #require(IPAddress(host: host))
        #expect(address.category == expected)
        let policy = AddressPolicy(allowPrivate: false)
        if expected == .global {
            #expect(throws: Never.self) { try policy.check(address, host: host) }
        } else {
            #expect(throws: WebhookURLError.self) { try policy.check(address, host: host) }
            #expect(throws: Never.self) { try AddressPolicy(allowPrivate: true).check(address, host: host) }
        }
    }

    @Test("Numeric hosts that are not addresses are invalid, not names", arguments: ["1.2.3.999", "256.1", "0x1g.1", "1.2.3.4.5"])
    func invalidNumericHosts(host: String) {
        #expect(IPAddress(host: host) == nil)
        #expect(throws: WebhookURLError.self) { try WebhookURL("http://\(host)/") }
    }

    @Test(
        "Webhook URLs refused at creation without the allow setting (no resolution needed)",
        arguments: [
            "http://127.0.0.1/hook", "http://[::1]:8080/hook", "http://0x7f000001/", "http://2130706433/", "http://127.1/",
            "http://localhost:8080/", "http://api.localhost/", "https://metadata.google.internal/", "http://10.0.0.1/",
            "http://169.254.169.254/latest/meta-data/", "http://[fd00::1]/", "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/",
            "http://intranet/",
        ]
    )
    func refusedAtCreation(url: String) async throws {
        let checker = WebhookURLChecker(policy: AddressPolicy(allowPrivate: false), resolver: FakeResolver([:]))
        await #expect(throws: WebhookURLError.self) { try await checker.check(url) }
        let allowing = WebhookURLChecker(policy: AddressPolicy(allowPrivate: true), resolver: FakeResolver([:]))
        _ = try await allowing.check(url)
    }

    @Test("A name that resolves to loopback (or to anything private among its addresses) is refused at creation")
    func namesResolvingToLoopback() async throws {
        let resolver = FakeResolver([
            "rebind.example.com": [.v4(0x7F00_0001)],
            "mixed.example.com": [.v4(0x5DB8_D822), .v6([0xFD] + [UInt8](repeating: 0, count: 14) + [1])],
            "public.example.com": [.v4(0x5DB8_D822)],
        ])
        let checker = WebhookURLChecker(policy: AddressPolicy(allowPrivate: false), resolver: resolver)
        await #expect(throws: WebhookURLError.self) { try await checker.check("https://rebind.example.com/hook") }
        await #expect(throws: WebhookURLError.self) { try await checker.check("https://mixed.example.com/hook") }
        let url = try await checker.check("https://public.example.com/hook")
        #expect(url.host == "public.example.com")
    }

    @Test("The system resolver resolves localhost to loopback, which is refused")
    func systemResolverLocalhost() async throws {
        let addresses = try await SystemResolver().resolve(host: "localhost")
        #expect(!addresses.isEmpty)
        #expect(addresses.allSatisfy { $0.category == .loopback })
    }

    @Test(
        "Malformed URLs are invalid",
        arguments: ["ftp://example.com/", "http://user:pw@example.com/", "example.com/hook", "http:///x", "http://exa mple.com/"]
    )
    func malformed(url: String) {
        #expect(throws: WebhookURLError.self) { try WebhookURL(url) }
    }

    @Test("URL parts: Host header keeps a non-default port and IPv6 brackets; the target keeps the query")
    func urlParts() throws {
        let url = try WebhookURL("http://[::1]:8080/a/b?c=d")
        #expect(url.host == "::1")
        #expect(url.hostHeader == "[::1]:8080")
        #expect(url.target == "/a/b?c=d")
        #expect(url.literalAddress == IPAddress(host: "::1"))
        let named = try WebhookURL("https://Hooks.Example.com")
        #expect(named.hostHeader == "hooks.example.com")
        #expect(named.port == 443)
        #expect(named.target == "/")
    }
}

/// A resolver answering from a table; each lookup of a host can answer differently (rebinding).
struct FakeResolver: WebhookResolver {
    let table: [String: [[IPAddress]]]
    let lookups = LookupCounter()

    init(_ table: [String: [IPAddress]]) {
        self.table = table.mapValues { [$0] }
    }

    init(sequence: [String: [[IPAddress]]]) {
        self.table = sequence
    }

    func resolve(host: String) async throws(WebhookURLError) -> [IPAddress] {
        guard let answers = table[host], !answers.isEmpty else { throw .unresolvable(host) }
        let index = lookups.next(host)
        return answers[min(index, answers.count - 1)]
    }
}

final class LookupCounter: Sendable {
    private let counts = Mutex<[String: Int]>([:])

    func next(_ host: String) -> Int {
        counts.withLock { counts in
            let value = counts[host, default: 0]
            counts[host] = value + 1
            return value
        }
    }
}
