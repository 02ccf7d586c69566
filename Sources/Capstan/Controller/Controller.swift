public import Logging
public import ServiceLifecycle
import Foundation
import Metrics
import Synchronization

/// Runs a ``Reconciler`` for every primary object that changes: a swift-service-lifecycle
/// `Service`.
///
/// - **Sources.** The primary ``Informer`` and any owned ones are given from outside (informers
///   are shared); the controller adds one handler to each. A primary event enqueues the object's
///   key if every predicate passes it; an owned object's event enqueues its owner — each owner
///   reference with `controller == true` whose kind is the primary's. The initial list's `added`
///   events (and a late handler's replay of it) are queued at `.low` priority, real changes at
///   `.normal`.
/// - **Workers.** `workers` tasks take keys from a ``WorkQueue``, which never hands one key to two
///   of them; they start once the primary informer has synced.
/// - **Results.** ``ReconcileResult/done`` forgets the key's backoff; ``ReconcileResult/requeue(after:)``
///   forgets it and queues the key after the delay; a ``ReconcileConflict`` requeues the key
///   rate-limited (logged at debug); a ``TerminalError`` is counted, logged and forgotten; any other
///   error is counted, logged and retried rate-limited.
/// - **Read your writes.** For each informer (primary or owned), the highest revision a reconcile
///   wrote under its prefix is remembered; before the next reconcile of that key the worker waits
///   (up to `readYourWritesTimeout`, then runs anyway and logs a warning) until each has seen it.
///   Writes under prefixes no informer watches are not waited for: no cache would show them.
/// - **Stopping.** On graceful shutdown or ``shutdown()`` the queue drains: queued and in-flight
///   reconciles finish, bounded by `shutdownTimeout`, after which they are cancelled. Cancelling
///   `run()` stops at once (in-flight reconciles see the cancellation).
/// - **Metrics**, labelled `controller` = ``name``: `controller_runtime_reconcile_total{result}`
///   with `result` one of `success` (done), `requeue_after`, `requeue` (write conflict), `error`,
///   `terminal_error`; `controller_runtime_reconcile_errors_total` (errors and terminal errors);
///   `controller_runtime_reconcile_time_seconds` (timer); `controller_runtime_active_workers`
///   (gauge); and the work queue's `workqueue_*` metrics with `name` = ``name``.
public final class Controller: Service, Sendable {
  /// The controller's name: its metrics' `controller` label, its queue's name, its log metadata.
  public let name: String
  /// The informer of the reconciled kind.
  public let primary: Informer
  /// Informers of kinds whose objects the primary kind owns.
  public let owned: [Informer]
  /// The primary informer, then the owned ones.
  private let informers: [Informer]
  let reconciler: any Reconciler
  let configuration: ControllerConfiguration
  let logger: Logger
  let queue: WorkQueue<ReconcileRequest>
  private let metrics: ControllerMetrics
  private let state = Mutex(State())

  private struct State {
    /// What the last reconcile of a key wrote: the highest revision under each informer's prefix
    /// (by index in `informers`), until the next reconcile of the key waited for it.
    var pendingRevisions: [ReconcileRequest: [Int: Int64]] = [:]
    var activeWorkers = 0
    var stopRequested = false
    var nextWaiterID: UInt64 = 0
    var stopWaiters: [UInt64: CheckedContinuation<Bool, Never>] = [:]
  }

  /// A controller named `name` that reconciles `primary`'s objects with `reconciler`, also
  /// triggered by changes to objects of the `owned` informers.
  public init(
    name: String,
    primary: Informer,
    owned: [Informer] = [],
    reconciler: some Reconciler,
    configuration: ControllerConfiguration = ControllerConfiguration(),
    logger: Logger
  ) {
    self.name = name
    self.primary = primary
    self.owned = owned
    self.informers = [primary] + owned
    self.reconciler = reconciler
    self.configuration = configuration
    var logger = logger
    logger[metadataKey: "controller"] = "\(name)"
    self.logger = logger
    self.metrics = ControllerMetrics(controller: name, factory: configuration.metricsFactory)
    self.queue = WorkQueue(
      name: name,
      configuration: WorkQueue.Configuration(
        rateLimiter: configuration.rateLimiter, maxRetries: configuration.maxRetries,
        lowPriorityAging: configuration.lowPriorityAging, clock: configuration.clock,
        metricsFactory: configuration.metricsFactory, logger: logger))
  }

  /// Asks a running controller to stop as on graceful shutdown: no new events are taken, queued
  /// and in-flight reconciles finish (within `shutdownTimeout`), then `run()` returns.
  public func shutdown() {
    let waiters = self.state.withLock { state in
      state.stopRequested = true
      defer { state.stopWaiters = [:] }
      return Array(state.stopWaiters.values)
    }
    for waiter in waiters { waiter.resume(returning: true) }
  }

