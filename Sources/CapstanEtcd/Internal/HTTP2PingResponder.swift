import NIOCore

/// Answers the server's HTTP/2 PING frames itself, below swift-nio-http2.
///
/// Why this exists: etcd's gRPC server (grpc-go) runs a bandwidth-delay-product estimator that sends
/// a PING after it receives data whenever no PING is outstanding. With a busy client that is one
/// PING per round trip, forever. swift-nio-http2 counts every inbound PING and SETTINGS frame
/// against a denial-of-service limit (200 per 30 s) and then closes the connection with
/// GOAWAY `ENHANCE_YOUR_CALM`, so a naive client dies after about 200 requests. grpc-swift's
/// transport does not expose that limit.
///
/// This handler sits between the socket (or TLS) and the HTTP/2 handler and tracks HTTP/2 frame
/// boundaries. A non-ACK PING from the server is answered here with a PING ACK carrying the same
/// payload, exactly as RFC 9113 §6.7 requires, and is not passed on, so it never counts against
/// the limit. The ACK leaves with the flush at the end of the read (not a write system call of
/// its own). Everything else is forwarded untouched (zero-copy slices). grpc-go keeps getting its
/// ACKs, so its flow-control window tuning keeps working (dropping the PING instead would
/// silently disable it). The server is trusted (we chose to connect to it), so answering its
/// PINGs without a rate limit is no new exposure; ``answeredPings`` counts them.
final class HTTP2PingResponder: ChannelDuplexHandler, RemovableChannelHandler {
  typealias InboundIn = ByteBuffer
  typealias InboundOut = ByteBuffer
  typealias OutboundIn = ByteBuffer
  typealias OutboundOut = ByteBuffer

  private static let frameHeaderLength = 9
  private static let pingFrameType: UInt8 = 0x6
  private static let ackFlag: UInt8 = 0x1
  private static let pingPayloadLength = 8

  /// Payload bytes of the current (non-PING) frame still to be forwarded from later reads.
  private var payloadRemaining = 0
  /// The start of a frame header (or PING frame) split across reads.
  private var pending: ByteBuffer?
  /// How many PINGs this handler has answered.
  private(set) var answeredPings = 0
  /// An ACK was written and not yet flushed (it goes out with the flush at the end of the read).
  private var needsFlush = false

  init() {}

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    var buffer = self.unwrapInboundIn(data)
    if var pending = self.pending {
      pending.writeBuffer(&buffer)
      buffer = pending
      self.pending = nil
    }
    // Scan frame headers; forward runs of ordinary frames as one slice, cut out PING requests.
    let end = buffer.writerIndex
    var runStart = buffer.readerIndex
    var cursor = buffer.readerIndex + self.payloadRemaining
    self.payloadRemaining = 0
    while cursor < end {
      guard end - cursor >= Self.frameHeaderLength else { break }
      let length =
        Int(buffer.getInteger(at: cursor, as: UInt8.self)!) << 16
        | Int(buffer.getInteger(at: cursor + 1, as: UInt16.self)!)
      let type = buffer.getInteger(at: cursor + 3, as: UInt8.self)!
      let flags = buffer.getInteger(at: cursor + 4, as: UInt8.self)!
      guard type == Self.pingFrameType, flags & Self.ackFlag == 0, length == Self.pingPayloadLength else {
        cursor += Self.frameHeaderLength + length
        continue
      }
      let pingLength = Self.frameHeaderLength + Self.pingPayloadLength
      guard end - cursor >= pingLength else { break }
      if cursor > runStart {
        context.fireChannelRead(self.wrapInboundOut(buffer.getSlice(at: runStart, length: cursor - runStart)!))
      }
      var ack = buffer.getSlice(at: cursor, length: pingLength)!
      ack.setInteger(flags | Self.ackFlag, at: ack.readerIndex + 4)
      self.answeredPings += 1
      context.write(self.wrapOutboundOut(ack), promise: nil)
      self.needsFlush = true
      cursor += pingLength
      runStart = cursor
    }
    if cursor >= end {
      // Everything up to the end belongs to complete headers or to payload that may continue.
      self.payloadRemaining = cursor - end
      if end > runStart {
        context.fireChannelRead(self.wrapInboundOut(buffer.getSlice(at: runStart, length: end - runStart)!))
      }
    } else {
      // A header (or PING) is split across reads: forward what precedes it, keep the rest.
      if cursor > runStart {
        context.fireChannelRead(self.wrapInboundOut(buffer.getSlice(at: runStart, length: cursor - runStart)!))
      }
      self.pending = buffer.getSlice(at: cursor, length: end - cursor)
    }
  }

  /// Flushes the ACKs written during this read after the handlers above have had their turn:
  /// when one of them flushes (as the call dispatcher does for its window updates), the ACKs
  /// leave in the same system call and this flush finds nothing left to write.
  func channelReadComplete(context: ChannelHandlerContext) {
    context.fireChannelReadComplete()
    if self.needsFlush {
      self.needsFlush = false
      context.flush()
    }
  }
}
