import Capstan
import CapstanTesting
import CapstanTestSupport
import Foundation
import PropertyBased
import Testing

/// The scanner accepts and rejects exactly what Foundation does (for top-level objects in UTF-8),
/// and never crashes or reads out of bounds.
@Suite struct JSONScanValidationTests {
  /// Asserts the scanner agrees with Foundation on `bytes` (and returns whether it accepted).
  @discardableResult
  static func expectAgreement(_ bytes: [UInt8], _ label: String, sourceLocation: SourceLocation = #_sourceLocation)
    -> Bool
  {
    let expected = ScannerOracle.expected(bytes)
    let scanned = ScannerOracle.scanned(bytes)
    #expect(
      scanned == expected,
      "\(label): scanner \(scanned == nil ? "rejects" : "accepts"), Foundation \(expected == nil ? "rejects" : "accepts"): \(String(decoding: bytes.prefix(200), as: UTF8.self))",
      sourceLocation: sourceLocation)
    return scanned != nil
  }

  static func document(_ text: String) -> [UInt8] { Array(text.utf8) }

  @Test func truncatedAtEveryOffset() {
    let pod = PodFixture.document(index: 3)
    #expect(Self.expectAgreement(pod, "whole document"))
    for length in 0..<pod.count {
      let truncated = Array(pod[..<length])
      #expect(ScannerOracle.scanned(truncated) == nil, "accepted a document truncated to \(length) bytes")
      #expect(ScannerOracle.serializationAcceptsObject(truncated) == false)
    }
  }

  @Test func documentWithEveryByteRemoved() {
    let pod = PodFixture.document(index: 11)
    for index in pod.indices {
      var damaged = pod
      damaged.remove(at: index)
      Self.expectAgreement(damaged, "byte \(index) removed")
    }
  }

