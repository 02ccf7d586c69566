import ArgumentParser
import CapstanEtcd
import Foundation
import Logging

/// How a command prints its results.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
  case json, table, simple
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// The options every etcd command shares: where etcd is, how to authenticate, timeouts,
/// the output format and the log level.
struct EtcdOptions: ParsableArguments {
  /// The environment variable that supplies `--endpoints` when the flag is absent.
  static let endpointsEnvironmentVariable = "CAPSTAN_ENDPOINTS"
  /// The endpoint used when neither the flag nor the environment variable is set.
  static let defaultEndpoints = "127.0.0.1:2379"

  @Option(help: "Comma-separated etcd endpoints (host:port). Default: $CAPSTAN_ENDPOINTS or 127.0.0.1:2379.")
  var endpoints: String?

  @Option(help: "Credentials for etcd auth, as name:password.")
  var user: String?

  @Option(help: "PEM file of the CA that signed etcd's server certificate (enables TLS).")
  var cacert: String?

  @Option(help: "PEM client certificate for mutual TLS (with --key).")
  var cert: String?

  @Option(help: "PEM private key of the client certificate.")
  var key: String?

  @Option(name: .customLong("dial-timeout"), help: "Seconds to keep trying to reach an endpoint.")
  var dialTimeoutSeconds: Double = 5

  @Option(name: .customLong("command-timeout"), help: "Seconds a single request may take.")
  var commandTimeoutSeconds: Double = 10

  @Option(name: [.short, .long], help: "Output format: json, table or simple.")
  var output: OutputFormat = .simple

  @Option(name: .customLong("log-level"), help: "Log level of the JSON lines on stderr (default: $LOG_LEVEL or warning).")
  var logLevel: Logger.Level?

  func validate() throws {
    guard self.dialTimeoutSeconds > 0, self.dialTimeoutSeconds.isFinite else {
      throw ValidationError("--dial-timeout must be a positive number of seconds")
    }
    guard self.commandTimeoutSeconds > 0, self.commandTimeoutSeconds.isFinite else {
      throw ValidationError("--command-timeout must be a positive number of seconds")
    }
    if let user, !user.contains(":") {
      throw ValidationError("--user must be name:password")
    }
    if (self.cert == nil) != (self.key == nil) {
      throw ValidationError("--cert and --key must be given together")
    }
  }

  /// The deadline of one request.
  var commandTimeout: Duration { .milliseconds(Int64(self.commandTimeoutSeconds * 1000)) }

  /// The endpoint list from the flag, the environment, or the default.
  var endpointList: String {
    self.endpoints ?? ProcessInfo.processInfo.environment[Self.endpointsEnvironmentVariable] ?? Self.defaultEndpoints
  }

  /// The client configuration these options describe.
  func clientConfiguration() throws(EtcdError) -> EtcdClientConfiguration {
    let endpointList = self.endpointList
    var configuration = EtcdClientConfiguration(
      endpoints: try EtcdEndpoint.parseList(endpointList),
      dialTimeout: .milliseconds(Int64(self.dialTimeoutSeconds * 1000)),
      requestTimeout: self.commandTimeout
    )
    let wantsTLS = endpointList.contains("https://")
    if self.cacert != nil || self.cert != nil || wantsTLS {
      configuration.tls = EtcdTLSConfiguration(
        caFile: self.cacert, clientCertificateFile: self.cert, clientKeyFile: self.key)
    }
    if let user, let colon = user.firstIndex(of: ":") {
      configuration.credentials = EtcdCredentials(
        user: String(user[..<colon]), password: String(user[user.index(after: colon)...]))
    }
    return configuration
  }

  /// Runs `body` with a connected client and shuts the client down afterwards.
  func withClient<Result: Sendable>(_ body: (EtcdClient) async throws -> Result) async throws -> Result {
    let configuration = try self.clientConfiguration()
    return try await withEtcdClient(configuration, logger: Logger(label: "capstan.etcd"), body)
  }
}

/// A command that talks to etcd and therefore carries the shared ``EtcdOptions``.
protocol EtcdCommand: AsyncParsableCommand {
  /// The shared connection, output and logging options.
  var etcd: EtcdOptions { get }
}

/// An etcd lease ID, written in hexadecimal like etcdctl prints it (`694da21336db3e0c`).
struct LeaseID: ExpressibleByArgument, Sendable, Hashable, CustomStringConvertible {
  /// The ID as etcd stores it.
  let rawValue: Int64

  init(rawValue: Int64) { self.rawValue = rawValue }

  init?(argument: String) {
    var digits = Substring(argument)
    if digits.hasPrefix("0x") || digits.hasPrefix("0X") { digits = digits.dropFirst(2) }
    guard !digits.isEmpty, digits.count <= 16, let bits = UInt64(digits, radix: 16) else { return nil }
    self.rawValue = Int64(bitPattern: bits)
  }

  /// 16 lower-case hex digits, as etcdctl's `%016x`.
  var description: String {
    let hex = String(UInt64(bitPattern: self.rawValue), radix: 16)
    return String(repeating: "0", count: max(0, 16 - hex.count)) + hex
  }
}
