import ArgumentParser
import Capstan
import CapstanApp
import Logging
import PodSetExample
import Prometheus
import UnixSignals

/// `capstan run`: the PodSet example controller against etcd (or the embedded store) until SIGTERM or
/// SIGINT, with `/metrics`, `/healthz` and `/readyz`.
struct RunCommand: ApplicationCommand {
  static let configuration = CommandConfiguration(
    commandName: "run",
    abstract: "Run the PodSet controller until SIGTERM/SIGINT, with /metrics, /healthz and /readyz.",
    discussion: """
      Every setting is read from its flag, else its environment variable, else its default, and \
      all are checked before anything starts: a bad one ends the command with one line naming it. \
      Logs are JSON lines on standard error. A graceful stop (SIGTERM, SIGINT) lets in-flight \
      reconciles finish within --shutdown-timeout and exits 0.
      """
  )

  @OptionGroup var settings: RunSettingsOptions

  @Flag(help: "Use the embedded in-process store instead of etcd (ignores $CAPSTAN_ENDPOINTS).")
  var embedded = false

  @Option(help: "With --embedded: keep the store in this directory (snapshots) across runs.")
  var data: String?

  func validate() throws {
    if self.data != nil && !self.embedded {
      throw ValidationError("--data needs --embedded")
    }
  }

  func runConfiguration(environment: [String: String]) throws(RunConfigurationError) -> RunConfiguration {
    try RunConfiguration(
      flags: self.settings.flags, embedded: self.embedded, environment: environment, endpoints: .required,
      defaultLogLevel: .info)
  }

  func run(configuration: RunConfiguration, registry: PrometheusCollectorRegistry) async throws -> Int32 {
    let logger = Logger(label: "capstan.run")
    try await ApplicationBackend.with(configuration, dataDirectory: self.data) { backend in
      let application = try CapstanApplication(
        configuration: configuration, backend: backend, registry: registry,
        gracefulShutdownSignals: [.sigterm, .sigint], logger: Logger(label: "capstan.manager"),
        httpLogger: Logger(label: "capstan.http"))
      let podSets = try ExampleControllers.installPodSets(in: application)
      logger.info(
        "capstan run starting",
        metadata: [
          "controller": "\(podSets.controller.name)", "backend": "\(configuration.backend)", "metrics_addr": "\(configuration.metricsAddress.map(\.description) ?? "off")",
          "workers": "\(configuration.workers)", "shutdown_timeout": "\(configuration.shutdownTimeout.goDurationDescription)",
        ])
      try await application.run()
      logger.info("capstan run stopped")
    }
    return 0
  }
}
