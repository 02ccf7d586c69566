public import Metrics
import Synchronization

/// A `MetricsFactory` that keeps what the demo reports: counter totals, the last value of each
/// gauge, and every sample of the timers it is asked to sample (the reconcile time by default).
///
/// Pass it as the manager's `metricsFactory`; the informers, caches, work queue and controller
/// then count into it, and ``DemoScenario`` reads reconciles, latencies, events and rejections
/// from it. Metrics are told apart by label and dimensions.
public final class DemoMetrics: MetricsFactory, Sendable {
  /// The label of the reconcile timer (sampled by default).
  public static let reconcileTime = "controller_runtime_reconcile_time_seconds"

  private struct Storage {
    var counters: [String: [MetricKey: Int64]] = [:]
    var gauges: [String: [MetricKey: Double]] = [:]
    var samples: [String: [Int64]] = [:]
  }

  private struct MetricKey: Hashable {
    var dimensions: [String]
    init(_ dimensions: [(String, String)]) { self.dimensions = dimensions.map { "\($0.0)=\($0.1)" } }
  }

  private let storage = Mutex(Storage())
  private let sampledTimers: Set<String>
  private let sampleLimit: Int

  /// A recorder that samples the timers labelled `sampledTimers`, keeping at most `sampleLimit`
  /// samples of each (later samples are dropped).
  public init(sampledTimers: Set<String> = [DemoMetrics.reconcileTime], sampleLimit: Int = 1_000_000) {
    self.sampledTimers = sampledTimers
    self.sampleLimit = sampleLimit
  }

  // MARK: reading

  /// The sum of every counter labelled `label` whose dimensions include `matching`.
  public func counterTotal(_ label: String, matching: [(String, String)] = []) -> Int64 {
    let wanted = MetricKey(matching).dimensions
    return self.storage.withLock { storage in
      (storage.counters[label] ?? [:]).reduce(0) { total, entry in
        wanted.allSatisfy(entry.key.dimensions.contains) ? total + entry.value : total
      }
    }
  }

  /// The sum of the last values of every gauge or recorder labelled `label` whose dimensions
  /// include `matching`; nil if none was made.
  public func gaugeTotal(_ label: String, matching: [(String, String)] = []) -> Double? {
    let wanted = MetricKey(matching).dimensions
    return self.storage.withLock { storage in
      guard let gauges = storage.gauges[label] else { return nil }
      return gauges.reduce(0) { total, entry in
        wanted.allSatisfy(entry.key.dimensions.contains) ? total + entry.value : total
      }
    }
  }

  /// The samples (nanoseconds) of the sampled timer `label`, in recording order.
  public func samples(_ label: String) -> [Int64] { self.storage.withLock { $0.samples[label] ?? [] } }

  // MARK: MetricsFactory

  /// A counter adding into the totals.
  public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
    Handler(owner: self, label: label, key: MetricKey(dimensions), kind: .counter)
  }

  /// A recorder (or gauge) keeping its last value.
  public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
    Handler(owner: self, label: label, key: MetricKey(dimensions), kind: .gauge)
  }

  /// A timer whose samples are kept if its label is sampled, dropped otherwise.
  public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
    Handler(owner: self, label: label, key: MetricKey(dimensions), kind: self.sampledTimers.contains(label) ? .sampled : .ignored)
  }

  /// Nothing to release.
  public func destroyCounter(_ handler: any CounterHandler) {}
  /// Nothing to release.
  public func destroyRecorder(_ handler: any RecorderHandler) {}
  /// Nothing to release.
  public func destroyTimer(_ handler: any TimerHandler) {}

  private final class Handler: CounterHandler, RecorderHandler, TimerHandler, Sendable {
    enum Kind { case counter, gauge, sampled, ignored }
    let owner: DemoMetrics
    let label: String
    let key: MetricKey
    let kind: Kind

    init(owner: DemoMetrics, label: String, key: MetricKey, kind: Kind) {
      self.owner = owner
      self.label = label
      self.key = key
      self.kind = kind
      if kind == .counter {
        owner.storage.withLock { storage in
          if storage.counters[label]?[key] == nil { storage.counters[label, default: [:]][key] = 0 }
        }
      }
    }

    func increment(by amount: Int64) {
      self.owner.storage.withLock { $0.counters[self.label, default: [:]][self.key, default: 0] += amount }
    }

    func reset() {
      self.owner.storage.withLock { $0.counters[self.label, default: [:]][self.key] = 0 }
    }

    func record(_ value: Int64) { self.record(Double(value)) }

    func record(_ value: Double) {
      self.owner.storage.withLock { $0.gauges[self.label, default: [:]][self.key] = value }
    }

    func recordNanoseconds(_ duration: Int64) {
      guard self.kind == .sampled else { return }
      let limit = self.owner.sampleLimit
      self.owner.storage.withLock { storage in
        if storage.samples[self.label, default: []].count < limit {
          storage.samples[self.label, default: []].append(duration)
        }
      }
    }
  }
}
