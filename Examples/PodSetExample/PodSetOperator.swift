public import Capstan

/// Installs the PodSet controller in a ``Manager`` with one call: the shared pod informer (with
/// the indexes the reconciler needs), the PodSet informer, and the controller itself.
///
/// ```swift
/// let manager = try Manager(backend: backend, logger: logger)
/// let podSets = try PodSetOperator(installingIn: manager)
/// try await manager.run()
/// ```
///
/// Install it before anything else asks the manager for a pod informer: indexes are fixed when
/// the shared informer is created.
public struct PodSetOperator: Sendable {
  /// The controller's default name (its metrics' `controller` label): `podsets`.
  public static let defaultName = "podsets"

  /// The shared informer of PodSets.
  public let podSets: Informer
  /// The shared informer of pods, with ``PodSetReconciler/podIndexes``.
  public let pods: Informer
  /// The controller, added to the manager.
  public let controller: Controller

  /// Adds the informers and the controller to `manager` (which must not be running yet).
  ///
  /// - Parameters:
  ///   - name: the controller's name.
  ///   - workers: concurrent reconciles, when `configuration` is nil.
  ///   - configuration: the controller's configuration; nil for the defaults with
  ///     ``PodSetReconciler/podSetChanged`` as predicate and the manager's metrics factory and
  ///     shutdown timeout. A configuration given should include that predicate too.
  /// - Throws: ``ManagerError`` when the manager runs already, or has a pod informer without the
  ///   indexes, or a controller of that name.
  public init(
    installingIn manager: Manager, name: String = PodSetOperator.defaultName, workers: Int = 2,
    configuration: ControllerConfiguration? = nil
  ) throws(ManagerError) {
    guard workers > 0 else {
      throw ManagerError(code: .invalidConfiguration, message: "the PodSet controller needs at least one worker")
    }
    let pods = try manager.informer(for: Pod.layout, indexes: PodSetReconciler.podIndexes)
    let podSets = try manager.informer(for: PodSet.layout)
    let configuration =
      configuration
      ?? ControllerConfiguration(
        workers: workers, predicates: [PodSetReconciler.podSetChanged],
        shutdownTimeout: manager.configuration.controllerShutdownTimeout,
        metricsFactory: manager.configuration.metricsFactory)
    self.pods = pods
    self.podSets = podSets
    self.controller = try manager.addController(
      name: name, primary: PodSet.layout, owned: [Pod.layout], reconciler: PodSetReconciler(pods: pods),
      configuration: configuration)
  }
}
