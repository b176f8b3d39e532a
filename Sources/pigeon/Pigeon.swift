import ArgumentParser
import Foundation
import PigeonApp

#if canImport(Glibc)
import Glibc
#endif

/// The `pigeon` command: `serve` runs the service; the rest are small operator commands.
@main
struct Pigeon: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pigeon",
        abstract: "A self-hosted HTTP-to-SMTP bridge.",
        subcommands: [Serve.self, Healthcheck.self, Keys.self, Check.self],
        defaultSubcommand: nil
    )
}

/// `pigeon serve`: every setting is an environment variable and the flag of the same name.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the HTTP API and the delivery service.",
        discussion: "Each flag overrides the environment variable named after it (PIGEON_LISTEN for --listen, ...)."
    )

    @Option(help: "PIGEON_LISTEN: HTTP listen address, host:port (default 127.0.0.1:8080).") var listen: String?
    @Option(help: "PIGEON_DATABASE: the SQLite outbox file (default ./pigeon.sqlite).") var database: String?
    @Option(name: .customLong("min-free-disk"), help: "PIGEON_MIN_FREE_DISK: /readyz fails below it (default 64MB; 0 off).") var minFreeDisk: String?
    @Option(name: .customLong("smtp-url"), help: "PIGEON_SMTP_URL: the relay, e.g. smtp://user:pass@host:587?tls=required.") var smtpURL: String?
    @Option(name: .customLong("smtp-ca-file"), help: "PIGEON_SMTP_CA_FILE: CA certificates (PEM) for the relay.") var smtpCAFile: String?
    @Option(name: .customLong("smtp-max-connections"), help: "PIGEON_SMTP_MAX_CONNECTIONS (default 8).") var smtpMaxConnections: String?
    @Option(name: .customLong("api-keys"), help: "PIGEON_API_KEYS: comma-separated bearer keys.") var apiKeys: String?
    @Option(name: .customLong("rate-limit"), help: "PIGEON_RATE_LIMIT: emails per second per key, a batch costs one per email (default none).")
    var rateLimit: String?
    @Option(name: .customLong("rate-limit-burst"), help: "PIGEON_RATE_LIMIT_BURST (default twice the rate).") var rateLimitBurst: String?
    @Option(name: .customLong("retry-schedule"), help: "PIGEON_RETRY_SCHEDULE (default 5m,10m,20m,40m,1h).") var retrySchedule: String?
    @Option(name: .customLong("max-queue-lifetime"), help: "PIGEON_MAX_QUEUE_LIFETIME (default 5d).") var maxQueueLifetime: String?
    @Option(name: .customLong("max-attachment-bytes"), help: "PIGEON_MAX_ATTACHMENT_BYTES (default 26214400).")
    var maxAttachmentBytes: String?
    @Option(name: .customLong("idempotency-ttl"), help: "PIGEON_IDEMPOTENCY_TTL (default 24h).") var idempotencyTTL: String?
    @Option(name: .customLong("retention-days"), help: "PIGEON_RETENTION_DAYS (default 30).") var retentionDays: String?
    @Option(name: .customLong("max-request-bytes"), help: "PIGEON_MAX_REQUEST_BYTES (default 36000000).") var maxRequestBytes: String?
    @Option(name: .customLong("dkim-domain"), help: "PIGEON_DKIM_DOMAIN.") var dkimDomain: String?
    @Option(name: .customLong("dkim-selector"), help: "PIGEON_DKIM_SELECTOR.") var dkimSelector: String?
    @Option(name: .customLong("dkim-key-file"), help: "PIGEON_DKIM_KEY_FILE.") var dkimKeyFile: String?
    @Option(name: .customLong("webhook-url"), help: "PIGEON_WEBHOOK_URL: a webhook endpoint for every event type.") var webhookURL: String?
    @Option(name: .customLong("webhook-secret"), help: "PIGEON_WEBHOOK_SECRET: its whsec_ signing secret.") var webhookSecret: String?
    @Option(name: .customLong("webhook-allow-private"), help: "PIGEON_WEBHOOK_ALLOW_PRIVATE (default false).") var webhookAllowPrivate: String?
    @Option(name: .customLong("webhook-timeout"), help: "PIGEON_WEBHOOK_TIMEOUT (default 15s).") var webhookTimeout: String?
    @Option(name: .customLong("webhook-retry-schedule"), help: "PIGEON_WEBHOOK_RETRY_SCHEDULE (default 5s,5m,30m,2h,5h,10h,10h).")
    var webhookRetrySchedule: String?
    @Option(name: .customLong("webhook-max-consecutive-failures"), help: "PIGEON_WEBHOOK_MAX_CONSECUTIVE_FAILURES (default 10).")
    var webhookMaxConsecutiveFailures: String?
    @Option(name: .customLong("log-level"), help: "PIGEON_LOG_LEVEL (default info).") var logLevel: String?
    @Option(name: .customLong("log-format"), help: "PIGEON_LOG_FORMAT: text or json (default text).") var logFormat: String?

    func run() async throws {
        tuneMalloc()
        let flags: [String: String?] = [
            "PIGEON_LISTEN": listen, "PIGEON_DATABASE": database, "PIGEON_SMTP_URL": smtpURL,
            "PIGEON_MIN_FREE_DISK": minFreeDisk,
            "PIGEON_SMTP_CA_FILE": smtpCAFile, "PIGEON_SMTP_MAX_CONNECTIONS": smtpMaxConnections,
            "PIGEON_API_KEYS": apiKeys, "PIGEON_RATE_LIMIT": rateLimit, "PIGEON_RATE_LIMIT_BURST": rateLimitBurst,
            "PIGEON_RETRY_SCHEDULE": retrySchedule,
            "PIGEON_MAX_QUEUE_LIFETIME": maxQueueLifetime, "PIGEON_MAX_REQUEST_BYTES": maxRequestBytes,
            "PIGEON_IDEMPOTENCY_TTL": idempotencyTTL, "PIGEON_MAX_ATTACHMENT_BYTES": maxAttachmentBytes, "PIGEON_RETENTION_DAYS": retentionDays,
            "PIGEON_DKIM_DOMAIN": dkimDomain, "PIGEON_DKIM_SELECTOR": dkimSelector, "PIGEON_DKIM_KEY_FILE": dkimKeyFile,
            "PIGEON_WEBHOOK_URL": webhookURL, "PIGEON_WEBHOOK_SECRET": webhookSecret,
            "PIGEON_WEBHOOK_ALLOW_PRIVATE": webhookAllowPrivate, "PIGEON_WEBHOOK_TIMEOUT": webhookTimeout,
            "PIGEON_WEBHOOK_RETRY_SCHEDULE": webhookRetrySchedule,
            "PIGEON_WEBHOOK_MAX_CONSECUTIVE_FAILURES": webhookMaxConsecutiveFailures,
            "PIGEON_LOG_LEVEL": logLevel, "PIGEON_LOG_FORMAT": logFormat,
        ]
        let overrides = flags.compactMapValues { $0 }
        let configuration: PigeonConfiguration
        do {
            configuration = try PigeonConfiguration.load(environment: ProcessInfo.processInfo.environment, overrides: overrides)
        } catch {
            FileHandle.standardError.write(Data("pigeon: \(error.description)\n".utf8))
            throw ExitCode(2)
        }
        do {
            try await runApplication(configuration)
        } catch let error as StartupError {
            FileHandle.standardError.write(Data("pigeon: \(error.description)\n".utf8))
            throw ExitCode(1)
        }
    }
}

