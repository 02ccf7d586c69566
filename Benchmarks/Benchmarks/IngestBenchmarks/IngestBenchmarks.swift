// From stored bytes to cached objects (issues 3 and 5):
//
// - ingest: StoredKeyValue → ObjectIngestor → ObjectCache.upsert (3 indexes) against JSONDecoder
//   decoding the same documents into `Pod`: >= 10x, and >= 200 MB/s single-threaded;
// - a full typed read of the cached objects (`decode(as: Pod.self)`) costs no more than
//   JSONDecoder alone on the same bytes (time ratio <= 1.05);
// - informer pipeline on MemoryBackend: events/s from backend write to handler, >= 0.7x the rate
//   of JSONDecoder decoding the same documents alone;
// - relist of 100k objects after a compaction: peak resident memory <= 1.2x the steady-state cache.
//
// Candidate and baseline run in the same process on the same documents, interleaved.

import Benchmark
import Capstan
import CapstanBenchmarkSupport
import CapstanEtcd
import CapstanTesting
import Foundation
import Logging

// MARK: Goals

let ingestGoal = Goal.ratio("ingest-vs-jsondecoder", .atLeast(10))
let ingestThroughputGoal = Goal.figure("ingest-throughput", .atLeast(200), unit: "MB/s", metricName: "ingest MB/s")
/// A full typed read of a cached object (`CachedObject.decode(as:)`) against `JSONDecoder` alone on
/// the same bytes: time per object, so at most 1 means "costs no more" (5% allowed for noise).
let typedReadGoal = Goal.ratio("typed-read-after-ingest-vs-jsondecoder", .atMost(1.05))
let pipelineGoal = Goal.ratio("informer-pipeline-vs-jsondecoder", .atLeast(0.7))
let relistGoal = Goal.ratio("relist-peak-vs-synced-cache", .atMost(1.2), summary: .worst)

let candidateRate = BenchmarkMetric.custom("candidate objects/s", polarity: .prefersLarger, useScalingFactor: false)
let baselineRate = BenchmarkMetric.custom("JSONDecoder objects/s", polarity: .prefersLarger, useScalingFactor: false)

// MARK: Data

let ingestCount = 20_000
/// Real, distinct documents as the backend would deliver them.
let ingestKeyValues = Fixtures.keyValues(0..<ingestCount)

let pipelineCount = 10_000
let pipelineKeyValues = Fixtures.keyValues(0..<pipelineCount)

let relistCount = 100_000

