import Capstan
import CapstanTestSupport
import Logging
import Metrics
import Synchronization

/// A value shared between a test and the tasks it starts.
final class WorkQueueTestBox<Value: Sendable>: Sendable {
  private let value: Mutex<Value>
  init(_ value: Value) { self.value = Mutex(value) }
  func withLock<Result: Sendable>(_ body: (inout Value) -> Result) -> Result { self.value.withLock { body(&$0) } }
  var current: Value { self.value.withLock { $0 } }
}

/// A queue on a manual clock with recording metrics, for one test.
struct WorkQueueFixture {
  let clock = ManualClock()
  let metrics = RecordingMetrics()
  let queue: WorkQueue<String>

  /// With `recordingMetrics` false the queue gets swift-metrics' no-op factory, as in a process
  /// that bootstrapped none: it then records no times and reads its clock only for delays and
  /// priorities.
  init(
    rateLimiter: any WorkQueueRateLimiter<String> = MaxOfRateLimiter<String>.standard(),
    maxRetries: Int? = nil, lowPriorityAging: Duration = .seconds(5), recordingMetrics: Bool = true,
    logger: Logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
  ) {
    self.queue = WorkQueue(
      name: "test",
      configuration: .init(
        rateLimiter: rateLimiter, maxRetries: maxRetries, lowPriorityAging: lowPriorityAging,
        clock: self.clock,
        metricsFactory: recordingMetrics ? self.metrics : NOOPMetricsHandler.instance, logger: logger))
  }

  /// The metric `label` of this queue.
  func metric(_ label: String) -> Double? {
    self.metrics.value(label, [("name", "test")])
  }

  /// Lets other tasks run for a moment (no real time passes on the manual clock).
  static func yield(_ times: Int = 20) async {
    for _ in 0..<times { await Task.yield() }
  }
}

/// A continuous clock that counts how often it is read.
final class CountingClock: Clock, Sendable {
  private let base = ContinuousClock()
  private let readCount = Atomic<Int>(0)

  var reads: Int { self.readCount.load(ordering: .relaxed) }
  var now: ContinuousClock.Instant {
    self.readCount.add(1, ordering: .relaxed)
    return self.base.now
  }
  var minimumResolution: Duration { self.base.minimumResolution }

  func sleep(until deadline: ContinuousClock.Instant, tolerance: Duration?) async throws {
    try await self.base.sleep(until: deadline, tolerance: tolerance)
  }
}
