public import Foundation
public import Logging
import Metrics
public import ServiceLifecycle
import Synchronization

/// The embedded default ``Backend``: an in-process MVCC store that behaves like etcd 3.4 in every
/// way a controller can observe — revisions, history until compaction, range reads at a
/// revision, transactions, watches from a revision, leases with expiry and keep-alive — and
/// passes the same conformance suite as ``EtcdBackend``.
///
/// ## Time and `run()`
/// `MemoryBackend` is a swift-service-lifecycle `Service`. Its ``run()`` drives what happens
/// with nobody calling: lease expiry, keep-alive renewals, periodic watch progress notifications,
/// automatic compaction (``Configuration/historyRetention``) and periodic snapshots. Without
/// `run()`, leases still expire, lazily: every call first expires the leases that are due. Time
/// comes from ``Configuration/clock``, so tests can use a manual clock.
///
/// ## Slow watchers
/// Each watch buffers at most ``Configuration/watchBufferLimit`` events (plus the rest of the
/// revision that filled it). A consumer that falls further behind is not buffered for: its
/// watch becomes *unsynced*, and once the consumer has drained the buffer it catches up from the
/// store's history, as etcd does. Memory per watch stays bounded and nothing is lost; an unsynced
/// watch whose next revision gets compacted away ends with ``BackendError/Code/compacted``.
///
/// ## Snapshots
/// With ``Configuration/snapshotPath`` set, the store loads the snapshot at start-up (if the
/// file exists), ``saveSnapshot()`` writes one atomically (temporary file, then rename), and
/// `run()` saves one every ``Configuration/snapshotInterval`` when something changed, and at
/// shutdown. A snapshot holds the latest values, the revision and the leases with the time they
/// had left — not history: a restored store is compacted at the snapshot's revision. The format
/// (JSON lines) is described in `MemorySnapshot.swift`.
///
/// ## Limits (etcd's defaults)
/// At most 128 operations per transaction branch; requests (keys and values) up to 1.5 MiB;
/// leases live at least 2 seconds (etcd's minimum TTL with its default election timeout).
public final class MemoryBackend: Backend, Service {
  /// How a ``MemoryBackend`` behaves.
  public struct Configuration: Sendable {
    /// Where time comes from (lease expiry, progress notifications, keep-alive renewals, injected
    /// latency). A test can pass a manual clock.
    public var clock: any Clock<Duration>
    /// How often ``MemoryBackend/run()`` wakes up to expire leases and renew kept-alive ones.
    public var tickInterval: Duration
    /// How often an idle watch that asked for progress notifications gets one (etcd: 10 min).
    public var progressNotifyInterval: Duration
    /// How many events one watch buffers before it becomes unsynced and catches up from history.
    public var watchBufferLimit: Int
    /// Granted leases live at least this many seconds (etcd: 2 with its default election timeout).
    public var minimumLeaseTTL: Int64
    /// The most operations per transaction branch (etcd's `--max-txn-ops`).
    public var maximumTxnOperations: Int
    /// The largest request, keys plus values (etcd's `--max-request-bytes`, 1.5 MiB).
    public var maximumRequestBytes: Int
    /// Where the snapshot lives; `nil` keeps everything in memory only.
    public var snapshotPath: String?
    /// How often ``MemoryBackend/run()`` saves a snapshot when something changed (if a path is set).
    public var snapshotInterval: Duration
    /// If set, ``MemoryBackend/run()`` compacts automatically, keeping about this many revisions
    /// of history (etcd's revision-mode auto-compaction). `nil`: history is kept until
    /// ``MemoryBackend/compact(revision:)``.
    public var historyRetention: Int64?
    /// Dimensions added to every metric (tell several backends in one process apart).
    public var metricsDimensions: [(String, String)]

    /// A configuration with etcd's defaults, keeping everything in memory.
    public init(clock: any Clock<Duration> = ContinuousClock(), snapshotPath: String? = nil) {
      self.clock = clock
      self.tickInterval = .milliseconds(500)
      self.progressNotifyInterval = .seconds(10)
      self.watchBufferLimit = 1024
      self.minimumLeaseTTL = 2
      self.maximumTxnOperations = 128
      self.maximumRequestBytes = 1_572_864
      self.snapshotPath = snapshotPath
      self.snapshotInterval = .seconds(30)
      self.historyRetention = nil
      self.metricsDimensions = []
    }

