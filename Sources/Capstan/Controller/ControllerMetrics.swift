import Metrics

/// A controller's metrics, under controller-runtime's names, labelled by `controller`.
struct ControllerMetrics: Sendable {
  /// The `result` label of `controller_runtime_reconcile_total`.
  enum Result: String, CaseIterable, Sendable {
    /// Returned ``ReconcileResult/done``.
    case success
    /// Threw an error other than a conflict or a terminal error (retried with backoff).
    case error
    /// A write conflicted (requeued, rate-limited).
    case requeue
    /// Returned ``ReconcileResult/requeue(after:)``.
    case requeueAfter = "requeue_after"
    /// Threw a ``TerminalError`` (not retried).
    case terminalError = "terminal_error"
  }

  private let totals: [Result: Counter]
  /// Reconciles that threw (errors and terminal errors).
  let errors: Counter
  let reconcileTime: Metrics.Timer
  let activeWorkers: Gauge

  init(controller: String, factory: any MetricsFactory) {
    var totals: [Result: Counter] = [:]
    for result in Result.allCases {
      totals[result] = Counter(
        label: "controller_runtime_reconcile_total",
        dimensions: [("controller", controller), ("result", result.rawValue)], factory: factory)
    }
    self.totals = totals
    let dimensions = [("controller", controller)]
    self.errors = Counter(label: "controller_runtime_reconcile_errors_total", dimensions: dimensions, factory: factory)
    self.reconcileTime = Metrics.Timer(
      label: "controller_runtime_reconcile_time_seconds", dimensions: dimensions, factory: factory)
    self.activeWorkers = Gauge(label: "controller_runtime_active_workers", dimensions: dimensions, factory: factory)
  }

  func count(_ result: Result) {
    self.totals[result]?.increment()
    if result == .error || result == .terminalError { self.errors.increment() }
  }

  func recordReconcileTime(_ duration: Duration) {
    let (seconds, attoseconds) = duration.components
    self.reconcileTime.recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
  }
}
