import GRPCCore

/// The one error type that ``EtcdClient`` throws.
///
/// Modelled on grpc-swift's `RPCError`: a stable ``code`` to switch on, a human-readable
/// ``message`` (for server errors, etcd's own text), and the underlying ``cause`` if there is one.
/// A bare gRPC or NIO error never escapes the client: it is wrapped here.
public struct EtcdError: Error, Sendable, Hashable, CustomStringConvertible {
  /// What kind of failure this is. Stable: safe to switch on.
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    private enum Wrapped: String, Hashable, Sendable {
      case invalidArgument, unavailable, deadlineExceeded, cancelled, compacted, futureRevision
      case leaseNotFound, leaseExpired, permissionDenied, invalidAuthToken, authenticationFailed
      case tooManyRequests, noSpace, requestTooLarge, tooManyTxnOps, duplicateKeyInTxn, txnConflict
      case noLeader, leaderChanged, serverTimeout, watchCanceled, clientClosed, keyNotFound
      case unimplemented, internalError
    }
    private let wrapped: Wrapped
    private init(_ wrapped: Wrapped) { self.wrapped = wrapped }

    /// The request was malformed: bad endpoint syntax, an empty key, an invalid option, …
    public static let invalidArgument = Code(.invalidArgument)
    /// No endpoint could serve the request (connection refused, dropped, or no endpoint reachable).
    public static let unavailable = Code(.unavailable)
    /// The call's deadline passed before it finished.
    public static let deadlineExceeded = Code(.deadlineExceeded)
    /// The caller cancelled the call.
    public static let cancelled = Code(.cancelled)
    /// The requested revision has been compacted away (``EtcdError/compactRevision`` says up to where).
    public static let compacted = Code(.compacted)
    /// The requested revision is higher than the store's current revision.
    public static let futureRevision = Code(.futureRevision)
    /// The lease does not exist (never granted, expired or revoked).
    public static let leaseNotFound = Code(.leaseNotFound)
    /// A lease kept alive by the client was lost: it expired or was revoked.
    public static let leaseExpired = Code(.leaseExpired)
    /// The authenticated user may not do this.
    public static let permissionDenied = Code(.permissionDenied)
    /// The auth token is invalid or expired (the client re-authenticates transparently once).
    public static let invalidAuthToken = Code(.invalidAuthToken)
    /// The user name or password was rejected.
    public static let authenticationFailed = Code(.authenticationFailed)
    /// etcd is overloaded and rejected the request.
    public static let tooManyRequests = Code(.tooManyRequests)
    /// etcd's database quota is exhausted (NOSPACE alarm).
    public static let noSpace = Code(.noSpace)
    /// The request exceeds etcd's request size limit (1.5 MiB by default).
    public static let requestTooLarge = Code(.requestTooLarge)
    /// A transaction has more operations than etcd allows (128 by default).
    public static let tooManyTxnOps = Code(.tooManyTxnOps)
    /// A transaction writes the same key twice.
    public static let duplicateKeyInTxn = Code(.duplicateKeyInTxn)
    /// A conditional write's comparison failed: someone else changed the key first.
    public static let txnConflict = Code(.txnConflict)
    /// The cluster has no leader.
    public static let noLeader = Code(.noLeader)
    /// The leader changed while the request was in flight.
    public static let leaderChanged = Code(.leaderChanged)
    /// etcd timed out applying the request (its own timeout, not the client's deadline).
    public static let serverTimeout = Code(.serverTimeout)
    /// etcd cancelled a watch for a reason other than compaction.
    public static let watchCanceled = Code(.watchCanceled)
    /// The client has been shut down.
    public static let clientClosed = Code(.clientClosed)
    /// A key that had to exist does not.
    public static let keyNotFound = Code(.keyNotFound)
    /// The server does not implement the call.
    public static let unimplemented = Code(.unimplemented)
    /// Anything else: an unexpected server or transport failure.
    public static let internalError = Code(.internalError)

