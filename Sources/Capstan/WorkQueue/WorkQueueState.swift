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
  /// A key to process, and how long it was queued (nil when the queue records no times).
  case key(Key, queued: Duration?)
  /// The queue is shut down (or the task cancelled): `get()` returns nil.
  case finished
  /// Nothing is ready: wait as waiter `id`; with a deadline, this waiter keeps the time (it wakes
  /// at the earliest due delayed key).
  case wait(id: UInt64, deadline: Duration?)
}

/// Things to do after the lock is released.
@usableFromInline
struct WorkQueueEffects<Key: Hashable & Sendable>: Sendable {
  @usableFromInline typealias Resume = (CheckedContinuation<WorkQueueWake<Key>, Never>, WorkQueueWake<Key>)

  /// Waiters to resume; nil (not an empty array) when there are none, so the common case copies
  /// and destroys no array.
  @usableFromInline var resumes: [Resume]?
  /// Keys newly added to the queue (not deduplicated).
  @usableFromInline var adds = 0
  /// Keys handed straight to waiting `get()`s.
  @usableFromInline var handoffs = 0

  @inlinable
  init() {}

  @inlinable
  mutating func resume(_ continuation: CheckedContinuation<WorkQueueWake<Key>, Never>, with wake: WorkQueueWake<Key>) {
    if self.resumes == nil {
      self.resumes = [(continuation, wake)]
    } else {
      self.resumes!.append((continuation, wake))
    }
  }
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

/// The current time of one queue operation, read from the queue's clock only when first needed
/// (at most once per operation): with no metrics to record, no delayed keys and no `.low` keys,
/// adding, taking and finishing a key read no clock at all. (It holds only the value: the clock is
/// the state's, so making one per operation copies and retains nothing.)
@usableFromInline
struct WorkQueueNow: Sendable {
  @usableFromInline var value: Duration?

  @inlinable
  init() {
    self.value = nil
  }

  /// The time of this operation (time since the queue was made), read from `source` if not yet
  /// read.
  @inlinable
  mutating func read(_ source: WorkQueueTimeSource) -> Duration {
    if let value { return value }
    let value = source.now()
    self.value = value
    return value
  }

  /// Stands for a time that was not read: earlier than any time read from the clock. A `.normal`
  /// key gets it as its lane time when no `.low` key is queued (so none can have aged past it).
  @usableFromInline
  static let notRead: Duration = .seconds(Int64.min / 4)
}

extension Optional {
  /// Runs `body` on the value in place. On a dictionary's `subscript(key)` this is one hash
  /// lookup for reading and writing the key's entry (insert, update or remove).
  @inlinable
  mutating func workQueueUpdate<Result>(_ body: (inout Wrapped?) -> Result) -> Result {
    body(&self)
  }
}

/// The queue's state, always under the queue's lock.
///
/// - `keys` holds, for each key that is queued or being processed, one `KeyState` (client-go's
///   dirty and processing sets in one dictionary, so each call hashes its key once): `.ready` (in
///   a lane), `.processing` (handed out by `get()`, not yet `done`), or `.processingAndQueued`
///   (added again while processing; it goes to a lane when `done` is called).
/// - Lanes hold entries with a sequence number; an entry whose key is not `.ready` with that
///   sequence is stale (left behind when a `.low` key was promoted to `.normal`) and skipped.
/// - `delayed` is a heap of keys added with a delay; `waiting` holds each key's earliest due time
///   (a later delay of a waiting key is ignored, an earlier one replaces it).
/// - `waiters` are `get()` calls waiting for a key. At most one of them, the timekeeper, sleeps on
///   the clock until the earliest due delayed key.
/// - With metrics recorded (`recordsTimes`), each key being processed has a slot in
///   `processingStarts` holding its start, for the work duration and the two processing gauges;
///   without, no start is kept and no clock is read for them.
///
/// The state and the queue's hot paths are `@inlinable`, so a `WorkQueue<Key>` used from another
/// module is specialized for its key: unspecialized, add+get+done ran about ten times slower
/// (0.22 M against 2.1 M keys/s on the development machine), most of it in generic metadata lookups.
@usableFromInline
struct WorkQueueState<Key: Hashable & Sendable> {
  @usableFromInline
  enum Phase: UInt8 {
    /// In a lane, waiting for `get()`.
    case ready
    /// Handed out by `get()`, not yet `done`.
    case processing
    /// Being processed and added again meanwhile: made ready again by `done`.
    case processingAndQueued
  }

