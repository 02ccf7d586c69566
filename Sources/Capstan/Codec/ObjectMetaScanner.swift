import Foundation

/// Extracts ``ObjectMeta`` from a JSON object document in one pass, validating the whole document
/// but building nothing except the metadata.
///
/// **What it returns** equals `JSONDecoder().decode(MetadataOnly.self, from: bytes).metadata ?? ObjectMeta()`
/// for `struct MetadataOnly: Decodable { var metadata: ObjectMeta? }`, including `JSONDecoder`'s
/// rules: a missing or `null` `metadata` is `ObjectMeta()`; of duplicate keys the **first** wins
/// (and later duplicates are not type-checked), in the top-level object, in `metadata`, in
/// `labels`/`annotations` (compared as `String`s, so canonically equivalent keys are duplicates)
/// and in owner references; `null` reads as absent for every optional field but is an error inside
/// `labels`, `annotations`, `finalizers` and for an owner reference's required fields;
/// `generation` accepts any number whose value is a whole `Int64` (`3.0`, `1e2`), as
/// `JSONDecoder` does; `resourceVersion` must be an empty or non-negative decimal string;
/// timestamps are RFC 3339 (``Timestamp``). Unknown members are skipped (but validated).
///
/// **What it accepts** is exactly what `JSONSerialization.jsonObject(with:options: [])` accepts
/// (swift-corelibs-foundation on Linux), with two intended differences: the top-level value must be
/// an object (Foundation also accepts an array), and the input must be UTF-8, optionally with a
/// byte-order mark (Foundation also transcodes UTF-16 and UTF-32). A document is rejected when
/// either check fails. Notably, like Foundation, it accepts one trailing comma in arrays and
/// objects, and rejects lone surrogates, invalid UTF-8 anywhere in strings, numbers beyond
/// `Double`'s range, and more than 512 nested arrays and objects (without recursing: deep input
/// cannot overflow the stack).
///
/// **Cost**: no intermediate values; keys are compared as bytes; strings are created only for the
/// values kept (and unescaped only when they contain escapes). With a ``StringInterner``, strings
/// that repeat across objects (namespace, label and annotation keys, label values, owner kinds
/// and API versions, finalizers) share storage.
public struct ObjectMetaScanner: Sendable {
  /// The most nested arrays and objects a document may have (as `JSONSerialization`).
  public static let maximumNestingDepth = JSONCursor.maximumDepth

  /// The pool for repeating strings, if any.
  public var interner: StringInterner?

  /// Creates a scanner; with an `interner`, repeating strings share storage.
  public init(interner: StringInterner? = nil) {
    self.interner = interner
  }

  /// Validates a JSON object document and extracts its metadata.
  public func scan(_ bytes: UnsafeRawBufferPointer) throws(JSONScanError) -> ObjectMeta {
    var sink = ObjectMetaSink()
    try self.scan(bytes, into: &sink)
    return sink.meta
  }

  /// Validates a JSON object document and hands its metadata to `sink`.
  func scan<Sink: MetadataSink>(_ bytes: UnsafeRawBufferPointer, into sink: inout Sink) throws(JSONScanError) {
    guard let base = bytes.baseAddress, !bytes.isEmpty else {
      throw JSONScanError(.unexpectedEndOfInput, at: 0)
    }
    var reader = MetadataReader(
      cursor: JSONCursor(base: base.assumingMemoryBound(to: UInt8.self), count: bytes.count),
      interner: self.interner)
    try reader.readDocument(into: &sink)
    if let offset = reader.cursor.firstUnrepresentableNumber {
      // A number beyond Double's range makes Foundation reject the document unless a later
      // duplicate key replaced the value holding it (Foundation keeps the last). That takes
      // Foundation's own tree to decide; the document is valid otherwise, and this never happens
      // with real objects.
      let data = Data(bytes)
      guard (try? JSONSerialization.jsonObject(with: data, options: [])) != nil else {
        throw JSONScanError(.numberNotRepresentable, at: offset)
      }
    }
  }

