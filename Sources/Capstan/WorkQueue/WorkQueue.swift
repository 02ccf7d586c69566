import Logging
import Metrics
import Synchronization

/// A queue of keys to process, as client-go's rate-limited work queue: deduplicated, never
/// handing one key to two workers at once, with delayed adds, rate-limited retries, two priorities
/// and a shutdown that drains or abandons.
///
/// A worker loops `while let key = await queue.get() { …; queue.done(key) }`:
/// - **Dedup.** A key added again before `get()` hands it out is handed out once. A key added while
///   it is being processed (between `get()` and `done`) is handed out again after `done`, never
///   to a second worker in the meantime.
/// - **Delays.** `add(_:after:)` keeps a key on a heap until it is due; of two delays for one key
///   the earlier wins. No background task moves due keys: every call moves them, and when
///   nothing is ready one waiting `get()` (the timekeeper) sleeps on the queue's clock until the
///   earliest due key, woken early when an earlier one is added.
/// - **Retries.** `addRateLimited` asks the rate limiter how long to wait, counts the retry and,
///   beyond `maxRetries`, drops the key (counted in `workqueue_dropped_total` and logged);
///   `forget` resets a key's history after a success.
/// - **Priorities.** `.low` keys (initial list, resync) are served after `.normal` ones, but a
///   `.low` key counts as `.normal` from `lowPriorityAging` after it was added: it is served before
///   any `.normal` key added later than that, so it never starves.
/// - **Metrics** under client-go's names, labelled by `name`: `workqueue_depth` (ready keys),
///   `workqueue_adds_total` (keys added and not deduplicated; a delayed key when it is due),
///   `workqueue_queue_duration_seconds` and `workqueue_work_duration_seconds` (timers),
///   `workqueue_unfinished_work_seconds`, `workqueue_longest_running_processor_seconds`,
///   `workqueue_retries_total` (delayed and rate-limited adds), and Capstan's
///   `workqueue_dropped_total` (keys dropped after their maximum retries).
///   The two processing gauges are updated whenever a key starts or finishes processing; call
///   ``updateUnfinishedWorkMetrics()`` periodically (say each second, or before a scrape) to keep
///   them moving while long keys run. With swift-metrics' no-op factory (a process that
///   bootstrapped none) the queue computes no durations or gauges and reads no clock for them.
public final class WorkQueue<Key: Hashable & Sendable>: Sendable {
  /// How a queue behaves.
  public struct Configuration: Sendable {
    /// How long failed keys wait (default ``MaxOfRateLimiter/standard()``: per-key backoff
    /// 5 ms → 1000 s and a global bucket of 10/s, burst 100, maximum wait 30 s).
    public var rateLimiter: any WorkQueueRateLimiter<Key>
    /// How many times `addRateLimited` requeues a key before dropping it (nil: no limit, the
    /// default; the rate limiter's cap bounds the wait instead).
    public var maxRetries: Int?
    /// How long a `.low` key waits before it is served as a `.normal` one (default 5 s).
    public var lowPriorityAging: Duration
    /// The clock for delays, aging and durations.
    public var clock: any Clock<Duration>
    /// Where the metrics go (default: the global `MetricsSystem.factory`).
    public var metricsFactory: any MetricsFactory
    /// Logs dropped keys and shutdowns.
    public var logger: Logger

    /// A configuration; every parameter has a default.
    public init(
      rateLimiter: any WorkQueueRateLimiter<Key> = MaxOfRateLimiter<Key>.standard(),
      maxRetries: Int? = nil,
      lowPriorityAging: Duration = .seconds(5),
      clock: any Clock<Duration> = ContinuousClock(),
      metricsFactory: any MetricsFactory = MetricsSystem.factory,
      logger: Logger = Logger(label: "capstan.workqueue")
    ) {
      precondition(maxRetries.map { $0 >= 0 } ?? true, "maxRetries must not be negative")
      precondition(lowPriorityAging >= .zero, "lowPriorityAging must not be negative")
      self.rateLimiter = rateLimiter
      self.maxRetries = maxRetries
      self.lowPriorityAging = lowPriorityAging
      self.clock = clock
      self.metricsFactory = metricsFactory
      self.logger = logger
    }
  }

