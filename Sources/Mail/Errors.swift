/// One invalid field of a request, named as in the HTTP API's JSON.
///
/// `field` is a snake_case path: `"from"`, `"to[0]"`, `"cc[1]"`, `"bcc[0]"`, `"reply_to[0]"`,
/// `"subject"`, `"text"`, `"html"`, `"headers.X-Custom"`, `"attachments[2].filename"`,
/// `"attachments[2].content"`, `"attachments"`. `code` is stable and machine-readable; `message`
/// is for humans and never repeats secrets (it may quote the field name, never a key).
public struct FieldError: Sendable, Hashable, CustomStringConvertible {
    /// The JSON path of the offending field.
    public var field: String
    /// A stable code: `required`, `invalid_address`, `header_injection`, `invalid_header_name`,
    /// `reserved_header`, `too_long`, `too_many_recipients`, `too_many`, `invalid_content_type`,
    /// `invalid_filename`, `invalid_content_id`, `duplicate_content_id`, `invalid_message_id`,
    /// `invalid_base64` (reported by the API layer), `too_large`.
    public var code: String
    /// A short human-readable explanation.
    public var message: String

    /// Creates a field error.
    public init(field: String, code: String, message: String) {
        self.field = field
        self.code = code
        self.message = message
    }

    /// `field: message (code)`.
    public var description: String { "\(field): \(message) (\(code))" }
}

/// Everything wrong with a draft, reported together.
public struct ValidationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Each invalid field, in the order of the request's fields.
    public var errors: [FieldError]

    /// Creates a validation error from its field errors.
    public init(errors: [FieldError]) {
        self.errors = errors
    }

    /// True when the only problems are sizes (`too_large`): the HTTP API answers 413 instead of 422.
    public var isTooLarge: Bool {
        !errors.isEmpty && errors.allSatisfy { $0.code == "too_large" }
    }

    /// One line per field error.
    public var description: String {
        errors.map(\.description).joined(separator: "; ")
    }
}

/// Why a single address could not be parsed. `code` is `invalid_address`, `header_injection` or `too_long`.
public struct AddressParseError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A stable code, as in ``FieldError/code``.
    public var code: String
    /// A short human-readable explanation (never the whole address).
    public var message: String

    /// Creates an address parse error.
    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }

    /// `message (code)`.
    public var description: String { "\(message) (\(code))" }
}

/// Why a DKIM private key was refused. Its description is one line with no key material; the caller
/// prefixes the setting's name (e.g. `PIGEON_DKIM_KEY_FILE: ...`).
public struct DKIMKeyError: Error, Sendable, Hashable, CustomStringConvertible {
    /// One clear line, e.g. `not a PEM private key`.
    public var description: String

    /// Creates a key error.
    public init(_ description: String) {
        self.description = description
    }
}
