#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A TCP address written `host:port`: a host name, an IPv4 literal, or an IPv6 literal in
/// brackets (`[::1]:2379`).
public struct NetworkAddress: Sendable, Hashable, CustomStringConvertible {
  /// The host name or address literal, without brackets.
  public var host: String
  /// The TCP port.
  public var port: Int

  /// An address from parts already checked by the caller.
  public init(host: String, port: Int) {
    self.host = host
    self.port = port
  }

  /// Parses `host:port` or `[ipv6]:port`; `nil` when it is neither, the host is not a valid
  /// host name or address, or the port is outside `ports`.
  public init?(parsing text: String, ports: ClosedRange<Int> = 1...65535) {
    let host: Substring
    let portText: Substring
    if text.hasPrefix("[") {
      guard let close = text.firstIndex(of: "]") else { return nil }
      host = text[text.index(after: text.startIndex)..<close]
      let rest = text[text.index(after: close)...]
      guard rest.hasPrefix(":") else { return nil }
      portText = rest.dropFirst()
      guard Self.isIPv6Literal(String(host)) else { return nil }
    } else {
      guard let colon = text.lastIndex(of: ":") else { return nil }
      host = text[..<colon]
      portText = text[text.index(after: colon)...]
      guard !host.contains(":"), Self.isHostName(host) else { return nil }
    }
    guard !portText.isEmpty, portText.count <= 5, portText.allSatisfy({ $0.isASCII && $0.isNumber }),
      let port = Int(portText), ports.contains(port)
    else { return nil }
    self.host = String(host)
    self.port = port
  }

  /// `host:port`, with an IPv6 host in brackets.
  public var description: String { self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)" }

  /// A DNS host name (RFC 1123: labels of letters, digits and '-', not starting or ending with
  /// '-', at most 63 bytes each and 253 in all), which includes IPv4 literals.
  static func isHostName(_ host: Substring) -> Bool {
    guard !host.isEmpty, host.utf8.count <= 253 else { return false }
    let labels = host.split(separator: ".", omittingEmptySubsequences: false)
    return labels.allSatisfy { label in
      guard let first = label.first, let last = label.last, label.utf8.count <= 63 else { return false }
      return first != "-" && last != "-" && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
    }
  }

  /// An IPv6 literal as `inet_pton` reads it, with an optional `%zone`.
  static func isIPv6Literal(_ host: String) -> Bool {
    let address = host.split(separator: "%", maxSplits: 1, omittingEmptySubsequences: false)
    guard let literal = address.first, !literal.isEmpty, address.count == 1 || !address[1].isEmpty else { return false }
    var buffer = in6_addr()
    return inet_pton(AF_INET6, String(literal), &buffer) == 1
  }
}
