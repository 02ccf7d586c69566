import ArgumentParser
import Capstan

/// The `capstan` command: etcd tooling for the Capstan controller runtime.
struct CapstanCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "capstan",
    abstract: "Run Capstan controllers, and talk to etcd the way Capstan does: status, keys, transactions, watches, leases and benchmarks.",
    version: Capstan.version,
    subcommands: [
      RunCommand.self, DemoCommand.self,
      StatusCommand.self, KVCommand.self, WatchCommand.self, LeaseCommand.self, CacheCommand.self, BenchCommand.self,
    ]
  )
}

/// `capstan kv …`: reads, writes, deletes and transactions.
struct KVCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "kv",
    abstract: "Read and write keys.",
    subcommands: [KVGetCommand.self, KVPutCommand.self, KVDeleteCommand.self, KVTxnCommand.self]
  )
}

/// `capstan lease …`: lease management.
struct LeaseCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "lease",
    abstract: "Grant, revoke, keep alive and inspect leases.",
    subcommands: [
      LeaseGrantCommand.self, LeaseRevokeCommand.self, LeaseKeepAliveCommand.self,
      LeaseTimeToLiveCommand.self, LeaseListCommand.self,
    ]
  )
}

/// `capstan bench …`: the workloads of the Go baseline (`etcd-go-baseline`), run with Capstan's client,
/// and the ingest benchmark.
struct BenchCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench",
    abstract: "Benchmark Capstan's etcd client (workloads of etcd-go-baseline) and its ingest.",
    subcommands: [
      BenchPutCommand.self, BenchWatchCommand.self, BenchReplayCommand.self, BenchRangeCommand.self,
      BenchIngestCommand.self, BenchListCommand.self,
    ]
  )
}
