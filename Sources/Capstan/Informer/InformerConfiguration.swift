public import CapstanEtcd

/// How an ``Informer`` lists, watches and recovers.
public struct InformerConfiguration: Sendable {
  /// Keys per page of the initial list and of relists (default 500).
  public var pageSize: Int
  /// Delay between attempts after a watch or list failure: jittered, exponential, 0.8 s → 30 s by
  /// default (as client-go's reflector).
  public var backoff: EtcdBackoff
  /// A watch that has run this long without failing resets the backoff to its first step.
  public var healthyPeriod: Duration
  /// When the watch has delivered nothing (not even a progress notification) for this long, the
  /// informer asks the backend for progress; if that gets no answer within ``progressTimeout``
  /// the watch is restarted from the last revision + 1 (the stall watchdog).
  public var stallTimeout: Duration
  /// How long the stall watchdog waits for a progress answer.
  public var progressTimeout: Duration
  /// Shards of the cache (default 16).
  public var shardCount: Int
  /// Runs on every object before it is cached (field stripping, to keep memory low): it may
  /// rewrite the metadata and the raw JSON; the result is validated again.
  public var transform: ObjectIngestor.Transform?

  public init(
    pageSize: Int = 500,
    backoff: EtcdBackoff = EtcdBackoff(initial: .milliseconds(800), maximum: .seconds(30)),
    healthyPeriod: Duration = .seconds(60),
    stallTimeout: Duration = .seconds(30),
    progressTimeout: Duration = .seconds(5),
    shardCount: Int = 16,
    transform: ObjectIngestor.Transform? = nil
  ) {
    self.pageSize = pageSize
    self.backoff = backoff
    self.healthyPeriod = healthyPeriod
    self.stallTimeout = stallTimeout
    self.progressTimeout = progressTimeout
    self.shardCount = shardCount
    self.transform = transform
  }

  /// Throws ``InformerError`` naming the first setting out of range.
  public func validate() throws(InformerError) {
    func fail(_ message: String) -> InformerError { InformerError(code: .invalidConfiguration, message: message) }
    guard self.pageSize > 0 else { throw fail("pageSize must be positive, not \(self.pageSize)") }
    guard self.backoff.initial > .zero, self.backoff.maximum >= self.backoff.initial else {
      throw fail("backoff must have 0 < initial <= maximum")
    }
    guard self.stallTimeout > .zero else { throw fail("stallTimeout must be positive") }
    guard self.progressTimeout > .zero else { throw fail("progressTimeout must be positive") }
    guard self.shardCount > 0 else { throw fail("shardCount must be positive, not \(self.shardCount)") }
  }
}

/// Why an ``Informer`` call failed.
public struct InformerError: Error, Sendable, Hashable, CustomStringConvertible {
  /// What kind of failure this is.
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    public let description: String
    private init(_ description: String) { self.description = description }

    /// The cache was read before the informer's first list completed.
    public static let notSynced = Code("notSynced")
    /// A wait ran out of time.
    public static let timedOut = Code("timedOut")
    /// The informer stopped (its `run()` returned) before the wait was satisfied.
    public static let stopped = Code("stopped")
    /// `run()` was called on an informer that has already run (an informer runs once).
    public static let alreadyRunning = Code("alreadyRunning")
    /// A configuration value is out of range.
    public static let invalidConfiguration = Code("invalidConfiguration")
  }

  public var code: Code
  public var message: String

  public init(code: Code, message: String) {
    self.code = code
    self.message = message
  }

  public var description: String { "\(self.code): \(self.message)" }
}
