public import Logging
public import ServiceLifecycle
import Synchronization

/// Runs everything a controller process needs as one swift-service-lifecycle `ServiceGroup`: the
/// backend (when it is a `Service`), one shared informer per resource, the controllers, and any
/// added services such as the HTTP server.
///
/// - **Shared informers.** ``informer(for:indexes:)`` returns the same ``Informer`` for the same
///   key prefix however many controllers use it, so each kind is listed and watched once.
/// - **Order.** The group starts the backend, then the informers, the controllers and the added
///   services; a graceful shutdown stops them in reverse: added services first, then controllers
///   (which finish their in-flight reconciles within their `shutdownTimeout`), informers, and the
///   backend last.
/// - **Health.** ``isHealthy`` is true while the group runs (a service that throws stops the whole
///   group); ``isReady`` once every informer has synced.
/// - Everything is added before ``run()``; adding later is a ``ManagerError``.
public final class Manager: Service, Sendable {
  /// The store every informer and controller of this manager uses.
  public let backend: any Backend
  /// The configuration the manager was created with.
  public let configuration: ManagerConfiguration
  private let logger: Logger
  private let state = Mutex(State())

  private struct State {
    enum Phase { case idle, running, stopped }
    var phase = Phase.idle
    var informers: [Informer] = []
    var informerIndexByPrefix: [String: Int] = [:]
    var controllers: [Controller] = []
    var services: [(service: any Service, name: String)] = []
    var shutdownRequested = false
    /// Set once the group has returned: a shutdown waiter that comes later must not park.
    var groupEnded = false
    var shutdownWaiter: CheckedContinuation<Void, Never>?
  }

  /// A manager for the objects in `backend`.
  public init(
    backend: any Backend, configuration: ManagerConfiguration = ManagerConfiguration(), logger: Logger
  ) throws(ManagerError) {
    try configuration.validate()
    self.backend = backend
    self.configuration = configuration
    self.logger = logger
  }

  // MARK: Building

  /// The shared informer for `layout`: created on first use, the same instance afterwards. A later
  /// call must not ask for an index the informer was not created with (indexes are fixed once the
  /// cache exists), so the first caller names every index the users of that kind need.
  public func informer(for layout: ResourceLayout, indexes: [CacheIndex] = []) throws(ManagerError) -> Informer {
    try self.state.withLock { state throws(ManagerError) in
      try Self.checkNotStarted(state, adding: "the \(layout.plural) informer")
      try Self.validate(indexes, for: layout)
      if let index = state.informerIndexByPrefix[layout.prefix] {
        let informer = state.informers[index]
        guard informer.layout == layout else {
          throw ManagerError(
            code: .conflict,
            message: "the prefix \(layout.prefix) already has an informer for kind \(informer.layout.kind), not \(layout.kind)")
        }
        let existing = Set(informer.indexNames)
        let missing = indexes.map(\.name).filter { !existing.contains($0) }
        guard missing.isEmpty else {
          throw ManagerError(
            code: .conflict,
            message: "the shared \(layout.plural) informer was created without the index(es) \(missing.joined(separator: ", ")); "
              + "ask for every index on the first informer(for:indexes:) call")
        }
        return informer
      }
      let informer: Informer
      do throws(InformerError) {
        informer = try Informer(
          layout: layout, backend: self.backend, indexes: indexes, configuration: self.configuration.informer,
          logger: self.logger, metricsFactory: self.configuration.metricsFactory)
      } catch {
        throw ManagerError(code: .invalidConfiguration, message: error.message)
      }
      state.informerIndexByPrefix[layout.prefix] = state.informers.count
      state.informers.append(informer)
      return informer
    }
  }

  /// Creates a controller named `name` that reconciles the objects of `primary` with `reconciler`
  /// (also triggered by changes to objects of the `owned` kinds, through their owner references),
  /// over the manager's shared informers, and adds it to the group. Without a `configuration` the
  /// controller uses the defaults with the manager's metrics factory and shutdown timeout.
  @discardableResult
  public func addController(
    name: String,
    primary: ResourceLayout,
    owned: [ResourceLayout] = [],
    reconciler: some Reconciler,
    configuration: ControllerConfiguration? = nil
  ) throws(ManagerError) -> Controller {
    let primaryInformer = try self.informer(for: primary)
    var ownedInformers: [Informer] = []
    for layout in owned { ownedInformers.append(try self.informer(for: layout)) }
    let configuration =
      configuration
      ?? ControllerConfiguration(
        shutdownTimeout: self.configuration.controllerShutdownTimeout, metricsFactory: self.configuration.metricsFactory)
    let controller = Controller(
      name: name, primary: primaryInformer, owned: ownedInformers, reconciler: reconciler,
      configuration: configuration, logger: self.logger)
    try self.state.withLock { state throws(ManagerError) in
      try Self.checkNotStarted(state, adding: "the controller \(name)")
      guard !state.controllers.contains(where: { $0.name == name }) else {
        throw ManagerError(code: .conflict, message: "a controller named \(name) was already added")
      }
      state.controllers.append(controller)
    }
    return controller
  }

  /// Runs `service` alongside the informers and controllers (the HTTP server, for example): it
  /// starts after them and is the first to stop on graceful shutdown.
  public func addService(_ service: some Service, name: String) throws(ManagerError) {
    try self.state.withLock { state throws(ManagerError) in
      try Self.checkNotStarted(state, adding: "the service \(name)")
      state.services.append((service, name))
    }
  }

