import DequeModule
import HeapModule

/// What wakes a `get()` that waits: a key handed to it, or a request to look again.
@usableFromInline
enum WorkQueueWake<Key: Hashable & Sendable>: Sendable {
  case key(Key)
  case retry
}

/// What one step of `get()` found.
@usableFromInline
enum WorkQueueAttempt<Key: Hashable & Sendable>: Sendable {
  /// A key to process, and how long it was queued.
  case key(Key, queued: Duration)
  /// The queue is shut down (or the task cancelled): `get()` returns nil.
  case finished
  /// Nothing is ready: wait as waiter `id`; with a deadline, this waiter keeps the time (it wakes
  /// at the earliest due delayed key).
  case wait(id: UInt64, deadline: Duration?)
}

/// Things to do after the lock is released.
@usableFromInline
struct WorkQueueEffects<Key: Hashable & Sendable>: Sendable {
  @usableFromInline var resumes: [(CheckedContinuation<WorkQueueWake<Key>, Never>, WorkQueueWake<Key>)] = []
  /// Keys newly added to the queue (not deduplicated).
  @usableFromInline var adds = 0
  /// Keys handed straight to waiting `get()`s.
  @usableFromInline var handoffs = 0

  @inlinable
  init() {}
}

/// Gauge values read under the lock.
@usableFromInline
struct WorkQueueGauges: Sendable {
  @usableFromInline var depth: Int
  /// Seconds of work in progress and of the longest-running key; nil when the set of keys being
  /// processed did not change.
  @usableFromInline var processing: (unfinished: Double, longest: Double)?

  @inlinable
  init(depth: Int, processing: (unfinished: Double, longest: Double)? = nil) {
    self.depth = depth
    self.processing = processing
  }
}

/// The queue's state, always under the queue's lock.
///
/// - `queued` is client-go's dirty set: keys that want processing. A queued key is either in a
///   lane (ready) or parked (being processed; it goes to a lane when `done` is called).
/// - `processing` holds keys handed out by `get()` and not yet `done`, with their start time.
/// - Lanes hold entries with a sequence number; an entry whose key's `queued.sequence` differs is
///   stale (left behind when a `.low` key was promoted to `.normal`) and skipped.
/// - `delayed` is a heap of keys added with a delay; `waiting` holds each key's earliest due time
///   (a later delay of a waiting key is ignored, an earlier one replaces it).
/// - `waiters` are `get()` calls waiting for a key. At most one of them, the timekeeper, sleeps on
///   the clock until the earliest due delayed key.
///
/// The state and the queue's hot paths are `@inlinable`, so a `WorkQueue<Key>` used from another
/// module is specialized for its key: unspecialized, add+get+done ran about ten times slower
/// (0.22 M against 2.1 M keys/s on the development machine), most of it in generic metadata lookups.
@usableFromInline
struct WorkQueueState<Key: Hashable & Sendable> {
  @usableFromInline
  struct Queued {
    @usableFromInline var sequence: UInt64
    @usableFromInline var priority: WorkQueuePriority
    /// When the key was made ready (for `workqueue_queue_duration_seconds`).
    @usableFromInline var since: Duration
    @usableFromInline var inLane: Bool

    @inlinable
    init(sequence: UInt64, priority: WorkQueuePriority, since: Duration, inLane: Bool) {
      self.sequence = sequence
      self.priority = priority
      self.since = since
      self.inLane = inLane
    }
  }

  @usableFromInline
  struct LaneEntry {
    @usableFromInline var key: Key
    @usableFromInline var sequence: UInt64
    /// When the entry joined its lane (for aging).
    @usableFromInline var since: Duration

    @inlinable
    init(key: Key, sequence: UInt64, since: Duration) {
      self.key = key
      self.sequence = sequence
      self.since = since
    }
  }

  @usableFromInline
  struct Delayed: Comparable {
    @usableFromInline var due: Duration
    @usableFromInline var sequence: UInt64
    @usableFromInline var key: Key

    @inlinable
    init(due: Duration, sequence: UInt64, key: Key) {
      self.due = due
      self.sequence = sequence
      self.key = key
    }

