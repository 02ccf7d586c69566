import CapstanApp
import Logging
import PropertyBased
import Testing

/// Every start-up setting, valid and invalid, from flags and from the environment, and the
/// precedence flag > environment > default.
@Suite("RunConfiguration")
struct RunConfigurationTests {
  /// Resolves with only `setting` given, from `source`, as `value` (`capstan run --embedded`).
  func resolve(_ setting: RunSetting, _ value: String, from source: RunSettingSource) throws(RunConfigurationError)
    -> RunConfiguration
  {
    switch source {
    case .flag:
      return try RunConfiguration(flags: [setting: value], embedded: setting != .endpoints, environment: [:], endpoints: .required)
    case .environment:
      return try RunConfiguration(
        embedded: setting != .endpoints, environment: [setting.environmentVariable: value], endpoints: .required)
    }
  }

  @Test("defaults when nothing is given")
  func defaults() throws {
    let configuration = try RunConfiguration(environment: [:], endpoints: .embeddedWhenAbsent, defaultLogLevel: .warning)
    #expect(configuration == RunConfiguration(logLevel: .warning))
    #expect(configuration.backend == .embedded)
    #expect(configuration.serviceName == "capstan")
    #expect(configuration.metricsAddress?.description == "127.0.0.1:9090")
    #expect(configuration.workers == 2)
    #expect(configuration.shutdownTimeout == .seconds(30))
    #expect(configuration.retryRate == 10)
    #expect(configuration.retryBurst == 100)
  }

  static let validValues: [(RunSetting, String, @Sendable (RunConfiguration) -> Bool)] = [
    (.endpoints, "127.0.0.1:2379", { $0.backend == .etcd([NetworkAddress(host: "127.0.0.1", port: 2379)]) }),
    (.endpoints, "etcd-0.etcd:2379, etcd-1.etcd:2379", {
      $0.backend == .etcd([NetworkAddress(host: "etcd-0.etcd", port: 2379), NetworkAddress(host: "etcd-1.etcd", port: 2379)])
    }),
    (.endpoints, "[::1]:2379", { $0.backend == .etcd([NetworkAddress(host: "::1", port: 2379)]) }),
    (.endpoints, "[fe80::1%eth0]:65535", { $0.backend == .etcd([NetworkAddress(host: "fe80::1%eth0", port: 65535)]) }),
    (.endpoints, "localhost:1", { $0.backend == .etcd([NetworkAddress(host: "localhost", port: 1)]) }),
    (.endpoints, "http://10.0.0.1:2379/,http://[::1]:2379", {
      $0.backend == .etcd([NetworkAddress(host: "10.0.0.1", port: 2379), NetworkAddress(host: "::1", port: 2379)])
    }),
    (.serviceName, "podset-operator", { $0.serviceName == "podset-operator" }),
    (.serviceName, "a", { $0.serviceName == "a" }),
    (.serviceName, "0x", { $0.serviceName == "0x" }),
    (.serviceName, String(repeating: "a", count: 63), { $0.serviceName.count == 63 }),
    (.logLevel, "trace", { $0.logLevel == .trace }),
    (.logLevel, "DEBUG", { $0.logLevel == .debug }),
    (.logLevel, "critical", { $0.logLevel == .critical }),
    (.metricsAddress, "off", { $0.metricsAddress == nil }),
    (.metricsAddress, "OFF", { $0.metricsAddress == nil }),
    (.metricsAddress, "0.0.0.0:8080", { $0.metricsAddress == NetworkAddress(host: "0.0.0.0", port: 8080) }),
    (.metricsAddress, "127.0.0.1:0", { $0.metricsAddress == NetworkAddress(host: "127.0.0.1", port: 0) }),
    (.metricsAddress, "[::]:9090", { $0.metricsAddress == NetworkAddress(host: "::", port: 9090) }),
    (.workers, "1", { $0.workers == 1 }),
    (.workers, "64", { $0.workers == 64 }),
    (.shutdownTimeout, "1s", { $0.shutdownTimeout == .seconds(1) }),
    (.shutdownTimeout, "1500ms", { $0.shutdownTimeout == .milliseconds(1500) }),
    (.shutdownTimeout, "2m30s", { $0.shutdownTimeout == .seconds(150) }),
    (.shutdownTimeout, "10m", { $0.shutdownTimeout == .seconds(600) }),
    (.shutdownTimeout, "0.5m", { $0.shutdownTimeout == .seconds(30) }),
    (.retryRate, "0.1", { $0.retryRate == 0.1 }),
    (.retryRate, "10000", { $0.retryRate == 10_000 }),
    (.retryBurst, "1", { $0.retryBurst == 1 }),
    (.retryBurst, "10000", { $0.retryBurst == 10_000 }),
  ]

