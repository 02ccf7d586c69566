import CapstanEtcd
import Foundation
public import Logging
public import Metrics
public import ServiceLifecycle
import Synchronization

/// Keeps an ``ObjectCache`` equal to the objects of one kind in a ``Backend`` and tells handlers
/// what changed: the reflector, the cache and the event fan-out of a controller.
///
/// `run()` (it is a swift-service-lifecycle `Service`) lists the kind's prefix in pages at one
/// revision R, then watches from R + 1:
/// - a broken watch resumes from the last revision + 1 after a jittered exponential backoff
///   (``InformerConfiguration/backoff``), reset once a watch has been healthy for a while;
/// - a compacted revision triggers a relist **in place**: listed objects are stamped, changed ones
///   updated, and whatever the new list did not confirm is swept and reported as
///   `deleted(last, certain: false)` — no second copy of the cache is built;
/// - a watch silent for ``InformerConfiguration/stallTimeout`` is probed with a progress request
///   and restarted if the probe gets no answer (the stall watchdog).
///
/// Values that are not valid objects (undecodable, empty UID or name, key not matching the
/// metadata) are never cached; they are counted and logged by the ``ObjectIngestor``.
///
/// Each handler (``addHandler(_:)``) has its own ``InformerEventStream`` whose buffer keeps only
/// the newest pending event per object, so a slow handler never blocks the watch or other
/// handlers and costs memory proportional to the objects it is behind on.
public final class Informer: Service, Sendable {
  /// Where the informed objects live.
  public let layout: ResourceLayout
  /// The store read.
  public let backend: any Backend
  /// How the informer lists, watches and recovers.
  public let configuration: InformerConfiguration
  /// The names of the cache's secondary indexes.
  public let indexNames: [String]

  private let objects: ObjectCache
  private let ingestor: ObjectIngestor
  private let logger: Logger
  private let metrics: InformerMetrics
  private let state: Mutex<State>
  private let started = Atomic<Bool>(false)

  private struct Handler {
    var name: String
    var buffer: CoalescingBuffer<InformerEvent>
    var backlog: Gauge
  }

  private struct State {
    var handlers: [Handler] = []
    var hasSynced = false
    /// The revision of the first list, once it completed.
    var initialListRevision: Int64?
    var stopped = false
    /// Every change up to this revision is in the cache (all of it once `revisionComplete`; else
    /// the changes to `keysAtRevision` — a multi-key revision may be cut by a broken watch).
    var revision: Int64 = 0
    var revisionComplete = false
    var keysAtRevision: Set<String> = []
    var nextWaiterID: UInt64 = 0
    var syncWaiters: [UInt64: CheckedContinuation<Void, any Error>] = [:]
    var revisionWaiters: [UInt64: (revision: Int64, continuation: CheckedContinuation<Void, any Error>)] = [:]
    var lastActivity = ContinuousClock.now
  }

  /// An informer for the objects at `layout`'s prefix in `backend`, caching them with `indexes`.
  public init(
    layout: ResourceLayout,
    backend: any Backend,
    indexes: [CacheIndex] = [],
    configuration: InformerConfiguration = InformerConfiguration(),
    logger: Logger = Logger(label: "capstan.informer"),
    metricsFactory: (any MetricsFactory)? = nil
  ) throws(InformerError) {
    try configuration.validate()
    let factory = metricsFactory ?? MetricsSystem.factory
    var logger = logger
    logger[metadataKey: "resource"] = "\(layout.plural)"
    self.layout = layout
    self.backend = backend
    self.configuration = configuration
    self.indexNames = indexes.map(\.name)
    self.logger = logger
    self.objects = ObjectCache(
      layout: layout, indexes: indexes, shardCount: configuration.shardCount, metricsFactory: factory)
    self.ingestor = ObjectIngestor(
      layout: layout, transform: configuration.transform, logger: logger, metricsFactory: factory)
    self.metrics = InformerMetrics(resource: layout.plural, factory: factory)
    self.state = Mutex(State())
  }

  /// An informer for the objects of `resource`.
  public convenience init<R: Resource>(
    for resource: R.Type,
    backend: any Backend,
    indexes: [CacheIndex] = [],
    configuration: InformerConfiguration = InformerConfiguration(),
    logger: Logger = Logger(label: "capstan.informer"),
    metricsFactory: (any MetricsFactory)? = nil
  ) throws(InformerError) {
    try self.init(
      layout: R.layout, backend: backend, indexes: indexes, configuration: configuration, logger: logger,
      metricsFactory: metricsFactory)
  }

