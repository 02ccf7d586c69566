import DequeModule
import HeapModule

import struct Foundation.Data

/// One revision of one key: its value, or a deletion (`kv == nil`).
struct KeyRevision: Sendable {
  var revision: Int64
  var kv: StoredKeyValue?
}

/// One change in the store's history, as watches replay it.
struct LoggedEvent: Sendable {
  var revision: Int64
  var key: StoreKey
  /// The new value; `nil` for a deletion.
  var kv: StoredKeyValue?
  var previous: StoredKeyValue?

  func watchEvent(prevKV: Bool) -> BackendWatchEvent {
    if let kv { return .put(kv, previous: prevKV ? self.previous : nil) }
    return .delete(key: self.key.string, revision: self.revision, previous: prevKV ? self.previous : nil)
  }
}

/// When a lease falls due (entries go stale when the lease is renewed or revoked; checked on pop).
struct LeaseDeadline: Comparable, Sendable {
  var deadline: Duration
  var id: Int64
  static func < (lhs: LeaseDeadline, rhs: LeaseDeadline) -> Bool {
    (lhs.deadline, lhs.id) < (rhs.deadline, rhs.id)
  }
}

struct LeaseState: Sendable {
  let id: Int64
  let ttl: Int64
  /// When the lease expires if nobody keeps it alive (time since the backend's clock origin).
  var expiresAt: Duration
  var keys: Set<StoreKey> = []
  var keepers: [Int: AsyncStream<BackendLeaseEvent>.Continuation] = [:]
  var lastRenewal: Duration = .zero
}

/// One open watch.
///
/// A watcher is *synced* when every event up to the store's revision is in its buffer: new
/// commits are appended to the buffer directly. When the buffer holds `watchBufferLimit` events
/// (the consumer is slow), it stops buffering and becomes *unsynced*, remembering the first
/// revision it still has to deliver; once the consumer has drained the buffer, its next call
/// catches up from the store's history (like etcd's unsynced watchers). Memory per watcher stays
/// bounded; a watcher that falls behind a compaction ends with `compacted`.
struct WatcherState: Sendable {
  let range: StoreKeyRange
  let prevKV: Bool
  let progressNotify: Bool
  /// The first revision not yet examined for this watcher.
  var nextRevision: Int64
  var synced: Bool
  var buffer: Deque<BackendWatchEvent> = []
  /// The consumer waiting for an event (only ever set while synced with an empty buffer).
  var waiter: CheckedContinuation<BackendWatchEvent?, any Error>?
  /// Set when the watch is to end once its buffer has drained.
  var ending: BackendError?
  /// A progress request arrived while unsynced: report progress once caught up.
  var progressRequested = false
  /// Whether events were delivered since the last periodic progress tick.
  var deliveredSinceTick = false
  /// Injected stall: nothing more is handed to the consumer (events stay buffered).
  var stalled = false

  /// Hands the next event (or the ending) to a waiting consumer. Returns `true` when the watch
  /// has thereby ended (the caller removes it).
  @discardableResult
  mutating func wakeWaiter() -> Bool {
    guard let waiter = self.waiter, !self.stalled else { return false }
    if let event = self.buffer.popFirst() {
      self.waiter = nil
      waiter.resume(returning: event)
    } else if let ending = self.ending {
      self.waiter = nil
      waiter.resume(throwing: ending)
      return true
    }
    return false
  }
}

/// What the consumer of a watch gets next.
enum WatchStep: Sendable {
  case event(BackendWatchEvent)
  case end(BackendError?)
  case wait
}

/// A write in progress: every change gets `revision` (the store's revision + 1); committed at once.
struct PendingWrite: Sendable {
  let revision: Int64
  var events: [LoggedEvent] = []
}

/// The limits a request is checked against (etcd's defaults unless configured).
struct MemoryStoreLimits: Sendable {
  var maximumTxnOperations: Int
  var maximumRequestBytes: Int
  var minimumLeaseTTL: Int64
  var watchBufferLimit: Int
}

/// Gauge values to record after a call.
struct MemoryStoreGauges: Equatable, Sendable {
  var revision: Int64
  var keys: Int
  var watchers: Int
  var leases: Int
}

/// The whole state of a ``MemoryBackend``, mutated only under its mutex.
struct MemoryStoreState: Sendable {
  static let maximumLeaseTTL: Int64 = 9_000_000_000

