import Benchmark
import Foundation
import Synchronization

/// One goal of issues 3 and 5: a figure (usually a ratio against a baseline measured in the same
/// run), its bound, and the line that says whether it is met.
///
/// Each iteration records its figure twice: into the benchmark's table (a custom metric, so
/// ordo-one's baselines and comparisons see it) and into this goal's samples. ``report()``, called
/// from the benchmark's teardown, prints one line from the samples' median (or worst value):
///
///     ratio objectcache-get-uid: 0.83 (goal >= 0.5) OK
///     figure ingest-throughput: 251.4 MB/s (goal >= 200) OK
///
/// `./run` greps these lines. A goal that is missed says `NOT MET`; the baselines are never tuned
/// to pass.
public final class Goal: Sendable {
  /// Which side of the bound passes.
  public enum Bound: Sendable {
    case atLeast(Double)
    case atMost(Double)
  }

  /// Which sample the line reports.
  public enum Summary: Sendable {
    /// The median over iterations (for rates).
    case median
    /// The least favourable sample (for peaks, where one bad iteration is the answer).
    case worst
  }

  /// The goal's name in its line, e.g. `objectcache-get-uid`.
  public let name: String
  /// The bound the figure must respect.
  public let bound: Bound
  /// The unit printed after a figure; `nil` for a ratio (printed as a `ratio` line).
  public let unit: String?
  /// The custom metric the figure is recorded as, in units of 1/`scale`.
  public let metric: BenchmarkMetric
  private let scale: Double
  private let summary: Summary
  private let samples = Mutex<[Double]>([])

  /// A ratio goal, recorded as the metric `ratio ×1000` (or `metricName`).
  public static func ratio(
    _ name: String, _ bound: Bound, metricName: String = "ratio ×1000", summary: Summary = .median
  ) -> Goal {
    Goal(name: name, bound: bound, unit: nil, metricName: metricName, scale: 1000, summary: summary)
  }

  /// A goal on an absolute figure in `unit`, recorded as the metric `metricName` (whole units).
  public static func figure(
    _ name: String, _ bound: Bound, unit: String, metricName: String, summary: Summary = .median
  ) -> Goal {
    Goal(name: name, bound: bound, unit: unit, metricName: metricName, scale: 1, summary: summary)
  }

  private init(name: String, bound: Bound, unit: String?, metricName: String, scale: Double, summary: Summary) {
    self.name = name
    self.bound = bound
    self.unit = unit
    self.scale = scale
    self.summary = summary
    let polarity: BenchmarkMetric.Polarity =
      switch bound {
      case .atLeast: .prefersLarger
      case .atMost: .prefersSmaller
      }
    self.metric = .custom(metricName, polarity: polarity, useScalingFactor: false)
  }

  /// Records one iteration's figure in `benchmark`'s table and in this goal's samples.
  public func record(_ value: Double, in benchmark: Benchmark) {
    self.samples.withLock { $0.append(value) }
    benchmark.measurement(self.metric, Int((value * self.scale).rounded()))
  }

  /// The reported figure: the median or the worst sample, `nil` without samples.
  public var summarized: Double? {
    let values = self.samples.withLock { $0 }.sorted()
    guard !values.isEmpty else { return nil }
    switch self.summary {
    case .median:
      let middle = values.count / 2
      return values.count % 2 == 1 ? values[middle] : (values[middle - 1] + values[middle]) / 2
    case .worst:
      switch self.bound {
      case .atLeast: return values.first
      case .atMost: return values.last
      }
    }
  }

  /// Whether the reported figure respects the bound (`false` without samples).
  public var isMet: Bool {
    guard let value = self.summarized else { return false }
    switch self.bound {
    case .atLeast(let minimum): return value >= minimum
    case .atMost(let maximum): return value <= maximum
    }
  }

  /// The goal's line.
  public var line: String {
    let kind = self.unit == nil ? "ratio" : "figure"
    let boundText =
      switch self.bound {
      case .atLeast(let minimum): "goal >= \(String(format: "%g", minimum))"
      case .atMost(let maximum): "goal <= \(String(format: "%g", maximum))"
      }
    guard let value = self.summarized else { return "\(kind) \(self.name): no sample (\(boundText)) NOT MET" }
    let valueText = self.unit.map { "\(Self.format(value)) \($0)" } ?? Self.format(value)
    let samples = self.samples.withLock { $0.count }
    let summaryText = samples > 1 ? ", \(self.summary == .median ? "median" : "worst") of \(samples)" : ""
    return "\(kind) \(self.name): \(valueText) (\(boundText)\(summaryText)) \(self.isMet ? "OK" : "NOT MET")"
  }

  /// Prints the goal's line.
  public func report() {
    emit(self.line)
  }

  static func format(_ value: Double) -> String {
    if value.magnitude >= 100 { return String(format: "%.1f", value) }
    if value.magnitude >= 10 { return String(format: "%.2f", value).replacingOccurrences(of: ".00", with: "") }
    return String(format: "%.2f", value)
  }
}

/// Prints a line to stdout at once (the benchmark process's stdout is a pipe, so it is flushed
/// explicitly to keep lines in order with ordo-one's own output).
public func emit(_ line: String) {
  print(line)
  fflush(nil)
}

/// Keeps a `detail <name>: …` line (the absolute figures behind a goal) until
/// ``printDetails()``: ordo-one silences stdout while iterations run, so details recorded there
/// are printed from the benchmark's teardown.
public func detail(_ name: String, _ text: String) {
  pendingDetails.withLock { $0.append("detail \(name): \(text)") }
}

/// Prints and forgets the details kept by ``detail(_:_:)``.
public func printDetails() {
  let lines = pendingDetails.withLock { lines in
    defer { lines.removeAll() }
    return lines
  }
  lines.forEach(emit)
}

private let pendingDetails = Mutex<[String]>([])

/// Formats `value` with `decimals` digits.
public func fixed(_ value: Double, _ decimals: Int = 2) -> String {
  String(format: "%.\(decimals)f", value)
}
