/// The one error type that a ``Backend`` throws.
///
/// Modelled on grpc-swift's `RPCError`: a stable ``code`` to switch on, a readable ``message``,
/// and the underlying ``cause`` when there is one (for ``EtcdBackend``, the `EtcdError`).
public struct BackendError: Error, Sendable, CustomStringConvertible {
  /// What kind of failure this is. Stable: switch on it.
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    private enum Wrapped: Hashable, Sendable {
      case unavailable, deadlineExceeded, compacted, futureRevision, leaseNotFound, invalidArgument
      case requestTooLarge, tooManyRequests, noSpace, permissionDenied, closed, cancelled, internalError
    }
    private let wrapped: Wrapped
    private init(_ wrapped: Wrapped) { self.wrapped = wrapped }

    /// The store cannot be reached now (transient: retry later). Injected faults use this code.
    public static let unavailable = Code(.unavailable)
    /// The call did not finish within its deadline.
    public static let deadlineExceeded = Code(.deadlineExceeded)
    /// The requested revision has been compacted; ``BackendError/compactRevision`` says up to where.
    public static let compacted = Code(.compacted)
    /// The requested revision is newer than the store's current revision.
    public static let futureRevision = Code(.futureRevision)
    /// The lease does not exist (never granted, revoked, or expired).
    public static let leaseNotFound = Code(.leaseNotFound)
    /// The request is malformed (empty key, bad range, too many operations…).
    public static let invalidArgument = Code(.invalidArgument)
    /// The request is larger than the store accepts.
    public static let requestTooLarge = Code(.requestTooLarge)
    /// The store asked the client to slow down.
    public static let tooManyRequests = Code(.tooManyRequests)
    /// The store is out of space (etcd's NOSPACE alarm).
    public static let noSpace = Code(.noSpace)
    /// The caller is not allowed to do this.
    public static let permissionDenied = Code(.permissionDenied)
    /// The backend has been shut down.
    public static let closed = Code(.closed)
    /// The caller's task was cancelled.
    public static let cancelled = Code(.cancelled)
    /// Anything else (a bug or an unexpected answer).
    public static let internalError = Code(.internalError)

    public var description: String {
      switch self.wrapped {
      case .unavailable: "unavailable"
      case .deadlineExceeded: "deadlineExceeded"
      case .compacted: "compacted"
      case .futureRevision: "futureRevision"
      case .leaseNotFound: "leaseNotFound"
      case .invalidArgument: "invalidArgument"
      case .requestTooLarge: "requestTooLarge"
      case .tooManyRequests: "tooManyRequests"
      case .noSpace: "noSpace"
      case .permissionDenied: "permissionDenied"
      case .closed: "closed"
      case .cancelled: "cancelled"
      case .internalError: "internalError"
      }
    }
  }

  /// What kind of failure this is.
  public var code: Code
  /// A readable explanation.
  public var message: String
  /// For ``Code/compacted``: the revision the store has been compacted to. Relist from a newer one.
  public var compactRevision: Int64?
  /// The underlying error, if any.
  public var cause: (any Error)?

  public init(code: Code, message: String, compactRevision: Int64? = nil, cause: (any Error)? = nil) {
    self.code = code
    self.message = message
    self.compactRevision = compactRevision
    self.cause = cause
  }

  /// Whether retrying the same call later may succeed.
  public var isTransient: Bool {
    self.code == .unavailable || self.code == .deadlineExceeded || self.code == .tooManyRequests
  }

  public var description: String {
    var text = "\(self.code): \(self.message)"
    if let compactRevision { text += " (compacted to revision \(compactRevision))" }
    if let cause { text += " (cause: \(cause))" }
    return text
  }
}
