import Metrics
import Synchronization

/// The etcd client's metrics (swift-metrics, so they go wherever the process bootstrapped them,
/// e.g. the `capstan` executable's Prometheus `/metrics`):
/// - `capstan_etcd_requests_total{operation, code}`: unary calls by outcome, `code` being `ok`
///   or the ``EtcdError/Code`` the call failed with (after retries);
/// - `capstan_etcd_request_duration_seconds{operation}`: how long calls took, retries included;
/// - `capstan_etcd_failovers_total`: moves of the client to another member;
/// - `capstan_etcd_stream_breaks_total{stream}`: the watch (`watch`) or lease keep-alive
///   (`lease_keep_alive`) stream broke, or an attempt to re-establish it failed (a member down
///   for a while counts once per attempt).
///
/// `operation` is the call's name with `_` for spaces and dashes (`put`, `lease_time_to_live`).
/// With swift-metrics' no-op factory (nothing bootstrapped) the client reads no clock for them.
final class EtcdClientMetrics: Sendable {
  private final class Operation: Sendable {
    let label: String
    let succeeded: Counter
    let duration: Metrics.Timer
    /// One counter per failure code, made when it first happens (failures are rare).
    let failed = Mutex<[EtcdError.Code: Counter]>([:])

    init(label: String, factory: any MetricsFactory) {
      self.label = label
      self.succeeded = Counter(
        label: "capstan_etcd_requests_total", dimensions: [("operation", label), ("code", "ok")], factory: factory)
      self.duration = Metrics.Timer(
        label: "capstan_etcd_request_duration_seconds", dimensions: [("operation", label)], factory: factory)
    }
  }

  /// The operations the client performs (``EtcdClient``'s names for them).
  static let operationNames = [
    "range", "put", "delete", "txn", "compact", "lease grant", "lease revoke", "lease time-to-live",
    "lease list", "status", "alarm list",
  ]

  /// Whether the metrics go anywhere (false with swift-metrics' no-op factory).
  let isRecorded: Bool
  private let factory: any MetricsFactory
  /// Made up front, read without a lock.
  private let operations: [String: Operation]
  /// Any other operation name, made on first use.
  private let otherOperations = Mutex<[String: Operation]>([:])
  private let failovers: Counter
  private let watchRestarts: Counter
  private let keepAliveRestarts: Counter

  /// The client's two shared streams.
  enum Stream {
    case watch, leaseKeepAlive
  }

  /// Counts a move to another member.
  func failedOver() { self.failovers.increment() }

  /// Counts a break of `stream` (or a failed attempt to re-establish it).
  func streamBroke(_ stream: Stream) {
    switch stream {
    case .watch: self.watchRestarts.increment()
    case .leaseKeepAlive: self.keepAliveRestarts.increment()
    }
  }

  init(factory: any MetricsFactory) {
    self.factory = factory
    self.isRecorded = !(factory is NOOPMetricsHandler)
    var operations: [String: Operation] = [:]
    for name in Self.operationNames { operations[name] = Operation(label: Self.label(name), factory: factory) }
    self.operations = operations
    self.failovers = Counter(label: "capstan_etcd_failovers_total", factory: factory)
    self.watchRestarts = Counter(
      label: "capstan_etcd_stream_breaks_total", dimensions: [("stream", "watch")], factory: factory)
    self.keepAliveRestarts = Counter(
      label: "capstan_etcd_stream_breaks_total", dimensions: [("stream", "lease_keep_alive")], factory: factory)
  }

  private static func label(_ operation: String) -> String {
    String(operation.map { $0 == " " || $0 == "-" ? "_" : $0 })
  }

  private func operation(_ name: String) -> Operation {
    if let known = self.operations[name] { return known }
    return self.otherOperations.withLock { others in
      if let made = others[name] { return made }
      let made = Operation(label: Self.label(name), factory: self.factory)
      others[name] = made
      return made
    }
  }

  /// Records a call of `operation` that started at `start` and ended with `error` (nil: success).
  func record(_ operation: String, since start: ContinuousClock.Instant, error: EtcdError?) {
    let metrics = self.operation(operation)
    let (seconds, attoseconds) = (ContinuousClock.now - start).components
    metrics.duration.recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    guard let error else {
      metrics.succeeded.increment()
      return
    }
    let counter = metrics.failed.withLock { failed in
      if let counter = failed[error.code] { return counter }
      let counter = Counter(
        label: "capstan_etcd_requests_total", dimensions: [("operation", metrics.label), ("code", "\(error.code)")],
        factory: self.factory)
      failed[error.code] = counter
      return counter
    }
    counter.increment()
  }
}
