import ArgumentParser
import Capstan
import CapstanEtcd
import Foundation
import Logging

/// The workload parameters shared by the benchmarks (the same flags and defaults as
/// etcd-go-baseline).
struct BenchOptions: ParsableArguments {
  @Option(name: .customLong("n"), help: "Number of operations or events.")
  var operations = 10000

  @Option(help: "Writers in flight.")
  var concurrency = 64

  @Option(name: .customLong("value-size"), help: "Bytes per value.")
  var valueSize = 256

  func validate() throws {
    guard self.operations > 0 else { throw ValidationError("--n must be positive") }
    guard self.concurrency > 0 else { throw ValidationError("--concurrency must be positive") }
    guard self.valueSize >= 0 else { throw ValidationError("--value-size must not be negative") }
  }
}

/// One benchmark run: a random key root (`/bench-swift/<hex>/`) that is deleted at the end, and
/// the client the workloads use. Mirrors etcd-go-baseline/main.go step by step.
struct BenchWorkload: Sendable {
  /// How long the final clean-up of the root prefix may take.
  static let cleanupTimeout = Duration.seconds(120)

  let client: EtcdClient
  let root: String
  let value: Data
  let clock = ContinuousClock()

  init(client: EtcdClient, valueSize: Int) {
    self.client = client
    self.root = "/bench-swift/\(String(UInt32.random(in: .min ... .max), radix: 16))/"
    self.value = Data(repeating: UInt8(ascii: "v"), count: valueSize)
  }

  /// Runs `body` with a fresh workload and always deletes its root prefix afterwards.
  static func run(_ etcd: EtcdOptions, valueSize: Int, _ body: (BenchWorkload) async throws -> String) async throws {
    let line = try await etcd.withClient { client in
      let workload = BenchWorkload(client: client, valueSize: valueSize)
      let result: Result<String, any Error>
      do { result = .success(try await body(workload)) } catch { result = .failure(error) }
      do {
        try await client.delete(.prefix(workload.root), timeout: Self.cleanupTimeout)
      } catch {
        Logger(label: "capstan.bench").warning(
          "could not delete the benchmark keys", metadata: ["root": "\(workload.root)", "error": "\(error)"])
      }
      return try result.get()
    }
    StandardStreams.writeLines([line])
  }

  /// The key of operation `index`: `<root>%08d`.
  func key(_ index: Int) -> Data {
    let digits = String(index)
    return Data((self.root + String(repeating: "0", count: max(0, 8 - digits.count)) + digits).utf8)
  }

  /// Puts keys 0..<n with `concurrency` writers, writer w taking indexes w, w+C, w+2C, …
  ///
  /// - Returns: the latency of each put (by index) and the wall time of the whole run.
  func putAll(count: Int, concurrency: Int) async throws -> (latencies: [Duration], elapsed: Duration) {
    let start = self.clock.now
    let latencies = try await withThrowingTaskGroup(of: [(Int, Duration)].self) { group in
      for writer in 0..<concurrency {
        group.addTask {
          var measured: [(Int, Duration)] = []
          measured.reserveCapacity(count / concurrency + 1)
          for index in stride(from: writer, to: count, by: concurrency) {
            let key = self.key(index)
            let sent = self.clock.now
            try await self.client.put(key: key, value: self.value)
            measured.append((index, self.clock.now - sent))
          }
          return measured
        }
      }
      var latencies = [Duration](repeating: .zero, count: count)
      for try await measured in group {
        for (index, latency) in measured { latencies[index] = latency }
      }
      return latencies
    }
    return (latencies, self.clock.now - start)
  }

  /// Counts put/delete events of `watch` until `count` arrived (or the watch ends).
  static func countEvents(_ watch: EtcdWatch, until count: Int) async throws -> Int {
    var received = 0
    for try await event in watch {
      if case .progress = event { continue }
      received += 1
      if received >= count { break }
    }
    return received
  }

  /// etcd-go-baseline's `report`: `what: N ops in S s = R ops/s[, p50 X ms, p99 Y ms]`.
  static func report(_ what: String, count: Int, elapsed: Duration, latencies: [Duration] = []) -> String {
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    var line = "\(what): \(count) ops in \(String(format: "%.3f", seconds)) s = \(String(format: "%.0f", Double(count) / seconds)) ops/s"
    if !latencies.isEmpty {
      let sorted = latencies.sorted()
      func milliseconds(_ quantile: Double) -> Double {
        let latency = sorted[Int(quantile * Double(sorted.count - 1))]
        let microseconds = latency.components.seconds * 1_000_000 + latency.components.attoseconds / 1_000_000_000_000
        return Double(microseconds) / 1000
      }
      line += ", p50 \(String(format: "%.2f", milliseconds(0.5))) ms, p99 \(String(format: "%.2f", milliseconds(0.99))) ms"
    }
    return line
  }
}