  /// The queue's name: the `name` label of its metrics.
  public let name: String
  @usableFromInline let maxRetries: Int?
  @usableFromInline let logger: Logger
  @usableFromInline let metrics: WorkQueueMetrics
  @usableFromInline let time: WorkQueueTimeSource
  @usableFromInline let state: Mutex<WorkQueueState<Key>>

  /// A queue named `name` (the metrics' `name` label).
  public init(name: String, configuration: Configuration = Configuration()) {
    self.name = name
    self.maxRetries = configuration.maxRetries
    var logger = configuration.logger
    logger[metadataKey: "workqueue"] = "\(name)"
    self.logger = logger
    self.metrics = WorkQueueMetrics(name: name, factory: configuration.metricsFactory)
    self.time = WorkQueueTimeSource(configuration.clock)
    self.state = Mutex(
      WorkQueueState(
        rateLimiter: configuration.rateLimiter, lowPriorityAging: configuration.lowPriorityAging,
        time: self.time, recordsTimes: self.metrics.isRecorded))
  }

  // MARK: adding

  /// Queues `key` (a no-op if it is already queued, apart from raising a `.low` key to `.normal`;
  /// ignored after shutdown).
  @inlinable
  public func add(_ key: Key, priority: WorkQueuePriority = .normal) {
    self.withState { state, now, effects in
      state.add(key, priority: priority, now: &now, effects: &effects)
    }
  }

  /// Queues `key` once `delay` has passed (at once if `delay` is not positive). If the key is
  /// already waiting, the earlier due time wins. Ignored after shutdown.
  @inlinable
  public func add(_ key: Key, after delay: Duration, priority: WorkQueuePriority = .normal) {
    let accepted = self.withState { state, now, effects in
      state.add(key, after: delay, priority: priority, now: &now, effects: &effects)
    }
    if accepted { self.metrics.retries.increment() }
  }

  /// Queues `key` after the wait the rate limiter gives for one more failure. Returns false when
  /// the key is dropped instead: it was already requeued `maxRetries` times since it was last
  /// forgotten (the drop is counted in `workqueue_dropped_total`, logged, and the key's history
  /// forgotten), or the queue is shut down.
  @discardableResult
  public func addRateLimited(_ key: Key) -> Bool {
    let decision = self.withState { state, now, effects in
      state.addRateLimited(key, maxRetries: self.maxRetries, now: &now, effects: &effects)
    }
    switch decision {
    case .scheduled:
      self.metrics.retries.increment()
      return true
    case .dropped(let retries):
      self.metrics.dropped.increment()
      self.logger.warning(
        "work queue dropped a key after its maximum retries",
        metadata: ["key": "\(key)", "retries": "\(retries)"])
      return false
    case .shutDown:
      return false
    }
  }

  /// Forgets `key`'s failures: its retry count and the rate limiter's history (call after a
  /// success).
  @inlinable
  public func forget(_ key: Key) {
    self.state.withLock { $0.forget(key) }
  }

  /// How many times `key` was requeued by `addRateLimited` since it was last forgotten.
  @inlinable
  public func numRequeues(_ key: Key) -> Int {
    self.state.withLock { $0.requeues[key, default: 0] }
  }

  // MARK: processing

  /// The next key to process, waiting while none is ready; nil once the queue is shut down (with
  /// `.drain`: once nothing queued is left) or when the calling task is cancelled while waiting.
  ///
  /// The caller owns the key until it calls ``done(_:)``; meanwhile no other `get()` returns it.
  @inlinable
  @inline(__always)
  public func get() async -> Key? {
    // The common case, a key is ready, takes no suspension point and no call to an async function.
    switch self.attempt(previousWaiter: nil) {
    case .key(let key, _):
      return key
    case .finished:
      return nil
    case .wait(let id, let deadline):
      return await self.waitForKey(id, deadline: deadline)
    }
  }

