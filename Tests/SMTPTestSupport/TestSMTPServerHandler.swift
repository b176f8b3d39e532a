import NIOCore
import NIOSSL
import Synchronization

/// One connection of `TestSMTPServer`, on its event loop.
final class TestSMTPServerHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum Mode {
        case command
        case data
        case authPlainResponse
        case authLoginUser
        case authLoginPassword(user: String)
        /// XOAUTH2 refused with a 334 error challenge: the client's empty line is awaited.
        case authXOAuth2Refused
        case hung
    }

    private static let maximumCommandLine = 4096
    private static let maximumDataLine = 1 << 20

    private let server: TestSMTPServer
    private let connectionIndex: Int
    private var encrypted: Bool
    private var buffer = ByteBuffer()
    private var mode = Mode.command
    private var busy = false
    private var context: ChannelHandlerContext?

    private var authenticated = false
    private var mailFrom: String?
    private var mailParameters: [String] = []
    private var recipients: [String] = []
    private var dataLines: [ArraySlice<UInt8>] = []
    private var dataSize = 0
    private var bareLineFeed = false

    init(server: TestSMTPServer, connectionIndex: Int, encrypted: Bool) {
        self.server = server
        self.connectionIndex = connectionIndex
        self.encrypted = encrypted
    }

    func channelActive(context: ChannelHandlerContext) {
        self.context = context
        let response = server.handler(for: SMTPCommandContext.greetingVerb, argument: "", line: "", connectionIndex: connectionIndex)
        respond(response, verb: SMTPCommandContext.greetingVerb, argument: "") {
            "220 \(self.server.configuration.hostname) ESMTP Pigeon test server"
        }
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        buffer.writeBuffer(&bytes)
        processBuffered()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func processBuffered() {
        while !busy, context != nil {
            if case .hung = mode {
                buffer.clear()
                return
            }
            let view = buffer.readableBytesView
            let limit: Int
            if case .data = mode { limit = Self.maximumDataLine } else { limit = Self.maximumCommandLine }
            guard let newline = view.firstIndex(of: UInt8(ascii: "\n")) else {
                if view.count > limit {
                    send("500 5.5.0 Line too long")
                    context?.close(promise: nil)
                }
                buffer.discardReadBytes()
                return
            }
            var end = newline
            let hasCR = end > view.startIndex && view[end - 1] == UInt8(ascii: "\r")
            if hasCR { end -= 1 }
            let line = Array(view[view.startIndex..<end])
            buffer.moveReaderIndex(forwardBy: newline - view.startIndex + 1)
            handleLine(line[...], hadCR: hasCR)
        }
    }

    private func handleLine(_ line: ArraySlice<UInt8>, hadCR: Bool) {
        switch mode {
        case .data:
            if !hadCR { bareLineFeed = true }
            if line == [UInt8(ascii: ".")] {
                endOfData()
                return
            }
            let unstuffed = line.first == UInt8(ascii: ".") ? line.dropFirst() : line
            dataSize += unstuffed.count + 2
            if dataSize > 64 << 20 {
                send("552 5.3.4 Too much data")
                context?.close(promise: nil)
                return
            }
            dataLines.append(unstuffed)
        case .authPlainResponse:
            record(String(decoding: line, as: UTF8.self))
            mode = .command
            let reply = authPlainReply(String(decoding: line, as: UTF8.self))
            if reply.hasPrefix("235") { authenticated = true }
            send(reply)
        case .authLoginUser:
            record(String(decoding: line, as: UTF8.self))
            let user = String(decoding: base64Decode(String(decoding: line, as: UTF8.self)) ?? [], as: UTF8.self)
            mode = .authLoginPassword(user: user)
            send("334 UGFzc3dvcmQ6")
        case .authXOAuth2Refused:
            record(String(decoding: line, as: UTF8.self))
            mode = .command
            send(line.isEmpty ? "535 5.7.8 Username and Password not accepted" : "501 5.5.2 Expected an empty line after the XOAUTH2 error")
        case .authLoginPassword(let user):
            record(String(decoding: line, as: UTF8.self))
            mode = .command
            let password = String(decoding: base64Decode(String(decoding: line, as: UTF8.self)) ?? [], as: UTF8.self)
            finishAuth(user: user, password: password)
        case .hung:
            return
        case .command:
            let text = String(decoding: line, as: UTF8.self)
            record(text)
            handleCommand(text)
        }
    }

    private func record(_ line: String) {
        let command = ReceivedCommand(line: line, connectionIndex: connectionIndex, wasEncrypted: encrypted)
        server.state.withLock { $0.commands.append(command) }
    }

    private func handleCommand(_ line: String) {
        let verbEnd = line.firstIndex(of: " ") ?? line.endIndex
        var verb = line[..<verbEnd].uppercased()
        var argument = String(line[verbEnd...].drop { $0 == " " })
        if verb == "MAIL" || verb == "RCPT", let colon = line.firstIndex(of: ":") {
            verb = String(line[..<colon].split(separator: " ").first ?? "").uppercased()
            argument = String(line[line.index(after: colon)...])
        }
        let response = server.handler(for: verb, argument: argument, line: line, connectionIndex: connectionIndex)
        respond(response, verb: verb, argument: argument) { self.standardReply(verb: verb, argument: argument) }
    }

    // MARK: Responses

    /// Sends a response; `standard` is evaluated only when needed. Side effects follow the code sent.
    private func respond(_ response: ScriptedResponse, verb: String, argument: String, standard: () -> String) {
        switch response {
        case .standard:
            let text = standard()
            sendApplyingSideEffects(Array(text.utf8) + (text.hasSuffix("\r\n") ? [] : [13, 10]), verb: verb, argument: argument)
        case .reply(let text):
            sendApplyingSideEffects(Array(text.utf8) + (text.hasSuffix("\r\n") ? [] : [13, 10]), verb: verb, argument: argument)
        case .raw(let bytes):
            sendApplyingSideEffects(bytes, verb: verb, argument: argument)
        case .disconnect:
            context?.close(promise: nil)
        case .hang:
            mode = .hung
            busy = true
        case .delayed(let duration, let inner):
            guard let context else { return }
            busy = true
            let standardText = standard()
            let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: TimeAmount(duration)) {
                let handler = loopBound.value
                handler.busy = false
                handler.respond(inner, verb: verb, argument: argument) { standardText }
                handler.processBuffered()
            }
        }
    }

    /// Side effects happen before the reply is written (so a test that saw the reply sees
    /// the message stored), except where the reply must go out first: the 220 to STARTTLS
    /// in plain text, and the last words before closing.
    private func sendApplyingSideEffects(_ bytes: [UInt8], verb: String, argument: String) {
        let code = String(decoding: bytes.prefix(3), as: UTF8.self)
        let sendFirst = verb == "STARTTLS" || verb == "QUIT" || code == "421"
        if sendFirst { context?.writeAndFlush(NIOAny(ByteBuffer(bytes: bytes)), promise: nil) }
        applySideEffects(code: code, verb: verb, argument: argument)
        if !sendFirst { context?.writeAndFlush(NIOAny(ByteBuffer(bytes: bytes)), promise: nil) }
    }

    private func send(_ text: String) {
        guard let context else { return }
        var out = context.channel.allocator.buffer(capacity: text.utf8.count + 2)
        out.writeString(text)
        if !text.hasSuffix("\r\n") { out.writeString("\r\n") }
        context.writeAndFlush(NIOAny(out), promise: nil)
    }

    private var hostname: String { server.configuration.hostname }

    private func standardReply(verb: String, argument: String) -> String {
        let configuration = server.configuration
        switch verb {
        case "EHLO":
            var keywords = configuration.extensions
            if configuration.tls != nil && !encrypted { keywords.append("STARTTLS") }
            if configuration.authCredentials != nil { keywords.append((["AUTH"] + configuration.authMechanisms).joined(separator: " ")) }
            let lines = [hostname] + keywords
            return lines.enumerated().map { "250\($0 == lines.count - 1 ? " " : "-")\($1)" }.joined(separator: "\r\n")
        case "HELO":
            return "250 \(hostname)"
        case "STARTTLS":
            guard configuration.tls != nil, server.sslContext != nil, !encrypted else { return "454 4.7.0 TLS not available" }
            return "220 2.0.0 Ready to start TLS"
        case "AUTH":
            guard configuration.authCredentials != nil else { return "503 5.5.1 Error: authentication not enabled" }
            guard !authenticated else { return "503 5.5.1 Error: already authenticated" }
            let words = argument.split(separator: " ")
            let mechanism = words.first?.uppercased() ?? ""
            guard configuration.authMechanisms.contains(mechanism) else { return "504 5.5.4 Unsupported authentication mechanism" }
            switch mechanism {
            case "PLAIN": return words.count > 1 ? authPlainReply(String(words[1])) : "334 "
            case "LOGIN": return "334 VXNlcm5hbWU6"
            case "XOAUTH2": return words.count > 1 ? authXOAuth2Reply(String(words[1])) : "501 5.5.2 XOAUTH2 needs an initial response"
            default: return "504 5.5.4 Unsupported authentication mechanism"
            }
        case "MAIL":
            guard mailFrom == nil else { return "503 5.5.1 Error: nested MAIL command" }
            if configuration.authCredentials != nil && !authenticated { return "530 5.7.0 Authentication required" }
            let (_, parameters) = parsePath(argument)
            if let limit = configuration.maximumSize,
                let size = parameters.first(where: { $0.uppercased().hasPrefix("SIZE=") }).flatMap({ Int($0.dropFirst(5)) }),
                size > limit
            {
                return "552 5.3.4 Message size exceeds fixed limit"
            }
            return "250 2.1.0 Ok"
        case "RCPT":
            guard mailFrom != nil else { return "503 5.5.1 Error: need MAIL command" }
            return "250 2.1.5 Ok"
        case "DATA":
            guard mailFrom != nil, !recipients.isEmpty else { return "554 5.5.1 Error: no valid recipients" }
            return "354 End data with <CR><LF>.<CR><LF>"
        case SMTPCommandContext.endOfDataVerb:
            let count = server.state.withLock { $0.messages.count }
            return "250 2.0.0 Ok: queued as TEST\(count + 1)"
        case "RSET":
            return "250 2.0.0 Ok"
        case "NOOP":
            return "250 2.0.0 Ok"
        case "QUIT":
            return "221 2.0.0 Bye"
        default:
            return "502 5.5.2 Error: command not recognized"
        }
    }

    private func applySideEffects(code: String, verb: String, argument: String) {
        // RFC 5321 section 3.8: 421 means the server closes the channel.
        if code == "421" {
            context?.close(promise: nil)
            return
        }
        let positive = code.hasPrefix("2") || code.hasPrefix("3")
        switch verb {
        case "EHLO", "HELO", "RSET":
            if positive { resetTransaction() }
        case "STARTTLS":
            guard code == "220", let sslContext = server.sslContext, let context else { return }
            // RFC 3207 section 4.2: forget everything, including pipelined input.
            buffer.clear()
            resetTransaction()
            authenticated = false
            encrypted = true
            try? context.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext), position: .first)
        case "AUTH":
            let words = argument.split(separator: " ")
            if code == "334" {
                switch words.first?.uppercased() {
                case "LOGIN": mode = .authLoginUser
                case "XOAUTH2": mode = .authXOAuth2Refused
                default: mode = .authPlainResponse
                }
            } else if code == "235" {
                authenticated = true
            }
        case "MAIL":
            if positive {
                let (path, parameters) = parsePath(argument)
                mailFrom = path
                mailParameters = parameters
            }
        case "RCPT":
            if positive { recipients.append(parsePath(argument).path) }
        case "DATA":
            if code == "354" {
                mode = .data
                dataLines = []
                dataSize = 0
                bareLineFeed = false
            }
        case SMTPCommandContext.endOfDataVerb:
            if code.hasPrefix("2") {
                var data: [UInt8] = []
                for (index, line) in dataLines.enumerated() {
                    if index > 0 { data += [13, 10] }
                    data += line
                }
                let message = ReceivedMessage(
                    mailFrom: mailFrom ?? "",
                    recipients: recipients,
                    data: data,
                    hadBareLineFeed: bareLineFeed,
                    mailParameters: mailParameters,
                    connectionIndex: connectionIndex,
                    wasEncrypted: encrypted
                )
                server.state.withLock { $0.messages.append(message) }
            }
            resetTransaction()
        case "QUIT":
            context?.close(promise: nil)
        default:
            break
        }
    }

    private func endOfData() {
        mode = .command
        let response = server.handler(for: SMTPCommandContext.endOfDataVerb, argument: "", line: ".", connectionIndex: connectionIndex)
        respond(response, verb: SMTPCommandContext.endOfDataVerb, argument: "") {
            self.standardReply(verb: SMTPCommandContext.endOfDataVerb, argument: "")
        }
    }

    private func authPlainReply(_ response: String) -> String {
        let decoded = base64Decode(response) ?? []
        let parts = decoded.split(separator: 0, omittingEmptySubsequences: false)
        guard parts.count == 3 else { return "501 5.5.2 Cannot decode response" }
        return authReply(user: String(decoding: parts[1], as: UTF8.self), password: String(decoding: parts[2], as: UTF8.self))
    }

    /// XOAUTH2 as Gmail answers it: `user=U^Aauth=Bearer T^A^A`, the token checked
    /// against the password of `authCredentials`; a wrong one gets a 334 with a base64
    /// JSON error, then (after the client's empty line) 535.
    private func authXOAuth2Reply(_ response: String) -> String {
        let decoded = String(decoding: base64Decode(response) ?? [], as: UTF8.self)
        let fields = decoded.split(separator: "\u{1}", omittingEmptySubsequences: true)
        guard decoded.hasSuffix("\u{1}\u{1}"), fields.count == 2, fields[0].hasPrefix("user="), fields[1].hasPrefix("auth=Bearer ") else {
            return "501 5.5.2 Cannot decode response"
        }
        let user = String(fields[0].dropFirst("user=".count))
        let token = String(fields[1].dropFirst("auth=Bearer ".count))
        if let expected = server.configuration.authCredentials, expected.user == user, expected.password == token {
            return "235 2.7.0 Accepted"
        }
        return "334 eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ=="
    }

    private func authReply(user: String, password: String) -> String {
        if let expected = server.configuration.authCredentials, expected.user == user, expected.password == password {
            return "235 2.7.0 Authentication successful"
        }
        return "535 5.7.8 Error: authentication failed"
    }

    private func finishAuth(user: String, password: String) {
        let reply = authReply(user: user, password: password)
        if reply.hasPrefix("235") { authenticated = true }
        send(reply)
    }

    private func resetTransaction() {
        mailFrom = nil
        mailParameters = []
        recipients = []
        dataLines = []
        dataSize = 0
    }

    private func parsePath(_ argument: String) -> (path: String, parameters: [String]) {
        let trimmed = argument.drop { $0 == " " }
        guard trimmed.hasPrefix("<"), let close = trimmed.firstIndex(of: ">") else {
            let words = trimmed.split(separator: " ").map(String.init)
            return (words.first ?? "", Array(words.dropFirst()))
        }
        let path = String(trimmed[trimmed.index(after: trimmed.startIndex)..<close])
        let parameters = trimmed[trimmed.index(after: close)...].split(separator: " ").map(String.init)
        return (path, parameters)
    }

    private func base64Decode(_ text: String) -> [UInt8]? {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var bits: UInt32 = 0
        var count = 0
        var output: [UInt8] = []
        for byte in text.utf8 where byte != UInt8(ascii: "=") {
            guard let value = alphabet.firstIndex(of: byte) else { return nil }
            bits = bits << 6 | UInt32(value)
            count += 6
            if count >= 8 {
                count -= 8
                output.append(UInt8(truncatingIfNeeded: bits >> UInt32(count)))
            }
        }
        return output
    }
}
