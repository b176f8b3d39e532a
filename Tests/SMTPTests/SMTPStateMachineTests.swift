import NIOCore
import SMTP
import Testing

/// Parses a reply written as on the wire, lines separated by "\n".
func reply(_ text: String) -> SMTPReply {
    var parser = SMTPReplyParser()
    var buffer = ByteBuffer(string: text.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "\r\n") + "\r\n")
    // The fixtures are written by hand; a typo should fail loudly.
    guard let reply = try? parser.parse(&buffer) else {
        Issue.record("bad fixture \(text)")
        return SMTPReply(code: 500, lines: [])
    }
    return reply
}

@Suite("SMTPSessionStateMachine")
struct SMTPSessionStateMachineTests {
    /// One step: a reply from the server (or the TLS handshake completing) and what the client does.
    enum Input: Sendable {
        case reply(String)
        case tlsEstablished
    }

    enum Expected: Sendable, Equatable {
        case send(String)
        case startTLS
        case ready
        case fail(SMTPErrorKind, transient: Bool)
    }

    struct Script: Sendable, CustomTestStringConvertible {
        var name: String
        var configuration: SMTPSessionStateMachine.Configuration
        var steps: [(Input, Expected)]
        var testDescription: String { name }
    }

    static let ehloTLS = "250-mx.example\n250-PIPELINING\n250-STARTTLS\n250 SIZE 1000"
    static let ehloAuth = "250-mx.example\n250-PIPELINING\n250 AUTH PLAIN LOGIN"
    static let credentials = SMTPSessionStateMachine.Credentials(username: "user", password: "pass")

