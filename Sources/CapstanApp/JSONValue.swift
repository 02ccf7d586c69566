/// A JSON value whose objects keep their keys in the order they were given, so that the
/// command-line output and the log lines have a stable, documented field order.
public enum JSONValue: Sendable, Equatable {
  /// A string.
  case string(String)
  /// A signed integer, printed exactly.
  case integer(Int64)
  /// An unsigned integer, printed exactly.
  case unsignedInteger(UInt64)
  /// A floating-point number (`null` when not finite).
  case number(Double)
  /// `true` or `false`.
  case bool(Bool)
  /// `null`.
  case null
  /// An array.
  case array([JSONValue])
  /// An object whose members keep the given order.
  case object([(String, JSONValue)])

  /// Two values are equal when they render the same text.
  public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool { lhs.rendered == rhs.rendered }

  /// The value as compact JSON text on one line.
  public var rendered: String {
    var text = ""
    self.render(into: &text)
    return text
  }

  private func render(into text: inout String) {
    switch self {
    case .string(let string): Self.renderString(string, into: &text)
    case .integer(let integer): text += String(integer)
    case .unsignedInteger(let integer): text += String(integer)
    case .number(let number): text += number.isFinite ? "\(number)" : "null"
    case .bool(let bool): text += bool ? "true" : "false"
    case .null: text += "null"
    case .array(let elements):
      text += "["
      for (index, element) in elements.enumerated() {
        if index > 0 { text += "," }
        element.render(into: &text)
      }
      text += "]"
    case .object(let members):
      text += "{"
      for (index, (key, value)) in members.enumerated() {
        if index > 0 { text += "," }
        Self.renderString(key, into: &text)
        text += ":"
        value.render(into: &text)
      }
      text += "}"
    }
  }

  private static func renderString(_ string: String, into text: inout String) {
    text += "\""
    for scalar in string.unicodeScalars {
      switch scalar {
      case "\"": text += "\\\""
      case "\\": text += "\\\\"
      case "\n": text += "\\n"
      case "\r": text += "\\r"
      case "\t": text += "\\t"
      case _ where scalar.value < 0x20:
        let hex = String(scalar.value, radix: 16)
        text += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
      default: text.unicodeScalars.append(scalar)
      }
    }
    text += "\""
  }
}
