@testable import Capstan
import CapstanTesting
import CapstanTestSupport
import Foundation
import Logging
import Synchronization
import Testing

/// Copies `spec.size` to `status.size` when they differ; counts its writes.
func copySpecToStatus(
  writes: WorkQueueTestBox<Int>
) -> @Sendable (ReconcileRequest, ReconcileContext) async throws -> ReconcileResult {
  { request, context in
    guard var widget = try context.object(request, as: Widget.self) else { return .done }
    guard widget.status?.size != widget.spec.size else { return .done }
    widget.status = Widget.Status(size: widget.spec.size)
    try await context.update(widget)
    writes.withLock { $0 += 1 }
    return .done
  }
}

@Suite("Controller on the embedded backend")
struct ControllerTests {
  /// A status writer reaches a fixed point: one write per object, then the events of its own
  /// writes reconcile to `.done` without writing again.
  @Test func statusWriterReachesAFixedPoint() async throws {
    let harness = try ControllerHarness()
    for index in 0..<5 { try await harness.backend.store(Widget("w\(index)", size: index + 1)) }
    let writes = WorkQueueTestBox(0)
    let controller = harness.controller(copySpecToStatus(writes: writes))
    try await whileRunning([harness.informer], controller) {
      try await eventually("every status written") {
        var converged = true
        for index in 0..<5 {
          let widget = try await harness.backend.load(Widget.self, "w\(index)")
          converged = converged && widget?.status?.size == index + 1
        }
        return converged
      }
      // The write events come back as reconciles that find nothing to do: 5 initial + 5 echoes.
      try await eventually("the echoes of the writes reconciled") { harness.reconciles("success") >= 10 }
      try await eventually("the queue idle") { controller.queue.count == 0 && harness.metric("controller_runtime_active_workers") == 0 }
      try await Task.sleep(for: .milliseconds(100))
      let settled = harness.reconciles("success")
      try await Task.sleep(for: .milliseconds(100))
      #expect(writes.current == 5)
      #expect(harness.reconciles("success") == settled, "no more reconciles once settled")
      #expect(harness.reconciles("requeue") == 0)
      #expect(harness.metric("controller_runtime_reconcile_errors_total") == 0)
      #expect((harness.metric("controller_runtime_reconcile_time_seconds") ?? 0) > 0)
    }
  }

  /// A concurrent writer bumps the object between the reconcile's read and its write: the write
  /// conflicts, the key is requeued (counted as `requeue`, not as an error, not logged as one),
  /// and the retry succeeds on the fresh object.
  @Test func conflictIsRequeuedAndSucceeds() async throws {
    let harness = try ControllerHarness()
    try await harness.backend.store(Widget("w", size: 3))
    let attempts = WorkQueueTestBox(0)
    let (logger, logs) = RecordingLogHandler.logger()
    let controller = harness.controller(logger: logger) { request, context in
      guard var widget = try context.object(request, as: Widget.self) else { return .done }
      guard widget.status == nil else { return .done }
      if attempts.withLock({ $0 += 1; return $0 }) == 1 {
        var bumped = widget
        bumped.metadata.labels["bumped"] = "yes"
        try await context.backend.store(bumped)
      }
      widget.status = Widget.Status(size: widget.spec.size)
      try await context.update(widget)
      return .done
    }
    try await whileRunning([harness.informer], controller) {
      try await eventually("the status written") {
        try await harness.backend.load(Widget.self, "w")?.status != nil
      }
      let widget = try #require(try await harness.backend.load(Widget.self, "w"))
      #expect(widget.metadata.labels["bumped"] == "yes", "the retry wrote over the concurrent change")
      #expect(attempts.current >= 2)
      #expect(harness.reconciles("requeue") >= 1)
      #expect(harness.metric("controller_runtime_reconcile_errors_total") == 0)
      #expect(logs.all.filter { $0.level >= .warning }.isEmpty)
    }
  }

