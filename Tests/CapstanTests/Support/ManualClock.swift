import Synchronization

/// A clock that moves only when a test advances it; sleepers wake when their deadline is reached.
final class ManualClock: Clock, Sendable {
  struct Instant: InstantProtocol {
    var offset: Duration
    func advanced(by duration: Duration) -> Instant { Instant(offset: self.offset + duration) }
    func duration(to other: Instant) -> Duration { other.offset - self.offset }
    static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.offset < rhs.offset }
  }

  private struct Sleeper {
    var deadline: Instant
    var continuation: CheckedContinuation<Void, any Error>
  }

  private struct State {
    var now = Instant(offset: .zero)
    var sleepers: [Int: Sleeper] = [:]
    var nextSleeperID = 0
    /// How many sleeps have started (to wait for a loop to go back to sleep).
    var sleepsStarted = 0
  }

  private let state = Mutex(State())

  var now: Instant { self.state.withLock { $0.now } }
  var minimumResolution: Duration { .zero }

  /// How many sleeps have started so far.
  var sleepsStarted: Int { self.state.withLock { $0.sleepsStarted } }

  func sleep(until deadline: Instant, tolerance: Duration? = nil) async throws {
    let id = self.state.withLock { state -> Int in
      state.nextSleeperID += 1
      return state.nextSleeperID
    }
    try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
        let outcome = self.state.withLock { state -> Result<Bool, CancellationError> in
          state.sleepsStarted += 1
          if Task.isCancelled { return .failure(CancellationError()) }
          if deadline <= state.now { return .success(true) }
          state.sleepers[id] = Sleeper(deadline: deadline, continuation: continuation)
          return .success(false)
        }
        switch outcome {
        case .failure(let error): continuation.resume(throwing: error)
        case .success(true): continuation.resume()
        case .success(false): break
        }
      }
    } onCancel: {
      let sleeper = self.state.withLock { $0.sleepers.removeValue(forKey: id) }
      sleeper?.continuation.resume(throwing: CancellationError())
    }
  }

  /// Moves time on and wakes every sleeper whose deadline has come.
  func advance(by duration: Duration) {
    let due = self.state.withLock { state -> [Sleeper] in
      state.now = state.now.advanced(by: duration)
      let due = state.sleepers.filter { $0.value.deadline <= state.now }
      for id in due.keys { state.sleepers[id] = nil }
      return Array(due.values)
    }
    for sleeper in due { sleeper.continuation.resume() }
  }

  /// Waits (in real time, briefly) until more than `count` sleeps have started.
  func waitForSleeps(after count: Int) async throws {
    for _ in 0..<2_000 {
      if self.sleepsStarted > count { return }
      try await Task.sleep(for: .milliseconds(1))
    }
    throw ConformanceTimeout(message: "nothing went to sleep on the manual clock")
  }

  /// Advances in `step`s up to `total`, letting a loop sleeping on this clock run after each step.
  func advance(by total: Duration, step: Duration) async throws {
    var moved = Duration.zero
    while moved < total {
      let started = self.sleepsStarted
      self.advance(by: step)
      moved += step
      try await self.waitForSleeps(after: started)
    }
  }
}
