import CapstanEtcdAPI
public import struct Foundation.Data

/// The header etcd puts on every response.
public struct EtcdResponseHeader: Sendable, Hashable {
  /// The cluster's ID.
  public var clusterID: UInt64
  /// The ID of the member that answered.
  public var memberID: UInt64
  /// The store's revision when the request was served.
  public var revision: Int64
  /// The raft term when the request was served.
  public var raftTerm: UInt64

  init(_ header: Etcdserverpb_ResponseHeader) {
    self.clusterID = header.clusterID
    self.memberID = header.memberID
    self.revision = header.revision
    self.raftTerm = header.raftTerm
  }
}

/// A key and its value, with etcd's revision bookkeeping.
public struct KeyValue: Sendable, Hashable {
  /// The key's bytes.
  public var key: Data
  /// The value's bytes (empty for `keysOnly` reads).
  public var value: Data
  /// The revision at which the key was last created.
  public var createRevision: Int64
  /// The revision of the last modification: a Kubernetes-style `resourceVersion`.
  public var modRevision: Int64
  /// How many times the key was written since it was created (reset by deletion).
  public var version: Int64
  /// The lease the key is attached to, or 0.
  public var lease: Int64

  /// Creates a key-value (mostly for tests).
  public init(
    key: Data, value: Data, createRevision: Int64 = 0, modRevision: Int64 = 0, version: Int64 = 0,
    lease: Int64 = 0
  ) {
    self.key = key
    self.value = value
    self.createRevision = createRevision
    self.modRevision = modRevision
    self.version = version
    self.lease = lease
  }

  init(_ kv: Mvccpb_KeyValue) {
    self.key = kv.key
    self.value = kv.value
    self.createRevision = kv.createRevision
    self.modRevision = kv.modRevision
    self.version = kv.version
    self.lease = kv.lease
  }

  /// The key decoded as UTF-8 (invalid bytes are replaced).
  public var keyString: String { String(decoding: self.key, as: UTF8.self) }
  /// The value decoded as UTF-8 (invalid bytes are replaced).
  public var valueString: String { String(decoding: self.value, as: UTF8.self) }
}

/// Which keys a read, delete, watch or compare applies to.
public struct EtcdKeyRange: Sendable, Hashable {
  /// The first key.
  public var key: Data
  /// One past the last key; empty for a single key; `[0]` for every key ≥ ``key``.
  public var rangeEnd: Data

  /// Creates a range from raw bytes.
  public init(key: Data, rangeEnd: Data = Data()) {
    self.key = key
    self.rangeEnd = rangeEnd
  }

  /// Exactly one key.
  public static func key(_ key: String) -> EtcdKeyRange { EtcdKeyRange(key: Data(key.utf8)) }

  /// Every key that starts with `prefix` (an empty prefix means every key).
  public static func prefix(_ prefix: String) -> EtcdKeyRange {
    let key = Data(prefix.utf8)
    return EtcdKeyRange(key: key.isEmpty ? Data([0]) : key, rangeEnd: prefixRangeEnd(key))
  }

  /// Keys in `[from, to)`.
  public static func range(from: String, to: String) -> EtcdKeyRange {
    EtcdKeyRange(key: Data(from.utf8), rangeEnd: Data(to.utf8))
  }

  /// Every key greater than or equal to `key`.
  public static func from(_ key: String) -> EtcdKeyRange {
    EtcdKeyRange(key: Data(key.utf8), rangeEnd: Data([0]))
  }

  /// The smallest key greater than every key with the prefix (etcd's `GetPrefixRangeEnd`).
  static func prefixRangeEnd(_ prefix: Data) -> Data {
    var end = [UInt8](prefix)
    while let last = end.last {
      if last < 0xff {
        end[end.count - 1] = last + 1
        return Data(end)
      }
      end.removeLast()
    }
    return Data([0])  // no upper bound: every key from the prefix on
  }

  func validate(_ operation: String) throws(EtcdError) {
    if self.key.isEmpty {
      throw EtcdError(code: .invalidArgument, message: "\(operation): the key must not be empty")
    }
    if !self.rangeEnd.isEmpty, self.rangeEnd != Data([0]), !self.key.lexicographicallyPrecedes(self.rangeEnd) {
      throw EtcdError(
        code: .invalidArgument,
        message: "\(operation): the range end must be greater than the key (or empty, or \\0 for every key from it)")
    }
  }
}

