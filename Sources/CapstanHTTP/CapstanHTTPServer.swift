public import Logging
public import Prometheus
public import ServiceLifecycle
import Hummingbird
import HummingbirdCore
import NIOCore
import Synchronization

/// The operational HTTP endpoints of a Capstan process, served by Hummingbird:
///
/// - `GET /metrics`: the Prometheus text exposition of a `PrometheusCollectorRegistry`;
/// - `GET /healthz`: 200 `ok` while ``ProbeChecks/health`` is ok, 503 with its reasons otherwise;
/// - `GET /readyz`: 200 `ok` once ``ProbeChecks/readiness`` is ok (every informer synced), 503
///   listing what is not ready before.
///
/// A swift-service-lifecycle `Service`: add it to a `Manager` (`addService(_:name:)`) or a
/// `ServiceGroup`. Graceful shutdown stops accepting connections and lets open requests finish.
/// The server does not bootstrap `MetricsSystem`; whoever does passes the same registry here.
public final class CapstanHTTPServer: Service, Sendable {
  /// Where the server listens and its timeouts.
  public let configuration: CapstanHTTPServerConfiguration
  private let registry: PrometheusCollectorRegistry
  private let checks: ProbeChecks
  private let logger: Logger
  private let state = Mutex(ListeningState())

  /// The content type of `/metrics`: Prometheus text format 0.0.4.
  public static let metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

  /// - Parameters:
  ///   - configuration: address, port (0 = any free port) and idle timeout.
  ///   - registry: the registry `/metrics` exposes.
  ///   - checks: what `/healthz` and `/readyz` answer.
  ///   - logger: the server's logger (Hummingbird logs each failed request at debug).
  public init(
    configuration: CapstanHTTPServerConfiguration = .init(),
    registry: PrometheusCollectorRegistry,
    checks: ProbeChecks,
    logger: Logger
  ) {
    self.configuration = configuration
    self.registry = registry
    self.checks = checks
    self.logger = logger
  }

  /// The port the server is listening on, once it is; `nil` before and after.
  public var boundPort: Int? {
    self.state.withLock { state in
      if case .listening(let port) = state.phase { return port }
      return nil
    }
  }

