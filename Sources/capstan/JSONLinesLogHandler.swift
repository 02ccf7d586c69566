import Foundation
import Logging

/// A swift-log handler that writes one JSON object per line to standard error:
/// `{"ts":"<ISO8601>","level":"info","service":"capstan","label":…,"message":…,<metadata>…}`.
struct JSONLinesLogHandler: LogHandler {
  /// The value of the `service` field of every line.
  static let serviceName = "capstan"
  private static let timestampStyle = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
  private static let reservedKeys: Set<String> = ["ts", "level", "service", "label", "message"]

  let label: String
  var logLevel: Logger.Level
  var metadata: Logger.Metadata = [:]
  var metadataProvider: Logger.MetadataProvider?

  init(label: String, logLevel: Logger.Level, metadataProvider: Logger.MetadataProvider? = nil) {
    self.label = label
    self.logLevel = logLevel
    self.metadataProvider = metadataProvider
  }

  subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { self.metadata[key] }
    set { self.metadata[key] = newValue }
  }

  func log(event: LogEvent) {
    var merged = self.metadata
    if let provided = self.metadataProvider?.get() { merged.merge(provided) { _, new in new } }
    if let eventMetadata = event.metadata { merged.merge(eventMetadata) { _, new in new } }
    if let error = event.error { merged["error"] = .string("\(error)") }

    var fields: [(String, JSONValue)] = [
      ("ts", .string(Self.timestampStyle.format(Date()))),
      ("level", .string(event.level.rawValue)),
      ("service", .string(Self.serviceName)),
      ("label", .string(self.label)),
      ("message", .string(event.message.description)),
    ]
    for key in merged.keys.sorted() {
      guard let value = merged[key] else { continue }
      let name = Self.reservedKeys.contains(key) ? "metadata.\(key)" : key
      fields.append((name, Self.json(value)))
    }
    StandardStreams.writeError(JSONValue.object(fields).rendered + "\n")
  }

  private static func json(_ value: Logger.Metadata.Value) -> JSONValue {
    switch value {
    case .string(let string): .string(string)
    case .stringConvertible(let convertible): .string(convertible.description)
    case .array(let values): .array(values.map(json))
    case .dictionary(let dictionary):
      .object(dictionary.keys.sorted().compactMap { key in dictionary[key].map { (key, json($0)) } })
    }
  }
}
