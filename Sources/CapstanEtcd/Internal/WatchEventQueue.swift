import Synchronization

/// The buffer between the watch hub, which adds events as etcd sends them (on a connection's
/// event loop), and the one task iterating an ``EtcdWatch``.
///
/// Why not `AsyncThrowingStream`: every event of every watch goes through here, and its `next()`
/// always suspends through a continuation under a cancellation handler, in generic code that
/// looks up type metadata on each call. Here an event already buffered is taken under the lock
/// and returned without suspending; only an empty queue suspends. The semantics are the same:
/// buffered events first, then the error the watch ended with (once), then `nil`; a cancelled
/// consumer gets `nil` (at once, even with events buffered), and a consumer that is cancelled or stops
/// iterating (the ``EtcdWatch`` and its iterators are gone) is reported through
/// `onConsumerGone`, once, so that the hub cancels the watch on the server.
final class WatchEventQueue: Sendable {
  private struct State {
    /// Events not yet taken: `buffer[head...]`.
    var buffer: [WatchEvent] = []
    var head = 0
    /// The consumer, suspended in `next()` on an empty queue.
    var waiter: UnsafeContinuation<WatchEvent?, any Error>?
    /// How the watch ended, once it has: delivered after the buffered events.
    var end: (any Error)??
    var consumerGone = false
    var onConsumerGone: (@Sendable () -> Void)?
  }

  private let state = Mutex(State())

  /// Calls `action` (once) when the consumer is cancelled or stops iterating; at once if it
  /// already has.
  func onConsumerGone(_ action: @escaping @Sendable () -> Void) {
    let gone = self.state.withLock { state -> Bool in
      if state.consumerGone { return true }
      state.onConsumerGone = action
      return false
    }
    if gone { action() }
  }

  /// Adds events in order (dropped once the watch ended or its consumer is gone).
  func yield(_ events: [WatchEvent]) {
    guard !events.isEmpty else { return }
    let resume = self.state.withLock { state -> (UnsafeContinuation<WatchEvent?, any Error>, WatchEvent)? in
      guard state.end == nil, !state.consumerGone else { return nil }
      if let waiter = state.waiter {
        state.waiter = nil
        state.buffer.append(contentsOf: events.dropFirst())
        return (waiter, events[0])
      }
      state.buffer.append(contentsOf: events)
      return nil
    }
    if let (waiter, event) = resume { waiter.resume(returning: event) }
  }

  /// Ends the watch: the consumer gets the buffered events, then `error` (if any), then `nil`.
  func finish(throwing error: (any Error)? = nil) {
    let waiter = self.state.withLock { state -> UnsafeContinuation<WatchEvent?, any Error>? in
      guard state.end == nil else { return nil }
      // A waiting consumer means an empty buffer: it gets the ending now.
      if let waiter = state.waiter {
        state.waiter = nil
        state.end = .some(nil)
        return waiter
      }
      state.end = .some(error)
      return nil
    }
    guard let waiter else { return }
    if let error { waiter.resume(throwing: error) } else { waiter.resume(returning: nil) }
  }

  private enum Taken {
    case event(WatchEvent)
    case end((any Error)?)
    case empty
  }

  /// What the consumer gets now without waiting, if anything.
  private static func take(_ state: inout State) -> Taken {
    if state.head < state.buffer.count {
      let event = state.buffer[state.head]
      state.head += 1
      if state.head == state.buffer.count {
        // A small buffer is kept for the next events; a backlog's is given back.
        state.buffer.removeAll(keepingCapacity: state.buffer.count <= 1024)
        state.head = 0
      } else if state.head >= 1024, state.head * 2 >= state.buffer.count {
        state.buffer.removeFirst(state.head)
        state.head = 0
      }
      return .event(event)
    }
    if state.consumerGone { return .end(nil) }
    if let end = state.end {
      state.end = .some(nil)  // the error is delivered once, then the sequence ends
      return .end(end)
    }
    return .empty
  }

  /// The next event; `nil` once the watch ended (after its error, if any) or the consumer was
  /// cancelled.
  func next() async throws -> WatchEvent? {
    // A cancelled consumer stops at once, buffered events or not (and the watch is cancelled).
    if Task.isCancelled {
      self.consumerStopped()
      return nil
    }
    switch self.state.withLock({ Self.take(&$0) }) {
    case .event(let event): return event
    case .end(let error?): throw error
    case .end(nil): return nil
    case .empty: break
    }
    return try await withTaskCancellationHandler {
      try await withUnsafeThrowingContinuation { (waiter: UnsafeContinuation<WatchEvent?, any Error>) in
        let taken = self.state.withLock { state -> Taken in
          let taken = Self.take(&state)
          if case .empty = taken {
            precondition(state.waiter == nil, "an EtcdWatch is iterated by more than one task at once")
            state.waiter = waiter
          }
          return taken
        }
        switch taken {
        case .event(let event): waiter.resume(returning: event)
        case .end(let error?): waiter.resume(throwing: error)
        case .end(nil): waiter.resume(returning: nil)
        case .empty: ()
        }
      }
    } onCancel: {
      self.consumerStopped()
    }
  }

  /// The consumer was cancelled or dropped the watch: a waiting `next()` returns `nil`, later
  /// events are dropped, and `onConsumerGone` runs (once).
  func consumerStopped() {
    let (waiter, action) = self.state.withLock { state -> (UnsafeContinuation<WatchEvent?, any Error>?, (@Sendable () -> Void)?) in
      guard !state.consumerGone else { return (nil, nil) }
      state.consumerGone = true
      state.buffer = []
      state.head = 0
      defer {
        state.waiter = nil
        state.onConsumerGone = nil
      }
      return (state.waiter, state.onConsumerGone)
    }
    waiter?.resume(returning: nil)
    action?()
  }
}

/// Held by an ``EtcdWatch`` and its iterators: when the last of them is gone, the consumer has
/// stopped iterating.
final class WatchConsumer: Sendable {
  let queue: WatchEventQueue

  init(queue: WatchEventQueue) { self.queue = queue }

  deinit { self.queue.consumerStopped() }
}