  // MARK: Reading

  /// The cache, once the first list has completed. Before that, reading it is an error rather
  /// than a silently empty answer: use ``waitForSync(timeout:)``.
  public var cache: ObjectCache {
    get throws(InformerError) {
      guard self.hasSynced else {
        throw InformerError(code: .notSynced, message: "the \(self.layout.plural) cache is read before its first list")
      }
      return self.objects
    }
  }

  /// Whether the first list has completed.
  public var hasSynced: Bool { self.state.withLock { $0.hasSynced } }

  /// The revision of the first list (nil until it completed): an `added` event for an object at
  /// or below it comes from the initial list (or a late handler's replay of it).
  var initialListRevision: Int64? { self.state.withLock { $0.initialListRevision } }

  /// The revision up to which every change is in the cache (0 before the first list).
  public var lastSyncRevision: Int64 { self.state.withLock { $0.revision } }

  /// Waits for the first list to complete and returns the cache.
  public func waitForSync(timeout: Duration = .seconds(60)) async throws -> ObjectCache {
    try await self.wait(timeout: timeout, what: "the first list") { state in
      if state.stopped { return .failure(Self.stoppedError()) }
      return state.hasSynced ? .success(()) : nil
    } register: { state, id, continuation in
      state.syncWaiters[id] = continuation
    } unregister: { state, id in
      state.syncWaiters.removeValue(forKey: id)
    }
    return self.objects
  }

