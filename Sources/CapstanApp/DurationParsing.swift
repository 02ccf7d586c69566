extension Duration {
  /// Parses a duration written as Go and Kubernetes write them: one or more decimal numbers
  /// each followed by a unit, `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h` — `500ms`, `30s`,
  /// `1.5s`, `2m30s`. `nil` for anything else, including a bare number, a sign or an empty text.
  public init?(parsingGoDuration text: String) {
    let units: [(String, Double)] = [
      ("ns", 1), ("us", 1e3), ("µs", 1e3), ("ms", 1e6), ("s", 1e9), ("m", 60e9), ("h", 3600e9),
    ]
    var rest = Substring(text)
    var nanoseconds = 0.0
    guard !rest.isEmpty else { return nil }
    while !rest.isEmpty {
      let number = rest.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
      guard !number.isEmpty, !number.hasPrefix("."), !number.hasSuffix("."),
        number.filter({ $0 == "." }).count <= 1, let value = Double(number)
      else { return nil }
      rest = rest.dropFirst(number.count)
      let unitText = rest.prefix { !($0.isASCII && ($0.isNumber || $0 == ".")) }
      guard let unit = units.first(where: { $0.0 == unitText }) else { return nil }
      rest = rest.dropFirst(unitText.count)
      nanoseconds += value * unit.1
      guard nanoseconds < 1e18 else { return nil }
    }
    self = .nanoseconds(Int64(nanoseconds.rounded()))
  }

  /// The shortest of the forms ``init(parsingGoDuration:)`` reads that is exact for whole
  /// milliseconds: `500ms`, `30s`, `2m`, `1h`.
  public var goDurationDescription: String {
    let milliseconds = self.components.seconds * 1000 + self.components.attoseconds / 1_000_000_000_000_000
    if milliseconds % 3_600_000 == 0, milliseconds != 0 { return "\(milliseconds / 3_600_000)h" }
    if milliseconds % 60_000 == 0, milliseconds != 0 { return "\(milliseconds / 60_000)m" }
    if milliseconds % 1000 == 0 { return "\(milliseconds / 1000)s" }
    return "\(milliseconds)ms"
  }
}
