public import CapstanTesting
public import Testing

/// The etcd server of the suite being run, set by ``EtcdServerTrait``.
public enum SuiteEtcd {
  @TaskLocal public static var server: EtcdTestServer?
}

/// Starts one real etcd for a whole suite (tests use distinct key prefixes) and stops it by PID
/// when the suite ends. A missing etcd binary fails the suite with a clear message.
public struct EtcdServerTrait: SuiteTrait, TestScoping {
  public var name: String
  public var extraArguments: [String] = []
  public var tls: Bool = false

  public var isRecursive: Bool { false }

  public func provideScope(
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
  public static func etcdServer(_ name: String, extraArguments: [String] = [], tls: Bool = false) -> Self {
    EtcdServerTrait(name: name, extraArguments: extraArguments, tls: tls)
  }
}

/// The suite's server; fails the test if the suite has no ``EtcdServerTrait``.
public func suiteServer() throws -> EtcdTestServer {
  try #require(SuiteEtcd.server, "this suite needs the .etcdServer trait")
}

/// A unique key prefix for one test, so that tests can share a server.
public func uniquePrefix(_ name: String = #function) -> String {
  let clean = name.filter { $0.isLetter || $0.isNumber }
  return "/capstan-test/\(clean)/\(UInt32.random(in: 0...UInt32.max))/"
}

/// A test waited too long for something.
public struct TestTimeout: Error, CustomStringConvertible {
  public var message: String
  public init(message: String) { self.message = message }
  public var description: String { self.message }
}

/// The first `count` elements of `sequence` that `include` accepts, or a ``TestTimeout`` after
/// `timeout` (naming `what` was awaited).
public func firstElements<Elements: AsyncSequence & Sendable>(
  _ count: Int,
  of sequence: Elements,
  where include: @escaping @Sendable (Elements.Element) -> Bool = { _ in true },
  timeout: Duration = .seconds(20),
  what: String = "elements"
) async throws -> [Elements.Element] where Elements.Element: Sendable {
  try await withThrowingTaskGroup(of: [Elements.Element].self) { group in
    group.addTask {
      var elements: [Elements.Element] = []
      guard count > 0 else { return elements }
      for try await element in sequence where include(element) {
        elements.append(element)
        if elements.count == count { break }
      }
      return elements
    }
    group.addTask {
      try await Task.sleep(for: timeout)
      throw TestTimeout(message: "timed out waiting for \(count) \(what)")
    }
    defer { group.cancelAll() }
    return try await group.next()!
  }
}
