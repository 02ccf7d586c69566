import CapstanDemo
import Metrics
import Testing

@Suite("Demo metrics")
struct DemoMetricsTests {
  @Test func countersSumOverMatchingDimensionsAndTimersAreSampled() {
    let metrics = DemoMetrics(sampleLimit: 3)
    Counter(label: "c", dimensions: [("controller", "a"), ("result", "success")], factory: metrics).increment(by: 2)
    Counter(label: "c", dimensions: [("controller", "a"), ("result", "error")], factory: metrics).increment()
    Counter(label: "c", dimensions: [("controller", "b"), ("result", "success")], factory: metrics).increment(by: 5)
    #expect(metrics.counterTotal("c") == 8)
    #expect(metrics.counterTotal("c", matching: [("controller", "a")]) == 3)
    #expect(metrics.counterTotal("c", matching: [("result", "success")]) == 7)
    #expect(metrics.counterTotal("missing") == 0)

    Gauge(label: "depth", dimensions: [("name", "a")], factory: metrics).record(4)
    Gauge(label: "depth", dimensions: [("name", "a")], factory: metrics).record(2)
    Gauge(label: "depth", dimensions: [("name", "b")], factory: metrics).record(1)
    #expect(metrics.gaugeTotal("depth", matching: [("name", "a")]) == 2)
    #expect(metrics.gaugeTotal("depth") == 3)
    #expect(metrics.gaugeTotal("missing") == nil)

    let timer = Metrics.Timer(label: DemoMetrics.reconcileTime, dimensions: [("controller", "a")], factory: metrics)
    for nanoseconds in [10, 20, 30, 40] as [Int64] { timer.recordNanoseconds(nanoseconds) }
    Metrics.Timer(label: "other", factory: metrics).recordNanoseconds(1)
    #expect(metrics.samples(DemoMetrics.reconcileTime) == [10, 20, 30], "bounded by the sample limit")
    #expect(metrics.samples("other").isEmpty, "only the sampled timers keep samples")
  }
}
