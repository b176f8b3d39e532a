import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Outbox

@testable import API

/// The API's routes over a real SQLite outbox in a temporary folder, driven in process
/// by Hummingbird's router tester; the folder is removed afterwards.
func withRoutes(
    _ configuration: APIConfiguration,
    _ body: @Sendable (any TestClientProtocol, SQLiteOutbox) async throws -> Void
) async throws {
    let directory = NSTemporaryDirectory() + "pigeon-api-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let outbox = try SQLiteOutbox(path: directory + "/outbox.sqlite")
    let router = Router()
    var logger = Logger(label: "api-test")
    logger.logLevel = .critical
    try registerRoutes(on: router, outbox: outbox, configuration: configuration, logger: logger)
    try await Application(router: router, logger: logger).test(.router) { client in try await body(client, outbox) }
}