  @Test func escapes() {
    let escapes = [
      #"\x"#, #"\u00"#, #"\u00zz"#, #"\u12G4"#, #"\ud800"#, #"\ud800x"#, #"\ud800\u0041"#, #"\udc00"#, #"\udfff"#,
      #"\ud800\udc00"#, #"\udbff\udfff"#, #"\ud800\ud800"#, #"\u0000"#, #"\/"#, #"\b\f\n\r\t"#, #"\U0041"#, #"\'"#,
      #"\ud800\n"#, #"\"#, #"\u"#, #"\uD83D\uDE80"#, #"\uFFFF"#, #"\uFEFF"#, #"\ud800\"#, #"\ud800\u"#, #"\ud800\udc0"#,
    ]
    for escape in escapes {
      Self.expectAgreement(Self.document(#"{"metadata":{"name":"a\#(escape)b"}}"#), "metadata value \(escape)")
      Self.expectAgreement(Self.document(#"{"spec":{"a\#(escape)":1}}"#), "unknown key \(escape)")
      Self.expectAgreement(Self.document(#"{"spec":["a\#(escape)"]}"#), "unknown value \(escape)")
      Self.expectAgreement(Self.document(#"{"metadata":{"labels":{"a\#(escape)":"v"}}}"#), "label key \(escape)")
      // Truncated right after the escape.
      Self.expectAgreement(Self.document(#"{"spec":"a\#(escape)"#), "truncated after \(escape)")
    }
  }

  @Test func controlCharacters() {
    for byte in UInt8(0)...0x20 {
      Self.expectAgreement(Array(#"{"metadata":{"name":"a"#.utf8) + [byte] + Array(#"b"}}"#.utf8), "control \(byte) in a string")
      Self.expectAgreement(Array(#"{"a":"#.utf8) + [byte] + Array("1}".utf8), "byte \(byte) before a value")
    }
    Self.expectAgreement(Array(#"{"metadata":{"name":"a"#.utf8) + [0x7F] + Array(#""}}"#.utf8), "DEL")
  }

  static let utf8Sequences: [[UInt8]] = [
    [0xC0, 0x80], [0xC1, 0xBF], [0xE0, 0x80, 0x80], [0xE0, 0x9F, 0xBF], [0xE0, 0xA0, 0x80], [0xED, 0xA0, 0x80],
    [0xED, 0xBF, 0xBF], [0xED, 0x9F, 0xBF], [0xEE, 0x80, 0x80], [0xE2, 0x82], [0xE2], [0xF4, 0x90, 0x80, 0x80],
    [0xF4, 0x8F, 0xBF, 0xBF], [0xF0, 0x80, 0x80, 0x80], [0xF0, 0x8F, 0xBF, 0xBF], [0xF0, 0x90, 0x80, 0x80],
    [0xF3, 0xBF, 0xBF, 0xBF], [0xF5, 0x80, 0x80, 0x80], [0xF8, 0x88, 0x80, 0x80, 0x80], [0xFF], [0xFE], [0x80], [0xBF],
    [0xC3], [0xC3, 0xA9], [0xC3, 0xC3], [0xE2, 0x28, 0xA1], [0xEF, 0xBF, 0xBE], [0xEF, 0xBF, 0xBF], [0xEF, 0xBB, 0xBF],
    [0xF0, 0x9F, 0x9A, 0x80], [0xF0, 0x9F, 0x9A], [0xDF, 0xBF], [0xC2, 0x80],
  ]

  @Test func invalidUTF8() {
    for sequence in Self.utf8Sequences {
      let hex = sequence.map { String($0, radix: 16) }.joined(separator: " ")
      Self.expectAgreement(Array(#"{"metadata":{"name":"a"#.utf8) + sequence + Array(#"b"}}"#.utf8), "in a kept string: \(hex)")
      Self.expectAgreement(Array(#"{"spec":{"k":"a"#.utf8) + sequence + Array(#""}}"#.utf8), "in a skipped string: \(hex)")
      Self.expectAgreement(Array(#"{"spec":{"a"#.utf8) + sequence + Array(#"":1}}"#.utf8), "in a key: \(hex)")
      Self.expectAgreement(Array(#"{"spec":1 "#.utf8) + sequence + Array("}".utf8), "outside strings: \(hex)")
      // Long ASCII runs before it, so the 8-byte fast path hands over mid-word.
      for padding in 0..<9 {
        let prefix = Array(#"{"spec":""#.utf8) + Array(repeating: UInt8(ascii: "x"), count: padding)
        Self.expectAgreement(prefix + sequence + Array(#"xxxxxxxx"}"#.utf8), "after \(padding) bytes: \(hex)")
      }
    }
  }

  @Test func numbers() {
    let numbers = [
      "0", "-0", "01", "-01", "00", "-", "-a", "1.", ".5", "-.5", "1.e5", "1e", "1e+", "1e-", "1E5", "1e05", "1e+5", "1.5e-3",
      "+1", "0x10", "1.0e", "1.5.3", "1e5e5", "1-", "0-", "-0.0", "1e400", "-1e400", "1E400", "1e-400", "1e308", "1.8e308",
      "1.7976931348623157e308", "1.7976931348623158e308", "1.7976931348623159e308", "123456789012345678901234567890",
      "9223372036854775807", "9223372036854775808", "18446744073709551615", "18446744073709551616", "-9223372036854775808",
      "-9223372036854775809", String(repeating: "9", count: 308), String(repeating: "9", count: 309),
      "1" + String(repeating: "0", count: 400), "0." + String(repeating: "0", count: 400) + "1",
      String(repeating: "1", count: 200) + "e127", String(repeating: "1", count: 200) + "e-127",
      "123456789012345678e99999999999999999999", "1e-99999999999999999999", "1.5E400", "0.5e309", "0.5e308",
      "12345678901234567890.5e300", "NaN", "Infinity", "-Infinity", "nan", "inf",
    ]
    for number in numbers {
      Self.expectAgreement(Self.document(#"{"spec":{"x":\#(number)}}"#), "number \(number)")
      Self.expectAgreement(Self.document(#"{"spec":[\#(number)]}"#), "number \(number) in an array")
      Self.expectAgreement(Self.document(#"{"metadata":{"generation":\#(number)}}"#), "generation \(number)")
      Self.expectAgreement(Self.document(#"{"spec":\#(number) }"#), "number \(number) before a space")
    }
    // Foundation checks numbers after parsing, on the values its dictionaries keep (the last of
    // duplicate keys).
    Self.expectAgreement(Self.document(#"{"a":1e400,"a":1}"#), "shadowed out-of-range number")
    Self.expectAgreement(Self.document(#"{"a":{"b":[1e400]},"a":1}"#), "shadowed nested out-of-range number")
    Self.expectAgreement(Self.document(#"{"a":1,"a":1e400}"#), "out-of-range number in the last duplicate")
    Self.expectAgreement(Self.document(#"{"metadata":{"x":1e400},"metadata":{}}"#), "shadowed in metadata")
  }

  @Test func generationNumbersAsJSONDecoder() {
    let numbers = [
      "3.0", "3e0", "1e2", "1E2", "-0.0", "1.5", "2.5e-3", "1e-400", "9007199254740993.0", "9007199254740993.5",
      "9007199254740992.5", "1.0000000000000001", "9223372036854775807.0", "9223372036854775808.0",
      "92233720368547758070e-1", "-9223372036854775808.0", "-9223372036854775809", "123456789012345678901234567890e-20",
      "9007199254740993", "18014398509481985.0", "-18014398509481985.0", "1e18", "1e19", "4611686018427387904.5",
    ]
    for number in numbers {
      let document = Self.document(#"{"metadata":{"generation":\#(number)}}"#)
      #expect(ScannerOracle.scanned(document) == ScannerOracle.expected(document), "generation \(number)")
    }
  }

  @Test func structure() {
    let documents = [
      "", " ", "{", "}", "{}", " \t\r\n{}\n ", "\u{0C}{}", "{}x", "{}{}", "{} ", "{}\u{0}", #"{"a":1,}"#, #"{"a":[1,]}"#,
      #"{"a":[1,,]}"#, "{,}", #"{"a":[,]}"#, #"{"a":1},"#, #"{"a":1,,"b":2}"#, "{/*x*/}", "{} // x", #"{"a" 1}"#, #"{"a":}"#,
      "{'a':1}", "{a:1}", #"{"a":1 "b":2}"#, #"{"a":tru}"#, #"{"a":nul}"#, #"{"a":falsey}"#, #"{"a":True}"#,
      #"{"a":nulll}"#, #"{"a":true}"#, #"{"a":[true,false,null]}"#, #"{"":1}"#, #"{"a":{}}"#, #"{"a":[]}"#,
      #"{"a":[{}]}"#, #"{"a":[[]]}"#, #"{"a":{"b":[1,{"c":null}]}}"#, #"{"a":1]"#, #"{"a":[1}"#, #"{"a":{"b":1]}"#,
      #"{"a" : 1 , "b" : [ 1 , 2 ] }"#, #"{"metadata":{"name":"x"},}"#, #"{"metadata":{"name":"x",}}"#,
      #"{"metadata":{"labels":{"a":"b",}}}"#, #"{"metadata":{"finalizers":["a",]}}"#, #"{"metadata":{"finalizers":[,]}}"#,
      #"{"metadata":{"ownerReferences":[{"apiVersion":"v","kind":"K","name":"n","uid":"u",},]}}"#,
      #"{"metadata":{,}}"#, #"{"metadata":{"labels":{,}}}"#, #"{"metadata":}"#, #"{"metadata":nul}"#,
      #"{"metadata":{"name":"x"}"#, #"{"metadata":{"name":"x"]}"#, #"{"metadata":{"name" "x"}}"#, "{\"a\":\"\u{2028}\"}",
      "{\"a\":1}\u{A0}", "\u{FEFF}{}", "{}\u{FEFF}",
    ]
    for document in documents {
      Self.expectAgreement(Self.document(document), "document \(document.debugDescription)")
    }
  }

  @Test func byteOrderMarks() {
    let object = Array(#"{"metadata":{"name":"x"}}"#.utf8)
    #expect(Self.expectAgreement([0xEF, 0xBB, 0xBF] + object, "UTF-8 BOM"))
    Self.expectAgreement([0xEF, 0xBB, 0xBF, 0xEF, 0xBB, 0xBF] + object, "two BOMs")
    Self.expectAgreement([0xEF, 0xBB] + object, "half a BOM")
    Self.expectAgreement([0xEF, 0xBB, 0xBF], "only a BOM")
    Self.expectAgreement([0xEF, 0xBB, 0xBF, 0x20] + object, "BOM then whitespace")
  }

  /// The two intended differences: Foundation also accepts a top-level array, and transcodes
  /// UTF-16 and UTF-32; the scanner rejects both.
  @Test func intendedDifferences() {
    for document in ["[]", "[{}]", #"[{"metadata":{"name":"x"}}]"#, " [1,2]"] {
      let bytes = Self.document(document)
      #expect(throws: JSONScanError(.topLevelNotObject, at: bytes.firstIndex(of: 0x5B)!)) { try scanObjectMeta(bytes) }
      #expect(ScannerOracle.scanned(bytes) == nil)
    }
    for document in ["1", "\"x\"", "true", "null"] {
      #expect(ScannerOracle.scanned(Self.document(document)) == nil)
      #expect((try? JSONSerialization.jsonObject(with: Data(document.utf8), options: [])) == nil)
    }
    let json = #"{"metadata":{"name":"x"}}"#
    let utf16LE = json.utf16.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }
    let utf16BE = json.utf16.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
    let utf32LE = json.unicodeScalars.flatMap { scalar in (0..<4).map { UInt8(truncatingIfNeeded: scalar.value >> (8 * $0)) } }
    for (label, bytes) in [
      ("UTF-16LE", utf16LE), ("UTF-16BE", utf16BE), ("UTF-16LE BOM", [0xFF, 0xFE] + utf16LE),
      ("UTF-16BE BOM", [0xFE, 0xFF] + utf16BE), ("UTF-32LE", utf32LE),
    ] {
      #expect(ScannerOracle.looksLikeUTF16OrUTF32(bytes), "\(label)")
      #expect(ScannerOracle.decoderMetadata(bytes)?.name == "x", "JSONDecoder reads \(label)")
      #expect(throws: JSONScanError(.unsupportedEncoding, at: 0), "\(label)") { try scanObjectMeta(bytes) }
    }
  }

  @Test func deepNesting() {
    func nested(_ depth: Int, open: String, close: String, inner: String = "") -> [UInt8] {
      Array((String(repeating: open, count: depth) + inner + String(repeating: close, count: depth)).utf8)
    }
    for depth in [510, 511, 512, 513, 514, 1000] {
      // `depth` containers in all, the top-level object included.
      Self.expectAgreement(Array(#"{"x":"#.utf8) + nested(depth - 1, open: "[", close: "]") + [0x7D], "\(depth) arrays deep")
      Self.expectAgreement(nested(depth, open: #"{"a":"#, close: "}", inner: "1"), "\(depth) objects deep")
      Self.expectAgreement(
        Array(#"{"metadata":{"x":"#.utf8) + nested(depth - 2, open: "[", close: "]") + Array("}}".utf8),
        "\(depth) deep inside metadata")
      Self.expectAgreement(
        Array(#"{"metadata":{"ownerReferences":[{"apiVersion":"v","kind":"K","name":"n","uid":"u","x":"#.utf8)
          + nested(depth - 4, open: "[", close: "]") + Array("}]}}".utf8),
        "\(depth) deep inside an owner reference")
    }
    // 100k deep: rejected without exhausting the stack (unterminated and terminated).
    for document in [
      Array(#"{"x":"#.utf8) + nested(100_000, open: "[", close: "]") + [0x7D],
      nested(100_000, open: #"{"a":"#, close: "}", inner: "1"),
      Array(#"{"x":"#.utf8) + Array(repeating: UInt8(ascii: "["), count: 100_000),
      Array(repeating: UInt8(ascii: "{"), count: 100_000),
    ] {
      #expect(throws: JSONScanError.self) { try scanObjectMeta(document) }
    }
    #expect(throws: JSONScanError(.tooDeeplyNested, at: 5 + 511)) {
      try scanObjectMeta(Array(#"{"x":"#.utf8) + nested(100_000, open: "[", close: "]") + [0x7D])
    }
  }

  /// Random damage to a real document: the scanner agrees with Foundation and never crashes.
  @Test func randomDamage() async {
    let interesting: [UInt8] = [
      0x00, 0x09, 0x0A, 0x1F, 0x20, 0x22, 0x2C, 0x2D, 0x2E, 0x30, 0x31, 0x3A, 0x45, 0x5B, 0x5C, 0x5D, 0x65, 0x6E, 0x74,
      0x75, 0x7B, 0x7D, 0x7F, 0x80, 0xC3, 0xE2, 0xED, 0xF0, 0xFF,
    ]
    let pod = PodFixture.document(index: 42)
    let generator = Gen.int(in: 4...(pod.count - 1)).array(of: 1...4)
    await propertyCheck(count: 1500, input: generator, Gen.int(in: 0...Int.max)) { positions, choice in
      var damaged = pod
      var choice = choice
      for position in positions where position < damaged.count {
        let byte = interesting[choice % interesting.count]
        choice /= interesting.count
        switch choice % 3 {
        case 0: damaged[position] = byte
        case 1: damaged.insert(byte, at: position)
        default: damaged.remove(at: position)
        }
        choice /= 3
      }
      Self.expectAgreement(damaged, "damaged at \(positions)")
    }
  }
}
