import Capstan
import CapstanTesting
import CapstanTestSupport
import Foundation
import PropertyBased
import Testing

/// The scanner's metadata equals `JSONDecoder`'s.
@Suite struct ObjectMetaScannerTests {
  @Test func podFixtureMatchesJSONDecoder() throws {
    let interner = StringInterner()
    for index in [0, 1, 2, 3, 49, 50, 51, 999, 12_345, 99_999] {
      let document = PodFixture.document(index: index)
      let decoded = try #require(ScannerOracle.decoderMetadata(document))
      #expect(try scanObjectMeta(document) == decoded)
      #expect(try ObjectMetaScanner(interner: interner).scan(PodFixture.data(index: index)) == decoded)
      #expect(decoded.name == PodFixture.name(index: index))
      #expect(decoded.uid == PodFixture.uid(index: index))
      #expect(decoded.namespace == PodFixture.namespace(index: index))
      #expect(decoded.labels.count == 4 && decoded.annotations.count == 2 && decoded.ownerReferences.count == 1)
      #expect((decoded.deletionTimestamp != nil) == (index % 50 == 0))
    }
    #expect(interner.count > 0)
  }

  @Test func podFixturesAreDistinct() {
    let names = Set((0..<2000).map(PodFixture.name(index:)))
    let uids = Set((0..<2000).map(PodFixture.uid(index:)))
    #expect(names.count == 2000 && uids.count == 2000)
    #expect((0..<100).allSatisfy { (1200...1700).contains(PodFixture.document(index: $0 * 997).count) })
  }

  /// Metadata members whose decoding rules are easy to get wrong: each is compared with
  /// `JSONDecoder` (accepted or rejected alike, and equal when accepted).
  @Test(arguments: [
    // Duplicate keys: the first wins, later ones are not type-checked.
    #""name":"a","name":"b""#, #""name":"a","name":5"#, #""name":5,"name":"a""#, #""name":"a","name":null"#,
    #""name":null,"name":"a""#, #""labels":{"a":"1","a":"2"}"#, #""labels":{"a":"1","a":2}"#,
    #""labels":{"a":2,"a":"1"}"#, "\"labels\":{\"\u{E9}\":\"1\",\"e\u{301}\":\"2\"}", #""labels":{"a":"1"},"labels":5"#,
    #""n\u0061me":"escaped key""#, #""name":"plain","n\u0061me":"escaped duplicate""#,
    // null and type mismatches.
    #""labels":{"a":null}"#, #""labels":null"#, #""labels":[]"#, #""labels":"x""#, #""annotations":{"a":1}"#,
    #""finalizers":["a",null]"#, #""finalizers":null"#, #""finalizers":"a""#, #""finalizers":[1]"#, #""uid":null"#,
    #""uid":1"#, #""namespace":["a"]"#, #""name":{}"#, #""name":true"#, #""generation":"5""#, #""generation":true"#,
    #""generation":null"#, #""generation":[1]"#,
    // Owner references.
    #""ownerReferences":[{"apiVersion":"v1","kind":"K","name":"n","uid":"u","controller":null,"blockOwnerDeletion":true,"x":[1]}]"#,
    #""ownerReferences":[{"kind":"K","name":"n","uid":"u"}]"#, #""ownerReferences":[{"apiVersion":"v","name":"n","uid":"u"}]"#,
    #""ownerReferences":[{"apiVersion":"v","kind":"K","uid":"u"}]"#, #""ownerReferences":[{"apiVersion":"v","kind":"K","name":"n"}]"#,
    #""ownerReferences":[{"apiVersion":null,"kind":"K","name":"n","uid":"u"}]"#,
    #""ownerReferences":[{"apiVersion":"v","kind":"K","name":"n","uid":"u","controller":1}]"#,
    #""ownerReferences":[{"apiVersion":"v","kind":"K","name":"n","uid":"u","controller":"true"}]"#,
    #""ownerReferences":[{"apiVersion":"v","kind":"K","name":"n","uid":"u","uid":5}]"#, #""ownerReferences":[null]"#,
    #""ownerReferences":null"#, #""ownerReferences":{}"#, #""ownerReferences":[[]]"#, #""ownerReferences":[]"#,
    // resourceVersion.
    #""resourceVersion":"""#, #""resourceVersion":"+5""#, #""resourceVersion":"-0""#, #""resourceVersion":"-1""#,
    #""resourceVersion":"007""#, #""resourceVersion":"\u0035""#, #""resourceVersion":5"#, #""resourceVersion":null"#,
    #""resourceVersion":"9223372036854775807""#, #""resourceVersion":"9223372036854775808""#, #""resourceVersion":" 5""#,
    #""resourceVersion":"5 ""#, #""resourceVersion":"0x10""#, #""resourceVersion":"\u0661""#, #""resourceVersion":"+""#,
    // Timestamps.
    #""creationTimestamp":"2024-01-02T03:04:05Z""#, #""creationTimestamp":"2024-01-02t03:04:05.123+01:30""#,
    #""creationTimestamp":"2024-13-02T03:04:05Z""#, #""creationTimestamp":"2024-02-30T03:04:05Z""#,
    #""creationTimestamp":null"#, #""deletionTimestamp":5"#, #""deletionTimestamp":"2024-01-02T03:04:05\u005a""#,
    #""deletionTimestamp":"""#, #""deletionTimestamp":"2024-01-02 03:04:05-07:00""#,
    // Strings.
    #""name":"\u00e9\ud83d\ude80\n\t\"\\\/""#, "\"name\":\"\u{FEFF}x\"", #""name":"\u0000""#, "\"name\":\"日本語\"",
    #""namespace":"a-namespace-longer-than-fifteen-bytes""#,
  ])
  func metadataMemberAsJSONDecoder(member: String) {
    for document in [#"{"metadata":{\#(member)}}"#, #"{"kind":"X","metadata":{ \#(member) , "zzz" : [ {} ] },"spec":{}}"#] {
      let bytes = Array(document.utf8)
      let expected = ScannerOracle.expected(bytes)
      #expect(ScannerOracle.scanned(bytes) == expected, "\(document)")
      #expect(ScannerOracle.scanned(bytes, interner: StringInterner()) == expected, "\(document) (interned)")
    }
  }

