/// What the demo does: how many PodSets, how hard it disturbs them, how long it waits.
///
/// Every value has a default (the README's `capstan demo`: 200 sets × 5 replicas); call
/// ``validate()`` (``DemoScenario`` does) to get a ``DemoConfigurationError`` naming the first
/// setting out of range.
public struct DemoConfiguration: Sendable, Hashable {
  /// How many PodSets to create (1…100 000; default 200).
  public var podSets: Int
  /// The replicas each set starts with (0…1000; default 5).
  public var replicas: Int
  /// The namespaces the sets are spread over, round robin (DNS-1123 labels, at least one, no
  /// duplicates; default `demo-a` … `demo-d`).
  public var namespaces: [String]
  /// How many rounds of disturbance follow the first convergence (0…1000; default 3). Each round
  /// deletes random pods, scales random sets up or down and deletes random sets.
  public var disturbanceRounds: Int
  /// How many malformed and zero-value objects are written under `junk-…` keys (0…10 000;
  /// default 12).
  public var junkObjects: Int
  /// How long each convergence wait may take (more than 0, at most an hour; default 60 s).
  public var convergenceTimeout: Duration
  /// The seed of every random choice (which pods, sets and replica counts), so a run can be
  /// repeated.
  public var seed: UInt64
  /// Concurrent reconciles of the controller ``DemoRunner`` installs (1…64; default 2).
  public var workers: Int
  /// How often the progress closure is called (more than 0; default 0.5 s).
  public var progressInterval: Duration
  /// The pause between disturbance rounds (not negative; default 0.25 s), so the controller is
  /// mid-flight when the next round hits.
  public var roundInterval: Duration

  /// A configuration; every parameter has a default.
  public init(
    podSets: Int = 200,
    replicas: Int = 5,
    namespaces: [String] = ["demo-a", "demo-b", "demo-c", "demo-d"],
    disturbanceRounds: Int = 3,
    junkObjects: Int = 12,
    convergenceTimeout: Duration = .seconds(60),
    seed: UInt64 = 1,
    workers: Int = 2,
    progressInterval: Duration = .milliseconds(500),
    roundInterval: Duration = .milliseconds(250)
  ) {
    self.podSets = podSets
    self.replicas = replicas
    self.namespaces = namespaces
    self.disturbanceRounds = disturbanceRounds
    self.junkObjects = junkObjects
    self.convergenceTimeout = convergenceTimeout
    self.seed = seed
    self.workers = workers
    self.progressInterval = progressInterval
    self.roundInterval = roundInterval
  }

  /// Throws a ``DemoConfigurationError`` naming the first setting out of range.
  public func validate() throws(DemoConfigurationError) {
    func check(_ condition: Bool, _ setting: String, _ message: @autoclosure () -> String) throws(DemoConfigurationError) {
      guard condition else { throw DemoConfigurationError(setting: setting, message: message()) }
    }
    try check((1...100_000).contains(self.podSets), "podSets", "must be 1…100000, got \(self.podSets)")
    try check((0...1000).contains(self.replicas), "replicas", "must be 0…1000, got \(self.replicas)")
    try check(!self.namespaces.isEmpty, "namespaces", "at least one namespace is needed")
    for namespace in self.namespaces {
      try check(
        Self.isDNSLabel(namespace), "namespaces",
        "\"\(namespace)\" is not a DNS-1123 label (lowercase letters, digits and '-', 1…63 characters, "
          + "starting and ending with a letter or digit)")
    }
    try check(Set(self.namespaces).count == self.namespaces.count, "namespaces", "namespaces repeat: \(self.namespaces)")
    try check(
      (0...1000).contains(self.disturbanceRounds), "disturbanceRounds", "must be 0…1000, got \(self.disturbanceRounds)")
    try check((0...10_000).contains(self.junkObjects), "junkObjects", "must be 0…10000, got \(self.junkObjects)")
    try check(
      self.convergenceTimeout > .zero && self.convergenceTimeout <= .seconds(3600), "convergenceTimeout",
      "must be more than 0 and at most 1 hour, got \(self.convergenceTimeout)")
    try check((1...64).contains(self.workers), "workers", "must be 1…64, got \(self.workers)")
    try check(self.progressInterval > .zero, "progressInterval", "must be more than 0, got \(self.progressInterval)")
    try check(self.roundInterval >= .zero, "roundInterval", "must not be negative, got \(self.roundInterval)")
  }

  /// Whether `text` is a DNS-1123 label.
  static func isDNSLabel(_ text: String) -> Bool {
    let bytes = Array(text.utf8)
    guard (1...63).contains(bytes.count) else { return false }
    func alphanumeric(_ byte: UInt8) -> Bool { (0x61...0x7A).contains(byte) || (0x30...0x39).contains(byte) }
    guard alphanumeric(bytes.first!), alphanumeric(bytes.last!) else { return false }
    return bytes.allSatisfy { alphanumeric($0) || $0 == UInt8(ascii: "-") }
  }
}

/// A demo setting out of range: which one and why.
public struct DemoConfigurationError: Error, Sendable, Hashable, CustomStringConvertible {
  /// The setting's name, as in ``DemoConfiguration``.
  public var setting: String
  /// What is wrong with it.
  public var message: String

  /// An error about `setting`.
  public init(setting: String, message: String) {
    self.setting = setting
    self.message = message
  }

  /// `invalid demo setting <setting>: <message>`.
  public var description: String { "invalid demo setting \(self.setting): \(self.message)" }
}
