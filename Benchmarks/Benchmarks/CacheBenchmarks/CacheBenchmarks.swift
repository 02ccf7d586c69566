// ObjectCache against a plain dictionary behind one Mutex (issue 3's "Benchmarks"):
//
// - get by UID and get by index (ownerUID) with 1M Pod-shaped objects: >= 0.5x the baseline;
// - upsert with 3 indexes (label app.kubernetes.io/name, ownerUID, custom "finalizer"; the
//   namespace index is built in): >= 0.3x of inserting into the baseline dictionary;
// - memory per cached Pod <= 1.3x the bytes of its decoded value, index overhead <= 64 B per
//   object per index.
//
// Candidate and baseline run in the same process on the same data, interleaved (ABBA order within
// each iteration), so machine load affects both alike; each iteration records the ratio.

import Benchmark
import Capstan
import CapstanBenchmarkSupport
import CapstanTesting
import Foundation
import Synchronization

// MARK: Baseline

/// The baseline: decoded Pods in one `[UID: Pod]` dictionary behind one `Mutex`, plus (for index
/// lookups) a plain `[ownerUID: [UID]]` dictionary behind the same lock.
final class LockedPodDictionary: Sendable {
  struct State {
    var pods: [String: Pod] = [:]
    var uidsByOwner: [String: [String]] = [:]
  }

  let state = Mutex(State())

  func insert(_ pod: Pod) {
    self.state.withLock { $0.pods[pod.metadata.uid] = pod }
  }

  func insertIndexed(_ pod: Pod) {
    self.state.withLock { state in
      state.pods[pod.metadata.uid] = pod
      for owner in pod.metadata.ownerReferences { state.uidsByOwner[owner.uid, default: []].append(pod.metadata.uid) }
    }
  }

  func pod(uid: String) -> Pod? {
    self.state.withLock { $0.pods[uid] }
  }

  func pods(ownedBy owner: String) -> [Pod] {
    self.state.withLock { state in
      guard let uids = state.uidsByOwner[owner] else { return [] }
      return uids.compactMap { state.pods[$0] }
    }
  }
}

// MARK: Data

let populationSize = 1_000_000

/// 1M objects, built once per process (about 10 s), shared by the lookup and upsert benchmarks.
let population: PodPopulation = {
  var population: PodPopulation?
  let elapsed = seconds { population = PodPopulation(count: populationSize) }
  detail("setup", "built \(populationSize) objects and decoded Pods in \(fixed(elapsed, 1)) s")
  return population!
}()

/// The population in an ObjectCache with the three indexes and in the baseline dictionary.
struct LoadedContainers: Sendable {
  let cache: ObjectCache
  let baseline: LockedPodDictionary
  /// Every UID, in a fixed random order.
  let uidLookups: [String]
  /// Every owner UID, in a fixed random order.
  let ownerLookups: [String]
}

let loadedContainers: LoadedContainers = {
  let started = ContinuousClock.now
  let cache = ObjectCache(layout: Fixtures.layout, indexes: Fixtures.threeIndexes)
  for object in population.objects { cache.upsert(object) }
  let baseline = LockedPodDictionary()
  for pod in population.pods { baseline.insertIndexed(pod) }
  precondition(cache.count == populationSize && baseline.state.withLock { $0.pods.count } == populationSize)
  detail("setup", "filled the cache and the baseline in \(fixed((ContinuousClock.now - started).seconds, 1)) s")
  return LoadedContainers(
    cache: cache, baseline: baseline, uidLookups: shuffled(population.objects.map(\.uid)),
    ownerLookups: shuffled(population.ownerUIDs))
}()

// MARK: Goals