  /// One step of `get()`: takes a ready key, or finds the queue finished, or registers a waiter.
  @inlinable
  func attempt(previousWaiter: UInt64?) -> WorkQueueAttempt<Key> {
    var now = WorkQueueNow()
    let (attempt, effects, gauges) = self.state.withLock { state in
      var effects = WorkQueueEffects<Key>()
      let attempt = state.attempt(now: &now, previousWaiter: previousWaiter, effects: &effects)
      let gauges = state.gauges(now: &now, processingChanged: effects.handoffs > 0 || Self.isKey(attempt))
      return (attempt, effects, gauges)
    }
    self.finish(effects, gauges: gauges)
    if case .key(_, let queued?) = attempt { self.metrics.record(queued, in: self.metrics.queueDuration) }
    return attempt
  }

  /// The rest of `get()` once it waits as waiter `id`: until a key is handed to it, or it is
  /// woken to look again.
  @inlinable
  func waitForKey(_ id: UInt64, deadline: Duration?) async -> Key? {
    var waiter = (id: id, deadline: deadline)
    while true {
      switch await self.wait(waiter.id, deadline: waiter.deadline) {
      case .key(let key):
        return key
      case .retry:
        switch self.attempt(previousWaiter: waiter.id) {
        case .key(let key, _):
          return key
        case .finished:
          return nil
        case .wait(let id, let deadline):
          waiter = (id, deadline)
        }
      }
    }
  }

  /// Marks `key` processed. If it was added again meanwhile, it is queued again now.
  @inlinable
  public func done(_ key: Key) {
    var now = WorkQueueNow()
    let (worked, effects, gauges) = self.state.withLock { state in
      var effects = WorkQueueEffects<Key>()
      state.promoteDue(now: &now, effects: &effects)
      let worked = state.done(key, now: &now, effects: &effects)
      state.ensureTimekeeper(effects: &effects)
      let gauges = state.gauges(now: &now, processingChanged: true)
      return (worked, effects, gauges)
    }
    self.finish(effects, gauges: gauges)
    if let worked { self.metrics.record(worked, in: self.metrics.workDuration) }
  }

  // MARK: shutdown and state

  /// Stops the queue: adds are ignored from now on; `.drain` still hands out queued keys,
  /// `.abandon` drops them. Keys not yet due are dropped either way. Waiting `get()`s return nil
  /// once nothing is left to hand out. A `.drain` can be escalated to `.abandon` later.
  public func shutDown(_ mode: WorkQueueShutdownMode = .drain) {
    let dropped = self.withState { state, _, effects in
      state.shutDown(mode, effects: &effects)
    }
    self.logger.info(
      "work queue shutting down", metadata: ["mode": "\(mode)", "droppedKeys": "\(dropped)"])
  }

  /// Whether ``shutDown(_:)`` was called.
  @inlinable
  public var isShuttingDown: Bool {
    self.state.withLock { $0.shutdown != nil }
  }

  /// Keys ready to be handed out (the depth; keys being processed or not yet due are not counted).
  @inlinable
  public var count: Int {
    self.withState { state, _, _ in state.readyCount }
  }

  /// Keys waiting for their delay to pass.
  @inlinable
  public var delayedCount: Int {
    self.state.withLock { $0.waiting.count }
  }

  /// Moves due keys into the queue and records the depth, `workqueue_unfinished_work_seconds`
  /// and `workqueue_longest_running_processor_seconds` as of now.
  @inlinable
  public func updateUnfinishedWorkMetrics() {
    var now = WorkQueueNow()
    let (effects, gauges) = self.state.withLock { state in
      var effects = WorkQueueEffects<Key>()
      state.promoteDue(now: &now, effects: &effects)
      let gauges = state.gauges(now: &now, processingChanged: true)
      return (effects, gauges)
    }
    self.finish(effects, gauges: gauges)
  }