let benchmarks: @Sendable () -> Void = {
  Benchmark.defaultConfiguration = .init(
    metrics: [.wallClock], timeUnits: .milliseconds, warmupIterations: 0, maxDuration: .seconds(30), maxIterations: 5)

  // MARK: ingest

  Benchmark(
    "Ingest 20k Pods: StoredKeyValue → ObjectIngestor → ObjectCache.upsert with 3 indexes (vs JSONDecoder into Pod)",
    configuration: .init(
      metrics: [ingestGoal.metric, ingestThroughputGoal.metric, candidateRate, baselineRate], maxIterations: 4)
  ) { benchmark in
    let keyValues = ingestKeyValues
    let bytes = Double(keyValues.reduce(0) { $0 + $1.value.count })
    let chunks = 4
    let perChunk = keyValues.count / chunks
    let decoder = JSONDecoder()
    let ingestor = ObjectIngestor(layout: Fixtures.layout, logger: Fixtures.silentLogger)
    let cache = ObjectCache(layout: Fixtures.layout, indexes: Fixtures.threeIndexes)
    var candidate = 0.0
    var baseline = 0.0
    for chunk in 0..<chunks {
      let slice = keyValues[(chunk * perChunk)..<((chunk + 1) * perChunk)]
      let decode = {
        baseline += seconds {
          for keyValue in slice { blackHole(try! decoder.decode(Pod.self, from: keyValue.value)) }
        }
      }
      let ingest = {
        candidate += seconds {
          for keyValue in slice {
            guard case .success(let object) = ingestor.ingest(keyValue) else { fatalError("rejected \(keyValue.key)") }
            cache.upsert(object)
          }
        }
      }
      if chunk % 2 == 0 {
        decode()
        ingest()
      } else {
        ingest()
        decode()
      }
    }
    precondition(cache.count == ingestCount)
    let count = Double(chunks * perChunk)
    benchmark.measurement(candidateRate, Int(count / candidate))
    benchmark.measurement(baselineRate, Int(count / baseline))
    ingestGoal.record(baseline / candidate, in: benchmark)
    ingestThroughputGoal.record(bytes / candidate / 1e6, in: benchmark)
    detail(
      "ingest",
      "\(ingestCount) objects: ObjectIngestor+upsert \(fixed(count / candidate, 0)) objects/s "
        + "(\(fixed(bytes / candidate / 1e6, 1)) MB/s), JSONDecoder \(fixed(count / baseline, 0)) objects/s "
        + "(\(fixed(bytes / baseline / 1e6, 1)) MB/s)")
  } setup: {
    _ = ingestKeyValues
  } teardown: {
    printDetails()
    ingestGoal.report()
    ingestThroughputGoal.report()
  }

  // MARK: typed read after ingest

  Benchmark(
    "Typed read after ingest: CachedObject.decode(as: Pod.self) for 20k cached Pods (vs JSONDecoder on the same bytes)",
    configuration: .init(metrics: [typedReadGoal.metric, candidateRate, baselineRate], maxIterations: 4)
  ) { benchmark in
    let keyValues = ingestKeyValues
    let ingestor = ObjectIngestor(layout: Fixtures.layout, logger: Fixtures.silentLogger)
    let objects = keyValues.map { try! ingestor.ingest($0).get() }
    let decoder = JSONDecoder()
    let chunks = 4
    let perChunk = keyValues.count / chunks
    let (baseline, candidate) = interleaved(rounds: chunks) { chunk in
      for index in (chunk * perChunk)..<((chunk + 1) * perChunk) {
        blackHole(try! decoder.decode(Pod.self, from: keyValues[index].value))
      }
    } candidate: { chunk in
      for index in (chunk * perChunk)..<((chunk + 1) * perChunk) { blackHole(try! objects[index].decode(as: Pod.self)) }
    }
    let count = Double(chunks * perChunk)
    benchmark.measurement(candidateRate, Int(count / candidate))
    benchmark.measurement(baselineRate, Int(count / baseline))
    typedReadGoal.record(candidate / baseline, in: benchmark)
    detail(
      "typed-read",
      "\(Int(count)) objects: decode(as:) \(fixed(count / candidate, 0)) objects/s, JSONDecoder alone "
        + "\(fixed(count / baseline, 0)) objects/s")
  } setup: {
    _ = ingestKeyValues
  } teardown: {
    printDetails()
    typedReadGoal.report()
  }

  // MARK: informer pipeline

  Benchmark(
    "Informer pipeline on MemoryBackend: 10k puts to handler events, 3 indexes (vs JSONDecoder into Pod alone)",
    configuration: .init(metrics: [pipelineGoal.metric, candidateRate, baselineRate], maxIterations: 5)
  ) { benchmark in
    let keyValues = pipelineKeyValues
    let decoder = JSONDecoder()
    let decode = {
      seconds { for keyValue in keyValues { blackHole(try! decoder.decode(Pod.self, from: keyValue.value)) } }
    }
    var baseline = 0.0
    var candidate = 0.0
    if benchmark.currentIteration % 2 == 0 { baseline += decode() }
    candidate += try await pipelineSeconds(keyValues)
    if benchmark.currentIteration % 2 == 1 { baseline += decode() }
    let count = Double(keyValues.count)
    benchmark.measurement(candidateRate, Int(count / candidate))
    benchmark.measurement(baselineRate, Int(count / baseline))
    pipelineGoal.record(baseline / candidate, in: benchmark)
    detail(
      "informer-pipeline",
      "\(keyValues.count) puts: \(fixed(count / candidate, 0)) events/s to the handler; "
        + "JSONDecoder alone \(fixed(count / baseline, 0)) objects/s")
  } setup: {
    _ = pipelineKeyValues
  } teardown: {
    printDetails()
    pipelineGoal.report()
  }

  // MARK: relist

  Benchmark(
    "Relist in place of 100k Pods after a compaction on MemoryBackend: peak RSS vs the synced cache's RSS",
    configuration: .init(metrics: [relistGoal.metric], maxIterations: 1)
  ) { benchmark in
    try await measureRelist(benchmark)
  } teardown: {
    printDetails()
    relistGoal.report()
  }
}

// MARK: Pipeline

/// Seconds from the first of `keyValues`' puts into a fresh MemoryBackend until a handler of a
/// synced informer (3 indexes) has received an event for each.
func pipelineSeconds(_ keyValues: [StoredKeyValue]) async throws -> Double {
  let backend = MemoryBackend(logger: Fixtures.silentLogger)
  let informer = try Informer(
    layout: Fixtures.layout, backend: backend, indexes: Fixtures.threeIndexes,
    configuration: InformerConfiguration(stallTimeout: .seconds(3600)), logger: Fixtures.silentLogger)
  return try await withThrowingTaskGroup(of: Void.self) { group in
    group.addTask { try await informer.run() }
    _ = try await informer.waitForSync()
    let events = informer.addHandler("benchmark")
    let expected = keyValues.count
    let start = ContinuousClock.now
    async let received = timeOfLastEvent(events, expected: expected)
    for keyValue in keyValues {
      _ = try await backend.put(keyValue.key, value: keyValue.value, lease: nil)
    }
    let end = await received
    group.cancelAll()
    return (end - start).seconds
  }
}

