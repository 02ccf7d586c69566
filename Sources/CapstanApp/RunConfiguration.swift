public import Logging

/// The validated start-up configuration of `capstan run` and `capstan demo`, read from flags
/// and the environment (a flag wins over its environment variable, which wins over the default).
///
/// Everything is checked here, before anything starts: the first bad setting is a
/// ``RunConfigurationError`` whose description is one line naming it.
///
/// | setting | flag | environment | default |
/// |---|---|---|---|
/// | etcd endpoints | `--endpoints` | `CAPSTAN_ENDPOINTS` | none: the embedded backend where allowed |
/// | service name | `--service-name` | `SERVICE_NAME` | `capstan` |
/// | log level | `--log-level` | `LOG_LEVEL` | per command (`run`: info, `demo`: error) |
/// | HTTP endpoints | `--metrics-addr` | `CAPSTAN_METRICS_ADDR` | `127.0.0.1:9090`; `off` disables |
/// | workers per controller | `--workers` | `CAPSTAN_WORKERS` | 2 (1…64) |
/// | graceful stop bound | `--shutdown-timeout` | `CAPSTAN_SHUTDOWN_TIMEOUT` | `30s` (1s…10m) |
/// | retry rate | `--retry-qps` | `CAPSTAN_RETRY_QPS` | 10 per second (0.1…10000) |
/// | retry burst | `--retry-burst` | `CAPSTAN_RETRY_BURST` | 100 (1…10000) |
public struct RunConfiguration: Sendable, Equatable {
  /// Which store the controllers run on.
  public enum BackendChoice: Sendable, Equatable, CustomStringConvertible {
    /// The in-process `MemoryBackend`.
    case embedded
    /// A real etcd at these endpoints.
    case etcd([NetworkAddress])

    /// `embedded`, or `etcd ` and the endpoints, comma-separated.
    public var description: String {
      switch self {
      case .embedded: "embedded"
      case .etcd(let addresses): "etcd " + addresses.map(\.description).joined(separator: ",")
      }
    }
  }

  /// Whether a command may run without etcd endpoints.
  public enum EndpointPolicy: Sendable, Equatable {
    /// Endpoints are required unless `embedded` is asked for (`capstan run`).
    case required
    /// No endpoints means the embedded backend (`capstan demo`).
    case embeddedWhenAbsent
  }

  /// Which store to use.
  public var backend: BackendChoice
  /// The `service` field of every log line.
  public var serviceName: String
  /// The level logs are written from.
  public var logLevel: Logger.Level
  /// Where the HTTP endpoints listen; `nil` when `off`.
  public var metricsAddress: NetworkAddress?
  /// Concurrent reconciles per controller.
  public var workers: Int
  /// How long a graceful stop may take before in-flight reconciles are abandoned.
  public var shutdownTimeout: Duration
  /// Retries per second allowed by each controller's global token bucket.
  public var retryRate: Double
  /// Burst of that token bucket.
  public var retryBurst: Int

  /// The service name when none is given.
  public static let defaultServiceName = "capstan"
  /// The HTTP address when none is given.
  public static let defaultMetricsAddress = NetworkAddress(host: "127.0.0.1", port: 9090)
  /// Workers per controller when none is given.
  public static let defaultWorkers = 2
  /// The allowed numbers of workers.
  public static let workerRange = 1...64
  /// The graceful stop bound when none is given.
  public static let defaultShutdownTimeout = Duration.seconds(30)
  /// The allowed graceful stop bounds.
  public static let shutdownTimeoutRange = Duration.seconds(1)...Duration.seconds(600)
  /// The retry rate when none is given (client-go's default bucket).
  public static let defaultRetryRate = 10.0
  /// The allowed retry rates.
  public static let retryRateRange = 0.1...10_000.0
  /// The retry burst when none is given.
  public static let defaultRetryBurst = 100
  /// The allowed retry bursts.
  public static let retryBurstRange = 1...10_000

  /// A configuration from values already valid (tests, embedding code).
  public init(
    backend: BackendChoice = .embedded,
    serviceName: String = Self.defaultServiceName,
    logLevel: Logger.Level = .info,
    metricsAddress: NetworkAddress? = Self.defaultMetricsAddress,
    workers: Int = Self.defaultWorkers,
    shutdownTimeout: Duration = Self.defaultShutdownTimeout,
    retryRate: Double = Self.defaultRetryRate,
    retryBurst: Int = Self.defaultRetryBurst
  ) {
    self.backend = backend
    self.serviceName = serviceName
    self.logLevel = logLevel
    self.metricsAddress = metricsAddress
    self.workers = workers
    self.shutdownTimeout = shutdownTimeout
    self.retryRate = retryRate
    self.retryBurst = retryBurst
  }