    static let scripts: [Script] = [
        Script(
            name: "plain, no TLS offered, opportunistic",
            configuration: .init(heloName: "me", tlsPolicy: .opportunistic),
            steps: [(.reply("220 mx ESMTP"), .send("EHLO me")), (.reply("250-mx\n250 PIPELINING"), .ready)]
        ),
        Script(
            name: "STARTTLS then EHLO again",
            configuration: .init(heloName: "me", tlsPolicy: .required),
            steps: [
                (.reply("220 mx"), .send("EHLO me")), (.reply(ehloTLS), .send("STARTTLS")), (.reply("220 2.0.0 go"), .startTLS),
                (.tlsEstablished, .send("EHLO me")), (.reply("250-mx\n250 PIPELINING"), .ready),
            ]
        ),
        Script(
            name: "required TLS not offered fails before AUTH/MAIL, transient",
            configuration: .init(heloName: "me", tlsPolicy: .required, credentials: credentials),
            steps: [(.reply("220 mx"), .send("EHLO me")), (.reply(ehloAuth), .fail(.tls, transient: true))]
        ),
        Script(
            name: "required TLS refused with 454",
            configuration: .init(heloName: "me", tlsPolicy: .required),
            steps: [
                (.reply("220 mx"), .send("EHLO me")), (.reply(ehloTLS), .send("STARTTLS")), (.reply("454 4.7.0 no"), .fail(.tls, transient: true)),
            ]
        ),
        Script(
            name: "opportunistic TLS refused continues in plain text",
            configuration: .init(heloName: "me", tlsPolicy: .opportunistic),
            steps: [(.reply("220 mx"), .send("EHLO me")), (.reply(ehloTLS), .send("STARTTLS")), (.reply("454 4.7.0 no"), .ready)]
        ),
        Script(
            name: "tls=none never sends STARTTLS",
            configuration: .init(heloName: "me", tlsPolicy: .none),
            steps: [(.reply("220 mx"), .send("EHLO me")), (.reply(ehloTLS), .ready)]
        ),
        Script(
            name: "no AUTH over plain text unless allowed",
            configuration: .init(heloName: "me", tlsPolicy: .opportunistic, credentials: credentials),
            steps: [(.reply("220 mx"), .send("EHLO me")), (.reply(ehloAuth), .fail(.tls, transient: true))]
        ),
        Script(
            name: "AUTH PLAIN over implicit TLS",
            configuration: .init(heloName: "me", tlsPolicy: .required, isImplicitTLS: true, credentials: credentials),
            steps: [(.reply("220 mx"), .send("EHLO me")), (.reply(ehloAuth), .send("AUTH PLAIN AHVzZXIAcGFzcw==")), (.reply("235 2.7.0 ok"), .ready)]
        ),
        Script(
            name: "AUTH LOGIN when PLAIN is not offered",
            configuration: .init(heloName: "me", tlsPolicy: .none, credentials: credentials, allowsPlaintextAuthentication: true),
            steps: [
                (.reply("220 mx"), .send("EHLO me")), (.reply("250-mx\n250 AUTH LOGIN"), .send("AUTH LOGIN")),
                (.reply("334 VXNlcm5hbWU6"), .send("dXNlcg==")), (.reply("334 UGFzc3dvcmQ6"), .send("cGFzcw==")), (.reply("235 ok"), .ready),
            ]
        ),
        Script(
            name: "535 to AUTH is a permanent authentication failure",
            configuration: .init(heloName: "me", tlsPolicy: .required, isImplicitTLS: true, credentials: credentials),
            steps: [
                (.reply("220 mx"), .send("EHLO me")), (.reply(ehloAuth), .send("AUTH PLAIN AHVzZXIAcGFzcw==")),
                (.reply("535 5.7.8 bad"), .fail(.authentication, transient: false)),
            ]
        ),
        Script(
            name: "454 to AUTH is transient",
            configuration: .init(heloName: "me", tlsPolicy: .required, isImplicitTLS: true, credentials: credentials),
            steps: [
                (.reply("220 mx"), .send("EHLO me")), (.reply(ehloAuth), .send("AUTH PLAIN AHVzZXIAcGFzcw==")),
                (.reply("454 4.7.0 later"), .fail(.authentication, transient: true)),
            ]
        ),
        Script(
            name: "AUTH XOAUTH2 with the bearer token",
            configuration: .init(heloName: "me", tlsPolicy: .required, isImplicitTLS: true, credentials: credentials, authMechanisms: ["XOAUTH2"]),
            steps: [
                (.reply("220 mx"), .send("EHLO me")),
                (.reply("250-mx\n250 AUTH PLAIN LOGIN XOAUTH2"), .send("AUTH XOAUTH2 dXNlcj11c2VyAWF1dGg9QmVhcmVyIHBhc3MBAQ==")),
                (.reply("235 2.7.0 Accepted"), .ready),
            ]
        ),
        Script(
            name: "a refused XOAUTH2 token: 334 error challenge, empty line, 535: transient (tokens expire)",
            configuration: .init(heloName: "me", tlsPolicy: .required, isImplicitTLS: true, credentials: credentials, authMechanisms: ["XOAUTH2"]),
            steps: [
                (.reply("220 mx"), .send("EHLO me")),
                (.reply("250-mx\n250 AUTH XOAUTH2"), .send("AUTH XOAUTH2 dXNlcj11c2VyAWF1dGg9QmVhcmVyIHBhc3MBAQ==")),
                (.reply("334 eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ=="), .send("")),
                (.reply("535 5.7.8 Username and Password not accepted"), .fail(.authentication, transient: true)),
            ]
        ),
        Script(
            name: "XOAUTH2 wanted but only PLAIN and LOGIN offered",
            configuration: .init(heloName: "me", tlsPolicy: .required, isImplicitTLS: true, credentials: credentials, authMechanisms: ["XOAUTH2"]),
            steps: [(.reply("220 mx"), .send("EHLO me")), (.reply(ehloAuth), .fail(.authentication, transient: true))]
        ),
        Script(
            name: "no AUTH offered with credentials",
            configuration: .init(heloName: "me", tlsPolicy: .required, isImplicitTLS: true, credentials: credentials),
            steps: [(.reply("220 mx"), .send("EHLO me")), (.reply("250 mx"), .fail(.authentication, transient: true))]
        ),
        Script(
            name: "HELO fallback when EHLO is refused",
            configuration: .init(heloName: "me", tlsPolicy: .opportunistic),
            steps: [(.reply("220 mx"), .send("EHLO me")), (.reply("502 5.5.2 what"), .send("HELO me")), (.reply("250 mx"), .ready)]
        ),
        Script(
            name: "5xx to EHLO and HELO is permanent",
            configuration: .init(heloName: "me", tlsPolicy: .opportunistic),
            steps: [
                (.reply("220 mx"), .send("EHLO me")), (.reply("500 no"), .send("HELO me")), (.reply("550 no"), .fail(.rejected, transient: false)),
            ]
        ),
        Script(
            name: "HELO with tls=required cannot STARTTLS",
            configuration: .init(heloName: "me", tlsPolicy: .required),
            steps: [(.reply("220 mx"), .send("EHLO me")), (.reply("500 no"), .send("HELO me")), (.reply("250 mx"), .fail(.tls, transient: true))]
        ),
        Script(
            name: "4xx to EHLO is transient, no HELO",
            configuration: .init(heloName: "me", tlsPolicy: .opportunistic),
            steps: [(.reply("220 mx"), .send("EHLO me")), (.reply("451 later"), .fail(.rejected, transient: true))]
        ),
        Script(
            name: "421 greeting",
            configuration: .init(heloName: "me", tlsPolicy: .opportunistic),
            steps: [(.reply("421 4.3.2 busy"), .fail(.serviceUnavailable, transient: true))]
        ),
        Script(
            name: "554 greeting is permanent",
            configuration: .init(heloName: "me", tlsPolicy: .opportunistic),
            steps: [(.reply("554 5.7.1 go away"), .fail(.rejected, transient: false))]
        ),
        Script(
            name: "421 to EHLO after STARTTLS",
            configuration: .init(heloName: "me", tlsPolicy: .required),
            steps: [
                (.reply("220 mx"), .send("EHLO me")), (.reply(ehloTLS), .send("STARTTLS")), (.reply("220 go"), .startTLS),
                (.tlsEstablished, .send("EHLO me")), (.reply("421 bye"), .fail(.serviceUnavailable, transient: true)),
            ]
        ),
        Script(
            name: "a reply during the handshake is a protocol violation",
            configuration: .init(heloName: "me", tlsPolicy: .required),
            steps: [
                (.reply("220 mx"), .send("EHLO me")), (.reply(ehloTLS), .send("STARTTLS")), (.reply("220 go"), .startTLS),
                (.reply("250 injected"), .fail(.protocolViolation, transient: true)),
            ]
        ),
    ]