  /// The metadata of a document this scanner already accepted, from the `metadata` object that
  /// starts at `offset` (as a ``CompactMetadataSink`` recorded it).
  func metadata(ofValidatedDocument bytes: UnsafeBufferPointer<UInt8>, metadataAt offset: Int) -> ObjectMeta {
    guard let base = bytes.baseAddress else { return ObjectMeta() }
    var reader = MetadataReader(cursor: JSONCursor(base: base, count: bytes.count), interner: self.interner)
    reader.cursor.position = offset
    // Cannot fail: the same reader accepted these bytes when they were cached.
    return (try? reader.readMetadata()) ?? ObjectMeta()
  }

  /// Validates a JSON object document and extracts its metadata.
  public func scan(_ data: Data) throws(JSONScanError) -> ObjectMeta {
    let result = data.withUnsafeBytes { bytes in Result { () throws(JSONScanError) in try self.scan(bytes) } }
    return try result.get()
  }

  /// Validates a JSON object document and extracts its metadata.
  public func scan(_ bytes: [UInt8]) throws(JSONScanError) -> ObjectMeta {
    let result = bytes.withUnsafeBytes { bytes in Result { () throws(JSONScanError) in try self.scan(bytes) } }
    return try result.get()
  }
}

/// Validates a JSON object document and extracts its metadata (see ``ObjectMetaScanner``).
public func scanObjectMeta(_ bytes: UnsafeRawBufferPointer) throws(JSONScanError) -> ObjectMeta {
  try ObjectMetaScanner().scan(bytes)
}

/// Validates a JSON object document and extracts its metadata (see ``ObjectMetaScanner``).
public func scanObjectMeta(_ data: Data) throws(JSONScanError) -> ObjectMeta {
  try ObjectMetaScanner().scan(data)
}

/// Validates a JSON object document and extracts its metadata (see ``ObjectMetaScanner``).
public func scanObjectMeta(_ bytes: [UInt8]) throws(JSONScanError) -> ObjectMeta {
  try ObjectMetaScanner().scan(bytes)
}

/// The structured part of the scan: the top-level object and `metadata`, with everything else
/// handed to ``JSONCursor/skipValue(depth:)``.
struct MetadataReader {
  var cursor: JSONCursor
  let interner: StringInterner?

  // MARK: Document

  mutating func readDocument() throws(JSONScanError) -> ObjectMeta {
    var sink = ObjectMetaSink()
    try self.readDocument(into: &sink)
    return sink.meta
  }

  /// Reads a whole document, handing the first top-level `metadata` member to `sink`.
  mutating func readDocument<Sink: MetadataSink>(into sink: inout Sink) throws(JSONScanError) {
    try self.skipByteOrderMark()
    let first = try self.cursor.peekNonWhitespace()
    guard first == 0x7B else {
      if first == 0x5B || first == 0x22 || first == 0x2D || JSONCursor.isDigit(first) || first == 0x74
        || first == 0x66 || first == 0x6E
      {
        throw JSONScanError(.topLevelNotObject, at: self.cursor.position)
      }
      throw JSONScanError(.unexpectedByte(first), at: self.cursor.position)
    }
    var found = false
    try self.readObject(depth: 0) { reader, key throws(JSONScanError) in
      if !found, reader.cursor.token(key, equals: "metadata") {
        found = true
        try reader.readMetadata(into: &sink)
      } else {
        try reader.cursor.skipValue(depth: 1)
      }
    }
    self.cursor.skipWhitespace()
    if self.cursor.position < self.cursor.count {
      throw JSONScanError(.unexpectedByte(self.cursor.byte(at: self.cursor.position)), at: self.cursor.position)
    }
  }

