import ArgumentParser
import Capstan
import CapstanApp
import CapstanDemo
import Logging
import PodSetExample
import Prometheus
import UnixSignals

/// `capstan demo`: the PodSet controller on the embedded store (or etcd), the `CapstanDemo`
/// scenario that creates and disturbs PodSets, a live progress line, and a summary.
struct DemoCommand: ApplicationCommand {
  static let configuration = CommandConfiguration(
    commandName: "demo",
    abstract: "Watch Capstan converge: create and disturb PodSets, then check the world matches every spec.",
    discussion: """
      Runs on the embedded store unless --endpoints (or $CAPSTAN_ENDPOINTS) names etcd. Shows a \
      live progress line on a terminal (plain lines otherwise), then a summary; /metrics, \
      /healthz and /readyz are served while it runs. Exits 0 only if the world converged.
      """
  )

  @OptionGroup var settings: RunSettingsOptions

  @Option(help: "How many PodSets to create, 1-100000.")
  var sets = 200

  @Option(help: "Replicas of each PodSet, 0-1000.")
  var replicas = 5

  @Option(help: "Rounds of disturbance after the first convergence, 0-1000.")
  var rounds = 3

  @Option(help: "Seed of every random choice, so a run can be repeated.")
  var seed: UInt64 = 1

  @Option(name: .customLong("converge-timeout"), help: "Seconds each convergence may take, 1-3600.")
  var convergeTimeoutSeconds = 60

  @Option(help: "Keep the embedded store in this directory (snapshots) across runs.")
  var data: String?

  /// The scenario's settings (workers come from the run configuration).
  func demoConfiguration(workers: Int) -> DemoConfiguration {
    DemoConfiguration(
      podSets: self.sets, replicas: self.replicas, disturbanceRounds: self.rounds,
      convergenceTimeout: .seconds(self.convergeTimeoutSeconds), seed: self.seed, workers: workers)
  }

  func validate() throws {
    guard (1...100_000).contains(self.sets) else { throw ValidationError("--sets must be 1-100000, got \(self.sets)") }
    guard (0...1000).contains(self.replicas) else { throw ValidationError("--replicas must be 0-1000, got \(self.replicas)") }
    guard (0...1000).contains(self.rounds) else { throw ValidationError("--rounds must be 0-1000, got \(self.rounds)") }
    guard (1...3600).contains(self.convergeTimeoutSeconds) else {
      throw ValidationError("--converge-timeout must be 1-3600 seconds, got \(self.convergeTimeoutSeconds)")
    }
    do {
      try self.demoConfiguration(workers: RunConfiguration.defaultWorkers).validate()
    } catch {
      throw ValidationError(error.description)
    }
  }

  func runConfiguration(environment: [String: String]) throws(RunConfigurationError) -> RunConfiguration {
    let configuration = try RunConfiguration(
      flags: self.settings.flags, environment: environment, endpoints: .embeddedWhenAbsent, defaultLogLevel: .error)
    if self.data != nil, configuration.backend != .embedded {
      throw RunConfigurationError(
        setting: .endpoints, source: self.settings.endpoints == nil ? .environment : .flag,
        value: self.settings.endpoints ?? environment[RunSetting.endpoints.environmentVariable],
        reason: "--data is for the embedded store: drop it or the endpoints")
    }
    return configuration
  }

  func run(configuration: RunConfiguration, registry: PrometheusCollectorRegistry) async throws -> Int32 {
    let progress = ProgressPrinter.standardOutput()
    let demoConfiguration = self.demoConfiguration(workers: configuration.workers)
    return try await ApplicationBackend.with(configuration, dataDirectory: self.data) { backend in
      let metrics = DemoMetrics()
      let application = try CapstanApplication(
        configuration: configuration, backend: backend, registry: registry,
        gracefulShutdownSignals: [.sigterm, .sigint], additionalMetricsFactories: [metrics],
        logger: Logger(label: "capstan.manager"), httpLogger: Logger(label: "capstan.http"))
      let podSets = try ExampleControllers.installPodSets(in: application)
      let scenario = try DemoScenario(
        configuration: demoConfiguration, backend: backend, manager: application.manager, metrics: metrics,
        controllerName: podSets.controller.name, logger: Logger(label: "capstan.demo"))
      return try await withThrowingTaskGroup(of: DemoSummary?.self) { group in
        group.addTask {
          try await application.run()
          return nil  // the manager stopped first: a signal interrupted the demo
        }
        group.addTask {
          try await scenario.run { report in progress.update(report.description) }
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let summary = first else {
          progress.finish(with: ["interrupted: the demo did not finish", "converged: no"])
          return 1
        }
        application.manager.shutdown()
        try await group.waitForAll()
        progress.finish(with: summary.lines())
        return summary.converged ? 0 : 1
      }
    }
  }
}
