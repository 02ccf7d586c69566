import CapstanHTTP
import CapstanTesting
import Logging
import Prometheus
import ServiceLifecycle
import Synchronization
import Testing

/// The HTTP endpoints over a real loopback socket, on a port the system picks.
@Suite("CapstanHTTPServer")
struct CapstanHTTPServerTests {
  /// Runs a server on port 0 with `checks` around `body`, then stops it gracefully.
  func withServer(
    registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
    checks: ProbeChecks = .alwaysOK,
    _ body: @escaping @Sendable (CapstanHTTPServer, Int) async throws -> Void
  ) async throws {
    let server = CapstanHTTPServer(
      configuration: .init(port: 0), registry: registry, checks: checks, logger: Logger(label: "test.http"))
    let serviceGroup = Self.serviceGroup(server)
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { try await serviceGroup.run() }
      let port = try await server.waitUntilListening()
      do {
        try await body(server, port)
      } catch {
        await serviceGroup.triggerGracefulShutdown()
        throw error
      }
      await serviceGroup.triggerGracefulShutdown()
      try await group.waitForAll()
    }
  }

  static func serviceGroup(_ server: CapstanHTTPServer) -> ServiceGroup {
    ServiceGroup(configuration: .init(services: [server], logger: Logger(label: "test.group")))
  }

  @Test("/metrics exposes the registry's counter in Prometheus text format")
  func metrics() async throws {
    let registry = PrometheusCollectorRegistry()
    let counter = registry.makeCounter(
      descriptor: MetricNameDescriptor(
        namespace: "capstan", metricName: "test_requests", unitName: "total", helpText: "Requests of the test."),
      labels: [("kind", "probe")])
    counter.increment(by: Int64(3))
    try await withServer(registry: registry) { server, port async throws in
      #expect(port > 0)
      #expect(server.boundPort == port)
      let response = try await LoopbackHTTP.get(port: port, path: "/metrics")
      #expect(response.status == 200)
      #expect(response.headers["content-type"] == CapstanHTTPServer.metricsContentType)
      #expect(response.body.contains("# TYPE capstan_test_requests_total counter\n"), "\(response.body)")
      #expect(response.body.contains("capstan_test_requests_total{kind=\"probe\"} 3\n"), "\(response.body)")
      counter.increment()
      let later = try await LoopbackHTTP.get(port: port, path: "/metrics")
      #expect(later.body.contains("capstan_test_requests_total{kind=\"probe\"} 4\n"), "\(later.body)")
    }
  }

  @Test("/readyz answers 503 listing what is not ready, then 200 once the check passes")
  func readiness() async throws {
    let ready = Atomic(false)
    let checks = ProbeChecks(
      health: { .ok },
      readiness: { ready.load(ordering: .relaxed) ? .ok : .failing(["informer pods (/registry/pods/) not synced"]) })
    try await withServer(checks: checks) { _, port async throws in
      let before = try await LoopbackHTTP.get(port: port, path: "/readyz")
      #expect(before.status == 503)
      #expect(before.body == "informer pods (/registry/pods/) not synced\n")
      ready.store(true, ordering: .relaxed)
      let after = try await LoopbackHTTP.get(port: port, path: "/readyz")
      #expect(after.status == 200)
      #expect(after.body == "ok\n")
    }
  }

  @Test("/healthz follows the health check both ways")
  func health() async throws {
    let healthy = Atomic(true)
    let checks = ProbeChecks(
      health: { healthy.load(ordering: .relaxed) ? .ok : .failing(["service controller/podsets failed"]) },
      readiness: { .ok })
    try await withServer(checks: checks) { _, port async throws in
      #expect(try await LoopbackHTTP.get(port: port, path: "/healthz").status == 200)
      healthy.store(false, ordering: .relaxed)
      let failing = try await LoopbackHTTP.get(port: port, path: "/healthz")
      #expect(failing.status == 503)
      #expect(failing.body == "service controller/podsets failed\n")
      healthy.store(true, ordering: .relaxed)
      #expect(try await LoopbackHTTP.get(port: port, path: "/healthz").body == "ok\n")
    }
  }

  @Test("an unknown path is 404 and does not stop the server")
  func unknownPath() async throws {
    try await withServer { _, port async throws in
      #expect(try await LoopbackHTTP.get(port: port, path: "/nope").status == 404)
      #expect(try await LoopbackHTTP.get(port: port, path: "/healthz").status == 200)
    }
  }

  @Test("a port already in use fails run() with bindFailed, and waiters learn it")
  func bindFailure() async throws {
    try await withServer { _, port async throws in
      let second = CapstanHTTPServer(
        configuration: .init(port: port), registry: PrometheusCollectorRegistry(), checks: .alwaysOK,
        logger: Logger(label: "test.http"))
      await #expect {
        try await second.run()
      } throws: { error in
        (error as? CapstanHTTPServerError)?.code == .bindFailed
      }
      await #expect {
        _ = try await second.waitUntilListening()
      } throws: { error in
        (error as? CapstanHTTPServerError)?.code == .bindFailed
      }
    }
  }

  @Test("graceful shutdown stops listening: the port refuses connections afterwards")
  func gracefulShutdown() async throws {
    let server = CapstanHTTPServer(
      configuration: .init(port: 0), registry: PrometheusCollectorRegistry(), checks: .alwaysOK,
      logger: Logger(label: "test.http"))
    let serviceGroup = Self.serviceGroup(server)
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { try await serviceGroup.run() }
      let port = try await server.waitUntilListening()
      #expect(try await LoopbackHTTP.get(port: port, path: "/healthz").status == 200)
      await serviceGroup.triggerGracefulShutdown()
      try await group.waitForAll()
      #expect(server.boundPort == nil)
      await #expect(throws: LoopbackHTTP.Failure.self) { try await LoopbackHTTP.get(port: port, path: "/healthz") }
    }
  }

  @Test("run() a second time is alreadyRunning")
  func runsOnce() async throws {
    try await withServer { server, _ async throws in
      await #expect {
        try await server.run()
      } throws: { error in
        (error as? CapstanHTTPServerError)?.code == .alreadyRunning
      }
    }
  }

  @Test("probe bodies: ok, one reason per line")
  func probeBodies() {
    #expect(ProbeStatus.ok.body == "ok\n")
    #expect(ProbeStatus.failing(["a", "b"]).body == "a\nb\n")
    #expect(ProbeStatus.failing([]).body == "not ok\n")
    #expect(!ProbeStatus.failing([]).isOK)
  }
}
