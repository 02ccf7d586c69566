/// One start-up setting of `capstan run` / `capstan demo`: its environment variable, its flag,
/// and what values it allows.
public enum RunSetting: String, CaseIterable, Sendable, Hashable {
  /// etcd endpoints, comma-separated `host:port`.
  case endpoints
  /// The service name put in every log line: a DNS-1123 label.
  case serviceName
  /// The log level.
  case logLevel
  /// Where `/metrics`, `/healthz` and `/readyz` listen, or `off`.
  case metricsAddress
  /// Concurrent reconciles per controller.
  case workers
  /// How long a graceful stop may take.
  case shutdownTimeout
  /// Global retry rate of each controller's work queue (token bucket refill, per second).
  case retryRate
  /// Burst of that token bucket.
  case retryBurst

  /// The environment variable that supplies the setting when its flag is absent.
  public var environmentVariable: String {
    switch self {
    case .endpoints: "CAPSTAN_ENDPOINTS"
    case .serviceName: "SERVICE_NAME"
    case .logLevel: "LOG_LEVEL"
    case .metricsAddress: "CAPSTAN_METRICS_ADDR"
    case .workers: "CAPSTAN_WORKERS"
    case .shutdownTimeout: "CAPSTAN_SHUTDOWN_TIMEOUT"
    case .retryRate: "CAPSTAN_RETRY_QPS"
    case .retryBurst: "CAPSTAN_RETRY_BURST"
    }
  }

  /// The command-line flag that sets it (and overrides the environment).
  public var flag: String {
    switch self {
    case .endpoints: "--endpoints"
    case .serviceName: "--service-name"
    case .logLevel: "--log-level"
    case .metricsAddress: "--metrics-addr"
    case .workers: "--workers"
    case .shutdownTimeout: "--shutdown-timeout"
    case .retryRate: "--retry-qps"
    case .retryBurst: "--retry-burst"
    }
  }

  /// What the setting allows, as the end of an error line.
  public var requirement: String {
    switch self {
    case .endpoints:
      "must be comma-separated host:port (port 1-65535, IPv6 in brackets, no TLS), e.g. 127.0.0.1:2379"
    case .serviceName:
      "must be a DNS-1123 label (lowercase letters, digits, '-', at most 63, starting and ending with a letter or digit)"
    case .logLevel: "must be one of trace, debug, info, notice, warning, error, critical"
    case .metricsAddress:
      "must be host:port (port 0-65535, 0 = any free port, IPv6 in brackets) or off"
    case .workers: "must be an integer from \(RunConfiguration.workerRange.lowerBound) to \(RunConfiguration.workerRange.upperBound)"
    case .shutdownTimeout: "must be a duration from 1s to 10m, e.g. 500ms, 30s, 2m"
    case .retryRate: "must be a number of retries per second from 0.1 to 10000"
    case .retryBurst: "must be an integer from \(RunConfiguration.retryBurstRange.lowerBound) to \(RunConfiguration.retryBurstRange.upperBound)"
    }
  }
}

/// Where a setting's value came from.
public enum RunSettingSource: Sendable, Hashable {
  /// A command-line flag.
  case flag
  /// An environment variable.
  case environment
}

/// A start-up setting that is missing or not allowed. Its ``description`` is one line naming
/// the setting as it was given (flag or environment variable), the bad value and what is allowed:
/// `invalid SERVICE_NAME "My_Svc": must be a DNS-1123 label (…)`.
public struct RunConfigurationError: Error, Sendable, Hashable, CustomStringConvertible {
  /// The setting at fault.
  public var setting: RunSetting
  /// Where the bad value came from; `nil` when the setting is missing or conflicts.
  public var source: RunSettingSource?
  /// The bad value as given; `nil` when missing.
  public var value: String?
  /// What is wrong and what is allowed.
  public var reason: String

  /// - Parameters:
  ///   - setting: the setting at fault.
  ///   - source: where the value came from (`nil`: missing or conflicting).
  ///   - value: the value as given.
  ///   - reason: what is allowed (defaults to the setting's ``RunSetting/requirement``).
  public init(setting: RunSetting, source: RunSettingSource?, value: String?, reason: String? = nil) {
    self.setting = setting
    self.source = source
    self.value = value
    self.reason = reason ?? setting.requirement
  }

  /// The setting as the user wrote it: the flag, or the environment variable.
  public var settingName: String {
    switch self.source {
    case .flag: self.setting.flag
    case .environment: self.setting.environmentVariable
    case nil: "\(self.setting.flag) / \(self.setting.environmentVariable)"
    }
  }

  /// One line: `invalid <setting> "<value>": <reason>` or `missing <setting>: <reason>`.
  public var description: String {
    guard let value else { return "missing \(self.settingName): \(self.reason)" }
    return "invalid \(self.settingName) \(value.debugDescription): \(self.reason)"
  }
}
