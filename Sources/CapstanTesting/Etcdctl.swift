import Foundation

/// Runs `etcdctl` (API v3) against test servers; shared by ``EtcdTestServer`` and
/// ``EtcdTestCluster``.
enum Etcdctl {
  /// Finds `etcdctl`: `$ETCDCTL_BINARY`, then `PATH`, then next to `etcd`, then /usr/bin.
  static func locate(besides etcd: URL) throws -> URL {
    let sibling = etcd.deletingLastPathComponent().appendingPathComponent("etcdctl").path
    guard
      let url = ProcessRunner.findExecutable(
        named: "etcdctl",
        environmentVariable: "ETCDCTL_BINARY",
        fallbacks: [sibling, "/usr/bin/etcdctl"]
      )
    else {
      throw EtcdTestServerError(
        .executableNotFound,
        """
        the etcdctl binary was not found (looked in $ETCDCTL_BINARY, PATH, \(sibling), \
        /usr/bin/etcdctl). Install it: apt-get install -y etcd-client (or etcd-server), \
        or run ./scripts/test which installs it.
        """
      )
    }
    return url
  }

  /// The full argument list: endpoints and TLS flags, then `arguments`.
  static func arguments(endpoints: [String], tls: EtcdTestTLS?, _ arguments: [String]) -> [String] {
    var result = ["--endpoints=\(endpoints.joined(separator: ","))"]
    if let tls {
      result += [
        "--cacert=\(tls.caFile.path)",
        "--cert=\(tls.clientCertFile.path)",
        "--key=\(tls.clientKeyFile.path)",
      ]
    }
    return result + arguments
  }

  /// The environment for etcdctl: ours without `ETCDCTL_*` (which could shadow flags),
  /// plus `ETCDCTL_API=3`.
  static var environment: [String: String] {
    ProcessRunner.environment(removingPrefixes: ["ETCDCTL_"], adding: ["ETCDCTL_API": "3"])
  }

  /// Runs etcdctl and returns its standard output; throws with its stderr on failure.
  static func run(
    _ etcdctl: URL,
    endpoints: [String],
    tls: EtcdTestTLS?,
    _ arguments: [String],
    timeout: Duration = .seconds(30)
  ) throws -> String {
    try ProcessRunner.runChecked(
      etcdctl,
      arguments: self.arguments(endpoints: endpoints, tls: tls, arguments),
      environment: environment,
      timeout: timeout
    )
  }
}