/// `pigeon healthcheck`: exits 0 when `GET /healthz` on the listen address answers 200
/// (for the container HEALTHCHECK; needs no curl in the image).
struct Healthcheck: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Exit 0 when the local service answers GET /healthz.")

    @Option(help: "host:port to check (default PIGEON_LISTEN or 127.0.0.1:8080).") var listen: String?

    func run() async throws {
        let address = listen ?? ProcessInfo.processInfo.environment["PIGEON_LISTEN"] ?? "127.0.0.1:8080"
        guard await probeHealth(listen: address) else { throw ExitCode(1) }
    }
}

/// Prints lines, or the failure's one line on standard error and exits 1.
func report(_ work: () async throws -> [String]) async throws {
    do {
        for line in try await work() { print(line) }
    } catch let failure as OperatorCommands.Failure {
        FileHandle.standardError.write(Data("pigeon: \(failure.description)\n".utf8))
        throw ExitCode(1)
    }
}

/// `pigeon keys`: API keys in the database (`PIGEON_DATABASE`).
///
/// These commands open the database without the lock that `pigeon serve` holds, so
/// they work while it runs: SQLite serialises the writes, and the server reads a key's
/// row on every request, so a new or revoked key counts from the next request.
struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create, list and revoke API keys.",
        subcommands: [Create.self, List.self, Revoke.self]
    )

    struct DatabaseOption: ParsableArguments {
        @Option(help: "The SQLite outbox file (default PIGEON_DATABASE or ./pigeon.sqlite).") var database: String?

        var path: String {
            if let database { return database }
            if let value = ProcessInfo.processInfo.environment["PIGEON_DATABASE"], !value.isEmpty { return value }
            return "./pigeon.sqlite"
        }
    }

    /// `pigeon keys create`.
    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make a key; it is printed once and stored only as its SHA-256.")

        @OptionGroup var database: DatabaseOption
        @Option(help: "Who uses the key (e.g. the backend's name).") var name: String
        @Option(help: "send (emails and events) or admin (also webhooks).") var scope: String = "send"
        @Option(name: .customLong("from-domain"), help: "A domain the key may send from; repeat for several (default any).")
        var fromDomains: [String] = []

        func run() async throws {
            try await report {
                try await OperatorCommands.createKey(database: database.path, name: name, scope: scope, fromDomains: fromDomains)
            }
        }
    }

    /// `pigeon keys list`.
    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the keys (never the keys themselves).")

        @OptionGroup var database: DatabaseOption

        func run() async throws {
            try await report { try await OperatorCommands.listKeys(database: database.path) }
        }
    }

    /// `pigeon keys revoke`.
    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a key: it is refused (401) from the next request on.")

        @OptionGroup var database: DatabaseOption
        @Argument(help: "The key's id (ak_...).") var id: String

        func run() async throws {
            try await report { try await OperatorCommands.revokeKey(database: database.path, id: id) }
        }
    }
}

