public import Metrics

/// How a ``Controller`` behaves.
public struct ControllerConfiguration: Sendable {
  /// Concurrent reconciles (default 2); one key is never on two workers.
  public var workers: Int
  /// Filters on the primary informer's events (default none; see
  /// ``EventPredicate/generationChanged``). Owned objects' events are not filtered.
  public var predicates: [EventPredicate]
  /// How long failed and conflicting keys wait (default ``MaxOfRateLimiter/standard()``).
  public var rateLimiter: any WorkQueueRateLimiter<ReconcileRequest>
  /// How many times a failing key is retried before it is dropped (nil: no limit, the default).
  public var maxRetries: Int?
  /// How long an initial-list key waits before it is served as a real change (default 5 s).
  public var lowPriorityAging: Duration
  /// How long the next reconcile of a key waits for the cache to see the previous reconcile's
  /// writes before it runs anyway (default 10 s).
  public var readYourWritesTimeout: Duration
  /// How long a graceful stop lets queued and in-flight reconciles finish before cancelling them
  /// (default 30 s).
  public var shutdownTimeout: Duration
  /// The work queue's clock (delays, backoff) and the reconcile timer's.
  public var clock: any Clock<Duration>
  /// Where the controller's and its work queue's metrics go (default: the global factory).
  public var metricsFactory: any MetricsFactory

  /// A configuration; every parameter has a default.
  public init(
    workers: Int = 2,
    predicates: [EventPredicate] = [],
    rateLimiter: any WorkQueueRateLimiter<ReconcileRequest> = MaxOfRateLimiter<ReconcileRequest>.standard(),
    maxRetries: Int? = nil,
    lowPriorityAging: Duration = .seconds(5),
    readYourWritesTimeout: Duration = .seconds(10),
    shutdownTimeout: Duration = .seconds(30),
    clock: any Clock<Duration> = ContinuousClock(),
    metricsFactory: any MetricsFactory = MetricsSystem.factory
  ) {
    precondition(workers > 0, "a controller needs at least one worker")
    self.workers = workers
    self.predicates = predicates
    self.rateLimiter = rateLimiter
    self.maxRetries = maxRetries
    self.lowPriorityAging = lowPriorityAging
    self.readYourWritesTimeout = readYourWritesTimeout
    self.shutdownTimeout = shutdownTimeout
    self.clock = clock
    self.metricsFactory = metricsFactory
  }
}