  /// Skips a UTF-8 byte-order mark; rejects UTF-16 and UTF-32 input, which Foundation would
  /// detect (by byte-order mark, or by its zero bytes) and transcode.
  mutating func skipByteOrderMark() throws(JSONScanError) {
    let count = self.cursor.count
    func byte(_ offset: Int) -> UInt8 { self.cursor.byte(at: offset) }
    if count >= 3, byte(0) == 0xEF, byte(1) == 0xBB, byte(2) == 0xBF {
      self.cursor.position = 3
      return
    }
    // Foundation's detection: a UTF-16 or UTF-32 byte-order mark, or zero bytes among the first four.
    if count >= 2 {
      let (b0, b1) = (byte(0), byte(1))
      var unsupported = (b0 == 0xFF && b1 == 0xFE) || (b0 == 0xFE && b1 == 0xFF)
      if count >= 4 {
        let (b2, b3) = (byte(2), byte(3))
        unsupported =
          unsupported || (b0 == 0 && b1 == 0 && b2 == 0xFE && b3 == 0xFF) || (b0 == 0 && b1 == 0 && b2 == 0)
          || (b1 == 0 && b2 == 0 && b3 == 0) || (b0 == 0 && b2 == 0) || (b1 == 0 && b3 == 0)
      } else {
        unsupported = unsupported || b0 == 0 || b1 == 0
      }
      if unsupported { throw JSONScanError(.unsupportedEncoding, at: 0) }
    }
  }

  // MARK: Containers

  /// Reads an object whose `{` is at the current position (after whitespace), calling `member`
  /// with each key; `member` must consume the value. `depth` counts the containers around it.
  @inline(__always)
  mutating func readObject(
    depth: Int, _ member: (inout MetadataReader, JSONStringToken) throws(JSONScanError) -> Void
  ) throws(JSONScanError) {
    guard depth < JSONCursor.maximumDepth else { throw JSONScanError(.tooDeeplyNested, at: self.cursor.position) }
    self.cursor.position += 1
    if try self.cursor.peekNonWhitespace() == 0x7D {
      self.cursor.position += 1
      return
    }
    while true {
      let key = try self.cursor.scanKeyAndColon()
      try member(&self, key)
      let next = try self.cursor.peekNonWhitespace()
      if next == 0x7D {
        self.cursor.position += 1
        return
      }
      guard next == 0x2C else { throw JSONScanError(.unexpectedByte(next), at: self.cursor.position) }
      self.cursor.position += 1
      if try self.cursor.peekNonWhitespace() == 0x7D {
        self.cursor.position += 1
        return
      }
    }
  }

  /// Reads an array whose `[` is at the current position, calling `element` with each index;
  /// `element` must consume the value.
  @inline(__always)
  mutating func readArray(
    depth: Int, _ element: (inout MetadataReader, Int) throws(JSONScanError) -> Void
  ) throws(JSONScanError) {
    guard depth < JSONCursor.maximumDepth else { throw JSONScanError(.tooDeeplyNested, at: self.cursor.position) }
    self.cursor.position += 1
    if try self.cursor.peekNonWhitespace() == 0x5D {
      self.cursor.position += 1
      return
    }
    var index = 0
    while true {
      try element(&self, index)
      index += 1
      let next = try self.cursor.peekNonWhitespace()
      if next == 0x5D {
        self.cursor.position += 1
        return
      }
      guard next == 0x2C else { throw JSONScanError(.unexpectedByte(next), at: self.cursor.position) }
      self.cursor.position += 1
      if try self.cursor.peekNonWhitespace() == 0x5D {
        self.cursor.position += 1
        return
      }
    }
  }

  /// Skips (validating) the value at the current position, then reports that it has the wrong type.
  mutating func mismatch(expected: String, depth: Int, path: @autoclosure () -> String) throws(JSONScanError) -> Never {
    let offset = self.cursor.position
    try self.cursor.skipValue(depth: depth)
    throw JSONScanError(.typeMismatch(expected: expected), at: offset, path: path())
  }

  /// Consumes `null` if it is next.
  @inline(__always)
  mutating func skipNull() throws(JSONScanError) -> Bool {
    guard try self.cursor.peekNonWhitespace() == 0x6E else { return false }
    try self.cursor.scanLiteral()
    return true
  }

