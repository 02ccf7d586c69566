@testable import CapstanEtcd
import CapstanTesting
import CapstanTestSupport
import Foundation
import Testing

/// The lean unary path runs HTTP/2 without stream channels, so it gives back inbound
/// flow-control window and resets abandoned streams itself: these tests would stall or fail if
/// either were wrong.
@Suite("EtcdUnaryChannel: flow control and abandoned calls against a real etcd", .etcdServer("unary"))
struct EtcdUnaryChannelTests {
  /// Three 1 MiB values: one range response is 3 MiB, above the 1 MiB stream window.
  private static let valueCount = 3
  /// Generous: the machine running the tests may be busy, and a stall fails the test anyway.
  private static let timeout = Duration.seconds(60)
  private static let valueSize = 1 << 20

  private func writeLargeValues(_ etcd: EtcdClient, prefix: String) async throws {
    for index in 0..<Self.valueCount {
      let value = Data(repeating: UInt8(ascii: "a") + UInt8(index), count: Self.valueSize)
      try await etcd.put(key: Data((prefix + "\(index)").utf8), value: value)
    }
  }

  private func expectLargeValues(_ result: RangeResult) {
    #expect(result.kvs.count == Self.valueCount)
    for (index, kv) in result.kvs.enumerated() {
      #expect(kv.value.count == Self.valueSize)
      #expect(kv.value.first == UInt8(ascii: "a") + UInt8(index) && kv.value.last == kv.value.first)
    }
  }

  @Test("responses larger than the stream and connection windows arrive whole, several at once")
  func responsesBeyondTheFlowControlWindows() async throws {
    let prefix = uniquePrefix()
    try await withSuiteClient { etcd in
      try await self.writeLargeValues(etcd, prefix: prefix)
      // 4 × 4 × 3 MiB = 48 MiB through one connection whose window is 8 MiB.
      for _ in 0..<4 {
        try await withThrowingTaskGroup(of: RangeResult.self) { group in
          for _ in 0..<4 { group.addTask { try await etcd.range(.prefix(prefix), timeout: Self.timeout) } }
          for try await result in group { self.expectLargeValues(result) }
        }
      }
      // Small calls still work alongside.
      try await runManyRequests(etcd, prefix: prefix + "small/", count: 2_000)
    }
  }

  @Test("calls abandoned by their deadline or cancellation reset their streams; the connection keeps working")
  func abandonedCalls() async throws {
    let prefix = uniquePrefix()
    try await withSuiteClient { etcd in
      try await self.writeLargeValues(etcd, prefix: prefix)
      var timedOut = 0
      for _ in 0..<20 {
        do {
          self.expectLargeValues(try await etcd.range(.prefix(prefix), timeout: .milliseconds(2)))
        } catch let error as EtcdError {
          #expect(error.code == .deadlineExceeded, "\(error)")
          timedOut += 1
        }
      }
      for _ in 0..<20 {
        let call = Task { try await etcd.range(.prefix(prefix), timeout: Self.timeout) }
        call.cancel()
        do {
          self.expectLargeValues(try await call.value)
        } catch let error as EtcdError {
          #expect(error.code == .cancelled, "\(error)")
        }
      }
      // The data of the abandoned streams was accounted for: full-size responses still flow.
      for _ in 0..<3 { self.expectLargeValues(try await etcd.range(.prefix(prefix), timeout: Self.timeout)) }
      try await runManyRequests(etcd, prefix: prefix + "small/", count: 2_000)
      #expect(timedOut > 0, "a 2 ms deadline on a 3 MiB range never expired")
    }
  }

  @Test("grpc-timeout is whole milliseconds rounded up, so equal timeouts send equal values")
  func grpcTimeoutValues() {
    #expect(EtcdUnaryLane.grpcTimeout(.seconds(10)) == "10000m")
    #expect(EtcdUnaryLane.grpcTimeout(.seconds(10) - .microseconds(40)) == "10000m")
    #expect(EtcdUnaryLane.grpcTimeout(.microseconds(1)) == "1m")
    #expect(EtcdUnaryLane.grpcTimeout(.zero) == "1m")
    #expect(EtcdUnaryLane.grpcTimeout(.milliseconds(1500)) == "1500m")
    #expect(EtcdUnaryLane.grpcTimeout(.seconds(99_999)) == "99999000m")
    #expect(EtcdUnaryLane.grpcTimeout(.seconds(100_000)) == "100000S")
    #expect(EtcdUnaryLane.grpcTimeout(.seconds(1_000_000_000)) == "99999999S")
  }
}
