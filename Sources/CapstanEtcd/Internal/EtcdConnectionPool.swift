import CapstanEtcdAPI
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Logging
import NIOCore
import NIOSSL
import SwiftProtobuf
import Synchronization

/// How a call may be retried.
enum RetryPolicy: Sendable {
  /// Reads and other calls that can run twice without harm: retried on any transient failure.
  case idempotent
  /// Writes: retried only when the request certainly never reached a server.
  case nonIdempotent
}

/// One gRPC client per endpoint, the "current" endpoint, and the retry/failover loop that every
/// unary call goes through.
final class EtcdConnectionPool: Sendable {
  typealias Client = GRPCClient<DeliveryTrackingTransport<HTTP2ClientTransport.Posix>>

  struct Member: Sendable {
    let endpoint: EtcdEndpoint
    /// grpc-swift's client: authentication, the lease keep-alive stream, and every call and
    /// stream when user interceptors are configured.
    let client: Client
    /// The lean path for unary calls and the watch stream, unless user interceptors must see
    /// every call.
    let unary: EtcdUnaryChannel?
  }

  let members: [Member]
  let configuration: EtcdClientConfiguration
  let auth: EtcdAuthenticator
  let metrics: EtcdClientMetrics
  private let logger: Logger
  /// Set once any call has succeeded: from then on a slow call is bounded by its own deadline only.
  private let hasConnected = Atomic<Bool>(false)
  /// One bit per member that failed and has not answered since (for logging transitions only).
  private let failedMembers = Atomic<UInt64>(0)
  /// Set by ``shutdown()``: calls then fail at once with `clientClosed`.
  private let isShutdown = Atomic<Bool>(false)
  /// Index of the member calls go to first.
  private let current = Mutex(0)

  init(configuration: EtcdClientConfiguration, logger: Logger) throws(EtcdError) {
    try configuration.validate()
    self.configuration = configuration
    self.logger = logger
    let auth = EtcdAuthenticator(credentials: configuration.credentials)
    self.auth = auth
    self.metrics = EtcdClientMetrics(factory: configuration.metricsFactory)
    let security = try Self.transportSecurity(configuration.tls)
    let sslContext = try Self.sslContext(configuration.tls)
    var members: [Member] = []
    for endpoint in configuration.endpoints {
      let transport: HTTP2ClientTransport.Posix
      do {
        transport = try HTTP2ClientTransport.Posix(
          target: endpoint.isIPv4Literal
            ? .ipv4(address: endpoint.host, port: endpoint.port)
            : .dns(host: endpoint.host, port: endpoint.port),
          transportSecurity: security,
          config: Self.transportConfig(
            tls: configuration.tls != nil, keepalive: configuration.keepalive, coalesceFlushes: configuration.coalesceFlushes)
        )
      } catch {
        throw EtcdError(
          code: .invalidArgument,
          message: "cannot set up a connection to \(endpoint): \(error)",
          cause: error
        )
      }
      // Every interceptor costs each call a little: the auth one is installed only with credentials.
      let authInterceptors: [any ClientInterceptor] =
        configuration.credentials == nil ? [] : [EtcdAuthInterceptor(authenticator: auth)]
      let client = Client(transport: DeliveryTrackingTransport(transport), interceptors: authInterceptors + configuration.interceptors)
      let unary =
        configuration.interceptors.isEmpty
        ? EtcdUnaryChannel(
          endpoint: endpoint, sslContext: sslContext, serverHostname: configuration.tls?.serverName,
          connectTimeout: configuration.dialTimeout, keepalive: configuration.keepalive)
        : nil
      members.append(Member(endpoint: endpoint, client: client, unary: unary))
    }
    self.members = members
  }

