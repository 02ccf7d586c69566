import ArgumentParser
import CapstanApp
import CapstanEtcd

/// `capstan status`: the status of every endpoint, like `etcdctl endpoint status`.
struct StatusCommand: EtcdCommand {
  static let configuration = CommandConfiguration(
    commandName: "status", abstract: "Show the status of each endpoint.")

  @OptionGroup var etcd: EtcdOptions

  func run() async throws {
    let results = try await self.etcd.withClient { client in
      var results: [(EtcdEndpoint, Result<EtcdStatus, EtcdError>)] = []
      for (index, endpoint) in client.endpoints.enumerated() {
        do throws(EtcdError) {
          results.append((endpoint, .success(try await client.status(endpointIndex: index))))
        } catch {
          results.append((endpoint, .failure(error)))
        }
      }
      return results
    }
    let statuses = results.compactMap { try? $0.1.get() }
    switch self.etcd.output {
    case .json:
      StandardStreams.writeLines([JSONValue.array(statuses.map(Self.json)).rendered])
    case .table:
      if !statuses.isEmpty {
        StandardStreams.write(OutputFormatting.table(
          header: ["ENDPOINT", "ID", "VERSION", "DB SIZE", "DB SIZE IN USE", "IS LEADER", "RAFT TERM", "RAFT INDEX", "REVISION"],
          rows: statuses.map(Self.cells)))
      }
    case .simple:
      StandardStreams.writeLines(statuses.map { Self.cells($0).joined(separator: ", ") })
    }
    let failures = results.compactMap { _, result -> EtcdError? in
      if case .failure(let error) = result { error } else { nil }
    }
    if failures.count == 1 { throw failures[0] }
    if failures.count > 1 {
      for failure in failures { StandardStreams.writeError("capstan: error: \(failure.code): \(failure.message)\n") }
      throw ExitCode.failure
    }
  }

  private static func isLeader(_ status: EtcdStatus) -> Bool {
    status.leader != 0 && status.leader == status.header.memberID
  }

  private static func cells(_ status: EtcdStatus) -> [String] {
    [
      status.endpoint.description, OutputFormatting.hexID(status.header.memberID), status.version,
      OutputFormatting.humanBytes(status.dbSize), OutputFormatting.humanBytes(status.dbSizeInUse),
      isLeader(status) ? "yes" : "no", String(status.raftTerm), String(status.raftIndex),
      String(status.header.revision),
    ]
  }

  private static func json(_ status: EtcdStatus) -> JSONValue {
    .object([
      ("endpoint", .string(status.endpoint.description)),
      ("member_id", .string(OutputFormatting.hexID(status.header.memberID))),
      ("version", .string(status.version)),
      ("db_size", .integer(status.dbSize)),
      ("db_size_in_use", .integer(status.dbSizeInUse)),
      ("is_leader", .bool(isLeader(status))),
      ("leader", .string(OutputFormatting.hexID(status.leader))),
      ("raft_term", .unsignedInteger(status.raftTerm)),
      ("raft_index", .unsignedInteger(status.raftIndex)),
      ("raft_applied_index", .unsignedInteger(status.raftAppliedIndex)),
      ("revision", .integer(status.header.revision)),
      ("errors", .array(status.errors.map { .string($0) })),
    ])
  }
}
