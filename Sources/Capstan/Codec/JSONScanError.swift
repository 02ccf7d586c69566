/// Why ``ObjectMetaScanner`` rejected a document: either the bytes are not a JSON document that
/// Foundation's `JSONSerialization` would accept, or the top-level `"metadata"` member is not one
/// that `JSONDecoder` would decode into ``ObjectMeta``.
public struct JSONScanError: Error, Hashable, Sendable, CustomStringConvertible {
  /// What went wrong.
  public enum Kind: Hashable, Sendable {
    // Syntax: the document is not JSON that `JSONSerialization` accepts.

    /// The input ended inside a value (or was empty).
    case unexpectedEndOfInput
    /// A byte that cannot appear here (outside strings).
    case unexpectedByte(UInt8)
    /// A string holds bytes that are not well-formed UTF-8.
    case invalidUTF8
    /// A string holds an unescaped control character (U+0000 through U+001F).
    case controlCharacterInString(UInt8)
    /// A backslash followed by something other than `"\/bfnrtu`, or `\u` without four hex digits.
    case invalidEscape
    /// A `\u` escape of a lone or misordered UTF-16 surrogate.
    case invalidSurrogate
    /// A number with a leading zero (`01`, `-00`).
    case numberWithLeadingZero
    /// A number `JSONSerialization` cannot represent (beyond `Double`'s range, such as `1e400`).
    case numberNotRepresentable
    /// More than ``ObjectMetaScanner/maximumNestingDepth`` nested arrays and objects.
    case tooDeeplyNested
    /// The top-level value is not an object. `JSONSerialization` accepts a top-level array;
    /// the scanner does not, since an object document must be an object.
    case topLevelNotObject
    /// The input is UTF-16 or UTF-32 (by byte-order mark or zero-byte pattern). `JSONSerialization`
    /// transcodes such input; the scanner reads UTF-8 only.
    case unsupportedEncoding

    // Metadata: the document is JSON, but `JSONDecoder` would not decode its metadata.

    /// A metadata field holds the wrong JSON type (or `null` where a value is required).
    case typeMismatch(expected: String)
    /// An owner reference lacks a required field.
    case missingField(String)
    /// A field has the right type but an invalid value: a `resourceVersion` that is not a
    /// revision, a time that is not RFC 3339, a `generation` that is not an `Int64`.
    case invalidValue(String)
  }

  /// What went wrong.
  public var kind: Kind
  /// The byte offset in the input where the problem was found.
  public var offset: Int
  /// For metadata errors, where in the document (`metadata.ownerReferences[0].uid`); empty for
  /// syntax errors.
  public var path: String

  /// Creates an error.
  public init(_ kind: Kind, at offset: Int, path: String = "") {
    self.kind = kind
    self.offset = offset
    self.path = path
  }

  /// Whether the document is not valid JSON (as opposed to valid JSON with unusable metadata).
  public var isSyntaxError: Bool {
    switch self.kind {
    case .typeMismatch, .missingField, .invalidValue: false
    default: true
    }
  }

  public var description: String {
    let what: String
    switch self.kind {
    case .unexpectedEndOfInput: what = "unexpected end of input"
    case .unexpectedByte(let byte): what = "unexpected byte 0x\(String(byte, radix: 16))"
    case .invalidUTF8: what = "invalid UTF-8 in a string"
    case .controlCharacterInString(let byte): what = "unescaped control character 0x\(String(byte, radix: 16)) in a string"
    case .invalidEscape: what = "invalid escape sequence"
    case .invalidSurrogate: what = "invalid UTF-16 surrogate in a \\u escape"
    case .numberWithLeadingZero: what = "number with a leading zero"
    case .numberNotRepresentable: what = "number not representable"
    case .tooDeeplyNested: what = "more than \(ObjectMetaScanner.maximumNestingDepth) nested arrays and objects"
    case .topLevelNotObject: what = "the top-level value is not an object"
    case .unsupportedEncoding: what = "not UTF-8 (UTF-16 or UTF-32 input is not supported)"
    case .typeMismatch(let expected): what = "expected \(expected)"
    case .missingField(let name): what = "missing field \(name)"
    case .invalidValue(let message): what = message
    }
    return self.path.isEmpty ? "\(what) at byte \(self.offset)" : "\(self.path): \(what) at byte \(self.offset)"
  }
}
