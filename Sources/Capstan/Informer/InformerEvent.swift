/// A change to one object, as an ``Informer`` delivers it to its handlers.
///
/// A tombstone is a case, not a type cast: `deleted(last, certain:)` carries the last state the
/// cache knew. `certain` is `false` when the deletion was inferred rather than observed — the
/// object was missing from a relist after a compaction, or its key now holds a value that is not
/// a valid object.
public enum InformerEvent: Sendable, Hashable {
  /// An object appeared.
  case added(CachedObject)
  /// An object changed; both states have the same UID.
  case updated(old: CachedObject, new: CachedObject)
  /// An object is gone.
  case deleted(CachedObject, certain: Bool)

  /// The newest state the event carries (the last state for a deletion).
  public var object: CachedObject {
    switch self {
    case .added(let object), .updated(_, let object), .deleted(let object, _): object
    }
  }

  /// The event kind as a metric label: `added`, `updated` or `deleted`.
  public var kind: String {
    switch self {
    case .added: "added"
    case .updated: "updated"
    case .deleted: "deleted"
    }
  }

  /// Merges a pending event with a newer one for the same UID, keeping what a handler that has
  /// seen neither must do to reach the newest state; `nil` when nothing is left to do (an object
  /// added and deleted before the handler saw it).
  static func coalesce(pending: InformerEvent, newer: InformerEvent) -> InformerEvent? {
    switch (pending, newer) {
    case (.added, .updated(_, let new)): .added(new)
    case (.added, .deleted): nil
    case (.updated(let old, _), .updated(_, let new)): .updated(old: old, new: new)
    case (.updated, .deleted): newer
    case (.deleted(let last, _), .added(let new)): .updated(old: last, new: new)
    default: newer
    }
  }
}
