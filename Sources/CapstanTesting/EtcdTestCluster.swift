import Foundation

/// A multi-member etcd cluster on 127.0.0.1 for tests (3 members by default).
///
/// Every member is an ``EtcdTestServer`` launched with a shared `--initial-cluster`.
/// All members are stopped when the cluster is stopped or deinitialized.
public final class EtcdTestCluster: Sendable {
  /// The members, in order.
  public let members: [EtcdTestServer]

  private init(members: [EtcdTestServer]) {
    self.members = members
  }

  deinit {
    stop()
  }

  /// Launches `members` etcd processes forming one cluster and waits (up to 20 s) until every
  /// member is healthy, which also means the cluster has a leader.
  ///
  /// - Parameters:
  ///   - members: The number of members (at least 1).
  ///   - name: Prefix of the member names (`name-0`, `name-1`, …).
  ///   - extraArguments: Extra etcd flags for every member.
  ///   - tls: Serve the client URLs over https with these certificates (peers stay on http).
  /// - Throws: ``EtcdTestServerError`` (`.etcdNotFound` when etcd is not installed).
  public static func start(
    members: Int = 3,
    name: String = "capstan-cluster",
    extraArguments: [String] = [],
    tls: EtcdTestTLS? = nil
  ) async throws -> EtcdTestCluster {
    guard members >= 1 else {
      throw EtcdTestServerError(.invalidArgument, "a cluster needs at least one member, not \(members)")
    }
    let servers = try await EtcdTestServer.launchGroup(
      names: (0..<members).map { "\(name)-\($0)" },
      extraArguments: extraArguments,
      tls: tls,
      clusterToken: "\(name)-\(UUID().uuidString)"
    )
    return EtcdTestCluster(members: servers)
  }

  /// `127.0.0.1:PORT` of every member's client listener.
  public var endpoints: [String] { members.map(\.endpoint) }

  /// The client URL of every member.
  public var clientURLs: [String] { members.map(\.clientURL) }

  /// The member at `index`.
  public subscript(index: Int) -> EtcdTestServer { members[index] }

  /// Stops member `index` gracefully (SIGTERM), keeping its data so ``restartMember(_:)`` works.
  public func stopMember(_ index: Int) {
    members[index].stop(removingData: false)
  }

  /// Kills member `index` with SIGKILL, keeping its data so ``restartMember(_:)`` works.
  public func killMember(_ index: Int) {
    members[index].kill()
  }

  /// Starts member `index` again on the same ports with the same data and waits until it is
  /// healthy.
  public func restartMember(_ index: Int) async throws {
    try await members[index].restart()
  }

  /// Stops every member and removes all data. Idempotent.
  public func stop() {
    EtcdTestServer.stopAll(members)
  }

  /// Runs `etcdctl` against the client URLs of the members that are currently running and
  /// returns its standard output.
  ///
  /// - Throws: ``EtcdTestServerError`` with etcdctl's stderr if it exits non-zero.
  public func etcdctl(_ arguments: String...) throws -> String {
    try etcdctl(arguments: arguments)
  }

  /// Array form of ``etcdctl(_:)``.
  public func etcdctl(arguments: [String]) throws -> String {
    let running = members.filter(\.isRunning)
    guard let first = running.first else {
      throw EtcdTestServerError(.invalidState, "no member of the cluster is running")
    }
    return try first.etcdctl(endpoints: running.map(\.clientURL), arguments: arguments)
  }
}