    @inlinable
    static func < (lhs: Delayed, rhs: Delayed) -> Bool {
      (lhs.due, lhs.sequence) < (rhs.due, rhs.sequence)
    }
    @inlinable
    static func == (lhs: Delayed, rhs: Delayed) -> Bool { lhs.sequence == rhs.sequence }
  }

  @usableFromInline
  struct Waiting {
    @usableFromInline var due: Duration
    @usableFromInline var sequence: UInt64
    @usableFromInline var priority: WorkQueuePriority

    @inlinable
    init(due: Duration, sequence: UInt64, priority: WorkQueuePriority) {
      self.due = due
      self.sequence = sequence
      self.priority = priority
    }
  }

  @usableFromInline
  struct Waiter {
    @usableFromInline var continuation: CheckedContinuation<WorkQueueWake<Key>, Never>?
    @usableFromInline var result: WorkQueueWake<Key>?

    @inlinable
    init() {}
  }

  @usableFromInline let lowPriorityAging: Duration
  @usableFromInline var rateLimiter: any WorkQueueRateLimiter<Key>

  @usableFromInline var queued: [Key: Queued] = [:]
  @usableFromInline var normalLane = Deque<LaneEntry>()
  @usableFromInline var lowLane = Deque<LaneEntry>()
  /// Keys in a lane (stale entries excluded): the depth.
  @usableFromInline var readyCount = 0
  /// Queued keys that are being processed.
  @usableFromInline var parkedCount = 0
  @usableFromInline var processing: [Key: Duration] = [:]

  @usableFromInline var delayed = Heap<Delayed>()
  @usableFromInline var waiting: [Key: Waiting] = [:]
  @usableFromInline var requeues: [Key: Int] = [:]

  @usableFromInline var waiters: [UInt64: Waiter] = [:]
  @usableFromInline var waiterOrder = Deque<UInt64>()
  /// Waiters with no result yet.
  @usableFromInline var waitingCount = 0
  @usableFromInline var timekeeper: (id: UInt64, deadline: Duration)?
  /// A waiter woken to become the timekeeper; until it looks again, nobody else is woken for that.
  @usableFromInline var timekeeperCandidate: UInt64?

  @usableFromInline var shutdown: WorkQueueShutdownMode?
  @usableFromInline var nextSequence: UInt64 = 0

  @inlinable
  init(rateLimiter: any WorkQueueRateLimiter<Key>, lowPriorityAging: Duration) {
    self.rateLimiter = rateLimiter
    self.lowPriorityAging = lowPriorityAging
  }

  @inlinable
  mutating func sequence() -> UInt64 {
    self.nextSequence &+= 1
    return self.nextSequence
  }

  // MARK: adding

  /// Adds `key` now; false when it was already queued (or the queue is shut down).
  @discardableResult
  @inlinable
  mutating func add(
    _ key: Key, priority: WorkQueuePriority, now: Duration, effects: inout WorkQueueEffects<Key>
  ) -> Bool {
    guard self.shutdown == nil else { return false }
    if var queued = self.queued[key] {
      if priority == .normal && queued.priority == .low {
        queued.priority = .normal
        if queued.inLane {
          queued.sequence = self.sequence()
          self.normalLane.append(LaneEntry(key: key, sequence: queued.sequence, since: now))
        }
        self.queued[key] = queued
      }
      return false
    }
    effects.adds += 1
    if self.processing[key] != nil {
      self.queued[key] = Queued(sequence: 0, priority: priority, since: now, inLane: false)
      self.parkedCount += 1
    } else {
      self.makeReady(key, priority: priority, now: now, effects: &effects)
    }
    return true
  }

  /// Puts a key that is not being processed into its lane, or hands it to a waiting `get()`.
  @inlinable
  mutating func makeReady(
    _ key: Key, priority: WorkQueuePriority, now: Duration, effects: inout WorkQueueEffects<Key>
  ) {
    if let waiter = self.popWaiter() {
      self.processing[key] = now
      self.deliver(.key(key), to: waiter, effects: &effects)
      effects.handoffs += 1
      return
    }
    let sequence = self.sequence()
    self.queued[key] = Queued(sequence: sequence, priority: priority, since: now, inLane: true)
    let entry = LaneEntry(key: key, sequence: sequence, since: now)
    switch priority {
    case .normal: self.normalLane.append(entry)
    case .low: self.lowLane.append(entry)
    }
    self.readyCount += 1
  }

