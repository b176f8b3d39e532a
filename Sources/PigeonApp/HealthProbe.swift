import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Asks `GET /healthz` on `listen` (host:port) and returns whether it answered 200.
///
/// A plain blocking socket with a 3 s timeout, so the container's HEALTHCHECK needs
/// nothing but the `pigeon` binary. `0.0.0.0` and `::` are probed on loopback.
public func probeHealth(listen: String) async -> Bool {
    guard let colon = listen.lastIndex(of: ":"), let port = UInt16(listen[listen.index(after: colon)...]) else { return false }
    var host = String(listen[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
    if host == "0.0.0.0" || host.isEmpty { host = "127.0.0.1" }
    if host == "::" { host = "::1" }

    var hints = addrinfo()
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    var result: UnsafeMutablePointer<addrinfo>?
    guard getaddrinfo(host, String(port), &hints, &result) == 0, let info = result else { return false }
    defer { freeaddrinfo(result) }
    let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var timeout = timeval(tv_sec: 3, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    guard connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else { return false }
    let request = Array("GET /healthz HTTP/1.1\r\nHost: \(host)\r\nConnection: close\r\n\r\n".utf8)
    guard send(fd, request, request.count, 0) == request.count else { return false }
    var buffer = [UInt8](repeating: 0, count: 64)
    let count = recv(fd, &buffer, buffer.count, 0)
    guard count >= 12 else { return false }
    let head = String(decoding: buffer[0..<count], as: UTF8.self)
    return head.hasPrefix("HTTP/1.1 200") || head.hasPrefix("HTTP/1.0 200")
}