  private static func sslContext(_ tls: EtcdTLSConfiguration?) throws(EtcdError) -> NIOSSLContext? {
    guard let tls else { return nil }
    do {
      var configuration = TLSConfiguration.makeClientConfiguration()
      if let caFile = tls.caFile { configuration.trustRoots = .file(caFile) }
      if let cert = tls.clientCertificateFile, let key = tls.clientKeyFile {
        configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) }
        configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
      }
      configuration.applicationProtocols = ["h2"]
      return try NIOSSLContext(configuration: configuration)
    } catch {
      throw EtcdError(code: .invalidArgument, message: "invalid TLS configuration: \(error)", cause: error)
    }
  }

  private static func transportSecurity(
    _ tls: EtcdTLSConfiguration?
  ) throws(EtcdError) -> HTTP2ClientTransport.Posix.TransportSecurity {
    guard let tls else { return .plaintext }
    var config = HTTP2ClientTransport.Posix.TransportSecurity.TLS.defaults
    if let caFile = tls.caFile {
      config.trustRoots = .certificates([.file(path: caFile, format: .pem)])
    }
    if let cert = tls.clientCertificateFile, let key = tls.clientKeyFile {
      config.certificateChain = [.file(path: cert, format: .pem)]
      config.privateKey = .file(path: key, format: .pem)
    }
    return .tls(config)
  }

  private static func transportConfig(
    tls: Bool, keepalive: EtcdKeepalive, coalesceFlushes: Duration?
  ) -> HTTP2ClientTransport.Posix.Config {
    .defaults { config in
      config.backoff = .init(initial: .milliseconds(50), max: .seconds(2), multiplier: 1.6, jitter: 0.2)
      config.connection.keepalive = .init(time: keepalive.interval, timeout: keepalive.timeout, allowWithoutCalls: true)
      config.connection.maxIdleTime = nil
      config.http2.maxFrameSize = 1 << 20
      if let delay = coalesceFlushes { config.connection.flushCoalescing = .init(maxFlushDelay: delay, maxBytes: 64 * 1024) }
      config.channelDebuggingCallbacks.onCreateTCPConnection = { channel in
        channel.eventLoop.makeCompletedFuture {
          let operations = channel.pipeline.syncOperations
          if tls, let ssl = try? operations.handler(type: NIOSSLClientHandler.self) {
            try operations.addHandler(HTTP2PingResponder(), position: .after(ssl))
          } else {
            try operations.addHandler(HTTP2PingResponder(), position: .first)
          }
        }
      }
    }
  }

  /// Runs every member's connections until ``shutdown()``.
  func run() async throws {
    try await withThrowingDiscardingTaskGroup { group in
      for member in self.members {
        group.addTask {
          do {
            try await member.client.runConnections()
          } catch let error as RuntimeError where error.code == .clientIsStopped && self.isShutdown.load(ordering: .relaxed) {
            // Shut down before it ever ran: nothing to do.
          }
        }
      }
    }
  }

  /// Begins a graceful shutdown of every connection.
  func shutdown() {
    self.isShutdown.store(true, ordering: .relaxed)
    for member in self.members {
      member.client.beginGracefulShutdown()
      member.unary?.close()
    }
  }

  /// The member calls should go to now.
  var currentMember: (index: Int, member: Member) {
    let index = self.current.withLock { $0 }
    return (index, self.members[index])
  }

  /// Moves on to the next member after `failedIndex` failed (no-op if someone already moved on).
  /// Logs a warning when a member that was working fails, not on every retry while it stays down.
  func failover(from failedIndex: Int, error: EtcdError) {
    let bit = UInt64(1) << UInt64(failedIndex % 64)
    let wasHealthy = self.failedMembers.bitwiseOr(bit, ordering: .relaxed).oldValue & bit == 0
    guard self.members.count > 1 else { return }
    let moved = self.current.withLock { current -> Int? in
      guard current == failedIndex else { return nil }
      current = (failedIndex + 1) % self.members.count
      return current
    }
    if moved != nil { self.metrics.failedOver() }
    if let moved, wasHealthy {
      self.logger.warning(
        "etcd endpoint failed, failing over",
        metadata: [
          "failed_endpoint": "\(self.members[failedIndex].endpoint)",
          "next_endpoint": "\(self.members[moved].endpoint)", "error": "\(error)",
        ]
      )
    }
  }

  /// Records that a member answered (cheap when it was already known to be healthy).
  private func markHealthy(_ index: Int) {
    let bit = UInt64(1) << UInt64(index % 64)
    if self.failedMembers.load(ordering: .relaxed) & bit != 0 {
      self.failedMembers.bitwiseAnd(~bit, ordering: .relaxed)
      self.logger.info("etcd endpoint answers again", metadata: ["endpoint": "\(self.members[index].endpoint)"])
    }
  }

  /// Call options for a call that must finish by `deadline`.
  static func options(until deadline: ContinuousClock.Instant) -> CallOptions {
    var options = CallOptions.defaults
    options.timeout = max(.milliseconds(1), deadline - .now)
    options.waitForReady = false
    return options
  }

  /// A unary call (KV, lease, maintenance) against the current member: on the lean unary path
  /// when it is on, else through grpc-swift's stub `fallback`. Fails over and retries as `policy`
  /// allows, until it succeeds, fails for good, or the deadline (default: the configured request
  /// timeout) passes. With `pinnedTo`, every attempt goes to that member (no failover).
  ///
  /// Calls are never retried blindly: a non-idempotent one is sent again only if it certainly
  /// never reached a server. When no endpoint is reachable at all the call fails once the
  /// configured dial timeout has passed. `mayTakeLong`: the server may stay silent until the
  /// deadline (a physical compaction), so a timeout does not mark the connection dead.
  func performUnary<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
    _ operation: String,
    policy: RetryPolicy,
    timeout: Duration? = nil,
    pinnedTo pinnedIndex: Int? = nil,
    mayTakeLong: Bool = false,
    method: MethodDescriptor,
    request: Request,
    fallback: (Client, CallOptions) async throws -> Response
  ) async throws(EtcdError) -> Response {
    try await self.performUnaryReportingMember(
      operation, policy: policy, timeout: timeout, pinnedTo: pinnedIndex, mayTakeLong: mayTakeLong, method: method,
      request: request, fallback: fallback
    ).response
  }

  /// ``performUnary(_:policy:timeout:pinnedTo:mayTakeLong:method:request:fallback:)``, also
  /// returning the index of the member that answered.
  func performUnaryReportingMember<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
    _ operation: String,
    policy: RetryPolicy,
    timeout: Duration? = nil,
    pinnedTo pinnedIndex: Int? = nil,
    mayTakeLong: Bool = false,
    method: MethodDescriptor,
    request: Request,
    fallback: (Client, CallOptions) async throws -> Response
  ) async throws(EtcdError) -> (response: Response, memberIndex: Int) {
    let path = "/" + method.fullyQualifiedMethod
    let start = self.metrics.isRecorded ? ContinuousClock.now : nil
    do {
      let answered = try await self.performOnMember(operation, policy: policy, timeout: timeout, pinnedTo: pinnedIndex) {
        member, until in
        guard let unary = member.unary else { return try await fallback(member.client, Self.options(until: until)) }
        let metadata = self.auth.currentToken.map { [("token", $0)] } ?? []
        return try await unary.call(
          path: path, request: request, metadata: metadata, deadline: until, mayTakeLong: mayTakeLong)
      }
      if let start { self.metrics.record(operation, since: start, error: nil) }
      return answered
    } catch {
      if let start { self.metrics.record(operation, since: start, error: error) }
      throw error
    }
  }

  /// The retry and failover loop behind ``performUnaryReportingMember(_:policy:timeout:pinnedTo:mayTakeLong:method:request:fallback:)``:
  /// `body` gets the member to call and the deadline of this attempt; the result comes with the
  /// index of the member that answered.
  private func performOnMember<Result: Sendable>(
    _ operation: String,
    policy: RetryPolicy,
    timeout: Duration? = nil,
    pinnedTo pinnedIndex: Int? = nil,
    _ body: (Member, ContinuousClock.Instant) async throws -> Result
  ) async throws(EtcdError) -> (response: Result, memberIndex: Int) {
    let start = ContinuousClock.now
    let deadline = start + (timeout ?? self.configuration.requestTimeout)
    let dialDeadline = start + self.configuration.dialTimeout
    var attempt = 0
    var reauthenticated = false
    var reachedServer = false
    while true {
      if self.isShutdown.load(ordering: .relaxed) {
        throw EtcdError(code: .clientClosed, message: "\(operation): the client is shut down")
      }
      let (index, member) = pinnedIndex.map { ($0, self.members[$0]) } ?? self.currentMember
      do {
        if self.auth.needsToken { try await self.auth.authenticate(using: member.client, until: deadline) }
        // Until some server has answered, an attempt may not outlive the dial timeout: a call
        // queued on a connection that never comes up must not wait for the request timeout.
        let connected = reachedServer || self.hasConnected.load(ordering: .relaxed)
        let result = try await body(member, connected ? deadline : min(deadline, dialDeadline))
        self.hasConnected.store(true, ordering: .relaxed)
        self.markHealthy(index)
        return (result, index)
      } catch {
        let error = EtcdError.wrapping(error, operation: operation)
        if error.code == .invalidAuthToken, self.auth.isEnabled, !reauthenticated {
          reauthenticated = true
          self.auth.invalidate()
          continue
        }
        // A call that timed out before any server ever answered was queued on a connection that
        // never came up: it was not sent.
        let neverConnected = !self.hasConnected.load(ordering: .relaxed)
        let notSent = error.requestNeverSent || (neverConnected && error.code == .deadlineExceeded)
        if !notSent { reachedServer = true }
        if pinnedIndex == nil, error.isEndpointFailure || notSent { self.failover(from: index, error: error) }
        let retryable =
          switch policy {
          case .idempotent: error.isRetryableForIdempotent || notSent
          case .nonIdempotent: notSent
          }
        guard retryable, !Task.isCancelled else { throw error }
        // Try each other member once at once; back off only after a full round.
        attempt += 1
        let delay =
          attempt % self.members.count == 0
          ? self.configuration.retryBackoff.delay(attempt: attempt / self.members.count - 1) : .zero
        let now = ContinuousClock.now
        let limit = reachedServer ? deadline : min(deadline, dialDeadline)
        guard now + delay < limit else {
          if !reachedServer && (error.code == .unavailable || error.code == .deadlineExceeded) {
            let list = self.members.map { "\($0.endpoint)" }.joined(separator: ",")
            let waited = Int((now - start).seconds * 1000)
            throw EtcdError(
              code: .unavailable,
              message: "no etcd endpoint reachable at \(list) after \(waited) ms: \(error.message)",
              cause: error.cause
            )
          }
          throw error
        }
        self.logger.debug(
          "etcd call failed, retrying",
          metadata: [
            "operation": "\(operation)", "endpoint": "\(member.endpoint)", "attempt": "\(attempt)",
            "retry_in_ms": "\(Int(delay.seconds * 1000))", "error": "\(error)",
          ])
        if delay > .zero {
          do { try await Task.sleep(for: delay) } catch { throw EtcdError.wrapping(error, operation: operation) }
        }
      }
    }
  }

  /// Keeps one long-lived stream (the shared watch or keep-alive stream) open while it has work:
  /// waits on `wakeups` while `status()` says idle, runs `session` on the current member, and when
  /// it breaks fails over and backs off (jittered exponential, reset after 30 healthy seconds)
  /// before opening the next one. Returns when `status()` says closed or the task is cancelled.
  func superviseStream(
    _ name: String,
    wakeups: AsyncStream<Void>,
    maximumDelay: Duration? = nil,
    status: () -> (closed: Bool, idle: Bool),
    session: (Member) async -> EtcdError,
    afterBreak: () -> Void = {}
  ) async {
    var wakeups = wakeups.makeAsyncIterator()
    var failures = 0
    while !Task.isCancelled {
      let (closed, idle) = status()
      if closed { return }
      if idle {
        guard await wakeups.next() != nil else { return }
        continue
      }
      let (index, member) = self.currentMember
      let opened = ContinuousClock.now
      let error = await session(member)
      if status().closed || Task.isCancelled { return }
      if ContinuousClock.now - opened > .seconds(30) { failures = 0 }
      self.failover(from: index, error: error)
      afterBreak()
      var delay = self.configuration.streamBackoff.delay(attempt: failures)
      if let maximumDelay { delay = min(delay, maximumDelay) }
      failures += 1
      self.logger.warning(
        "etcd \(name) stream broke, re-establishing it",
        metadata: ["endpoint": "\(member.endpoint)", "error": "\(error)", "retry_in_ms": "\(Int(delay.seconds * 1000))"])
      try? await Task.sleep(for: delay)
    }
  }
}
