@testable import Capstan
import CapstanTestSupport
import Foundation
import Logging
import ServiceLifecycle
import Testing

/// The manager: shared informers, the service group's order, readiness and graceful shutdown.
@Suite("Manager", .etcdServer("capstan-manager"))
struct ManagerTests {
  @Test func informersAreSharedPerResource() throws {
    let manager = try Manager(backend: MemoryBackend(), logger: silentLogger)
    let first = try manager.informer(for: Widget.layout, indexes: [.ownerUID])
    let again = try manager.informer(for: Widget.layout)
    #expect(first === again)
    #expect(try manager.informer(for: Gadget.layout) !== first)
    #expect(manager.informers.count == 2)

    // An index the shared informer lacks is a conflict, named in the message.
    let missing = #expect(throws: ManagerError.self) { try manager.informer(for: Widget.layout, indexes: [.label("app")]) }
    #expect(missing?.code == .conflict)
    #expect(missing?.message.contains("label:app") == true)
    // A different kind under a taken prefix too.
    let impostor = ResourceLayout(kind: "Impostor", plural: Widget.plural, isNamespaced: true)
    #expect(throws: ManagerError.self) { try manager.informer(for: impostor) }
  }

  @Test func twoControllersOnOneKindShareItsInformer() throws {
    let manager = try Manager(backend: MemoryBackend(), logger: silentLogger)
    let noop = ClosureReconciler { _, _ in .done }
    let a = try manager.addController(name: "a", primary: Widget.layout, owned: [Gadget.layout], reconciler: noop)
    let b = try manager.addController(name: "b", primary: Widget.layout, reconciler: noop)
    #expect(a.primary === b.primary)
    #expect(manager.informers.count == 2)
    let duplicate = #expect(throws: ManagerError.self) {
      try manager.addController(name: "a", primary: Gadget.layout, reconciler: noop)
    }
    #expect(duplicate?.code == .conflict)
  }

  @Test func nothingCanBeAddedOnceRunning() async throws {
    let manager = try Manager(backend: MemoryBackend(), logger: silentLogger)
    _ = try manager.informer(for: Widget.layout)
    try await whileRunning(manager) {
      try await manager.waitUntilReady(timeout: .seconds(10))
      let late = #expect(throws: ManagerError.self) { try manager.informer(for: Gadget.layout) }
      #expect(late?.code == .alreadyRunning)
      await #expect(throws: ManagerError.self) { try await manager.run() }
    }
  }

  @Test func badConfigurationIsRejected() {
    var configuration = ManagerConfiguration()
    configuration.informer.pageSize = 0
    let error = #expect(throws: ManagerError.self) {
      try Manager(backend: MemoryBackend(), configuration: configuration, logger: silentLogger)
    }
    #expect(error?.code == .invalidConfiguration)
  }

  /// Ready once every informer has synced, healthy while running, neither after.
  @Test(arguments: BackendKind.allCases)
  func readinessFollowsTheInformers(kind: BackendKind) async throws {
    try await withBackend(kind) { backend in
      let layout = uniqueLayout()
      let manager = try Manager(backend: backend, configuration: ManagerConfiguration(runsBackend: false), logger: silentLogger)
      _ = try manager.informer(for: layout)
      _ = try manager.informer(for: uniqueLayout(namespaced: false, "\(#function)-cluster"))
      #expect(!manager.isReady)
      #expect(!manager.isHealthy)
      #expect(manager.readiness.unsynced.count == 2)
      try await whileRunning(manager) {
        try await manager.waitUntilReady(timeout: .seconds(10))
        #expect(manager.isReady)
        #expect(manager.isHealthy)
        #expect(manager.readiness.informers.allSatisfy { $0.lastSyncRevision > 0 })
      }
      #expect(!manager.isHealthy)
    }
  }

  /// The manager runs the controller it was given: an object is reconciled, the write lands.
  @Test(arguments: BackendKind.allCases)
  func runsItsControllers(kind: BackendKind) async throws {
    try await withBackend(kind) { backend in
      let manager = try Manager(backend: backend, configuration: ManagerConfiguration(runsBackend: false), logger: silentLogger)
      try manager.addController(
        name: "sizer", primary: ManagedWidget.layout,
        reconciler: ClosureReconciler { request, context in
          guard var widget = try context.object(request, as: ManagedWidget.self), widget.status == nil else { return .done }
          widget.status = Widget.Status(size: widget.spec.size)
          try await context.update(widget)
          return .done
        })
      let name = "w-\(kind)"
      try await backend.store(
        ManagedWidget(metadata: ObjectMeta(uid: "uid-\(name)", name: name, namespace: "default"), spec: Widget.Spec(size: 3)))
      try await whileRunning(manager) {
        try await eventually("the status written") { try await backend.load(ManagedWidget.self, name)?.status?.size == 3 }
      }
    }
  }

  /// A manager on its own `MemoryBackend` holding one widget, whose controller's reconcile
  /// records "started", sleeps 300 ms, then records "finished" (or "cancelled").
  static func managerWithASleepingReconcile() async throws -> (Manager, WorkQueueTestBox<[String]>) {
    let backend = MemoryBackend()
    try await backend.store(Widget("w"))
    let progress = WorkQueueTestBox<[String]>([])
    let manager = try Manager(backend: backend, logger: silentLogger)
    try manager.addController(
      name: "sleeper", primary: Widget.layout,
      reconciler: ClosureReconciler(ControllerTests.sleeping(for: .milliseconds(300), recordingIn: progress)))
    return (manager, progress)
  }

  /// `shutdown()` stops the group gracefully: the in-flight reconcile finishes first, and the
  /// manager's own `MemoryBackend` runs until after the controller stopped.
  @Test func shutdownDrainsInFlightReconciles() async throws {
    let (manager, progress) = try await Self.managerWithASleepingReconcile()
    async let stopped: Void = manager.run()
    try await eventually("the reconcile started") { progress.current == ["started"] }
    manager.shutdown()
    try await stopped
    #expect(progress.current == ["started", "finished"])
    #expect(!manager.isHealthy)
  }

  /// Inside an enclosing `ServiceGroup`, that group's graceful shutdown reaches the controllers.
  @Test func anEnclosingGroupsGracefulShutdownDrainsToo() async throws {
    let (manager, progress) = try await Self.managerWithASleepingReconcile()
    let group = ServiceGroup(services: [manager], logger: silentLogger)
    async let stopped: Void = group.run()
    try await eventually("the reconcile started") { progress.current == ["started"] }
    await group.triggerGracefulShutdown()
    try await stopped
    #expect(progress.current == ["started", "finished"])
  }

  /// A group with nothing to run, or whose service fails at once, ends `run()` at once: the
  /// shutdown waiter never outlives the group.
  @Test func runEndsWhenTheGroupEndsFirst() async throws {
    let empty = try Manager(backend: MemoryBackend(), configuration: ManagerConfiguration(runsBackend: false), logger: silentLogger)
    try await empty.run()

    struct Failing: Service {
      struct Failure: Error {}
      func run() async throws { throw Failure() }
    }
    let failing = try Manager(backend: MemoryBackend(), logger: silentLogger)
    _ = try failing.informer(for: Widget.layout)
    try failing.addService(Failing(), name: "failing")
    await #expect(throws: Failing.Failure.self) { try await failing.run() }
    #expect(!failing.isHealthy)
  }

  /// Bad index lists are errors, not crashes.
  @Test func badIndexesAreErrors() throws {
    let manager = try Manager(backend: MemoryBackend(), logger: silentLogger)
    let reserved = #expect(throws: ManagerError.self) { try manager.informer(for: Widget.layout, indexes: [.namespace]) }
    #expect(reserved?.code == .invalidConfiguration)
    let twice = #expect(throws: ManagerError.self) {
      try manager.informer(for: Widget.layout, indexes: [.ownerUID, .ownerUID])
    }
    #expect(twice?.code == .invalidConfiguration)
    #expect(manager.informers.isEmpty)
  }

  /// A shutdown asked for before `run()` makes it stop at once, cleanly.
  @Test func shutdownBeforeRunStopsAtOnce() async throws {
    let manager = try Manager(backend: MemoryBackend(), logger: silentLogger)
    _ = try manager.informer(for: Widget.layout)
    manager.shutdown()
    try await manager.run()
    #expect(!manager.isHealthy)
  }
}

/// Runs `manager` while `body` runs, then shuts it down gracefully and waits for it.
func whileRunning<T: Sendable>(_ manager: Manager, _ body: () async throws -> T) async throws -> T {
  try await withThrowingTaskGroup(of: Void.self) { group in
    group.addTask { try await manager.run() }
    do {
      let result = try await body()
      manager.shutdown()
      try await group.waitForAll()
      return result
    } catch {
      group.cancelAll()
      throw error
    }
  }
}

/// A kind under a prefix of its own, so these tests can share their etcd with others.
struct ManagedWidget: Resource, Hashable {
  static let kind = "ManagedWidget"
  static let plural = "managedwidgets\(UInt32.random(in: 0...UInt32.max))"
  var metadata: ObjectMeta
  var spec: Widget.Spec
  var status: Widget.Status?
}
