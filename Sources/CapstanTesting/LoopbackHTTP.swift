import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A minimal blocking HTTP/1.1 client for tests of servers on 127.0.0.1: one `GET` per
/// connection (`Connection: close`), read to the end. No Foundation networking needed.
public enum LoopbackHTTP {
  /// A response as received.
  public struct Response: Sendable {
    /// The status code (200, 503, …).
    public var status: Int
    /// Header fields, names lower-cased (a repeated field keeps its last value).
    public var headers: [String: String]
    /// The body, de-chunked when it was chunked.
    public var body: String
  }

  /// What went wrong talking to the server.
  public struct Failure: Error, CustomStringConvertible, Sendable {
    /// One line for the test log.
    public var description: String
  }

  /// A free TCP port on 127.0.0.1 a moment ago (another process may take it before you bind).
  public static func freePort() throws -> Int {
    try LoopbackPorts.allocate(1)[0]
  }

  /// ``get(port:path:timeout:)`` on a thread of its own, for async tests: a blocking socket call
  /// on one of Swift concurrency's few cooperative threads could starve an in-process server
  /// whose handlers need those threads.
  public static func get(port: Int, path: String, timeout: Duration = .seconds(5)) async throws -> Response {
    try await onOwnThread { try Self.get(port: port, path: path, timeout: timeout) as Response }
  }

  /// Sends `GET path` to 127.0.0.1:`port` and reads the whole response, blocking the calling
  /// thread (use the async overload from async code).
  ///
  /// - Parameter timeout: the bound of each connect, send and receive.
  /// - Throws: ``Failure`` when the connection is refused or times out, or the response is
  ///   not HTTP.
  public static func get(port: Int, path: String, timeout: Duration = .seconds(5)) throws -> Response {
    let fd = socket(AF_INET, streamType, 0)
    guard fd >= 0 else { throw Failure(description: "socket: errno \(errno)") }
    defer { _ = close(fd) }
    var time = timeval()
    time.tv_sec = .init(timeout.components.seconds)
    time.tv_usec = .init(timeout.components.attoseconds / 1_000_000_000_000)
    _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
    _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { throw Failure(description: "connect to 127.0.0.1:\(port): errno \(errno)") }

    let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n\r\n".utf8)
    var sent = 0
    while sent < request.count {
      let count = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
      guard count > 0 else { throw Failure(description: "send to 127.0.0.1:\(port): errno \(errno)") }
      sent += count
    }
    var received: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 16 * 1024)
    while true {
      let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
      if count == 0 { break }
      guard count > 0 else { throw Failure(description: "receive from 127.0.0.1:\(port): errno \(errno)") }
      received.append(contentsOf: buffer[..<count])
    }
    return try parse(received)
  }

  static func parse(_ bytes: [UInt8]) throws -> Response {
    let separator: [UInt8] = Array("\r\n\r\n".utf8)
    guard let headEnd = bytes.firstRange(of: separator) else {
      throw Failure(description: "no HTTP head in \(bytes.count) bytes")
    }
    let head = String(decoding: bytes[..<headEnd.lowerBound], as: UTF8.self)
    var lines = head.components(separatedBy: "\r\n")
    let statusLine = lines.removeFirst().split(separator: " ")
    guard statusLine.count >= 2, statusLine[0].hasPrefix("HTTP/1."), let status = Int(statusLine[1]) else {
      throw Failure(description: "not an HTTP status line: \(head.prefix(80))")
    }
    var headers: [String: String] = [:]
    for line in lines {
      guard let colon = line.firstIndex(of: ":") else { continue }
      headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    var body = Array(bytes[headEnd.upperBound...])
    if headers["transfer-encoding"]?.lowercased() == "chunked" { body = try dechunk(body) }
    return Response(status: status, headers: headers, body: String(decoding: body, as: UTF8.self))
  }

  private static func dechunk(_ bytes: [UInt8]) throws -> [UInt8] {
    var result: [UInt8] = []
    var index = 0
    let lineEnd: [UInt8] = Array("\r\n".utf8)
    while true {
      guard let end = bytes[index...].firstRange(of: lineEnd),
        let size = Int(String(decoding: bytes[index..<end.lowerBound], as: UTF8.self).split(separator: ";")[0], radix: 16)
      else { throw Failure(description: "bad chunk header") }
      if size == 0 { return result }
      let start = end.upperBound
      guard start + size <= bytes.count else { throw Failure(description: "truncated chunk") }
      result.append(contentsOf: bytes[start..<start + size])
      index = start + size + 2
    }
  }

  #if canImport(Darwin)
  private static let streamType = SOCK_STREAM
  #else
  private static let streamType = Int32(SOCK_STREAM.rawValue)
  #endif
}
