public import GRPCCore
public import Metrics
import Foundation

/// One etcd member's client address, `host:port`.
public struct EtcdEndpoint: Hashable, Sendable, CustomStringConvertible {
  /// A host name, an IPv4 address, or an IPv6 address (without brackets).
  public var host: String
  /// The client port (etcd's default is 2379).
  public var port: Int

  /// Creates an endpoint from its parts, validating them.
  public init(host: String, port: Int) throws(EtcdError) {
    guard !host.isEmpty, !host.contains(where: { $0 == "/" || $0 == " " }) else {
      throw EtcdError(code: .invalidArgument, message: "invalid etcd endpoint host '\(host)'")
    }
    guard (1...65535).contains(port) else {
      throw EtcdError(code: .invalidArgument, message: "invalid etcd endpoint port \(port) (must be 1-65535)")
    }
    self.host = host
    self.port = port
  }

  /// Parses `host:port`, `[ipv6]:port`, or a URL such as `http://host:port` (the scheme is ignored:
  /// TLS is chosen by ``EtcdClientConfiguration/tls``).
  public init(parsing text: String) throws(EtcdError) {
    var rest = Substring(text.trimmingWhitespace())
    for scheme in ["http://", "https://", "unix://", "dns:///"] where rest.hasPrefix(scheme) {
      rest = rest.dropFirst(scheme.count)
    }
    if rest.hasSuffix("/") { rest = rest.dropLast() }
    let bad = EtcdError(
      code: .invalidArgument,
      message: "malformed etcd endpoint '\(text)': expected host:port, e.g. 127.0.0.1:2379"
    )
    let host: Substring
    let portText: Substring
    if rest.hasPrefix("[") {
      guard let close = rest.firstIndex(of: "]"), rest[rest.index(after: close)...].hasPrefix(":") else {
        throw bad
      }
      host = rest[rest.index(after: rest.startIndex)..<close]
      portText = rest[rest.index(close, offsetBy: 2)...]
    } else {
      guard let colon = rest.lastIndex(of: ":"), rest.firstIndex(of: ":") == colon else { throw bad }
      host = rest[..<colon]
      portText = rest[rest.index(after: colon)...]
    }
    guard !host.isEmpty, let port = Int(portText) else { throw bad }
    do {
      try self.init(host: String(host), port: port)
    } catch {
      throw EtcdError(code: .invalidArgument, message: "malformed etcd endpoint '\(text)': \(error.message)")
    }
  }

  /// Parses a comma-separated endpoint list such as `127.0.0.1:2379,127.0.0.1:22379`.
  public static func parseList(_ text: String) throws(EtcdError) -> [EtcdEndpoint] {
    let parts = text.split(separator: ",").map { String($0) }.filter { !$0.trimmingWhitespace().isEmpty }
    guard !parts.isEmpty else {
      throw EtcdError(code: .invalidArgument, message: "no etcd endpoint given")
    }
    var endpoints: [EtcdEndpoint] = []
    for part in parts { endpoints.append(try EtcdEndpoint(parsing: part)) }
    return endpoints
  }

  public var description: String { self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)" }

  /// True when ``host`` is a literal IPv4 address.
  var isIPv4Literal: Bool {
    let parts = self.host.split(separator: ".", omittingEmptySubsequences: false)
    return parts.count == 4 && parts.allSatisfy { UInt8($0) != nil }
  }
}

/// TLS settings for the connections to etcd.
public struct EtcdTLSConfiguration: Sendable, Hashable {
  /// PEM file with the certificate authority that signed etcd's server certificate.
  /// `nil` trusts the system's roots.
  public var caFile: String?
  /// PEM client certificate for mutual TLS (with ``clientKeyFile``).
  public var clientCertificateFile: String?
  /// PEM private key of the client certificate.
  public var clientKeyFile: String?
  /// Server name to verify and send as SNI; defaults to the endpoint's host.
  public var serverName: String?

  /// Creates TLS settings.
  public init(
    caFile: String? = nil,
    clientCertificateFile: String? = nil,
    clientKeyFile: String? = nil,
    serverName: String? = nil
  ) {
    self.caFile = caFile
    self.clientCertificateFile = clientCertificateFile
    self.clientKeyFile = clientKeyFile
    self.serverName = serverName
  }
}