    @Test(arguments: scripts)
    func runs(_ script: Script) {
        var machine = SMTPSessionStateMachine(configuration: script.configuration)
        for (index, (input, expected)) in script.steps.enumerated() {
            let action =
                switch input {
                case .reply(let text): machine.receive(reply(text))
                case .tlsEstablished: machine.tlsEstablished()
                }
            let actual: Expected =
                switch action {
                case .send(let command): .send(command.line)
                case .startTLS: .startTLS
                case .ready: .ready
                case .fail(let error): .fail(error.kind, transient: error.isTransient)
                }
            #expect(actual == expected, "step \(index)")
        }
    }

    @Test("a refused XOAUTH2 token names the server's decoded error, never the token")
    func xoauth2RefusalMessage() {
        let configuration = SMTPSessionStateMachine.Configuration(
            heloName: "me",
            tlsPolicy: .required,
            isImplicitTLS: true,
            credentials: .init(username: "user", password: "ya29.secret-token"),
            authMechanisms: ["XOAUTH2"]
        )
        var machine = SMTPSessionStateMachine(configuration: configuration)
        _ = machine.receive(reply("220 mx"))
        guard case .send(let auth) = machine.receive(reply("250-mx\n250 AUTH XOAUTH2")) else {
            Issue.record("no AUTH sent")
            return
        }
        #expect(auth.transcriptLine == "AUTH XOAUTH2 <redacted>")
        _ = machine.receive(reply("334 eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ=="))
        guard case .fail(let error) = machine.receive(reply("535 5.7.8 Username and Password not accepted")) else {
            Issue.record("no failure")
            return
        }
        #expect(error.description.contains(#"XOAUTH2 token refused with 535 ({"status":"401","schemes":"Bearer""#))
        #expect(!error.description.contains("ya29"))
    }
}

