import Capstan
import CapstanTestSupport
import Foundation
import Logging
import Metrics
import PodSetExample
import Synchronization

let silentLogger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })


/// A backend that counts the transactions that wrote (put or deleted) under a prefix and
/// succeeded, forwarding everything to a `MemoryBackend`.
final class WriteCountingBackend: ForwardingBackend {
  let wrapped: any Backend = MemoryBackend()
  private let writes = Mutex<[String: Int]>([:])

  /// Successful writing transactions per key.
  func writes(to key: String) -> Int { self.writes.withLock { $0[key] ?? 0 } }

  func txn(_ txn: BackendTxn) async throws -> BackendTxnResult {
    let result = try await self.wrapped.txn(txn)
    if result.succeeded {
      let keys = txn.success.compactMap { operation -> String? in
        switch operation {
        case .put(let key, _, _): key
        case .delete(let range): range.key
        default: nil
        }
      }
      self.writes.withLock { writes in for key in keys { writes[key, default: 0] += 1 } }
    }
    return result
  }
}

/// Counts `controller_runtime_reconcile_total` (every result) of the controllers it is given to.
final class ReconcileCounter: MetricsFactory {
  private final class Handler: CounterHandler, RecorderHandler, TimerHandler, Sendable {
    let counts: Bool
    let total = Mutex<Int64>(0)
    init(counts: Bool) { self.counts = counts }
    func increment(by amount: Int64) { if self.counts { self.total.withLock { $0 += amount } } }
    func reset() {}
    func record(_ value: Int64) {}
    func record(_ value: Double) {}
    func recordNanoseconds(_ duration: Int64) {}
  }

  private let handler = Handler(counts: true)
  private let ignored = Handler(counts: false)

  /// Reconciles finished so far.
  var reconciles: Int64 { self.handler.total.withLock { $0 } }

  func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
    label == "controller_runtime_reconcile_total" ? self.handler : self.ignored
  }
  func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
    self.ignored
  }
  func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler { self.ignored }
  func destroyCounter(_ handler: any CounterHandler) {}
  func destroyRecorder(_ handler: any RecorderHandler) {}
  func destroyTimer(_ handler: any TimerHandler) {}
}

/// A manager with the PodSet controller on its own embedded backend, for one test.
struct PodSetWorld {
  let backend = WriteCountingBackend()
  let metrics = ReconcileCounter()
  let manager: Manager
  let installed: PodSetOperator
  var client: PodSetClient { PodSetClient(backend: self.backend) }

  init() throws {
    self.manager = try Manager(
      backend: self.backend, configuration: ManagerConfiguration(metricsFactory: self.metrics), logger: silentLogger)
    self.installed = try PodSetOperator(
      installingIn: self.manager,
      configuration: ControllerConfiguration(
        predicates: [PodSetReconciler.podSetChanged],
        rateLimiter: ExponentialBackoffRateLimiter(base: .milliseconds(5), cap: .milliseconds(200)),
        shutdownTimeout: .seconds(5), metricsFactory: self.metrics))
  }

  /// Runs the manager while `body` runs (once it is ready), then stops it.
  func run<T: Sendable>(_ body: () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { try await self.manager.run() }
      defer { self.manager.shutdown() }
      try await self.manager.waitUntilReady(timeout: .seconds(10))
      return try await body()
    }
  }

  /// A set named `name` in `default` with `replicas` pods labelled `app=<name>`.
  static func set(_ name: String, replicas: Int) -> PodSet {
    PodSet(name: name, namespace: "default", uid: "uid-\(name)", replicas: replicas, labels: ["app": name])
  }

  /// Every stored pod (fresh from the store), by name.
  func pods() async throws -> [String: Pod] {
    let page = try await self.backend.range(.prefix(Pod.layout.prefix), options: BackendRangeOptions())
    var pods: [String: Pod] = [:]
    for keyValue in page.kvs {
      var pod = try JSONDecoder().decode(Pod.self, from: keyValue.value)
      pod.metadata.resourceVersion = keyValue.modRevision
      pods[pod.metadata.name] = pod
    }
    return pods
  }

  /// The stored pods controlled by the set with `uid`.
  func pods(controlledBy uid: String) async throws -> [Pod] {
    try await self.pods().values.filter { $0.controllerReference?.uid == uid }.sorted { $0.metadata.name < $1.metadata.name }
  }

  /// The stored set `name` in `default`.
  func set(_ name: String) async throws -> PodSet? { try await self.client.get(namespace: "default", name: name) }

  /// Whether `name` has exactly `replicas` pods with its labels, all ready, and a status saying
  /// so at its generation.
  func isConverged(_ name: String, replicas: Int) async throws -> Bool {
    guard let set = try await self.set(name) else { return false }
    let pods = try await self.pods(controlledBy: set.metadata.uid)
    return pods.count == replicas && pods.allSatisfy { $0.metadata.labels == set.spec.template.labels && $0.isReady }
      && set.status == PodSet.Status(readyReplicas: replicas, observedGeneration: set.metadata.generation)
  }

  /// Stores `pod` unconditionally.
  func store(_ pod: Pod) async throws {
    var stored = pod
    stored.metadata.resourceVersion = 0
    _ = try await self.backend.put(pod.key, value: try JSONEncoder().encode(stored), lease: nil)
  }
}