  /// Adds `key` once `delay` has passed; false if the queue is shut down.
  @discardableResult
  @inlinable
  mutating func add(
    _ key: Key, after delay: Duration, priority: WorkQueuePriority, now: Duration,
    effects: inout WorkQueueEffects<Key>
  ) -> Bool {
    guard self.shutdown == nil else { return false }
    if delay <= .zero {
      self.add(key, priority: priority, now: now, effects: &effects)
      return true
    }
    let due = now + delay
    if var waiting = self.waiting[key], waiting.due <= due {
      if priority == .normal { waiting.priority = .normal }
      self.waiting[key] = waiting
      return true
    }
    let sequence = self.sequence()
    let merged = self.waiting[key]?.priority == .normal ? WorkQueuePriority.normal : priority
    self.waiting[key] = Waiting(due: due, sequence: sequence, priority: merged)
    self.delayed.insert(Delayed(due: due, sequence: sequence, key: key))
    if let timekeeper = self.timekeeper, due < timekeeper.deadline {
      // The timekeeper sleeps too long: wake it to sleep until the new deadline.
      self.timekeeper = nil
      self.timekeeperCandidate = timekeeper.id
      self.deliver(.retry, to: timekeeper.id, effects: &effects)
    }
    return true
  }

  /// Moves delayed keys that are due into the queue.
  @inlinable
  mutating func promoteDue(now: Duration, effects: inout WorkQueueEffects<Key>) {
    while let first = self.delayed.min, first.due <= now {
      self.delayed.removeMin()
      guard let waiting = self.waiting[first.key], waiting.sequence == first.sequence else { continue }
      self.waiting[first.key] = nil
      self.add(first.key, priority: waiting.priority, now: now, effects: &effects)
    }
  }

  /// The earliest due time of a delayed key (stale heap entries are dropped on the way).
  @inlinable
  mutating func earliestDue() -> Duration? {
    while let first = self.delayed.min {
      if let waiting = self.waiting[first.key], waiting.sequence == first.sequence { return first.due }
      self.delayed.removeMin()
    }
    return nil
  }

  // MARK: taking

  @inlinable
  func isCurrent(_ entry: LaneEntry) -> Bool {
    guard let queued = self.queued[entry.key] else { return false }
    return queued.inLane && queued.sequence == entry.sequence
  }

  @inlinable
  mutating func dropStaleHeads() {
    while let first = self.normalLane.first, !self.isCurrent(first) { self.normalLane.removeFirst() }
    while let first = self.lowLane.first, !self.isCurrent(first) { self.lowLane.removeFirst() }
  }

  /// Takes the next ready key: the normal lane's head, unless the low lane's head joined its lane
  /// more than `lowPriorityAging` before the normal head joined its own (then it has aged into
  /// the normal order), or the normal lane is empty.
  @inlinable
  mutating func takeReady(now: Duration) -> (key: Key, queued: Duration)? {
    guard self.readyCount > 0 else { return nil }
    self.dropStaleHeads()
    let entry: LaneEntry
    if let normal = self.normalLane.first {
      if let low = self.lowLane.first, low.since + self.lowPriorityAging <= normal.since {
        entry = self.lowLane.removeFirst()
      } else {
        entry = self.normalLane.removeFirst()
      }
    } else {
      entry = self.lowLane.removeFirst()
    }
    let queued = self.queued.removeValue(forKey: entry.key)!
    self.readyCount -= 1
    self.processing[entry.key] = now
    return (entry.key, now - queued.since)
  }