@Suite("SMTPTransactionStateMachine")
struct SMTPTransactionStateMachineTests {
    static let pipelining = SMTPCapabilities(ehloReply: reply("250-mx\n250-PIPELINING\n250-8BITMIME\n250 SIZE 1000"))
    static let plain = SMTPCapabilities(ehloReply: reply("250 mx"))

    /// Drives a machine with replies until it finishes; returns the commands sent and the outcome.
    func run(
        _ envelope: SMTPEnvelope,
        _ capabilities: SMTPCapabilities,
        resetFirst: Bool = false,
        replies: [String]
    ) -> (commands: [String], result: Result<SMTPTransactionStateMachine.Outcome, SMTPSessionError>) {
        var machine = SMTPTransactionStateMachine(envelope: envelope, capabilities: capabilities, resetFirst: resetFirst)
        var commands: [String] = []
        var queue = replies[...]
        var action = machine.start()
        while true {
            switch action {
            case .send(let sent):
                commands += sent.map(\.line)
                guard let next = queue.popFirst() else {
                    return (commands, .failure(SMTPSessionError(kind: .closed, isTransient: true, message: "out of replies")))
                }
                action = machine.receive(reply(next))
            case .awaitReply:
                guard let next = queue.popFirst() else {
                    return (commands, .failure(SMTPSessionError(kind: .closed, isTransient: true, message: "out of replies")))
                }
                action = machine.receive(reply(next))
            case .sendData:
                commands.append("<data>")
                action = machine.dataSent()
            case .sendEmptyData:
                commands.append(".")
                action = machine.dataSent()
            case .finished(let outcome):
                return (commands, .success(outcome))
            case .fail(let error):
                return (commands, .failure(error))
            }
        }
    }

    let envelope = SMTPEnvelope(mailFrom: "a@x", recipients: ["b@x", "c@x"], messageSize: 100)

    @Test("pipelined: one write of RSET, MAIL, RCPTs and DATA; replies matched in order")
    func pipelined() throws {
        let (commands, result) = run(
            envelope,
            Self.pipelining,
            resetFirst: true,
            replies: ["250 ok", "250 ok", "250 ok", "550 5.1.1 no", "354 go", "250 2.0.0 queued"]
        )
        #expect(commands == ["RSET", "MAIL FROM:<a@x> SIZE=100", "RCPT TO:<b@x>", "RCPT TO:<c@x>", "DATA", "<data>"])
        let outcome = try result.get()
        #expect(outcome.replies.map(\.code) == [250, 550])
        #expect(outcome.continuation.isEmpty)
    }

    @Test("not pipelined: one command at a time, DATA only after an accepted RCPT")
    func lockstep() throws {
        let (commands, result) = run(envelope, Self.plain, replies: ["250 ok", "550 no", "250 ok", "354 go", "451 4.3.0 later"])
        #expect(commands == ["MAIL FROM:<a@x>", "RCPT TO:<b@x>", "RCPT TO:<c@x>", "DATA", "<data>"])
        #expect(try result.get().replies.map(\.code) == [550, 451])
    }

    @Test("MAIL refused: every recipient gets MAIL's reply")
    func mailRefused() throws {
        let (commands, result) = run(envelope, Self.plain, replies: ["553 5.1.8 bad sender"])
        #expect(commands == ["MAIL FROM:<a@x>"])
        #expect(try result.get().replies.map(\.code) == [553, 553])
        let (_, pipelinedResult) = run(envelope, Self.pipelining, replies: ["553 5.1.8 bad sender", "503 no", "503 no", "503 no"])
        #expect(try pipelinedResult.get().replies.map(\.code) == [553, 553])
    }

    @Test("pipelined, no recipient accepted, DATA answered 354 anyway: a lone dot ends it")
    func emptyData() throws {
        let (commands, result) = run(envelope, Self.pipelining, replies: ["250 ok", "550 no", "550 no", "354 go", "554 no data"])
        #expect(commands.last == ".")
        #expect(try result.get().replies.map(\.code) == [550, 550])
    }