    /// A configuration that keeps its snapshot in `dataDirectory` (`memory-backend.snapshot`).
    public static func persistent(dataDirectory: String) -> Configuration {
      Configuration(snapshotPath: URL(fileURLWithPath: dataDirectory).appendingPathComponent("memory-backend.snapshot").path)
    }
  }

  /// How the backend was configured.
  public let configuration: Configuration
  let state: Mutex<MemoryStoreState>
  private let now: @Sendable () -> Duration
  private let sleep: @Sendable (Duration) async throws -> Void
  private let logger: Logger
  private let revisionGauge: Gauge
  private let keysGauge: Gauge
  private let watchersGauge: Gauge
  private let leasesGauge: Gauge

  /// An empty in-memory store with etcd's defaults.
  public convenience init(logger: Logger = Logger(label: "capstan.memory-backend")) {
    // Without a snapshot path nothing can fail.
    try! self.init(configuration: Configuration(), logger: logger)
  }

  /// A store configured by `configuration`; loads the snapshot at ``Configuration/snapshotPath``
  /// if that file exists.
  ///
  /// - Throws: ``BackendError`` (``BackendError/Code/internalError``) if the snapshot cannot be read.
  public init(configuration: Configuration, logger: Logger = Logger(label: "capstan.memory-backend")) throws(BackendError) {
    self.configuration = configuration
    self.logger = logger
    (self.now, self.sleep) = Self.timeSource(configuration.clock)
    let dimensions = configuration.metricsDimensions
    self.revisionGauge = Gauge(label: "capstan_memory_backend_revision", dimensions: dimensions)
    self.keysGauge = Gauge(label: "capstan_memory_backend_keys", dimensions: dimensions)
    self.watchersGauge = Gauge(label: "capstan_memory_backend_watchers", dimensions: dimensions)
    self.leasesGauge = Gauge(label: "capstan_memory_backend_leases", dimensions: dimensions)
    var initial = MemoryStoreState(
      limits: MemoryStoreLimits(
        maximumTxnOperations: configuration.maximumTxnOperations,
        maximumRequestBytes: configuration.maximumRequestBytes,
        minimumLeaseTTL: configuration.minimumLeaseTTL,
        watchBufferLimit: max(1, configuration.watchBufferLimit)))
    initial.now = self.now()
    if let path = configuration.snapshotPath, FileManager.default.fileExists(atPath: path) {
      let data: Data
      do {
        data = try Data(contentsOf: URL(fileURLWithPath: path))
      } catch {
        throw BackendError(code: .internalError, message: "cannot read the snapshot at \(path)", cause: error)
      }
      initial.restore(try MemorySnapshot.decode(data))
      logger.info(
        "restored the memory backend from its snapshot",
        metadata: ["path": "\(path)", "revision": "\(initial.revision)", "keys": "\(initial.liveKeys)"])
    }
    self.state = Mutex(initial)
    self.withState { _ in }
  }

  private static func timeSource(
    _ clock: some Clock<Duration>
  ) -> (@Sendable () -> Duration, @Sendable (Duration) async throws -> Void) {
    let origin = clock.now
    return ({ origin.duration(to: clock.now) }, { try await clock.sleep(for: $0) })
  }

  /// Runs `body` on the state under the lock, after expiring due leases; then finishes the
  /// keep-alive streams that ended and records the gauges, outside the lock.
  @discardableResult
  func withState<Result: Sendable, Failure: Error>(
    _ body: (inout MemoryStoreState) throws(Failure) -> Result
  ) throws(Failure) -> Result {
    let now = self.now()
    let (result, finishing, gauges) = self.state.withLock {
      state -> (Swift.Result<Result, Failure>, [AsyncStream<BackendLeaseEvent>.Continuation], MemoryStoreGauges?) in
      state.now = max(state.now, now)
      state.expireLeases()
      let result = Swift.Result { () throws(Failure) -> Result in try body(&state) }
      let finishing = state.keepersToFinish
      state.keepersToFinish = []
      return (result, finishing, state.gaugeUpdate())
    }
    for keeper in finishing { keeper.finish() }
    if let gauges {
      self.revisionGauge.record(gauges.revision)
      self.keysGauge.record(gauges.keys)
      self.watchersGauge.record(gauges.watchers)
      self.leasesGauge.record(gauges.leases)
    }
    return try result.get()
  }