  // MARK: internals

  @inlinable
  static func isKey(_ attempt: WorkQueueAttempt<Key>) -> Bool {
    if case .key = attempt { return true }
    return false
  }

  /// Runs `body` on the state after moving due keys, then does the effects. The clock is read
  /// (once) only if something needs the time.
  @discardableResult
  @inlinable
  func withState<Result: Sendable>(
    _ body: (inout WorkQueueState<Key>, inout WorkQueueNow, inout WorkQueueEffects<Key>) -> Result
  ) -> Result {
    var now = WorkQueueNow()
    let (result, effects, gauges) = self.state.withLock { state in
      var effects = WorkQueueEffects<Key>()
      state.promoteDue(now: &now, effects: &effects)
      let result = body(&state, &now, &effects)
      state.ensureTimekeeper(effects: &effects)
      let gauges = state.gauges(now: &now, processingChanged: effects.handoffs > 0)
      return (result, effects, gauges)
    }
    self.finish(effects, gauges: gauges)
    return result
  }

  /// Resumes woken waiters and records what changed (gauges are nil when no metrics are
  /// recorded).
  @inlinable
  func finish(_ effects: WorkQueueEffects<Key>, gauges: WorkQueueGauges?) {
    if let resumes = effects.resumes { Self.resume(resumes) }
    guard let gauges else { return }
    if effects.adds > 0 { self.metrics.adds.increment(by: effects.adds) }
    for _ in 0..<effects.handoffs { self.metrics.record(.zero, in: self.metrics.queueDuration) }
    self.metrics.record(gauges)
  }

  /// Resumes woken waiters. Kept out of line: its continuation types take metadata look-ups that
  /// the common case, with nobody to wake, should not pay.
  @inlinable
  @inline(never)
  static func resume(_ resumes: [WorkQueueEffects<Key>.Resume]) {
    for (continuation, wake) in resumes { continuation.resume(returning: wake) }
  }

  /// Waits as waiter `id`; the timekeeper (with a deadline) also sleeps on the clock until then.
  @usableFromInline
  func wait(_ id: UInt64, deadline: Duration?) async -> WorkQueueWake<Key> {
    guard let deadline else { return await self.suspend(id) }
    return await withTaskGroup(of: Void.self, returning: WorkQueueWake<Key>.self) { group in
      group.addTask {
        do {
          try await self.time.sleep(deadline)
        } catch {
          return
        }
        self.withState { state, now, effects in state.timerFired(id, now: &now, effects: &effects) }
      }
      let wake = await self.suspend(id)
      group.cancelAll()
      return wake
    }
  }

  @usableFromInline
  func suspend(_ id: UInt64) async -> WorkQueueWake<Key> {
    await withTaskCancellationHandler {
      await withCheckedContinuation { (continuation: CheckedContinuation<WorkQueueWake<Key>, Never>) in
        if let wake = self.state.withLock({ $0.suspend(id, continuation: continuation) }) {
          continuation.resume(returning: wake)
        }
      }
    } onCancel: {
      self.withState { state, _, effects in state.cancel(id, effects: &effects) }
    }
  }
}

/// The queue's view of its clock: time as a `Duration` since the queue was made.
@usableFromInline
struct WorkQueueTimeSource: Sendable {
  /// Time since the queue was made.
  @usableFromInline let now: @Sendable () -> Duration
  /// Sleeps until the given time since the queue was made.
  @usableFromInline let sleep: @Sendable (Duration) async throws -> Void

  init(_ clock: any Clock<Duration>) {
    // The usual clock gets code specialized for it (no generic calls per read).
    if let continuous = clock as? ContinuousClock {
      self.init(specializedFor: continuous)
    } else {
      self.init(specializedFor: clock)
    }
  }

  private init(specializedFor clock: some Clock<Duration>) {
    let origin = clock.now
    self.now = { origin.duration(to: clock.now) }
    self.sleep = { try await clock.sleep(until: origin.advanced(by: $0), tolerance: nil) }
  }
}