  @Test("valid values are read, from a flag and from the environment", arguments: validValues.indices)
  func validValue(_ index: Int) throws {
    let (setting, value, check) = Self.validValues[index]
    for source in [RunSettingSource.flag, .environment] {
      let configuration = try resolve(setting, value, from: source)
      #expect(check(configuration), "\(setting) = \(value) from \(source): \(configuration)")
    }
  }

  static let invalidValues: [(RunSetting, String)] = [
    (.endpoints, "127.0.0.1"),
    (.endpoints, "127.0.0.1:0"),
    (.endpoints, "127.0.0.1:65536"),
    (.endpoints, "127.0.0.1:http"),
    (.endpoints, ":2379"),
    (.endpoints, "::1:2379"),
    (.endpoints, "[::1]2379"),
    (.endpoints, "[not-v6]:2379"),
    (.endpoints, "127.0.0.1:2379,"),
    (.endpoints, "https://127.0.0.1:2379"),
    (.endpoints, "unix:///tmp/etcd.sock"),
    (.endpoints, "bad_host:2379"),
    (.endpoints, "-bad.host:2379"),
    (.serviceName, "My_Svc"),
    (.serviceName, "Capstan"),
    (.serviceName, "-capstan"),
    (.serviceName, "capstan-"),
    (.serviceName, "cap.stan"),
    (.serviceName, String(repeating: "a", count: 64)),
    (.serviceName, "café"),
    (.logLevel, "verbose"),
    (.logLevel, "warn"),
    (.metricsAddress, "9090"),
    (.metricsAddress, "127.0.0.1:99999"),
    (.metricsAddress, "on"),
    (.workers, "0"),
    (.workers, "65"),
    (.workers, "-1"),
    (.workers, "2.5"),
    (.workers, " 2"),
    (.shutdownTimeout, "30"),
    (.shutdownTimeout, "999ms"),
    (.shutdownTimeout, "10m1s"),
    (.shutdownTimeout, "1d"),
    (.shutdownTimeout, "-5s"),
    (.shutdownTimeout, "s"),
    (.retryRate, "0.05"),
    (.retryRate, "10001"),
    (.retryRate, "1e3"),
    (.retryRate, "fast"),
    (.retryBurst, "0"),
    (.retryBurst, "10001"),
  ]