/// Options of a read.
public struct RangeOptions: Sendable, Hashable {
  /// How to sort the result.
  public enum SortOrder: Sendable, Hashable { case none, ascend, descend }
  /// What to sort by.
  public enum SortTarget: Sendable, Hashable { case key, version, createRevision, modRevision, value }

  /// Return at most this many keys (0: no limit); ``RangeResult/more`` tells if there are more.
  public var limit: Int64
  /// Read the store as of this revision (0: the latest).
  public var revision: Int64
  /// Return keys without values.
  public var keysOnly: Bool
  /// Return only the count.
  public var countOnly: Bool
  /// Serve from the local member without a quorum round (may be stale, but fast).
  public var serializable: Bool
  /// Sorting of the result.
  public var sortOrder: SortOrder
  /// What to sort by.
  public var sortTarget: SortTarget

  /// Creates read options.
  public init(
    limit: Int64 = 0, revision: Int64 = 0, keysOnly: Bool = false, countOnly: Bool = false,
    serializable: Bool = false, sortOrder: SortOrder = .none, sortTarget: SortTarget = .key
  ) {
    self.limit = limit
    self.revision = revision
    self.keysOnly = keysOnly
    self.countOnly = countOnly
    self.serializable = serializable
    self.sortOrder = sortOrder
    self.sortTarget = sortTarget
  }
}

/// The result of a read.
public struct RangeResult: Sendable, Hashable {
  /// The response header (its revision is the revision the read saw).
  public var header: EtcdResponseHeader
  /// The keys read.
  public var kvs: [KeyValue]
  /// True when a limit cut the result short.
  public var more: Bool
  /// The number of keys in the range (regardless of the limit).
  public var count: Int64
}

/// Options of a put.
public struct PutOptions: Sendable, Hashable {
  /// Attach the key to this lease (0: none).
  public var lease: Int64
  /// Return the previous key-value.
  public var prevKV: Bool
  /// Keep the current value (update only the lease); fails if the key does not exist.
  public var ignoreValue: Bool
  /// Keep the current lease (update only the value); fails if the key does not exist.
  public var ignoreLease: Bool

  /// Creates put options.
  public init(lease: Int64 = 0, prevKV: Bool = false, ignoreValue: Bool = false, ignoreLease: Bool = false) {
    self.lease = lease
    self.prevKV = prevKV
    self.ignoreValue = ignoreValue
    self.ignoreLease = ignoreLease
  }
}

/// The result of a put.
public struct PutResult: Sendable, Hashable {
  /// The response header; its revision is the revision of this write.
  public var header: EtcdResponseHeader
  /// The previous key-value, when asked for and the key existed.
  public var prevKV: KeyValue?
}

/// The result of a delete.
public struct DeleteResult: Sendable, Hashable {
  /// The response header.
  public var header: EtcdResponseHeader
  /// How many keys were deleted.
  public var deleted: Int64
  /// The deleted key-values, when asked for.
  public var prevKVs: [KeyValue]
}

/// A condition of a transaction.
public struct EtcdCompare: Sendable, Hashable {
  /// How the key's field compares with the given value.
  public enum Result: Sendable, Hashable { case equal, greater, less, notEqual }
  /// The field compared, with the value to compare with.
  public enum Target: Sendable, Hashable {
    case version(Int64)
    case createRevision(Int64)
    case modRevision(Int64)
    case value(Data)
    case lease(Int64)
  }

  /// The key (or range) compared.
  public var range: EtcdKeyRange
  /// The comparison.
  public var result: Result
  /// The field and value.
  public var target: Target

  /// Creates a comparison.
  public init(_ range: EtcdKeyRange, _ target: Target, _ result: Result = .equal) {
    self.range = range
    self.result = result
    self.target = target
  }

  /// The key's `mod_revision` equals `revision` (0: the key does not exist).
  public static func modRevision(_ key: String, is revision: Int64) -> EtcdCompare {
    EtcdCompare(.key(key), .modRevision(revision))
  }

