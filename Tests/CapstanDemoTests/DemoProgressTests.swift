@testable import CapstanDemo
import Testing

@Suite("Demo progress")
struct DemoProgressTests {
  @Test func rendersOneLine() {
    var progress = DemoProgress(
      phase: .disturbing(round: 2, of: 3), elapsed: .milliseconds(3_460), podSets: 200, pods: 1000, reconciles: 1530,
      queueDepth: 12)
    #expect(progress.description == "[3.5s] disturbing 2/3  sets 200  pods 1000  reconciles 1530  queue 12")
    progress.queueDepth = nil
    progress.phase = .settling
    #expect(progress.description == "[3.5s] settling  sets 200  pods 1000  reconciles 1530")
  }

  @Test func fixedDecimals() {
    #expect(formatFixed(2.0, digits: 2) == "2.00")
    #expect(formatFixed(0.125, digits: 2) == "0.13")
    #expect(formatFixed(9.996, digits: 2) == "10.00")
    #expect(formatFixed(-1.5, digits: 1) == "-1.5")
    #expect(formatFixed(-0.001, digits: 1) == "0.0")
    #expect(formatFixed(1234.4, digits: 0) == "1234")
  }
}
