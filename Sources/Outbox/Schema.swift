import GRDB

/// The outbox schema, as migrations.
///
/// Migrations are SQL literals and are never edited once shipped (GRDB's Migrations
/// guide): a change is a new migration. Invariants live in the schema: CHECK
/// constraints on every status, UNIQUE on attempt numbers, foreign keys with cascades.
/// Times are INTEGER milliseconds since 1970 (UTC).
enum Schema {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: v1)
        }
        migrator.registerMigration("v2_webhooks") { db in try db.execute(sql: v2Webhooks) }
        migrator.registerMigration("v3_api_keys") { db in try db.execute(sql: v3APIKeys) }
        return migrator
    }

    static let v1 = """
        CREATE TABLE email (
            id TEXT PRIMARY KEY NOT NULL,
            status TEXT NOT NULL CHECK (status IN
                ('queued','scheduled','sending','sent','deferred','failed','partially_failed','canceled')),
            from_header TEXT NOT NULL,
            mail_from TEXT NOT NULL,
            subject TEXT NOT NULL,
            message_id TEXT NOT NULL,
            requires_smtputf8 INTEGER NOT NULL DEFAULT 0 CHECK (requires_smtputf8 IN (0, 1)),
            has_8bit INTEGER NOT NULL DEFAULT 0 CHECK (has_8bit IN (0, 1)),
            tags TEXT NOT NULL DEFAULT '{}',
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            scheduled_at INTEGER,
            expires_at INTEGER,
            -- When the email is due (or, while `sending`, when its lease runs out);
            -- NULL once it is final. The one column the claim reads.
            next_attempt_at INTEGER,
            lease_owner TEXT,
            lease_until INTEGER,
            attempt_count INTEGER NOT NULL DEFAULT 0 CHECK (attempt_count >= 0),
            failure_reason TEXT,
            finished_at INTEGER,
            CHECK ((status IN ('sent','failed','partially_failed','canceled')) = (next_attempt_at IS NULL)),
            CHECK ((status = 'sending') = (lease_owner IS NOT NULL))
        );
        CREATE INDEX email_due ON email(next_attempt_at) WHERE next_attempt_at IS NOT NULL;
        CREATE INDEX email_finished ON email(finished_at) WHERE finished_at IS NOT NULL;
        CREATE INDEX email_created ON email(created_at);

        CREATE TABLE email_body (
            email_id TEXT PRIMARY KEY NOT NULL REFERENCES email(id) ON DELETE CASCADE,
            data BLOB NOT NULL
        );

        CREATE TABLE recipient (
            email_id TEXT NOT NULL REFERENCES email(id) ON DELETE CASCADE,
            position INTEGER NOT NULL CHECK (position >= 0),
            address TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('to','cc','bcc')),
            status TEXT NOT NULL CHECK (status IN ('pending','sent','deferred','failed')),
            last_code INTEGER CHECK (last_code IS NULL OR last_code BETWEEN 200 AND 599),
            last_enhanced_code TEXT,
            last_text TEXT,
            updated_at INTEGER NOT NULL,
            PRIMARY KEY (email_id, position),
            UNIQUE (email_id, address)
        ) WITHOUT ROWID;

        CREATE TABLE attempt (
            email_id TEXT NOT NULL REFERENCES email(id) ON DELETE CASCADE,
            number INTEGER NOT NULL CHECK (number >= 1),
            started_at INTEGER NOT NULL,
            finished_at INTEGER NOT NULL,
            next_hop TEXT,
            outcome TEXT NOT NULL,
            error TEXT,
            transcript TEXT,
            PRIMARY KEY (email_id, number)
        ) WITHOUT ROWID;

        -- The event feed. The sequence is the commit order (one writer), and the
        -- cursor of GET /v1/events. Events outlive nothing: retention purges them
        -- with their email.
        CREATE TABLE event (
            sequence INTEGER PRIMARY KEY AUTOINCREMENT,
            type TEXT NOT NULL CHECK (type IN ('email.queued','email.sent','email.deferred',
                'email.failed','email.partially_failed','email.canceled')),
            email_id TEXT NOT NULL REFERENCES email(id) ON DELETE CASCADE,
            created_at INTEGER NOT NULL,
            payload TEXT NOT NULL
        );
        CREATE INDEX event_email ON event(email_id);

        -- Idempotency keys (Stripe's semantics), committed in the same transaction as
        -- the emails they made. `scope` is the SHA-256 of the API key, never the key.
        CREATE TABLE idempotency_key (
            scope TEXT NOT NULL,
            key TEXT NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
            request_hash TEXT NOT NULL,
            response TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            PRIMARY KEY (scope, key)
        ) WITHOUT ROWID;
        CREATE INDEX idempotency_expiry ON idempotency_key(expires_at);
        """
}
