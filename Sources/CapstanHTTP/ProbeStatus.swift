/// The answer of a health or readiness check: ``ok``, or ``failing(_:)`` with one short reason
/// per failing part (an unsynced informer, a failed service).
public enum ProbeStatus: Sendable, Equatable {
  /// Everything checked is fine: the endpoint answers 200 `ok`.
  case ok
  /// Something is not fine yet: the endpoint answers 503 with one reason per line.
  case failing([String])

  /// `true` for ``ok``.
  public var isOK: Bool {
    if case .ok = self { return true }
    return false
  }

  /// The plain-text body an endpoint answers with: `ok`, or each reason on its own line.
  public var body: String {
    switch self {
    case .ok: "ok\n"
    case .failing(let reasons): reasons.isEmpty ? "not ok\n" : reasons.map { $0 + "\n" }.joined()
    }
  }
}

/// Where the HTTP server reads `/healthz` and `/readyz` from. The executable adapts a
/// `Manager`; tests pass closures, so the server needs no manager to be tested.
public struct ProbeChecks: Sendable {
  /// Answers `/healthz`: is the process running and has nothing failed?
  public var health: @Sendable () -> ProbeStatus
  /// Answers `/readyz`: has every informer synced?
  public var readiness: @Sendable () -> ProbeStatus

  /// Checks given as closures, called on every request (keep them cheap and non-blocking).
  public init(
    health: @escaping @Sendable () -> ProbeStatus,
    readiness: @escaping @Sendable () -> ProbeStatus
  ) {
    self.health = health
    self.readiness = readiness
  }

  /// Always healthy and ready: for a process with nothing to wait for.
  public static var alwaysOK: ProbeChecks { ProbeChecks(health: { .ok }, readiness: { .ok }) }
}