  let limits: MemoryStoreLimits
  /// The time of the current call (since the backend clock's origin).
  var now: Duration = .zero

  var revision: Int64 = 1
  var compactRevision: Int64 = 0
  var histories: [StoreKey: [KeyRevision]] = [:]
  var index = SortedKeyIndex()
  var liveKeys = 0
  var log: Deque<LoggedEvent> = []
  /// Paginated reads under way: where each one's next page starts, and how many keys remain from
  /// there (see ``range(_:options:)``).
  var paginations: [PaginationPosition: Int] = [:]
  static let maximumRememberedPaginations = 256

  var leases: [Int64: LeaseState] = [:]
  var leaseDeadlines = Heap<LeaseDeadline>()
  var nextLeaseID: Int64 = 1
  var nextKeeperID = 0
  /// Keep-alive streams to finish once the lock is released (finishing runs their termination handler).
  var keepersToFinish: [AsyncStream<BackendLeaseEvent>.Continuation] = []

  var watchers: [Int: WatcherState] = [:]
  var nextWatcherID = 0

  var failNextWrites = 0
  var failNextReads = 0
  /// Watches that stopped delivering (``MemoryBackend/Faults/stallWatches()``).
  var stalledWatchers: Set<Int> = []
  var latency: Duration = .zero
  var lastGauges: MemoryStoreGauges?

  /// Where a paginated read's next page starts: a key range at a revision.
  struct PaginationPosition: Hashable, Sendable {
    let begin: StoreKey
    let end: StoreKey?
    let revision: Int64
  }

  init(limits: MemoryStoreLimits) {
    self.limits = limits
  }

  // MARK: Reading

  static func value(in history: [KeyRevision], at revision: Int64) -> StoredKeyValue? {
    guard let last = history.last else { return nil }
    if last.revision <= revision { return last.kv }
    // The last entry at or before `revision`.
    var low = 0
    var high = history.count
    while low < high {
      let middle = (low + high) / 2
      if history[middle].revision <= revision { low = middle + 1 } else { high = middle }
    }
    return low == 0 ? nil : history[low - 1].kv
  }

  func latest(_ key: StoreKey) -> StoredKeyValue? { self.histories[key]?.last?.kv }

  /// Checks that `revision` (0: now) can be read; returns the revision to read at.
  func readableRevision(_ requested: Int64) throws(BackendError) -> Int64 {
    guard requested > 0 else { return self.revision }
    if requested > self.revision {
      throw BackendError(code: .futureRevision, message: "mvcc: required revision is a future revision")
    }
    if requested < self.compactRevision {
      throw BackendError(
        code: .compacted, message: "mvcc: required revision has been compacted", compactRevision: self.compactRevision)
    }
    return requested
  }

  /// Reads `range` at `revision`. With `knownCount` (the number of keys the range holds at that
  /// revision, known from the page before), stops after the page instead of counting the rest.
  func read(
    _ range: StoreKeyRange, options: BackendRangeOptions, at revision: Int64, knownCount: Int? = nil
  ) -> BackendRangePage {
    var kvs: [StoredKeyValue] = []
    var count = 0
    let limit = max(0, options.limit)
    self.index.forEach(in: range) { key in
      guard let history = self.histories[key], let kv = Self.value(in: history, at: revision) else { return true }
      count += 1
      if limit == 0 || kvs.count < limit {
        if options.keysOnly {
          var keyOnly = kv
          keyOnly.value = Data()
          kvs.append(keyOnly)
        } else {
          kvs.append(kv)
        }
      }
      return knownCount == nil || kvs.count < limit
    }
    let total = knownCount ?? count
    return BackendRangePage(kvs: kvs, more: total > kvs.count, count: total, revision: revision)
  }

  // MARK: Validation

  static func validate(_ range: KeyRange, operation: String) throws(BackendError) {
    guard !range.key.isEmpty else {
      throw BackendError(code: .invalidArgument, message: "etcdserver: key is not provided (\(operation))")
    }
    if !range.isSingleKey, range.rangeEnd != "\0", compareUTF8(range.key, range.rangeEnd) >= 0 {
      throw BackendError(
        code: .invalidArgument,
        message: "\(operation): the range end must sort after the key (got [\(range.key), \(range.rangeEnd)))")
    }
  }

