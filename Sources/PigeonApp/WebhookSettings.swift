import API
import Foundation
import Logging
import Outbox
import Webhooks

extension PigeonConfiguration {
    /// Reads the `PIGEON_WEBHOOK_*` settings; a bad value names its setting.
    static func parseWebhooks(_ value: (String) -> String?) throws(ConfigurationError) -> WebhookConfiguration {
        var webhooks = WebhookConfiguration()
        let allow = (value("PIGEON_WEBHOOK_ALLOW_PRIVATE") ?? "false").lowercased()
        switch allow {
        case "true", "1", "yes": webhooks.allowPrivate = true
        case "false", "0", "no": webhooks.allowPrivate = false
        default: throw ConfigurationError(setting: "PIGEON_WEBHOOK_ALLOW_PRIVATE", message: "must be true or false")
        }

        let url = value("PIGEON_WEBHOOK_URL")
        let secret = value("PIGEON_WEBHOOK_SECRET")
        switch (url, secret) {
        case (nil, nil):
            break
        case (.some, nil):
            throw ConfigurationError(setting: "PIGEON_WEBHOOK_SECRET", message: "not set, but PIGEON_WEBHOOK_URL is; give a whsec_ secret")
        case (nil, .some):
            throw ConfigurationError(setting: "PIGEON_WEBHOOK_URL", message: "not set, but PIGEON_WEBHOOK_SECRET is")
        case (.some(let url), .some(let secret)):
            do {
                try webhooks.addressPolicy.checkHost(try WebhookURL(url))
            } catch {
                throw ConfigurationError(setting: "PIGEON_WEBHOOK_URL", message: error.description)
            }
            do {
                _ = try WebhookSecret(secret)
            } catch {
                throw ConfigurationError(setting: "PIGEON_WEBHOOK_SECRET", message: error.description)
            }
            webhooks.defaultURL = url
            webhooks.defaultSecret = secret
        }

        do {
            webhooks.timeout = try WebhookRetryPolicy.parseDuration(value("PIGEON_WEBHOOK_TIMEOUT") ?? "15s")
        } catch {
            throw ConfigurationError(setting: "PIGEON_WEBHOOK_TIMEOUT", message: error.description)
        }
        guard webhooks.timeout > .zero, webhooks.timeout <= .seconds(300) else {
            throw ConfigurationError(setting: "PIGEON_WEBHOOK_TIMEOUT", message: "must be longer than zero and at most 5m")
        }
        do {
            webhooks.retryPolicy = WebhookRetryPolicy(
                schedule: try WebhookRetryPolicy.parseSchedule(value("PIGEON_WEBHOOK_RETRY_SCHEDULE") ?? "5s,5m,30m,2h,5h,10h,10h")
            )
        } catch {
            throw ConfigurationError(setting: "PIGEON_WEBHOOK_RETRY_SCHEDULE", message: error.description)
        }
        webhooks.maxConsecutiveFailures = try parseInt(
            "PIGEON_WEBHOOK_MAX_CONSECUTIVE_FAILURES",
            value("PIGEON_WEBHOOK_MAX_CONSECUTIVE_FAILURES") ?? "10",
            range: 1...100_000
        )
        return webhooks
    }
}

/// The webhook service and what the API needs to manage endpoints.
struct WebhookAssembly {
    var service: WebhookService
    var management: WebhookManagement

    /// Upserts (or removes) the default endpoint of `PIGEON_WEBHOOK_URL`, then builds the client and the service.
    init(_ configuration: WebhookConfiguration, outbox: SQLiteOutbox, logger: Logger) async throws {
        do {
            try await outbox.configureDefaultEndpoint(url: configuration.defaultURL, secret: configuration.defaultSecret, now: Date())
        } catch {
            throw StartupError(description: "PIGEON_WEBHOOK_URL: cannot store the default endpoint: \(error)")
        }
        let policy = configuration.addressPolicy
        let client = NIOWebhookClient(policy: policy)
        service = WebhookService(store: outbox, transport: client, configuration: configuration, logger: logger)
        let checker = WebhookURLChecker(policy: policy)
        management = WebhookManagement(store: outbox, rotationGracePeriod: configuration.rotationGracePeriod) { url in
            do throws(WebhookURLError) {
                _ = try await checker.check(url)
                return nil
            } catch {
                return (error.code, error.description)
            }
        }
    }
}