  /// A thrown error is counted and retried with growing backoff until the reconcile succeeds.
  @Test func thrownErrorIsRetriedWithBackoff() async throws {
    struct Flaky: Error {}
    let harness = try ControllerHarness()
    try await harness.backend.store(Widget("w"))
    let times = WorkQueueTestBox<[ContinuousClock.Instant]>([])
    let controller = harness.controller(
      rateLimiter: ExponentialBackoffRateLimiter(base: .milliseconds(20), cap: .seconds(1))
    ) { _, _ in
      let attempt = times.withLock { $0.append(.now); return $0.count }
      if attempt <= 3 { throw Flaky() }
      return .done
    }
    try await whileRunning([harness.informer], controller) {
      try await eventually("the reconcile succeeded") { harness.reconciles("success") == 1 }
      let gaps = times.withLock { instants in zip(instants, instants.dropFirst()).map { $0.duration(to: $1) } }
      #expect(times.current.count == 4)
      #expect(harness.reconciles("error") == 3)
      #expect(harness.metric("controller_runtime_reconcile_errors_total") == 3)
      // Backoff 20, 40, 80 ms: each retry waits at least its backoff.
      for (index, gap) in gaps.enumerated() {
        #expect(gap >= .milliseconds(20 << index) - .milliseconds(1), "retry \(index + 1) waited \(gap)")
      }
      #expect(controller.queue.numRequeues(ReconcileRequest(namespace: "default", name: "w")) == 0)
    }
  }

  /// A `TerminalError` is counted as `terminal_error` and not retried.
  @Test func terminalErrorIsNotRetried() async throws {
    let harness = try ControllerHarness()
    try await harness.backend.store(Widget("doomed"))
    try await harness.backend.store(Widget("fine"))
    let attempts = WorkQueueTestBox<[String: Int]>([:])
    let controller = harness.controller(workers: 1, rateLimiter: ExponentialBackoffRateLimiter(base: .milliseconds(1), cap: .milliseconds(1))) { request, _ in
      attempts.withLock { $0[request.name, default: 0] += 1 }
      if request.name == "doomed" { throw TerminalError("the spec cannot work") }
      return .requeue(after: .milliseconds(5))
    }
    try await whileRunning([harness.informer], controller) {
      // "fine" keeps coming back every 5 ms; a retried "doomed" would come back every 1 ms.
      try await eventually("several rounds") { attempts.current["fine", default: 0] >= 10 }
      #expect(attempts.current["doomed"] == 1)
      #expect(harness.reconciles("terminal_error") == 1)
      #expect(harness.reconciles("requeue_after") >= 10)
      #expect(harness.metric("controller_runtime_reconcile_errors_total") == 1)
    }
  }

  /// With four workers and a stream of updates, no key is ever in two reconciles at once, while
  /// different keys do run concurrently.
  @Test func oneKeyIsNeverReconciledConcurrently() async throws {
    let harness = try ControllerHarness()
    let names = (0..<3).map { "w\($0)" }
    for name in names { try await harness.backend.store(Widget(name)) }
    let shared = InFlightTracker()
    let controller = harness.controller(workers: 4) { request, _ in
      shared.enter(request.name)
      try await Task.sleep(for: .milliseconds(2))
      shared.leave(request.name)
      return .done
    }
    try await whileRunning([harness.informer], controller) {
      _ = try await harness.informer.waitForSync()
      for round in 0..<100 {
        for name in names { try await harness.backend.store(Widget(name, size: round)) }
        if round % 10 == 0 { try await Task.sleep(for: .milliseconds(3)) }
      }
      try await eventually("many reconciles") { shared.snapshot.reconciles >= 20 }
      try await eventually("the queue idle") { controller.queue.count == 0 && harness.metric("controller_runtime_active_workers") == 0 }
      let final = shared.snapshot
      #expect(final.violations == 0)
      #expect(final.maxConcurrent >= 2, "different keys ran concurrently")
    }
  }
}

/// Which keys are being reconciled, and what it saw: two reconciles of one key at once, the
/// highest number of keys in flight.
final class InFlightTracker: Sendable {
  struct Snapshot: Sendable {
    var inFlight: Set<String> = []
    var violations = 0
    var maxConcurrent = 0
    var reconciles = 0
  }
  private let state = Mutex(Snapshot())

  func enter(_ name: String) {
    self.state.withLock { state in
      if !state.inFlight.insert(name).inserted { state.violations += 1 }
      state.reconciles += 1
      state.maxConcurrent = max(state.maxConcurrent, state.inFlight.count)
    }
  }

