import Capstan
import Foundation

/// What the scanner must equal: `JSONDecoder` for the metadata, `JSONSerialization` for validity.
struct MetadataOnly: Decodable {
  var metadata: ObjectMeta?
}

enum ScannerOracle {
  /// `JSONDecoder`'s metadata, or `nil` where it throws.
  static func decoderMetadata(_ bytes: [UInt8]) -> ObjectMeta? {
    guard let decoded = try? JSONDecoder().decode(MetadataOnly.self, from: Data(bytes)) else { return nil }
    return decoded.metadata ?? ObjectMeta()
  }

  /// Whether `JSONSerialization` accepts the document as a top-level object.
  static func serializationAcceptsObject(_ bytes: [UInt8]) -> Bool {
    guard let value = try? JSONSerialization.jsonObject(with: Data(bytes), options: []) else { return false }
    return value is [String: Any]
  }

  /// Whether Foundation would detect UTF-16 or UTF-32 (and transcode): the scanner's intended
  /// difference, so such input is compared separately.
  static func looksLikeUTF16OrUTF32(_ bytes: [UInt8]) -> Bool {
    if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { return false }
    if bytes.starts(with: [0xFF, 0xFE]) || bytes.starts(with: [0xFE, 0xFF]) || bytes.starts(with: [0, 0, 0xFE, 0xFF]) {
      return true
    }
    if bytes.count >= 4 {
      let (b0, b1, b2, b3) = (bytes[0], bytes[1], bytes[2], bytes[3])
      return (b0 == 0 && b1 == 0 && b2 == 0) || (b1 == 0 && b2 == 0 && b3 == 0) || (b0 == 0 && b2 == 0)
        || (b1 == 0 && b3 == 0)
    }
    return bytes.count >= 2 && (bytes[0] == 0 || bytes[1] == 0)
  }

  /// What the scanner should return: Foundation's metadata when `JSONSerialization` accepts the
  /// document as an object and `JSONDecoder` decodes its metadata; `nil` (rejected) otherwise.
  static func expected(_ bytes: [UInt8]) -> ObjectMeta? {
    guard self.serializationAcceptsObject(bytes) else { return nil }
    return self.decoderMetadata(bytes)
  }

  /// The scanner's result, `nil` when it throws. It reads from an allocation of exactly the
  /// document's size, so that the address sanitizer catches any read past the end.
  static func scanned(_ bytes: [UInt8], interner: StringInterner? = nil) -> ObjectMeta? {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
    defer { buffer.deallocate() }
    buffer.copyBytes(from: bytes)
    return try? ObjectMetaScanner(interner: interner).scan(UnsafeRawBufferPointer(buffer))
  }
}
