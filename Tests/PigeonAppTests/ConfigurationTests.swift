import Delivery
import Foundation
import Testing

@testable import PigeonApp

@Suite("Configuration")
struct ConfigurationTests {
    static let base = [
        "PIGEON_SMTP_URL": "smtp://127.0.0.1:2525?tls=none",
        "PIGEON_API_KEYS": "config-test-key-0123456789",
    ]

    @Test("Defaults follow the README")
    func defaults() throws {
        let configuration = try PigeonConfiguration.load(environment: Self.base)
        #expect(configuration.host == "127.0.0.1")
        #expect(configuration.port == 8080)
        #expect(configuration.databasePath == "./pigeon.sqlite")
        #expect(configuration.retryPolicy.schedule == [.seconds(300), .seconds(600), .seconds(1200), .seconds(2400), .seconds(3600)])
        #expect(configuration.retryPolicy.maxQueueLifetime == .seconds(5 * 86_400))
        #expect(configuration.idempotencyTTL == .seconds(86_400))
        #expect(configuration.retention == .seconds(30 * 86_400))
        #expect(configuration.maxAttachmentBytes == 26_214_400)
        #expect(configuration.minFreeDiskBytes == 64 * 1024 * 1024)
    }

    @Test(
        "PIGEON_MIN_FREE_DISK takes bytes or a unit in powers of 1024; 0 turns the check off",
        arguments: [
            ("0", 0), ("1048576", 1_048_576), ("512KB", 524_288), ("64MB", 67_108_864), ("64mb", 67_108_864), ("64M", 67_108_864),
            ("64MiB", 67_108_864), ("2 GB", 2_147_483_648), ("1PB", 1_125_899_906_842_624), ("10B", 10),
        ] as [(String, Int64)]
    )
    func minFreeDisk(text: String, bytes: Int64) throws {
        var environment = Self.base
        environment["PIGEON_MIN_FREE_DISK"] = text
        #expect(try PigeonConfiguration.load(environment: environment).minFreeDiskBytes == bytes)
    }

    @Test("A flag wins over the environment, which wins over the default")
    func precedence() throws {
        var environment = Self.base
        environment["PIGEON_LISTEN"] = "127.0.0.1:9000"
        let fromEnvironment = try PigeonConfiguration.load(environment: environment)
        #expect(fromEnvironment.port == 9000)
        let fromFlag = try PigeonConfiguration.load(environment: environment, overrides: ["PIGEON_LISTEN": "[::1]:9100"])
        #expect(fromFlag.host == "::1")
        #expect(fromFlag.port == 9100)
    }

    @Test(
        "A missing or bad setting stops start-up with one line naming it",
        arguments: [
            (["PIGEON_SMTP_URL": ""], "PIGEON_SMTP_URL"),
            (["PIGEON_SMTP_URL": "http://relay.example:25"], "PIGEON_SMTP_URL"),
            (["PIGEON_SMTP_URL": "smtp://user:secret@relay.example:587?tls=none"], "PIGEON_SMTP_URL"),
            (["PIGEON_LISTEN": "8080"], "PIGEON_LISTEN"),
            (["PIGEON_LISTEN": "127.0.0.1:99999"], "PIGEON_LISTEN"),
            (["PIGEON_API_KEYS": "short"], "PIGEON_API_KEYS"),
            (["PIGEON_RETRY_SCHEDULE": "5m,soon"], "PIGEON_RETRY_SCHEDULE"),
            (["PIGEON_MAX_QUEUE_LIFETIME": "forever"], "PIGEON_MAX_QUEUE_LIFETIME"),
            (["PIGEON_MAX_REQUEST_BYTES": "-1"], "PIGEON_MAX_REQUEST_BYTES"),
            (["PIGEON_DKIM_DOMAIN": "acme.example"], "PIGEON_DKIM_SELECTOR"),
            (["PIGEON_LOG_LEVEL": "loud"], "PIGEON_LOG_LEVEL"),
            (["PIGEON_LOG_FORMAT": "xml"], "PIGEON_LOG_FORMAT"),
            (["PIGEON_SMTP_CA_FILE": "/nonexistent/ca.pem"], "PIGEON_SMTP_CA_FILE"),
            (["PIGEON_MIN_FREE_DISK": "lots"], "PIGEON_MIN_FREE_DISK"),
            (["PIGEON_MIN_FREE_DISK": "-1"], "PIGEON_MIN_FREE_DISK"),
            (["PIGEON_MIN_FREE_DISK": "64XB"], "PIGEON_MIN_FREE_DISK"),
            (["PIGEON_MIN_FREE_DISK": "MB"], "PIGEON_MIN_FREE_DISK"),
            (["PIGEON_MIN_FREE_DISK": "99999999PB"], "PIGEON_MIN_FREE_DISK"),
        ] as [([String: String], String)]
    )
    func badSetting(settings: [String: String], named: String) {
        var environment = Self.base
        environment.merge(settings) { $1 }
        do {
            _ = try PigeonConfiguration.load(environment: environment)
            Issue.record("accepted \(settings)")
        } catch {
            #expect(error.setting == named)
            #expect(error.description.hasPrefix("\(named): "))
            #expect(!error.description.contains("\n"))
            #expect(!error.description.contains("secret"), "the password leaked into: \(error.description)")
        }
    }
}