  // MARK: Values

  @inline(__always)
  func makeString(_ token: JSONStringToken, interned: Bool) -> String {
    if interned, let interner = self.interner, !token.hasEscapes, token.count >= StringInterner.minimumLength {
      return interner.intern(self.cursor.rawBytes(token))
    }
    let string = self.cursor.string(token)
    if interned, token.hasEscapes, let interner = self.interner { return interner.intern(string) }
    return string
  }

  mutating func readOptionalStringToken(depth: Int, path: @autoclosure () -> String) throws(JSONScanError)
    -> JSONStringToken?
  {
    switch try self.cursor.peekNonWhitespace() {
    case 0x22: return try self.cursor.scanString()
    case 0x6E:
      try self.cursor.scanLiteral()
      return nil
    default: try self.mismatch(expected: "a string", depth: depth, path: path())
    }
  }

  mutating func readOptionalBool(depth: Int, path: @autoclosure () -> String) throws(JSONScanError) -> Bool? {
    switch try self.cursor.peekNonWhitespace() {
    case 0x74, 0x66:
      let value = self.cursor.byte(at: self.cursor.position) == 0x74
      try self.cursor.scanLiteral()
      return value
    case 0x6E:
      try self.cursor.scanLiteral()
      return nil
    default: try self.mismatch(expected: "a Bool", depth: depth, path: path())
    }
  }

  mutating func readTimestamp(depth: Int, path: @autoclosure () -> String) throws(JSONScanError) -> Timestamp? {
    guard let token = try self.readOptionalStringToken(depth: depth, path: path()) else { return nil }
    let seconds = self.cursor.withUnescapedBytes(token) { bytes in Timestamp.parse(bytes) }
    guard let seconds else {
      throw JSONScanError(
        .invalidValue("\"\(self.cursor.string(token))\" is not an RFC 3339 time"), at: token.start - 1, path: path())
    }
    return Timestamp(secondsSince1970: seconds)
  }

  // MARK: Metadata

  /// Reads the `metadata` value (an object or `null`) at the current position into `sink`.
  /// Every validation and duplicate rule lives here, whatever the sink keeps.
  mutating func readMetadata<Sink: MetadataSink>(into sink: inout Sink) throws(JSONScanError) {
    if try self.skipNull() { return }
    guard try self.cursor.peekNonWhitespace() == 0x7B else {
      try self.mismatch(expected: "an object", depth: 1, path: "metadata")
    }
    sink.metadataObject(startingAt: self.cursor.position)
    var seen: UInt16 = 0
    // Of duplicate keys the first wins; later ones are only validated.
    func first(_ field: UInt16) -> Bool {
      defer { seen |= 1 << field }
      return seen & (1 << field) == 0
    }
    try self.readObject(depth: 1) { reader, key throws(JSONScanError) in
      let cursor = reader.cursor
      if cursor.token(key, equals: "name"), first(0) {
        sink.name(try reader.readOptionalStringToken(depth: 2, path: "metadata.name"), reader)
      } else if cursor.token(key, equals: "namespace"), first(1) {
        sink.namespace(try reader.readOptionalStringToken(depth: 2, path: "metadata.namespace"), reader)
      } else if cursor.token(key, equals: "uid"), first(2) {
        sink.uid(try reader.readOptionalStringToken(depth: 2, path: "metadata.uid"), reader)
      } else if cursor.token(key, equals: "resourceVersion"), first(3) {
        sink.resourceVersion(try reader.readResourceVersion())
      } else if cursor.token(key, equals: "generation"), first(4) {
        sink.generation(try reader.readGeneration())
      } else if cursor.token(key, equals: "labels"), first(5) {
        try reader.readStringMap(.labels, into: &sink, path: "metadata.labels")
      } else if cursor.token(key, equals: "annotations"), first(6) {
        try reader.readStringMap(.annotations, into: &sink, path: "metadata.annotations")
      } else if cursor.token(key, equals: "ownerReferences"), first(7) {
        try reader.readOwnerReferences(into: &sink)
      } else if cursor.token(key, equals: "finalizers"), first(8) {
        try reader.readFinalizers(into: &sink)
      } else if cursor.token(key, equals: "creationTimestamp"), first(9) {
        sink.creationTimestamp(try reader.readTimestamp(depth: 2, path: "metadata.creationTimestamp"))
      } else if cursor.token(key, equals: "deletionTimestamp"), first(10) {
        sink.deletionTimestamp(try reader.readTimestamp(depth: 2, path: "metadata.deletionTimestamp"))
      } else {
        try reader.cursor.skipValue(depth: 2)
      }
    }
    sink.metadataObject(endingAt: self.cursor.position)
  }