  /// One step of `get()`: a ready key, or finished, or a registered waiter.
  @inlinable
  mutating func attempt(
    now: Duration, previousWaiter: UInt64?, cancelled: Bool, effects: inout WorkQueueEffects<Key>
  ) -> WorkQueueAttempt<Key> {
    if let previousWaiter, self.timekeeperCandidate == previousWaiter { self.timekeeperCandidate = nil }
    defer { self.ensureTimekeeper(effects: &effects) }
    self.promoteDue(now: now, effects: &effects)
    if let (key, queued) = self.takeReady(now: now) { return .key(key, queued: queued) }
    if self.isFinished || cancelled { return .finished }
    let id = self.sequence()
    self.waiters[id] = Waiter()
    self.waiterOrder.append(id)
    self.waitingCount += 1
    if self.timekeeper == nil, let due = self.earliestDue() {
      self.timekeeper = (id, due)
      return .wait(id: id, deadline: due)
    }
    return .wait(id: id, deadline: nil)
  }

  /// Whether `get()` returns nil: shut down and nothing left to hand out.
  @inlinable
  var isFinished: Bool {
    switch self.shutdown {
    case nil: false
    case .abandon: true
    case .drain: self.readyCount == 0 && self.parkedCount == 0
    }
  }

  // MARK: done

  /// Marks `key` processed; returns how long it was processed, nil if it was not being processed.
  @inlinable
  mutating func done(_ key: Key, now: Duration, effects: inout WorkQueueEffects<Key>) -> Duration? {
    guard let started = self.processing.removeValue(forKey: key) else { return nil }
    if let parked = self.queued.removeValue(forKey: key) {
      self.parkedCount -= 1
      self.makeReady(key, priority: parked.priority, now: now, effects: &effects)
    }
    if self.isFinished { self.wakeAllWaiters(effects: &effects) }
    return now - started
  }

  // MARK: waiters

  /// The waiter to hand a key to: the longest waiting, but not the timekeeper while another waits.
  @inlinable
  mutating func popWaiter() -> UInt64? {
    guard self.waitingCount > 0 else { return nil }
    var skippedTimekeeper: UInt64?
    while let id = self.waiterOrder.popFirst() {
      guard let waiter = self.waiters[id], waiter.result == nil else { continue }
      if id == self.timekeeper?.id && self.waitingCount > 1 {
        skippedTimekeeper = id
        continue
      }
      if let skippedTimekeeper { self.waiterOrder.prepend(skippedTimekeeper) }
      if id == self.timekeeper?.id { self.timekeeper = nil }
      return id
    }
    if let skippedTimekeeper {
      self.timekeeper = nil
      return skippedTimekeeper
    }
    return nil
  }

  /// Gives `wake` to waiter `id`: resumes it after the lock is released, or leaves the result for
  /// it to pick up when it has not suspended yet.
  @inlinable
  mutating func deliver(_ wake: WorkQueueWake<Key>, to id: UInt64, effects: inout WorkQueueEffects<Key>) {
    guard var waiter = self.waiters[id], waiter.result == nil else { return }
    self.waitingCount -= 1
    // The order only matters for waiters without a result; with none left, it is all stale.
    if self.waitingCount == 0 { self.waiterOrder.removeAll(keepingCapacity: true) }
    if let continuation = waiter.continuation {
      self.waiters[id] = nil
      effects.resumes.append((continuation, wake))
    } else {
      waiter.result = wake
      self.waiters[id] = waiter
    }
  }

  /// Stores the continuation of waiter `id`; returns its result instead if it already has one.
  @inlinable
  mutating func suspend(
    _ id: UInt64, continuation: CheckedContinuation<WorkQueueWake<Key>, Never>
  ) -> WorkQueueWake<Key>? {
    guard var waiter = self.waiters[id] else { return .retry }
    if let result = waiter.result {
      self.waiters[id] = nil
      return result
    }
    waiter.continuation = continuation
    self.waiters[id] = waiter
    return nil
  }

  /// The waiter's task was cancelled: wake it to look again (it then returns nil).
  @inlinable
  mutating func cancel(_ id: UInt64, effects: inout WorkQueueEffects<Key>) {
    if self.timekeeper?.id == id {
      self.timekeeper = nil
      self.timekeeperCandidate = id
    }
    self.deliver(.retry, to: id, effects: &effects)
  }

