import ArgumentParser
import CapstanApp
import CapstanEtcd
import Foundation

/// `capstan kv txn`: runs a transaction read from stdin in etcdctl's `txn` format and prints
/// `SUCCESS`/`FAILURE` and each response like `etcdctl txn`.
struct KVTxnCommand: EtcdCommand {
  static let configuration = CommandConfiguration(
    commandName: "txn",
    abstract: "Run a transaction read from stdin (etcdctl's txn format).",
    discussion: """
      Input: compare lines, a blank line, success requests, a blank line, failure requests.
        mod("k") = "5"    value("k") = "v"    version("k") > "0"    create("k") = "0"

        put k v
        get k

        del k
      """
  )

  @OptionGroup var etcd: EtcdOptions

  func run() async throws {
    let input = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
    let txn = try TxnScript.parse(input)
    let result = try await self.etcd.withClient { client in try await client.txn(txn) }
    switch self.etcd.output {
    case .json: StandardStreams.writeLines([Self.json(result).rendered])
    case .table, .simple: StandardStreams.writeLines(Self.simpleLines(result))
    }
  }

  /// etcdctl's rendering: the outcome, then a blank line before each response.
  static func simpleLines(_ result: TxnResult) -> [String] {
    var lines = [result.succeeded ? "SUCCESS" : "FAILURE"]
    for response in result.responses {
      lines.append("")
      switch response {
      case .put(let put): lines += KVPutCommand.simpleLines(put)
      case .range(let range): lines += range.kvs.flatMap(OutputFormatting.simpleLines)
      case .delete(let delete): lines += KVDeleteCommand.simpleLines(delete)
      case .txn(let nested): lines += simpleLines(nested)
      }
    }
    return lines
  }

  static func json(_ result: TxnResult) -> JSONValue {
    func response(_ response: EtcdOperationResult) -> JSONValue {
      switch response {
      case .put(let put): .object([("put", KVPutCommand.json(put))])
      case .range(let range): .object([("get", KVGetCommand.json(range))])
      case .delete(let delete): .object([("del", KVDeleteCommand.json(delete))])
      case .txn(let nested): .object([("txn", json(nested))])
      }
    }
    return .object([
      ("revision", .integer(result.header.revision)),
      ("succeeded", .bool(result.succeeded)),
      ("responses", .array(result.responses.map(response))),
    ])
  }
}
