/// What a demo run did and whether the world ended up matching every spec.
public struct DemoSummary: Sendable, Hashable {
  /// PodSets stored at the end (junk not counted).
  public var podSets: Int
  /// Pods stored at the end (junk not counted).
  public var pods: Int
  /// The most objects (sets + pods) seen stored at once during the run.
  public var peakObjects: Int
  /// What the disturbance rounds did.
  public var disturbances: DemoDisturbances
  /// Reconciles finished, every result counted (`controller_runtime_reconcile_total`).
  public var reconciles: Int64
  /// Reconciles that threw (`controller_runtime_reconcile_errors_total`); conflicts are not errors.
  public var reconcileErrors: Int64
  /// Median reconcile time, if any reconcile ran.
  public var reconcileP50: Duration?
  /// 99th percentile reconcile time, if any reconcile ran.
  public var reconcileP99: Duration?
  /// From the end of creation to the first convergence (nil if it did not converge).
  public var initialConvergence: Duration?
  /// From the end of the last disturbance to convergence (nil if it did not converge); the
  /// world is listed every 0.1 s (plus the time a check takes), which bounds the resolution.
  public var timeToConverge: Duration?
  /// The whole run.
  public var elapsed: Duration
  /// Informer events delivered over the run (`capstan_informer_events_total`, sets and pods).
  public var informerEvents: Int64
  /// Values the caches refused as malformed (`capstan_cache_decode_errors_total`).
  public var malformedRejected: Int64
  /// Values the caches refused as zero-value objects (`capstan_cache_zero_value_keys_total`).
  public var zeroValueRejected: Int64
  /// `junk-…` keys stored at the end.
  public var junkKeys: Int
  /// Keys outside `junk-…` holding a zero-value object at the end (must be none).
  public var zeroValueKeys: [String]
  /// Growth of the process's peak resident memory over the run divided by ``peakObjects``, when
  /// the platform reports it (Linux `/proc/self/status`) and the peak grew; a rough figure that
  /// includes the embedded backend's store when it runs in-process.
  public var peakMemoryPerObject: Int?
  /// Whether the final fresh list matched every spec and found no zero-value key.
  public var converged: Bool
  /// How the world differed from the specs at the end (empty when converged).
  public var mismatches: [String]

  /// Informer events per second over the run.
  public var informerEventsPerSecond: Double {
    let seconds = Self.seconds(self.elapsed)
    return seconds > 0 ? Double(self.informerEvents) / seconds : 0
  }

  /// The human summary, one line per figure, ending with `converged: yes` or `converged: no`
  /// (after up to 20 mismatches).
  public func lines() -> [String] {
    var lines = [
      "objects: \(self.podSets) podsets, \(self.pods) pods (peak \(self.peakObjects))",
      "disturbances: \(self.disturbances.rounds) rounds, \(self.disturbances.podsDeleted) pods deleted, "
        + "\(self.disturbances.podsMadeUnready) made unready, "
        + "\(self.disturbances.setsScaled) sets scaled, \(self.disturbances.setsDeleted) sets deleted, "
        + "\(self.disturbances.junkWritten) junk objects written",
      "reconciles: \(self.reconciles) (\(self.reconcileErrors) errors)",
      "reconcile latency: p50 \(Self.millisecondsText(self.reconcileP50)), p99 \(Self.millisecondsText(self.reconcileP99))",
      "time to converge: \(Self.secondsText(self.timeToConverge)) after the last disturbance "
        + "(first convergence \(Self.secondsText(self.initialConvergence)))",
      "informer events: \(self.informerEvents) in \(Self.secondsText(self.elapsed)) "
        + "(\(formatFixed(self.informerEventsPerSecond, digits: 0)) events/s)",
      "rejected: \(self.malformedRejected) malformed, \(self.zeroValueRejected) zero-value "
        + "(\(self.junkKeys) junk keys stored)",
      "zero-value keys written: \(self.zeroValueKeys.count)",
      "peak memory per object: " + (self.peakMemoryPerObject.map { "\($0) bytes" } ?? "n/a"),
    ]
    for key in self.zeroValueKeys.prefix(20) { lines.append("  zero-value key: \(key)") }
    for mismatch in self.mismatches.prefix(20) { lines.append("  mismatch: \(mismatch)") }
    if self.mismatches.count > 20 { lines.append("  … and \(self.mismatches.count - 20) more mismatches") }
    lines.append("converged: \(self.converged ? "yes" : "no")")
    return lines
  }

  static func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
  }

  private static func secondsText(_ duration: Duration?) -> String {
    guard let duration else { return "n/a" }
    return "\(formatFixed(Self.seconds(duration), digits: 2))s"
  }

  private static func millisecondsText(_ duration: Duration?) -> String {
    guard let duration else { return "n/a" }
    return "\(formatFixed(Self.seconds(duration) * 1000, digits: 2))ms"
  }

  /// The `quantile` (0…1) of `nanoseconds` by the nearest-rank method; nil when empty.
  static func percentile(_ quantile: Double, of nanoseconds: [Int64]) -> Duration? {
    guard !nanoseconds.isEmpty else { return nil }
    let sorted = nanoseconds.sorted()
    let rank = Int((quantile * Double(sorted.count)).rounded(.up))
    return .nanoseconds(sorted[min(max(rank, 1), sorted.count) - 1])
  }
}

/// What a demo run's disturbance rounds did.
public struct DemoDisturbances: Sendable, Hashable {
  /// Rounds run.
  public var rounds = 0
  /// Pods deleted behind the controller's back.
  public var podsDeleted = 0
  /// Pods marked unready (they stay; their sets' `readyReplicas` must drop).
  public var podsMadeUnready = 0
  /// Sets whose replicas changed (each bumping its generation).
  public var setsScaled = 0
  /// Sets whose deletion was requested (through the finalizer when they had one).
  public var setsDeleted = 0
  /// Malformed and zero-value `junk-…` objects written.
  public var junkWritten = 0

  /// Nothing disturbed yet.
  public init() {}
}
