import Capstan
import CapstanApp
import CapstanHTTP
import CapstanTesting
import CapstanTestSupport
import Foundation
import Logging
import Prometheus
import Synchronization
import Testing

/// The assembled process in-process: a manager on the embedded backend with the HTTP endpoints,
/// scraped over a real socket while it runs.
@Suite("CapstanApplication")
struct CapstanApplicationTests {
  static let widgets = ResourceLayout(kind: "Widget", plural: "widgets", isNamespaced: true)
  static let silent = Logger(label: "test.app") { _ in SwiftLogNoOpLogHandler() }

  /// Counts reconciles and reports each one.
  struct CountingReconciler: Reconciler {
    let count = Tally()
    final class Tally: Sendable {
      let value = Atomic(0)
    }
    func reconcile(_ request: ReconcileRequest, context: ReconcileContext) async throws -> ReconcileResult {
      self.count.value.add(1, ordering: .relaxed)
      return .done
    }
  }

  @Test("/readyz is 503 naming the unsynced informer, then 200; /metrics has informer, queue and reconcile metrics")
  func endpointsDuringARun() async throws {
    let gate = Gate()
    let memory = MemoryBackend(logger: Self.silent)
    _ = try await memory.put(Self.widgets.key(namespace: "default", name: "w1"),
      value: Data(#"{"metadata":{"name":"w1","namespace":"default","uid":"uid-w1"}}"#.utf8), lease: nil)
    let configuration = RunConfiguration(metricsAddress: NetworkAddress(host: "127.0.0.1", port: 0), workers: 3)
    let app = try CapstanApplication(
      configuration: configuration, backend: GatedBackend(memory, gate: gate),
      registry: PrometheusCollectorRegistry(), logger: Self.silent)
    let reconciler = CountingReconciler()
    try app.manager.addController(
      name: "widgets", primary: Self.widgets, reconciler: reconciler, configuration: app.controllerConfiguration)
    #expect(app.controllerConfiguration.workers == 3)
    #expect(ProbeChecks.manager(app.manager).health() == .failing(["manager is not running"]))

    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { try await app.run() }
      let server = try #require(app.httpServer)
      let port = try await server.waitUntilListening()
      let before = try await LoopbackHTTP.get(port: port, path: "/readyz")
      #expect(before.status == 503)
      #expect(before.body == "informer widgets (/registry/widgets/) not synced\n")
      #expect(try await LoopbackHTTP.get(port: port, path: "/healthz").status == 200)

      gate.open()
      try await app.manager.waitUntilReady(timeout: .seconds(10))
      let after = try await LoopbackHTTP.get(port: port, path: "/readyz")
      #expect(after.status == 200)
      #expect(after.body == "ok\n")
      let deadline = ContinuousClock.now + .seconds(10)
      while reconciler.count.value.load(ordering: .relaxed) == 0, ContinuousClock.now < deadline {
        try await Task.sleep(for: .milliseconds(10))
      }
      let metrics = try await LoopbackHTTP.get(port: port, path: "/metrics").body
      #expect(metrics.contains(#"capstan_informer_synced{resource="widgets"} 1.0"#), "\(metrics)")
      #expect(metrics.contains("workqueue_adds_total{"), "\(metrics)")
      #expect(metrics.contains(#"capstan_build_info{service="capstan",version="\#(Capstan.version)"} 1.0"#), "\(metrics)")
      let reconciles = metrics.split(separator: "\n").filter {
        $0.hasPrefix("controller_runtime_reconcile_total{") && $0.contains(#"controller="widgets""#) && $0.contains(#"result="success""#)
      }
      #expect(reconciles.count == 1 && reconciles.first?.hasSuffix(" 1") == true, "\(metrics)")

      app.manager.shutdown()
      try await group.waitForAll()
    }
    #expect(app.httpServer?.boundPort == nil)
    #expect(!app.manager.isHealthy)
  }

  @Test("metrics address off: no HTTP server")
  func metricsOff() throws {
    let app = try CapstanApplication(
      configuration: RunConfiguration(metricsAddress: nil), backend: MemoryBackend(logger: Self.silent),
      registry: PrometheusCollectorRegistry(), logger: Self.silent)
    #expect(app.httpServer == nil)
  }

  @Test("the controller configuration follows the settings")
  func controllerConfiguration() throws {
    let configuration = RunConfiguration(workers: 7, shutdownTimeout: .seconds(4), retryRate: 1, retryBurst: 2)
    let app = try CapstanApplication(
      configuration: configuration, backend: MemoryBackend(logger: Self.silent),
      registry: PrometheusCollectorRegistry(), logger: Self.silent)
    let controller = app.controllerConfiguration
    #expect(controller.workers == 7)
    #expect(controller.shutdownTimeout == .seconds(4))
    #expect(app.manager.configuration.controllerShutdownTimeout == .seconds(4))
    // The bucket (burst 2, 1/s) delays the third distinct key's first retry by about a second.
    var limiter = controller.rateLimiter
    let delays = (0..<3).map { limiter.delay(for: ReconcileRequest(namespace: "n", name: "k\($0)"), now: .zero) }
    #expect(delays[0] < .milliseconds(100) && delays[1] < .milliseconds(100))
    #expect(delays[2] >= .milliseconds(900) && delays[2] <= .milliseconds(1100), "\(delays)")
  }
}

/// Holds back every range (so the informers' first list) until opened.
final class Gate: Sendable {
  private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

  func open() {
    let waiters = self.state.withLock { state in
      state.open = true
      defer { state.waiters = [] }
      return state.waiters
    }
    for waiter in waiters { waiter.resume() }
  }

  func wait() async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
      let isOpen = self.state.withLock { state in
        if !state.open { state.waiters.append(continuation) }
        return state.open
      }
      if isOpen { continuation.resume() }
    }
  }
}

/// A backend whose ranges wait for a ``Gate``; everything else goes straight through.
struct GatedBackend: ForwardingBackend {
  let wrapped: any Backend
  let gate: Gate

  init(_ base: any Backend, gate: Gate) {
    self.wrapped = base
    self.gate = gate
  }

  func range(_ range: KeyRange, options: BackendRangeOptions) async throws -> BackendRangePage {
    await self.gate.wait()
    return try await self.wrapped.range(range, options: options)
  }
}
