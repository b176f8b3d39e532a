import Foundation
import OpenAPIRuntime

/// What `/readyz` and `/metrics` ask the application (the API does not import the
/// delivery service or the metrics backend).
public struct OperationsEndpoints: Sendable {
    /// The readiness checks: a name (`database`, `delivery`) and nil when fine, else why not.
    public var readiness: @Sendable () async -> [(name: String, problem: String?)]
    /// The Prometheus text exposition.
    public var metrics: @Sendable () async -> String

    /// Creates the value.
    public init(
        readiness: @escaping @Sendable () async -> [(name: String, problem: String?)],
        metrics: @escaping @Sendable () async -> String
    ) {
        self.readiness = readiness
        self.metrics = metrics
    }
}

// `GET /readyz` and `GET /metrics` (issue 6).
extension PigeonAPI {
    func getReadiness(_ input: Operations.GetReadiness.Input) async throws -> Operations.GetReadiness.Output {
        let checks = await operations?.readiness() ?? []
        var details: [String: String] = [:]
        for check in checks { details[check.name] = check.problem ?? "ok" }
        let ready = checks.allSatisfy { $0.problem == nil }
        let body = Components.Schemas.Readiness(
            status: ready ? .ready : .notReady,
            checks: .init(additionalProperties: details)
        )
        return ready ? .ok(.init(body: .json(body))) : .serviceUnavailable(.init(body: .json(body)))
    }

    func getMetrics(_ input: Operations.GetMetrics.Input) async throws -> Operations.GetMetrics.Output {
        let text = await operations?.metrics() ?? ""
        return .ok(.init(body: .plainText(HTTPBody(text))))
    }
}