  func leave(_ name: String) { self.state.withLock { _ = $0.inFlight.remove(name) } }

  var snapshot: Snapshot { self.state.withLock { $0 } }
}

extension ControllerTests {
  /// An owned object's event enqueues the owner its controller reference names — not owners
  /// without `controller == true`, nor owners of another kind.
  @Test func ownedObjectEventEnqueuesItsOwner() async throws {
    let harness = try ControllerHarness()
    let gadgets = try Informer(for: Gadget.self, backend: harness.backend, logger: silentLogger)
    try await harness.backend.store(Widget("w1"))
    let seen = WorkQueueTestBox<[String]>([])
    let controller = harness.controller(owned: [gadgets], workers: 1) { request, _ in
      seen.withLock { $0.append(request.name) }
      return .done
    }
    try await whileRunning([harness.informer, gadgets], controller) {
      try await eventually("the initial reconcile") { seen.current == ["w1"] }
      try await harness.backend.store(Gadget("g1", owner: "w1"))
      try await eventually("the owner reconciled for its gadget") { seen.current.count >= 2 }
      try await harness.backend.store(Gadget("g2", owner: "w2", controller: false))
      try await harness.backend.store(Gadget("g3", owner: "w3", ownerKind: "Other"))
      try await harness.backend.store(Gadget("g4", owner: "w1"))
      // One worker, first in first out: a request for w2 or w3 would come before w1's third.
      try await eventually("the owner reconciled again") { seen.current.count >= 3 }
      #expect(seen.current == ["w1", "w1", "w1"])
    }
  }

  /// `generationChanged` lets adds and generation bumps through and filters status-only updates.
  @Test func generationChangedFiltersStatusOnlyUpdates() async throws {
    let harness = try ControllerHarness()
    try await harness.backend.store(Widget("w1", generation: 1))
    let seen = WorkQueueTestBox<[String]>([])
    let controller = harness.controller(workers: 1, predicates: [.generationChanged]) { request, _ in
      seen.withLock { $0.append(request.name) }
      return .done
    }
    try await whileRunning([harness.informer], controller) {
      try await eventually("the initial reconcile") { seen.current == ["w1"] }
      var widget = Widget("w1", generation: 1)
      widget.status = Widget.Status(size: 7)
      let statusWrite = try await harness.backend.store(widget)
      try await harness.informer.waitUntil(revision: statusWrite)
      // A canary after the status write: one worker, first in first out.
      try await harness.backend.store(Widget("canary"))
      try await eventually("the canary reconciled") { seen.current.count >= 2 }
      #expect(seen.current == ["w1", "canary"])
      try await harness.backend.store(Widget("w1", size: 2, generation: 2))
      try await eventually("the generation bump reconciled") { seen.current.count >= 3 }
      #expect(seen.current == ["w1", "canary", "w1"])
    }
  }

  /// With a cache lagging 30 ms behind the store, the reconcile after a write still sees the
  /// written resourceVersion, so its compare never conflicts.
  @Test func nextReconcileSeesItsOwnWrite() async throws {
    let harness = try ControllerHarness(
      backend: SlowWatchBackend(wrapping: MemoryBackend(), delay: .milliseconds(30)))
    try await harness.backend.store(Widget("w", size: 0))
    let lastWrite = WorkQueueTestBox<Int64>(0)
    let stale = WorkQueueTestBox(0)
    let controller = harness.controller { request, context in
      guard var widget = try context.object(request, as: Widget.self) else { return .done }
      if widget.metadata.resourceVersion < lastWrite.current { stale.withLock { $0 += 1 } }
      guard widget.spec.size < 5 else { return .done }
      widget.spec.size += 1
      let revision = try await context.update(widget)
      lastWrite.withLock { $0 = revision }
      #expect(context.highestWrittenRevision == revision)
      return .requeue(after: .zero)
    }
    try await whileRunning([harness.informer], controller) {
      try await eventually("five writes") { try await harness.backend.load(Widget.self, "w")?.spec.size == 5 }
      try await eventually("the last reconcile") { harness.reconciles("success") >= 1 }
      #expect(stale.current == 0)
      #expect(harness.reconciles("requeue") == 0, "no conflict")
      #expect(harness.reconciles("requeue_after") == 5)
    }
  }

