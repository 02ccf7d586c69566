import CapstanEtcd
import CapstanTesting
import CapstanTestSupport
import Foundation
import Logging
import Testing

/// Client configuration for a test server (TLS files included when the server uses TLS).
func clientConfiguration(for servers: [EtcdTestServer], credentials: EtcdCredentials? = nil) throws -> EtcdClientConfiguration {
  var configuration = EtcdClientConfiguration(endpoints: try servers.map { try EtcdEndpoint(parsing: $0.endpoint) })
  configuration.credentials = credentials
  configuration.dialTimeout = .seconds(5)
  configuration.streamBackoff = EtcdBackoff(initial: .milliseconds(50), maximum: .seconds(1))
  if let tls = servers.first?.tls {
    configuration.tls = EtcdTLSConfiguration(
      caFile: tls.caFile.path,
      clientCertificateFile: tls.requireClientCertificates ? tls.clientCertFile.path : nil,
      clientKeyFile: tls.requireClientCertificates ? tls.clientKeyFile.path : nil)
  }
  return configuration
}

/// Runs `body` with a client connected to the suite's server.
func withSuiteClient<Result: Sendable>(
  credentials: EtcdCredentials? = nil, metrics: RecordingMetrics? = nil, _ body: (EtcdClient) async throws -> Result
) async throws -> Result {
  let server = try suiteServer()
  var configuration = try clientConfiguration(for: [server], credentials: credentials)
  if let metrics { configuration.metricsFactory = metrics }
  return try await withEtcdClient(configuration, logger: testLogger, body)
}

let testLogger: Logger = {
  var logger = Logger(label: "capstan.test")
  logger.logLevel = .error
  return logger
}()

/// Collects `count` non-progress events from a watch (or fails after `timeout`).
func collect(_ count: Int, from watch: EtcdWatch, timeout: Duration = .seconds(20)) async throws -> [WatchEvent] {
  try await firstElements(count, of: watch, where: { if case .progress = $0 { false } else { true } }, timeout: timeout, what: "watch events")
}