  @Test("an invalid value is one line naming the setting as given, the value and what is allowed",
        arguments: invalidValues.indices)
  func invalidValue(_ index: Int) throws {
    let (setting, value) = Self.invalidValues[index]
    for source in [RunSettingSource.flag, .environment] {
      let name = source == .flag ? setting.flag : setting.environmentVariable
      #expect {
        _ = try resolve(setting, value, from: source)
      } throws: { error in
        guard let error = error as? RunConfigurationError else { return false }
        return error.setting == setting && error.source == source && error.value == value
          && error.description == "invalid \(name) \(value.debugDescription): \(setting.requirement)"
          && !error.description.contains("\n")
      }
    }
  }

  @Test("the SERVICE_NAME error reads as documented")
  func serviceNameMessage() {
    #expect {
      _ = try RunConfiguration(embedded: true, environment: ["SERVICE_NAME": "My_Svc"], endpoints: .required)
    } throws: { error in
      "\(error)"
        == #"invalid SERVICE_NAME "My_Svc": must be a DNS-1123 label (lowercase letters, digits, '-', at most 63, starting and ending with a letter or digit)"#
    }
  }

  @Test("a value with a newline stays on one line in the error")
  func newlineInValue() {
    #expect {
      _ = try RunConfiguration(embedded: true, environment: ["SERVICE_NAME": "a\nb"], endpoints: .required)
    } throws: { error in
      "\(error)".hasPrefix(#"invalid SERVICE_NAME "a\nb": "#) && !"\(error)".contains("\n")
    }
  }

  static let precedenceCases: [(RunSetting, flag: String, environment: String, expectedFromFlag: @Sendable (RunConfiguration) -> Bool, expectedFromEnvironment: @Sendable (RunConfiguration) -> Bool)] = [
    (.serviceName, "from-flag", "from-env", { $0.serviceName == "from-flag" }, { $0.serviceName == "from-env" }),
    (.logLevel, "error", "debug", { $0.logLevel == .error }, { $0.logLevel == .debug }),
    (.metricsAddress, "127.0.0.1:1", "off", { $0.metricsAddress?.port == 1 }, { $0.metricsAddress == nil }),
    (.workers, "3", "4", { $0.workers == 3 }, { $0.workers == 4 }),
    (.shutdownTimeout, "5s", "6s", { $0.shutdownTimeout == .seconds(5) }, { $0.shutdownTimeout == .seconds(6) }),
    (.retryRate, "1", "2", { $0.retryRate == 1 }, { $0.retryRate == 2 }),
    (.retryBurst, "7", "8", { $0.retryBurst == 7 }, { $0.retryBurst == 8 }),
    (.endpoints, "a:1", "b:2", { $0.backend == .etcd([NetworkAddress(host: "a", port: 1)]) },
     { $0.backend == .etcd([NetworkAddress(host: "b", port: 2)]) }),
  ]

  @Test("a flag wins over the environment, which wins over the default", arguments: precedenceCases.indices)
  func precedence(_ index: Int) throws {
    let (setting, flag, environment, fromFlag, fromEnvironment) = Self.precedenceCases[index]
    let variables = [setting.environmentVariable: environment]
    let both = try RunConfiguration(flags: [setting: flag], environment: variables, endpoints: .embeddedWhenAbsent)
    #expect(fromFlag(both))
    let onlyEnvironment = try RunConfiguration(environment: variables, endpoints: .embeddedWhenAbsent)
    #expect(fromEnvironment(onlyEnvironment))
    let neither = try RunConfiguration(environment: [:], endpoints: .embeddedWhenAbsent)
    #expect(neither == RunConfiguration())
  }

  @Test("a valid flag hides an invalid environment value; an invalid flag is an error whatever the environment")
  func flagHidesEnvironment() throws {
    let configuration = try RunConfiguration(
      flags: [.workers: "8"], environment: ["CAPSTAN_WORKERS": "many"], endpoints: .embeddedWhenAbsent)
    #expect(configuration.workers == 8)
    #expect {
      _ = try RunConfiguration(flags: [.workers: "many"], environment: ["CAPSTAN_WORKERS": "8"], endpoints: .embeddedWhenAbsent)
    } throws: { error in
      (error as? RunConfigurationError)?.source == .flag
    }
  }

  @Test("an empty environment variable counts as absent; an empty flag is invalid")
  func emptyValues() throws {
    let configuration = try RunConfiguration(
      environment: ["SERVICE_NAME": "", "CAPSTAN_ENDPOINTS": "", "CAPSTAN_WORKERS": ""], endpoints: .embeddedWhenAbsent)
    #expect(configuration == RunConfiguration())
    #expect {
      _ = try RunConfiguration(flags: [.serviceName: ""], environment: [:], endpoints: .embeddedWhenAbsent)
    } throws: { error in
      "\(error)".hasPrefix(#"invalid --service-name "": "#)
    }
  }

  @Test("run needs endpoints or --embedded; demo falls back to the embedded backend")
  func endpointPolicy() throws {
    #expect {
      _ = try RunConfiguration(environment: [:], endpoints: .required)
    } throws: { error in
      guard let error = error as? RunConfigurationError else { return false }
      return error.setting == .endpoints && error.value == nil
        && error.description.hasPrefix("missing --endpoints / CAPSTAN_ENDPOINTS: ")
    }
    #expect(try RunConfiguration(embedded: true, environment: [:], endpoints: .required).backend == .embedded)
    #expect(try RunConfiguration(environment: [:], endpoints: .embeddedWhenAbsent).backend == .embedded)
    // --embedded overrides CAPSTAN_ENDPOINTS (flag over environment) ...
    let embedded = try RunConfiguration(embedded: true, environment: ["CAPSTAN_ENDPOINTS": "h:1"], endpoints: .required)
    #expect(embedded.backend == .embedded)
    // ... but contradicts --endpoints.
    #expect {
      _ = try RunConfiguration(flags: [.endpoints: "h:1"], embedded: true, environment: [:], endpoints: .required)
    } throws: { error in
      (error as? RunConfigurationError)?.description.contains("--embedded and --endpoints") == true
    }
  }

  @Test("the first invalid setting in declaration order is reported")
  func firstErrorWins() {
    #expect {
      _ = try RunConfiguration(
        embedded: true, environment: ["SERVICE_NAME": "BAD", "CAPSTAN_WORKERS": "0"], endpoints: .required)
    } throws: { error in
      (error as? RunConfigurationError)?.setting == .serviceName
    }
  }

  @Test("DNS-1123 labels: generated valid labels pass, and any upper-case letter or '_' fails")
  func dns1123Property() async {
    let body = Gen.letterOrNumber.string(of: 0...40).map { $0.lowercased() }
    await propertyCheck(count: 300, input: Gen.lowercaseLetter, body, Gen.int(in: 0...40)) { first, rest, cut in
      let label = String(first) + rest.filter { $0.isASCII }
      #expect(RunConfiguration.isDNS1123Label(label) == (label.count <= 63))
      let index = label.index(label.startIndex, offsetBy: min(cut, label.count - 1))
      let withHyphenInside = label.count >= 2 && index != label.startIndex
        ? String(label[..<index]) + "-" + String(label[label.index(after: index)...]) + "z" : label
      #expect(RunConfiguration.isDNS1123Label(withHyphenInside) == (withHyphenInside.count <= 63))
      #expect(!RunConfiguration.isDNS1123Label(label.uppercased() + "A"))
      #expect(!RunConfiguration.isDNS1123Label(label + "_x"))
    }
  }
}
