import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Everything needed to (re)launch one etcd member. Internal: shared by
/// ``EtcdTestServer`` and ``EtcdTestCluster``.
struct EtcdLaunchConfiguration: Sendable {
  var name: String
  var clientPort: Int
  var peerPort: Int
  /// The `--initial-cluster` value (all members, `name=peerURL` joined by commas).
  var initialCluster: String
  var clusterToken: String
  var extraArguments: [String]
  var tls: EtcdTestTLS?
  /// Temporary directory holding the data directory and the logs; removed on stop.
  var baseDirectory: URL

  var clientURL: String { "\(tls == nil ? "http" : "https")://127.0.0.1:\(clientPort)" }
  var peerURL: String { "http://127.0.0.1:\(peerPort)" }
  var dataDirectory: URL { baseDirectory.appendingPathComponent("data", isDirectory: true) }
  var logFile: URL { baseDirectory.appendingPathComponent("etcd.log") }
  /// etcd's own stdout/stderr (flag errors and anything logged before zap is set up).
  var consoleFile: URL { baseDirectory.appendingPathComponent("etcd-console.log") }

  /// Creates a configuration with a fresh temporary directory.
  static func make(
    name: String,
    clientPort: Int,
    peerPort: Int,
    initialCluster: String,
    clusterToken: String,
    extraArguments: [String],
    tls: EtcdTestTLS?
  ) throws -> EtcdLaunchConfiguration {
    let safeName = String(name.map { $0.isLetter || $0.isNumber || $0 == "-" ? $0 : "_" })
    let base = FileManager.default.temporaryDirectory
      .appendingPathComponent("capstan-etcd-\(safeName)-\(UUID().uuidString)", isDirectory: true)
    try FileManager.default.createDirectory(at: base, withIntermediateDirectories: true)
    return EtcdLaunchConfiguration(
      name: name, clientPort: clientPort, peerPort: peerPort, initialCluster: initialCluster,
      clusterToken: clusterToken, extraArguments: extraArguments, tls: tls, baseDirectory: base)
  }

  /// The etcd command line.
  var arguments: [String] {
    var arguments = [
      "--name", name,
      "--data-dir", dataDirectory.path,
      "--listen-client-urls", clientURL,
      "--advertise-client-urls", clientURL,
      "--listen-peer-urls", peerURL,
      "--initial-advertise-peer-urls", peerURL,
      "--initial-cluster", initialCluster,
      "--initial-cluster-state", "new",
      "--initial-cluster-token", clusterToken,
      "--logger", "zap",
      "--log-outputs", logFile.path,
    ]
    if let tls {
      arguments += ["--cert-file", tls.serverCertFile.path, "--key-file", tls.serverKeyFile.path]
      // etcd demands a client certificate whenever --trusted-ca-file is set, so both flags
      // go together.
      if tls.requireClientCertificates {
        arguments += ["--client-cert-auth", "--trusted-ca-file", tls.caFile.path]
      }
    }
    return arguments + extraArguments
  }
}

/// One real etcd process on 127.0.0.1 for tests, with its own temporary data directory.
///
/// Start it with ``start(name:extraArguments:tls:)``. The process is stopped (SIGTERM, then
/// SIGKILL) by ``stop(removingData:)`` and, as a safety net, when the object is deinitialized,
/// so no etcd is left behind.
public final class EtcdTestServer: Sendable {
  /// The member name (`--name`).
  public let name: String
  /// `127.0.0.1:PORT` of the client listener.
  public let endpoint: String
  /// The client URL, `http://127.0.0.1:PORT` (or `https://` with TLS).
  public let clientURL: String
  /// The peer URL, `http://127.0.0.1:PEERPORT`.
  public let peerURL: String
  /// Always `127.0.0.1`.
  public let host: String = "127.0.0.1"
  /// The client port.
  public let port: Int
  /// The peer port.
  public let peerPort: Int
  /// The etcd data directory (kept across ``kill()`` and ``restart()``; removed by ``stop(removingData:)``).
  public let dataDirectory: URL
  /// etcd's log file (zap JSON lines). Removed with the data directory on ``stop(removingData:)``.
  public let logFile: URL
  /// The TLS material the client listener uses, if any.
  public let tls: EtcdTestTLS?