  @usableFromInline
  struct KeyState {
    @usableFromInline var phase: Phase
    /// The priority it is queued with (`.ready`, `.processingAndQueued`).
    @usableFromInline var priority: WorkQueuePriority
    /// Its slot in `processingStarts` while processing, or -1 when no times are recorded.
    @usableFromInline var slot: Int32
    /// `.ready`: the sequence of its current lane entry.
    @usableFromInline var sequence: UInt64
    /// `.ready`: when it was made ready (for `workqueue_queue_duration_seconds`; only with
    /// `recordsTimes`).
    @usableFromInline var since: Duration

    @inlinable
    init(phase: Phase, priority: WorkQueuePriority, slot: Int32, sequence: UInt64, since: Duration) {
      self.phase = phase
      self.priority = priority
      self.slot = slot
      self.sequence = sequence
      self.since = since
    }
  }

  @usableFromInline
  struct LaneEntry {
    @usableFromInline var key: Key
    @usableFromInline var sequence: UInt64
    /// When the entry joined its lane (for aging; ``WorkQueueNow/notRead`` for a `.normal`
    /// entry that joined while no `.low` entry was queued).
    @usableFromInline var since: Duration

    @inlinable
    init(key: Key, sequence: UInt64, since: Duration) {
      self.key = key
      self.sequence = sequence
      self.since = since
    }
  }

  @usableFromInline
  struct ProcessingSlot {
    @usableFromInline var started: Duration
    @usableFromInline var inUse: Bool

