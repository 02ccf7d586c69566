public import Capstan
public import CapstanHTTP
public import Logging
public import Prometheus
public import UnixSignals
public import Metrics

/// A Capstan process assembled from a validated ``RunConfiguration``: a `Manager` on the given
/// backend (SIGTERM/SIGINT stop it gracefully when passed in), with the HTTP endpoints
/// (`/metrics` from `registry`, `/healthz` and `/readyz` from the manager) added as a service
/// unless `metricsAddress` is `off`.
///
/// Install controllers on ``manager`` (with ``controllerConfiguration``), then ``run()``.
/// The manager's metrics go to `registry` directly (and to any additional factories), so nothing
/// here touches the global `MetricsSystem` (the executable bootstraps it for everything else).
public final class CapstanApplication: Sendable {
  /// The configuration it was built from.
  public let configuration: RunConfiguration
  /// The manager: add controllers here before ``run()``.
  public let manager: Manager
  /// The HTTP server, or `nil` when `metricsAddress` is `off`.
  public let httpServer: CapstanHTTPServer?
  /// The registry `/metrics` exposes and the manager's metrics go to.
  public let registry: PrometheusCollectorRegistry

  /// A gauge that is always 1, labelled with the `service` name and Capstan's `version`, so
  /// `/metrics` identifies the process even before any controller has counted anything.
  public static let buildInfoMetric = "capstan_build_info"

  /// - Parameters:
  ///   - configuration: validated settings (workers, shutdown bound, metrics address, retry rate).
  ///   - backend: the store (a `MemoryBackend` is run by the manager; an `EtcdBackend`'s client
  ///     is run by whoever created it).
  ///   - registry: where metrics are collected and what `/metrics` serves.
  ///   - gracefulShutdownSignals: signals that stop the manager gracefully (the executable
  ///     passes SIGTERM and SIGINT; tests none).
  ///   - additionalMetricsFactories: factories that receive the manager's metrics too (the
  ///     demo's recorder, for its summary).
  ///   - logger: the manager's logger.
  ///   - httpLogger: the HTTP server's logger (default: `logger`).
  public init(
    configuration: RunConfiguration,
    backend: any Backend,
    registry: PrometheusCollectorRegistry,
    gracefulShutdownSignals: [UnixSignal] = [],
    additionalMetricsFactories: [any MetricsFactory] = [],
    logger: Logger,
    httpLogger: Logger? = nil
  ) throws(ManagerError) {
    self.configuration = configuration
    self.registry = registry
    let prometheus = PrometheusMetricsFactory(registry: registry)
    let metricsFactory: any MetricsFactory =
      additionalMetricsFactories.isEmpty
      ? prometheus : MultiplexMetricsHandler(factories: [prometheus] + additionalMetricsFactories)
    let manager = try Manager(
      backend: backend,
      configuration: ManagerConfiguration(
        controllerShutdownTimeout: configuration.shutdownTimeout,
        gracefulShutdownSignals: gracefulShutdownSignals,
        metricsFactory: metricsFactory),
      logger: logger)
    Gauge(
      label: Self.buildInfoMetric, dimensions: [("service", configuration.serviceName), ("version", Capstan.version)],
      factory: prometheus
    ).record(1)
    self.manager = manager
    if let address = configuration.metricsAddress {
      let server = CapstanHTTPServer(
        configuration: CapstanHTTPServerConfiguration(host: address.host, port: address.port),
        registry: registry, checks: .manager(manager), logger: httpLogger ?? logger)
      try manager.addService(server, name: "http")
      self.httpServer = server
    } else {
      self.httpServer = nil
    }
  }

  /// The controller configuration the settings ask for: `workers`, the graceful-stop bound,
  /// and a retry limiter of per-key exponential backoff (5 ms → 1000 s) with a global token
  /// bucket of `retryRate`/s and `retryBurst` (maximum wait 30 s), metrics to ``registry``.
  public var controllerConfiguration: ControllerConfiguration {
    ControllerConfiguration(
      workers: self.configuration.workers,
      rateLimiter: MaxOfRateLimiter<ReconcileRequest>(
        ExponentialBackoffRateLimiter<ReconcileRequest>(base: .milliseconds(5), cap: .seconds(1000)),
        TokenBucketRateLimiter<ReconcileRequest>(
          rate: self.configuration.retryRate, burst: self.configuration.retryBurst, maximumWait: .seconds(30))),
      shutdownTimeout: self.configuration.shutdownTimeout,
      metricsFactory: self.manager.configuration.metricsFactory)
  }

  /// Runs the manager (backend, informers, controllers, HTTP server) until a graceful stop,
  /// which returns normally, or a failing service, whose error it rethrows.
  public func run() async throws {
    try await self.manager.run()
  }
}

extension ProbeChecks {
  /// `/healthz` from ``Manager/isHealthy`` and `/readyz` from ``Manager/readiness``, naming each
  /// informer that has not synced yet.
  public static func manager(_ manager: Manager) -> ProbeChecks {
    ProbeChecks(
      health: { manager.isHealthy ? .ok : .failing(["manager is not running"]) },
      readiness: {
        let readiness = manager.readiness
        guard !readiness.isReady else { return .ok }
        return .failing(readiness.unsynced.map { "informer \($0.plural) (\($0.prefix)) not synced" })
      })
  }
}
