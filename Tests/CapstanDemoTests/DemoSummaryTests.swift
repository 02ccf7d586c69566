@testable import CapstanDemo
import Testing

@Suite("Demo summary")
struct DemoSummaryTests {
  @Test func summaryLinesEndWithTheVerdict() {
    var summary = DemoSummary(
      podSets: 2, pods: 6, peakObjects: 8, disturbances: DemoDisturbances(), reconciles: 12, reconcileErrors: 0, reconcileP50: .milliseconds(2),
      reconcileP99: .milliseconds(9), initialConvergence: .seconds(1), timeToConverge: .milliseconds(1500),
      elapsed: .seconds(4), informerEvents: 40, malformedRejected: 2, zeroValueRejected: 10, junkKeys: 12,
      zeroValueKeys: [], peakMemoryPerObject: nil, converged: true, mismatches: [])
    #expect(summary.lines().last == "converged: yes")
    #expect(summary.lines().contains("reconcile latency: p50 2.00ms, p99 9.00ms"))
    #expect(summary.lines().contains("informer events: 40 in 4.00s (10 events/s)"))
    #expect(summary.lines().contains("peak memory per object: n/a"))
    summary.converged = false
    summary.mismatches = ["podset a/b has 1 pods, wants 2"]
    #expect(Array(summary.lines().suffix(2)) == ["  mismatch: podset a/b has 1 pods, wants 2", "converged: no"])
  }

  @Test func percentilesUseTheNearestRank() {
    let samples: [Int64] = Array(1...100).shuffled()
    #expect(DemoSummary.percentile(0.5, of: samples) == .nanoseconds(50))
    #expect(DemoSummary.percentile(0.99, of: samples) == .nanoseconds(99))
    #expect(DemoSummary.percentile(0.99, of: [7]) == .nanoseconds(7))
    #expect(DemoSummary.percentile(0.5, of: []) == nil)
  }
}