    @inlinable
    init(started: Duration, inUse: Bool) {
      self.started = started
      self.inUse = inUse
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
  /// The queue's clock.
  @usableFromInline let time: WorkQueueTimeSource
  /// Whether queue and work durations and the processing gauges are recorded (a real metrics
  /// factory is installed).
  @usableFromInline let recordsTimes: Bool
  @usableFromInline var rateLimiter: any WorkQueueRateLimiter<Key>

  @usableFromInline var keys: [Key: KeyState] = [:]
  @usableFromInline var normalLane = Deque<LaneEntry>()
  @usableFromInline var lowLane = Deque<LaneEntry>()
  /// Keys in a lane (stale entries excluded): the depth.
  @usableFromInline var readyCount = 0
  /// Keys being processed and queued again.
  @usableFromInline var parkedCount = 0
  @usableFromInline var processingStarts: [ProcessingSlot] = []
  @usableFromInline var freeSlots: [Int32] = []

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
  init(
    rateLimiter: any WorkQueueRateLimiter<Key>, lowPriorityAging: Duration, time: WorkQueueTimeSource,
    recordsTimes: Bool
  ) {
    self.rateLimiter = rateLimiter
    self.time = time
    self.lowPriorityAging = lowPriorityAging
    self.recordsTimes = recordsTimes
  }

  @inlinable
  mutating func sequence() -> UInt64 {
    self.nextSequence &+= 1
    return self.nextSequence
  }

  /// The lane time of an entry joining a lane now: the clock is read only when aging can compare
  /// it with a `.low` entry (a `.normal` entry joining while no `.low` entry is queued is older
  /// than any `.low` entry that comes later, so with a positive aging it is always served first).
  @inlinable
  func laneTime(_ priority: WorkQueuePriority, now: inout WorkQueueNow) -> Duration {
    if priority == .low || !self.lowLane.isEmpty || self.lowPriorityAging == .zero { return now.read(self.time) }
    return WorkQueueNow.notRead
  }

  /// The time a key is made ready, for its queue duration (only when times are recorded).
  @inlinable
  func readyTime(now: inout WorkQueueNow) -> Duration {
    self.recordsTimes ? now.read(self.time) : WorkQueueNow.notRead
  }

  // MARK: adding

  /// What `add` did to a key's entry.
  @usableFromInline
  enum AddOutcome {
    /// A new key, made ready.
    case inserted
    /// A key being processed, queued to run again after `done`.
    case parked
    /// A ready `.low` key raised to `.normal`.
    case raised
    /// Already queued: nothing to do.
    case unchanged
  }

  /// Adds `key` now; false when it was already queued (or the queue is shut down).
  @discardableResult
  @inlinable
  mutating func add(
    _ key: Key, priority: WorkQueuePriority, now: inout WorkQueueNow, effects: inout WorkQueueEffects<Key>
  ) -> Bool {
    guard self.shutdown == nil else { return false }
    if self.waitingCount > 0 {
      // Someone waits, so no key is ready: a new key goes straight to a waiter.
      guard self.keys[key] == nil else { return self.addExisting(key, priority: priority, now: &now) }
      effects.adds += 1
      self.makeReady(key, priority: priority, now: &now, effects: &effects)
      return true
    }
    // The common case: one lookup that inserts a new ready key or updates a known one.
    let sequence = self.sequence()
    let laneTime = self.laneTime(priority, now: &now)
    let readyTime = self.readyTime(now: &now)
    let outcome = self.keys[key].workQueueUpdate { entry -> AddOutcome in
      guard var state = entry else {
        entry = KeyState(phase: .ready, priority: priority, slot: -1, sequence: sequence, since: readyTime)
        return .inserted
      }
      switch state.phase {
      case .processing:
        state.phase = .processingAndQueued
        state.priority = priority
        entry = state
        return .parked
      case .ready, .processingAndQueued:
        guard priority == .normal && state.priority == .low else { return .unchanged }
        state.priority = .normal
        if state.phase == .ready { state.sequence = sequence }
        entry = state
        return state.phase == .ready ? .raised : .unchanged
      }
    }
    switch outcome {
    case .inserted:
      effects.adds += 1
      self.readyCount += 1
      let entry = LaneEntry(key: key, sequence: sequence, since: laneTime)
      switch priority {
      case .normal: self.normalLane.append(entry)
      case .low: self.lowLane.append(entry)
      }
      return true
    case .parked:
      effects.adds += 1
      self.parkedCount += 1
      return true
    case .raised:
      // A queued `.low` key raised to `.normal`: its low lane entry is stale from now on.
      self.normalLane.append(LaneEntry(key: key, sequence: sequence, since: now.read(self.time)))
      return false
    case .unchanged:
      return false
    }
  }

  /// `add` of a key that is already known while `get()`s wait (so it is being processed).
  @inlinable
  mutating func addExisting(_ key: Key, priority: WorkQueuePriority, now: inout WorkQueueNow) -> Bool {
    guard var state = self.keys[key] else { return false }
    switch state.phase {
    case .processing:
      state.phase = .processingAndQueued
      state.priority = priority
      self.keys[key] = state
      self.parkedCount += 1
      return true
    case .processingAndQueued:
      if priority == .normal { state.priority = .normal }
      self.keys[key] = state
      return false
    case .ready:
      // Not reached (waiters exist only while nothing is ready), but kept consistent.
      guard priority == .normal && state.priority == .low else { return false }
      state.priority = .normal
      state.sequence = self.sequence()
      self.keys[key] = state
      self.normalLane.append(LaneEntry(key: key, sequence: state.sequence, since: now.read(self.time)))
      return false
    }
  }

  /// Puts a key that is not known (or was just removed) into its lane, or hands it to a waiting
  /// `get()`.
  @inlinable
  mutating func makeReady(
    _ key: Key, priority: WorkQueuePriority, now: inout WorkQueueNow, effects: inout WorkQueueEffects<Key>
  ) {
    if let waiter = self.popWaiter() {
      let slot = self.startProcessing(now: &now)
      self.keys[key] = KeyState(phase: .processing, priority: priority, slot: slot, sequence: 0, since: .zero)
      self.deliver(.key(key), to: waiter, effects: &effects)
      effects.handoffs += 1
      return
    }
    let sequence = self.sequence()
    let since = self.readyTime(now: &now)
    self.keys[key] = KeyState(phase: .ready, priority: priority, slot: -1, sequence: sequence, since: since)
    let entry = LaneEntry(key: key, sequence: sequence, since: self.laneTime(priority, now: &now))
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
    _ key: Key, after delay: Duration, priority: WorkQueuePriority, now: inout WorkQueueNow,
    effects: inout WorkQueueEffects<Key>
  ) -> Bool {
    guard self.shutdown == nil else { return false }
    if delay <= .zero {
      self.add(key, priority: priority, now: &now, effects: &effects)
      return true
    }
    let due = now.read(self.time) + delay
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

  /// Moves delayed keys that are due into the queue (reads the clock only if a key is delayed).
  @inlinable
  @inline(__always)
  mutating func promoteDue(now: inout WorkQueueNow, effects: inout WorkQueueEffects<Key>) {
    if !self.delayed.isEmpty { self.promoteDelayed(now: &now, effects: &effects) }
  }

  @inlinable
  mutating func promoteDelayed(now: inout WorkQueueNow, effects: inout WorkQueueEffects<Key>) {
    let time = now.read(self.time)
    while let first = self.delayed.min, first.due <= time {
      self.delayed.removeMin()
      guard let waiting = self.waiting[first.key], waiting.sequence == first.sequence else { continue }
      self.waiting[first.key] = nil
      self.add(first.key, priority: waiting.priority, now: &now, effects: &effects)
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
    guard let state = self.keys[entry.key] else { return false }
    return state.phase == .ready && state.sequence == entry.sequence
  }

  /// Takes the next ready key: the normal lane's head, unless the low lane's head joined its lane
  /// more than `lowPriorityAging` before the normal head joined its own (then it has aged into
  /// the normal order), or the normal lane is empty. Returns the key and how long it was queued
  /// (nil when no times are recorded).
  @inlinable
  mutating func takeReady(now: inout WorkQueueNow) -> (key: Key, queued: Duration?)? {
    guard self.readyCount > 0 else { return nil }
    var fromLowLane = false
    if !self.lowLane.isEmpty {
      while let first = self.normalLane.first, !self.isCurrent(first) { self.normalLane.removeFirst() }
      while let first = self.lowLane.first, !self.isCurrent(first) { self.lowLane.removeFirst() }
      if let low = self.lowLane.first {
        if let normal = self.normalLane.first {
          fromLowLane = low.since + self.lowPriorityAging <= normal.since
        } else {
          fromLowLane = true
        }
      }
    }
    let slot = self.startProcessing(now: &now)
    while let entry = fromLowLane ? self.lowLane.popFirst() : self.normalLane.popFirst() {
      // Marks the key processing if the entry is current, in one lookup.
      let since = self.keys[entry.key].workQueueUpdate { state -> Duration? in
        guard let current = state, current.phase == .ready, current.sequence == entry.sequence else { return nil }
        state = KeyState(phase: .processing, priority: current.priority, slot: slot, sequence: 0, since: .zero)
        return current.since
      }
      guard let since else { continue }
      self.readyCount -= 1
      return (entry.key, self.recordsTimes ? now.read(self.time) - since : nil)
    }
    preconditionFailure("WorkQueue: ready count \(self.readyCount) but no current lane entry")
  }

  /// One step of `get()`: a ready key, or finished, or a registered waiter.
  @inlinable
  mutating func attempt(
    now: inout WorkQueueNow, previousWaiter: UInt64?, effects: inout WorkQueueEffects<Key>
  ) -> WorkQueueAttempt<Key> {
    if let previousWaiter, self.timekeeperCandidate == previousWaiter { self.timekeeperCandidate = nil }
    defer { self.ensureTimekeeper(effects: &effects) }
    self.promoteDue(now: &now, effects: &effects)
    if let (key, queued) = self.takeReady(now: &now) { return .key(key, queued: queued) }
    if self.isFinished || Task.isCancelled { return .finished }
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

  // MARK: processing times

  /// Records that a key starts processing now; returns its slot (-1 when no times are recorded).
  @inlinable
  mutating func startProcessing(now: inout WorkQueueNow) -> Int32 {
    guard self.recordsTimes else { return -1 }
    let started = ProcessingSlot(started: now.read(self.time), inUse: true)
    if let slot = self.freeSlots.popLast() {
      self.processingStarts[Int(slot)] = started
      return slot
    }
    self.processingStarts.append(started)
    return Int32(self.processingStarts.count - 1)
  }

  /// Frees a processing slot; returns how long its key was processed.
  @inlinable
  mutating func finishProcessing(slot: Int32, now: inout WorkQueueNow) -> Duration? {
    guard slot >= 0 else { return nil }
    let started = self.processingStarts[Int(slot)].started
    self.processingStarts[Int(slot)].inUse = false
    self.freeSlots.append(slot)
    return now.read(self.time) - started
  }

  // MARK: done

  /// What `done` found.
  @usableFromInline
  enum DoneOutcome {
    /// The key was not being processed.
    case notProcessing
    /// Finished; the slot of its start.
    case finished(slot: Int32)
    /// Finished and queued again meanwhile, with this priority.
    case requeue(slot: Int32, priority: WorkQueuePriority)
  }

  /// Marks `key` processed; returns how long it was processed (nil if it was not being processed,
  /// or when no times are recorded).
  @inlinable
  mutating func done(_ key: Key, now: inout WorkQueueNow, effects: inout WorkQueueEffects<Key>) -> Duration? {
    let outcome = self.keys[key].workQueueUpdate { entry -> DoneOutcome in
      guard let state = entry, state.phase != .ready else { return .notProcessing }
      entry = nil
      return state.phase == .processing
        ? .finished(slot: state.slot) : .requeue(slot: state.slot, priority: state.priority)
    }
    let worked: Duration?
    switch outcome {
    case .notProcessing:
      return nil
    case .finished(let slot):
      worked = self.finishProcessing(slot: slot, now: &now)
    case .requeue(let slot, let priority):
      worked = self.finishProcessing(slot: slot, now: &now)
      self.parkedCount -= 1
      self.makeReady(key, priority: priority, now: &now, effects: &effects)
    }
    if self.isFinished { self.wakeAllWaiters(effects: &effects) }
    return worked
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
      effects.resume(continuation, with: wake)
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
  mutating func timerFired(_ id: UInt64, now: inout WorkQueueNow, effects: inout WorkQueueEffects<Key>) {
    self.promoteDue(now: &now, effects: &effects)
    if self.timekeeper?.id == id {
      self.timekeeper = nil
      self.timekeeperCandidate = id
      self.deliver(.retry, to: id, effects: &effects)
    }
    self.ensureTimekeeper(effects: &effects)
  }

  /// When delayed keys exist and `get()`s wait, one of them must keep the time.
  @inlinable
  @inline(__always)
  mutating func ensureTimekeeper(effects: inout WorkQueueEffects<Key>) {
    if self.waitingCount > 0 && !self.delayed.isEmpty { self.appointTimekeeper(effects: &effects) }
  }

  @inlinable
  mutating func appointTimekeeper(effects: inout WorkQueueEffects<Key>) {
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
    _ key: Key, maxRetries: Int?, now: inout WorkQueueNow, effects: inout WorkQueueEffects<Key>
  ) -> RetryDecision {
    guard self.shutdown == nil else { return .shutDown }
    let retries = self.requeues[key, default: 0]
    if let maxRetries, retries >= maxRetries {
      self.forget(key)
      return .dropped(retries: retries)
    }
    self.requeues[key] = retries + 1
    let delay = self.rateLimiter.delay(for: key, now: now.read(self.time))
    self.add(key, after: delay, priority: .normal, now: &now, effects: &effects)
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
      // Keys being processed stay known (their `done` still counts); queued ones are dropped.
      self.keys = self.keys.compactMapValues { state in
        switch state.phase {
        case .ready: nil
        case .processing: state
        case .processingAndQueued:
          KeyState(phase: .processing, priority: state.priority, slot: state.slot, sequence: 0, since: .zero)
        }
      }
      self.normalLane.removeAll()
      self.lowLane.removeAll()
      self.readyCount = 0
      self.parkedCount = 0
    }
    if self.isFinished { self.wakeAllWaiters(effects: &effects) }
    return dropped
  }

  // MARK: gauges

  /// The gauges as of now; nil when no metrics are recorded. (`mutating` only so that it reads the
  /// state in place: as a non-mutating method called under the lock, the optimizer copied the
  /// whole state, retaining every buffer, to call it.)
  @inlinable
  mutating func gauges(now: inout WorkQueueNow, processingChanged: Bool) -> WorkQueueGauges? {
    guard self.recordsTimes else { return nil }
    guard processingChanged else { return WorkQueueGauges(depth: self.readyCount, processing: nil) }
    let time = now.read(self.time)
    var unfinished = Duration.zero
    var longest = Duration.zero
    for slot in self.processingStarts where slot.inUse {
      let running = time - slot.started
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
