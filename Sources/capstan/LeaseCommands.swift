import ArgumentParser
import CapstanApp
import CapstanEtcd

/// `capstan lease grant TTL`: prints `lease <hex> granted with TTL(<ttl>s)` like etcdctl.
struct LeaseGrantCommand: EtcdCommand {
  static let configuration = CommandConfiguration(commandName: "grant", abstract: "Grant a lease.")

  @Argument(help: "The TTL in seconds.")
  var ttl: Int64

  @OptionGroup var etcd: EtcdOptions

  func run() async throws {
    let ttl = self.ttl
    let lease = try await self.etcd.withClient { client in try await client.grantLease(ttl: ttl) }
    let id = LeaseID(rawValue: lease.id)
    switch self.etcd.output {
    case .json: StandardStreams.writeLines([JSONValue.object([("id", .string(id.description)), ("ttl", .integer(lease.ttl))]).rendered])
    case .table, .simple: StandardStreams.writeLines(["lease \(id) granted with TTL(\(lease.ttl)s)"])
    }
  }
}

/// `capstan lease revoke HEXID`: prints `lease <hex> revoked` like etcdctl.
struct LeaseRevokeCommand: EtcdCommand {
  static let configuration = CommandConfiguration(
    commandName: "revoke", abstract: "Revoke a lease (deleting its keys).")

  @Argument(help: "The lease ID in hex.")
  var id: LeaseID

  @OptionGroup var etcd: EtcdOptions

  func run() async throws {
    let id = self.id
    try await self.etcd.withClient { client in try await client.revokeLease(id.rawValue) }
    switch self.etcd.output {
    case .json: StandardStreams.writeLines([JSONValue.object([("id", .string(id.description)), ("revoked", .bool(true))]).rendered])
    case .table, .simple: StandardStreams.writeLines(["lease \(id) revoked"])
    }
  }
}

/// `capstan lease keepalive HEXID`: keeps a lease alive, printing each renewal; exits non-zero
/// when the lease is lost, zero on Ctrl-C / SIGTERM or after `--count` renewals.
struct LeaseKeepAliveCommand: EtcdCommand {
  static let configuration = CommandConfiguration(
    commandName: "keepalive", abstract: "Keep a lease alive until interrupted.")

  @Argument(help: "The lease ID in hex.")
  var id: LeaseID

  @Option(help: "Exit after this many renewals.")
  var count: Int?

  @OptionGroup var etcd: EtcdOptions

  func validate() throws {
    if let count, count <= 0 { throw ValidationError("--count must be positive") }
  }

  func run() async throws {
    let (id, limit, format) = (self.id, self.count, self.etcd.output)
    try await self.etcd.withClient { client in
      let info = try await client.leaseTimeToLive(id.rawValue)
      guard info.ttl > 0 else {
        throw EtcdError(code: .leaseNotFound, message: "lease \(id) does not exist (expired or revoked)")
      }
      let keepAlive = client.keepAlive(EtcdLease(id: id.rawValue, ttl: info.grantedTTL))
      defer { keepAlive.cancel() }
      _ = try await TerminationSignal.runUntilSignalled {
        var renewals = 0
        for await event in keepAlive.events {
          switch event {
          case .renewed(let ttl):
            let line =
              format == .json
              ? JSONValue.object([("id", .string(id.description)), ("ttl", .integer(ttl))]).rendered
              : "lease \(id) keepalived with TTL(\(ttl))"
            StandardStreams.writeLines([line])
            renewals += 1
            if let limit, renewals >= limit { return }
          case .lost(let error):
            throw EtcdError(code: error.code, message: "lease \(id) lost: \(error.message)")
          }
        }
      }
    }
  }
}

/// `capstan lease timetolive HEXID`: prints the lease's TTLs (and keys) like etcdctl.
struct LeaseTimeToLiveCommand: EtcdCommand {
  static let configuration = CommandConfiguration(
    commandName: "timetolive", abstract: "Show a lease's remaining time to live.")

  @Argument(help: "The lease ID in hex.")
  var id: LeaseID

  @Flag(help: "Also list the keys attached to the lease.")
  var keys = false

  @OptionGroup var etcd: EtcdOptions

  func run() async throws {
    let (id, withKeys) = (self.id, self.keys)
    let info = try await self.etcd.withClient { client in try await client.leaseTimeToLive(id.rawValue, keys: withKeys) }
    let keyNames = info.keys.map { String(decoding: $0, as: UTF8.self) }
    switch self.etcd.output {
    case .json:
      var fields: [(String, JSONValue)] = [
        ("id", .string(id.description)), ("ttl", .integer(info.ttl)), ("granted_ttl", .integer(info.grantedTTL)),
      ]
      if withKeys { fields.append(("keys", .array(keyNames.map { .string($0) }))) }
      StandardStreams.writeLines([JSONValue.object(fields).rendered])
    case .table, .simple:
      if info.grantedTTL == 0 && info.ttl == -1 {
        StandardStreams.writeLines(["lease \(id) already expired"])
        return
      }
      var line = "lease \(id) granted with TTL(\(info.grantedTTL)s), remaining(\(info.ttl)s)"
      if withKeys { line += ", attached keys([\(keyNames.joined(separator: " "))])" }
      StandardStreams.writeLines([line])
    }
  }
}

/// `capstan lease list`: prints `found N leases` and the IDs like etcdctl.
struct LeaseListCommand: EtcdCommand {
  static let configuration = CommandConfiguration(commandName: "list", abstract: "List the live leases.")

  @OptionGroup var etcd: EtcdOptions

  func run() async throws {
    let ids = try await self.etcd.withClient { client in try await client.leases() }.map(LeaseID.init(rawValue:))
    switch self.etcd.output {
    case .json: StandardStreams.writeLines([JSONValue.array(ids.map { .string($0.description) }).rendered])
    case .table, .simple: StandardStreams.writeLines(["found \(ids.count) leases"] + ids.map(\.description))
    }
  }
}
