/// An error raised while launching, checking or controlling a test etcd process.
///
/// Tests are expected to *fail* with this error (for example when the `etcd` binary is not
/// installed); nothing in this module skips a test.
public struct EtcdTestServerError: Error, CustomStringConvertible, Sendable {
  /// What went wrong.
  public enum Kind: Sendable, Equatable, CustomStringConvertible {
    /// The `etcd` binary could not be found.
    case etcdNotFound
    /// A helper executable (`etcdctl`, `openssl`) could not be found.
    case executableNotFound
    /// A process could not be launched, or exited while starting up.
    case launchFailed
    /// etcd exited at start-up because one of its ports was already taken.
    case addressInUse
    /// etcd did not become healthy in time.
    case notHealthy
    /// A command (`etcdctl`, `openssl`) exited with a non-zero status.
    case commandFailed
    /// The operation is not possible in the current state (for example after `stop()`).
    case invalidState
    /// An argument was out of range.
    case invalidArgument

    /// A short name for the kind.
    public var description: String {
      switch self {
      case .etcdNotFound: "etcd not found"
      case .executableNotFound: "executable not found"
      case .launchFailed: "launch failed"
      case .addressInUse: "address in use"
      case .notHealthy: "not healthy"
      case .commandFailed: "command failed"
      case .invalidState: "invalid state"
      case .invalidArgument: "invalid argument"
      }
    }
  }

  /// What went wrong.
  public let kind: Kind
  /// A human-readable explanation, including log or stderr excerpts where useful.
  public let message: String

  /// Creates an error of the given kind with an explanation.
  public init(_ kind: Kind, _ message: String) {
    self.kind = kind
    self.message = message
  }

  /// The explanation, prefixed with `EtcdTestServer:`.
  public var description: String { "EtcdTestServer: \(message)" }

  /// The error thrown when no `etcd` binary can be found.
  static func etcdNotFound() -> EtcdTestServerError {
    EtcdTestServerError(
      .etcdNotFound,
      """
      the etcd binary was not found (looked in $ETCD_BINARY, then PATH, then /usr/bin/etcd). \
      To fix: install etcd-server: apt-get install -y etcd-server, or run ./scripts/test which \
      installs it (or set ETCD_BINARY to the path of an etcd binary).
      """
    )
  }
}
