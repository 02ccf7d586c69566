import ArgumentParser
import CapstanApp
import CapstanEtcd
import Foundation

/// Which keys a `get` or `del` addresses: one key, a prefix, or every key from a key on.
struct KeySelection: ParsableArguments {
  @Argument(help: "The key (or prefix with --prefix).")
  var key: String

  @Flag(help: "Address every key with this prefix.")
  var prefix = false

  @Flag(name: .customLong("from-key"), help: "Address every key greater than or equal to this key.")
  var fromKey = false

  func validate() throws {
    if self.prefix && self.fromKey { throw ValidationError("--prefix and --from-key cannot be combined") }
  }

  /// The range these options address.
  var range: EtcdKeyRange { Self.range(key: self.key, prefix: self.prefix, fromKey: self.fromKey) }

  /// The range of `key` alone, of its prefix, or from it on (an empty key then means every key).
  static func range(key: String, prefix: Bool, fromKey: Bool) -> EtcdKeyRange {
    if prefix { return .prefix(key) }
    if fromKey { return key.isEmpty ? EtcdKeyRange(key: Data([0]), rangeEnd: Data([0])) : .from(key) }
    return .key(key)
  }
}

/// `capstan kv get`: reads keys and prints them like `etcdctl get`.
struct KVGetCommand: EtcdCommand {
  static let configuration = CommandConfiguration(commandName: "get", abstract: "Read a key or a range of keys.")

  @OptionGroup var selection: KeySelection

  @Option(help: "Return at most this many keys (0: no limit).")
  var limit: Int64 = 0

  @Option(help: "Read at this revision (0: the latest).")
  var rev: Int64 = 0

  @Flag(name: .customLong("keys-only"), help: "Return keys without values.")
  var keysOnly = false

  @Flag(name: .customLong("count-only"), help: "Return only the number of keys.")
  var countOnly = false

  @Flag(help: "Serve from the local member without a quorum read.")
  var serializable = false

  @OptionGroup var etcd: EtcdOptions

  func run() async throws {
    let options = RangeOptions(
      limit: self.limit, revision: self.rev, keysOnly: self.keysOnly, countOnly: self.countOnly,
      serializable: self.serializable)
    let range = self.selection.range
    let result = try await self.etcd.withClient { client in
      try await client.range(range, options: options)
    }
    switch self.etcd.output {
    case .json:
      StandardStreams.writeLines([Self.json(result).rendered])
    case .table where !self.countOnly:
      StandardStreams.write(OutputFormatting.table(
        header: ["KEY", "VALUE", "CREATE REVISION", "MOD REVISION", "VERSION", "LEASE"],
        rows: result.kvs.map { kv in
          [kv.keyString, kv.valueString, String(kv.createRevision), String(kv.modRevision), String(kv.version),
           kv.lease == 0 ? "0" : LeaseID(rawValue: kv.lease).description]
        }))
    case .table, .simple:
      if self.countOnly {
        StandardStreams.writeLines([String(result.count)])
      } else {
        StandardStreams.writeLines(result.kvs.flatMap(OutputFormatting.simpleLines))
      }
    }
  }

  static func json(_ result: RangeResult) -> JSONValue {
    .object([
      ("revision", .integer(result.header.revision)),
      ("count", .integer(result.count)),
      ("kvs", .array(result.kvs.map(OutputFormatting.json))),
    ])
  }
}

/// `capstan kv put`: writes a key and prints `OK` like `etcdctl put`.
struct KVPutCommand: EtcdCommand {
  static let configuration = CommandConfiguration(commandName: "put", abstract: "Write a key.")

  @Argument(help: "The key.")
  var key: String

  @Argument(help: "The value.")
  var value: String

  @Option(help: "Attach the key to this lease (hex ID).")
  var lease: LeaseID?

  @Flag(name: .customLong("prev-kv"), help: "Print the previous key-value.")
  var prevKV = false

  @OptionGroup var etcd: EtcdOptions

  func run() async throws {
    let options = PutOptions(lease: self.lease?.rawValue ?? 0, prevKV: self.prevKV)
    let (key, value) = (self.key, self.value)
    let result = try await self.etcd.withClient { client in
      try await client.put(key: Data(key.utf8), value: Data(value.utf8), options: options)
    }
    switch self.etcd.output {
    case .json: StandardStreams.writeLines([Self.json(result).rendered])
    case .table, .simple: StandardStreams.writeLines(Self.simpleLines(result))
    }
  }

  static func simpleLines(_ result: PutResult) -> [String] {
    ["OK"] + (result.prevKV.map(OutputFormatting.simpleLines) ?? [])
  }

  static func json(_ result: PutResult) -> JSONValue {
    var fields: [(String, JSONValue)] = [("revision", .integer(result.header.revision))]
    if let previous = result.prevKV { fields.append(("prev_kv", OutputFormatting.json(previous))) }
    return .object(fields)
  }
}

/// `capstan kv del`: deletes keys and prints how many were deleted like `etcdctl del`.
struct KVDeleteCommand: EtcdCommand {
  static let configuration = CommandConfiguration(commandName: "del", abstract: "Delete a key or a range of keys.")

  @OptionGroup var selection: KeySelection

  @Flag(name: .customLong("prev-kv"), help: "Print the deleted key-values.")
  var prevKV = false

  @OptionGroup var etcd: EtcdOptions

  func run() async throws {
    let (range, prevKV) = (self.selection.range, self.prevKV)
    let result = try await self.etcd.withClient { client in
      try await client.delete(range, prevKV: prevKV)
    }
    switch self.etcd.output {
    case .json: StandardStreams.writeLines([Self.json(result).rendered])
    case .table, .simple: StandardStreams.writeLines(Self.simpleLines(result))
    }
  }

  static func simpleLines(_ result: DeleteResult) -> [String] {
    [String(result.deleted)] + result.prevKVs.flatMap(OutputFormatting.simpleLines)
  }

  static func json(_ result: DeleteResult) -> JSONValue {
    .object([
      ("revision", .integer(result.header.revision)),
      ("deleted", .integer(result.deleted)),
      ("prev_kvs", .array(result.prevKVs.map(OutputFormatting.json))),
    ])
  }
}