  // MARK: running

  /// Consumes the informers' events and runs the workers until cancelled, shut down gracefully
  /// or ``shutdown()``.
  public func run() async throws {
    await withGracefulShutdownHandler {
      await self.runUntilStopped()
    } onGracefulShutdown: {
      self.shutdown()
    }
  }

  private enum Child: Sendable { case worker, source, supervisor, shutdownTimedOut }

  private func runUntilStopped() async {
    self.logger.info("controller starting", metadata: ["workers": "\(self.configuration.workers)"])
    await withTaskGroup(of: Child.self) { group in
      let primaryEvents = self.primary.addHandler("controller-\(self.name)")
      group.addTask {
        for await event in primaryEvents { self.enqueuePrimary(event) }
        return .source
      }
      for informer in self.owned {
        let events = informer.addHandler("controller-\(self.name)")
        group.addTask {
          for await event in events { self.enqueueOwner(of: event, from: informer) }
          return .source
        }
      }
      for _ in 0..<self.configuration.workers {
        group.addTask {
          await self.work()
          return .worker
        }
      }
      group.addTask { await self.superviseShutdown() }
      var runningWorkers = self.configuration.workers
      while let child = await group.next() {
        switch child {
        case .worker:
          runningWorkers -= 1
          if runningWorkers == 0 { group.cancelAll() }
        case .shutdownTimedOut:
          group.cancelAll()
        case .source, .supervisor:
          break
        }
      }
    }
    self.logger.info("controller stopped")
  }

  /// Waits for a stop; then drains the queue, and abandons it (cancelling the workers) once the
  /// shutdown timeout passes. Cancelled when the workers have finished.
  private func superviseShutdown() async -> Child {
    guard await self.waitForStopRequest() else {
      self.queue.shutDown(.abandon)
      return .supervisor
    }
    self.logger.info("controller stopping: draining the work queue")
    self.queue.shutDown(.drain)
    do {
      try await Task.sleep(for: self.configuration.shutdownTimeout)
    } catch {
      return .supervisor
    }
    self.logger.warning(
      "controller shutdown timed out: cancelling in-flight reconciles",
      metadata: ["timeout": "\(self.configuration.shutdownTimeout)"])
    self.queue.shutDown(.abandon)
    return .shutdownTimedOut
  }