  let configuration: EtcdLaunchConfiguration
  private let etcdBinary: URL
  private let etcdctlBinary: URL
  private let state: Mutex<State>

  private struct State {
    /// The current (or last) etcd process.
    var process: Process?
    /// Set by a final `stop()`: no restart possible, directory removed.
    var finished = false
  }

  /// How long ``start(name:extraArguments:tls:)`` and ``restart()`` wait for health.
  static let healthTimeout: Duration = .seconds(20)

  init(configuration: EtcdLaunchConfiguration, etcd: URL, etcdctl: URL) {
    self.configuration = configuration
    self.etcdBinary = etcd
    self.etcdctlBinary = etcdctl
    self.name = configuration.name
    self.endpoint = "127.0.0.1:\(configuration.clientPort)"
    self.clientURL = configuration.clientURL
    self.peerURL = configuration.peerURL
    self.port = configuration.clientPort
    self.peerPort = configuration.peerPort
    self.dataDirectory = configuration.dataDirectory
    self.logFile = configuration.logFile
    self.tls = configuration.tls
    self.state = Mutex(State())
  }

  deinit {
    stop()
  }

  // MARK: - Starting

  /// Launches one etcd on free 127.0.0.1 ports with a new temporary data directory and waits
  /// (up to 20 s) until it answers `etcdctl endpoint health`.
  ///
  /// If etcd fails because a chosen port was taken in the meantime, new ports are picked and
  /// the launch is retried (3 attempts in all).
  ///
  /// - Parameters:
  ///   - name: The member name.
  ///   - extraArguments: Extra etcd flags, appended last (so they win over the defaults).
  ///   - tls: Serve the client URL over https with these certificates.
  /// - Throws: ``EtcdTestServerError`` (`.etcdNotFound` when etcd is not installed).
  public static func start(
    name: String = "capstan-test",
    extraArguments: [String] = [],
    tls: EtcdTestTLS? = nil
  ) async throws -> EtcdTestServer {
    let servers = try await launchGroup(
      names: [name], extraArguments: extraArguments, tls: tls,
      clusterToken: "\(name)-\(UUID().uuidString)")
    return servers[0]
  }

  /// Creates servers forming one cluster (a shared `--initial-cluster`), launches them all
  /// and waits until every member is healthy. Retries with new ports on "address in use".
  static func launchGroup(
    names: [String],
    extraArguments: [String],
    tls: EtcdTestTLS?,
    clusterToken: String,
    attempts: Int = 3
  ) async throws -> [EtcdTestServer] {
    let etcd = try locateEtcd()
    let etcdctl = try Etcdctl.locate(besides: etcd)
    var attempt = 1
    while true {
      let ports = try LoopbackPorts.allocate(2 * names.count)
      let initialCluster = names.indices
        .map { "\(names[$0])=http://127.0.0.1:\(ports[2 * $0 + 1])" }
        .joined(separator: ",")
      var servers: [EtcdTestServer] = []
      do {
        for (index, name) in names.enumerated() {
          let configuration = try EtcdLaunchConfiguration.make(
            name: name, clientPort: ports[2 * index], peerPort: ports[2 * index + 1],
            initialCluster: initialCluster, clusterToken: clusterToken,
            extraArguments: extraArguments, tls: tls)
          servers.append(EtcdTestServer(configuration: configuration, etcd: etcd, etcdctl: etcdctl))
        }
        for server in servers { try server.launch() }
        try await waitUntilHealthy(servers, timeout: healthTimeout)
        return servers
      } catch let error as EtcdTestServerError where error.kind == .addressInUse && attempt < attempts {
        stopAll(servers)
        attempt += 1
      } catch {
        stopAll(servers)
        throw error
      }
    }
  }

  /// Finds the etcd binary: `$ETCD_BINARY`, then `PATH`, then `/usr/bin/etcd`.
  static func locateEtcd() throws -> URL {
    if let configured = ProcessInfo.processInfo.environment["ETCD_BINARY"], !configured.isEmpty,
      !FileManager.default.isExecutableFile(atPath: configured)
    {
      throw EtcdTestServerError(
        .etcdNotFound,
        "ETCD_BINARY is set to \(configured), which is not an executable file. Unset it or point it at etcd; to install etcd: apt-get install -y etcd-server, or run ./scripts/test which installs it."
      )
    }
    guard
      let url = ProcessRunner.findExecutable(
        named: "etcd", environmentVariable: "ETCD_BINARY", fallbacks: ["/usr/bin/etcd"])
    else { throw EtcdTestServerError.etcdNotFound() }
    return url
  }