  mutating func readMetadata() throws(JSONScanError) -> ObjectMeta {
    var sink = ObjectMetaSink()
    try self.readMetadata(into: &sink)
    return sink.meta
  }

  /// `resourceVersion`: absent, `null` or `""` is 0; otherwise `Int64(text)` must be ≥ 0.
  mutating func readResourceVersion() throws(JSONScanError) -> Int64 {
    guard let token = try self.readOptionalStringToken(depth: 2, path: "metadata.resourceVersion"),
      token.count > 0
    else { return 0 }
    let text = self.cursor.string(token)
    guard let value = Int64(text), value >= 0 else {
      throw JSONScanError(
        .invalidValue("resourceVersion \"\(text)\" is not a revision"), at: token.start - 1,
        path: "metadata.resourceVersion")
    }
    return value
  }

  mutating func readGeneration() throws(JSONScanError) -> Int64 {
    switch try self.cursor.peekNonWhitespace() {
    case 0x6E:
      try self.cursor.scanLiteral()
      return 0
    case 0x2D, 0x30...0x39:
      let token = try self.cursor.scanNumber()
      guard let value = self.cursor.int64Value(token) else {
        throw JSONScanError(
          .invalidValue("generation \(self.cursor.text(token)) is not an Int64"), at: token.start,
          path: "metadata.generation")
      }
      return value
    default:
      try self.mismatch(expected: "an Int64", depth: 2, path: "metadata.generation")
    }
  }

  /// `labels` or `annotations`: `null` is empty; values must be strings; of duplicate keys the
  /// first wins (the sink decides what is a duplicate).
  mutating func readStringMap<Sink: MetadataSink>(_ map: MetadataMap, into sink: inout Sink, path: String)
    throws(JSONScanError)
  {
    if try self.skipNull() { return }
    guard try self.cursor.peekNonWhitespace() == 0x7B else {
      try self.mismatch(expected: "an object", depth: 2, path: path)
    }
    try self.readObject(depth: 2) { reader, keyToken throws(JSONScanError) in
      if sink.isDuplicate(keyToken, in: map, reader) {
        try reader.cursor.skipValue(depth: 3)
        return
      }
      guard try reader.cursor.peekNonWhitespace() == 0x22 else {
        let key = reader.cursor.string(keyToken)
        try reader.mismatch(expected: "a string", depth: 3, path: "\(path).\(key)")
      }
      let value = try reader.cursor.scanString()
      sink.entry(keyToken, value, in: map, reader)
    }
  }

  mutating func readFinalizers<Sink: MetadataSink>(into sink: inout Sink) throws(JSONScanError) {
    if try self.skipNull() { return }
    guard try self.cursor.peekNonWhitespace() == 0x5B else {
      try self.mismatch(expected: "an array", depth: 2, path: "metadata.finalizers")
    }
    try self.readArray(depth: 2) { reader, index throws(JSONScanError) in
      guard try reader.cursor.peekNonWhitespace() == 0x22 else {
        try reader.mismatch(expected: "a string", depth: 3, path: "metadata.finalizers[\(index)]")
      }
      sink.finalizer(try reader.cursor.scanString(), reader)
    }
  }

