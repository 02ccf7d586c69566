import Metrics
import Synchronization

/// A metrics factory that records counter totals and last recorded values, by label and
/// dimensions, for one test (no global bootstrap).
public final class RecordingMetrics: MetricsFactory {
  private final class Handler: CounterHandler, RecorderHandler, TimerHandler, Sendable {
    let name: String
    let store: RecordingMetrics
    init(name: String, store: RecordingMetrics) {
      self.name = name
      self.store = store
    }
    func increment(by amount: Int64) { self.store.values.withLock { $0[self.name, default: 0] += Double(amount) } }
    func reset() { self.store.values.withLock { $0[self.name] = 0 } }
    func record(_ value: Int64) { self.store.values.withLock { $0[self.name] = Double(value) } }
    func record(_ value: Double) { self.store.values.withLock { $0[self.name] = value } }
    func recordNanoseconds(_ duration: Int64) { self.record(duration) }
  }

  fileprivate let values = Mutex<[String: Double]>([:])

  /// A factory that has recorded nothing yet.
  public init() {}

  private static func name(_ label: String, _ dimensions: [(String, String)]) -> String {
    ([label] + dimensions.map { "\($0.0)=\($0.1)" }).joined(separator: ",")
  }

  /// The counter total or last recorded value of `label` with `dimensions`; nil if never made.
  public func value(_ label: String, _ dimensions: [(String, String)]) -> Double? {
    self.values.withLock { $0[Self.name(label, dimensions)] }
  }

  private func make(_ label: String, _ dimensions: [(String, String)]) -> Handler {
    let name = Self.name(label, dimensions)
    self.values.withLock { values in if values[name] == nil { values[name] = 0 } }
    return Handler(name: name, store: self)
  }

  public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler { self.make(label, dimensions) }
  public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
    self.make(label, dimensions)
  }
  public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler { self.make(label, dimensions) }
  public func destroyCounter(_ handler: any CounterHandler) {}
  public func destroyRecorder(_ handler: any RecorderHandler) {}
  public func destroyTimer(_ handler: any TimerHandler) {}
}