    public var description: String { self.wrapped.rawValue }
  }

  /// What kind of failure this is.
  public var code: Code
  /// A readable explanation; for server errors, etcd's own message.
  public var message: String
  /// For ``Code/compacted``: the revision up to which history was compacted.
  public var compactRevision: Int64?
  /// The underlying error, if any (a gRPC `RPCError`, a NIO error, …), for diagnostics.
  public var cause: (any Error)?

  /// Creates an error.
  public init(code: Code, message: String, compactRevision: Int64? = nil, cause: (any Error)? = nil) {
    self.code = code
    self.message = message
    self.compactRevision = compactRevision
    self.cause = cause
  }

  public var description: String {
    var text = "\(self.code): \(self.message)"
    if let compactRevision { text += " (compacted up to revision \(compactRevision))" }
    if let cause, !(cause is RPCError) || self.code == .internalError { text += " (cause: \(cause))" }
    return text
  }

  public static func == (lhs: EtcdError, rhs: EtcdError) -> Bool {
    lhs.code == rhs.code && lhs.message == rhs.message && lhs.compactRevision == rhs.compactRevision
  }

  public func hash(into hasher: inout Hasher) {
    hasher.combine(self.code)
    hasher.combine(self.message)
    hasher.combine(self.compactRevision)
  }
}

extension EtcdError {
  /// etcd's server messages (see etcd's `rpctypes` package) mapped to codes.
  private static let serverMessages: [(fragment: String, code: Code)] = [
    ("required revision has been compacted", .compacted),
    ("required revision is a future revision", .futureRevision),
    ("requested lease not found", .leaseNotFound),
    ("permission denied", .permissionDenied),
    ("invalid auth token", .invalidAuthToken),
    ("authentication failed", .authenticationFailed),
    ("user name not found", .authenticationFailed),
    ("too many requests", .tooManyRequests),
    ("database space exceeded", .noSpace),
    ("request is too large", .requestTooLarge),
    ("message larger than max", .requestTooLarge),
    ("too many operations in txn request", .tooManyTxnOps),
    ("duplicate key given in txn request", .duplicateKeyInTxn),
    ("no leader", .noLeader),
    ("leader changed", .leaderChanged),
    ("request timed out", .serverTimeout),
    ("key is not provided", .invalidArgument),
    ("lease TTL", .invalidArgument),
  ]

  /// Wraps any error thrown by the transport or the server into an ``EtcdError``.
  static func wrapping(_ error: any Error, operation: String) -> EtcdError {
    if let error = error as? EtcdError { return error }
    if error is CancellationError {
      return EtcdError(code: .cancelled, message: "\(operation) was cancelled", cause: error)
    }
    guard let rpc = error as? RPCError else {
      return EtcdError(code: .internalError, message: "\(operation) failed: \(error)", cause: error)
    }
    for (fragment, code) in Self.serverMessages where rpc.message.contains(fragment) {
      return EtcdError(code: code, message: "\(operation): \(rpc.message)", cause: rpc)
    }
    let code: Code
    switch rpc.code {
    case .unavailable: code = .unavailable
    case .deadlineExceeded: code = .deadlineExceeded
    case .cancelled: code = .cancelled
    case .invalidArgument, .outOfRange, .failedPrecondition: code = .invalidArgument
    case .permissionDenied: code = .permissionDenied
    case .unauthenticated: code = .invalidAuthToken
    case .resourceExhausted: code = .tooManyRequests
    case .notFound: code = .keyNotFound
    case .unimplemented: code = .unimplemented
    default: code = .internalError
    }
    var message = "\(operation): \(rpc.message)"
    if let cause = rpc.cause { message += " (\(cause))" }
    return EtcdError(code: code, message: message, cause: rpc)
  }

  /// True when the request certainly never reached a server, so even a non-idempotent write
  /// may be sent again (to another endpoint). Decided by type: both call paths attach
  /// ``RequestNotSent`` to the error when they know the request did not leave.
  var requestNeverSent: Bool {
    (self.cause as? RPCError)?.requestCertainlyNotSent ?? false
  }

  /// True when a different endpoint might succeed: the transport failed or the member has no leader.
  var isEndpointFailure: Bool {
    self.code == .unavailable || self.code == .noLeader
  }

  /// True when an idempotent request may be retried after this error.
  var isRetryableForIdempotent: Bool {
    switch self.code {
    case .unavailable, .noLeader, .leaderChanged, .serverTimeout, .tooManyRequests: return true
    default: return false
    }
  }
}