/// `capstan bench put`: N puts by C concurrent writers; throughput and latency percentiles.
struct BenchPutCommand: EtcdCommand {
  static let configuration = CommandConfiguration(commandName: "put", abstract: "Benchmark concurrent puts.")

  @OptionGroup var workload: BenchOptions
  @OptionGroup var etcd: EtcdOptions

  func run() async throws {
    let (count, concurrency) = (self.workload.operations, self.workload.concurrency)
    try await BenchWorkload.run(self.etcd, valueSize: self.workload.valueSize) { bench in
      let (latencies, elapsed) = try await bench.putAll(count: count, concurrency: concurrency)
      return BenchWorkload.report("put", count: count, elapsed: elapsed, latencies: latencies)
    }
  }
}

/// `capstan bench watch`: delivery of N live events to one prefix watch while C writers put.
struct BenchWatchCommand: EtcdCommand {
  static let configuration = CommandConfiguration(commandName: "watch", abstract: "Benchmark live watch delivery.")

  @OptionGroup var workload: BenchOptions
  @OptionGroup var etcd: EtcdOptions

  func run() async throws {
    let (count, concurrency, timeout) = (self.workload.operations, self.workload.concurrency, self.etcd.commandTimeout)
    try await BenchWorkload.run(self.etcd, valueSize: self.workload.valueSize) { bench in
      let watch = bench.client.watch(.prefix(bench.root))
      try await waitUntilWatchRegistered(bench.client, timeout: timeout)
      let start = bench.clock.now
      let (received, elapsed) = try await withThrowingTaskGroup(of: (Int, Duration)?.self) { group in
        group.addTask {
          _ = try await bench.putAll(count: count, concurrency: concurrency)
          return nil
        }
        group.addTask {
          let received = try await BenchWorkload.countEvents(watch, until: count)
          return (received, bench.clock.now - start)
        }
        var outcome: (Int, Duration)?
        for try await finished in group where finished != nil { outcome = finished }
        return outcome ?? (0, bench.clock.now - start)
      }
      return BenchWorkload.report("watch", count: received, elapsed: elapsed)
    }
  }
}

/// `capstan bench replay`: delivery of N historical events to a watch started in the past.
struct BenchReplayCommand: EtcdCommand {
  static let configuration = CommandConfiguration(commandName: "replay", abstract: "Benchmark watch replay of history.")

  @OptionGroup var workload: BenchOptions
  @OptionGroup var etcd: EtcdOptions

  func run() async throws {
    let (count, concurrency) = (self.workload.operations, self.workload.concurrency)
    try await BenchWorkload.run(self.etcd, valueSize: self.workload.valueSize) { bench in
      let first = try await bench.client.put(key: Data((bench.root + "first").utf8), value: bench.value)
      _ = try await bench.putAll(count: count, concurrency: concurrency)
      let start = bench.clock.now
      let watch = bench.client.watch(.prefix(bench.root), options: WatchOptions(startRevision: first.header.revision + 1))
      let received = try await BenchWorkload.countEvents(watch, until: count)
      return BenchWorkload.report("replay", count: received, elapsed: bench.clock.now - start)
    }
  }
}

/// `capstan bench range`: a paginated read of N keys, `--page` keys per request.
struct BenchRangeCommand: EtcdCommand {
  static let configuration = CommandConfiguration(commandName: "range", abstract: "Benchmark a paginated range read.")

  @OptionGroup var workload: BenchOptions

  @Option(help: "Keys per range request.")
  var page = 1000

  @OptionGroup var etcd: EtcdOptions

  func validate() throws {
    guard self.page > 0 else { throw ValidationError("--page must be positive") }
  }

  func run() async throws {
    let (count, concurrency, page) = (self.workload.operations, self.workload.concurrency, Int64(self.page))
    try await BenchWorkload.run(self.etcd, valueSize: self.workload.valueSize) { bench in
      _ = try await bench.putAll(count: count, concurrency: concurrency)
      let start = bench.clock.now
      let rangeEnd = EtcdKeyRange.prefix(bench.root).rangeEnd
      var received = 0
      var key = Data(bench.root.utf8)
      while true {
        let result = try await bench.client.range(EtcdKeyRange(key: key, rangeEnd: rangeEnd), options: RangeOptions(limit: page))
        received += result.kvs.count
        guard result.more, let last = result.kvs.last else { break }
        key = last.key + Data([0])
      }
      return BenchWorkload.report("range", count: received, elapsed: bench.clock.now - start)
    }
  }
}

