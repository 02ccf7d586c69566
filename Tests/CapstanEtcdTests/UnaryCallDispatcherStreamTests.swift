@testable import CapstanEtcd
import GRPCCore
import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP2
import Synchronization
import Testing

/// The lean path's bidirectional streams (the watch), driven frame by frame on an embedded
/// channel: how response bytes become messages, and how the stream ends.
@Suite("UnaryCallDispatcher streams")
struct UnaryCallDispatcherStreamTests {
  final class Messages: Sendable {
    let received = Mutex<[[UInt8]]>([])
  }

  /// A dispatcher on an embedded channel with one open stream (ID 1), whose HEADERS went out.
  func openStream(
    onMessage: @escaping @Sendable (ByteBuffer) -> (any Error)? = { _ in nil }
  ) throws -> (EmbeddedChannel, UnaryCallDispatcher.Stream, ConnectionActivity) {
    let activity = ConnectionActivity()
    let dispatcher = UnaryCallDispatcher(activity: activity, keepalive: EtcdKeepalive(interval: .seconds(30), timeout: .seconds(10)))
    let channel = EmbeddedChannel(handler: dispatcher)
    let stream = UnaryCallDispatcher.Stream(headers: [":path": "/etcdserverpb.Watch/Watch"], onMessage: onMessage)
    dispatcher.open(stream)
    channel.embeddedEventLoop.run()
    let headers = try #require(try channel.readOutbound(as: HTTP2Frame.self))
    #expect(headers.streamID == 1)
    guard case .headers(let block) = headers.payload else {
      Issue.record("expected HEADERS, got \(headers.payload)")
      return (channel, stream, activity)
    }
    #expect(!block.endStream)
    try channel.writeInbound(HTTP2Frame(streamID: 1, payload: .headers(.init(headers: [":status": "200", "content-type": "application/grpc"]))))
    return (channel, stream, activity)
  }

  static func framed(_ message: [UInt8], compressed: Bool = false) -> [UInt8] {
    let length = UInt32(message.count)
    return [compressed ? 1 : 0] + withUnsafeBytes(of: length.bigEndian, Array.init) + message
  }

  static func data(_ bytes: ArraySlice<UInt8>, endStream: Bool = false) -> HTTP2Frame {
    HTTP2Frame(streamID: 1, payload: .data(.init(data: .byteBuffer(ByteBuffer(bytes: bytes)), endStream: endStream)))
  }

  /// How `stream` ended (call only once it has: it waits otherwise).
  static func ending(_ stream: UnaryCallDispatcher.Stream) async -> (any Error)? {
    // The stream is touched on the embedded loop's thread, which is this one.
    await withUnsafeContinuation { stream.whenEnded($0) }
  }

  @Test("messages split across DATA frames, several in one frame, and empty ones arrive whole and in order")
  func deframing() async throws {
    let messages = Messages()
    let (channel, stream, activity) = try openStream { message in
      messages.received.withLock { $0.append(Array(message.readableBytesView)) }
      return nil
    }
    let first: [UInt8] = [1, 2, 3]
    let empty: [UInt8] = []
    let large = (0..<300).map { UInt8($0 % 251) }
    let wire = Self.framed(first) + Self.framed(empty) + Self.framed(large) + Self.framed([9])
    let before = ContinuousClock.now
    // Cut inside the first prefix, inside the large message, and just before the last byte.
    for range in [0..<3, 3..<10, 10..<200, 200..<(wire.count - 1)] {
      try channel.writeInbound(Self.data(wire[range]))
    }
    #expect(messages.received.withLock { $0 } == [first, empty, large])
    try channel.writeInbound(Self.data(wire[(wire.count - 1)...]))
    #expect(messages.received.withLock { $0 } == [first, empty, large, [9]])
    // Data on a stream is a sign of life for the whole connection (unary calls timing out
    // meanwhile must not declare it dead).
    #expect(activity.lastResponse >= before)
    #expect(!stream.isEnded)
    try channel.writeInbound(HTTP2Frame(streamID: 1, payload: .headers(.init(headers: ["grpc-status": "0"], endStream: true))))
    #expect(stream.isEnded)
    let end = await Self.ending(stream)
    #expect(end == nil, "a stream ended with status OK reports no error")
    _ = try channel.finish(acceptAlreadyClosed: true)
  }

  @Test("trailers with an error status end the stream with that status")
  func errorTrailers() async throws {
    let (channel, stream, _) = try openStream()
    try channel.writeInbound(
      HTTP2Frame(streamID: 1, payload: .headers(.init(headers: ["grpc-status": "16", "grpc-message": "bad%20token"], endStream: true))))
    #expect(stream.isEnded)
    let end = await Self.ending(stream)
    let error = try #require(end as? RPCError)
    #expect(error.code == .unauthenticated)
    #expect(error.message == "bad token")
    _ = try channel.finish(acceptAlreadyClosed: true)
  }

  @Test("a compressed message, or an error from the message handler, resets the stream with that error")
  func resets() async throws {
    let (channel, stream, _) = try openStream()
    try channel.writeInbound(Self.data(Self.framed([1], compressed: true)[...]))
    #expect(stream.isEnded)
    let reset = try #require(try channel.readOutbound(as: HTTP2Frame.self))
    guard case .rstStream(.cancel) = reset.payload else {
      Issue.record("expected RST_STREAM(CANCEL), got \(reset.payload)")
      return
    }
    let end = await Self.ending(stream)
    #expect((end as? RPCError)?.code == .internalError)

    let refused = RPCError(code: .failedPrecondition, message: "no")
    let (channel2, stream2, _) = try openStream { _ in refused }
    try channel2.writeInbound(Self.data(Self.framed([1])[...]))
    #expect(stream2.isEnded)
    let end2 = await Self.ending(stream2)
    #expect((end2 as? RPCError)?.code == .failedPrecondition)
    _ = try channel.finish(acceptAlreadyClosed: true)
    _ = try channel2.finish(acceptAlreadyClosed: true)
  }

  @Test("the connection going away ends its streams as unavailable")
  func connectionLoss() async throws {
    let (channel, stream, _) = try openStream()
    channel.pipeline.fireChannelInactive()
    #expect(stream.isEnded)
    let end = await Self.ending(stream)
    #expect((end as? RPCError)?.code == .unavailable)
    _ = try channel.finish(acceptAlreadyClosed: true)
  }
}
