/// Where the operational HTTP server listens and how long it keeps a silent connection.
public struct CapstanHTTPServerConfiguration: Sendable, Equatable {
  /// The address to bind: an IPv4 or IPv6 literal or a host name. Default `127.0.0.1`, so the
  /// endpoints are not exposed beyond the machine unless asked for.
  public var host: String
  /// The TCP port; `0` lets the system pick a free one (read it back with
  /// ``CapstanHTTPServer/waitUntilListening()``).
  public var port: Int
  /// How long a connection may go without delivering a complete request part (a request head,
  /// a body chunk, its end) before it is closed. This one timer is both the read timeout (a
  /// client trickling its headers) and the keep-alive idle timeout.
  public var idleTimeout: Duration

  /// The default port of Capstan's `/metrics`, `/healthz` and `/readyz`.
  public static let defaultPort = 9090

  /// - Parameters:
  ///   - host: the address to bind (default `127.0.0.1`).
  ///   - port: the TCP port (default 9090; 0 = any free port).
  ///   - idleTimeout: read and keep-alive idle timeout (default 30 s).
  public init(host: String = "127.0.0.1", port: Int = Self.defaultPort, idleTimeout: Duration = .seconds(30)) {
    self.host = host
    self.port = port
    self.idleTimeout = idleTimeout
  }
}