/// A user name and password for etcd's authentication.
public struct EtcdCredentials: Sendable, Hashable {
  /// The etcd user.
  public var user: String
  /// The user's password.
  public var password: String

  /// Creates credentials.
  public init(user: String, password: String) {
    self.user = user
    self.password = password
  }
}

/// Jittered exponential backoff: each delay is `initial × multiplier^attempt`, capped at
/// `maximum`, then multiplied by a random factor in `1 ± jitter`.
public struct EtcdBackoff: Sendable, Hashable {
  /// The first delay.
  public var initial: Duration
  /// The largest delay.
  public var maximum: Duration
  /// Growth per attempt (> 1).
  public var multiplier: Double
  /// Relative jitter in 0...1.
  public var jitter: Double

  /// Creates a backoff policy.
  public init(initial: Duration, maximum: Duration, multiplier: Double = 2, jitter: Double = 0.2) {
    self.initial = initial
    self.maximum = maximum
    self.multiplier = multiplier
    self.jitter = jitter
  }

  /// The delay before retry number `attempt` (0-based).
  public func delay(attempt: Int) -> Duration {
    let base = self.initial.seconds * pow(self.multiplier, Double(min(attempt, 62)))
    let capped = min(base, self.maximum.seconds)
    let factor = self.jitter > 0 ? Double.random(in: (1 - self.jitter)...(1 + self.jitter)) : 1
    return .nanoseconds(Int64(capped * factor * 1e9))
  }
}

/// How a connection that carries streams (watch, lease keep-alive) checks that the server is
/// still there while nothing arrives: a member that froze, or a network that silently dropped
/// the connection, would otherwise leave the streams waiting forever.
public struct EtcdKeepalive: Sendable, Hashable {
  /// The silence after which the client sends a PING.
  public var interval: Duration
  /// How long the PING's answer may take before the connection counts as dead: it is closed and
  /// its streams resume (on another member if need be).
  public var timeout: Duration

  /// The shortest interval accepted: etcd's default `--grpc-keepalive-min-time`. A server sends
  /// GOAWAY ("too many pings") to a client that PINGs a quiet connection more often than that.
  public static let minimumInterval = Duration.seconds(5)

  /// Creates keepalive settings (`interval` at least ``minimumInterval``).
  public init(interval: Duration, timeout: Duration) {
    self.interval = interval
    self.timeout = timeout
  }
}

/// Everything an ``EtcdClient`` needs to know before it connects.
public struct EtcdClientConfiguration: Sendable {
  /// The members to talk to, in order of preference. The client fails over to the next one when
  /// the current one is unreachable.
  public var endpoints: [EtcdEndpoint]
  /// How long to keep trying to reach *any* endpoint before a call fails with
  /// ``EtcdError/Code/unavailable``.
  public var dialTimeout: Duration
  /// The default deadline of a unary call (a call can pass its own).
  public var requestTimeout: Duration
  /// Backoff between retries of a failed call.
  public var retryBackoff: EtcdBackoff
  /// Backoff between attempts to re-establish a broken watch or keep-alive stream.
  public var streamBackoff: EtcdBackoff
  /// TLS for every connection, or `nil` for plaintext.
  public var tls: EtcdTLSConfiguration?
  /// Credentials for etcd's auth, or `nil` when auth is off.
  public var credentials: EtcdCredentials?
  /// Sends `hasleader=true` on watches so that a member without a leader cancels them (and the
  /// client moves them to another member) instead of leaving them silent.
  public var requireLeaderOnWatches: Bool
  /// Liveness checks of connections that carry streams (default: PING after 30 s of silence,
  /// dead after 10 s more without an answer, as etcd's Go client does).
  public var keepalive: EtcdKeepalive
  /// On grpc-swift's connections (authentication, and every call and stream when interceptors
  /// are set), coalesce writes to the socket for at most this long (`nil`: flush every write at
  /// once). With many requests in flight this saves system calls (about 10% more puts/s at 64 in
  /// flight on that path); a lone request waits at most this long. The lean path (every call and
  /// stream otherwise) flushes once per event-loop turn.
  public var coalesceFlushes: Duration?
  /// Interceptors that see every RPC the client makes (unary and streaming). The one place to
  /// hook in rate limiting, circuit breaking or tracing. With any interceptor set, every call and
  /// stream leaves the lean path for grpc-swift's general client (so that the interceptors see
  /// them), which costs about twice the CPU per call.
  public var interceptors: [any ClientInterceptor]
  /// Where the client's metrics go (`capstan_etcd_requests_total`, …; see ARCHITECTURE.md):
  /// by default the factory the process had bootstrapped with swift-metrics when this
  /// configuration was made (bootstrap first).
  public var metricsFactory: any MetricsFactory