  func checkSize(_ bytes: Int) throws(BackendError) {
    if bytes > self.limits.maximumRequestBytes {
      throw BackendError(
        code: .requestTooLarge,
        message: "etcdserver: request is too large (\(bytes) bytes; the limit is \(self.limits.maximumRequestBytes))")
    }
  }

  func checkLease(_ lease: Int64?) throws(BackendError) {
    if let lease, lease != 0, self.leases[lease] == nil {
      throw BackendError(code: .leaseNotFound, message: "etcdserver: requested lease not found (lease \(lease))")
    }
  }

  mutating func consumeInjectedReadFault(_ operation: String) throws(BackendError) {
    if self.failNextReads > 0 {
      self.failNextReads -= 1
      throw BackendError(code: .unavailable, message: "injected fault (\(operation))")
    }
  }

  mutating func consumeInjectedWriteFault(_ operation: String) throws(BackendError) {
    if self.failNextWrites > 0 {
      self.failNextWrites -= 1
      throw BackendError(code: .unavailable, message: "injected fault (\(operation))")
    }
  }

  // MARK: Writing

  mutating func applyPut(_ key: StoreKey, value: Data, lease: Int64, in write: inout PendingWrite) -> BackendWriteResult {
    let existing = self.histories[key] != nil
    let previous = self.histories[key]?.last?.kv
    let kv = StoredKeyValue(
      key: key.string, value: value, createRevision: previous?.createRevision ?? write.revision,
      modRevision: write.revision, version: (previous?.version ?? 0) + 1, lease: lease)
    self.histories[key, default: []].append(KeyRevision(revision: write.revision, kv: kv))
    if !existing { self.index.insert(key) }
    if previous == nil { self.liveKeys += 1 }
    if let oldLease = previous?.lease, oldLease != 0, oldLease != lease { self.leases[oldLease]?.keys.remove(key) }
    if lease != 0 { self.leases[lease]?.keys.insert(key) }
    write.events.append(LoggedEvent(revision: write.revision, key: key, kv: kv, previous: previous))
    return BackendWriteResult(revision: write.revision, previous: previous)
  }

  mutating func applyDelete(_ range: StoreKeyRange, in write: inout PendingWrite) -> BackendDeleteResult {
    var doomed: [StoreKey] = []
    self.index.forEach(in: range) { key in
      if self.histories[key]?.last?.kv != nil { doomed.append(key) }
      return true
    }
    var deleted: [StoredKeyValue] = []
    deleted.reserveCapacity(doomed.count)
    for key in doomed { deleted.append(self.applyDeleteKey(key, in: &write)) }
    let revision = deleted.isEmpty && write.events.isEmpty ? self.revision : write.revision
    return BackendDeleteResult(revision: revision, deleted: deleted)
  }

  /// Deletes a key that exists; returns its last value.
  @discardableResult
  mutating func applyDeleteKey(_ key: StoreKey, in write: inout PendingWrite) -> StoredKeyValue {
    let previous = self.histories[key]!.last!.kv!
    self.histories[key]!.append(KeyRevision(revision: write.revision, kv: nil))
    self.liveKeys -= 1
    if previous.lease != 0 { self.leases[previous.lease]?.keys.remove(key) }
    write.events.append(LoggedEvent(revision: write.revision, key: key, kv: nil, previous: previous))
    return previous
  }

  /// Makes a write visible: bumps the revision (if anything changed), logs and fans out its events.
  mutating func commit(_ write: PendingWrite) {
    guard !write.events.isEmpty else { return }
    self.revision = write.revision
    self.log.append(contentsOf: write.events)
    let limit = self.limits.watchBufferLimit
    for index in self.watchers.values.indices {
      Self.deliver(write.events, revision: write.revision, to: &self.watchers.values[index], bufferLimit: limit)
    }
  }

  private static func deliver(
    _ events: [LoggedEvent], revision: Int64, to watcher: inout WatcherState, bufferLimit: Int
  ) {
    guard watcher.synced, watcher.ending == nil, revision >= watcher.nextRevision else { return }
    if watcher.buffer.count >= bufferLimit {
      // A slow consumer: stop buffering; it catches up from history once it has drained.
      watcher.synced = false
      watcher.nextRevision = revision
      return
    }
    var delivered = false
    for event in events where watcher.range.contains(event.key) {
      watcher.buffer.append(event.watchEvent(prevKV: watcher.prevKV))
      delivered = true
    }
    watcher.nextRevision = revision + 1
    if delivered {
      watcher.deliveredSinceTick = true
      watcher.wakeWaiter()
    }
  }

