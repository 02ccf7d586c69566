/// A filter on informer events: a controller enqueues only events every predicate passes.
public struct EventPredicate: Sendable {
  /// Whether `event` should enqueue its key.
  public let evaluate: @Sendable (InformerEvent) -> Bool

  /// A predicate that passes the events `evaluate` returns true for.
  public init(_ evaluate: @escaping @Sendable (InformerEvent) -> Bool) {
    self.evaluate = evaluate
  }

  /// Whether `event` passes.
  public func callAsFunction(_ event: InformerEvent) -> Bool { self.evaluate(event) }

  /// Passes an update only when `metadata.generation` changed (so status-only writes, which do
  /// not bump the generation, do not trigger a reconcile); passes every add and delete.
  public static let generationChanged = EventPredicate { event in
    guard case .updated(let old, let new) = event else { return true }
    return old.metadata.generation != new.metadata.generation
  }
}
