public import Metrics
public import UnixSignals

/// How a ``Manager`` creates its informers and controllers, and how it stops.
public struct ManagerConfiguration: Sendable {
  /// The configuration of every informer the manager creates.
  public var informer: InformerConfiguration
  /// How long controllers created by ``Manager/addController(name:primary:owned:reconciler:configuration:)``
  /// without a configuration may take to finish in-flight reconciles on graceful shutdown
  /// (default 30 s). Controllers stop one after another; the whole group is cancelled if it has
  /// not stopped 5 s after the sum of its controllers' shutdown timeouts.
  public var controllerShutdownTimeout: Duration
  /// Signals that start a graceful shutdown (default none; the `capstan` executable passes
  /// SIGTERM and SIGINT).
  public var gracefulShutdownSignals: [UnixSignal]
  /// Whether the manager runs the backend when it is a `Service` (as ``MemoryBackend`` is), first
  /// in its group so that it stops last (default true). Set it to false when the backend runs
  /// elsewhere.
  public var runsBackend: Bool
  /// Where the informers' and controllers' metrics go (default: the global factory).
  public var metricsFactory: any MetricsFactory

  /// A configuration; every parameter has a default.
  public init(
    informer: InformerConfiguration = InformerConfiguration(),
    controllerShutdownTimeout: Duration = .seconds(30),
    gracefulShutdownSignals: [UnixSignal] = [],
    runsBackend: Bool = true,
    metricsFactory: any MetricsFactory = MetricsSystem.factory
  ) {
    self.informer = informer
    self.controllerShutdownTimeout = controllerShutdownTimeout
    self.gracefulShutdownSignals = gracefulShutdownSignals
    self.runsBackend = runsBackend
    self.metricsFactory = metricsFactory
  }

  /// Throws ``ManagerError`` naming the first setting out of range.
  public func validate() throws(ManagerError) {
    do {
      try self.informer.validate()
    } catch {
      throw ManagerError(code: .invalidConfiguration, message: "informer: \(error.message)")
    }
    guard self.controllerShutdownTimeout >= .zero else {
      throw ManagerError(
        code: .invalidConfiguration,
        message: "controllerShutdownTimeout must not be negative, got \(self.controllerShutdownTimeout)")
    }
  }
}

/// Why a ``Manager`` call failed.
public struct ManagerError: Error, Sendable, Hashable, CustomStringConvertible {
  /// What kind of failure this is.
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    /// The code's name, e.g. `alreadyRunning`.
    public let description: String
    private init(_ description: String) { self.description = description }

    /// Informers, controllers and services are added before ``Manager/run()``; this one came after.
    public static let alreadyRunning = Code("alreadyRunning")
    /// A name or resource was registered twice, or a shared informer lacks an index asked for.
    public static let conflict = Code("conflict")
    /// A configuration value is out of range.
    public static let invalidConfiguration = Code("invalidConfiguration")
    /// A wait ran out of time.
    public static let timedOut = Code("timedOut")
  }

  /// What kind of failure this is.
  public var code: Code
  /// What went wrong, for a person.
  public var message: String

  /// An error of kind `code`.
  public init(code: Code, message: String) {
    self.code = code
    self.message = message
  }

  /// `code: message`.
  public var description: String { "\(self.code): \(self.message)" }
}

/// Which informers have synced: what `/readyz` reports.
public struct ManagerReadiness: Sendable, Hashable {
  /// One informer's state.
  public struct InformerState: Sendable, Hashable {
    /// The resource's plural, e.g. `pods`.
    public var plural: String
    /// The key prefix it watches.
    public var prefix: String
    /// Whether its first list has completed.
    public var hasSynced: Bool
    /// The revision its cache has seen (0 before the first list).
    public var lastSyncRevision: Int64
  }

  /// Every informer of the manager, in the order they were created.
  public var informers: [InformerState]

  /// True when every informer has synced (a manager without informers is ready).
  public var isReady: Bool { self.informers.allSatisfy(\.hasSynced) }

  /// The informers that have not synced yet.
  public var unsynced: [InformerState] { self.informers.filter { !$0.hasSynced } }
}