  // MARK: Operations

  mutating func put(_ key: String, value: Data, lease: Int64?) throws(BackendError) -> BackendWriteResult {
    try self.consumeInjectedWriteFault("put")
    try Self.validate(.key(key), operation: "put")
    try self.checkSize(key.utf8.count + value.count)
    try self.checkLease(lease)
    var write = PendingWrite(revision: self.revision + 1)
    let result = self.applyPut(StoreKey(key), value: value, lease: lease ?? 0, in: &write)
    self.commit(write)
    return result
  }

  mutating func delete(_ range: KeyRange) throws(BackendError) -> BackendDeleteResult {
    try self.consumeInjectedWriteFault("delete")
    try Self.validate(range, operation: "delete")
    var write = PendingWrite(revision: self.revision + 1)
    let result = self.applyDelete(StoreKeyRange(range), in: &write)
    self.commit(write)
    return result
  }

  mutating func range(_ range: KeyRange, options: BackendRangeOptions) throws(BackendError) -> BackendRangePage {
    try Self.validate(range, operation: "range")
    let revision = try self.readableRevision(options.revision)
    let keys = StoreKeyRange(range)
    guard options.limit > 0, !keys.isSingleKey else { return self.read(keys, options: options, at: revision) }
    // A paginated read asks next for the keys after this page's last, at the same revision: the
    // count of what remains is then this page's count less its keys, so no page recounts the
    // rest of the range (history at a revision never changes, so the figure stays exact).
    let asked = PaginationPosition(begin: keys.begin, end: keys.end, revision: revision)
    let page = self.read(keys, options: options, at: revision, knownCount: self.paginations.removeValue(forKey: asked))
    if page.more, let last = page.kvs.last {
      if self.paginations.count >= Self.maximumRememberedPaginations { self.paginations.removeAll(keepingCapacity: true) }
      let next = PaginationPosition(begin: StoreKey(last.key + "\u{0}"), end: keys.end, revision: revision)
      self.paginations[next] = page.count - page.kvs.count
    }
    return page
  }

  func compare(_ compare: BackendCompare) -> Bool {
    let kv = self.latest(StoreKey(compare.key))
    let order: Int
    switch compare.target {
    case .value(let target):
      // etcd: a value compare on a missing key always fails.
      guard let kv else { return false }
      order = kv.value.lexicographicallyPrecedes(target) ? -1 : (kv.value == target ? 0 : 1)
    case .modRevision(let target): order = Self.order(kv?.modRevision ?? 0, target)
    case .createRevision(let target): order = Self.order(kv?.createRevision ?? 0, target)
    case .version(let target): order = Self.order(kv?.version ?? 0, target)
    }
    switch compare.relation {
    case .equal: return order == 0
    case .notEqual: return order != 0
    case .less: return order < 0
    case .greater: return order > 0
    }
  }

  private static func order(_ lhs: Int64, _ rhs: Int64) -> Int { lhs < rhs ? -1 : (lhs == rhs ? 0 : 1) }

  func validate(_ txn: BackendTxn) throws(BackendError) {
    let maximum = self.limits.maximumTxnOperations
    if txn.compares.count > maximum || txn.success.count > maximum || txn.failure.count > maximum {
      throw BackendError(
        code: .invalidArgument, message: "etcdserver: too many operations in txn request (the limit is \(maximum))")
    }
    var bytes = 0
    for compare in txn.compares {
      guard !compare.key.isEmpty else {
        throw BackendError(code: .invalidArgument, message: "etcdserver: key is not provided (txn compare)")
      }
      bytes += compare.key.utf8.count
      if case .value(let value) = compare.target { bytes += value.count }
    }
    for branch in [txn.success, txn.failure] {
      var puts = Set<StoreKey>()
      var deletes: [StoreKeyRange] = []
      for operation in branch {
        switch operation {
        case .range(let range, _):
          try Self.validate(range, operation: "txn range")
          bytes += range.key.utf8.count + range.rangeEnd.utf8.count
        case .delete(let range):
          try Self.validate(range, operation: "txn delete")
          bytes += range.key.utf8.count + range.rangeEnd.utf8.count
          deletes.append(StoreKeyRange(range))
        case .put(let key, let value, _):
          try Self.validate(.key(key), operation: "txn put")
          bytes += key.utf8.count + value.count
          guard puts.insert(StoreKey(key)).inserted else {
            throw BackendError(code: .invalidArgument, message: "etcdserver: duplicate key given in txn request (\(key))")
          }
        }
      }
      for key in puts where deletes.contains(where: { $0.contains(key) }) {
        throw BackendError(
          code: .invalidArgument, message: "etcdserver: duplicate key given in txn request (\(key.string))")
      }
    }
    try self.checkSize(bytes)
  }

