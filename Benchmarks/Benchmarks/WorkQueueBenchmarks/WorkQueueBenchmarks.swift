// WorkQueue throughput (issue 4's "Benchmarks"):
//
// - add + get + done of distinct keys, single-threaded: >= 2M keys/s;
// - the same against a bare `Deque` behind one `Mutex` (append, popFirst — no dedup, no
//   processing set, no metrics): >= 0.5x its rate.
//
// A third side, reported as a detail and not as a goal: the least a de-duplicating queue must do,
// a `Deque` plus one `[Int: Bool]` of per-key state behind one `Mutex`, one lock per add, get and
// done (client-go's queue does this and more). It shows how much of the gap to the bare `Deque`
// is the de-duplication itself.
//
// Both sides move the same keys in batches of 1,000 (add 1,000, then get and done each), in ABBA
// order within each iteration, so machine load affects both alike. The queue runs with its
// defaults (exponential backoff limiter, the global metrics factory, which is a no-op here as in
// any process that did not bootstrap one).

import Benchmark
import Capstan
import CapstanBenchmarkSupport
import DequeModule
import Synchronization

/// The baseline: a FIFO of keys behind one lock.
final class LockedDeque: Sendable {
  let keys = Mutex(Deque<Int>())

  func append(_ key: Int) { self.keys.withLock { $0.append(key) } }
  func popFirst() -> Int? { self.keys.withLock { $0.popFirst() } }
}

/// The floor of a de-duplicating queue: per-key state (queued or processing) beside the FIFO.
final class LockedDedupDeque: Sendable {
  struct State {
    var keys = Deque<Int>()
    /// false: queued; true: processing.
    var states: [Int: Bool] = [:]
  }
  let state = Mutex(State())

  func add(_ key: Int) {
    self.state.withLock { state in
      if state.states[key] == nil {
        state.states[key] = false
        state.keys.append(key)
      }
    }
  }
  func get() -> Int? {
    self.state.withLock { state in
      guard let key = state.keys.popFirst() else { return nil }
      state.states[key] = true
      return key
    }
  }
  func done(_ key: Int) { self.state.withLock { _ = $0.states.removeValue(forKey: key) } }
}

let keysPerRound = 1_000_000
let batch = 1_000

let throughputGoal = Goal.figure(
  "workqueue-add-get-done", .atLeast(2_000_000), unit: "keys/s", metricName: "keys/s")
let versusDequeGoal = Goal.ratio("workqueue-vs-locked-deque", .atLeast(0.5))

/// Moves `keysPerRound` keys through `queue`; returns the seconds it took.
func runQueue(_ queue: WorkQueue<Int>, offset: Int) async -> Double {
  let started = ContinuousClock.now
  var next = offset
  for _ in 0..<(keysPerRound / batch) {
    for key in next..<(next + batch) { queue.add(key) }
    for _ in 0..<batch {
      guard let key = await queue.get() else { fatalError("the queue ran dry") }
      queue.done(key)
    }
    next += batch
  }
  return (ContinuousClock.now - started).seconds
}

/// Moves `keysPerRound` keys through `deque`; returns the seconds it took.
func runDeque(_ deque: LockedDeque, offset: Int) -> Double {
  let started = ContinuousClock.now
  var next = offset
  var sum = 0
  for _ in 0..<(keysPerRound / batch) {
    for key in next..<(next + batch) { deque.append(key) }
    for _ in 0..<batch {
      guard let key = deque.popFirst() else { fatalError("the deque ran dry") }
      sum &+= key
    }
    next += batch
  }
  blackHole(sum)
  return (ContinuousClock.now - started).seconds
}

/// Moves `keysPerRound` keys through `queue`; returns the seconds it took.
func runDedupDeque(_ queue: LockedDedupDeque, offset: Int) -> Double {
  let started = ContinuousClock.now
  var next = offset
  for _ in 0..<(keysPerRound / batch) {
    for key in next..<(next + batch) { queue.add(key) }
    for _ in 0..<batch {
      guard let key = queue.get() else { fatalError("the queue ran dry") }
      queue.done(key)
    }
    next += batch
  }
  return (ContinuousClock.now - started).seconds
}

let benchmarks: @Sendable () -> Void = {
  Benchmark.defaultConfiguration = .init(
    metrics: [.wallClock], timeUnits: .milliseconds, warmupIterations: 1, maxDuration: .seconds(20), maxIterations: 7)

  Benchmark(
    "WorkQueue add+get+done, 1M distinct keys in batches of 1,000 (vs Deque behind one Mutex)",
    configuration: .init(metrics: [throughputGoal.metric, versusDequeGoal.metric])
  ) { benchmark in
    let queue = WorkQueue<Int>(name: "benchmark")
    let deque = LockedDeque()
    var queueSeconds = 0.0
    var dequeSeconds = 0.0
    for (round, isQueue) in [false, true, true, false].enumerated() {
      let offset = round * keysPerRound
      if isQueue {
        queueSeconds += await runQueue(queue, offset: offset)
      } else {
        dequeSeconds += runDeque(deque, offset: offset)
      }
    }
    precondition(queue.count == 0)
    let dedup = LockedDedupDeque()
    let dedupSeconds = runDedupDeque(dedup, offset: 0) + runDedupDeque(dedup, offset: keysPerRound)
    let queueRate = Double(2 * keysPerRound) / queueSeconds
    let dequeRate = Double(2 * keysPerRound) / dequeSeconds
    throughputGoal.record(queueRate, in: benchmark)
    versusDequeGoal.record(queueRate / dequeRate, in: benchmark)
    detail(
      "workqueue",
      "iteration \(benchmark.currentIteration): WorkQueue \(fixed(queueRate / 1e6)) M keys/s "
        + "(\(fixed(1e9 / queueRate, 0)) ns/key), locked Deque \(fixed(dequeRate / 1e6)) M keys/s, "
        + "locked Deque with per-key dedup \(fixed(Double(2 * keysPerRound) / dedupSeconds / 1e6)) M keys/s "
        + "(WorkQueue at \(fixed(dedupSeconds / queueSeconds))x of it)")
  } teardown: {
    printDetails()
    throughputGoal.report()
    versusDequeGoal.report()
  }
}
