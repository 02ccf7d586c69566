import CapstanApp
import CapstanEtcd
import Foundation

/// Text renderings shared by the commands: etcdctl-style key/value lines, JSON objects for
/// key-values, ASCII tables and human-readable byte sizes.
enum OutputFormatting {
  /// etcdctl's default rendering of a key-value: the key on one line, the value on the next.
  static func simpleLines(_ kv: KeyValue) -> [String] {
    [kv.keyString, kv.valueString]
  }

  /// A key-value as a JSON object with UTF-8 key and value.
  static func json(_ kv: KeyValue) -> JSONValue {
    .object([
      ("key", .string(kv.keyString)),
      ("value", .string(kv.valueString)),
      ("create_revision", .integer(kv.createRevision)),
      ("mod_revision", .integer(kv.modRevision)),
      ("version", .integer(kv.version)),
      ("lease", .integer(kv.lease)),
    ])
  }

  /// An ASCII table with a header row, like etcdctl's `-w table`.
  static func table(header: [String], rows: [[String]]) -> String {
    var widths = header.map(\.count)
    for row in rows {
      for (column, cell) in row.enumerated() where column < widths.count {
        widths[column] = max(widths[column], cell.count)
      }
    }
    let border = "+" + widths.map { String(repeating: "-", count: $0 + 2) }.joined(separator: "+") + "+"
    func line(_ cells: [String]) -> String {
      "|" + widths.enumerated().map { column, width in
        let cell = column < cells.count ? cells[column] : ""
        return " " + cell + String(repeating: " ", count: width - cell.count) + " "
      }.joined(separator: "|") + "|"
    }
    return ([border, line(header), border] + rows.map(line) + [border]).joined(separator: "\n") + "\n"
  }

  /// A byte count in SI units exactly like go-humanize's `Bytes` (which etcdctl uses): `20 kB`.
  static func humanBytes(_ bytes: Int64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"]
    guard bytes >= 10 else { return "\(bytes) B" }
    let size = Double(bytes)
    let exponent = min(Int((log(size) / log(1000)).rounded(.down)), units.count - 1)
    let scaled = (size / pow(1000, Double(exponent)) * 10 + 0.5).rounded(.down) / 10
    return String(format: scaled < 10 ? "%.1f" : "%.0f", scaled) + " " + units[exponent]
  }

  /// A member ID as etcdctl prints it: lower-case hex without padding.
  static func hexID(_ id: UInt64) -> String { String(id, radix: 16) }
}
