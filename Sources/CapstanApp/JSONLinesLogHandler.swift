public import Foundation
public import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A swift-log handler that writes one JSON object per line (to standard error by default):
///
/// ```
/// {"ts":"2026-11-25T19:50:03.123Z","level":"info","service":"capstan","label":"capstan.controller",
///  "message":"…","request_id":"…","error":"…","error_type":"…",<other metadata, sorted by key>}
/// ```
///
/// - `ts` is RFC 3339 in UTC with milliseconds; `service` is the process's `SERVICE_NAME`.
/// - `request_id` comes right after `message` when the metadata has one (every reconcile's
///   logger carries one).
/// - `error` is the full description of an error passed to `log(…, error:)` or carried in the
///   metadata under `error` (a `BackendError` prints its cause too), with `error_type` naming
///   its type when the error itself was given.
/// - Metadata keys that collide with the fixed fields are written as `metadata.<key>`.
///
/// Bootstrap it once, in the executable: `LoggingSystem.bootstrap { JSONLinesLogHandler(label: $0, …) }`.
public struct JSONLinesLogHandler: LogHandler {
  /// Where finished lines go; each call receives one complete line ending in `\n`.
  public typealias Output = @Sendable (String) -> Void

  private static let fixedKeys: Set<String> = ["ts", "level", "service", "label", "message", "request_id", "error", "error_type"]

  /// The logger's label (`label` field).
  public let label: String
  /// The `service` field of every line.
  public let serviceName: String
  /// The lowest level written.
  public var logLevel: Logger.Level
  /// Metadata attached to this handler (and its logger).
  public var metadata: Logger.Metadata = [:]
  /// Metadata merged into every line when present (task-local request context).
  public var metadataProvider: Logger.MetadataProvider?
  private let output: Output
  private let now: @Sendable () -> Date

  /// - Parameters:
  ///   - label: the logger's label.
  ///   - serviceName: the `service` field (`SERVICE_NAME`, default `capstan`).
  ///   - logLevel: the lowest level written.
  ///   - metadataProvider: extra metadata merged into every line.
  ///   - output: where lines go (default: standard error, one `write` per line).
  ///   - now: the clock of `ts` (tests pass a fixed one).
  public init(
    label: String,
    serviceName: String = RunConfiguration.defaultServiceName,
    logLevel: Logger.Level,
    metadataProvider: Logger.MetadataProvider? = nil,
    output: @escaping Output = Self.standardError,
    now: @escaping @Sendable () -> Date = { Date() }
  ) {
    self.label = label
    self.serviceName = serviceName
    self.logLevel = logLevel
    self.metadataProvider = metadataProvider
    self.output = output
    self.now = now
  }

  /// Writes a line to standard error in one `write`, so concurrent lines never interleave.
  public static let standardError: Output = { line in FileHandle.standardError.write(Data(line.utf8)) }

  /// The metadata value under `key`.
  public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { self.metadata[key] }
    set { self.metadata[key] = newValue }
  }

  /// Formats `event` as one JSON line and writes it.
  public func log(event: LogEvent) {
    var merged = self.metadata
    if let provided = self.metadataProvider?.get() { merged.merge(provided) { _, new in new } }
    if let eventMetadata = event.metadata { merged.merge(eventMetadata) { _, new in new } }

    var fields: [(String, JSONValue)] = [
      ("ts", .string(Self.rfc3339Milliseconds(self.now()))),
      ("level", .string(event.level.rawValue)),
      ("service", .string(self.serviceName)),
      ("label", .string(self.label)),
      ("message", .string(event.message.description)),
    ]
    if let requestID = merged.removeValue(forKey: "request_id") {
      fields.append(("request_id", Self.json(requestID)))
    }
    if let error = event.error {
      fields.append(("error", .string(String(describing: error))))
      fields.append(("error_type", .string(String(reflecting: type(of: error)))))
      if let metadataError = merged.removeValue(forKey: "error") {
        fields.append(("metadata.error", Self.json(metadataError)))
      }
    } else if let metadataError = merged.removeValue(forKey: "error") {
      fields.append(("error", Self.json(metadataError)))
    }
    for key in merged.keys.sorted() {
      guard let value = merged[key] else { continue }
      let name = Self.fixedKeys.contains(key) ? "metadata.\(key)" : key
      fields.append((name, Self.json(value)))
    }
    self.output(JSONValue.object(fields).rendered + "\n")
  }

  /// `date` as RFC 3339 in UTC with milliseconds: `2026-11-25T19:50:03.123Z` (truncated, not
  /// rounded, so a line never claims a later millisecond than it was written in).
  public static func rfc3339Milliseconds(_ date: Date) -> String {
    let totalMilliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
    var seconds = time_t(totalMilliseconds >= 0 ? totalMilliseconds / 1000 : (totalMilliseconds - 999) / 1000)
    let milliseconds = Int(totalMilliseconds - Int64(seconds) * 1000)
    var parts = tm()
    gmtime_r(&seconds, &parts)
    func pad(_ value: Int, _ width: Int) -> String {
      let digits = String(value)
      return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
    return "\(pad(Int(parts.tm_year) + 1900, 4))-\(pad(Int(parts.tm_mon) + 1, 2))-\(pad(Int(parts.tm_mday), 2))"
      + "T\(pad(Int(parts.tm_hour), 2)):\(pad(Int(parts.tm_min), 2)):\(pad(Int(parts.tm_sec), 2))"
      + ".\(pad(milliseconds, 3))Z"
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
