import API
import Delivery
import Foundation
import SMTPClient
import Webhooks

/// One setting of `pigeon serve`: its environment variable, its flag and its default.
///
/// This table is the single list of settings; the README's configuration table and
/// the `serve` flags follow it.
public struct Setting: Sendable, Hashable {
    /// The environment variable, e.g. `PIGEON_LISTEN`.
    public var environment: String
    /// The long flag of `pigeon serve`, e.g. `listen`.
    public var flag: String
    /// The default, or nil when there is none.
    public var defaultValue: String?
    /// One line of help.
    public var help: String

    /// Every setting `pigeon serve` reads.
    public static let all: [Setting] = [
        Setting(environment: "PIGEON_LISTEN", flag: "listen", defaultValue: "127.0.0.1:8080", help: "HTTP listen address, host:port."),
        Setting(environment: "PIGEON_DATABASE", flag: "database", defaultValue: "./pigeon.sqlite", help: "The SQLite outbox file."),
        Setting(
            environment: "PIGEON_MIN_FREE_DISK",
            flag: "min-free-disk",
            defaultValue: "64MB",
            help:
                "/readyz is 503 (check `disk`) while the database's file system has less free; bytes or KB, MB, GB, TB (powers of 1024); 0 turns it off."
        ),
        Setting(
            environment: "PIGEON_SMTP_URL",
            flag: "smtp-url",
            defaultValue: nil,
            help: "The relay: smtp://user:pass@host:587?tls=required|opportunistic|none, or smtps://host:465."
        ),
        Setting(
            environment: "PIGEON_SMTP_CA_FILE",
            flag: "smtp-ca-file",
            defaultValue: nil,
            help: "PEM file of CA certificates to verify the relay with, instead of the system store."
        ),
        Setting(
            environment: "PIGEON_SMTP_MAX_CONNECTIONS",
            flag: "smtp-max-connections",
            defaultValue: "8",
            help: "Connections to the relay at most, and emails in flight at once."
        ),
        Setting(
            environment: "PIGEON_API_KEYS",
            flag: "api-keys",
            defaultValue: nil,
            help:
                "Comma-separated bearer keys accepted on /v1 with the admin scope (16 characters or more); optional once `pigeon keys create` made one."
        ),
        Setting(
            environment: "PIGEON_RATE_LIMIT",
            flag: "rate-limit",
            defaultValue: nil,
            help:
                "Emails per second per API key (token bucket; a batch costs one per email, any other request one), e.g. 100 or 0.5; unset for no limit. 429 with Retry-After above."
        ),
        Setting(
            environment: "PIGEON_RATE_LIMIT_BURST",
            flag: "rate-limit-burst",
            defaultValue: nil,
            help:
                "The bucket size: emails a key may send at once, and so its largest batch (default twice PIGEON_RATE_LIMIT, at least 1)."
        ),
        Setting(
            environment: "PIGEON_RETRY_SCHEDULE",
            flag: "retry-schedule",
            defaultValue: "5m,10m,20m,40m,1h",
            help: "Delays between attempts; the last repeats."
        ),
        Setting(
            environment: "PIGEON_MAX_QUEUE_LIFETIME",
            flag: "max-queue-lifetime",
            defaultValue: "5d",
            help: "After this long in the queue an email fails as expired."
        ),
        Setting(
            environment: "PIGEON_MAX_ATTACHMENT_BYTES",
            flag: "max-attachment-bytes",
            defaultValue: "26214400",
            help: "Largest total of decoded attachment bytes per email (413 above)."
        ),
        Setting(
            environment: "PIGEON_IDEMPOTENCY_TTL",
            flag: "idempotency-ttl",
            defaultValue: "24h",
            help: "How long an Idempotency-Key is remembered."
        ),
        Setting(
            environment: "PIGEON_RETENTION_DAYS",
            flag: "retention-days",
            defaultValue: "30",
            help: "Finished emails (and their bodies and events) are purged after this many days."
        ),
        Setting(
            environment: "PIGEON_MAX_REQUEST_BYTES",
            flag: "max-request-bytes",
            defaultValue: "36000000",
            help: "Largest accepted HTTP request body (413 above)."
        ),
        Setting(
            environment: "PIGEON_DKIM_DOMAIN",
            flag: "dkim-domain",
            defaultValue: nil,
            help: "DKIM signing domain (d=); with PIGEON_DKIM_SELECTOR and PIGEON_DKIM_KEY_FILE."
        ),
        Setting(environment: "PIGEON_DKIM_SELECTOR", flag: "dkim-selector", defaultValue: nil, help: "DKIM selector (s=)."),
        Setting(
            environment: "PIGEON_DKIM_KEY_FILE",
            flag: "dkim-key-file",
            defaultValue: nil,
            help: "PEM private key: RSA 2048+ (rsa-sha256) or Ed25519 (ed25519-sha256)."
        ),
        Setting(
            environment: "PIGEON_WEBHOOK_URL",
            flag: "webhook-url",
            defaultValue: nil,
            help: "A webhook endpoint for every event type (with PIGEON_WEBHOOK_SECRET)."
        ),
        Setting(
            environment: "PIGEON_WEBHOOK_SECRET",
            flag: "webhook-secret",
            defaultValue: nil,
            help: "The Standard Webhooks signing secret of PIGEON_WEBHOOK_URL, whsec_<base64 of 24-64 bytes>."
        ),
        Setting(
            environment: "PIGEON_WEBHOOK_ALLOW_PRIVATE",
            flag: "webhook-allow-private",
            defaultValue: "false",
            help: "Allow webhook URLs on loopback, private, link-local and metadata addresses."
        ),
        Setting(environment: "PIGEON_WEBHOOK_TIMEOUT", flag: "webhook-timeout", defaultValue: "15s", help: "The longest one webhook POST may take."),
        Setting(
            environment: "PIGEON_WEBHOOK_RETRY_SCHEDULE",
            flag: "webhook-retry-schedule",
            defaultValue: "5s,5m,30m,2h,5h,10h,10h",
            help: "Delays before each webhook retry; the delivery fails after the last."
        ),
        Setting(
            environment: "PIGEON_WEBHOOK_MAX_CONSECUTIVE_FAILURES",
            flag: "webhook-max-consecutive-failures",
            defaultValue: "10",
            help: "Deliveries in a row that fail for good before the endpoint is disabled."
        ),
        Setting(
            environment: "PIGEON_LOG_LEVEL",
            flag: "log-level",
            defaultValue: "info",
            help: "trace, debug, info, notice, warning, error or critical."
        ),
        Setting(environment: "PIGEON_LOG_FORMAT", flag: "log-format", defaultValue: "text", help: "text or json."),
    ]
}