let getByUIDGoal = Goal.ratio("objectcache-get-uid", .atLeast(0.5))
let getByIndexGoal = Goal.ratio("objectcache-get-index-owneruid", .atLeast(0.5))
let upsertGoal = Goal.ratio("objectcache-upsert-3-indexes", .atLeast(0.3))
let memoryGoal = Goal.ratio("memory-per-object-vs-decoded", .atMost(1.3))
let memoryVersusJSONGoal = Goal.ratio(
  "memory-per-object-vs-json", .atMost(1.3), metricName: "ratio vs JSON ×1000")
let indexOverheadGoal = Goal.figure(
  "index-overhead-per-object-per-index", .atMost(64), unit: "B", metricName: "index B/object/index (max)")

let candidateNanoseconds = BenchmarkMetric.custom("candidate ns/op", polarity: .prefersSmaller, useScalingFactor: false)
let baselineNanoseconds = BenchmarkMetric.custom("baseline ns/op", polarity: .prefersSmaller, useScalingFactor: false)


let benchmarks: @Sendable () -> Void = {
  Benchmark.defaultConfiguration = .init(
    metrics: [.wallClock], timeUnits: .milliseconds, warmupIterations: 0, maxDuration: .seconds(20), maxIterations: 5)

  // MARK: get by UID

  Benchmark(
    "ObjectCache get by UID, 1M objects (vs [UID: Pod] behind one Mutex)",
    configuration: .init(metrics: [getByUIDGoal.metric, candidateNanoseconds, baselineNanoseconds], maxIterations: 5)
  ) { benchmark in
    let containers = loadedContainers
    let lookups = containers.uidLookups
    let rounds = 4
    let perRound = lookups.count / rounds
    let (baseline, candidate) = interleaved(rounds: rounds) { round in
      for uid in lookups[(round * perRound)..<((round + 1) * perRound)] {
        blackHole(containers.baseline.pod(uid: uid))
      }
    } candidate: { round in
      for uid in lookups[(round * perRound)..<((round + 1) * perRound)] {
        blackHole(containers.cache.object(uid: uid))
      }
    }
    let operations = Double(rounds * perRound)
    benchmark.measurement(candidateNanoseconds, Int(candidate / operations * 1e9))
    benchmark.measurement(baselineNanoseconds, Int(baseline / operations * 1e9))
    getByUIDGoal.record(baseline / candidate, in: benchmark)
    detail(
      "get-uid",
      "iteration \(benchmark.currentIteration): ObjectCache \(fixed(candidate / operations * 1e9, 0)) ns/op, "
        + "baseline \(fixed(baseline / operations * 1e9, 0)) ns/op")
  } setup: {
    _ = loadedContainers
  } teardown: {
    printDetails()
    getByUIDGoal.report()
  }

  // MARK: get by index

  Benchmark(
    "ObjectCache get by ownerUID index, 1M objects, 10 per owner (vs [owner: [UID]] + [UID: Pod] behind one Mutex)",
    configuration: .init(metrics: [getByIndexGoal.metric, candidateNanoseconds, baselineNanoseconds], maxIterations: 5)
  ) { benchmark in
    let containers = loadedContainers
    let owners = containers.ownerLookups
    let index = CacheIndex.ownerUID
    let rounds = 4
    let perRound = owners.count / rounds
    let (baseline, candidate) = interleaved(rounds: rounds) { round in
      for owner in owners[(round * perRound)..<((round + 1) * perRound)] {
        blackHole(containers.baseline.pods(ownedBy: owner))
      }
    } candidate: { round in
      for owner in owners[(round * perRound)..<((round + 1) * perRound)] {
        blackHole(try! containers.cache.objects(in: index, value: owner))
      }
    }
    let operations = Double(rounds * perRound)
    benchmark.measurement(candidateNanoseconds, Int(candidate / operations * 1e9))
    benchmark.measurement(baselineNanoseconds, Int(baseline / operations * 1e9))
    getByIndexGoal.record(baseline / candidate, in: benchmark)
    detail(
      "get-index-owneruid",
      "iteration \(benchmark.currentIteration): ObjectCache \(fixed(candidate / operations * 1e9, 0)) ns/op, "
        + "baseline \(fixed(baseline / operations * 1e9, 0)) ns/op")
  } setup: {
    _ = loadedContainers
  } teardown: {
    printDetails()
    getByIndexGoal.report()
  }

  // MARK: upsert

  Benchmark(
    "ObjectCache upsert with 3 indexes, 1M objects into an empty cache (vs inserting into [UID: Pod] behind one Mutex)",
    configuration: .init(metrics: [upsertGoal.metric, candidateNanoseconds, baselineNanoseconds], maxIterations: 3)
  ) { benchmark in
    // Each side fills a fresh, empty container with all 1M objects, twice, in the order B C C B.
    // Creating and freeing the containers is not timed.
    var baseline = 0.0
    var candidate = 0.0
    for side in [false, true, true, false] {
      if side {
        var cache: ObjectCache? = ObjectCache(layout: Fixtures.layout, indexes: Fixtures.threeIndexes)
        candidate += seconds { for object in population.objects { cache!.upsert(object) } }
        precondition(cache!.count == populationSize)
        cache = nil
      } else {
        var dictionary: LockedPodDictionary? = LockedPodDictionary()
        baseline += seconds { for pod in population.pods { dictionary!.insert(pod) } }
        dictionary = nil
      }
    }
    let operations = Double(2 * populationSize)
    benchmark.measurement(candidateNanoseconds, Int(candidate / operations * 1e9))
    benchmark.measurement(baselineNanoseconds, Int(baseline / operations * 1e9))
    upsertGoal.record(baseline / candidate, in: benchmark)
    detail(
      "upsert-3-indexes",
      "iteration \(benchmark.currentIteration): ObjectCache \(fixed(candidate / operations * 1e9, 0)) ns/op, "
        + "baseline \(fixed(baseline / operations * 1e9, 0)) ns/op")
  } setup: {
    _ = population
  } teardown: {
    printDetails()
    upsertGoal.report()
  }

  // MARK: memory

  Benchmark(
    "ObjectCache memory per Pod and per index entry, 100k real documents (vs decoded Pod values)",
    configuration: .init(
      metrics: [memoryGoal.metric, memoryVersusJSONGoal.metric, indexOverheadGoal.metric], maxIterations: 1)
  ) { benchmark in
    measureMemory(benchmark)
  } setup: {
    _ = memoryDocuments
  } teardown: {
    printDetails()
    memoryGoal.report()
    memoryVersusJSONGoal.report()
    indexOverheadGoal.report()
  }
}

