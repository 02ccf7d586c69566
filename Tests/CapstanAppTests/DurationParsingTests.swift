import CapstanApp
import PropertyBased
import Testing

@Suite("Duration(parsingGoDuration:)")
struct DurationParsingTests {
  @Test("Go-style durations", arguments: [
    ("500ms", Duration.milliseconds(500)), ("30s", .seconds(30)), ("1.5s", .milliseconds(1500)),
    ("2m30s", .seconds(150)), ("1h", .seconds(3600)), ("250us", .microseconds(250)), ("7ns", .nanoseconds(7)),
    ("1m0.5s", .milliseconds(60_500)),
  ])
  func parses(_ text: String, _ expected: Duration) {
    #expect(Duration(parsingGoDuration: text) == expected)
  }

  @Test("rejects what Go rejects", arguments: ["", "30", "s", "-1s", "+1s", "1.s", ".5s", "1..5s", "1 s", "1sec", "1d", "1s ", "1e3ms"])
  func rejects(_ text: String) {
    #expect(Duration(parsingGoDuration: text) == nil)
  }

  @Test("the description reads back to the same duration for whole milliseconds")
  func roundTrip() async {
    await propertyCheck(count: 300, input: Gen.int(in: 0...86_400_000)) { milliseconds in
      let duration = Duration.milliseconds(milliseconds)
      #expect(Duration(parsingGoDuration: duration.goDurationDescription) == duration)
    }
  }
}