    @Test("452 continues in a new transaction only when someone was accepted")
    func tooManyRecipients() throws {
        let envelope = SMTPEnvelope(mailFrom: "a@x", recipients: ["b@x", "c@x", "d@x"], messageSize: 1)
        let (_, result) = run(
            envelope,
            Self.pipelining,
            replies: ["250 ok", "250 ok", "452 4.5.3 too many", "452 4.5.3 too many", "354 go", "250 ok"]
        )
        let outcome = try result.get()
        #expect(outcome.replies.map(\.code) == [250, 452, 452])
        #expect(outcome.continuation == [1, 2])
        let (_, none) = run(envelope, Self.plain, replies: ["250 ok", "452 a", "452 b", "452 c"])
        #expect(try none.get().continuation.isEmpty)
    }

    @Test(
        "421 at any point fails the transaction, transient",
        arguments: [
            ["421 bye"], ["250 ok", "421 bye"], ["250 ok", "250 ok", "421 bye"], ["250 ok", "250 ok", "250 ok", "421 bye"],
            ["250 ok", "250 ok", "250 ok", "354 go", "421 bye"],
        ]
    )
    func serviceUnavailable(_ replies: [String]) {
        let (_, result) = run(envelope, Self.plain, replies: replies)
        #expect(throws: SMTPSessionError.self) { try result.get() }
        if case .failure(let error) = result {
            #expect(error.kind == .serviceUnavailable)
            #expect(error.isTransient)
            #expect(error.reply?.code == 421)
        }
    }

    @Test("SIZE over the limit, SMTPUTF8 not offered and unsafe addresses fail before sending, permanent")
    func refusedBeforeSending() {
        let cases: [(SMTPEnvelope, SMTPErrorKind)] = [
            (SMTPEnvelope(mailFrom: "a@x", recipients: ["b@x"], messageSize: 1001), .messageTooLarge),
            (SMTPEnvelope(mailFrom: "a@x", recipients: ["ü@x"], messageSize: 1, requiresSMTPUTF8: true), .smtputf8Unsupported),
            (SMTPEnvelope(mailFrom: "a@x", recipients: ["b@x>\r\nDATA"], messageSize: 1), .rejected),
            (SMTPEnvelope(mailFrom: "a@x", recipients: [], messageSize: 1), .rejected),
        ]
        for (envelope, kind) in cases {
            let (commands, result) = run(envelope, Self.pipelining, replies: [])
            #expect(commands.isEmpty)
            if case .failure(let error) = result {
                #expect(error.kind == kind)
                #expect(!error.isTransient)
            } else {
                Issue.record("expected \(kind)")
            }
        }
    }

    @Test("BODY=8BITMIME and SMTPUTF8 are declared when needed and offered")
    func parameters() {
        let capabilities = SMTPCapabilities(ehloReply: reply("250-mx\n250-8BITMIME\n250 SMTPUTF8"))
        let envelope = SMTPEnvelope(mailFrom: "ä@x", recipients: ["b@x"], messageSize: 5, requiresSMTPUTF8: true, has8BitData: true)
        let (commands, _) = run(envelope, capabilities, replies: [])
        #expect(commands == ["MAIL FROM:<ä@x> BODY=8BITMIME SMTPUTF8"])
        let (withoutOffer, _) = run(SMTPEnvelope(mailFrom: "a@x", recipients: ["b@x"], messageSize: 5, has8BitData: true), Self.plain, replies: [])
        #expect(withoutOffer == ["MAIL FROM:<a@x>"])
    }

    @Test(
        "codes a command cannot answer with are protocol violations, transient",
        arguments: [
            ["354 what"], ["250 ok", "354 what"], ["250 ok", "250 ok", "250 ok", "250 what"], ["250 ok", "250 ok", "250 ok", "354 go", "354 again"],
        ]
    )
    func violations(_ replies: [String]) {
        let (_, result) = run(envelope, Self.plain, replies: replies)
        #expect(throws: SMTPSessionError.self) { try result.get() }
        if case .failure(let error) = result {
            #expect(error.kind == .protocolViolation)
            #expect(error.isTransient)
        }
    }
}