/// `capstan bench ingest`: N Pod documents from stored bytes into a cache with 3 indexes, against
/// `JSONDecoder` decoding the same documents, in one run (no etcd involved).
struct BenchIngestCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "ingest",
    abstract: "Benchmark ingest (bytes to cached objects with 3 indexes) against JSONDecoder.",
    discussion: """
      Generates N distinct ~1.6 KB Pod documents, then times, single-threaded and interleaved \
      (half of each side, then the other half in the other order): JSONDecoder decoding them into \
      a typed Pod, and ObjectIngestor + ObjectCache.upsert into a cache with a label index, an \
      owner UID index and a custom finalizer index (plus the built-in namespace and name \
      indexes). Prints one line: \
      ingest: N objects in S s = R objects/s (M MB/s), JSONDecoder R2 objects/s, ratio X, bytes/object B \
      where S and R are the ingest's, ratio is R / R2 and bytes/object is the mean document size. \
      Build in release mode for meaningful figures: swift run -c release capstan bench ingest --n 100000
      """)

  @Option(name: .customLong("n"), help: "Number of Pod documents.")
  var count = 100_000

  func validate() throws {
    guard self.count > 0 else { throw ValidationError("--n must be positive") }
  }

  func run() throws {
    StandardStreams.writeLines([IngestBenchmark(count: self.count).run()])
  }
}

/// The measurement behind `capstan bench ingest`.
struct IngestBenchmark {
  let count: Int

  /// The three user indexes of the benchmarked cache (as in Benchmarks/' fixtures).
  static let indexes: [CacheIndex] = [
    .label("app.kubernetes.io/name"),
    .ownerUID,
    .custom(name: "finalizer") { $0.finalizers },
  ]

  /// Runs the benchmark and returns its line.
  func run() -> String {
    let layout = SamplePod.layout
    let keyValues = (0..<self.count).map { index in
      StoredKeyValue(
        key: layout.key(namespace: PodFixture.namespace(index: index), name: PodFixture.name(index: index)),
        value: PodFixture.data(index: index), createRevision: Int64(index + 2), modRevision: Int64(index + 2),
        version: 1)
    }
    let bytes = keyValues.reduce(0) { $0 + $1.value.count }
    let logger = Logger(label: "capstan.bench.ingest") { _ in SwiftLogNoOpLogHandler() }
    let ingestor = ObjectIngestor(layout: layout, logger: logger)
    let cache = ObjectCache(layout: layout, indexes: Self.indexes)
    let decoder = JSONDecoder()
    let clock = ContinuousClock()
    var decodeTime = Duration.zero
    var ingestTime = Duration.zero
    var decoded = 0
    func decode(_ range: Range<Int>) {
      let start = clock.now
      for index in range where (try? decoder.decode(SamplePod.self, from: keyValues[index].value)) != nil { decoded += 1 }
      decodeTime += clock.now - start
    }
    func ingest(_ range: Range<Int>) {
      let start = clock.now
      for index in range {
        if case .success(let object) = ingestor.ingest(keyValues[index]) { cache.upsert(object) }
      }
      ingestTime += clock.now - start
    }
    let half = self.count / 2
    decode(0..<half)
    ingest(0..<half)
    ingest(half..<self.count)
    decode(half..<self.count)
    precondition(cache.count == self.count && decoded == self.count, "every document must decode and be cached")

    let ingestSeconds = Self.seconds(ingestTime)
    let decodeSeconds = Self.seconds(decodeTime)
    let rate = Double(self.count) / ingestSeconds
    let decoderRate = Double(self.count) / decodeSeconds
    return "ingest: \(self.count) objects in \(String(format: "%.3f", ingestSeconds)) s = "
      + "\(String(format: "%.0f", rate)) objects/s (\(String(format: "%.1f", Double(bytes) / ingestSeconds / 1e6)) MB/s), "
      + "JSONDecoder \(String(format: "%.0f", decoderRate)) objects/s, ratio \(String(format: "%.2f", rate / decoderRate)), "
      + "bytes/object \(String(format: "%.0f", Double(bytes) / Double(self.count)))"
  }

  static func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
  }
}