  /// True once a stop is requested; false if the task is cancelled first.
  private func waitForStopRequest() async -> Bool {
    let id = self.state.withLock { state in
      state.nextWaiterID += 1
      return state.nextWaiterID
    }
    return await withTaskCancellationHandler {
      await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
        let immediate: Bool? = self.state.withLock { state in
          if state.stopRequested { return true }
          if Task.isCancelled { return false }
          state.stopWaiters[id] = continuation
          return nil
        }
        if let immediate { continuation.resume(returning: immediate) }
      }
    } onCancel: {
      let waiter = self.state.withLock { $0.stopWaiters.removeValue(forKey: id) }
      waiter?.resume(returning: false)
    }
  }

  private var stopRequested: Bool { self.state.withLock { $0.stopRequested } }

  // MARK: events

  /// `.low` for the initial list's `added` events (delivered before the informer synced, or
  /// for objects not newer than its first list), `.normal` for real changes.
  private static func priority(of event: InformerEvent, from informer: Informer) -> WorkQueuePriority {
    guard case .added(let object) = event else { return .normal }
    guard let listed = informer.initialListRevision else { return .low }
    return object.resourceVersion <= listed ? .low : .normal
  }

  private func enqueuePrimary(_ event: InformerEvent) {
    guard self.configuration.predicates.allSatisfy({ $0(event) }) else { return }
    let object = event.object
    self.queue.add(
      ReconcileRequest(namespace: object.namespace, name: object.name),
      priority: Self.priority(of: event, from: self.primary))
  }

  private func enqueueOwner(of event: InformerEvent, from informer: Informer) {
    var owners: Set<ReconcileRequest> = []
    if case .updated(let old, _) = event { owners.formUnion(self.controllingOwners(of: old.metadata)) }
    owners.formUnion(self.controllingOwners(of: event.object.metadata))
    let priority = Self.priority(of: event, from: informer)
    for owner in owners { self.queue.add(owner, priority: priority) }
  }

  /// The primary objects that control `metadata`'s object.
  private func controllingOwners(of metadata: ObjectMeta) -> [ReconcileRequest] {
    let layout = self.primary.layout
    return metadata.ownerReferences.compactMap { reference in
      guard reference.controller == true, reference.kind == layout.kind else { return nil }
      return ReconcileRequest(namespace: layout.isNamespaced ? metadata.namespace : "", name: reference.name)
    }
  }

  // MARK: workers

  private func work() async {
    guard let cache = await self.waitForPrimarySync() else { return }
    while let request = await self.queue.get() {
      await self.process(request, cache: cache)
      self.queue.done(request)
    }
  }

  /// The primary cache once synced; nil if the controller stops or the informer ends first.
  private func waitForPrimarySync() async -> ObjectCache? {
    while !Task.isCancelled && !self.stopRequested {
      do {
        return try await self.primary.waitForSync(timeout: .seconds(1))
      } catch let error as InformerError where error.code == .timedOut {
        continue
      } catch {
        self.logger.warning("controller stops waiting for its informer", metadata: ["error": "\(error)"])
        return nil
      }
    }
    return nil
  }

  private func process(_ request: ReconcileRequest, cache: ObjectCache) async {
    let active = self.state.withLock { state in
      state.activeWorkers += 1
      return state.activeWorkers
    }
    self.metrics.activeWorkers.record(active)
    defer {
      let active = self.state.withLock { state in
        state.activeWorkers -= 1
        return state.activeWorkers
      }
      self.metrics.activeWorkers.record(active)
    }

    let requestID = UUID().uuidString.lowercased()
    var logger = self.logger
    logger[metadataKey: "request"] = "\(request)"
    logger[metadataKey: "request_id"] = "\(requestID)"
    await self.waitForPreviousWrites(of: request, logger: logger)

    let writes = ReconcileWriteRecorder()
    let context = ReconcileContext(
      logger: logger, requestID: requestID, cache: cache, backend: self.primary.backend, writes: writes)
    var outcome: Result<ReconcileResult, any Error> = .success(.done)
    let duration = await Self.elapsed(on: self.configuration.clock) {
      do {
        outcome = .success(try await self.reconciler.reconcile(request, context: context))
      } catch {
        outcome = .failure(error)
      }
    }
    self.metrics.recordReconcileTime(duration)
    self.rememberWrites(writes, of: request)

    switch outcome {
    case .success(.done):
      self.metrics.count(.success)
      self.queue.forget(request)
    case .success(.requeue(let delay)):
      self.metrics.count(.requeueAfter)
      self.queue.forget(request)
      self.queue.add(request, after: delay)
    case .failure(let conflict as ReconcileConflict):
      self.metrics.count(.requeue)
      logger.debug("reconcile conflicted: requeued", metadata: ["conflict": "\(conflict)"])
      self.queue.addRateLimited(request)
    case .failure(let error as TerminalError):
      self.metrics.count(.terminalError)
      logger.error("reconcile failed terminally: not retried", metadata: ["error": "\(error)"])
      self.queue.forget(request)
    case .failure(let error):
      self.metrics.count(.error)
      logger.error(
        "reconcile failed: retrying with backoff",
        metadata: ["error": "\(error)", "retries": "\(self.queue.numRequeues(request))"])
      self.queue.addRateLimited(request)
    }
  }

  private static func elapsed<C: Clock<Duration>>(on clock: C, _ body: () async -> Void) async -> Duration {
    let start = clock.now
    await body()
    return start.duration(to: clock.now)
  }

  /// Remembers, per informer whose prefix they fall under, the highest revision `writes` wrote.
  private func rememberWrites(_ writes: ReconcileWriteRecorder, of request: ReconcileRequest) {
    var pending: [Int: Int64] = [:]
    for (index, informer) in self.informers.enumerated() {
      if let revision = writes.highest(under: informer.layout.prefix) { pending[index] = revision }
    }
    self.state.withLock { state in
      if pending.isEmpty {
        state.pendingRevisions.removeValue(forKey: request)
      } else {
        state.pendingRevisions[request] = pending
      }
    }
  }

  /// Waits until each informer has seen what the previous reconcile of `request` wrote under its
  /// prefix, within `readYourWritesTimeout` in all.
  private func waitForPreviousWrites(of request: ReconcileRequest, logger: Logger) async {
    guard let pending = self.state.withLock({ $0.pendingRevisions.removeValue(forKey: request) }) else { return }
    let deadline = ContinuousClock.now + self.configuration.readYourWritesTimeout
    for (index, revision) in pending.sorted(by: { $0.key < $1.key }) {
      let informer = self.informers[index]
      guard informer.lastSyncRevision < revision else { continue }
      do {
        try await informer.waitUntil(revision: revision, timeout: max(.zero, ContinuousClock.now.duration(to: deadline)))
      } catch {
        logger.warning(
          "reconciling before the cache has seen the previous reconcile's write",
          metadata: ["informer": "\(informer.layout.plural)", "revision": "\(revision)", "error": "\(error)"])
      }
    }
  }
}
