import DequeModule
import Synchronization

/// A FIFO queue of pending values, one per key, that merges a new value into the pending one for
/// the same key instead of queueing it twice. A slow consumer therefore costs memory proportional
/// to the number of distinct keys, never to the number of changes.
///
/// Keys keep the position of their first pending value. Merging may cancel both values (for
/// example an add followed by a delete the consumer never saw), which frees the key. One consumer
/// pulls values with ``next()``; any number of producers ``push(_:for:)``.
final class CoalescingBuffer<Value: Sendable>: Sendable {
  /// Merges a pending value with a newer one for the same key; `nil` drops both.
  typealias Merge = @Sendable (_ pending: Value, _ newer: Value) -> Value?

  private struct Pending {
    var sequence: UInt64
    var value: Value
  }

  private struct State {
    var pending: [String: Pending] = [:]
    /// Keys in first-push order, with the sequence number that was current when queued. An entry
    /// whose sequence no longer matches `pending` is stale and skipped.
    var order: Deque<(key: String, sequence: UInt64)> = []
    var nextSequence: UInt64 = 0
    var waiter: CheckedContinuation<(key: String, value: Value)?, Never>?
    var finished = false
  }

  private let state = Mutex(State())
  private let merge: Merge

  init(merge: @escaping Merge) { self.merge = merge }

  /// How many keys have a pending value.
  var backlog: Int { self.state.withLock { $0.pending.count } }

  /// Entries in the order queue, stale ones included (for tests of its bound).
  var queuedEntryCount: Int { self.state.withLock { $0.order.count } }

  /// Queues `value` for `key`, merging it into a pending value for the same key.
  func push(_ value: Value, for key: String) {
    let resumed: (CheckedContinuation<(key: String, value: Value)?, Never>, (key: String, value: Value))? =
      self.state.withLock { state in
        guard !state.finished else { return nil }
        if let waiter = state.waiter {
          // The consumer is waiting, so nothing is pending: hand the value over directly.
          state.waiter = nil
          return (waiter, (key, value))
        }
        if let pending = state.pending[key] {
          if let merged = self.merge(pending.value, value) {
            state.pending[key]?.value = merged
          } else {
            state.pending[key] = nil
            Self.compactOrderIfMostlyStale(&state)
          }
          return nil
        }
        let sequence = state.nextSequence
        state.nextSequence &+= 1
        state.pending[key] = Pending(sequence: sequence, value: value)
        state.order.append((key, sequence))
        return nil
      }
    if let (waiter, element) = resumed { waiter.resume(returning: element) }
  }

  /// The oldest pending key and its value; waits while none is pending; `nil` once ``finish()``
  /// was called and nothing is pending, or when the calling task is cancelled.
  func next() async -> (key: String, value: Value)? {
    if let element = self.state.withLock({ Self.popFirst(&$0) }) { return element }
    return await withTaskCancellationHandler {
      await withCheckedContinuation { (continuation: CheckedContinuation<(key: String, value: Value)?, Never>) in
        let immediate: (key: String, value: Value)?? = self.state.withLock { state in
          if let element = Self.popFirst(&state) { return .some(element) }
          if state.finished || Task.isCancelled { return .some(nil) }
          precondition(state.waiter == nil, "CoalescingBuffer supports one consumer")
          state.waiter = continuation
          return .none
        }
        if let immediate { continuation.resume(returning: immediate) }
      }
    } onCancel: {
      let waiter = self.state.withLock { state in
        defer { state.waiter = nil }
        return state.waiter
      }
      waiter?.resume(returning: nil)
    }
  }

  /// Ends the buffer: pending values are still delivered, then ``next()`` returns `nil`.
  func finish() {
    let waiter = self.state.withLock { state in
      state.finished = true
      defer { state.waiter = nil }
      return state.waiter
    }
    waiter?.resume(returning: nil)
  }

  private static func popFirst(_ state: inout State) -> (key: String, value: Value)? {
    while let (key, sequence) = state.order.popFirst() {
      if let pending = state.pending[key], pending.sequence == sequence {
        state.pending[key] = nil
        return (key, pending.value)
      }
    }
    return nil
  }

  /// Drops stale order entries once they dominate, so cancelled pairs cannot grow the queue.
  private static func compactOrderIfMostlyStale(_ state: inout State) {
    guard state.order.count > 64, state.order.count > 3 * state.pending.count else { return }
    let pending = state.pending
    state.order = Deque(state.order.filter { pending[$0.key]?.sequence == $0.sequence })
  }
}
