/// Where a demo run is.
public enum DemoPhase: Sendable, Hashable, CustomStringConvertible {
  /// Waiting for the manager's informers to sync.
  case starting
  /// Creating the PodSets.
  case creating
  /// Waiting for the first convergence.
  case converging
  /// Disturbing the world: round `round` of `of`.
  case disturbing(round: Int, of: Int)
  /// Waiting for convergence after the last disturbance.
  case settling
  /// Finished.
  case done

  /// `creating`, `disturbing 2/3`, …
  public var description: String {
    switch self {
    case .starting: "starting"
    case .creating: "creating"
    case .converging: "converging"
    case .disturbing(let round, let of): "disturbing \(round)/\(of)"
    case .settling: "settling"
    case .done: "done"
    }
  }
}

/// A progress report, sent about twice a second while the demo runs.
public struct DemoProgress: Sendable, Hashable, CustomStringConvertible {
  /// What the demo is doing.
  public var phase: DemoPhase
  /// Time since the run started.
  public var elapsed: Duration
  /// PodSets in the controller's cache.
  public var podSets: Int
  /// Pods in the controller's cache.
  public var pods: Int
  /// Reconciles finished so far (every result).
  public var reconciles: Int64
  /// Keys waiting in the controller's work queue (`workqueue_depth`), if known.
  public var queueDepth: Int?

  /// A one-line rendering: `[ 3.5s] disturbing 1/3  sets 200  pods 1000  reconciles 1530  queue 12`.
  public var description: String {
    let seconds = Double(self.elapsed.components.seconds) + Double(self.elapsed.components.attoseconds) / 1e18
    var line = "[\(formatFixed(seconds, digits: 1))s] \(self.phase)  sets \(self.podSets)  pods \(self.pods)"
    line += "  reconciles \(self.reconciles)"
    if let queueDepth = self.queueDepth { line += "  queue \(queueDepth)" }
    return line
  }
}

/// `value` with `digits` decimals (no Foundation formatting needed).
func formatFixed(_ value: Double, digits: Int) -> String {
  guard value.isFinite else { return "\(value)" }
  var scale = 1.0
  for _ in 0..<digits { scale *= 10 }
  let scaled = (abs(value) * scale).rounded()
  let whole = Int64(scaled / scale)
  let fraction = Int64(scaled) - whole * Int64(scale)
  let sign = value < 0 && scaled != 0 ? "-" : ""
  guard digits > 0 else { return "\(sign)\(whole)" }
  let fractionText = String(fraction)
  return "\(sign)\(whole).\(String(repeating: "0", count: digits - fractionText.count))\(fractionText)"
}