// MARK: Memory method
//
// Heap bytes are measured, not estimated: `Memory.measureHeap` reads glibc's mallinfo2 (bytes in
// use, malloc's chunk headers and rounding included) before and after building a structure that
// stays alive, after `malloc_trim`, with the benchmark's malloc interposer counting allocations
// meanwhile so that its 16-byte per-allocation header can be subtracted. The delta divided by the
// object count is the per-object cost, every allocation that holds the structure included
// (strings, dictionaries, arrays, the Data buffers, the container's own slots).
//
// - Decoded: 100k documents decoded by JSONDecoder into `Pod`s held in an array (the value's
//   inline size is counted through the array's storage).
// - Cached: the same documents ingested as the informer does — for each, a fresh key String and a
//   fresh Data (as a backend delivers them) → ObjectIngestor → ObjectCache.upsert — into a cache
//   with no user index (only the built-in namespace and name indexes, which every cache has).
// - Index overhead: the cached objects (already built, shared) upserted into a fresh cache with
//   one user index, minus the same into a fresh cache with none, per object; also with all three
//   (divided by 3). Each of the three indexes holds exactly one entry per object here.

let memoryObjectCount = 100_000

/// The documents of the memory benchmark, as bytes (copied into fresh Data when cached) and as Data
/// (read by the decoder), with their average size.
let memoryDocuments: (bytes: [[UInt8]], data: [Data]) = {
  let bytes = (0..<memoryObjectCount).map { PodFixture.document(index: $0) }
  return (bytes, bytes.map { Data($0) })
}()

