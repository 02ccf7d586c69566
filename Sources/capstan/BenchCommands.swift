import ArgumentParser
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
