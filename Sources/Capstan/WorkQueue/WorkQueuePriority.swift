/// Where an added key goes in a ``WorkQueue``.
public enum WorkQueuePriority: Sendable, Hashable {
  /// A real change: served first.
  case normal
  /// Initial-list and resync items: served behind `.normal` keys, but a `.low` key that has waited
  /// longer than the queue's `lowPriorityAging` is served as if it had been added as `.normal`
  /// that much later, so it never starves.
  case low
}

/// How ``WorkQueue/shutDown(_:)`` treats keys still in the queue.
public enum WorkQueueShutdownMode: Sendable, Hashable {
  /// Keys already queued (including keys re-added while being processed) are still handed out by
  /// `get()`; `get()` returns nil once none is left. Delayed keys not yet due are dropped.
  case drain
  /// Every queued and delayed key is dropped; `get()` returns nil at once.
  case abandon
}
