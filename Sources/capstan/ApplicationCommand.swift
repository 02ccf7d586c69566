import ArgumentParser
import Capstan
import CapstanApp
import CapstanEtcd
import Foundation
import Logging
import PodSetExample
import Prometheus

/// A command that runs a Capstan process (`run`, `demo`): its settings are validated into a
/// ``RunConfiguration`` before anything starts, then the entry point bootstraps JSON logging
/// (with the configured service name and level) and Prometheus, and calls ``run(configuration:registry:)``.
protocol ApplicationCommand: AsyncParsableCommand {
  /// Reads and checks every setting from the flags and `environment`.
  func runConfiguration(environment: [String: String]) throws(RunConfigurationError) -> RunConfiguration

  /// Runs the process; returns its exit status.
  func run(configuration: RunConfiguration, registry: PrometheusCollectorRegistry) async throws -> Int32
}

extension ApplicationCommand {
  func run() async throws {
    throw ValidationError("capstan \(Self.configuration.commandName ?? "") runs through the entry point")
  }
}

/// The settings `run` and `demo` share; every value is taken as typed and checked by
/// ``RunConfiguration``, so a flag and its environment variable get the same one-line errors.
struct RunSettingsOptions: ParsableArguments {
  @Option(help: "Comma-separated etcd endpoints, host:port (IPv6 in brackets). Default: $CAPSTAN_ENDPOINTS.")
  var endpoints: String?

  @Option(name: .customLong("service-name"), help: "The service field of every log line, a DNS-1123 label. Default: $SERVICE_NAME or capstan.")
  var serviceName: String?

  @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical. Default: $LOG_LEVEL.")
  var logLevel: String?

  @Option(name: .customLong("metrics-addr"), help: "host:port of /metrics, /healthz, /readyz, or off. Default: $CAPSTAN_METRICS_ADDR or 127.0.0.1:9090.")
  var metricsAddress: String?

  @Option(help: "Concurrent reconciles per controller, 1-64. Default: $CAPSTAN_WORKERS or 2.")
  var workers: String?

  @Option(name: .customLong("shutdown-timeout"), help: "Bound of a graceful stop, 1s-10m (e.g. 30s). Default: $CAPSTAN_SHUTDOWN_TIMEOUT or 30s.")
  var shutdownTimeout: String?

  @Option(name: .customLong("retry-qps"), help: "Retries per second of each controller, 0.1-10000. Default: $CAPSTAN_RETRY_QPS or 10.")
  var retryRate: String?

  @Option(name: .customLong("retry-burst"), help: "Burst of those retries, 1-10000. Default: $CAPSTAN_RETRY_BURST or 100.")
  var retryBurst: String?

  /// The flags that were given, by setting.
  var flags: [RunSetting: String] {
    let given: [(RunSetting, String?)] = [
      (.endpoints, self.endpoints), (.serviceName, self.serviceName), (.logLevel, self.logLevel),
      (.metricsAddress, self.metricsAddress), (.workers, self.workers), (.shutdownTimeout, self.shutdownTimeout),
      (.retryRate, self.retryRate), (.retryBurst, self.retryBurst),
    ]
    return Dictionary(uniqueKeysWithValues: given.compactMap { setting, value in value.map { (setting, $0) } })
  }
}

/// Backends for `run` and `demo`.
enum ApplicationBackend {
  /// Runs `body` with the configured backend: a `MemoryBackend` (persistent under `dataDirectory`
  /// when given; the manager runs it), or an `EtcdBackend` whose client runs around `body`.
  static func with<Result: Sendable>(
    _ configuration: RunConfiguration,
    dataDirectory: String?,
    _ body: (any Backend) async throws -> Result
  ) async throws -> Result {
    switch configuration.backend {
    case .embedded:
      let memoryConfiguration: MemoryBackend.Configuration =
        dataDirectory.map { MemoryBackend.Configuration.persistent(dataDirectory: $0) } ?? MemoryBackend.Configuration()
      let backend = try MemoryBackend(configuration: memoryConfiguration, logger: Logger(label: "capstan.memory-backend"))
      return try await body(backend)
    case .etcd(let addresses):
      var endpoints: [EtcdEndpoint] = []
      for address in addresses { endpoints.append(try EtcdEndpoint(host: address.host, port: address.port)) }
      let clientConfiguration = EtcdClientConfiguration(endpoints: endpoints)
      return try await withEtcdClient(clientConfiguration, logger: Logger(label: "capstan.etcd")) { client in
        try await body(EtcdBackend(client: client))
      }
    }
  }
}

/// The example controller `run` and `demo` install.
enum ExampleControllers {
  /// Installs the PodSet controller (`PodSetExample`) on `application.manager`, with the
  /// workers, retry limiter and shutdown bound of the run configuration and the controller's
  /// own predicate (status-only PodSet updates do not trigger a reconcile).
  static func installPodSets(in application: CapstanApplication) throws(ManagerError) -> PodSetOperator {
    var configuration = application.controllerConfiguration
    configuration.predicates = [PodSetReconciler.podSetChanged]
    return try PodSetOperator(installingIn: application.manager, configuration: configuration)
  }
}
