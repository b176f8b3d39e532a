import Foundation
import GRDB

/// What an API key may do.
public enum APIKeyScope: String, Sendable, Hashable, CaseIterable, Codable {
    /// Send emails and read their status and the event feed.
    case send
    /// Everything `send` may, and manage webhook endpoints.
    case admin
}

/// An API key as stored: never the key itself, only its SHA-256 digest.
public struct APIKeyRecord: Sendable, Hashable, Codable {
    /// `ak_` + 26 base-32 characters.
    public var id: String
    /// The operator's name for it (which backend uses it).
    public var name: String
    /// What it may do.
    public var scope: APIKeyScope
    /// The From domains it may send as (lower case); empty means any.
    public var fromDomains: [String]
    /// When it was made.
    public var createdAt: Date
    /// When it was revoked, if it was.
    public var revokedAt: Date?
    /// When it was last used (written at most once a minute).
    public var lastUsedAt: Date?
}

/// API keys in the outbox database (table `api_key`, migration `v3_api_keys`).
///
/// Keys are found by the SHA-256 digest of the presented bearer key, then compared
/// again in constant time. The digest of a 256-bit random key reveals nothing usable,
/// so the index lookup leaks nothing an attacker can steer.
public protocol APIKeyStore: Sendable {
    /// The key whose digest is `digest`, revoked or not.
    func key(digest: [UInt8]) async throws -> (record: APIKeyRecord, digest: [UInt8])?
    /// Records a use (the caller throttles this).
    func markUsed(id: String, at date: Date) async throws
}

/// The SQLite implementation, over the outbox's pool or a connection of its own.
///
/// The `pigeon keys` commands open the database file with `SQLiteAPIKeys(path:)`,
/// without the outbox's lock: a running `pigeon serve` holds that lock, and SQLite
/// serialises the writes of the two processes (WAL, `busy_timeout` 5 s). A revoked key
/// is refused from the next request on, since every request reads its key row.
public final class SQLiteAPIKeys: APIKeyStore {
    let writer: any DatabaseWriter

    init(writer: any DatabaseWriter) {
        self.writer = writer
    }

    /// Opens the database at `path` (creating and migrating it if needed) for key
    /// management, without taking the outbox lock.
    public convenience init(path: String) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(5)
        configuration.foreignKeysEnabled = true
        configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
        do {
            let pool = try DatabasePool(path: path, configuration: configuration)
            try Schema.migrator.migrate(pool)
            self.init(writer: pool)
        } catch {
            throw OutboxError.cannotOpen("\(path): \(error)")
        }
    }

    /// Stores a key made by the caller (the API module makes keys and their SHA-256
    /// digests; the outbox stores the digest only).
    public func create(
        name: String,
        scope: APIKeyScope,
        fromDomains: [String],
        keyDigest: [UInt8],
        now: Date = Date()
    ) async throws -> APIKeyRecord {
        let record = APIKeyRecord(
            id: "ak_" + EmailID.ulid(now: now),
            name: name,
            scope: scope,
            fromDomains: fromDomains.map { $0.lowercased() },
            createdAt: now,
            revokedAt: nil,
            lastUsedAt: nil
        )
        let domains = String(decoding: try JSONEncoder().encode(record.fromDomains), as: UTF8.self)
        let hash = Hex.encode(keyDigest)
        try await writer.write { db in
            try db.execute(
                sql: """
                    INSERT INTO api_key (id, name, key_hash, scope, from_domains, created_at)
                    VALUES (?, ?, ?, ?, ?, ?)
                    """,
                arguments: [record.id, name, hash, scope.rawValue, domains, now.millis]
            )
        }
        return record
    }

    /// Every key, oldest first.
    public func list() async throws -> [APIKeyRecord] {
        try await writer.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM api_key ORDER BY created_at, id").map(Self.record)
        }
    }

    /// Revokes a key; false when there is no such key. Revoking twice keeps the first time.
    @discardableResult
    public func revoke(id: String, now: Date = Date()) async throws -> Bool {
        try await writer.write { db in
            guard try Row.fetchOne(db, sql: "SELECT id FROM api_key WHERE id = ?", arguments: [id]) != nil else { return false }
            try db.execute(
                sql: "UPDATE api_key SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                arguments: [now.millis, id]
            )
            return true
        }
    }

    public func key(digest: [UInt8]) async throws -> (record: APIKeyRecord, digest: [UInt8])? {
        let hash = Hex.encode(digest)
        return try await writer.read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM api_key WHERE key_hash = ?", arguments: [hash]) else {
                return nil
            }
            let stored: String = row["key_hash"]
            return (try Self.record(row), Self.bytes(hex: stored))
        }
    }

    public func markUsed(id: String, at date: Date) async throws {
        try await writer.write { db in
            try db.execute(sql: "UPDATE api_key SET last_used_at = ? WHERE id = ?", arguments: [date.millis, id])
        }
    }

    static func record(_ row: Row) throws -> APIKeyRecord {
        let domains: String = row["from_domains"]
        let revoked: Int64? = row["revoked_at"]
        let used: Int64? = row["last_used_at"]
        let scope: String = row["scope"]
        return APIKeyRecord(
            id: row["id"],
            name: row["name"],
            scope: APIKeyScope(rawValue: scope) ?? .send,
            fromDomains: (try? JSONDecoder().decode([String].self, from: Data(domains.utf8))) ?? [],
            createdAt: Date(millis: row["created_at"]),
            revokedAt: revoked.map(Date.init(millis:)),
            lastUsedAt: used.map(Date.init(millis:))
        )
    }

    static func bytes(hex: String) -> [UInt8] {
        var result: [UInt8] = []
        var high: UInt8?
        for scalar in hex.utf8 {
            let value: UInt8
            switch scalar {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = scalar - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): value = scalar - UInt8(ascii: "a") + 10
            default: return []
            }
            if let first = high {
                result.append(first << 4 | value)
                high = nil
            } else {
                high = value
            }
        }
        return result
    }
}

extension SQLiteOutbox {
    /// The API keys of this outbox, on its own connection pool.
    public var apiKeys: SQLiteAPIKeys { SQLiteAPIKeys(writer: pool) }

    /// Whether the database takes a write now: `BEGIN IMMEDIATE` (the write lock) and a
    /// rollback, plus write permission on the file and its folder. Throws `unavailable`.
    public func probeWritable() async throws {
        let directory = (path as NSString).deletingLastPathComponent
        guard FileManager.default.isWritableFile(atPath: path),
            FileManager.default.isWritableFile(atPath: directory.isEmpty ? "." : directory)
        else {
            throw OutboxError.unavailable("the database file or its folder is not writable")
        }
        do {
            try await pool.writeWithoutTransaction { db in
                try db.inTransaction(.immediate) {
                    try db.execute(sql: "UPDATE api_key SET id = id WHERE 0")
                    return .rollback
                }
            }
        } catch {
            throw OutboxError.map(error)
        }
    }
}

extension Schema {
    /// API keys (issue 6): only the SHA-256 of a key is stored, never the key.
    static let v3APIKeys = """
        CREATE TABLE api_key (
            id TEXT PRIMARY KEY NOT NULL,
            name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
            key_hash TEXT NOT NULL UNIQUE CHECK (length(key_hash) = 64),
            scope TEXT NOT NULL CHECK (scope IN ('send','admin')),
            from_domains TEXT NOT NULL DEFAULT '[]',
            created_at INTEGER NOT NULL,
            revoked_at INTEGER,
            last_used_at INTEGER
        );
        """
}