  /// Waits until the cache has seen every change up to `revision` — read your own writes: after a
  /// write at revision W, `waitUntil(revision: W)` returns once the cache shows it. A revision
  /// written under another prefix produces no event here: it is confirmed by a progress
  /// notification, which the informer solicits while waiting. ``MemoryBackend`` answers at once;
  /// etcd 3.4 only sends its periodic ones (`--experimental-watch-progress-notify-interval`,
  /// 10 minutes by default), so lower that interval if you wait across prefixes.
  ///
  /// Backends deliver a revision's events one at a time, so for a write that changed several
  /// keys of this kind at once (a txn, a range delete) the wait may end when the first of them is
  /// cached, just before the others.
  public func waitUntil(revision: Int64, timeout: Duration = .seconds(10)) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask {
        try await self.wait(timeout: timeout, what: "revision \(revision)") { state in
          if state.stopped { return .failure(Self.stoppedError()) }
          return state.hasSynced && state.revision >= revision ? .success(()) : nil
        } register: { state, id, continuation in
          state.revisionWaiters[id] = (revision, continuation)
        } unregister: { state, id in
          state.revisionWaiters.removeValue(forKey: id)?.continuation
        }
      }
      group.addTask {
        // Solicit progress notifications until the waiter above is satisfied (it cancels this).
        var delay = Duration.milliseconds(20)
        while true {
          try await Task.sleep(for: delay)
          _ = try? await self.backend.requestWatchProgress()
          delay = min(delay * 2, .seconds(1))
        }
      }
      try await group.next()
      group.cancelAll()
    }
  }

  // MARK: Handlers

  /// Registers a handler and returns its events. A handler added after objects were cached first
  /// receives `added` for each of them. The stream finishes when the informer stops.
  public func addHandler(_ name: String) -> InformerEventStream {
    let buffer = CoalescingBuffer<InformerEvent>(merge: InformerEvent.coalesce)
    let backlog = self.metrics.handlerBacklog(handler: name)
    self.state.withLock { state in
      for object in self.objects.allObjects() {
        buffer.push(.added(object), for: object.uid)
      }
      if state.stopped {
        buffer.finish()
      } else {
        state.handlers.append(Handler(name: name, buffer: buffer, backlog: backlog))
      }
    }
    backlog.record(buffer.backlog)
    return InformerEventStream(buffer: buffer, backlog: backlog)
  }

  // MARK: Running

  /// Lists and watches until cancelled or asked to shut down gracefully. Then the handler streams
  /// finish and pending waits fail with ``InformerError/Code/stopped``. An informer runs once.
  public func run() async throws {
    guard self.started.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged else {
      throw InformerError(code: .alreadyRunning, message: "the \(self.layout.plural) informer has already run; create a new one")
    }
    defer { self.stop() }
    do {
      try await cancelWhenGracefulShutdown { try await self.reflect() }
    } catch is CancellationError {
      return
    } catch let error as BackendError where error.code == .closed || error.code == .cancelled {
      return
    }
  }

  private func reflect() async throws {
    var needsList = true
    var listReason = "initial"
    var attempt = 0
    while true {
      try Task.checkCancellation()
      let started = ContinuousClock.now
      let failure: String
      do {
        if needsList {
          try await self.list(reason: listReason)
          needsList = false
        }
        try await self.watchUntilFailure()
        failure = "ended"
      } catch {
        if Task.isCancelled || error is CancellationError { throw CancellationError() }
        if let stall = error as? WatchStalled {
          failure = "stall"
          self.logger.warning("watch stalled; restarting it", metadata: ["quiet": "\(stall.quiet)"])
        } else if let backendError = error as? BackendError {
          if backendError.code == .closed { throw backendError }
          if backendError.code == .compacted {
            needsList = true
            listReason = "compacted"
            failure = "compacted"
            self.logger.notice(
              "revision compacted; relisting in place",
              metadata: ["revision": "\(self.lastSyncRevision)", "compactRevision": "\(backendError.compactRevision ?? 0)"])
          } else {
            failure = "\(backendError.code)"
            self.logger.warning(
              "\(needsList ? "list" : "watch") failed; retrying", metadata: ["error": "\(backendError)"])
          }
        } else {
          failure = "error"
          self.logger.error("\(needsList ? "list" : "watch") failed; retrying", metadata: ["error": "\(error)"])
        }
      }
      if !needsList { self.metrics.watchRestart(reason: failure) }
      if ContinuousClock.now - started >= self.configuration.healthyPeriod { attempt = 0 }
      try await Task.sleep(for: self.configuration.backoff.delay(attempt: attempt))
      attempt += 1
    }
  }

  /// Lists the prefix in pages at one revision and brings the cache to it in place.
  private func list(reason: String) async throws {
    self.metrics.relist(reason: reason)
    let generation = self.objects.nextRelistGeneration()
    var range = KeyRange.prefix(self.layout.prefix)
    var revision: Int64 = 0
    var listed = 0
    while true {
      try Task.checkCancellation()
      let page = try await self.backend.range(
        range, options: BackendRangeOptions(limit: self.configuration.pageSize, revision: revision))
      if revision == 0 { revision = page.revision }
      listed += page.kvs.count
      self.state.withLock { state in
        for kv in page.kvs { self.applyPut(kv, mark: generation, &state) }
        state.lastActivity = .now
      }
      guard page.more, let last = page.kvs.last else { break }
      range = range.continuing(after: last.key)
    }
    let finalRevision = revision
    let resumed = self.state.withLock { state in
      for gone in self.objects.sweep(unmarkedSince: generation) {
        self.deliver(.deleted(gone, certain: false), &state)
      }
      state.revision = max(state.revision, finalRevision)
      state.revisionComplete = true  // a list reads whole revisions
      state.keysAtRevision.removeAll()
      if state.initialListRevision == nil { state.initialListRevision = finalRevision }
      state.hasSynced = true
      return Self.satisfiedWaiters(&state)
    }
    resumed.forEach { $0.resume() }
    self.metrics.synced.record(1)
    self.logger.debug("listed", metadata: ["objects": "\(listed)", "revision": "\(revision)", "reason": "\(reason)"])
  }

  /// Watches from the last revision until the watch fails, stalls or ends.
  ///
  /// It starts AT the last revision, not after it: backends deliver a revision's events one by
  /// one, so a watch that ended inside a multi-key revision (a txn, a range delete, a lease
  /// revoke) may have applied only part of it. Replaying that revision is harmless — an object at
  /// the same resource version is `.unchanged`, a delete of an absent key does nothing.
  private func watchUntilFailure() async throws {
    let startRevision = max(1, self.lastSyncRevision)
    let watch = self.backend.watch(
      .prefix(self.layout.prefix),
      options: BackendWatchOptions(startRevision: startRevision, prevKV: false, progressNotify: true))
    self.state.withLock { $0.lastActivity = .now }
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask {
        for try await event in watch {
          self.apply(event)
        }
        throw BackendError(code: .unavailable, message: "the watch ended")
      }
      group.addTask { try await self.watchdog() }
      try await group.next()
      group.cancelAll()
    }
  }

  /// Restarts a watch that has been silent too long and whose stream does not answer a progress
  /// request; also measures lag (the backend's revision minus the cache's).
  private func watchdog() async throws {
    let stallTimeout = self.configuration.stallTimeout
    let tick = max(min(stallTimeout / 4, .seconds(5)), .milliseconds(10))
    while true {
      try await Task.sleep(for: tick)
      let quiet = ContinuousClock.now - self.state.withLock { $0.lastActivity }
      guard quiet >= stallTimeout else { continue }
      let backend = self.backend
      let answered = try await Self.withTimeout(self.configuration.progressTimeout) {
        try await backend.requestWatchProgress()
      }
      guard let backendRevision = answered else { throw WatchStalled(quiet: quiet) }
      let cached = self.state.withLock { state in
        state.lastActivity = .now
        return state.revision
      }
      self.metrics.lag.record(max(0, backendRevision - cached))
    }
  }

  private func apply(_ event: BackendWatchEvent) {
    let resumed = self.state.withLock { state -> [CheckedContinuation<Void, any Error>] in
      state.lastActivity = .now
      let revision = event.revision
      if case .progress = event {
        // Everything up to `revision` has been delivered.
        if revision >= state.revision { state.revisionComplete = true }
      } else if revision < state.revision || (revision == state.revision && state.revisionComplete) {
        return []  // replayed by a watch that resumed at the last revision: already applied
      } else {
        let key: String
        switch event {
        case .put(let kv, _): key = kv.key
        case .delete(let deleted, _, _): key = deleted
        case .progress: return []
        }
        if revision > state.revision {
          state.keysAtRevision.removeAll(keepingCapacity: true)
          state.revisionComplete = false
        }
        guard state.keysAtRevision.insert(key).inserted else { return [] }  // replayed
        switch event {
        case .put(let kv, _):
          self.applyPut(kv, mark: nil, &state)
        case .delete(let key, _, _):
          self.ingestor.forget(key: key)
          if let last = self.objects.remove(key: key) {
            self.deliver(.deleted(last, certain: true), &state)
          }
        case .progress:
          break
        }
      }
      guard revision > state.revision else { return [] }
      state.revision = revision
      return Self.satisfiedWaiters(&state)
    }
    resumed.forEach { $0.resume() }
  }


  private func applyPut(_ kv: StoredKeyValue, mark: UInt64?, _ state: inout State) {
    let change: CacheChange
    switch self.ingestor.ingest(kv) {
    case .success(let object):
      change = if let mark { self.objects.upsert(object, mark: mark) } else { self.objects.upsert(object) }
      if case .rejected(let reason) = change {
        self.logger.warning(
          "not caching a stored object", metadata: ["key": "\(kv.key)", "mod_revision": "\(kv.modRevision)", "reason": "\(reason)"])
      }
    case .failure(let rejection):
      change = .rejected(rejection.reason)
    }
    switch change {
    case .added(let new): self.deliver(.added(new), &state)
    case .updated(let old, let new): self.deliver(.updated(old: old, new: new), &state)
    case .replaced(let old, let new):
      self.deliver(.deleted(old, certain: true), &state)
      self.deliver(.added(new), &state)
    case .unchanged: break
    case .rejected:
      // Not a valid object (counted and logged by the ingestor): whatever was cached under this
      // key no longer stands for what the store holds.
      if let last = self.objects.remove(key: kv.key) {
        self.deliver(.deleted(last, certain: false), &state)
      }
    }
  }

  private func deliver(_ event: InformerEvent, _ state: inout State) {
    self.metrics.event(event)
    for handler in state.handlers {
      handler.buffer.push(event, for: event.object.uid)
      handler.backlog.record(handler.buffer.backlog)
    }
  }

  private static func satisfiedWaiters(_ state: inout State) -> [CheckedContinuation<Void, any Error>] {
    guard state.hasSynced else { return [] }
    var resumed = Array(state.syncWaiters.values)
    state.syncWaiters.removeAll()
    let revision = state.revision
    for (id, waiter) in state.revisionWaiters where waiter.revision <= revision {
      resumed.append(waiter.continuation)
      state.revisionWaiters.removeValue(forKey: id)
    }
    return resumed
  }

  private func stop() {
    let (handlers, waiters) = self.state.withLock { state in
      state.stopped = true
      let waiters = Array(state.syncWaiters.values) + state.revisionWaiters.values.map(\.continuation)
      state.syncWaiters.removeAll()
      state.revisionWaiters.removeAll()
      defer { state.handlers.removeAll() }
      return (state.handlers, waiters)
    }
    handlers.forEach { $0.buffer.finish() }
    waiters.forEach { $0.resume(throwing: Self.stoppedError()) }
    self.metrics.synced.record(0)
  }

  private static func stoppedError() -> InformerError {
    InformerError(code: .stopped, message: "the informer stopped")
  }

  /// Waits until `check` says done (or failed), registering a continuation in the state when not
  /// yet; fails with ``InformerError/Code/timedOut`` after `timeout`.
  private func wait(
    timeout: Duration,
    what: String,
    check: @escaping @Sendable (inout State) -> Result<Void, InformerError>?,
    register: @escaping @Sendable (inout State, UInt64, CheckedContinuation<Void, any Error>) -> Void,
    unregister: @escaping @Sendable (inout State, UInt64) -> CheckedContinuation<Void, any Error>?
  ) async throws {
    if let result = self.state.withLock({ check(&$0) }) { return try result.get() }
    let outcome: Void? = try await Self.withTimeout(timeout) {
      let id = self.state.withLock { state in
        defer { state.nextWaiterID += 1 }
        return state.nextWaiterID
      }
      try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
          let immediate: Result<Void, any Error>? = self.state.withLock { state in
            if Task.isCancelled { return .failure(CancellationError()) }
            if let result = check(&state) { return result.mapError { $0 } }
            register(&state, id, continuation)
            return nil
          }
          if let immediate { continuation.resume(with: immediate) }
        }
      } onCancel: {
        self.state.withLock { unregister(&$0, id) }?.resume(throwing: CancellationError())
      }
    }
    guard outcome != nil else {
      throw InformerError(code: .timedOut, message: "timed out after \(timeout) waiting for \(what)")
    }
  }

  /// The result of `body`, or `nil` if it did not finish within `timeout` (it is then cancelled).
  static func withTimeout<T: Sendable>(
    _ timeout: Duration, _ body: @escaping @Sendable () async throws -> T
  ) async throws -> T? {
    try await withThrowingTaskGroup(of: T?.self) { group in
      group.addTask { try await body() }
      group.addTask {
        try await Task.sleep(for: timeout)
        return nil
      }
      defer { group.cancelAll() }
      return try await group.next() ?? nil
    }
  }
}