/// `capstan bench list`: an informer's initial list of N Pods from etcd (the paginated list at one
/// revision into a cache with 3 indexes), next to a plain paginated range of the same keys with
/// Capstan's client. Compare with `etcd-go-baseline range --n N --page P --value-size B` (same key
/// count and value size; `scripts/bench-list-vs-go` runs both).
struct BenchListCommand: EtcdCommand {
  static let configuration = CommandConfiguration(
    commandName: "list",
    abstract: "Benchmark an informer's initial list of N Pods from etcd.",
    discussion: """
      Writes N distinct ~1.6 KB Pod documents (64 writers) under /registry/<random plural>/, then \
      prints two lines: \
      range: N ops in S s = R ops/s  (a paginated range of the keys, as etcd-go-baseline range) and \
      informer-list: N objects in S s = R objects/s (M MB/s)  (an informer with 3 indexes, from \
      run() to synced). The keys are deleted at the end.
      """)

  @Option(name: .customLong("n"), help: "Number of Pods.")
  var count = 100_000

  @Option(help: "Keys per range request (the informer's page size too).")
  var page = 1000

  @OptionGroup var etcd: EtcdOptions

  func validate() throws {
    guard self.count > 0 else { throw ValidationError("--n must be positive") }
    guard self.page > 0 else { throw ValidationError("--page must be positive") }
  }

  func run() async throws {
    let (count, page) = (self.count, self.page)
    let lines = try await self.etcd.withClient { client in
      let layout = ResourceLayout(
        kind: "Pod", plural: "benchpods\(String(UInt32.random(in: .min ... .max), radix: 16))", isNamespaced: true)
      let prefix = layout.prefix
      do {
        let lines = try await Self.measure(client: client, layout: layout, count: count, page: page)
        try await client.delete(.prefix(prefix), timeout: BenchWorkload.cleanupTimeout)
        return lines
      } catch {
        _ = try? await client.delete(.prefix(prefix), timeout: BenchWorkload.cleanupTimeout)
        throw error
      }
    }
    StandardStreams.writeLines(lines)
  }

  static func measure(client: EtcdClient, layout: ResourceLayout, count: Int, page: Int) async throws -> [String] {
    let concurrency = 64
    let clock = ContinuousClock()
    var bytes = 0
    for index in 0..<count { bytes += PodFixture.document(index: index).count }
    try await withThrowingTaskGroup(of: Void.self) { group in
      for writer in 0..<concurrency {
        group.addTask {
          for index in stride(from: writer, to: count, by: concurrency) {
            let key = layout.key(namespace: PodFixture.namespace(index: index), name: PodFixture.name(index: index))
            try await client.put(key: Data(key.utf8), value: PodFixture.data(index: index))
          }
        }
      }
      try await group.waitForAll()
    }

    // A plain paginated range of the same keys (what etcd-go-baseline's range does).
    let rangeStart = clock.now
    let rangeEnd = EtcdKeyRange.prefix(layout.prefix).rangeEnd
    var ranged = 0
    var key = Data(layout.prefix.utf8)
    while true {
      let result = try await client.range(EtcdKeyRange(key: key, rangeEnd: rangeEnd), options: RangeOptions(limit: Int64(page)))
      ranged += result.kvs.count
      guard result.more, let last = result.kvs.last else { break }
      key = last.key + Data([0])
    }
    let rangeLine = BenchWorkload.report("range", count: ranged, elapsed: clock.now - rangeStart)

    // The informer's initial list into a cache with 3 indexes.
    let logger = Logger(label: "capstan.bench.list") { _ in SwiftLogNoOpLogHandler() }
    let informer = try Informer(
      layout: layout, backend: EtcdBackend(client: client), indexes: IngestBenchmark.indexes,
      configuration: InformerConfiguration(pageSize: page), logger: logger)
    let listStart = clock.now
    let listed: (Int, Duration) = try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { try await informer.run() }
      let cache = try await informer.waitForSync(timeout: .seconds(600))
      let elapsed = clock.now - listStart
      group.cancelAll()
      return (cache.count, elapsed)
    }
    let seconds = IngestBenchmark.seconds(listed.1)
    let listLine =
      "informer-list: \(listed.0) objects in \(String(format: "%.3f", seconds)) s = "
      + "\(String(format: "%.0f", Double(listed.0) / seconds)) objects/s "
      + "(\(String(format: "%.1f", Double(bytes) / seconds / 1e6)) MB/s)"
    return [rangeLine, listLine]
  }
}