  mutating func readOwnerReferences<Sink: MetadataSink>(into sink: inout Sink) throws(JSONScanError) {
    if try self.skipNull() { return }
    guard try self.cursor.peekNonWhitespace() == 0x5B else {
      try self.mismatch(expected: "an array", depth: 2, path: "metadata.ownerReferences")
    }
    try self.readArray(depth: 2) { reader, index throws(JSONScanError) in
      try reader.readOwnerReference(into: &sink, path: "metadata.ownerReferences[\(index)]")
    }
  }

  /// An owner reference: `apiVersion`, `kind`, `name` and `uid` are required strings (its
  /// synthesized `Decodable`); `controller` and `blockOwnerDeletion` are optional Bools.
  mutating func readOwnerReference<Sink: MetadataSink>(into sink: inout Sink, path: @autoclosure () -> String)
    throws(JSONScanError)
  {
    let start = self.cursor.position
    guard try self.cursor.peekNonWhitespace() == 0x7B else {
      try self.mismatch(expected: "an object", depth: 3, path: path())
    }
    var apiVersion: JSONStringToken?
    var kind: JSONStringToken?
    var name: JSONStringToken?
    var uid: JSONStringToken?
    var controller: Bool?
    var blockOwnerDeletion: Bool?
    var seen: UInt8 = 0
    func first(_ field: UInt8) -> Bool {
      defer { seen |= 1 << field }
      return seen & (1 << field) == 0
    }
    func requiredString(_ reader: inout MetadataReader, _ field: String) throws(JSONScanError) -> JSONStringToken {
      guard try reader.cursor.peekNonWhitespace() == 0x22 else {
        try reader.mismatch(expected: "a string", depth: 4, path: "\(path()).\(field)")
      }
      return try reader.cursor.scanString()
    }
    try self.readObject(depth: 3) { reader, key throws(JSONScanError) in
      let cursor = reader.cursor
      if cursor.token(key, equals: "apiVersion"), first(0) {
        apiVersion = try requiredString(&reader, "apiVersion")
      } else if cursor.token(key, equals: "kind"), first(1) {
        kind = try requiredString(&reader, "kind")
      } else if cursor.token(key, equals: "name"), first(2) {
        name = try requiredString(&reader, "name")
      } else if cursor.token(key, equals: "uid"), first(3) {
        uid = try requiredString(&reader, "uid")
      } else if cursor.token(key, equals: "controller"), first(4) {
        controller = try reader.readOptionalBool(depth: 4, path: "\(path()).controller")
      } else if cursor.token(key, equals: "blockOwnerDeletion"), first(5) {
        blockOwnerDeletion = try reader.readOptionalBool(depth: 4, path: "\(path()).blockOwnerDeletion")
      } else {
        try reader.cursor.skipValue(depth: 4)
      }
    }
    guard let apiVersion else { throw JSONScanError(.missingField("apiVersion"), at: start, path: path()) }
    guard let kind else { throw JSONScanError(.missingField("kind"), at: start, path: path()) }
    guard let name else { throw JSONScanError(.missingField("name"), at: start, path: path()) }
    guard let uid else { throw JSONScanError(.missingField("uid"), at: start, path: path()) }
    sink.ownerReference(
      OwnerReferenceTokens(
        apiVersion: apiVersion, kind: kind, name: name, uid: uid, controller: controller,
        blockOwnerDeletion: blockOwnerDeletion), self)
  }
}

/// Which string map of the metadata a member belongs to.
enum MetadataMap {
  case labels, annotations
}

/// An owner reference as the tokens of its strings.
struct OwnerReferenceTokens {
  var apiVersion: JSONStringToken
  var kind: JSONStringToken
  var name: JSONStringToken
  var uid: JSONStringToken
  var controller: Bool?
  var blockOwnerDeletion: Bool?
}

