@testable import Capstan
import CapstanTestSupport
import Foundation
import Logging
import Metrics
import Synchronization

/// The primary kind of the controller tests.
struct Widget: Resource, Hashable {
  static let kind = "Widget"
  static let plural = "widgets"
  struct Spec: Codable, Sendable, Hashable { var size: Int }
  struct Status: Codable, Sendable, Hashable { var size: Int }
  var metadata: ObjectMeta
  var spec: Spec
  var status: Status?

  init(_ name: String, size: Int = 1, generation: Int64 = 1, namespace: String = "default") {
    self.metadata = ObjectMeta(uid: "uid-\(name)", name: name, namespace: namespace, generation: generation)
    self.spec = Spec(size: size)
  }
}

/// A kind Widgets own.
struct Gadget: Resource, Hashable {
  static let kind = "Gadget"
  static let plural = "gadgets"
  var metadata: ObjectMeta

  init(_ name: String, owner: String, ownerKind: String = Widget.kind, controller: Bool = true) {
    self.metadata = ObjectMeta(
      uid: "uid-\(name)", name: name, namespace: "default",
      ownerReferences: [
        OwnerReference(apiVersion: "v1", kind: ownerKind, name: owner, uid: "uid-\(owner)", controller: controller)
      ])
  }
}

/// A reconciler made of a closure.
struct ClosureReconciler: Reconciler {
  let body: @Sendable (ReconcileRequest, ReconcileContext) async throws -> ReconcileResult
  init(_ body: @escaping @Sendable (ReconcileRequest, ReconcileContext) async throws -> ReconcileResult) {
    self.body = body
  }
  func reconcile(_ request: ReconcileRequest, context: ReconcileContext) async throws -> ReconcileResult {
    try await self.body(request, context)
  }
}

let silentLogger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

extension Backend {
  /// Stores `object` under its key (unconditionally); returns the revision.
  @discardableResult
  func store<R: Resource>(_ object: R) async throws -> Int64 {
    var stored = object
    stored.metadata.resourceVersion = 0
    return try await self.put(object.key, value: try JSONEncoder().encode(stored), lease: nil).revision
  }

  /// The stored object `name` of kind `R` in `default`, with its resourceVersion.
  func load<R: Resource>(_ type: R.Type, _ name: String) async throws -> R? {
    let key = R.layout.key(namespace: "default", name: name)
    guard let kv = try await self.range(.key(key), options: BackendRangeOptions()).kvs.first else { return nil }
    var object = try JSONDecoder().decode(R.self, from: kv.value)
    object.metadata.resourceVersion = kv.modRevision
    return object
  }
}

/// A controller on its own informers and recording metrics, for one test.
struct ControllerHarness {
  let backend: any Backend
  let metrics = RecordingMetrics()
  let informer: Informer

  init(backend: any Backend = MemoryBackend()) throws {
    self.backend = backend
    self.informer = try Informer(for: Widget.self, backend: backend, logger: silentLogger)
  }

  /// Fast retries: 5 ms doubling to 200 ms.
  static let fastLimiter = ExponentialBackoffRateLimiter<ReconcileRequest>(base: .milliseconds(5), cap: .milliseconds(200))

  func controller(
    owned: [Informer] = [], workers: Int = 2, predicates: [EventPredicate] = [],
    rateLimiter: any WorkQueueRateLimiter<ReconcileRequest> = Self.fastLimiter,
    shutdownTimeout: Duration = .seconds(30), logger: Logger = silentLogger,
    _ body: @escaping @Sendable (ReconcileRequest, ReconcileContext) async throws -> ReconcileResult
  ) -> Controller {
    Controller(
      name: "widgets", primary: self.informer, owned: owned, reconciler: ClosureReconciler(body),
      configuration: ControllerConfiguration(
        workers: workers, predicates: predicates, rateLimiter: rateLimiter, shutdownTimeout: shutdownTimeout,
        metricsFactory: self.metrics),
      logger: logger)
  }

  /// `controller_runtime_reconcile_total{result}` of the controller.
  func reconciles(_ result: String) -> Double {
    self.metrics.value("controller_runtime_reconcile_total", [("controller", "widgets"), ("result", result)]) ?? 0
  }

  /// A metric labelled only by `controller`.
  func metric(_ label: String) -> Double? {
    self.metrics.value(label, [("controller", "widgets")])
  }
}

/// Runs the informers and the controller while `body` runs, then cancels them.
func whileRunning<T: Sendable>(
  _ informers: [Informer], _ controller: Controller, _ body: () async throws -> T
) async throws -> T {
  try await withThrowingTaskGroup(of: Void.self) { group in
    for informer in informers { group.addTask { try await informer.run() } }
    group.addTask { try await controller.run() }
    defer { group.cancelAll() }
    return try await body()
  }
}

/// Wraps a backend so every watch event arrives `delay` late: a cache that lags behind writes.
final class SlowWatchBackend: ForwardingBackend {
  let wrapped: any Backend
  let delay: Duration

  init(wrapping backend: any Backend, delay: Duration) {
    self.wrapped = backend
    self.delay = delay
  }

  func watch(_ range: KeyRange, options: BackendWatchOptions) -> BackendWatchStream {
    let inner = self.wrapped.watch(range, options: options)
    let delay = self.delay
    return BackendWatchStream {
      var iterator = inner.makeAsyncIterator()
      return {
        let event = try await iterator.next()
        if event != nil { try await Task.sleep(for: delay) }
        return event
      }
    }
  }

}