  /// The timekeeper's sleep ended: move due keys, then wake the timekeeper to look again.
  @inlinable
  mutating func timerFired(_ id: UInt64, now: Duration, effects: inout WorkQueueEffects<Key>) {
    self.promoteDue(now: now, effects: &effects)
    if self.timekeeper?.id == id {
      self.timekeeper = nil
      self.timekeeperCandidate = id
      self.deliver(.retry, to: id, effects: &effects)
    }
    self.ensureTimekeeper(effects: &effects)
  }

  /// When delayed keys exist and `get()`s wait, one of them must keep the time.
  @inlinable
  mutating func ensureTimekeeper(effects: inout WorkQueueEffects<Key>) {
    guard self.timekeeper == nil, self.timekeeperCandidate == nil, self.waitingCount > 0,
      self.earliestDue() != nil
    else { return }
    while let id = self.waiterOrder.first {
      if let waiter = self.waiters[id], waiter.result == nil {
        self.timekeeperCandidate = id
        self.deliver(.retry, to: id, effects: &effects)
        return
      }
      self.waiterOrder.removeFirst()
    }
  }

  @inlinable
  mutating func wakeAllWaiters(effects: inout WorkQueueEffects<Key>) {
    guard self.waitingCount > 0 else { return }
    for (id, waiter) in self.waiters where waiter.result == nil {
      self.deliver(.retry, to: id, effects: &effects)
    }
    self.waiterOrder.removeAll()
    self.timekeeper = nil
  }

  // MARK: retries and shutdown

  @usableFromInline
  enum RetryDecision: Sendable {
    case scheduled(Duration)
    case dropped(retries: Int)
    case shutDown
  }

  @inlinable
  mutating func addRateLimited(
    _ key: Key, maxRetries: Int?, now: Duration, effects: inout WorkQueueEffects<Key>
  ) -> RetryDecision {
    guard self.shutdown == nil else { return .shutDown }
    let retries = self.requeues[key, default: 0]
    if let maxRetries, retries >= maxRetries {
      self.forget(key)
      return .dropped(retries: retries)
    }
    self.requeues[key] = retries + 1
    let delay = self.rateLimiter.delay(for: key, now: now)
    self.add(key, after: delay, priority: .normal, now: now, effects: &effects)
    return .scheduled(delay)
  }

  @inlinable
  mutating func forget(_ key: Key) {
    self.requeues[key] = nil
    self.rateLimiter.forget(key)
  }

  /// Shuts the queue down; returns how many queued and delayed keys were dropped.
  @inlinable
  mutating func shutDown(_ mode: WorkQueueShutdownMode, effects: inout WorkQueueEffects<Key>) -> Int {
    if self.shutdown == .abandon { return 0 }
    self.shutdown = mode
    var dropped = self.waiting.count
    self.waiting.removeAll()
    self.delayed = Heap()
    if mode == .abandon {
      dropped += self.readyCount + self.parkedCount
      self.queued.removeAll()
      self.normalLane.removeAll()
      self.lowLane.removeAll()
      self.readyCount = 0
      self.parkedCount = 0
    }
    if self.isFinished { self.wakeAllWaiters(effects: &effects) }
    return dropped
  }

  // MARK: gauges

  @inlinable
  func gauges(now: Duration, processingChanged: Bool) -> WorkQueueGauges {
    guard processingChanged else { return WorkQueueGauges(depth: self.readyCount, processing: nil) }
    var unfinished = Duration.zero
    var longest = Duration.zero
    for started in self.processing.values {
      let running = now - started
      unfinished += running
      longest = max(longest, running)
    }
    return WorkQueueGauges(
      depth: self.readyCount,
      processing: (unfinished.workQueueSeconds, longest.workQueueSeconds))
  }
}

extension Duration {
  /// The duration in seconds, as a `Double`.
  @inlinable
  var workQueueSeconds: Double {
    let (seconds, attoseconds) = self.components
    return Double(seconds) + Double(attoseconds) * 1e-18
  }
}