/// What ``MetadataReader/readMetadata(into:)`` hands the metadata it reads to: each field once
/// (the first of duplicates), already validated. The reader keeps every rule; a sink only decides
/// what to keep, and which map keys are duplicates (`JSONDecoder` compares them as `String`s).
protocol MetadataSink {
  mutating func metadataObject(startingAt offset: Int)
  mutating func metadataObject(endingAt offset: Int)
  mutating func name(_ token: JSONStringToken?, _ reader: MetadataReader)
  mutating func namespace(_ token: JSONStringToken?, _ reader: MetadataReader)
  mutating func uid(_ token: JSONStringToken?, _ reader: MetadataReader)
  mutating func resourceVersion(_ value: Int64)
  mutating func generation(_ value: Int64)
  mutating func creationTimestamp(_ value: Timestamp?)
  mutating func deletionTimestamp(_ value: Timestamp?)
  /// Whether `key` is already in `map` (then its value is skipped, not type-checked).
  mutating func isDuplicate(_ key: JSONStringToken, in map: MetadataMap, _ reader: MetadataReader) -> Bool
  mutating func entry(_ key: JSONStringToken, _ value: JSONStringToken, in map: MetadataMap, _ reader: MetadataReader)
  mutating func finalizer(_ token: JSONStringToken, _ reader: MetadataReader)
  mutating func ownerReference(_ reference: OwnerReferenceTokens, _ reader: MetadataReader)
}

/// Builds an ``ObjectMeta`` (strings interned as the reader's interner allows).
struct ObjectMetaSink: MetadataSink {
  var meta = ObjectMeta()
  /// The label or annotation key last found new, kept for its entry.
  private var pendingKey = ""

  mutating func metadataObject(startingAt offset: Int) {}
  mutating func metadataObject(endingAt offset: Int) {}
  mutating func name(_ token: JSONStringToken?, _ reader: MetadataReader) {
    self.meta.name = token.map { reader.makeString($0, interned: false) } ?? ""
  }
  mutating func namespace(_ token: JSONStringToken?, _ reader: MetadataReader) {
    self.meta.namespace = token.map { reader.makeString($0, interned: true) } ?? ""
  }
  mutating func uid(_ token: JSONStringToken?, _ reader: MetadataReader) {
    self.meta.uid = token.map { reader.makeString($0, interned: false) } ?? ""
  }
  mutating func resourceVersion(_ value: Int64) { self.meta.resourceVersion = value }
  mutating func generation(_ value: Int64) { self.meta.generation = value }
  mutating func creationTimestamp(_ value: Timestamp?) { self.meta.creationTimestamp = value }
  mutating func deletionTimestamp(_ value: Timestamp?) { self.meta.deletionTimestamp = value }

  mutating func isDuplicate(_ key: JSONStringToken, in map: MetadataMap, _ reader: MetadataReader) -> Bool {
    let key = reader.makeString(key, interned: true)
    let duplicate =
      switch map {
      case .labels: self.meta.labels[key] != nil
      case .annotations: self.meta.annotations[key] != nil
      }
    self.pendingKey = duplicate ? "" : key
    return duplicate
  }

  mutating func entry(_ key: JSONStringToken, _ value: JSONStringToken, in map: MetadataMap, _ reader: MetadataReader) {
    switch map {
    case .labels: self.meta.labels[self.pendingKey] = reader.makeString(value, interned: true)
    case .annotations: self.meta.annotations[self.pendingKey] = reader.makeString(value, interned: false)
    }
  }

  mutating func finalizer(_ token: JSONStringToken, _ reader: MetadataReader) {
    self.meta.finalizers.append(reader.makeString(token, interned: true))
  }

  mutating func ownerReference(_ reference: OwnerReferenceTokens, _ reader: MetadataReader) {
    self.meta.ownerReferences.append(
      OwnerReference(
        apiVersion: reader.makeString(reference.apiVersion, interned: true),
        kind: reader.makeString(reference.kind, interned: true),
        name: reader.makeString(reference.name, interned: false),
        uid: reader.makeString(reference.uid, interned: false), controller: reference.controller,
        blockOwnerDeletion: reference.blockOwnerDeletion))
  }
}
