import API
import CoreMetrics
import Delivery
import Foundation
import Hummingbird
import Logging
import Mail
import NIOCore
import Outbox
import SMTPClient
import ServiceLifecycle
import Webhooks

/// A start-up failure that stops `pigeon serve` with one line.
public struct StartupError: Error, CustomStringConvertible {
    /// The line.
    public var description: String
}

/// Assembles Pigeon from its configuration (STYLE.md habit 5): the outbox, the SMTP
/// pool, the delivery service and the HTTP server, all run by one `ServiceGroup`.
///
/// Shutdown order on SIGTERM/SIGINT: the HTTP server stops accepting first, then the
/// delivery service finishes its attempts and gives back unstarted leases, then the
/// SMTP pool sends QUIT. `onServerRunning` receives the listening channel (tests
/// read the port from it when they ask for port 0).
public func buildApplication(
    _ configuration: PigeonConfiguration,
    logger overrideLogger: Logger? = nil,
    onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
) async throws -> some ApplicationProtocol {
    let logger = overrideLogger ?? makeLogger(configuration)

    var signer: DKIMSigner?
    if let dkim = configuration.dkim {
        let pem: String
        do {
            pem = try String(contentsOfFile: dkim.keyFile, encoding: .utf8)
        } catch {
            throw StartupError(description: "PIGEON_DKIM_KEY_FILE: cannot read \(dkim.keyFile)")
        }
        do {
            signer = try DKIMSigner(domain: dkim.domain, selector: dkim.selector, privateKeyPEM: pem)
        } catch {
            throw StartupError(description: "PIGEON_DKIM_KEY_FILE: \(error.description)")
        }
    }

    var limits = CompositionLimits.default
    limits.maxAttachmentBytes = configuration.maxAttachmentBytes

    let outbox: SQLiteOutbox
    do {
        outbox = try SQLiteOutbox(path: configuration.databasePath)
    } catch let error as OutboxError {
        throw StartupError(description: "PIGEON_DATABASE: \(error.description)")
    }

    let client = SMTPClient(configuration: configuration.relay, logger: logger)
    var webhooks = try await WebhookAssembly(configuration.webhooks, outbox: outbox, logger: logger)
    let metrics = PigeonMetrics(outbox: outbox, logger: logger)
    webhooks.service.onAttemptFinished = { outcome in metrics.webhooks.record(outcome) }
    if configuration.apiKeys.isEmpty {
        let active = try await outbox.apiKeys.list().filter { $0.revokedAt == nil }
        guard !active.isEmpty else {
            throw StartupError(
                description: "PIGEON_API_KEYS: not set, and the database has no API key; set it or run `pigeon keys create --name NAME`"
            )
        }
    }
    var delivery = DeliveryService(
        outbox: outbox,
        sender: client,
        policy: configuration.retryPolicy,
        configuration: configuration.delivery,
        logger: logger
    )
    delivery.metrics = metrics.delivery
    let deliveryRunning = RunningFlag()

    var apiConfiguration = APIConfiguration(
        apiKeys: configuration.apiKeys,
        maxRequestBytes: configuration.maxRequestBytes,
        composer: MessageComposer(limits: limits, signer: signer)
    )
    apiConfiguration.idempotencyTTL = configuration.idempotencyTTL
    apiConfiguration.keyStore = outbox.apiKeys
    apiConfiguration.rateLimit = configuration.rateLimit
    apiConfiguration.onAccepted = { count in metrics.accepted.increment(by: Int64(count)) }
    let disk = DiskSpaceCheck(databasePath: configuration.databasePath, minimumFreeBytes: configuration.minFreeDiskBytes)
    apiConfiguration.operations = OperationsEndpoints(
        readiness: {
            var database: String?
            do {
                try await outbox.probeWritable()
            } catch {
                database = "\(error)"
            }
            var checks: [(name: String, problem: String?)] = [
                ("database", database), ("delivery", deliveryRunning.isRunning ? nil : "the delivery service is not running"),
            ]
            if disk.isEnabled { checks.append(("disk", disk.problem())) }
            return checks
        },
        metrics: { await metrics.render() }
    )

    let router = Router()
    try registerRoutes(
        on: router,
        outbox: outbox,
        configuration: apiConfiguration,
        logger: logger,
        webhooks: webhooks.management
    )

    logger.info(
        "pigeon starting",
        metadata: [
            "listen": "\(configuration.host):\(configuration.port)",
            "database": "\(configuration.databasePath)",
            "relay": "\(configuration.relay.redactedDescription)",
        ]
    )
    return Application(
        router: router,
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: nil),
        services: [
            SMTPClientService(client: client), FlaggedService(base: delivery, flag: deliveryRunning), webhooks.service,
            RetentionService(outbox: outbox, retention: configuration.retention, logger: logger),
        ],
        onServerRunning: onServerRunning,
        logger: logger
    )
}

/// Keeps the SMTP pool for the life of the service group and closes it (QUIT) last.
struct SMTPClientService: Service {
    let client: SMTPClient

    func run() async throws {
        try? await gracefulShutdown()
        await client.shutdown()
    }
}

func makeLogger(_ configuration: PigeonConfiguration) -> Logger {
    let level = Logger.Level(rawValue: configuration.logLevel) ?? .info
    var logger: Logger
    if configuration.logFormat == "json" {
        logger = Logger(label: "pigeon") { label in JSONLogHandler(label: label) }
    } else {
        logger = Logger(label: "pigeon")
    }
    logger.logLevel = level
    return logger
}

/// Builds the application and runs it until SIGTERM or SIGINT.
public func runApplication(_ configuration: PigeonConfiguration) async throws {
    let app = try await buildApplication(configuration)
    try await app.runService()
}