/// The watch delivered nothing and its stream did not answer a progress request.
struct WatchStalled: Error {
  var quiet: Duration
}

/// The events for one handler of an ``Informer``, oldest first, coalesced per object.
public struct InformerEventStream: AsyncSequence, Sendable {
  public typealias Element = InformerEvent
  public typealias Failure = Never

  let buffer: CoalescingBuffer<InformerEvent>
  let backlogGauge: Gauge

  init(buffer: CoalescingBuffer<InformerEvent>, backlog: Gauge) {
    self.buffer = buffer
    self.backlogGauge = backlog
  }

  /// How many objects have an undelivered event.
  public var backlog: Int { self.buffer.backlog }

  public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(buffer: self.buffer, backlog: self.backlogGauge) }

  public struct AsyncIterator: AsyncIteratorProtocol {
    let buffer: CoalescingBuffer<InformerEvent>
    let backlog: Gauge

    public mutating func next() async -> InformerEvent? {
      let event = await self.buffer.next()?.value
      self.backlog.record(self.buffer.backlog)
      return event
    }
  }
}

/// The informer's metrics, labelled with the resource's plural.
struct InformerMetrics: Sendable {
  let resource: String
  let factory: any MetricsFactory
  let added: Counter
  let updated: Counter
  let deleted: Counter
  let lag: Gauge
  let synced: Gauge

