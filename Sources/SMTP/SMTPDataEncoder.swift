import NIOCore

/// Encodes a message body for the DATA phase (RFC 5321 section 4.5.2), streaming.
///
/// Wire safety lives here: every line end on the wire is CRLF (a bare LF or a bare CR
/// in the input becomes CRLF), a line that starts with "." gets a second "."
/// (dot-stuffing), and `finish` ends the data with `CRLF.CRLF`, adding the CRLF
/// before the dot only when the body does not already end with one. Feed the body in
/// any chunks; the output does not depend on where the chunks split.
public struct SMTPDataEncoder: Sendable {
    private var atLineStart = true
    private var pendingCR = false

    /// Makes an encoder at the start of a message.
    public init() {}

    /// Appends the encoding of `bytes` to `buffer`: copies runs of ordinary bytes and
    /// CRLFs in bulk, and handles bare line ends and leading dots one at a time.
    public mutating func encode(_ bytes: ArraySlice<UInt8>, into buffer: inout ByteBuffer) {
        bytes.withUnsafeBytes { input in
            var runStart = 0
            var index = 0
            while index < input.count {
                let byte = input[index]
                if pendingCR {
                    buffer.writeBytes(UnsafeRawBufferPointer(rebasing: input[runStart..<index]))
                    pendingCR = false
                    buffer.writeStaticString("\r\n")
                    atLineStart = true
                    if byte == UInt8(ascii: "\n") {
                        index += 1
                        runStart = index
                    } else {
                        runStart = index
                    }
                    continue
                }
                switch byte {
                case UInt8(ascii: "\r") where index + 1 < input.count && input[index + 1] == UInt8(ascii: "\n"):
                    // A CRLF is already right: it stays in the run, so a well-formed body
                    // is copied in one piece.
                    atLineStart = true
                    index += 2
                case UInt8(ascii: "\r"):
                    // A bare CR, or a CR at the end of this chunk whose LF may come next.
                    buffer.writeBytes(UnsafeRawBufferPointer(rebasing: input[runStart..<index]))
                    pendingCR = true
                    index += 1
                    runStart = index
                case UInt8(ascii: "\n"):
                    buffer.writeBytes(UnsafeRawBufferPointer(rebasing: input[runStart..<index]))
                    buffer.writeStaticString("\r\n")
                    atLineStart = true
                    index += 1
                    runStart = index
                case UInt8(ascii: ".") where atLineStart:
                    // RFC 5321 section 4.5.2: double a leading dot; the dot itself stays in the run.
                    buffer.writeBytes(UnsafeRawBufferPointer(rebasing: input[runStart..<index]))
                    buffer.writeInteger(UInt8(ascii: "."))
                    runStart = index
                    atLineStart = false
                    index += 1
                default:
                    atLineStart = false
                    index += 1
                }
            }
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: input[runStart..<index]))
        }
    }

    /// Appends the encoding of `bytes` to `buffer`.
    public mutating func encode(_ bytes: [UInt8], into buffer: inout ByteBuffer) {
        encode(bytes[...], into: &buffer)
    }

    /// Appends the encoding of `bytes` to `buffer`, one byte at a time (any sequence).
    public mutating func encode(_ bytes: some Sequence<UInt8>, into buffer: inout ByteBuffer) {
        for byte in bytes {
            if pendingCR {
                pendingCR = false
                buffer.writeStaticString("\r\n")
                atLineStart = true
                if byte == UInt8(ascii: "\n") { continue }
            }
            switch byte {
            case UInt8(ascii: "\r"):
                pendingCR = true
            case UInt8(ascii: "\n"):
                buffer.writeStaticString("\r\n")
                atLineStart = true
            default:
                if atLineStart, byte == UInt8(ascii: ".") { buffer.writeInteger(UInt8(ascii: ".")) }
                buffer.writeInteger(byte)
                atLineStart = false
            }
        }
    }

    /// Appends the end of the data: CRLF if the body did not end with a line end, then `.` CRLF.
    public mutating func finish(into buffer: inout ByteBuffer) {
        if pendingCR {
            pendingCR = false
            buffer.writeStaticString("\r\n")
            atLineStart = true
        }
        if !atLineStart { buffer.writeStaticString("\r\n") }
        buffer.writeStaticString(".\r\n")
        atLineStart = true
    }

    /// Encodes a whole body and its terminator into a new buffer.
    public static func encode(_ body: [UInt8], allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var encoder = SMTPDataEncoder()
        var buffer = allocator.buffer(capacity: body.count + body.count / 32 + 8)
        encoder.encode(body, into: &buffer)
        encoder.finish(into: &buffer)
        return buffer
    }
}
