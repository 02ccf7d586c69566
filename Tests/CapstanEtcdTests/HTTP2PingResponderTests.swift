@testable import CapstanEtcd
import NIOCore
import NIOEmbedded
import Testing

@Suite("HTTP2PingResponder")
struct HTTP2PingResponderTests {
  /// An HTTP/2 frame: 9-byte header then payload.
  static func frame(type: UInt8, flags: UInt8 = 0, stream: UInt32 = 0, payload: [UInt8]) -> [UInt8] {
    let length = payload.count
    var bytes: [UInt8] = [UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff), type, flags]
    bytes += withUnsafeBytes(of: stream.bigEndian, Array.init)
    return bytes + payload
  }

  static let ping = frame(type: 6, payload: [2, 4, 16, 16, 9, 14, 7, 7])
  static let settings = frame(type: 4, payload: [0, 3, 0, 0, 0, 100])
  static let data = frame(type: 0, flags: 1, stream: 1, payload: Array(repeating: 0x61, count: 300))
  static let pingAck = frame(type: 6, flags: 1, payload: [1, 2, 3, 4, 5, 6, 7, 8])

  func run(_ chunks: [[UInt8]]) throws -> (forwarded: [UInt8], written: [UInt8], answered: Int) {
    let responder = HTTP2PingResponder()
    let channel = EmbeddedChannel(handler: responder)
    for chunk in chunks { try channel.writeInbound(ByteBuffer(bytes: chunk)) }
    var forwarded: [UInt8] = []
    while var buffer = try channel.readInbound(as: ByteBuffer.self) { forwarded += buffer.readBytes(length: buffer.readableBytes)! }
    var written: [UInt8] = []
    while var buffer = try channel.readOutbound(as: ByteBuffer.self) { written += buffer.readBytes(length: buffer.readableBytes)! }
    _ = try channel.finish()
    return (forwarded, written, responder.answeredPings)
  }

  @Test("PING requests are answered with an ACK of the same payload and not passed on")
  func answersPings() throws {
    let stream = Self.settings + Self.ping + Self.data + Self.pingAck + Self.ping
    let result = try run([stream])
    #expect(result.forwarded == Self.settings + Self.data + Self.pingAck)
    let ack = Self.frame(type: 6, flags: 1, payload: [2, 4, 16, 16, 9, 14, 7, 7])
    #expect(result.written == ack + ack)
    #expect(result.answered == 2)
  }

  @Test("ACKs leave with the flush at the end of the read, not one flush each")
  func acksAreFlushedOncePerRead() throws {
    let channel = EmbeddedChannel(handler: HTTP2PingResponder())
    channel.pipeline.fireChannelRead(ByteBuffer(bytes: Self.ping + Self.data + Self.ping))
    #expect(try channel.readOutbound(as: ByteBuffer.self) == nil, "an ACK was flushed before the read completed")
    channel.pipeline.fireChannelReadComplete()
    let ack = Self.frame(type: 6, flags: 1, payload: [2, 4, 16, 16, 9, 14, 7, 7])
    var written: [UInt8] = []
    while var buffer = try channel.readOutbound(as: ByteBuffer.self) { written += buffer.readBytes(length: buffer.readableBytes)! }
    #expect(written == ack + ack)
    _ = try channel.finish()
  }

  @Test("frames split at every possible byte boundary are handled identically")
  func splitReads() throws {
    let stream = Self.settings + Self.data + Self.ping + Self.data + Self.ping + Self.settings
    let expected = try run([stream])
    for cut in 1..<stream.count {
      let result = try run([Array(stream[..<cut]), Array(stream[cut...])])
      #expect(result.forwarded == expected.forwarded, "cut at \(cut)")
      #expect(result.written == expected.written, "cut at \(cut)")
    }
    let byteByByte = try run(stream.map { [$0] })
    #expect(byteByByte.forwarded == expected.forwarded)
    #expect(byteByByte.written == expected.written)
  }
}