  /// A configuration with production defaults: 5 s dial timeout, 10 s request timeout,
  /// retries from 25 ms to 1 s, stream resumes from 100 ms to 10 s, keepalive PINGs after 30 s of
  /// silence with a 10 s timeout, flushes coalesced for up to 100 µs, plaintext, no auth.
  public init(
    endpoints: [EtcdEndpoint],
    dialTimeout: Duration = .seconds(5),
    requestTimeout: Duration = .seconds(10),
    retryBackoff: EtcdBackoff = EtcdBackoff(initial: .milliseconds(25), maximum: .seconds(1)),
    streamBackoff: EtcdBackoff = EtcdBackoff(initial: .milliseconds(100), maximum: .seconds(10)),
    tls: EtcdTLSConfiguration? = nil,
    credentials: EtcdCredentials? = nil,
    requireLeaderOnWatches: Bool = true,
    keepalive: EtcdKeepalive = EtcdKeepalive(interval: .seconds(30), timeout: .seconds(10)),
    coalesceFlushes: Duration? = .microseconds(100),
    interceptors: [any ClientInterceptor] = [],
    metricsFactory: any MetricsFactory = MetricsSystem.factory
  ) {
    self.endpoints = endpoints
    self.dialTimeout = dialTimeout
    self.requestTimeout = requestTimeout
    self.retryBackoff = retryBackoff
    self.streamBackoff = streamBackoff
    self.tls = tls
    self.credentials = credentials
    self.requireLeaderOnWatches = requireLeaderOnWatches
    self.keepalive = keepalive
    self.coalesceFlushes = coalesceFlushes
    self.interceptors = interceptors
    self.metricsFactory = metricsFactory
  }

  /// Parses a comma-separated endpoint list and uses defaults for everything else.
  public init(endpoints: String) throws(EtcdError) {
    self.init(endpoints: try EtcdEndpoint.parseList(endpoints))
  }

  func validate() throws(EtcdError) {
    guard !self.endpoints.isEmpty else {
      throw EtcdError(code: .invalidArgument, message: "no etcd endpoint given")
    }
    guard self.dialTimeout > .zero, self.requestTimeout > .zero else {
      throw EtcdError(code: .invalidArgument, message: "dial and request timeouts must be positive")
    }
    guard self.keepalive.interval >= EtcdKeepalive.minimumInterval, self.keepalive.timeout > .zero else {
      throw EtcdError(
        code: .invalidArgument,
        message: "keepalive interval must be at least 5 s (etcd's default --grpc-keepalive-min-time; more frequent PINGs make it close the connection) and the timeout positive")
    }
    if let tls = self.tls, (tls.clientCertificateFile == nil) != (tls.clientKeyFile == nil) {
      throw EtcdError(
        code: .invalidArgument,
        message: "TLS client certificate and key must be given together"
      )
    }
  }
}

extension Duration {
  /// The duration in seconds as a `Double`.
  var seconds: Double {
    let (seconds, attoseconds) = self.components
    return Double(seconds) + Double(attoseconds) / 1e18
  }
}

extension StringProtocol {
  func trimmingWhitespace() -> Substring {
    let scalars = self.drop(while: { $0.isWhitespace })
    var end = scalars.endIndex
    while end > scalars.startIndex, scalars[scalars.index(before: end)].isWhitespace {
      end = scalars.index(before: end)
    }
    return Substring(scalars[scalars.startIndex..<end])
  }
}