/// When `events` has delivered its `expected`-th event.
func timeOfLastEvent(_ events: InformerEventStream, expected: Int) async -> ContinuousClock.Instant {
  var count = 0
  for await _ in events {
    count += 1
    if count == expected { break }
  }
  precondition(count == expected, "the handler got \(count) of \(expected) events")
  return ContinuousClock.now
}

// MARK: Relist
//
// Method: the documents are written to a MemoryBackend first (they live in the store, as they
// would in the embedded default deployment) and the process's resident memory is taken as the
// baseline B0 (after malloc_trim). An informer (3 indexes) lists them; its synced cache costs
// S = RSS − B0. Then two keys outside the prefix are written and the store is compacted at the
// newest revision, and the watches are broken: the informer resumes from its last revision + 1,
// which is now compacted, and relists in place. The peak resident memory P during the relist is
// the kernel's high-water mark (VmHWM, reset just before through /proc/self/clear_refs), and,
// as a cross-check, the maximum of RSS sampled every millisecond. The figure is (P − B0) / S.
// Done twice; the worst is reported.
//
// Caveat: MemoryBackend hands out its stored Data, so the cache's raw bytes are shared with the
// store and S counts only what the cache adds (metadata, keys, dictionaries, indexes) — the
// smaller denominator makes the goal harder, not easier.

func measureRelist(_ benchmark: Benchmark) async throws {
  let backend = MemoryBackend(logger: Fixtures.silentLogger)
  do {
    var keyValues = Fixtures.keyValues(0..<relistCount)
    for keyValue in keyValues { _ = try await backend.put(keyValue.key, value: keyValue.value, lease: nil) }
    keyValues.removeAll()
  }
  Memory.trim()
  let processBaseline = Memory.residentBytes()
  // A short resume backoff, so that the time measured is the relist's (the default 0.8 s doubles
  // per failure: the broken watch, then the compacted one).
  let configuration = InformerConfiguration(
    backoff: EtcdBackoff(initial: .milliseconds(5), maximum: .milliseconds(20)), stallTimeout: .seconds(3600))
  let informer = try Informer(
    layout: Fixtures.layout, backend: backend, indexes: Fixtures.threeIndexes, configuration: configuration,
    logger: Fixtures.silentLogger)
  try await withThrowingTaskGroup(of: Void.self) { group in
    let listStarted = ContinuousClock.now
    group.addTask { try await informer.run() }
    let cache = try await informer.waitForSync(timeout: .seconds(600))
    let initialListSeconds = (ContinuousClock.now - listStarted).seconds
    precondition(cache.count == relistCount)
    Memory.trim()
    let synced = Memory.residentBytes()
    let cacheBytes = synced - processBaseline
    for round in 1...2 {
      _ = try await backend.put("/registry/benchmark-other/a", value: Data("x".utf8), lease: nil)
      let written = try await backend.put("/registry/benchmark-other/b", value: Data("x".utf8), lease: nil)
      backend.faults.compactNow()
      Memory.trim()
      let before = Memory.residentBytes()
      let highWaterMarkReset = Memory.resetPeakResident()
      var sampledPeak = Memory.residentBytes()
      let started = ContinuousClock.now
      backend.faults.breakWatches()
      while informer.lastSyncRevision < written.revision {
        guard ContinuousClock.now - started < .seconds(600) else { fatalError("no relist within 600 s") }
        try await Task.sleep(for: .milliseconds(1))
        sampledPeak = max(sampledPeak, Memory.residentBytes())
      }
      let relistSeconds = (ContinuousClock.now - started).seconds
      let highWaterMark = highWaterMarkReset ? Memory.peakResidentBytes() : nil
      let peak = max(sampledPeak, highWaterMark ?? 0)
      precondition(cache.count == relistCount)
      relistGoal.record(Double(peak - processBaseline) / Double(cacheBytes), in: benchmark)
      detail(
        "relist",
        "round \(round): \(relistCount) objects relisted in \(fixed(relistSeconds, 2)) s (initial list "
          + "\(fixed(initialListSeconds, 2)) s); synced cache \(megabytes(cacheBytes)) MB resident "
          + "(\(cacheBytes / relistCount) B/object "
          + "beyond the store); before relist \(megabytes(before - processBaseline)) MB; peak "
          + "\(megabytes(peak - processBaseline)) MB (high-water mark "
          + (highWaterMark.map { "\(megabytes($0 - processBaseline)) MB" } ?? "unavailable")
          + ", sampled \(megabytes(sampledPeak - processBaseline)) MB), all above the process before the cache")
    }
    group.cancelAll()
  }
}

func megabytes(_ bytes: Int) -> String { fixed(Double(bytes) / 1e6, 1) }