  mutating func txn(_ txn: BackendTxn) throws(BackendError) -> BackendTxnResult {
    try self.validate(txn)
    let isWrite = (txn.success + txn.failure).contains { operation in
      if case .range = operation { return false }
      return true
    }
    if isWrite { try self.consumeInjectedWriteFault("txn") }
    let succeeded = txn.compares.allSatisfy { self.compare($0) }
    let operations = succeeded ? txn.success : txn.failure
    // Check everything that could fail before changing anything: the transaction is atomic.
    for operation in operations {
      switch operation {
      case .range(_, let options): _ = try self.readableRevision(options.revision)
      case .put(_, _, let lease): try self.checkLease(lease)
      case .delete: break
      }
    }
    var write = PendingWrite(revision: self.revision + 1)
    var results: [BackendOperationResult] = []
    results.reserveCapacity(operations.count)
    for operation in operations {
      switch operation {
      case .range(let range, let options):
        // Reads inside a transaction see its earlier writes (etcd reads at the pending revision).
        let revision = options.revision > 0 ? options.revision : (write.events.isEmpty ? self.revision : write.revision)
        results.append(.range(self.read(StoreKeyRange(range), options: options, at: revision)))
      case .put(let key, let value, let lease):
        results.append(.put(self.applyPut(StoreKey(key), value: value, lease: lease ?? 0, in: &write)))
      case .delete(let range):
        results.append(.delete(self.applyDelete(StoreKeyRange(range), in: &write)))
      }
    }
    self.commit(write)
    return BackendTxnResult(succeeded: succeeded, revision: self.revision, results: results)
  }

  mutating func compact(to target: Int64) throws(BackendError) {
    if target <= self.compactRevision {
      throw BackendError(
        code: .compacted, message: "mvcc: required revision has been compacted", compactRevision: self.compactRevision)
    }
    if target > self.revision {
      throw BackendError(code: .futureRevision, message: "mvcc: required revision is a future revision")
    }
    var touched = Set<StoreKey>()
    while let first = self.log.first, first.revision < target {
      touched.insert(first.key)
      self.log.removeFirst()
    }
    for key in touched {
      guard var history = self.histories.removeValue(forKey: key) else { continue }
      // Keep the last value at or before the target (unless it is a deletion) and everything after.
      var last = -1
      for (position, entry) in history.enumerated() where entry.revision <= target { last = position }
      if last >= 0 {
        let dropThrough = history[last].kv == nil ? last : last - 1
        if dropThrough >= 0 { history.removeSubrange(0...dropThrough) }
      }
      if history.isEmpty {
        self.index.remove(key)
      } else {
        self.histories[key] = history
      }
    }
    self.compactRevision = target
    // Unsynced watchers that fell behind end when they next catch up.
  }

  // MARK: Leases

  mutating func grantLease(ttl: Int64) throws(BackendError) -> BackendLease {
    try self.consumeInjectedWriteFault("lease grant")
    guard ttl > 0 else {
      throw BackendError(code: .invalidArgument, message: "lease grant: TTL must be positive, got \(ttl)")
    }
    guard ttl <= Self.maximumLeaseTTL else {
      throw BackendError(code: .invalidArgument, message: "etcdserver: too large lease TTL (\(ttl))")
    }
    let granted = max(ttl, self.limits.minimumLeaseTTL)
    let id = self.nextLeaseID
    self.nextLeaseID += 1
    let expiry = self.now + .seconds(granted)
    self.leases[id] = LeaseState(id: id, ttl: granted, expiresAt: expiry)
    self.leaseDeadlines.insert(LeaseDeadline(deadline: expiry, id: id))
    return BackendLease(id: id, ttl: granted)
  }

