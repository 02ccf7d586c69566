/// User code that drives the world toward what one primary object asks for.
///
/// A ``Controller`` calls `reconcile` with the key of a primary object whenever it or something it
/// owns changed. One key is never reconciled by two workers at once. Return ``ReconcileResult/done``
/// when the world matches, ``ReconcileResult/requeue(after:)`` to look again later; throw to retry
/// with backoff, or throw a ``TerminalError`` for what no retry can fix. A
/// ``ReconcileConflict`` thrown by the context's write helpers requeues the key (rate-limited)
/// without logging an error.
public protocol Reconciler: Sendable {
  /// Reconciles the primary object `request` names (which may no longer exist).
  func reconcile(_ request: ReconcileRequest, context: ReconcileContext) async throws -> ReconcileResult
}

/// The key of a primary object to reconcile: its namespace (empty when cluster-scoped) and name.
public struct ReconcileRequest: Sendable, Hashable, CustomStringConvertible {
  /// The namespace; empty for a cluster-scoped kind.
  public var namespace: String
  /// The name.
  public var name: String

  /// The request for the object `name` in `namespace`.
  public init(namespace: String, name: String) {
    self.namespace = namespace
    self.name = name
  }

  /// `namespace/name`, or just `name` when cluster-scoped.
  public var description: String { self.namespace.isEmpty ? self.name : "\(self.namespace)/\(self.name)" }
}

/// What a reconcile asks the controller to do next with its key.
public enum ReconcileResult: Sendable, Hashable {
  /// The world matches: forget the key's backoff.
  case done
  /// Reconcile the key again after `after` (its backoff is forgotten).
  case requeue(after: Duration)
}

/// An error no retry can fix (a malformed spec, say): thrown from a reconcile, it is counted and
/// logged, and the key is not retried until its objects change again.
public struct TerminalError: Error, Sendable, CustomStringConvertible {
  /// What went wrong.
  public var message: String
  /// The underlying error, if any.
  public var cause: (any Error)?

  /// A terminal error saying `message`, optionally wrapping `cause`.
  public init(_ message: String, cause: (any Error)? = nil) {
    self.message = message
    self.cause = cause
  }

  /// The message, with the cause's description when there is one.
  public var description: String {
    if let cause { return "\(self.message): \(cause)" }
    return self.message
  }
}

/// A write whose revision compare failed: someone else changed (or created, or deleted) the key
/// since it was read. The controller requeues the key (rate-limited) and does not log an error.
public struct ReconcileConflict: Error, Sendable, Hashable, CustomStringConvertible {
  /// The key written.
  public var key: String
  /// The mod revision the write expected (0: the key was expected to be absent).
  public var expectedRevision: Int64

  /// A conflict on `key`, which was expected at `expectedRevision`.
  public init(key: String, expectedRevision: Int64) {
    self.key = key
    self.expectedRevision = expectedRevision
  }

  /// Names the key and the revision expected.
  public var description: String {
    self.expectedRevision == 0
      ? "conflict on \(self.key): expected it absent"
      : "conflict on \(self.key): expected mod revision \(self.expectedRevision)"
  }
}
