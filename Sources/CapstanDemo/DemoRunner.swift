public import Capstan
public import Logging
import PodSetExample

/// The whole `capstan demo` in one call: a ``Manager`` on the backend with the PodSet controller
/// installed and a ``DemoMetrics`` as its metrics factory, the ``DemoScenario`` run on it, then
/// a graceful stop of the manager.
public enum DemoRunner {
  /// Runs the demo on `backend` and returns its summary.
  ///
  /// - Parameters:
  ///   - managerConfiguration: the manager's configuration; its `metricsFactory` is replaced by
  ///     the demo's recorder.
  ///   - progress: called about every ``DemoConfiguration/progressInterval``.
  /// - Throws: ``DemoConfigurationError`` for a bad configuration, ``ManagerError`` when the
  ///   manager cannot be built or does not get ready, the backend's errors, or the error of a
  ///   manager service that failed.
  public static func run(
    configuration: DemoConfiguration,
    backend: any Backend,
    managerConfiguration: ManagerConfiguration = ManagerConfiguration(),
    logger: Logger,
    progress: @escaping @Sendable (DemoProgress) -> Void = { _ in }
  ) async throws -> DemoSummary {
    try configuration.validate()
    let metrics = DemoMetrics()
    var managerConfiguration = managerConfiguration
    managerConfiguration.metricsFactory = metrics
    let manager = try Manager(backend: backend, configuration: managerConfiguration, logger: logger)
    let podSets = try PodSetOperator(installingIn: manager, workers: configuration.workers)
    let scenario = try DemoScenario(
      configuration: configuration, backend: backend, manager: manager, metrics: metrics,
      controllerName: podSets.controller.name, logger: logger)
    return try await withThrowingTaskGroup(of: DemoSummary?.self) { group in
      group.addTask {
        try await manager.run()
        return nil
      }
      group.addTask {
        defer { manager.shutdown() }
        return try await scenario.run(progress: progress)
      }
      var summary: DemoSummary?
      while let result = try await group.next() {
        if let result { summary = result }
      }
      guard let summary else { throw CancellationError() }
      return summary
    }
  }
}