  /// Stops (and removes) all `servers`, one after the other.
  ///
  /// One at a time on purpose: a leader that gets SIGTERM hands leadership to a connected
  /// follower first, which is quick while the others are up but waits for a timeout (several
  /// seconds) when they are all shutting down at once.
  static func stopAll(_ servers: [EtcdTestServer], removingData: Bool = true) {
    for server in servers { server.stop(removingData: removingData) }
  }

  /// Waits, concurrently, until every server is healthy.
  static func waitUntilHealthy(_ servers: [EtcdTestServer], timeout: Duration) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
      for server in servers {
        group.addTask { try await server.waitUntilHealthy(timeout: timeout) }
      }
      try await group.waitForAll()
    }
  }

  /// Starts the etcd process (no-op if it is running).
  func launch() throws {
    try state.withLock { state in
      guard !state.finished else {
        throw EtcdTestServerError(.invalidState, "etcd \(name) was stopped and its data removed; it cannot be started again")
      }
      if let process = state.process, process.isRunning { return }
      try FileManager.default.createDirectory(
        at: configuration.baseDirectory, withIntermediateDirectories: true)
      state.process = try ProcessRunner.spawn(
        etcdBinary,
        arguments: configuration.arguments,
        environment: ProcessRunner.environment(removingPrefixes: ["ETCD_"]),
        standardOutput: configuration.consoleFile,
        standardError: configuration.consoleFile
      )
    }
  }

  /// Waits until the etcd process is healthy: its client port accepts connections,
  /// `etcdctl endpoint health` succeeds (a quorum read, so there is a leader) and
  /// `etcdctl member list` names this member's peer URL (so the answer came from our etcd, not
  /// from another process that grabbed the port). Fails early if the process exits.
  func waitUntilHealthy(timeout: Duration) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    var lastProblem = "the client port never accepted a connection"
    while true {
      guard isRunning else { throw exitedError() }
      if LoopbackPorts.isAccepting(port) {
        let health = try runEtcdctl(["--dial-timeout=1s", "--command-timeout=2s", "endpoint", "health"])
        if health.succeeded {
          let members = try runEtcdctl(["--dial-timeout=1s", "--command-timeout=2s", "member", "list"])
          if members.succeeded && members.standardOutput.contains(peerURL) && isRunning { return }
          lastProblem = "etcdctl member list: " + members.standardError + members.standardOutput
        } else {
          lastProblem = "etcdctl endpoint health: " + health.standardError + health.standardOutput
        }
      }
      if clock.now >= deadline {
        guard isRunning else { throw exitedError() }
        throw EtcdTestServerError(
          .notHealthy,
          """
          etcd \(name) at \(clientURL) did not become healthy within \(timeout); last problem: \
          \(lastProblem.trimmingCharacters(in: .whitespacesAndNewlines))
          \(logExcerpt())
          """
        )
      }
      try await Task.sleep(for: .milliseconds(50))
    }
  }

  /// Runs etcdctl against this server without throwing on a non-zero exit.
  private func runEtcdctl(_ arguments: [String]) throws -> CommandResult {
    try ProcessRunner.run(
      etcdctlBinary,
      arguments: Etcdctl.arguments(endpoints: [clientURL], tls: tls, arguments),
      environment: Etcdctl.environment,
      timeout: .seconds(5)
    )
  }

  /// The error for an etcd that exited while we waited for it.
  private func exitedError() -> EtcdTestServerError {
    let excerpt = logExcerpt()
    let status = state.withLock { state in
      state.process.map { "status \($0.terminationStatus)" } ?? "unknown status"
    }
    let kind: EtcdTestServerError.Kind =
      excerpt.contains("address already in use") ? .addressInUse : .launchFailed
    return EtcdTestServerError(
      kind, "etcd \(name) exited during start-up (\(status)); command: \(etcdBinary.path) \(configuration.arguments.joined(separator: " "))\n\(excerpt)")
  }

  /// The tails of etcd's log file and console output, for error messages.
  private func logExcerpt() -> String {
    let log = ProcessRunner.tail(of: configuration.logFile, lines: 30)
    let console = ProcessRunner.tail(of: configuration.consoleFile, lines: 15)
    var parts: [String] = []
    if !console.isEmpty { parts.append("--- etcd output (\(configuration.consoleFile.path)) ---\n\(console)") }
    if !log.isEmpty { parts.append("--- etcd log tail (\(configuration.logFile.path)) ---\n\(log)") }
    return parts.isEmpty ? "(etcd wrote no log)" : parts.joined(separator: "\n")
  }

  // MARK: - Process control

  /// The PID of the current etcd process (or of the last one, after it stopped); 0 if never launched.
  public var pid: Int32 {
    state.withLock { $0.process?.processIdentifier ?? 0 }
  }

  /// Whether the etcd process is currently running.
  public var isRunning: Bool {
    state.withLock { $0.process?.isRunning ?? false }
  }

  /// Stops etcd: SIGTERM, wait up to 10 s, then SIGKILL. Idempotent.
  ///
  /// - Parameter removingData: When `true` (the default) the temporary directory (data and
  ///   logs) is deleted and the server cannot be restarted. When `false` the data is kept and
  ///   ``restart()`` brings the same member back.
  public func stop(removingData: Bool = true) {
    state.withLock { state in
      if let process = state.process {
        ProcessRunner.terminate(process, gracePeriod: .seconds(10))
      }
      if removingData && !state.finished {
        state.finished = true
        try? FileManager.default.removeItem(at: configuration.baseDirectory)
      }
    }
  }

  /// Kills etcd with SIGKILL (a crash) and waits until it is gone. The data directory is kept,
  /// so ``restart()`` can bring it back.
  public func kill() {
    state.withLock { state in
      if let process = state.process {
        ProcessRunner.signal(process, SIGKILL, timeout: .seconds(10))
      }
    }
  }

  /// Starts etcd again on the same ports with the same data directory (stopping it first with
  /// SIGTERM if it is running) and waits until it is healthy.
  ///
  /// - Throws: ``EtcdTestServerError`` if it does not come back, or after a final ``stop(removingData:)``.
  public func restart() async throws {
    stop(removingData: false)
    var attempt = 1
    while true {
      do {
        try launch()
        try await waitUntilHealthy(timeout: Self.healthTimeout)
        return
      } catch let error as EtcdTestServerError where error.kind == .addressInUse && attempt < 3 {
        // The old listener may linger for a moment; the ports must stay the same.
        attempt += 1
        try await Task.sleep(for: .milliseconds(500))
      }
    }
  }

  // MARK: - etcdctl

  /// Runs `etcdctl --endpoints=<clientURL> ARGS…` (API v3, with the client certificate when
  /// TLS is on) and returns its standard output.
  ///
  /// - Throws: ``EtcdTestServerError`` with etcdctl's stderr if it exits non-zero.
  public func etcdctl(_ arguments: String...) throws -> String {
    try etcdctl(arguments: arguments)
  }

  /// Array form of ``etcdctl(_:)``.
  public func etcdctl(arguments: [String]) throws -> String {
    try etcdctl(endpoints: [clientURL], arguments: arguments)
  }

  /// Runs etcdctl with this server's binary and TLS settings against `endpoints`.
  func etcdctl(endpoints: [String], arguments: [String]) throws -> String {
    try Etcdctl.run(etcdctlBinary, endpoints: endpoints, tls: tls, arguments)
  }
}

/// Starts an ``EtcdTestServer``, runs `body` with it, and always stops it (and removes its
/// data) afterwards, whether `body` returns or throws.
///
/// - Parameters:
///   - name: The member name.
///   - extraArguments: Extra etcd flags.
///   - tls: Serve the client URL over https with these certificates.
///   - body: The code using the server.
public func withEtcdTestServer<T>(
  name: String = "capstan-test",
  extraArguments: [String] = [],
  tls: EtcdTestTLS? = nil,
  isolation: isolated (any Actor)? = #isolation,
  _ body: (EtcdTestServer) async throws -> T
) async throws -> T {
  let server = try await EtcdTestServer.start(name: name, extraArguments: extraArguments, tls: tls)
  defer { server.stop() }
  return try await body(server)
}