  /// Waits for the injected latency, if any.
  private func injectedLatency() async throws(BackendError) {
    let latency = self.state.withLock { $0.latency }
    guard latency > .zero else { return }
    do {
      try await self.sleep(latency)
    } catch {
      throw BackendError(code: .cancelled, message: "cancelled while waiting for injected latency")
    }
  }

  // MARK: Backend

  public func currentRevision() async throws -> Int64 {
    try await self.injectedLatency()
    return self.withState { $0.revision }
  }

  public func range(_ range: KeyRange, options: BackendRangeOptions) async throws -> BackendRangePage {
    try await self.injectedLatency()
    return try self.withState { state throws(BackendError) in
      try state.consumeInjectedReadFault("range")
      return try state.range(range, options: options)
    }
  }

  public func put(_ key: String, value: Data, lease: Int64?) async throws -> BackendWriteResult {
    try await self.injectedLatency()
    return try self.withState { state throws(BackendError) in try state.put(key, value: value, lease: lease) }
  }

  public func delete(_ range: KeyRange) async throws -> BackendDeleteResult {
    try await self.injectedLatency()
    return try self.withState { state throws(BackendError) in try state.delete(range) }
  }

  public func txn(_ txn: BackendTxn) async throws -> BackendTxnResult {
    try await self.injectedLatency()
    return try self.withState { state throws(BackendError) in try state.txn(txn) }
  }

  public func watch(_ range: KeyRange, options: BackendWatchOptions) -> BackendWatchStream {
    let registration = MemoryWatchRegistration(
      backend: self, id: self.withState { $0.addWatcher(range, options: options) })
    return BackendWatchStream(makeNext: {
      let iteration = MemoryWatchIteration(registration: registration)
      return { try await iteration.next() }
    })
  }

  /// Sends `.progress(revision)` at once to every open watch (an unsynced one gets it when it
  /// has caught up) and returns the current revision.
  public func requestWatchProgress() async throws -> Int64 {
    try await self.injectedLatency()
    // A stalled watch connection answers nothing: wait (cancellably) until no stalled watch is left.
    while self.withState({ !$0.stalledWatchers.isEmpty }) {
      do {
        try await Task.sleep(for: .milliseconds(10))
      } catch {
        throw BackendError(code: .cancelled, message: "cancelled while waiting for a stalled watch connection")
      }
    }
    return self.withState { $0.requestProgress() }
  }

  public func grantLease(ttl: Int64) async throws -> BackendLease {
    try await self.injectedLatency()
    return try self.withState { state throws(BackendError) in try state.grantLease(ttl: ttl) }
  }

  public func revokeLease(_ id: Int64) async throws {
    try await self.injectedLatency()
    try self.withState { state throws(BackendError) in
      try state.consumeInjectedWriteFault("lease revoke")
      try state.revokeLease(id, reason: "lease \(id) was revoked")
    }
  }

  public func leaseTimeToLive(_ id: Int64) async throws -> Int64 {
    try await self.injectedLatency()
    return try self.withState { state throws(BackendError) in try state.leaseTimeToLive(id) }
  }

  /// Keeps `lease` alive: it does not expire while kept alive. The events start with
  /// `.renewed(ttl)`, repeat it about every TTL/3 while ``run()`` runs, and end with `.lost`
  /// when the lease is revoked (or was already gone). ``BackendLeaseKeepAlive/cancel()`` (or
  /// dropping the events) stops it; the lease's TTL then counts down from that moment.
  public func keepAlive(_ lease: BackendLease) -> BackendLeaseKeepAlive {
    let (events, continuation) = AsyncStream.makeStream(of: BackendLeaseEvent.self, bufferingPolicy: .bufferingNewest(8))
    let keeperID = self.withState { $0.addKeeper(lease.id, keeper: continuation) }
    guard let keeperID else {
      continuation.yield(.lost(reason: "lease \(lease.id) not found"))
      continuation.finish()
      return BackendLeaseKeepAlive(lease: lease, events: events, onCancel: {})
    }
    let stop: @Sendable () -> Void = { [weak self] in
      self?.withState { $0.removeKeeper(lease.id, keeperID: keeperID) }
    }
    continuation.onTermination = { _ in stop() }
    return BackendLeaseKeepAlive(lease: lease, events: events, onCancel: stop)
  }

