import GRDB

/// Errors of the outbox. Their descriptions carry no message content.
public enum OutboxError: Error, Sendable, CustomStringConvertible, Equatable {
    /// The database cannot take the write now (full disk, locked, read-only, I/O error).
    /// Nothing was committed; the caller may retry later.
    case unavailable(String)
    /// Another process holds the outbox (the lock file is taken).
    case locked(path: String)
    /// The database could not be opened or migrated.
    case cannotOpen(String)
    /// The lease on an email was lost (it ran out and another worker took it).
    case leaseLost(emailID: String)
    /// No such email.
    case notFound(String)
    /// The email is in a state that does not allow the change.
    case conflict(String)
    /// The idempotency key was used before with a different request body.
    case idempotencyMismatch

    /// One line for logs and start-up errors.
    public var description: String {
        switch self {
        case .unavailable(let reason): return "outbox unavailable: \(reason)"
        case .locked(let path): return "another pigeon process holds the outbox \(path)"
        case .cannotOpen(let reason): return "cannot open the outbox: \(reason)"
        case .leaseLost(let id): return "lease lost on \(id)"
        case .notFound(let id): return "no email \(id)"
        case .conflict(let reason): return reason
        case .idempotencyMismatch: return "this Idempotency-Key was used with a different request body"
        }
    }

    /// Maps a SQLite error to the outbox's vocabulary: resource trouble becomes `unavailable`.
    static func map(_ error: any Error) -> any Error {
        if let outboxError = error as? OutboxError { return outboxError }
        guard let dbError = error as? DatabaseError else { return error }
        switch dbError.resultCode {
        case .SQLITE_FULL: return OutboxError.unavailable("the disk is full")
        case .SQLITE_BUSY, .SQLITE_LOCKED: return OutboxError.unavailable("the database is locked")
        case .SQLITE_READONLY: return OutboxError.unavailable("the database is read-only")
        case .SQLITE_IOERR: return OutboxError.unavailable("I/O error")
        case .SQLITE_CANTOPEN: return OutboxError.unavailable("cannot open the database file")
        case .SQLITE_CORRUPT, .SQLITE_NOTADB: return OutboxError.unavailable("the database file is damaged")
        default: return dbError
        }
    }
}
