import ArgumentParser
import CapstanApp
import CapstanEtcd
import Logging

/// `capstan watch`: prints one line per change of a key or prefix until Ctrl-C / SIGTERM or
/// until `--count` events were printed.
struct WatchCommand: EtcdCommand {
  static let configuration = CommandConfiguration(
    commandName: "watch", abstract: "Print changes of a key or prefix as they happen.")

  @Argument(help: "The key (or prefix with --prefix).")
  var key: String

  @Flag(help: "Watch every key with this prefix.")
  var prefix = false

  @Option(help: "Start from this revision (0: from now).")
  var rev: Int64 = 0

  @Flag(name: .customLong("prev-kv"), help: "Also print each key's previous value.")
  var prevKV = false

  @Option(help: "Exit after printing this many events.")
  var count: Int?

  @OptionGroup var etcd: EtcdOptions

  func validate() throws {
    if let count, count <= 0 { throw ValidationError("--count must be positive") }
    if self.rev < 0 { throw ValidationError("--rev must not be negative") }
  }

  func run() async throws {
    let range: EtcdKeyRange = self.prefix ? .prefix(self.key) : .key(self.key)
    let options = WatchOptions(startRevision: self.rev, prevKV: self.prevKV)
    let (limit, format, timeout) = (self.count, self.etcd.output, self.etcd.commandTimeout)
    let logger = Logger(label: "capstan.watch")
    try await self.etcd.withClient { client in
      // Fail fast (within the dial timeout) when etcd is unreachable: the watch itself retries forever.
      _ = try await client.status()
      let interrupted = try await TerminationSignal.runUntilSignalled {
        let watch = client.watch(range, options: options)
        try await waitUntilWatchRegistered(client, timeout: timeout)
        logger.info("watching", metadata: ["key": "\(range.key.count > 0 ? String(decoding: range.key, as: UTF8.self) : "")"])
        var printed = 0
        for try await event in watch {
          guard let line = Self.render(event, format: format) else { continue }
          StandardStreams.writeLines([line])
          printed += 1
          if let limit, printed >= limit { return }
        }
      }
      if interrupted { logger.info("interrupted, watch cancelled") }
    }
  }

  /// One output line for an event; `nil` for progress notifications.
  static func render(_ event: WatchEvent, format: OutputFormat) -> String? {
    let (type, kv, previous): (String, KeyValue, KeyValue?)
    switch event {
    case .put(let current, let before): (type, kv, previous) = ("PUT", current, before)
    case .delete(let current, let before): (type, kv, previous) = ("DELETE", current, before)
    case .progress: return nil
    }
    if format == .json {
      var fields: [(String, JSONValue)] = [("type", .string(type)), ("key", .string(kv.keyString))]
      if type == "PUT" { fields.append(("value", .string(kv.valueString))) }
      fields.append(("mod_revision", .integer(kv.modRevision)))
      if let previous { fields.append(("prev_value", .string(previous.valueString))) }
      return JSONValue.object(fields).rendered
    }
    var line = type == "PUT" ? "PUT \(kv.keyString) \(kv.valueString)" : "DELETE \(kv.keyString)"
    if let previous { line += " (previous: \(previous.valueString))" }
    return line
  }
}

/// Waits until every watch created so far on `client` is registered with etcd: the answer to a
/// progress request comes back on the shared watch stream after the answers to earlier creates.
func waitUntilWatchRegistered(_ client: EtcdClient, timeout: Duration) async throws {
  let deadline = ContinuousClock.now + timeout
  while true {
    let failure: EtcdError
    do {
      _ = try await client.requestWatchProgress()
      return
    } catch {
      failure = error
    }
    // `unavailable`: the shared watch stream is not open yet.
    guard failure.code == .unavailable, ContinuousClock.now < deadline else { throw failure }
    try await Task.sleep(for: .milliseconds(5))
  }
}