  /// Waits until the server listens and returns its port (the picked one when configured
  /// with port 0).
  ///
  /// - Throws: ``CapstanHTTPServerError`` when the server stopped or failed to bind before
  ///   listening; `CancellationError` when the waiting task is cancelled.
  public func waitUntilListening() async throws -> Int {
    let id = self.state.withLock { state in state.nextWaiterID() }
    return try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Int, any Error>) in
        let result: Result<Int, any Error>? = self.state.withLock { state in
          if Task.isCancelled { return .failure(CancellationError()) }
          switch state.phase {
          case .listening(let port): return .success(port)
          case .stopped(let error): return .failure(error)
          case .notStarted, .starting:
            state.waiters[id] = continuation
            return nil
          }
        }
        if let result { continuation.resume(with: result) }
      }
    } onCancel: {
      let waiter = self.state.withLock { state in state.waiters.removeValue(forKey: id) }
      waiter?.resume(throwing: CancellationError())
    }
  }

  /// Binds, serves until graceful shutdown or cancellation, then closes the listener.
  ///
  /// - Throws: ``CapstanHTTPServerError`` with code `alreadyRunning` on a second call, or
  ///   `bindFailed` when the address cannot be bound.
  public func run() async throws {
    try self.state.withLock { state throws(CapstanHTTPServerError) in
      guard case .notStarted = state.phase else {
        throw CapstanHTTPServerError(code: .alreadyRunning, message: "the HTTP server runs only once")
      }
      state.phase = .starting
    }
    let application = Application(
      router: self.makeRouter(),
      server: .http1(configuration: .init(idleTimeout: Self.timeAmount(self.configuration.idleTimeout))),
      configuration: .init(address: .hostname(self.configuration.host, port: self.configuration.port)),
      onServerRunning: { [self] channel in
        let configuration = self.configuration
        let port = channel.localAddress?.port ?? configuration.port
        self.logger.info(
          "HTTP server listening",
          metadata: ["host": "\(configuration.host)", "port": "\(port)"])
        let waiters = self.state.withLock { state in
          state.phase = .listening(port: port)
          return state.takeWaiters()
        }
        for waiter in waiters { waiter.resume(returning: port) }
      },
      logger: self.logger
    )
    do {
      try await application.run()
      self.finish(with: CapstanHTTPServerError(code: .stopped, message: "the HTTP server has stopped"))
    } catch {
      let wasListening = self.boundPort != nil
      let failure =
        wasListening
        ? CapstanHTTPServerError(code: .stopped, message: "the HTTP server has stopped", cause: error)
        : CapstanHTTPServerError(
          code: .bindFailed,
          message: "cannot listen on \(self.configuration.host):\(self.configuration.port): \(error)",
          cause: error)
      self.finish(with: failure)
      throw wasListening || error is CancellationError ? error : failure
    }
  }

  private func finish(with error: CapstanHTTPServerError) {
    let waiters = self.state.withLock { state in
      state.phase = .stopped(error)
      return state.takeWaiters()
    }
    for waiter in waiters { waiter.resume(throwing: error) }
  }

  private func makeRouter() -> Router<BasicRequestContext> {
    let router = Router(context: BasicRequestContext.self)
    let registry = self.registry
    let checks = self.checks
    router.get("/metrics") { _, _ -> Response in
      var headers = HTTPFields()
      headers[.contentType] = Self.metricsContentType
      return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
    }
    router.get("/healthz") { _, _ -> Response in Self.probeResponse(checks.health()) }
    router.get("/readyz") { _, _ -> Response in Self.probeResponse(checks.readiness()) }
    return router
  }

  private static func probeResponse(_ status: ProbeStatus) -> Response {
    var headers = HTTPFields()
    headers[.contentType] = "text/plain; charset=utf-8"
    return Response(
      status: status.isOK ? .ok : .serviceUnavailable,
      headers: headers,
      body: .init(byteBuffer: ByteBuffer(string: status.body)))
  }

  private static func timeAmount(_ duration: Duration) -> TimeAmount {
    let (seconds, attoseconds) = duration.components
    return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
  }
}

/// Why the HTTP server is not (or no longer) listening.
public struct CapstanHTTPServerError: Error, CustomStringConvertible, Sendable {
  /// What went wrong.
  public enum Code: String, Sendable {
    /// The address could not be bound (in use, not an address of this machine, no permission).
    case bindFailed
    /// `run()` was called a second time.
    case alreadyRunning
    /// The server stopped (or never started) before it listened.
    case stopped
  }

  /// What went wrong.
  public var code: Code
  /// One line for people.
  public var message: String
  /// The underlying error, if any.
  public var cause: (any Error)?

  /// - Parameters:
  ///   - code: what went wrong.
  ///   - message: one line for people.
  ///   - cause: the underlying error.
  public init(code: Code, message: String, cause: (any Error)? = nil) {
    self.code = code
    self.message = message
    self.cause = cause
  }

  /// `<code>: <message>`.
  public var description: String { "\(self.code.rawValue): \(self.message)" }
}

/// The server's lifecycle and the tasks waiting for it to listen.
private struct ListeningState: ~Copyable {
  enum Phase {
    case notStarted
    case starting
    case listening(port: Int)
    case stopped(CapstanHTTPServerError)
  }

  var phase = Phase.notStarted
  var waiters: [Int: CheckedContinuation<Int, any Error>] = [:]
  private var lastWaiterID = 0

  mutating func nextWaiterID() -> Int {
    self.lastWaiterID += 1
    return self.lastWaiterID
  }

  mutating func takeWaiters() -> [CheckedContinuation<Int, any Error>] {
    defer { self.waiters = [:] }
    return Array(self.waiters.values)
  }
}
