/// A point in time with second precision, encoded as an RFC 3339 UTC string
/// (`2006-01-02T15:04:05Z`), as Kubernetes' `metav1.Time` is.
///
/// Decoding accepts any RFC 3339 time (fractional seconds are dropped, offsets are applied).
public struct Timestamp: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
  /// Seconds since 1970-01-01T00:00:00Z.
  public var secondsSince1970: Int64

  public init(secondsSince1970: Int64) { self.secondsSince1970 = secondsSince1970 }

  /// Parses an RFC 3339 time; `nil` if `text` is not one.
  public init?(rfc3339 text: some StringProtocol) {
    guard let seconds = Self.parse(Array(text.utf8)) else { return nil }
    self.secondsSince1970 = seconds
  }

  public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool { lhs.secondsSince1970 < rhs.secondsSince1970 }

  public init(from decoder: any Decoder) throws {
    let text = try decoder.singleValueContainer().decode(String.self)
    guard let seconds = Self.parse(Array(text.utf8)) else {
      throw DecodingError.dataCorrupted(
        DecodingError.Context(codingPath: decoder.codingPath, debugDescription: "\"\(text)\" is not an RFC 3339 time"))
    }
    self.secondsSince1970 = seconds
  }

  public func encode(to encoder: any Encoder) throws {
    var container = encoder.singleValueContainer()
    try container.encode(self.description)
  }

  /// The RFC 3339 UTC form, e.g. `2006-01-02T15:04:05Z`.
  public var description: String {
    let days = Self.floorDivide(self.secondsSince1970, 86_400)
    let secondOfDay = self.secondsSince1970 - days * 86_400
    let (year, month, day) = Self.civilDate(fromDays: days)
    func pad(_ value: Int64, _ width: Int) -> String {
      let digits = String(value)
      return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
    return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(secondOfDay / 3600, 2)):"
      + "\(pad(secondOfDay % 3600 / 60, 2)):\(pad(secondOfDay % 60, 2))Z"
  }

  /// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`; the `T` may be `t` or a space, `Z` may be `z`.
  static func parse(_ bytes: [UInt8]) -> Int64? {
    bytes.withUnsafeBufferPointer { Self.parse($0) }
  }

  /// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` from UTF-8 bytes in place (no allocation).
  static func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> Int64? {
    var index = 0
    func digits(_ count: Int) -> Int64? {
      guard index + count <= bytes.count else { return nil }
      var value: Int64 = 0
      for _ in 0..<count {
        let byte = bytes[index]
        guard byte >= 0x30, byte <= 0x39 else { return nil }
        value = value * 10 + Int64(byte - 0x30)
        index += 1
      }
      return value
    }
    func expect(_ first: UInt8, _ second: UInt8? = nil, _ third: UInt8? = nil) -> Bool {
      guard index < bytes.count else { return false }
      let byte = bytes[index]
      guard byte == first || byte == second || byte == third else { return false }
      index += 1
      return true
    }
    guard let year = digits(4), expect(0x2D), let month = digits(2), expect(0x2D), let day = digits(2),
      expect(0x54, 0x74, 0x20), let hour = digits(2), expect(0x3A), let minute = digits(2), expect(0x3A),
      let second = digits(2)
    else { return nil }
    guard (1...12).contains(month), day >= 1, day <= Self.daysInMonth(year: year, month: month), hour < 24,
      minute < 60, second < 61
    else { return nil }
    if index < bytes.count, bytes[index] == 0x2E {
      index += 1
      let start = index
      while index < bytes.count, bytes[index] >= 0x30, bytes[index] <= 0x39 { index += 1 }
      guard index > start else { return nil }
    }
    var offset: Int64 = 0
    if expect(0x5A, 0x7A) {
      offset = 0
    } else if index < bytes.count, bytes[index] == 0x2B || bytes[index] == 0x2D {
      let sign: Int64 = bytes[index] == 0x2D ? -1 : 1
      index += 1
      guard let offsetHours = digits(2), expect(0x3A), let offsetMinutes = digits(2), offsetHours < 24,
        offsetMinutes < 60
      else { return nil }
      offset = sign * (offsetHours * 3600 + offsetMinutes * 60)
    } else {
      return nil
    }
    guard index == bytes.count else { return nil }
    let days = Self.days(fromCivilYear: year, month: month, day: day)
    return days * 86_400 + hour * 3600 + minute * 60 + second - offset
  }

  private static func daysInMonth(year: Int64, month: Int64) -> Int64 {
    switch month {
    case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
    case 4, 6, 9, 11: 30
    default: 31
    }
  }

  private static func floorDivide(_ value: Int64, _ divisor: Int64) -> Int64 {
    value >= 0 ? value / divisor : -((-value + divisor - 1) / divisor)
  }

  /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
  private static func days(fromCivilYear year: Int64, month: Int64, day: Int64) -> Int64 {
    let adjustedYear = month <= 2 ? year - 1 : year
    let era = floorDivide(adjustedYear, 400)
    let yearOfEra = adjustedYear - era * 400
    let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
    let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
    return era * 146_097 + dayOfEra - 719_468
  }

  private static func civilDate(fromDays days: Int64) -> (year: Int64, month: Int64, day: Int64) {
    let shifted = days + 719_468
    let era = floorDivide(shifted, 146_097)
    let dayOfEra = shifted - era * 146_097
    let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
    let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
    let monthIndex = (5 * dayOfYear + 2) / 153
    let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
    let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
    return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
  }
}
