import Foundation
import Testing

/// Runs `.ci/oracles/mail_oracle.py` (Python's `email` package, dkimpy, aiosmtpd).
///
/// Without python3 or a module the oracle tests are skipped locally; with `CI=true` in the
/// environment they run anyway and fail, so CI never passes by skipping them.
enum Oracle {
    static var isCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }

    /// The oracle script, found from this file's real location (symlinks resolved) upwards.
    static let script: String? = {
        if let dir = ProcessInfo.processInfo.environment["PIGEON_ORACLES_DIR"] {
            return dir + "/mail_oracle.py"
        }
        var url = URL(fileURLWithPath: #filePath).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<6 {
            let candidate = url.appendingPathComponent(".ci/oracles/mail_oracle.py").path
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
            url = url.deletingLastPathComponent()
        }
        return nil
    }()

    static let python: String? = {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/python3"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }()

    /// True when `python3 -c "import <modules>"` works.
    static func hasModules(_ modules: [String]) -> Bool {
        guard let python, script != nil else { return false }
        let result = try? run(python, ["-c", "import " + modules.joined(separator: ", ")])
        return result?.status == 0
    }

    static let emailAvailable = hasModules(["email"])
    static let dkimAvailable = hasModules(["dkim", "nacl"])
    static let smtpAvailable = hasModules(["dkim", "nacl", "aiosmtpd"])

    /// Whether a test that needs these oracles runs: always in CI, else when they are installed.
    static var runEmail: Bool { isCI || emailAvailable }
    static var runDKIM: Bool { isCI || dkimAvailable }
    static var runSMTP: Bool { isCI || smtpAvailable }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: Data, error: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // Read both pipes to the end before waiting, so that a full pipe cannot block the child.
        let errorData = LockedData()
        let errorReader = Thread {
            errorData.set(err.fileHandleForReading.readDataToEndOfFile())
        }
        errorReader.start()
        let output = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        while !errorData.isSet { Thread.sleep(forTimeInterval: 0.005) }
        return (process.terminationStatus, output, String(decoding: errorData.get(), as: UTF8.self))
    }

    /// Runs the oracle with `arguments` and decodes its JSON output.
    static func call<T: Decodable>(_ type: T.Type, _ arguments: [String]) throws -> T {
        guard let python else { throw Failure(description: "python3 is not installed (needed by the oracle tests; CI=true)") }
        guard let script else { throw Failure(description: ".ci/oracles/mail_oracle.py not found") }
        let result = try run(python, [script] + arguments)
        if result.status == 77 {
            throw Failure(
                description: "oracle module missing: \(String(decoding: result.output, as: UTF8.self)) (pip install -r .ci/oracles/requirements.txt)"
            )
        }
        guard result.status == 0 else {
            throw Failure(description: "oracle exited \(result.status): \(result.error.suffix(2_000))")
        }
        return try JSONDecoder().decode(T.self, from: result.output)
    }

    /// Writes `data` to a new temporary file and returns its path.
    static func temporaryFile(_ data: [UInt8], suffix: String = ".eml") throws -> String {
        let path = NSTemporaryDirectory() + "pigeon-mail-\(UUID().uuidString)\(suffix)"
        try Data(data).write(to: URL(fileURLWithPath: path))
        return path
    }
}

/// A Data box shared between the reading thread and the caller.
final class LockedData: @unchecked Sendable {
    private let lock = NSLock()
    private var data: Data?

    func set(_ value: Data) {
        lock.lock()
        data = value
        lock.unlock()
    }

    var isSet: Bool {
        lock.lock()
        defer { lock.unlock() }
        return data != nil
    }

    func get() -> Data {
        lock.lock()
        defer { lock.unlock() }
        return data ?? Data()
    }
}

/// What `mail_oracle.py parse` prints.
struct ParsedMessage: Decodable {
    struct Mailbox: Decodable, Equatable {
        var name: String
        var addr: String
    }

    struct Part: Decodable {
        var filename: String?
        var content_type: String
        var content_id: String?
        var disposition: String
        var content: String
    }

    var subject: String?
    var from: [Mailbox]?
    var to: [Mailbox]?
    var cc: [Mailbox]?
    var reply_to: [Mailbox]?
    var from_rfc2047: [Mailbox]?
    var to_rfc2047: [Mailbox]?
    var has_bcc: Bool
    var message_id: String
    var date: String
    var header_names: [String]
    var headers: [String: String]
    var content_type: String
    var text: String?
    var html: String?
    var attachments: [Part]
    var defects: [String]
}

struct DKIMResult: Decodable {
    var ok: Bool
    var identical: Bool?
}
