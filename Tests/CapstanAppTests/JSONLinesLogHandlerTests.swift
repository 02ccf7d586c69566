import CapstanApp
import Foundation
import Logging
import Synchronization
import Testing

/// The JSON-lines log format: every field the runbooks grep for, and nothing that breaks a line.
@Suite("JSONLinesLogHandler")
struct JSONLinesLogHandlerTests {
  final class Lines: Sendable {
    let lines = Mutex<[String]>([])
    var all: [String] { self.lines.withLock { $0 } }
    func append(_ line: String) { self.lines.withLock { $0.append(line) } }
  }

  struct Failure: Error, CustomStringConvertible {
    var description: String { "backend unavailable: no leader (cause: connection refused)" }
  }

  func logger(level: Logger.Level = .info, service: String = "podset-operator") -> (Logger, Lines) {
    let lines = Lines()
    let fixed = Date(timeIntervalSince1970: 1_764_100_203.1239)
    let logger = Logger(label: "capstan.test") { label in
      JSONLinesLogHandler(
        label: label, serviceName: service, logLevel: level, output: { lines.append($0) }, now: { fixed })
    }
    return (logger, lines)
  }

  func object(_ line: String) throws -> [String: Any] {
    try #require(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
  }

  @Test("a line has ts (RFC 3339, ms, UTC), level, service, label and message first, in that order")
  func fixedFields() throws {
    let (logger, lines) = logger()
    logger.info("started")
    let line = try #require(lines.all.first)
    #expect(line == #"{"ts":"2025-11-25T19:50:03.123Z","level":"info","service":"podset-operator","label":"capstan.test","message":"started"}"# + "\n")
    #expect(lines.all.count == 1)
  }

  @Test("request_id follows the message; other metadata is sorted; an error in metadata is kept whole")
  func metadata() throws {
    var (logger, lines) = logger()
    logger[metadataKey: "request_id"] = "r-42"
    logger[metadataKey: "controller"] = "podsets"
    logger.warning("reconcile failed", metadata: ["error": "\(Failure())", "attempt": "3"])
    let line = try #require(lines.all.first)
    #expect(line.hasPrefix(#"{"ts":"2025-11-25T19:50:03.123Z","level":"warning","service":"podset-operator","label":"capstan.test","message":"reconcile failed","request_id":"r-42","error":"backend unavailable: no leader (cause: connection refused)","attempt":"3","controller":"podsets"}"#))
  }

  @Test("an error passed to log(error:) gives error and error_type")
  func errorParameter() throws {
    let (logger, lines) = logger()
    logger.error("stopped", error: Failure())
    let object = try object(try #require(lines.all.first))
    #expect(object["error"] as? String == "backend unavailable: no leader (cause: connection refused)")
    #expect((object["error_type"] as? String)?.hasSuffix("Failure") == true)
  }

  @Test("metadata named like a fixed field is renamed, never overwrites it")
  func reservedKeys() throws {
    let (logger, lines) = logger()
    logger.info("x", metadata: ["service": "evil", "ts": "0", "message": "m"])
    let object = try object(try #require(lines.all.first))
    #expect(object["service"] as? String == "podset-operator")
    #expect(object["metadata.service"] as? String == "evil")
    #expect(object["metadata.ts"] as? String == "0")
    #expect(object["message"] as? String == "x")
  }

  @Test("newlines, quotes and control characters stay inside one line")
  func escaping() throws {
    let (logger, lines) = logger()
    logger.info("two\nlines \"quoted\" \u{1}", metadata: ["nested": ["k": ["a", "b\n"]]])
    let line = try #require(lines.all.first)
    #expect(line.dropLast().contains("\n") == false)
    let object = try object(line)
    #expect(object["message"] as? String == "two\nlines \"quoted\" \u{1}")
    #expect((object["nested"] as? [String: Any])?["k"] as? [String] == ["a", "b\n"])
  }

  @Test("below the level nothing is written")
  func level() {
    let (logger, lines) = logger(level: .warning)
    logger.info("hidden")
    logger.debug("hidden")
    logger.warning("shown")
    #expect(lines.all.count == 1)
  }

  @Test("timestamps truncate to the millisecond in UTC, before 1970 too", arguments: [
    (0.0, "1970-01-01T00:00:00.000Z"), (0.9999, "1970-01-01T00:00:00.999Z"),
    (-0.5, "1969-12-31T23:59:59.500Z"), (951_782_400.25, "2000-02-29T00:00:00.250Z"),
  ])
  func timestamps(_ seconds: Double, _ expected: String) {
    #expect(JSONLinesLogHandler.rfc3339Milliseconds(Date(timeIntervalSince1970: seconds)) == expected)
  }
}