  private static func validate(_ indexes: [CacheIndex], for layout: ResourceLayout) throws(ManagerError) {
    var names = Set<String>()
    for index in indexes {
      guard index.name != CacheIndex.namespace.name else {
        throw ManagerError(
          code: .invalidConfiguration, message: "the \(layout.plural) index name \"namespace\" is reserved (built in)")
      }
      guard names.insert(index.name).inserted else {
        throw ManagerError(code: .invalidConfiguration, message: "two \(layout.plural) indexes are named \"\(index.name)\"")
      }
    }
  }

  private static func checkNotStarted(_ state: State, adding what: String) throws(ManagerError) {
    guard state.phase == .idle else {
      throw ManagerError(code: .alreadyRunning, message: "cannot add \(what): the manager has already started")
    }
  }

  // MARK: State

  /// The informers, in the order they were created.
  public var informers: [Informer] { self.state.withLock { $0.informers } }

  /// The controllers, in the order they were added.
  public var controllers: [Controller] { self.state.withLock { $0.controllers } }

  /// Which informers have synced.
  public var readiness: ManagerReadiness {
    ManagerReadiness(
      informers: self.informers.map { informer in
        ManagerReadiness.InformerState(
          plural: informer.layout.plural, prefix: informer.layout.prefix, hasSynced: informer.hasSynced,
          lastSyncRevision: informer.lastSyncRevision)
      })
  }

  /// True once every informer has synced.
  public var isReady: Bool { self.readiness.isReady }

  /// True while the manager's group runs; false before ``run()`` and after it returned.
  public var isHealthy: Bool { self.state.withLock { $0.phase == .running } }

  /// Waits until every informer has synced; throws ``ManagerError`` (`timedOut`) naming the ones
  /// that have not, or the informer's error if one stopped.
  public func waitUntilReady(timeout: Duration = .seconds(60)) async throws {
    let deadline = ContinuousClock.now + timeout
    for informer in self.informers {
      let remaining = deadline - ContinuousClock.now
      do {
        _ = try await informer.waitForSync(timeout: max(remaining, .zero))
      } catch let error as InformerError where error.code == .timedOut {
        let unsynced = self.readiness.unsynced.map(\.plural).joined(separator: ", ")
        throw ManagerError(code: .timedOut, message: "not synced after \(timeout): \(unsynced)")
      }
    }
  }

  // MARK: Running

  /// Runs the group until cancelled, a graceful shutdown (of an enclosing group, a configured
  /// signal, or ``shutdown()``), or a service failing — whose error it rethrows. A manager runs once.
  public func run() async throws {
    let (informers, controllers, services) = try self.state.withLock { state throws(ManagerError) in
      guard state.phase == .idle else {
        throw ManagerError(code: .alreadyRunning, message: "the manager has already run; create a new one")
      }
      state.phase = .running
      return (state.informers, state.controllers, state.services)
    }
    defer { self.state.withLock { $0.phase = .stopped } }

    var entries: [ServiceGroupConfiguration.ServiceConfiguration] = []
    if self.configuration.runsBackend, let backendService = self.backend as? any Service {
      entries.append(.init(service: backendService, serviceName: "backend"))
    }
    for informer in informers {
      entries.append(.init(service: informer, serviceName: "informer-\(informer.layout.plural)"))
    }
    for controller in controllers {
      entries.append(.init(service: controller, serviceName: "controller-\(controller.name)"))
    }
    for (service, name) in services { entries.append(.init(service: service, serviceName: name)) }
    var groupConfiguration = ServiceGroupConfiguration(
      services: entries, gracefulShutdownSignals: self.configuration.gracefulShutdownSignals, logger: self.logger)
    // The group stops controllers one after another, each within its own shutdown timeout.
    groupConfiguration.maximumGracefulShutdownDuration =
      controllers.reduce(.seconds(5)) { $0 + $1.configuration.shutdownTimeout }
    let group = ServiceGroup(configuration: groupConfiguration)

    self.logger.info(
      "manager starting",
      metadata: ["informers": "\(informers.count)", "controllers": "\(controllers.count)", "services": "\(services.count)"])
    try await withThrowingTaskGroup(of: Void.self) { tasks in
      tasks.addTask {
        await self.waitForShutdownRequest()
        await group.triggerGracefulShutdown()
      }
      do {
        try await group.run()
      } catch {
        self.logger.error("manager stopped by a failing service", metadata: ["error": "\(error)"])
        self.releaseShutdownWaiter()
        tasks.cancelAll()
        throw error
      }
      self.releaseShutdownWaiter()
      tasks.cancelAll()
    }
    self.logger.info("manager stopped")
  }

  /// Starts a graceful shutdown of a running manager (or makes a later ``run()`` stop at once):
  /// services stop in reverse order, controllers finish their in-flight reconciles first.
  public func shutdown() {
    let waiter = self.state.withLock { state in
      state.shutdownRequested = true
      defer { state.shutdownWaiter = nil }
      return state.shutdownWaiter
    }
    waiter?.resume()
  }

  /// Returns when ``shutdown()`` is called or the group has ended.
  private func waitForShutdownRequest() async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
      let resumeNow = self.state.withLock { state in
        if state.shutdownRequested || state.groupEnded { return true }
        state.shutdownWaiter = continuation
        return false
      }
      if resumeNow { continuation.resume() }
    }
  }

  private func releaseShutdownWaiter() {
    let waiter = self.state.withLock { state in
      state.groupEnded = true
      defer { state.shutdownWaiter = nil }
      return state.shutdownWaiter
    }
    waiter?.resume()
  }
}
