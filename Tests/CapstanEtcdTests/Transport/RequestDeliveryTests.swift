@testable import CapstanEtcd
import CapstanTesting
import CapstanTestSupport
import Foundation
import GRPCCore
import Testing

/// Retry safety comes from a typed fact (``RequestNotSent``), never from an error's message.
@Suite("Request delivery: whether a failed request may have been sent is decided by type")
struct RequestDeliveryTests {
  @Test("an error carrying RequestNotSent is not-sent whatever its message; the same message without it is not")
  func decidedByTypeNotMessage() {
    let typed = EtcdError.wrapping(RPCError.notSent(.streamRefused, message: "anything at all"), operation: "put")
    #expect(typed.requestNeverSent)
    #expect(typed.code == .unavailable)
    // A server or proxy could send this very sentence: it must not make a write retryable.
    let untyped = EtcdError.wrapping(
      RPCError(code: .unavailable, message: RequestNotSent.Reason.streamRefused.description), operation: "put")
    #expect(!untyped.requestNeverSent)
    let grpcSwiftText = EtcdError.wrapping(
      RPCError(code: .unavailable, message: "Channel isn't ready, no subchannel available."), operation: "put")
    #expect(!grpcSwiftText.requestNeverSent)
    // Wrapping keeps the cause, and the typed fact within it.
    let rewrapped = EtcdError.wrapping(typed, operation: "put")
    #expect(rewrapped.requestNeverSent)
  }

  @Test("the grpc-swift transport's failures before a stream opens are marked not-sent; others pass unchanged")
  func trackingTransport() async throws {
    let descriptor = MethodDescriptor(fullyQualifiedService: "etcdserverpb.KV", method: "Put")
    let refusing = DeliveryTrackingTransport(FailingTransport(error: RPCError(code: .unavailable, message: "subchannel isn't ready")))
    let notReady = await #expect(throws: RPCError.self) {
      try await refusing.withStream(descriptor: descriptor, options: .defaults) { _, _ in 0 }
    }
    #expect(notReady?.requestCertainlyNotSent == true)
    #expect(notReady?.code == .unavailable)
    #expect(notReady?.message == "subchannel isn't ready")

    // Not an availability failure: passed through as it is (a deadline may have passed after sending).
    let timingOut = DeliveryTrackingTransport(FailingTransport(error: RPCError(code: .deadlineExceeded, message: "late")))
    let late = await #expect(throws: RPCError.self) {
      try await timingOut.withStream(descriptor: descriptor, options: .defaults) { _, _ in 0 }
    }
    #expect(late?.requestCertainlyNotSent == false)
    #expect(late?.code == .deadlineExceeded)

    // Once the stream is open the request may have left: the call's own error is not marked.
    let opening = DeliveryTrackingTransport(OpeningTransport())
    let sentThenFailed = await #expect(throws: RPCError.self) {
      try await opening.withStream(descriptor: descriptor, options: .defaults) { _, _ -> Int in
        throw RPCError(code: .unavailable, message: "connection reset")
      }
    }
    #expect(sentThenFailed?.requestCertainlyNotSent == false)
    #expect(try await opening.withStream(descriptor: descriptor, options: .defaults) { _, _ in 7 } == 7)
  }
}

/// A client transport whose streams never open: `withStream` fails with `error` at once.
private struct FailingTransport: ClientTransport {
  typealias Bytes = [UInt8]
  let error: RPCError
  var retryThrottle: RetryThrottle? { nil }
  func connect() async throws {}
  func beginGracefulShutdown() {}
  func config(forMethod descriptor: MethodDescriptor) -> MethodConfig? { nil }
  func withStream<T: Sendable>(
    descriptor: MethodDescriptor, options: CallOptions,
    _ closure: (RPCStream<Inbound, Outbound>, ClientContext) async throws -> T
  ) async throws -> T {
    throw self.error
  }
}

/// A client transport that opens every stream (with nothing to read and a writer that drops).
private struct OpeningTransport: ClientTransport {
  typealias Bytes = [UInt8]
  var retryThrottle: RetryThrottle? { nil }
  func connect() async throws {}
  func beginGracefulShutdown() {}
  func config(forMethod descriptor: MethodDescriptor) -> MethodConfig? { nil }
  func withStream<T: Sendable>(
    descriptor: MethodDescriptor, options: CallOptions,
    _ closure: (RPCStream<Inbound, Outbound>, ClientContext) async throws -> T
  ) async throws -> T {
    let inbound = AsyncThrowingStream<RPCResponsePart<Bytes>, any Error> { $0.finish() }
    let stream = RPCStream(
      descriptor: descriptor, inbound: RPCAsyncSequence(wrapping: inbound),
      outbound: RPCWriter.Closable(wrapping: DiscardingWriter()))
    return try await closure(stream, ClientContext(descriptor: descriptor, remotePeer: "test", localPeer: "test"))
  }
}

private struct DiscardingWriter: ClosableRPCWriterProtocol {
  typealias Element = RPCRequestPart<[UInt8]>
  func write(_ element: Element) async throws {}
  func write(contentsOf elements: some Sequence<Element>) async throws {}
  func finish() async {}
  func finish(throwing error: any Error) async {}
}

/// Against a real etcd: with the first endpoint dead, even a non-idempotent put goes through on
/// the second, on both call paths, because the dead endpoint's failure is typed "not sent".
@Suite("Request delivery against a real etcd", .etcdServer("delivery"))
struct RequestDeliveryEtcdTests {
  @Test("a put fails over from a dead endpoint on the lean path and on grpc-swift's", arguments: [false, true])
  func putFailsOverFromDeadEndpoint(throughGRPCSwift: Bool) async throws {
    let server = try suiteServer()
    let deadPort = try LoopbackHTTP.freePort()
    var configuration = try clientConfiguration(for: [server])
    configuration.endpoints.insert(try EtcdEndpoint(parsing: "127.0.0.1:\(deadPort)"), at: 0)
    if throughGRPCSwift { configuration.interceptors = [RecordingInterceptor()] }
    let key = uniquePrefix() + "failover"
    try await withEtcdClient(configuration, logger: testLogger) { etcd in
      try await etcd.put(key, "1")
      #expect(try await etcd.get(key)?.valueString == "1")
      #expect(etcd.currentEndpoint.description == server.endpoint)
    }
  }
}
