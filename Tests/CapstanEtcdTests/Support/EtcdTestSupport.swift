import CapstanEtcd
import CapstanTesting
import Foundation
import Logging
import Testing

/// The etcd server (or cluster) of the suite being run, set by ``EtcdServerTrait``.
enum SuiteEtcd {
  @TaskLocal static var server: EtcdTestServer?
}

/// Starts one real etcd for a whole suite (tests use distinct key prefixes) and stops it by PID
/// when the suite ends. A missing etcd binary fails the suite with a clear message.
struct EtcdServerTrait: SuiteTrait, TestScoping {
  var name: String
  var extraArguments: [String] = []
  var tls: Bool = false

  var isRecursive: Bool { false }

  func provideScope(
    for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
  ) async throws {
    let certificates = self.tls ? try EtcdTestTLS.generate() : nil
    defer { try? certificates?.remove() }
    try await withEtcdTestServer(name: self.name, extraArguments: self.extraArguments, tls: certificates) { server in
      try await SuiteEtcd.$server.withValue(server) { try await function() }
    }
  }
}

extension Trait where Self == EtcdServerTrait {
  /// Runs the suite against one shared, freshly started etcd.
  static func etcdServer(_ name: String, extraArguments: [String] = [], tls: Bool = false) -> Self {
    EtcdServerTrait(name: name, extraArguments: extraArguments, tls: tls)
  }
}

/// The suite's server; fails the test if the suite has no ``EtcdServerTrait``.
func suiteServer() throws -> EtcdTestServer {
  try #require(SuiteEtcd.server, "this suite needs the .etcdServer trait")
}

/// A unique key prefix for one test, so that tests can share a server.
func uniquePrefix(_ name: String = #function) -> String {
  let clean = name.filter { $0.isLetter || $0.isNumber }
  return "/capstan-test/\(clean)/\(UInt32.random(in: 0...UInt32.max))/"
}

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
  credentials: EtcdCredentials? = nil, _ body: (EtcdClient) async throws -> Result
) async throws -> Result {
  let server = try suiteServer()
  return try await withEtcdClient(try clientConfiguration(for: [server], credentials: credentials), logger: testLogger, body)
}

let testLogger: Logger = {
  var logger = Logger(label: "capstan.test")
  logger.logLevel = .error
  return logger
}()

/// Collects `count` non-progress events from a watch (or fails after `timeout`).
func collect(_ count: Int, from watch: EtcdWatch, timeout: Duration = .seconds(20)) async throws -> [WatchEvent] {
  try await withThrowingTaskGroup(of: [WatchEvent].self) { group in
    group.addTask {
      var events: [WatchEvent] = []
      for try await event in watch {
        if case .progress = event { continue }
        events.append(event)
        if events.count == count { break }
      }
      return events
    }
    group.addTask {
      try await Task.sleep(for: timeout)
      throw TestTimeout(message: "timed out waiting for \(count) watch events")
    }
    defer { group.cancelAll() }
    return try await group.next()!
  }
}

struct TestTimeout: Error, CustomStringConvertible {
  var message: String
  var description: String { self.message }
}