  /// Read your writes covers owned kinds: after creating a Gadget, the next reconcile finds it
  /// in the (lagging) Gadget cache, so it never tries to create the same one twice.
  @Test func nextReconcileSeesTheOwnedObjectItCreated() async throws {
    let harness = try ControllerHarness(
      backend: SlowWatchBackend(wrapping: MemoryBackend(), delay: .milliseconds(30)))
    let gadgets = try Informer(for: Gadget.self, backend: harness.backend, logger: silentLogger)
    try await harness.backend.store(Widget("w"))
    let controller = harness.controller(owned: [gadgets]) { request, context in
      let count = try gadgets.cache.count
      guard count < 3 else { return .done }
      try await context.create(Gadget("g\(count)", owner: request.name))
      return .requeue(after: .zero)
    }
    try await whileRunning([harness.informer, gadgets], controller) {
      try await eventually("three gadgets") {
        try await harness.backend.range(.prefix(Gadget.layout.prefix), options: BackendRangeOptions()).kvs.count == 3
      }
      try await eventually("the last reconcile") { harness.reconciles("success") >= 1 }
      #expect(harness.reconciles("requeue") == 0, "no create conflicted")
      #expect(harness.reconciles("requeue_after") == 3)
    }
  }

  /// A reconcile that records "started", sleeps for `duration`, then records "finished" (or
  /// "cancelled" if its task is cancelled first).
  static func sleeping(
    for duration: Duration, recordingIn progress: WorkQueueTestBox<[String]>
  ) -> @Sendable (ReconcileRequest, ReconcileContext) async throws -> ReconcileResult {
    { _, _ in
      progress.withLock { $0.append("started") }
      do {
        try await Task.sleep(for: duration)
        progress.withLock { $0.append("finished") }
      } catch {
        progress.withLock { $0.append("cancelled") }
      }
      return .done
    }
  }

  /// `shutdown()` lets the in-flight reconcile finish before `run()` returns.
  @Test func gracefulStopFinishesTheInFlightReconcile() async throws {
    let harness = try ControllerHarness()
    try await harness.backend.store(Widget("w"))
    let progress = WorkQueueTestBox<[String]>([])
    let controller = harness.controller(Self.sleeping(for: .milliseconds(200), recordingIn: progress))
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { try await harness.informer.run() }
      defer { group.cancelAll() }
      async let stopped: Void = controller.run()
      try await eventually("the reconcile started") { progress.current == ["started"] }
      controller.shutdown()
      try await stopped
      #expect(progress.current == ["started", "finished"])
      #expect(harness.reconciles("success") == 1)
    }
  }

  /// A reconcile that outlasts the shutdown timeout is cancelled, and `run()` returns.
  @Test func shutdownTimeoutCancelsALongReconcile() async throws {
    let harness = try ControllerHarness()
    try await harness.backend.store(Widget("w"))
    let progress = WorkQueueTestBox<[String]>([])
    let controller = harness.controller(shutdownTimeout: .milliseconds(50), Self.sleeping(for: .seconds(60), recordingIn: progress))
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { try await harness.informer.run() }
      defer { group.cancelAll() }
      async let stopped: Void = controller.run()
      try await eventually("the reconcile started") { progress.current == ["started"] }
      let start = ContinuousClock.now
      controller.shutdown()
      try await stopped
      #expect(progress.current == ["started", "cancelled"])
      #expect(start.duration(to: .now) < .seconds(5))
    }
  }
}

/// A primary kind under a prefix of its own, so this test can share its etcd.
struct EtcdWidget: Resource, Hashable {
  static let kind = "EtcdWidget"
  static let plural = "controllerwidgets\(UInt32.random(in: 0...UInt32.max))"
  var metadata: ObjectMeta
  var spec: Widget.Spec
  var status: Widget.Status?
}