  mutating func revokeLease(_ id: Int64, reason: String) throws(BackendError) {
    guard let lease = self.leases.removeValue(forKey: id) else {
      throw BackendError(code: .leaseNotFound, message: "etcdserver: requested lease not found (lease \(id))")
    }
    // Every attached key goes in one revision, in key order (as etcd's lessor does).
    var write = PendingWrite(revision: self.revision + 1)
    for key in lease.keys.sorted() where self.latest(key) != nil {
      self.applyDeleteKey(key, in: &write)
    }
    self.commit(write)
    for keeper in lease.keepers.values {
      keeper.yield(.lost(reason: reason))
      self.keepersToFinish.append(keeper)
    }
  }

  func leaseTimeToLive(_ id: Int64) throws(BackendError) -> Int64 {
    guard let lease = self.leases[id] else {
      throw BackendError(code: .leaseNotFound, message: "etcdserver: requested lease not found (lease \(id))")
    }
    if !lease.keepers.isEmpty { return lease.ttl }
    return max(0, (lease.expiresAt - self.now).components.seconds)
  }

  /// Revokes every lease that is due and not kept alive.
  mutating func expireLeases() {
    while let first = self.leaseDeadlines.min, first.deadline <= self.now {
      self.leaseDeadlines.removeMin()
      guard let lease = self.leases[first.id], lease.keepers.isEmpty, lease.expiresAt <= self.now else { continue }
      try? self.revokeLease(first.id, reason: "lease \(first.id) expired")
    }
  }

  /// Starts keeping `id` alive for `keeper`; `false` if the lease does not exist.
  mutating func addKeeper(_ id: Int64, keeper: AsyncStream<BackendLeaseEvent>.Continuation) -> Int? {
    guard self.leases[id] != nil else { return nil }
    let keeperID = self.nextKeeperID
    self.nextKeeperID += 1
    self.leases[id]!.keepers[keeperID] = keeper
    self.leases[id]!.lastRenewal = self.now
    keeper.yield(.renewed(ttl: self.leases[id]!.ttl))
    return keeperID
  }

  /// Stops one keep-alive; the last one to stop restarts the lease's TTL countdown from now.
  mutating func removeKeeper(_ id: Int64, keeperID: Int) {
    guard let keeper = self.leases[id]?.keepers.removeValue(forKey: keeperID) else { return }
    self.keepersToFinish.append(keeper)
    if self.leases[id]!.keepers.isEmpty {
      let expiry = self.now + .seconds(self.leases[id]!.ttl)
      self.leases[id]!.expiresAt = expiry
      self.leaseDeadlines.insert(LeaseDeadline(deadline: expiry, id: id))
    }
  }

  /// Reports a renewal to the keepers of every lease renewed a third of its TTL ago.
  mutating func renewKeptAliveLeases() {
    for index in self.leases.values.indices where !self.leases.values[index].keepers.isEmpty {
      let lease = self.leases.values[index]
      guard self.now - lease.lastRenewal >= .seconds(lease.ttl) / 3 else { continue }
      self.leases.values[index].lastRenewal = self.now
      for keeper in lease.keepers.values { keeper.yield(.renewed(ttl: lease.ttl)) }
    }
  }

  // MARK: Watches

  mutating func addWatcher(_ range: KeyRange, options: BackendWatchOptions) -> Int {
    let id = self.nextWatcherID
    self.nextWatcherID += 1
    var ending: BackendError?
    do {
      try Self.validate(range, operation: "watch")
    } catch {
      ending = error
    }
    let start = options.startRevision > 0 ? options.startRevision : self.revision + 1
    if ending == nil, options.startRevision > 0, start < self.compactRevision {
      ending = BackendError(
        code: .compacted, message: "mvcc: required revision has been compacted", compactRevision: self.compactRevision)
    }
    var watcher = WatcherState(
      range: StoreKeyRange(range), prevKV: options.prevKV, progressNotify: options.progressNotify,
      nextRevision: start, synced: start > self.revision)
    watcher.ending = ending
    self.watchers[id] = watcher
    return id
  }