/// A setting that is missing, malformed or contradicts another; start-up stops with its one line.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible, Equatable {
    /// The setting's environment variable name.
    public var setting: String
    /// What is wrong, without the secret value.
    public var message: String
    /// `PIGEON_SMTP_URL: ...`.
    public var description: String { "\(setting): \(message)" }

    /// Creates an error.
    public init(setting: String, message: String) {
        self.setting = setting
        self.message = message
    }
}

/// The resolved configuration of `pigeon serve`.
public struct PigeonConfiguration: Sendable {
    /// The HTTP host to bind.
    public var host: String
    /// The HTTP port to bind (0 picks a free one).
    public var port: Int
    /// The SQLite outbox file.
    public var databasePath: String
    /// `/readyz` fails its `disk` check below this many free bytes in the database's folder; 0 turns the check off.
    public var minFreeDiskBytes: Int64 = 64 << 20
    /// The relay.
    public var relay: SMTPRelayConfiguration
    /// Accepted bearer keys (admin scope); may be empty when the database has keys.
    public var apiKeys: [String]
    /// The per-key rate limit (`PIGEON_RATE_LIMIT`), nil for none.
    public var rateLimit: RateLimit?
    /// The retry policy.
    public var retryPolicy: RetryPolicy
    /// Largest request body.
    public var maxRequestBytes: Int
    /// Largest decoded attachment total per email.
    public var maxAttachmentBytes: Int
    /// How long an Idempotency-Key is remembered.
    public var idempotencyTTL: Duration
    /// How long finished emails are kept.
    public var retention: Duration
    /// DKIM settings, when signing.
    public var dkim: DKIMSettings?
    /// Log level name.
    public var logLevel: String
    /// `text` or `json`.
    public var logFormat: String
    /// Delivery tuning.
    public var delivery: DeliveryConfiguration
    /// Webhook settings (`PIGEON_WEBHOOK_*`).
    public var webhooks = WebhookConfiguration()

    /// DKIM signing settings.
    public struct DKIMSettings: Sendable {
        /// d=
        public var domain: String
        /// s=
        public var selector: String
        /// The PEM key file.
        public var keyFile: String
    }