  @Test(arguments: [
    #"{"metadata":null}"#, #"{"metadata":5}"#, #"{"metadata":"x"}"#, #"{"metadata":[]}"#, #"{"metadata":true}"#,
    #"{"metadata":{"name":"a"},"metadata":{"name":"b"}}"#, #"{"metadata":null,"metadata":{"name":"b"}}"#,
    #"{"metadata":{"name":"a"},"metadata":5}"#, #"{"metadata":5,"metadata":{"name":"a"}}"#, #"{"m\u0065tadata":{"name":"a"}}"#,
    #"{}"#, #"{"spec":{"metadata":{"name":"nested"}}}"#, #"{"Metadata":{"name":"a"}}"#,
  ])
  func topLevelMetadataAsJSONDecoder(document: String) {
    let bytes = Array(document.utf8)
    #expect(ScannerOracle.scanned(bytes) == ScannerOracle.expected(bytes))
  }

  @Test func errorsSayWhereAndWhat() {
    #expect(throws: JSONScanError(.typeMismatch(expected: "a string"), at: 20, path: "metadata.name")) {
      try scanObjectMeta(Array(#"{"metadata":{"name":5}}"#.utf8))
    }
    #expect(throws: JSONScanError(.missingField("uid"), at: 32, path: "metadata.ownerReferences[0]")) {
      try scanObjectMeta(Array(#"{"metadata":{"ownerReferences":[{"apiVersion":"v","kind":"K","name":"n"}]}}"#.utf8))
    }
    #expect(throws: JSONScanError(.unexpectedEndOfInput, at: 13)) { try scanObjectMeta(Array(#"{"metadata":{"#.utf8)) }
    let error = JSONScanError(.typeMismatch(expected: "a string"), at: 21, path: "metadata.name")
    #expect(error.description == "metadata.name: expected a string at byte 21")
    #expect(!error.isSyntaxError)
    #expect(JSONScanError(.invalidUTF8, at: 3).isSyntaxError)
  }

  @Test func emptyInput() {
    #expect(throws: JSONScanError(.unexpectedEndOfInput, at: 0)) { try scanObjectMeta([UInt8]()) }
    #expect(throws: JSONScanError(.unexpectedEndOfInput, at: 0)) { try scanObjectMeta(Data()) }
    #expect(throws: JSONScanError(.unexpectedEndOfInput, at: 0)) { try scanObjectMeta(UnsafeRawBufferPointer(start: nil, count: 0)) }
  }

  /// Random metadata, written with random whitespace, escapes, nulls for empty fields, unknown
  /// members anywhere and first-wins duplicates: the scanner reads what `JSONDecoder` reads, and
  /// both read what was written.
  @Test func randomMetadataMatchesJSONDecoder() async {
    let generator = Generator<RandomMetadataDocument, Shrink.None<RandomMetadataDocument>>(run: { rng in
      var random = ErasedRandom(base: rng)
      defer { rng = random.base }
      return RandomMetadataDocument.make(using: &random)
    })
    let interner = StringInterner(capacity: 64)
    await propertyCheck(count: 400, input: generator) { document in
      let decoded = ScannerOracle.decoderMetadata(document.bytes)
      #expect(decoded == document.meta, "JSONDecoder: \(String(decoding: document.bytes, as: UTF8.self))")
      #expect(ScannerOracle.serializationAcceptsObject(document.bytes))
      #expect(ScannerOracle.scanned(document.bytes) == decoded, "\(String(decoding: document.bytes, as: UTF8.self))")
      #expect(ScannerOracle.scanned(document.bytes, interner: interner) == decoded)
    }
  }
}

/// Wraps the property checker's generator so the standard library's `random(in:using:)` takes it.
struct ErasedRandom: RandomNumberGenerator {
  var base: any SeededRandomNumberGenerator
  mutating func next() -> UInt64 { self.base.next() }
}

/// A random `ObjectMeta` and a JSON document holding it.
struct RandomMetadataDocument: Sendable, CustomStringConvertible {
  var meta: ObjectMeta
  var bytes: [UInt8]

  var description: String { String(decoding: self.bytes, as: UTF8.self) }

  static let pieces: [String] = [
    "a", "b", "web", "app.kubernetes.io/name", "x", "-", ".", "é", "e\u{301}", "日本", "🚀", "\"", "\\", "/", "\n", "\t",
    "\u{0}", "\u{1F}", "\u{7F}", "\u{FEFF}", "\u{2028}", " ", "0", "long-value-that-needs-a-heap-allocation",
  ]

  static func string<R: RandomNumberGenerator>(using random: inout R, maxPieces: Int = 4) -> String {
    (0..<Int.random(in: 0...maxPieces, using: &random)).map { _ in pieces.randomElement(using: &random)! }.joined()
  }

  static func make<R: RandomNumberGenerator>(using random: inout R) -> RandomMetadataDocument {
    var meta = ObjectMeta()
    meta.uid = Bool.random(using: &random) ? UUIDText.make(using: &random) : ""
    meta.name = string(using: &random)
    meta.namespace = ["", "default", "kube-system", "a-namespace-longer-than-fifteen"].randomElement(using: &random)!
    meta.resourceVersion = [0, 1, Int64.random(in: 0...Int64.max, using: &random)].randomElement(using: &random)!
    meta.generation = [0, 1, -3, Int64.random(in: Int64.min...Int64.max, using: &random)].randomElement(using: &random)!
    for _ in 0..<Int.random(in: 0...4, using: &random) {
      meta.labels[string(using: &random)] = string(using: &random)
    }
    for _ in 0..<Int.random(in: 0...2, using: &random) {
      meta.annotations[string(using: &random)] = string(using: &random, maxPieces: 8)
    }
    for _ in 0..<Int.random(in: 0...2, using: &random) {
      meta.ownerReferences.append(
        OwnerReference(
          apiVersion: ["v1", "apps/v1", ""].randomElement(using: &random)!, kind: string(using: &random),
          name: string(using: &random), uid: UUIDText.make(using: &random), controller: [nil, true, false].randomElement(using: &random)!,
          blockOwnerDeletion: [nil, true, false].randomElement(using: &random)!))
    }
    meta.finalizers = (0..<Int.random(in: 0...2, using: &random)).map { _ in string(using: &random) }
    let times: [Timestamp?] = [nil, Timestamp(secondsSince1970: 0), Timestamp(secondsSince1970: Int64.random(in: -5_000_000_000...5_000_000_000, using: &random))]
    meta.creationTimestamp = times.randomElement(using: &random)!
    meta.deletionTimestamp = times.randomElement(using: &random)!
    var writer = RandomJSONWriter(random: random)
    writer.writeDocument(meta)
    random = writer.random
    return RandomMetadataDocument(meta: meta, bytes: writer.output)
  }
}

enum UUIDText {
  static func make<R: RandomNumberGenerator>(using random: inout R) -> String {
    let hex = (0..<32).map { _ in String(Int.random(in: 0..<16, using: &random), radix: 16) }
    return [0..<8, 8..<12, 12..<16, 16..<20, 20..<32].map { hex[$0].joined() }.joined(separator: "-")
  }
}

/// Writes metadata as JSON the way many writers might: random whitespace, member order and
/// escapes, `null` or nothing for empty fields, unknown members, and duplicates that come after
/// the first (which `JSONDecoder` ignores).
struct RandomJSONWriter<R: RandomNumberGenerator> {
  var random: R
  var output: [UInt8] = []

  mutating func chance(_ percent: Int) -> Bool { Int.random(in: 0..<100, using: &self.random) < percent }

  mutating func whitespace() {
    guard self.chance(20) else { return }
    for _ in 0..<Int.random(in: 1...3, using: &self.random) {
      self.output.append([0x20, 0x09, 0x0A, 0x0D].randomElement(using: &self.random)!)
    }
  }

  mutating func raw(_ text: String) { self.output.append(contentsOf: text.utf8) }

  mutating func string(_ value: String) {
    self.whitespace()
    self.raw("\"")
    for scalar in value.unicodeScalars {
      switch scalar {
      case "\"": self.raw(#"\""#)
      case "\\": self.raw(#"\\"#)
      case "\n" where self.chance(50): self.raw(#"\n"#)
      case "\t" where self.chance(50): self.raw(#"\t"#)
      case "/" where self.chance(50): self.raw(#"\/"#)
      case _ where scalar.value < 0x20 || self.chance(10):
        for unit in String(scalar).utf16 {
          let hex = String(unit, radix: 16)
          let padded = String(repeating: "0", count: 4 - hex.count) + hex
          self.raw("\\u" + (self.chance(50) ? padded.uppercased() : padded))
        }
      default: self.raw(String(scalar))
      }
    }
    self.raw("\"")
    self.whitespace()
  }

  /// A random JSON value for an unknown member.
  mutating func unknownValue(depth: Int = 0) {
    self.whitespace()
    switch Int.random(in: 0..<(depth < 3 ? 8 : 6), using: &self.random) {
    case 0: self.raw("null")
    case 1: self.raw(Bool.random(using: &self.random) ? "true" : "false")
    case 2: self.raw(["0", "-1", "3.25", "1e10", "-2.5E-3", "123456789012345678901234567890", "0.0"].randomElement(using: &self.random)!)
    case 3, 4, 5: self.string(RandomMetadataDocument.string(using: &self.random))
    case 6:
      self.raw("[")
      let count = Int.random(in: 0...3, using: &self.random)
      for index in 0..<count {
        if index > 0 { self.raw(",") }
        self.unknownValue(depth: depth + 1)
      }
      if count > 0, self.chance(10) { self.raw(",") }
      self.raw("]")
    default:
      self.raw("{")
      let count = Int.random(in: 0...3, using: &self.random)
      for index in 0..<count {
        if index > 0 { self.raw(",") }
        self.string(["metadata", "name", "labels", "x", RandomMetadataDocument.string(using: &self.random)].randomElement(using: &self.random)!)
        self.raw(":")
        self.unknownValue(depth: depth + 1)
      }
      self.raw("}")
    }
    self.whitespace()
  }

  /// Members in random order, with unknown members mixed in (not in maps), and now and then a duplicate of an
  /// earlier key (with a different, possibly ill-typed, value) that `JSONDecoder` ignores.
  mutating func object(_ members: [(key: String, write: (inout Self) -> Void)], unknownMembers: Bool = true) {
    var members = members
    for _ in 0..<(unknownMembers ? Int.random(in: 0...2, using: &self.random) : 0) {
      let key = ["spec", "status", "managedFields", "selfLink", RandomMetadataDocument.string(using: &self.random)]
        .randomElement(using: &self.random)!
      members.append((key, { $0.unknownValue() }))
    }
    members.shuffle(using: &self.random)
    if let first = members.first, self.chance(15) {
      members.append((first.key, { $0.unknownValue() }))
    }
    self.whitespace()
    self.raw("{")
    for (index, member) in members.enumerated() {
      if index > 0 { self.raw(",") }
      self.string(member.key)
      self.raw(":")
      self.whitespace()
      member.write(&self)
      self.whitespace()
    }
    if !members.isEmpty, self.chance(5) { self.raw(",") }
    self.raw("}")
    self.whitespace()
  }

  /// An empty value as absent, `null`, or the empty form.
  mutating func optionalMember(
    _ members: inout [(key: String, write: (inout Self) -> Void)], _ key: String, isEmpty: Bool, empty: String,
    write: @escaping (inout Self) -> Void
  ) {
    if !isEmpty {
      members.append((key, write))
      return
    }
    switch Int.random(in: 0..<3, using: &self.random) {
    case 0: break
    case 1: members.append((key, { $0.raw("null") }))
    default: members.append((key, { $0.raw(empty) }))
    }
  }

  mutating func stringMap(_ map: [String: String]) {
    self.object(map.map { key, value in (key, { $0.string(value) }) }, unknownMembers: false)
  }

  mutating func writeDocument(_ meta: ObjectMeta) {
    var members: [(key: String, write: (inout Self) -> Void)] = []
    self.optionalMember(&members, "uid", isEmpty: meta.uid.isEmpty, empty: #""""#) { $0.string(meta.uid) }
    self.optionalMember(&members, "name", isEmpty: meta.name.isEmpty, empty: #""""#) { $0.string(meta.name) }
    self.optionalMember(&members, "namespace", isEmpty: meta.namespace.isEmpty, empty: #""""#) { $0.string(meta.namespace) }
    self.optionalMember(&members, "resourceVersion", isEmpty: meta.resourceVersion == 0, empty: #""""#) {
      $0.string(String(meta.resourceVersion))
    }
    self.optionalMember(&members, "generation", isEmpty: meta.generation == 0, empty: "0") { writer in
      let value = meta.generation
      if value.magnitude < 1 << 53, writer.chance(20) {
        writer.raw(["\(value).0", "\(value)e0", "\(value)0e-1"].randomElement(using: &writer.random)!)
      } else {
        writer.raw(String(value))
      }
    }
    self.optionalMember(&members, "labels", isEmpty: meta.labels.isEmpty, empty: "{}") { $0.stringMap(meta.labels) }
    self.optionalMember(&members, "annotations", isEmpty: meta.annotations.isEmpty, empty: "{}") { $0.stringMap(meta.annotations) }
    self.optionalMember(&members, "finalizers", isEmpty: meta.finalizers.isEmpty, empty: "[]") { writer in
      writer.raw("[")
      for (index, finalizer) in meta.finalizers.enumerated() {
        if index > 0 { writer.raw(",") }
        writer.string(finalizer)
      }
      writer.raw("]")
    }
    self.optionalMember(&members, "ownerReferences", isEmpty: meta.ownerReferences.isEmpty, empty: "[]") { writer in
      writer.raw("[")
      for (index, reference) in meta.ownerReferences.enumerated() {
        if index > 0 { writer.raw(",") }
        var fields: [(key: String, write: (inout Self) -> Void)] = [
          ("apiVersion", { $0.string(reference.apiVersion) }), ("kind", { $0.string(reference.kind) }),
          ("name", { $0.string(reference.name) }), ("uid", { $0.string(reference.uid) }),
        ]
        writer.optionalMember(&fields, "controller", isEmpty: reference.controller == nil, empty: "null") {
          $0.raw(reference.controller! ? "true" : "false")
        }
        writer.optionalMember(&fields, "blockOwnerDeletion", isEmpty: reference.blockOwnerDeletion == nil, empty: "null") {
          $0.raw(reference.blockOwnerDeletion! ? "true" : "false")
        }
        writer.object(fields)
      }
      writer.raw("]")
    }
    for (key, time) in [("creationTimestamp", meta.creationTimestamp), ("deletionTimestamp", meta.deletionTimestamp)] {
      self.optionalMember(&members, key, isEmpty: time == nil, empty: "null") { writer in
        let text = time!.description
        writer.string(writer.chance(20) ? text.replacingOccurrences(of: "Z", with: ".123456+00:00") : text)
      }
    }
    var top: [(key: String, write: (inout Self) -> Void)] = [
      ("apiVersion", { $0.string("v1") }), ("kind", { $0.string("Pod") }),
    ]
    let isEmpty = meta == ObjectMeta()
    self.optionalMember(&top, "metadata", isEmpty: isEmpty && self.chance(50), empty: "{}") { $0.object(members) }
    self.object(top)
  }
}