  /// The next thing for the consumer of watcher `id`; `.wait` when it has to wait for a commit.
  mutating func nextWatchStep(_ id: Int) -> WatchStep {
    guard self.watchers[id] != nil else { return .end(nil) }
    if let event = self.watchers[id]!.buffer.popFirst() { return .event(event) }
    if !self.watchers[id]!.synced, self.watchers[id]!.ending == nil {
      Self.catchUp(
        &self.watchers[id]!, log: self.log, revision: self.revision, compactRevision: self.compactRevision,
        bufferLimit: self.limits.watchBufferLimit)
      if let event = self.watchers[id]!.buffer.popFirst() { return .event(event) }
    }
    if let ending = self.watchers[id]!.ending {
      self.watchers[id] = nil
      return .end(ending)
    }
    return .wait
  }

  /// Fills an unsynced watcher's buffer from history, up to the buffer limit (whole revisions).
  private static func catchUp(
    _ watcher: inout WatcherState, log: Deque<LoggedEvent>, revision: Int64, compactRevision: Int64, bufferLimit: Int
  ) {
    if watcher.nextRevision < compactRevision {
      watcher.ending = BackendError(
        code: .compacted, message: "mvcc: required revision has been compacted", compactRevision: compactRevision)
      return
    }
    var low = 0
    var high = log.count
    while low < high {
      let middle = (low + high) / 2
      if log[middle].revision < watcher.nextRevision { low = middle + 1 } else { high = middle }
    }
    var position = low
    while position < log.count {
      let current = log[position].revision
      if watcher.buffer.count >= bufferLimit {
        watcher.nextRevision = current
        return
      }
      while position < log.count, log[position].revision == current {
        let event = log[position]
        if watcher.range.contains(event.key) { watcher.buffer.append(event.watchEvent(prevKV: watcher.prevKV)) }
        position += 1
      }
      watcher.nextRevision = current + 1
    }
    watcher.synced = true
    watcher.nextRevision = max(watcher.nextRevision, revision + 1)
    if watcher.progressRequested {
      watcher.progressRequested = false
      watcher.buffer.append(.progress(revision: revision))
    }
  }

  /// Ends watcher `id` now (the consumer cancelled or dropped it); returns its waiting consumer.
  mutating func removeWatcher(_ id: Int) -> CheckedContinuation<BackendWatchEvent?, any Error>? {
    self.watchers.removeValue(forKey: id)?.waiter
  }

  /// Sends `.progress(revision)` to every watch (unsynced ones once they have caught up).
  mutating func requestProgress() -> Int64 {
    for index in self.watchers.values.indices where self.watchers.values[index].ending == nil {
      if self.watchers.values[index].synced {
        guard self.watchers.values[index].nextRevision <= self.revision + 1 else { continue }
        // A newer progress report supersedes an unread one: repeated requests to an idle,
        // unread watch do not grow its buffer.
        if case .progress = self.watchers.values[index].buffer.last {
          self.watchers.values[index].buffer.removeLast()
        }
        self.watchers.values[index].buffer.append(.progress(revision: self.revision))
        self.watchers.values[index].wakeWaiter()
      } else {
        self.watchers.values[index].progressRequested = true
      }
    }
    return self.revision
  }

  /// Periodic progress: every synced, idle watcher that asked for it hears the current revision.
  mutating func progressTick() {
    for index in self.watchers.values.indices {
      let watcher = self.watchers.values[index]
      self.watchers.values[index].deliveredSinceTick = false
      guard watcher.progressNotify, watcher.synced, watcher.ending == nil, watcher.buffer.isEmpty,
        !watcher.deliveredSinceTick, watcher.nextRevision <= self.revision + 1
      else { continue }
      self.watchers.values[index].buffer.append(.progress(revision: self.revision))
      self.watchers.values[index].wakeWaiter()
    }
  }

  /// Ends every open watch with `error` once its buffered events are delivered.
  mutating func endAllWatches(_ error: BackendError) {
    var ended: [Int] = []
    for index in self.watchers.indices where self.watchers.values[index].ending == nil {
      self.watchers.values[index].ending = error
      if self.watchers.values[index].wakeWaiter() { ended.append(self.watchers.keys[index]) }
    }
    for id in ended { self.watchers[id] = nil }
  }

  // MARK: Metrics

  mutating func gaugeUpdate() -> MemoryStoreGauges? {
    let gauges = MemoryStoreGauges(
      revision: self.revision, keys: self.liveKeys, watchers: self.watchers.count, leases: self.leases.count)
    guard gauges != self.lastGauges else { return nil }
    self.lastGauges = gauges
    return gauges
  }
}
