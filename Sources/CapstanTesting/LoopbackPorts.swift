import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Picks free TCP ports on 127.0.0.1 by binding sockets to port 0.
enum LoopbackPorts {
  /// Returns `count` distinct ports that were free a moment ago. All sockets are held open
  /// until every port is chosen, so the ports differ from each other; another process may
  /// still take one before etcd binds it (callers retry on "address in use").
  static func allocate(_ count: Int) throws -> [Int] {
    var sockets: [Int32] = []
    defer { for socket in sockets { _ = close(socket) } }
    var ports: [Int] = []
    for _ in 0..<count {
      let (socket, port) = try bindEphemeral()
      sockets.append(socket)
      ports.append(port)
    }
    return ports
  }

  /// Whether something accepts TCP connections on 127.0.0.1:`port` right now.
  static func isAccepting(_ port: Int) -> Bool {
    let fd = socket(AF_INET, streamType, 0)
    guard fd >= 0 else { return false }
    defer { _ = close(fd) }
    var address = loopback(port: port)
    let connected = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
      }
    }
    return connected == 0
  }

  #if canImport(Darwin)
  private static let streamType = SOCK_STREAM
  #else
  private static let streamType = Int32(SOCK_STREAM.rawValue)
  #endif

  private static func loopback(port: Int) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return address
  }

  private static func bindEphemeral() throws -> (Int32, Int) {
    let fd = socket(AF_INET, streamType, 0)
    guard fd >= 0 else { throw failure("socket") }
    var address = loopback(port: 0)
    let length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
    }
    guard bound == 0 else {
      let error = failure("bind")
      _ = close(fd)
      throw error
    }
    var actual = sockaddr_in()
    var actualLength = length
    let named = withUnsafeMutablePointer(to: &actual) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &actualLength) }
    }
    guard named == 0 else {
      let error = failure("getsockname")
      _ = close(fd)
      throw error
    }
    return (fd, Int(UInt16(bigEndian: actual.sin_port)))
  }

  private static func failure(_ call: String) -> EtcdTestServerError {
    EtcdTestServerError(
      .launchFailed, "could not pick a free port on 127.0.0.1: \(call) failed with errno \(errno)")
  }
}