    /// Resolves settings from flags (by environment-variable name) over the environment over defaults.
    public static func load(environment: [String: String], overrides: [String: String] = [:]) throws(ConfigurationError) -> PigeonConfiguration {
        func value(_ name: String) -> String? {
            if let flag = overrides[name] { return flag }
            if let env = environment[name], !env.isEmpty { return env }
            return Setting.all.first { $0.environment == name }?.defaultValue
        }

        let listen = value("PIGEON_LISTEN") ?? "127.0.0.1:8080"
        let (host, port) = try parseListen(listen)

        guard let smtpURL = value("PIGEON_SMTP_URL") else {
            throw ConfigurationError(setting: "PIGEON_SMTP_URL", message: "not set; give the relay, e.g. smtp://127.0.0.1:2525?tls=none")
        }
        var relay: SMTPRelayConfiguration
        do {
            relay = try SMTPRelayConfiguration(url: smtpURL, caFile: value("PIGEON_SMTP_CA_FILE"))
        } catch {
            throw ConfigurationError(setting: "PIGEON_SMTP_URL", message: error.description)
        }
        if let caFile = value("PIGEON_SMTP_CA_FILE"), !FileManager.default.isReadableFile(atPath: caFile) {
            throw ConfigurationError(setting: "PIGEON_SMTP_CA_FILE", message: "cannot read \(caFile)")
        }
        let maxConnections = try parseInt("PIGEON_SMTP_MAX_CONNECTIONS", value("PIGEON_SMTP_MAX_CONNECTIONS"), range: 1...256)
        relay.maxConnections = maxConnections

        let keys = (value("PIGEON_API_KEYS") ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        if keys.contains(where: { $0.count < 16 }) {
            throw ConfigurationError(setting: "PIGEON_API_KEYS", message: "every key must have at least 16 characters")
        }
        if keys.contains(where: { key in key.unicodeScalars.contains { $0.value < 0x21 || $0.value > 0x7E } }) {
            throw ConfigurationError(setting: "PIGEON_API_KEYS", message: "keys must be printable ASCII without spaces")
        }

        var rateLimit: RateLimit?
        if let text = value("PIGEON_RATE_LIMIT") {
            let number = text.hasSuffix("/s") ? String(text.dropLast(2)) : text
            guard let rate = Double(number), rate.isFinite, rate > 0, rate <= 1_000_000 else {
                throw ConfigurationError(setting: "PIGEON_RATE_LIMIT", message: "'\(text)' is not a rate in requests per second (e.g. 100 or 0.5)")
            }
            var burst = max(1, Int((rate * 2).rounded(.up)))
            if let text = value("PIGEON_RATE_LIMIT_BURST") {
                burst = try parseInt("PIGEON_RATE_LIMIT_BURST", text, range: 1...10_000_000)
            }
            rateLimit = RateLimit(rate: rate, burst: burst)
        } else if value("PIGEON_RATE_LIMIT_BURST") != nil {
            throw ConfigurationError(setting: "PIGEON_RATE_LIMIT_BURST", message: "set, but PIGEON_RATE_LIMIT is not")
        }

        let schedule: [Duration]
        do {
            schedule = try RetryPolicy.parseSchedule(value("PIGEON_RETRY_SCHEDULE") ?? "")
        } catch {
            throw ConfigurationError(setting: "PIGEON_RETRY_SCHEDULE", message: error.description)
        }
        let lifetime: Duration
        do {
            lifetime = try RetryPolicy.parseDuration(value("PIGEON_MAX_QUEUE_LIFETIME") ?? "")
        } catch {
            throw ConfigurationError(setting: "PIGEON_MAX_QUEUE_LIFETIME", message: error.description)
        }
        guard lifetime > .zero else {
            throw ConfigurationError(setting: "PIGEON_MAX_QUEUE_LIFETIME", message: "must be longer than zero")
        }

        let idempotencyTTL: Duration
        do {
            idempotencyTTL = try RetryPolicy.parseDuration(value("PIGEON_IDEMPOTENCY_TTL") ?? "")
        } catch {
            throw ConfigurationError(setting: "PIGEON_IDEMPOTENCY_TTL", message: error.description)
        }
        let retentionDays = try parseInt("PIGEON_RETENTION_DAYS", value("PIGEON_RETENTION_DAYS"), range: 1...36_500)

        let maxAttachmentBytes = try parseInt(
            "PIGEON_MAX_ATTACHMENT_BYTES",
            value("PIGEON_MAX_ATTACHMENT_BYTES"),
            range: 0...1_000_000_000
        )
        let maxRequestBytes = try parseInt("PIGEON_MAX_REQUEST_BYTES", value("PIGEON_MAX_REQUEST_BYTES"), range: 1024...1_000_000_000)

        let dkimValues = ["PIGEON_DKIM_DOMAIN", "PIGEON_DKIM_SELECTOR", "PIGEON_DKIM_KEY_FILE"].map { ($0, value($0)) }
        var dkim: DKIMSettings?
        let given = dkimValues.filter { $0.1 != nil }
        if !given.isEmpty {
            if let missing = dkimValues.first(where: { $0.1 == nil }) {
                throw ConfigurationError(
                    setting: missing.0,
                    message: "not set, but \(given.map(\.0).joined(separator: " and ")) is; DKIM needs all three"
                )
            }
            dkim = DKIMSettings(domain: dkimValues[0].1 ?? "", selector: dkimValues[1].1 ?? "", keyFile: dkimValues[2].1 ?? "")
        }

        let logLevel = (value("PIGEON_LOG_LEVEL") ?? "info").lowercased()
        guard ["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(logLevel) else {
            throw ConfigurationError(setting: "PIGEON_LOG_LEVEL", message: "'\(logLevel)' is not a log level")
        }
        let logFormat = (value("PIGEON_LOG_FORMAT") ?? "text").lowercased()
        guard ["text", "json"].contains(logFormat) else {
            throw ConfigurationError(setting: "PIGEON_LOG_FORMAT", message: "must be text or json")
        }

        let minFreeDisk = try parseByteCount("PIGEON_MIN_FREE_DISK", value("PIGEON_MIN_FREE_DISK") ?? "64MB")

        let webhooks = try parseWebhooks(value)
        var configuration = PigeonConfiguration(
            host: host,
            port: port,
            databasePath: value("PIGEON_DATABASE") ?? "./pigeon.sqlite",
            relay: relay,
            apiKeys: keys,
            retryPolicy: RetryPolicy(schedule: schedule, maxQueueLifetime: lifetime),
            maxRequestBytes: maxRequestBytes,
            maxAttachmentBytes: maxAttachmentBytes,
            idempotencyTTL: idempotencyTTL,
            retention: .seconds(retentionDays * 86_400),
            dkim: dkim,
            logLevel: logLevel,
            logFormat: logFormat,
            delivery: DeliveryConfiguration(concurrency: maxConnections)
        )
        configuration.webhooks = webhooks
        configuration.rateLimit = rateLimit
        configuration.minFreeDiskBytes = minFreeDisk
        return configuration
    }

    static func parseListen(_ text: String) throws(ConfigurationError) -> (String, Int) {
        let error = ConfigurationError(setting: "PIGEON_LISTEN", message: "'\(text)' is not host:port (e.g. 127.0.0.1:8080 or [::1]:8080)")
        guard let colon = text.lastIndex(of: ":") else { throw error }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty, let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else { throw error }
        return (host, port)
    }

    /// Parses a size: a whole number of bytes, or one followed by `KB`, `MB`, `GB`, `TB`
    /// or `PB` (also `K`/`KiB`, ...; any case), each a power of 1024 as `df -h` and
    /// Docker count, so `64MB` is 67,108,864 bytes.
    static func parseByteCount(_ name: String, _ text: String) throws(ConfigurationError) -> Int64 {
        let error = ConfigurationError(setting: name, message: "'\(text)' is not a size (bytes, or e.g. 512KB, 64MB, 2GB)")
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let digits = trimmed.prefix { $0.isASCII && $0.isNumber }
        guard !digits.isEmpty, let number = Int64(digits) else { throw error }
        let unit = trimmed.dropFirst(digits.count).trimmingCharacters(in: .whitespaces).uppercased()
        let exponents: [String: Int64] = [
            "": 0, "B": 0, "K": 1, "KB": 1, "KIB": 1, "M": 2, "MB": 2, "MIB": 2, "G": 3, "GB": 3, "GIB": 3,
            "T": 4, "TB": 4, "TIB": 4, "P": 5, "PB": 5, "PIB": 5,
        ]
        guard let exponent = exponents[unit] else { throw error }
        var bytes = number
        for _ in 0..<exponent {
            let (product, overflow) = bytes.multipliedReportingOverflow(by: 1024)
            guard !overflow else { throw error }
            bytes = product
        }
        return bytes
    }

    static func parseInt(_ name: String, _ text: String?, range: ClosedRange<Int>) throws(ConfigurationError) -> Int {
        guard let text, let number = Int(text), range.contains(number) else {
            throw ConfigurationError(setting: name, message: "'\(text ?? "")' is not a whole number in \(range.lowerBound)...\(range.upperBound)")
        }
        return number
    }
}