  public func compact(revision: Int64) async throws {
    try await self.injectedLatency()
    try self.withState { state throws(BackendError) in
      try state.consumeInjectedWriteFault("compact")
      try state.compact(to: revision)
    }
  }

  // MARK: Watches

  /// The next event of watcher `id`, waiting for a commit if needed; `nil` when it was cancelled.
  func nextWatchEvent(_ id: Int) async throws -> BackendWatchEvent? {
    if self.withState({ $0.stalledWatchers.contains(id) }) {
      // Stalled: deliver nothing until the consumer gives up (cancellation ends the watch).
      do {
        while true { try await Task.sleep(for: .seconds(3600)) }
      } catch {
        self.cancelWatch(id)
        return nil
      }
    }
    switch self.withState({ $0.nextWatchStep(id) }) {
    case .event(let event): return event
    case .end(let error?): throw error
    case .end(nil): return nil
    case .wait: break
    }
    return try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<BackendWatchEvent?, any Error>) in
        let step = self.withState { state -> WatchStep in
          let step = state.nextWatchStep(id)
          guard case .wait = step else { return step }
          if Task.isCancelled {
            _ = state.removeWatcher(id)
            return .end(nil)
          }
          state.watchers[id]!.waiter = continuation
          return step
        }
        switch step {
        case .event(let event): continuation.resume(returning: event)
        case .end(let error?): continuation.resume(throwing: error)
        case .end(nil): continuation.resume(returning: nil)
        case .wait: break
        }
      }
    } onCancel: {
      self.cancelWatch(id)
    }
  }

  /// Removes watcher `id`; a consumer waiting on it gets the end of the sequence.
  func cancelWatch(_ id: Int) {
    let waiter = self.withState { state in
      state.stalledWatchers.remove(id)
      return state.removeWatcher(id)
    }
    waiter?.resume(returning: nil)
  }

  // MARK: Service

  /// Drives time: expires leases, renews kept-alive ones, sends progress notifications,
  /// auto-compacts and saves snapshots, until cancelled or a graceful shutdown; then saves a
  /// last snapshot (if a path is configured) and returns.
  public func run() async throws {
    let tick = min(self.configuration.tickInterval, self.configuration.progressNotifyInterval)
    try? await cancelWhenGracefulShutdown {
      var lastProgress = self.now()
      var lastSnapshot = self.now()
      // What the last snapshot saved: the revision, and the lease counter (lease grants and
      // revokes change no revision, but a restored store must not hand out a lease ID again).
      var lastSaved = self.withState { ($0.revision, $0.nextLeaseID, $0.leases.count) }
      while !Task.isCancelled {
        try await self.sleep(tick)
        let now = self.now()
        let progressDue = now - lastProgress >= self.configuration.progressNotifyInterval
        if progressDue { lastProgress = now }
        let current = self.withState { state in
          state.renewKeptAliveLeases()
          if progressDue { state.progressTick() }
          if let retention = self.configuration.historyRetention, state.revision - state.compactRevision > 2 * retention {
            try? state.compact(to: state.revision - retention)
          }
          return (state.revision, state.nextLeaseID, state.leases.count)
        }
        if self.configuration.snapshotPath != nil, now - lastSnapshot >= self.configuration.snapshotInterval {
          lastSnapshot = now
          if current != lastSaved {
            do {
              try self.saveSnapshot()
              lastSaved = current
            } catch {
              self.logger.error("could not save the memory backend snapshot", metadata: ["error": "\(error)"])
            }
          }
        }
      }
    }
    if self.configuration.snapshotPath != nil {
      do {
        try self.saveSnapshot()
      } catch {
        self.logger.error("could not save the memory backend snapshot at shutdown", metadata: ["error": "\(error)"])
        throw error
      }
    }
  }

  // MARK: Snapshots

  /// Writes the current state to ``Configuration/snapshotPath`` atomically.
  ///
  /// - Throws: ``BackendError/Code/invalidArgument`` without a snapshot path;
  ///   ``BackendError/Code/internalError`` if the file cannot be written.
  public func saveSnapshot() throws(BackendError) {
    guard let path = self.configuration.snapshotPath else {
      throw BackendError(code: .invalidArgument, message: "this memory backend has no snapshot path")
    }
    try self.saveSnapshot(to: path)
  }

  /// Writes the current state to `path` atomically (a temporary file, then a rename).
  public func saveSnapshot(to path: String) throws(BackendError) {
    let snapshot = self.withState { $0.snapshot() }
    do {
      let url = URL(fileURLWithPath: path)
      try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
      try snapshot.encoded().write(to: url, options: .atomic)
    } catch {
      throw BackendError(code: .internalError, message: "cannot write the snapshot to \(path)", cause: error)
    }
    self.logger.debug(
      "saved the memory backend snapshot",
      metadata: ["path": "\(path)", "revision": "\(snapshot.header.revision)", "keys": "\(snapshot.kvs.count)"])
  }

  // MARK: Fault injection

  /// Fault injection, **for tests only**: break watches, compact, fail writes, add latency.
  public var faults: Faults { Faults(backend: self) }

  /// Faults to inject into a ``MemoryBackend`` — **for tests only**.
  public struct Faults: Sendable {
    let backend: MemoryBackend

    /// Ends every open watch with ``BackendError/Code/unavailable`` once it has delivered the
    /// events already buffered, as a broken connection would; the caller resumes from its last
    /// revision + 1.
    public func breakWatches() {
      self.backend.withState { $0.endAllWatches(BackendError(code: .unavailable, message: "injected fault: watch broken")) }
    }

    /// Compacts the store at its current revision (unless it already is); returns that revision.
    @discardableResult
    public func compactNow() -> Int64 {
      self.backend.withState { state in
        if state.compactRevision < state.revision { try? state.compact(to: state.revision) }
        return state.revision
      }
    }

    /// Fails the next `count` writes (put, delete, txn with a write, lease grant and revoke,
    /// compact) with ``BackendError/Code/unavailable`` ("injected fault"), changing nothing.
    public func failNextWrites(_ count: Int) {
      self.backend.withState { $0.failNextWrites = max(0, count) }
    }

    /// Fails the next `count` range reads with ``BackendError/Code/unavailable`` ("injected fault").
    public func failNextReads(_ count: Int) {
      self.backend.withState { $0.failNextReads = max(0, count) }
    }

    /// Makes every watch open now go silent, as over a connection that hangs without closing:
    /// it delivers nothing more (events stay buffered) and ``MemoryBackend/requestWatchProgress()``
    /// gets no answer until every stalled watch has been cancelled. Watches opened later work.
    public func stallWatches() {
      self.backend.withState { state in
        state.stalledWatchers.formUnion(state.watchers.keys)
        // A consumer already waiting stays parked: nothing is handed to a stalled watch.
        for id in state.watchers.keys { state.watchers[id]!.stalled = true }
      }
    }

    /// Latency added before every call (measured on the backend's clock); zero for none.
    public var latency: Duration {
      get { self.backend.state.withLock { $0.latency } }
      nonmutating set { self.backend.state.withLock { $0.latency = newValue } }
    }

    /// How many watches are open (a dropped or cancelled watch is no longer counted).
    public var openWatchCount: Int { self.backend.withState { $0.watchers.count } }
  }
}

/// Keeps one watch registered while its stream or an iterator of it exists; dropping both
/// cancels the watch. A watch is registered when ``MemoryBackend/watch(_:options:)`` is called
/// (so "from now" means from that call), and buffers from then on.
final class MemoryWatchRegistration: Sendable {
  let backend: MemoryBackend
  let id: Int

  init(backend: MemoryBackend, id: Int) {
    self.backend = backend
    self.id = id
  }

  func next() async throws -> BackendWatchEvent? { try await self.backend.nextWatchEvent(self.id) }

  deinit { self.backend.cancelWatch(self.id) }
}

/// One iteration of a watch: dropping the iterator (stopping the loop) cancels the watch, as
/// with an `AsyncThrowingStream`. A watch is meant to be iterated once.
final class MemoryWatchIteration: Sendable {
  let registration: MemoryWatchRegistration

  init(registration: MemoryWatchRegistration) { self.registration = registration }

  func next() async throws -> BackendWatchEvent? { try await self.registration.next() }

  deinit { self.registration.backend.cancelWatch(self.registration.id) }
}