func measureMemory(_ benchmark: Benchmark) {
  let documents = memoryDocuments
  let count = Double(memoryObjectCount)
  let jsonBytes = Double(documents.bytes.reduce(0) { $0 + $1.count }) / count

  let (decodedPods, decoded) = Memory.measureHeap { () -> [Pod] in
    let decoder = JSONDecoder()
    var pods: [Pod] = []
    pods.reserveCapacity(memoryObjectCount)
    for data in documents.data { pods.append(try! decoder.decode(Pod.self, from: data)) }
    return pods
  }
  precondition(decodedPods.count == memoryObjectCount)

  let (cache, cached) = Memory.measureHeap { () -> ObjectCache in
    let ingestor = ObjectIngestor(layout: Fixtures.layout, logger: Fixtures.silentLogger)
    let cache = ObjectCache(layout: Fixtures.layout)
    for (index, bytes) in documents.bytes.enumerated() {
      let keyValue = StoredKeyValue(
        key: Fixtures.key(index: index), value: Data(bytes), createRevision: Int64(index + 2),
        modRevision: Int64(index + 2), version: 1)
      cache.upsert(try! ingestor.ingest(keyValue).get())
    }
    return cache
  }
  precondition(cache.count == memoryObjectCount)
  let objects = cache.allObjects()

  func cacheFootprint(_ indexes: [CacheIndex]) -> Int {
    let (built, delta) = Memory.measureHeap { () -> ObjectCache in
      let cache = ObjectCache(layout: Fixtures.layout, indexes: indexes)
      for object in objects { cache.upsert(object) }
      return cache
    }
    precondition(built.count == memoryObjectCount)
    return delta.footprint
  }
  let withoutIndexes = cacheFootprint([])
  var perIndex: [(String, Double)] = []
  for index in Fixtures.threeIndexes {
    perIndex.append((index.name, Double(cacheFootprint([index]) - withoutIndexes) / count))
  }
  perIndex.append(("all three / 3", Double(cacheFootprint(Fixtures.threeIndexes) - withoutIndexes) / count / 3))

  let decodedPerObject = Double(decoded.footprint) / count
  let cachedPerObject = Double(cached.footprint) / count
  memoryGoal.record(cachedPerObject / decodedPerObject, in: benchmark)
  memoryVersusJSONGoal.record(cachedPerObject / jsonBytes, in: benchmark)
  indexOverheadGoal.record(perIndex.map(\.1).max() ?? 0, in: benchmark)

  detail(
    "memory",
    "\(memoryObjectCount) Pods, JSON \(fixed(jsonBytes, 0)) B each; decoded Pod \(fixed(decodedPerObject, 0)) B "
      + "(\(fixed(Double(decoded.requested) / count, 0)) B requested, \(fixed(Double(decoded.allocations) / count, 1)) "
      + "allocations, inline \(MemoryLayout<Pod>.stride) B); cached \(fixed(cachedPerObject, 0)) B "
      + "(\(fixed(Double(cached.requested) / count, 0)) B requested, \(fixed(Double(cached.allocations) / count, 1)) "
      + "allocations; CachedObject inline \(MemoryLayout<CachedObject>.stride) B); cache without user indexes "
      + "\(fixed(Double(withoutIndexes) / count, 0)) B/object over shared objects"
      + (Memory.interposerPresent ? "" : "; no malloc interposer: footprint not corrected, requested bytes unknown"))
  detail(
    "index-overhead",
    perIndex.map { "\($0.0) \(fixed($0.1, 1)) B" }.joined(separator: ", ") + " per object per index")
  withExtendedLifetime((decodedPods, cache)) {}
}
