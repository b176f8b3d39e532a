import API
import Foundation
import Outbox
import SMTP
import SMTPClient

/// The work of `pigeon keys ...` and `pigeon check`, so that the executable only parses
/// its arguments and prints (STYLE.md habit 5).
public enum OperatorCommands {
    /// A failure with one line for the operator.
    public struct Failure: Error, CustomStringConvertible {
        /// The line.
        public var description: String
    }

    // MARK: keys

    /// `pigeon keys create`: stores the key's SHA-256 and returns the lines to print,
    /// the key among them (the only time it is shown).
    ///
    /// Works while `pigeon serve` runs on the same file: the database is opened without
    /// the outbox lock, and SQLite serialises the two writers.
    public static func createKey(database: String, name: String, scope: String, fromDomains: [String]) async throws -> [String] {
        guard let scope = APIKeyScope(rawValue: scope.lowercased()) else {
            throw Failure(description: "--scope: '\(scope)' is not send or admin")
        }
        let name = name.trimmingCharacters(in: .whitespaces)
        guard (1...200).contains(name.count), !name.contains(where: \.isNewline) else {
            throw Failure(description: "--name: give 1 to 200 characters on one line")
        }
        var domains: [String] = []
        for domain in fromDomains.map({ $0.lowercased().trimmingCharacters(in: .whitespaces) }) {
            let labels = domain.split(separator: ".", omittingEmptySubsequences: false)
            guard labels.count >= 2, labels.allSatisfy({ !$0.isEmpty && $0.count <= 63 }),
                domain.unicodeScalars.allSatisfy({ $0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "-" || $0 == "." })
            else {
                throw Failure(description: "--from-domain: '\(domain)' is not a domain name (e.g. acme.example)")
            }
            if !domains.contains(domain) { domains.append(domain) }
        }
        let store = try open(database)
        let key = APIKeys.generate()
        let record = try await store.create(name: name, scope: scope, fromDomains: domains, keyDigest: APIKeys.digest(key))
        return [
            "id: \(record.id)",
            "name: \(record.name)",
            "scope: \(record.scope.rawValue)",
            "from domains: \(record.fromDomains.isEmpty ? "any" : record.fromDomains.joined(separator: ", "))",
            "key: \(key)",
            "This is the only time the key is shown; Pigeon stores only its SHA-256.",
        ]
    }

    /// `pigeon keys list`: one line per key (never the key).
    public static func listKeys(database: String) async throws -> [String] {
        let keys = try await open(database).list()
        let format = ISO8601DateFormatter()
        var lines = ["ID\tNAME\tSCOPE\tFROM DOMAINS\tCREATED\tLAST USED\tREVOKED"]
        for key in keys {
            lines.append(
                [
                    key.id, key.name, key.scope.rawValue, key.fromDomains.isEmpty ? "*" : key.fromDomains.joined(separator: ","),
                    format.string(from: key.createdAt), key.lastUsedAt.map(format.string) ?? "-",
                    key.revokedAt.map(format.string) ?? "-",
                ].joined(separator: "\t")
            )
        }
        return lines
    }

    /// `pigeon keys revoke ID`: the key is refused (401) from the next request on.
    public static func revokeKey(database: String, id: String) async throws -> [String] {
        guard try await open(database).revoke(id: id) else {
            throw Failure(description: "no API key \(id) (see `pigeon keys list`)")
        }
        return ["revoked \(id)"]
    }

    static func open(_ database: String) throws -> SQLiteAPIKeys {
        do {
            return try SQLiteAPIKeys(path: database)
        } catch let error as OutboxError {
            throw Failure(description: "PIGEON_DATABASE: \(error.description)")
        }
    }

    // MARK: check

    /// `pigeon check`: connects to the relay of `PIGEON_SMTP_URL` as a delivery would,
    /// and returns what it offers. Sends no mail. Throws a one-line `Failure` naming the
    /// cause (TLS, authentication, connection, ...).
    public static func check(smtpURL: String?, caFile: String?, timeout: Duration = .seconds(15)) async throws -> [String] {
        guard let smtpURL, !smtpURL.isEmpty else {
            throw Failure(description: "PIGEON_SMTP_URL: not set; give the relay, e.g. smtp://user:pass@host:587")
        }
        var relay: SMTPRelayConfiguration
        do {
            relay = try SMTPRelayConfiguration(url: smtpURL, caFile: caFile)
        } catch {
            throw Failure(description: "PIGEON_SMTP_URL: \(error.description)")
        }
        if let caFile, !FileManager.default.isReadableFile(atPath: caFile) {
            throw Failure(description: "PIGEON_SMTP_CA_FILE: cannot read \(caFile)")
        }
        relay.timeouts = .all(timeout)
        let report: SMTPProbeReport
        do {
            report = try await SMTPClient.probe(configuration: relay)
        } catch {
            throw Failure(
                description: "\(relay.nextHop): \(cause(error.kind)): \(error.message)\(error.reply.map { " (\($0.code) \($0.text))" } ?? "")"
            )
        }
        var lines = ["relay: \(relay.redactedDescription)"]
        if let version = report.tlsVersion {
            let how = relay.tlsMode == .implicit ? "implicit TLS" : "STARTTLS"
            lines.append("tls: \(version) (\(how))")
        } else {
            lines.append("tls: none (plain text)")
        }
        if let certificate = report.certificate {
            lines.append("certificate subject: \(certificate.subject)")
            lines.append("certificate issuer: \(certificate.issuer)")
            lines.append("certificate expires: \(ISO8601DateFormatter().string(from: certificate.notValidAfter))")
            lines.append("certificate verified: \(certificate.verified ? "yes" : "no (opportunistic TLS without credentials)")")
        }
        lines.append("capabilities: \(report.capabilities.joined(separator: ", "))")
        switch report.authenticated {
        case .some(true): lines.append("auth: succeeded as \(relay.username ?? "")")
        case .some(false): lines.append("auth: failed")
        case .none: lines.append("auth: not configured (no user in PIGEON_SMTP_URL)")
        }
        lines.append("ok: the relay is usable; no mail was sent")
        return lines
    }

    static func cause(_ kind: SMTPErrorKind) -> String {
        switch kind {
        case .connect: "cannot connect"
        case .timeout: "timed out"
        case .tls: "TLS failed"
        case .protocolViolation: "protocol error"
        case .authentication: "authentication failed"
        case .serviceUnavailable: "relay unavailable (421)"
        case .rejected: "refused"
        case .closed: "connection closed"
        case .messageTooLarge, .smtputf8Unsupported: "refused"
        }
    }
}
