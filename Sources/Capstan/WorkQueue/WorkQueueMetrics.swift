import Metrics

/// A work queue's metrics, under client-go's names (so existing dashboards work), labelled by
/// `name`; plus Capstan's `workqueue_dropped_total` for keys dropped after their maximum retries.
@usableFromInline
struct WorkQueueMetrics: Sendable {
  /// Keys ready to be handed out (client-go's `workqueue_depth`).
  @usableFromInline let depth: Gauge
  /// Keys added and not deduplicated.
  @usableFromInline let adds: Counter
  /// How long a key waited in the queue before `get()` handed it out.
  @usableFromInline let queueDuration: Metrics.Timer
  /// How long a key was processed (`get()` to `done`).
  @usableFromInline let workDuration: Metrics.Timer
  /// Seconds of work in progress: the sum over keys being processed of how long they have run.
  @usableFromInline let unfinishedWork: Gauge
  /// How long the longest-running key has been processed, in seconds.
  @usableFromInline let longestRunningProcessor: Gauge
  /// Delayed adds (every `add(_:after:)` and `addRateLimited`), as client-go counts retries.
  @usableFromInline let retries: Counter
  /// Keys dropped after their maximum retries.
  @usableFromInline let dropped: Counter
  /// Whether the metrics go anywhere: false with swift-metrics' no-op factory (a process that
  /// bootstrapped none), where the queue then reads no clock for durations and gauges.
  @usableFromInline let isRecorded: Bool

  init(name: String, factory: any MetricsFactory) {
    self.isRecorded = !(factory is NOOPMetricsHandler)
    let dimensions = [("name", name)]
    self.depth = Gauge(label: "workqueue_depth", dimensions: dimensions, factory: factory)
    self.adds = Counter(label: "workqueue_adds_total", dimensions: dimensions, factory: factory)
    self.queueDuration = Metrics.Timer(
      label: "workqueue_queue_duration_seconds", dimensions: dimensions, factory: factory)
    self.workDuration = Metrics.Timer(
      label: "workqueue_work_duration_seconds", dimensions: dimensions, factory: factory)
    self.unfinishedWork = Gauge(
      label: "workqueue_unfinished_work_seconds", dimensions: dimensions, factory: factory)
    self.longestRunningProcessor = Gauge(
      label: "workqueue_longest_running_processor_seconds", dimensions: dimensions, factory: factory)
    self.retries = Counter(label: "workqueue_retries_total", dimensions: dimensions, factory: factory)
    self.dropped = Counter(label: "workqueue_dropped_total", dimensions: dimensions, factory: factory)
  }

  @inlinable
  func record(_ gauges: WorkQueueGauges) {
    self.depth.record(gauges.depth)
    if let processing = gauges.processing {
      self.unfinishedWork.record(processing.unfinished)
      self.longestRunningProcessor.record(processing.longest)
    }
  }

  @inlinable
  func record(_ duration: Duration, in timer: Metrics.Timer) {
    let (seconds, attoseconds) = duration.components
    timer.recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
  }
}