  init(resource: String, factory: any MetricsFactory) {
    self.resource = resource
    self.factory = factory
    func events(_ type: String) -> Counter {
      Counter(label: "capstan_informer_events_total", dimensions: [("resource", resource), ("type", type)], factory: factory)
    }
    self.added = events("added")
    self.updated = events("updated")
    self.deleted = events("deleted")
    self.lag = Gauge(label: "capstan_informer_lag_revisions", dimensions: [("resource", resource)], factory: factory)
    self.synced = Gauge(label: "capstan_informer_synced", dimensions: [("resource", resource)], factory: factory)
  }

  func event(_ event: InformerEvent) {
    switch event {
    case .added: self.added.increment()
    case .updated: self.updated.increment()
    case .deleted: self.deleted.increment()
    }
  }

  func relist(reason: String) {
    Counter(
      label: "capstan_informer_relists_total", dimensions: [("resource", self.resource), ("reason", reason)],
      factory: self.factory
    ).increment()
  }

  func watchRestart(reason: String) {
    Counter(
      label: "capstan_informer_watch_restarts_total", dimensions: [("resource", self.resource), ("reason", reason)],
      factory: self.factory
    ).increment()
  }

  func handlerBacklog(handler: String) -> Gauge {
    Gauge(
      label: "capstan_informer_handler_backlog", dimensions: [("resource", self.resource), ("handler", handler)],
      factory: self.factory)
  }
}
