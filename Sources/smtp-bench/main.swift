// smtp-bench: sends N messages of a given size through SMTPClient and prints the rate.
//
//   smtp-bench --port 2525 [--host 127.0.0.1] [--messages 10000] [--connections 20] [--size 2048]
//
// Used by bench/smtp.sh, which runs it next to Postfix's smtp-source against smtp-sink.
// The message is the same bytes every time (as smtp-source's is); `connections`
// workers share one SMTPClient whose pool holds that many connections, reused with RSET.
// Each worker runs on one of the client's event loops (`SMTPClient.taskExecutors`), as
// the delivery service's workers do, so its connection's replies are handled on the
// thread that waits for them.

import Foundation
import NIOPosix
import SMTPClient

struct Options {
    var host = "127.0.0.1"
    var port = 25
    var messages = 10_000
    var connections = 1
    var size = 2048

    init(arguments: [String]) throws(UsageError) {
        var iterator = arguments.dropFirst().makeIterator()
        while let flag = iterator.next() {
            guard let value = iterator.next() else { throw UsageError(message: "missing value after \(flag)") }
            switch flag {
            case "--host": host = value
            case "--port": port = try Self.number(value, flag)
            case "--messages": messages = try Self.number(value, flag)
            case "--connections": connections = try Self.number(value, flag)
            case "--size": size = try Self.number(value, flag)
            default: throw UsageError(message: "unknown option \(flag)")
            }
        }
    }

    static func number(_ text: String, _ flag: String) throws(UsageError) -> Int {
        guard let value = Int(text), value > 0 else { throw UsageError(message: "\(flag) needs a positive number") }
        return value
    }
}

struct UsageError: Error {
    var message: String
}

/// A message of exactly `size` bytes: a few headers, then lines of 76 letters.
func makeMessage(size: Int) -> [UInt8] {
    var bytes = Array("From: <bench@example.com>\r\nTo: <sink@example.com>\r\nSubject: smtp-bench\r\n\r\n".utf8)
    let line = Array(String(repeating: "x", count: 76).utf8) + [13, 10]
    while bytes.count + line.count <= size { bytes += line }
    bytes += Array(repeating: UInt8(ascii: "y"), count: max(0, size - bytes.count))
    return bytes
}

let options: Options
do {
    options = try Options(arguments: CommandLine.arguments)
} catch {
    print("smtp-bench: \(error.message)")
    print("usage: smtp-bench --port PORT [--host HOST] [--messages N] [--connections N] [--size BYTES]")
    exit(2)
}

var configuration = SMTPRelayConfiguration(host: options.host, port: options.port, tlsMode: .none)
configuration.maxConnections = options.connections
configuration.maxMessagesPerConnection = 0
configuration.timeouts.idle = .seconds(30)
let client = SMTPClient(configuration: configuration)
let message = OutgoingMessage(mailFrom: "bench@example.com", recipients: ["sink@example.com"], data: makeMessage(size: options.size))

let executors = client.taskExecutors
let clock = ContinuousClock()
let start = clock.now
let failures = await withTaskGroup(of: Int.self) { group in
    for worker in 0..<options.connections {
        let count = options.messages / options.connections + (worker < options.messages % options.connections ? 1 : 0)
        group.addTask(executorPreference: executors[worker % executors.count]) {
            var failures = 0
            for _ in 0..<count {
                do {
                    let result = try await client.send(message)
                    if !result.recipients.allSatisfy({ $0.reply.isPositiveCompletion }) { failures += 1 }
                } catch {
                    failures += 1
                }
            }
            return failures
        }
    }
    var total = 0
    for await failures in group { total += failures }
    return total
}
let elapsed = clock.now - start
await client.shutdown()
let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
let rate = Double(options.messages) / seconds
print(
    "smtp-bench: \(options.messages) messages of \(options.size) bytes over \(options.connections) connections in \(String(format: "%.3f", seconds)) s: \(String(format: "%.0f", rate)) msg/s, \(failures) failed"
)