  /// The key does not exist.
  public static func absent(_ key: String) -> EtcdCompare {
    EtcdCompare(.key(key), .createRevision(0))
  }

  /// The key's value equals `value`.
  public static func value(_ key: String, is value: String) -> EtcdCompare {
    EtcdCompare(.key(key), .value(Data(value.utf8)))
  }
}

/// One operation inside a transaction.
public indirect enum EtcdOperation: Sendable, Hashable {
  /// A read.
  case range(EtcdKeyRange, RangeOptions = RangeOptions())
  /// A write of one key.
  case put(key: Data, value: Data, PutOptions = PutOptions())
  /// A delete of a key or range.
  case delete(EtcdKeyRange, prevKV: Bool = false)
  /// A nested transaction.
  case txn(EtcdTxn)

  /// Puts a string value under a string key.
  public static func put(_ key: String, _ value: String, _ options: PutOptions = PutOptions()) -> EtcdOperation {
    .put(key: Data(key.utf8), value: Data(value.utf8), options)
  }

  /// Deletes one key.
  public static func delete(_ key: String) -> EtcdOperation { .delete(.key(key)) }

  /// Reads one key.
  public static func get(_ key: String) -> EtcdOperation { .range(.key(key)) }
}

/// A transaction: if every compare holds, run `success`, else run `failure` — atomically.
public struct EtcdTxn: Sendable, Hashable {
  /// The conditions.
  public var compares: [EtcdCompare]
  /// Run when every condition holds.
  public var success: [EtcdOperation]
  /// Run otherwise.
  public var failure: [EtcdOperation]

  /// Creates a transaction.
  public init(compares: [EtcdCompare] = [], success: [EtcdOperation] = [], failure: [EtcdOperation] = []) {
    self.compares = compares
    self.success = success
    self.failure = failure
  }
}

/// The result of one transaction operation.
public indirect enum EtcdOperationResult: Sendable, Hashable {
  case range(RangeResult)
  case put(PutResult)
  case delete(DeleteResult)
  case txn(TxnResult)
}

/// The result of a transaction.
public struct TxnResult: Sendable, Hashable {
  /// The response header; its revision is the transaction's revision if it wrote anything.
  public var header: EtcdResponseHeader
  /// True when the compares held and `success` ran.
  public var succeeded: Bool
  /// One result per operation of the branch that ran.
  public var responses: [EtcdOperationResult]
}

/// A granted lease.
public struct EtcdLease: Sendable, Hashable {
  /// The lease ID.
  public var id: Int64
  /// The TTL in seconds that etcd granted.
  public var ttl: Int64

  /// Refers to an existing lease (e.g. one granted by another process) with its TTL in seconds.
  public init(id: Int64, ttl: Int64) {
    self.id = id
    self.ttl = ttl
  }
}

/// What etcd knows of a lease.
public struct EtcdLeaseInfo: Sendable, Hashable {
  /// The lease ID.
  public var id: Int64
  /// Seconds left (-1 if the lease has expired or does not exist).
  public var ttl: Int64
  /// The TTL the lease was granted with.
  public var grantedTTL: Int64
  /// The keys attached to the lease, when asked for.
  public var keys: [Data]
}

/// A member's status (`etcdctl endpoint status`).
public struct EtcdStatus: Sendable, Hashable {
  /// The response header (member ID, revision, raft term).
  public var header: EtcdResponseHeader
  /// The etcd server version.
  public var version: String
  /// Size of the backend database in bytes, including free pages.
  public var dbSize: Int64
  /// Bytes of the database actually in use.
  public var dbSizeInUse: Int64
  /// The member ID of the leader (0 if none).
  public var leader: UInt64
  /// The raft index.
  public var raftIndex: UInt64
  /// The raft term.
  public var raftTerm: UInt64
  /// The raft applied index.
  public var raftAppliedIndex: UInt64
  /// Errors the member reports.
  public var errors: [String]
  /// The endpoint that answered.
  public var endpoint: EtcdEndpoint
}

/// An active alarm on a member.
public struct EtcdAlarm: Sendable, Hashable {
  /// The member raising the alarm.
  public var memberID: UInt64
  /// The alarm: `NOSPACE`, `CORRUPT`, or `NONE`.
  public var alarm: String
}
