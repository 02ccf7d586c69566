import CapstanTesting
import Foundation
import Testing

/// `capstan bench ingest` (no etcd needed): one line of the documented shape, with figures that
/// agree with each other.
@Suite("capstan bench ingest")
struct CapstanBenchIngestCLITests {
  @Test("prints one line: N objects in S s = R objects/s (M MB/s), JSONDecoder R2 objects/s, ratio X, bytes/object B")
  func printsTheIngestLine() async throws {
    let output = try await TestCommand.run(
      try TestCommand.builtProduct("capstan"), ["bench", "ingest", "--n", "300"], timeout: .seconds(60))
    #expect(output.exitStatus == 0, "\(output.standardError)")
    let number = #"([0-9]+(?:\.[0-9]+)?)"#
    let pattern = try Regex(
      #"^ingest: 300 objects in \#(number) s = \#(number) objects/s \(\#(number) MB/s\), "#
        + #"JSONDecoder \#(number) objects/s, ratio \#(number), bytes/object \#(number)\n$"#)
    let match = try #require(output.standardOutput.wholeMatch(of: pattern), "\(output.standardOutput)")
    let figures = (1..<match.count).compactMap { match[$0].substring.flatMap { Double($0) } }
    try #require(figures.count == 6)
    let (seconds, rate, megabytes, decoderRate, ratio, bytesPerObject) =
      (figures[0], figures[1], figures[2], figures[3], figures[4], figures[5])
    #expect(seconds > 0 && rate > 0 && decoderRate > 0)
    // S is printed to the millisecond.
    #expect(abs(rate * seconds - 300) <= rate * 0.0005 + 6, "rate × time is the object count")
    #expect(abs(ratio - rate / decoderRate) <= 0.01 + ratio * 0.01)
    #expect((1200...1700).contains(bytesPerObject), "PodFixture documents are ~1.6 KB")
    #expect(abs(megabytes - rate * bytesPerObject / 1e6) <= 0.1 + megabytes * 0.02)
  }

  @Test("rejects a non-positive --n")
  func rejectsBadCount() async throws {
    let output = try await TestCommand.run(try TestCommand.builtProduct("capstan"), ["bench", "ingest", "--n", "0"])
    #expect(output.exitStatus != 0)
    #expect(output.standardError.contains("--n must be positive"))
  }
}
