import CapstanEtcd
import CapstanTesting
import CapstanTestSupport
import Foundation
import Testing

/// `capstan cache verify` and `capstan cache stats` against a real etcd.
@Suite("capstan cache", .etcdServer("cli-cache"))
struct CapstanCacheCLITests {
  static func object(_ index: Int, image: String = "v1") -> String {
    #"{"metadata":{"uid":"u\#(index)","name":"o\#(index)","namespace":"ns\#(index % 3)"},"spec":{"image":"\#(image)"}}"#
  }

  @Test("verify runs an informer while others write and finds the cache consistent")
  func verifyWhileWriting() async throws {
    let server = try suiteServer()
    let plural = "things\(UInt32.random(in: 0...UInt32.max))"
    let prefix = "/registry/\(plural)/"
    let dump = FileManager.default.temporaryDirectory.appendingPathComponent("capstan-dump-\(UUID().uuidString).jsonl")
    defer { try? FileManager.default.removeItem(at: dump) }
    try await withSuiteClient { client in
      for index in 0..<60 {
        try await client.put("\(prefix)ns\(index % 3)/o\(index)", Self.object(index))
      }
      try await client.put("\(prefix)ns0/broken", "not json")
      let capstan = try TestCommand.builtProduct("capstan")
      let arguments = [
        "cache", "verify", "--prefix", prefix, "--duration", "3s", "--page-size", "7", "--dump", dump.path,
        "--endpoints", server.endpoint,
      ]
      // The command runs in its own process while this test keeps writing.
      async let verification = TestCommand.run(capstan, arguments, timeout: .seconds(60))
      try await Task.sleep(for: .milliseconds(500))
      for index in 0..<40 {
        if index % 4 == 0 {
          _ = try await client.delete("\(prefix)ns\(index % 3)/o\(index)")
        } else {
          try await client.put("\(prefix)ns\(index % 3)/o\(index)", Self.object(index, image: "v2"))
        }
        try await Task.sleep(for: .milliseconds(20))
      }
      let output = try await verification
      #expect(output.exitStatus == 0, "\(output.standardError)")
      let pattern = #/^consistent: ([0-9]+) objects at revision ([0-9]+)\n$/#
      let match = try #require(output.standardOutput.wholeMatch(of: pattern), "\(output.standardOutput)")
      let (count, revision) = (Int(match.1)!, Int64(match.2)!)
      #expect((50...60).contains(count))
      #expect(output.standardError.contains("\(prefix)ns0/broken"), "the invalid value is reported")

      // The dump is the cache; it equals what etcd itself holds at that revision.
      let lines = try String(contentsOf: dump, encoding: .utf8).split(separator: "\n")
      let entries = try lines.map { try #require(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
      let dumped = entries.compactMap { entry -> String? in
        guard let key = entry["key"] as? String, let revision = entry["resourceVersion"] as? Int else { return nil }
        return "\(key)@\(revision)"
      }
      let stored = try await client.range(.prefix(prefix), options: RangeOptions(revision: revision)).kvs
        .filter { !$0.keyString.hasSuffix("/broken") }
        .map { "\($0.keyString)@\($0.modRevision)" }
      #expect(dumped == stored)
      #expect(dumped.count == count)
    }
  }

  @Test("stats prints counts and index sizes")
  func stats() async throws {
    let server = try suiteServer()
    let plural = "things\(UInt32.random(in: 0...UInt32.max))"
    try await withSuiteClient { client in
      for index in 0..<9 { try await client.put("/registry/\(plural)/ns\(index % 3)/o\(index)", Self.object(index)) }
    }
    let output = try await TestCommand.run(
      try TestCommand.builtProduct("capstan"),
      ["cache", "stats", "--prefix", "/registry/\(plural)/", "--endpoints", server.endpoint])
    #expect(output.exitStatus == 0, "\(output.standardError)")
    #expect(output.standardOutput.contains("objects: 9\n"))
    #expect(output.standardOutput.contains("index namespace: 3 values, 9 entries\n"), "\(output.standardOutput)")
  }

  @Test("a prefix that is not /registry/<plural>/ is refused")
  func badPrefix() async throws {
    let server = try suiteServer()
    let output = try await TestCommand.run(
      try TestCommand.builtProduct("capstan"), ["cache", "verify", "--prefix", "/foo", "--endpoints", server.endpoint])
    #expect(output.exitStatus != 0)
    #expect(output.standardError.contains("--prefix must look like /registry/<plural>/"))
  }
}