/// `pigeon check`: what the relay offers, without sending mail.
struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Connect to the relay (PIGEON_SMTP_URL) and print what it offers; sends no mail.",
        discussion: "Exits 0 when the relay is usable as configured (TLS and AUTH included), 1 with one line naming the cause otherwise."
    )

    @Option(name: .customLong("smtp-url"), help: "PIGEON_SMTP_URL.") var smtpURL: String?
    @Option(name: .customLong("smtp-ca-file"), help: "PIGEON_SMTP_CA_FILE.") var smtpCAFile: String?

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let url = smtpURL ?? environment["PIGEON_SMTP_URL"]
        let ca = smtpCAFile ?? environment["PIGEON_SMTP_CA_FILE"].flatMap { $0.isEmpty ? nil : $0 }
        try await report { try await OperatorCommands.check(smtpURL: url, caFile: ca) }
    }
}

/// glibc's allocator gives freed memory back to the kernel as soon as 128 KB sit free
/// at the top of a thread's heap, and takes it again on the next request: under load
/// that was madvise calls, TLB shootdowns between the cores and page faults, about a
/// sixth of the accept rate (bench/outbox.sh: ~4,700 against ~5,700 accepted/s). Keep
/// up to 64 MB free per heap instead, and stop the mmap threshold from moving (blocks
/// of 4 MB and more, such as large request bodies, are still mapped and unmapped on
/// their own). The cost: each of glibc's per-thread heaps (up to 8 per core) may keep
/// up to 64 MB it no longer uses instead of returning it; in the benchmark peak RSS
/// did not change (115-119 MB either way). An operator's own `GLIBC_TUNABLES` or
/// `MALLOC_*_` settings win, e.g. `GLIBC_TUNABLES=glibc.malloc.trim_threshold=131072`
/// for the default.
func tuneMalloc() {
    #if canImport(Glibc)
    let environment = ProcessInfo.processInfo.environment
    guard environment["GLIBC_TUNABLES"] == nil, !environment.keys.contains(where: { $0.hasPrefix("MALLOC_") }) else { return }
    // malloc.h is not in Swift's Glibc module: look mallopt up (RTLD_DEFAULT is null).
    guard let symbol = dlsym(nil, "mallopt") else { return }
    let mallopt = unsafeBitCast(symbol, to: (@convention(c) (Int32, Int32) -> Int32).self)
    _ = mallopt(-1, 64 << 20)  // M_TRIM_THRESHOLD
    _ = mallopt(-3, 4 << 20)  // M_MMAP_THRESHOLD
    #endif
}