@Suite("Controller on a real etcd", .etcdServer("capstan-controller"))
struct ControllerEtcdTests {
  /// The status writer reaches its fixed point on etcd: one write per object.
  @Test func statusWriterReachesAFixedPointOnEtcd() async throws {
    try await withBackend(.etcd) { backend in
      let metrics = RecordingMetrics()
      for index in 0..<3 {
        try await backend.store(
          EtcdWidget(
            metadata: ObjectMeta(uid: "uid-\(index)", name: "w\(index)", namespace: "default", generation: 1),
            spec: Widget.Spec(size: index + 1)))
      }
      let informer = try Informer(for: EtcdWidget.self, backend: backend, logger: silentLogger)
      let writes = WorkQueueTestBox(0)
      let controller = Controller(
        name: "etcd-widgets", primary: informer,
        reconciler: ClosureReconciler { request, context in
          guard var widget = try context.object(request, as: EtcdWidget.self) else { return .done }
          guard widget.status?.size != widget.spec.size else { return .done }
          widget.status = Widget.Status(size: widget.spec.size)
          try await context.update(widget)
          writes.withLock { $0 += 1 }
          return .done
        },
        configuration: ControllerConfiguration(metricsFactory: metrics), logger: silentLogger)
      @Sendable func successes() -> Double {
        metrics.value("controller_runtime_reconcile_total", [("controller", "etcd-widgets"), ("result", "success")]) ?? 0
      }
      try await whileRunning([informer], controller) {
        try await eventually("the echoes of the writes reconciled") { successes() >= 6 }
        try await eventually("the queue idle") { controller.queue.count == 0 }
        try await Task.sleep(for: .milliseconds(100))
        let settled = successes()
        try await Task.sleep(for: .milliseconds(100))
        #expect(writes.current == 3)
        #expect(successes() == settled, "no more reconciles once settled")
        for index in 0..<3 {
          let key = EtcdWidget.layout.key(namespace: "default", name: "w\(index)")
          let kv = try #require(try await backend.range(.key(key), options: BackendRangeOptions()).kvs.first)
          #expect(try JSONDecoder().decode(EtcdWidget.self, from: kv.value).status?.size == index + 1)
        }
      }
    }
  }
}

extension ControllerTests {
  /// Every reconcile logs under a `request_id` of its own, the one the context reports.
  @Test func eachReconcileHasItsOwnRequestID() async throws {
    let harness = try ControllerHarness()
    for index in 0..<3 { try await harness.backend.store(Widget("w\(index)")) }
    let ids = WorkQueueTestBox<[String]>([])
    let (logger, _) = RecordingLogHandler.logger()
    let controller = harness.controller(logger: logger) { _, context in
      #expect(context.logger[metadataKey: "request_id"] == "\(context.requestID)")
      #expect(context.logger[metadataKey: "controller"] == "widgets")
      ids.withLock { $0.append(context.requestID) }
      return ids.current.count < 6 ? .requeue(after: .zero) : .done
    }
    try await whileRunning([harness.informer], controller) {
      try await eventually("six reconciles") { ids.current.count >= 6 }
      #expect(Set(ids.current).count == ids.current.count)
      #expect(ids.current.allSatisfy { !$0.isEmpty })
    }
  }

  /// Keys of the initial list are queued at low priority: a real change made while they wait is
  /// reconciled before them.
  @Test func initialListYieldsToRealChanges() async throws {
    let harness = try ControllerHarness()
    for index in 0..<3 { try await harness.backend.store(Widget("initial\(index)")) }
    let gate = WorkQueueTestBox(false)
    let seen = WorkQueueTestBox<[String]>([])
    let controller = harness.controller(workers: 1) { request, _ in
      seen.withLock { $0.append(request.name) }
      while !gate.current { try await Task.sleep(for: .milliseconds(2)) }
      return .done
    }
    try await whileRunning([harness.informer], controller) {
      try await eventually("the first initial key reconciling") { seen.current.count == 1 }
      try await harness.backend.store(Widget("hot"))
      try await eventually("the change queued behind the initial keys") { controller.queue.count == 3 }
      gate.withLock { $0 = true }
      try await eventually("every key reconciled") { seen.current.count == 4 }
      #expect(seen.current[1] == "hot", "order: \(seen.current)")
      #expect(Set(seen.current) == ["initial0", "initial1", "initial2", "hot"])
    }
  }
}