  /// Reads and validates every setting.
  ///
  /// An environment variable set to the empty string counts as absent (as `FOO=` in a unit
  /// file or a compose file means "not set"); a flag given an empty value is invalid.
  ///
  /// - Parameters:
  ///   - flags: the values of the flags that were given, as typed.
  ///   - embedded: `--embedded` was given: use the embedded backend, ignore `CAPSTAN_ENDPOINTS`.
  ///   - environment: the process environment (`ProcessInfo.processInfo.environment`).
  ///   - endpoints: whether the command needs etcd endpoints.
  ///   - defaultLogLevel: the level when neither `--log-level` nor `LOG_LEVEL` is set.
  /// - Throws: ``RunConfigurationError`` for the first missing, conflicting or invalid setting,
  ///   in the order of ``RunSetting/allCases``.
  public init(
    flags: [RunSetting: String] = [:],
    embedded: Bool = false,
    environment: [String: String],
    endpoints: EndpointPolicy,
    defaultLogLevel: Logger.Level = .info
  ) throws(RunConfigurationError) {
    func given(_ setting: RunSetting) -> (String, RunSettingSource)? {
      if let value = flags[setting] { return (value, .flag) }
      if setting == .endpoints, embedded { return nil }
      if let value = environment[setting.environmentVariable], !value.isEmpty { return (value, .environment) }
      return nil
    }
    func parse<Value>(_ setting: RunSetting, default defaultValue: Value, _ parse: (String) -> Value?)
      throws(RunConfigurationError) -> Value
    {
      guard let (text, source) = given(setting) else { return defaultValue }
      guard let value = parse(text) else {
        throw RunConfigurationError(setting: setting, source: source, value: text)
      }
      return value
    }

    if embedded, let endpoints = flags[.endpoints] {
      throw RunConfigurationError(
        setting: .endpoints, source: .flag, value: endpoints,
        reason: "--embedded and --endpoints exclude each other: pick one backend")
    }
    let addresses = try parse(.endpoints, default: [], Self.parseEndpoints)
    if addresses.isEmpty {
      if endpoints == .required && !embedded {
        throw RunConfigurationError(
          setting: .endpoints, source: nil, value: nil,
          reason: "give etcd endpoints as host:port,… (e.g. 127.0.0.1:2379), or --embedded for the in-process store")
      }
      self.backend = .embedded
    } else {
      self.backend = .etcd(addresses)
    }
    self.serviceName = try parse(.serviceName, default: Self.defaultServiceName) { Self.isDNS1123Label($0) ? $0 : nil }
    self.logLevel = try parse(.logLevel, default: defaultLogLevel) { Logger.Level(rawValue: $0.lowercased()) }
    let defaultMetricsAddress: NetworkAddress? = Self.defaultMetricsAddress
    self.metricsAddress = try parse(.metricsAddress, default: defaultMetricsAddress) { text -> NetworkAddress?? in
      text.lowercased() == "off" ? .some(nil) : NetworkAddress(parsing: text, ports: 0...65535).map { .some($0) }
    }
    self.workers = try parse(.workers, default: Self.defaultWorkers) { text in
      Self.integer(text).flatMap { Self.workerRange.contains($0) ? $0 : nil }
    }
    self.shutdownTimeout = try parse(.shutdownTimeout, default: Self.defaultShutdownTimeout) { text in
      Duration(parsingGoDuration: text).flatMap { Self.shutdownTimeoutRange.contains($0) ? $0 : nil }
    }
    self.retryRate = try parse(.retryRate, default: Self.defaultRetryRate) { text in
      guard text.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }), let rate = Double(text) else { return nil }
      return Self.retryRateRange.contains(rate) ? rate : nil
    }
    self.retryBurst = try parse(.retryBurst, default: Self.defaultRetryBurst) { text in
      Self.integer(text).flatMap { Self.retryBurstRange.contains($0) ? $0 : nil }
    }
  }

  /// A DNS-1123 label, as Kubernetes requires of names: 1…63 characters of lowercase ASCII
  /// letters, digits and `-`, starting and ending with a letter or digit.
  public static func isDNS1123Label(_ text: String) -> Bool {
    guard let first = text.utf8.first, let last = text.utf8.last, text.utf8.count <= 63 else { return false }
    func isAlphanumeric(_ byte: UInt8) -> Bool { (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) }
    return isAlphanumeric(first) && isAlphanumeric(last)
      && text.utf8.allSatisfy { isAlphanumeric($0) || $0 == UInt8(ascii: "-") }
  }

  /// Comma-separated endpoints (blanks around each allowed, an `http://` prefix too); `nil` if any
  /// is invalid or none given.
  static func parseEndpoints(_ text: String) -> [NetworkAddress]? {
    let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { part in
      String(part.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
    var addresses: [NetworkAddress] = []
    for part in parts {
      // etcdctl's form `http://host:port` is the same address (TLS, `https://`, is not supported here).
      var text = Substring(part)
      if text.hasPrefix("http://") { text = text.dropFirst("http://".count) }
      if text.hasSuffix("/") { text = text.dropLast() }
      guard let address = NetworkAddress(parsing: String(text)) else { return nil }
      addresses.append(address)
    }
    return addresses.isEmpty ? nil : addresses
  }

  /// A plain decimal integer: digits only, no sign, no blanks.
  private static func integer(_ text: String) -> Int? {
    guard !text.isEmpty, text.count <= 9, text.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
    return Int(text)
  }
}
