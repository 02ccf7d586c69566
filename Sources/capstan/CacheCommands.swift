import ArgumentParser
import Capstan
import CapstanApp
import CapstanEtcd
import Foundation
import Logging

/// `capstan cache …`: run Capstan's informer against etcd and check or describe its cache.
struct CacheCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "cache",
    abstract: "Run an informer on a prefix and verify or describe its cache.",
    subcommands: [CacheVerifyCommand.self, CacheStatsCommand.self]
  )
}

/// Which objects a cache command informs on.
struct CachePrefixOptions: ParsableArguments {
  @Option(help: "The key prefix of one kind, /registry/<plural>/ (e.g. /registry/pods/).")
  var prefix: String

  @Flag(name: .customLong("cluster-scoped"), help: "Keys are /registry/<plural>/<name> (no namespace).")
  var clusterScoped = false

  @Option(name: .customLong("page-size"), help: "Keys per page of the list.")
  var pageSize = 500

  func validate() throws {
    _ = try self.layout()
    guard self.pageSize > 0 else { throw ValidationError("--page-size must be positive") }
  }

  /// The layout the prefix names.
  func layout() throws -> ResourceLayout {
    let parts = self.prefix.split(separator: "/", omittingEmptySubsequences: false)
    guard parts.count == 4, parts[0].isEmpty, parts[1] == "registry", !parts[2].isEmpty, parts[3].isEmpty else {
      throw ValidationError("--prefix must look like /registry/<plural>/, not \(self.prefix)")
    }
    return ResourceLayout(kind: String(parts[2]), plural: String(parts[2]), isNamespaced: !self.clusterScoped)
  }
}

/// A duration written as `500ms`, `30s`, `5m` or `1h`.
struct DurationArgument: ExpressibleByArgument, Sendable, CustomStringConvertible {
  let duration: Duration
  private let text: String

  var description: String { self.text }
  var defaultValueDescription: String { self.text }

  init?(argument: String) {
    let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
    for (suffix, seconds) in units where argument.hasSuffix(suffix) {
      guard let value = Double(argument.dropLast(suffix.count)), value >= 0, value.isFinite else { return nil }
      self.duration = .milliseconds(Int64(value * seconds * 1000))
      self.text = argument
      return
    }
    return nil
  }
}

/// `capstan cache verify`: runs an informer for a while (others may write meanwhile), stops it,
/// and compares the cache with a fresh consistent list at the cache's revision.
struct CacheVerifyCommand: EtcdCommand {
  static let configuration = CommandConfiguration(
    commandName: "verify",
    abstract: "Run an informer, then check that its cache equals etcd at the same revision.",
    discussion: """
      Prints "consistent: N objects at revision R" and exits 0, or prints each difference and \
      exits 1. Values that are not valid objects (undecodable, empty uid or name, key not \
      matching the metadata) are excluded on both sides and reported on stderr.
      """)

  @OptionGroup var objects: CachePrefixOptions

  @Option(help: "How long to run the informer before checking (e.g. 30s, 2m).")
  var duration = DurationArgument(argument: "10s")!

  @Option(help: "Also write the final cache to this file as JSON lines {key, uid, resourceVersion}.")
  var dump: String?

  @OptionGroup var etcd: EtcdOptions

  func run() async throws {
    let layout = try self.objects.layout()
    let logger = Logger(label: "capstan.cache")
    let (pageSize, duration, dump) = (self.objects.pageSize, self.duration.duration, self.dump)
    let report = try await self.etcd.withClient { client in
      let backend = EtcdBackend(client: client)
      let informer = try Informer(
        layout: layout, backend: backend, configuration: InformerConfiguration(pageSize: pageSize), logger: logger)
      try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await informer.run() }
        _ = try await informer.waitForSync(timeout: .seconds(600))
        try await Task.sleep(for: duration)
        group.cancelAll()
        try await group.waitForAll()
      }
      let cache = try informer.cache
      let revision = informer.lastSyncRevision
      return try await CacheConsistencyReport.compare(cache, with: backend, at: revision, pageSize: pageSize)
    }
    if let dump { try CacheDump.write(report.cached, to: dump) }
    for rejected in report.rejected { StandardStreams.writeError("capstan: skipped \(rejected)\n") }
    if report.differences.isEmpty {
      StandardStreams.writeLines(["consistent: \(report.cached.count) objects at revision \(report.revision)"])
    } else {
      StandardStreams.writeLines(report.differences)
      StandardStreams.writeLines([
        "inconsistent: \(report.differences.count) differences at revision \(report.revision)"
      ])
      throw ExitCode.failure
    }
  }
}

/// `capstan cache stats`: lists a prefix into a cache and prints what it holds.
struct CacheStatsCommand: EtcdCommand {
  static let configuration = CommandConfiguration(
    commandName: "stats", abstract: "List a prefix into a cache and print counts, memory and index sizes.")

  @OptionGroup var objects: CachePrefixOptions

  @OptionGroup var etcd: EtcdOptions

  func run() async throws {
    let layout = try self.objects.layout()
    let pageSize = self.objects.pageSize
    let (stats, revision) = try await self.etcd.withClient { client in
      let informer = try Informer(
        layout: layout, backend: EtcdBackend(client: client),
        configuration: InformerConfiguration(pageSize: pageSize), logger: Logger(label: "capstan.cache"))
      return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await informer.run() }
        defer { group.cancelAll() }
        let cache = try await informer.waitForSync(timeout: .seconds(600))
        return (cache.stats(), informer.lastSyncRevision)
      }
    }
    var lines = [
      "revision: \(revision)",
      "objects: \(stats.objects)",
      "raw bytes: \(stats.rawBytes) (\(stats.objects > 0 ? stats.rawBytes / stats.objects : 0) per object)",
    ]
    lines.append("name index: \(stats.names) names")
    for (name, index) in stats.indexes.sorted(by: { $0.key < $1.key }) {
      lines.append("index \(name): \(index.keys) values, \(index.entries) entries")
    }
    StandardStreams.writeLines(lines)
  }
}

/// Writes the dump of `capstan cache verify --dump`.
enum CacheDump {
  /// Writes one JSON line per cached object.
  static func write(_ entries: [CacheConsistencyReport.Entry], to path: String) throws {
    var text = ""
    for entry in entries {
      let line = JSONValue.object([
        ("key", .string(entry.key)), ("uid", .string(entry.uid)), ("resourceVersion", .integer(entry.resourceVersion)),
      ])
      text += line.rendered + "\n"
    }
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
  }
}
