import Foundation

/// A string token: the bytes between the quotes, already validated (UTF-8, escapes, no control
/// characters). `start..<end` are offsets into the scanned buffer.
struct JSONStringToken {
  var start: Int
  var end: Int
  /// Whether the string contains a backslash escape (and so must be unescaped to be read).
  var hasEscapes: Bool

  var count: Int { self.end - self.start }
}

/// A number token, already validated against JSON's grammar.
struct JSONNumberToken {
  var start: Int
  var end: Int
  /// No fraction and no exponent.
  var isPlainInteger: Bool
}

/// A forward-only reader over one JSON document that validates as it goes, exactly as
/// Foundation's `JSONSerialization` (swift-corelibs-foundation's `JSONParser`) accepts:
///
/// - whitespace is space, tab, line feed and carriage return only;
/// - strings are well-formed UTF-8 without unescaped control characters (U+0000–U+001F); escapes are
///   `\" \\ \/ \b \f \n \r \t \uXXXX`, and a `\u` high surrogate must be followed by a `\u` low
///   surrogate (a lone low surrogate is an error too);
/// - numbers follow RFC 8259 (no leading zeros, no `+`, no `.5` or `1.`), and must be representable
///   (see ``isRepresentableNumber(_:)``);
/// - one trailing comma is allowed before `]` and `}` (Foundation accepts `[1,]` and `{"a":1,}`);
/// - at most 512 nested arrays and objects.
///
/// Every read is bounds-checked against `count`; nothing recurses (``skipValue(depth:)`` keeps an
/// explicit stack), so hostile nesting cannot exhaust the call stack.
struct JSONCursor {
  static let maximumDepth = 512

  let base: UnsafePointer<UInt8>
  let count: Int
  var position: Int
  /// The offset of the first number `JSONSerialization` could not represent. Foundation converts
  /// numbers only after parsing, and only those that survive duplicate-key replacement (its
  /// dictionaries keep the last value for a key), so whether such a number makes the document
  /// invalid is decided at the end (``ObjectMetaScanner``).
  var firstUnrepresentableNumber: Int?

  init(base: UnsafePointer<UInt8>, count: Int) {
    self.base = base
    self.count = count
    self.position = 0
  }

  // MARK: Bytes

  @inline(__always)
  func byte(at offset: Int) -> UInt8 {
    precondition(offset >= 0 && offset < self.count)
    return self.base[offset]
  }

  /// The byte at the current position, or an end-of-input error.
  @inline(__always)
  func currentByte() throws(JSONScanError) -> UInt8 {
    guard self.position < self.count else { throw JSONScanError(.unexpectedEndOfInput, at: self.position) }
    return self.base[self.position]
  }

  @inline(__always)
  mutating func skipWhitespace() {
    while self.position < self.count {
      switch self.base[self.position] {
      case 0x20, 0x0A, 0x0D, 0x09: self.position += 1
      default: return
      }
    }
  }

  /// Skips whitespace and returns the next byte (without consuming it).
  @inline(__always)
  mutating func peekNonWhitespace() throws(JSONScanError) -> UInt8 {
    self.skipWhitespace()
    return try self.currentByte()
  }

  /// Skips whitespace and consumes `expected`.
  @inline(__always)
  mutating func expect(_ expected: UInt8) throws(JSONScanError) {
    let byte = try self.peekNonWhitespace()
    guard byte == expected else { throw JSONScanError(.unexpectedByte(byte), at: self.position) }
    self.position += 1
  }

  // MARK: Strings

  /// The high bit of each of the 8 bytes (little-endian: the first byte is the lowest) that may
  /// be a quote, a backslash, a control character or non-ASCII; 0 when none is. A borrow can set
  /// bits above a flagged byte, but never below: the lowest set bit is exactly the first such byte.
  @inline(__always)
  static func attentionMask(_ word: UInt64) -> UInt64 {
    let ones: UInt64 = 0x0101_0101_0101_0101
    let highBits: UInt64 = 0x8080_8080_8080_8080
    let quotes = word ^ (ones &* 0x22)
    let backslashes = word ^ (ones &* 0x5C)
    let nonASCII = word
    let belowSpace = (word &- ones &* 0x20) & ~word
    let quote = (quotes &- ones) & ~quotes
    let backslash = (backslashes &- ones) & ~backslashes
    return (nonASCII | belowSpace | quote | backslash) & highBits
  }

  /// Whether any of the 8 bytes is a quote, a backslash, a control character or non-ASCII.
  @inline(__always)
  static func needsAttention(_ word: UInt64) -> Bool { self.attentionMask(word) != 0 }

  /// Scans a string whose opening quote is at the current position; leaves the position after
  /// the closing quote.
  mutating func scanString() throws(JSONScanError) -> JSONStringToken {
    let start = self.position + 1
    var index = start
    var hasEscapes = false
    let count = self.count
    let base = self.base
    while true {
      while index &+ 8 <= count {
        let word = UInt64(littleEndian: UnsafeRawPointer(base + index).loadUnaligned(as: UInt64.self))
        let mask = Self.attentionMask(word)
        if mask != 0 {
          // Straight to the first byte that may need attention.
          index &+= mask.trailingZeroBitCount &>> 3
          break
        }
        index &+= 8
      }
      guard index < count else { throw JSONScanError(.unexpectedEndOfInput, at: index) }
      let byte = base[index]
      if byte == 0x22 {
        self.position = index + 1
        return JSONStringToken(start: start, end: index, hasEscapes: hasEscapes)
      } else if byte == 0x5C {
        hasEscapes = true
        index = try self.validateEscape(at: index)
      } else if byte < 0x20 {
        throw JSONScanError(.controlCharacterInString(byte), at: index)
      } else if byte < 0x80 {
        index += 1
      } else {
        index = try self.validateUTF8Sequence(at: index)
      }
    }
  }

  /// Validates the multi-byte UTF-8 sequence starting at `index` (Unicode Table 3-7: no overlong
  /// forms, no surrogates, nothing above U+10FFFF); returns the offset after it.
  @inline(__always)
  func validateUTF8Sequence(at index: Int) throws(JSONScanError) -> Int {
    let lead = self.base[index]
    let length: Int
    var secondLow: UInt8 = 0x80
    var secondHigh: UInt8 = 0xBF
    switch lead {
    case 0xC2...0xDF: length = 2
    case 0xE0: length = 3; secondLow = 0xA0
    case 0xE1...0xEC, 0xEE...0xEF: length = 3
    case 0xED: length = 3; secondHigh = 0x9F
    case 0xF0: length = 4; secondLow = 0x90
    case 0xF1...0xF3: length = 4
    case 0xF4: length = 4; secondHigh = 0x8F
    default: throw JSONScanError(.invalidUTF8, at: index)
    }
    guard index + length <= self.count else { throw JSONScanError(.invalidUTF8, at: index) }
    let second = self.base[index + 1]
    guard second >= secondLow, second <= secondHigh else { throw JSONScanError(.invalidUTF8, at: index) }
    var offset = 2
    while offset < length {
      guard self.base[index + offset] & 0xC0 == 0x80 else { throw JSONScanError(.invalidUTF8, at: index) }
      offset += 1
    }
    return index + length
  }

  @inline(__always)
  static func hexValue(_ byte: UInt8) -> UInt16? {
    switch byte {
    case 0x30...0x39: UInt16(byte - 0x30)
    case 0x41...0x46: UInt16(byte - 0x41 + 10)
    case 0x61...0x66: UInt16(byte - 0x61 + 10)
    default: nil
    }
  }

  /// Reads the four hex digits at `index`.
  func hexQuad(at index: Int) throws(JSONScanError) -> UInt16 {
    guard index + 4 <= self.count else { throw JSONScanError(.unexpectedEndOfInput, at: self.count) }
    var value: UInt16 = 0
    for offset in 0..<4 {
      guard let digit = Self.hexValue(self.base[index + offset]) else {
        throw JSONScanError(.invalidEscape, at: index + offset)
      }
      value = value << 4 | digit
    }
    return value
  }

  /// Validates the escape sequence whose backslash is at `index`; returns the offset after it.
  func validateEscape(at index: Int) throws(JSONScanError) -> Int {
    guard index + 1 < self.count else { throw JSONScanError(.unexpectedEndOfInput, at: self.count) }
    switch self.base[index + 1] {
    case 0x22, 0x5C, 0x2F, 0x62, 0x66, 0x6E, 0x72, 0x74:
      return index + 2
    case 0x75:
      let unit = try self.hexQuad(at: index + 2)
      switch unit & 0xFC00 {
      case 0xD800:
        guard index + 8 <= self.count else { throw JSONScanError(.unexpectedEndOfInput, at: self.count) }
        guard self.base[index + 6] == 0x5C, self.base[index + 7] == 0x75 else {
          throw JSONScanError(.invalidSurrogate, at: index)
        }
        let low = try self.hexQuad(at: index + 8)
        guard low & 0xFC00 == 0xDC00 else { throw JSONScanError(.invalidSurrogate, at: index) }
        return index + 12
      case 0xDC00:
        throw JSONScanError(.invalidSurrogate, at: index)
      default:
        return index + 6
      }
    default:
      throw JSONScanError(.invalidEscape, at: index)
    }
  }

  /// The raw (still escaped) bytes of a string token.
  @inline(__always)
  func rawBytes(_ token: JSONStringToken) -> UnsafeBufferPointer<UInt8> {
    precondition(token.start >= 0 && token.start <= token.end && token.end <= self.count)
    return UnsafeBufferPointer(start: self.base + token.start, count: token.count)
  }

  /// Unescapes a validated string into `output` (which holds at least `token.count` bytes, the
  /// most the unescaped form can take); returns the number of bytes written.
  func unescape(_ token: JSONStringToken, into output: UnsafeMutableBufferPointer<UInt8>) -> Int {
    precondition(output.count >= token.count)
    var index = token.start
    var written = 0
    @inline(__always) func put(_ byte: UInt8) {
      output[written] = byte
      written += 1
    }
    while index < token.end {
      let byte = self.byte(at: index)
      guard byte == 0x5C else {
        put(byte)
        index += 1
        continue
      }
      let escaped = self.byte(at: index + 1)
      index += 2
      switch escaped {
      case 0x62: put(0x08)
      case 0x66: put(0x0C)
      case 0x6E: put(0x0A)
      case 0x72: put(0x0D)
      case 0x74: put(0x09)
      case 0x75:
        // Validated already: four hex digits, and a surrogate pair when high.
        var scalar = UInt32((try? self.hexQuad(at: index)) ?? 0xFFFD)
        index += 4
        if scalar & 0xFC00 == 0xD800 {
          let low = UInt32((try? self.hexQuad(at: index + 2)) ?? 0xDC00)
          index += 6
          scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
        }
        switch scalar {
        case 0..<0x80:
          put(UInt8(scalar))
        case 0x80..<0x800:
          put(UInt8(0xC0 | scalar >> 6))
          put(UInt8(0x80 | scalar & 0x3F))
        case 0x800..<0x10000:
          put(UInt8(0xE0 | scalar >> 12))
          put(UInt8(0x80 | scalar >> 6 & 0x3F))
          put(UInt8(0x80 | scalar & 0x3F))
        default:
          put(UInt8(0xF0 | scalar >> 18))
          put(UInt8(0x80 | scalar >> 12 & 0x3F))
          put(UInt8(0x80 | scalar >> 6 & 0x3F))
          put(UInt8(0x80 | scalar & 0x3F))
        }
      default:
        put(escaped)  // " \ /
      }
    }
    return written
  }

  /// The string value of a token.
  func string(_ token: JSONStringToken) -> String {
    if !token.hasEscapes {
      return String(decoding: self.rawBytes(token), as: UTF8.self)
    }
    return String(unsafeUninitializedCapacity: token.count) { buffer in self.unescape(token, into: buffer) }
  }

  /// Calls `body` with the unescaped UTF-8 bytes of a token (without allocating when the token has
  /// no escapes, and on the stack for short escaped ones).
  func withUnescapedBytes<Result>(
    _ token: JSONStringToken, _ body: (UnsafeBufferPointer<UInt8>) -> Result
  ) -> Result {
    if !token.hasEscapes { return body(self.rawBytes(token)) }
    return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: token.count) { buffer in
      let written = self.unescape(token, into: buffer)
      return body(UnsafeBufferPointer(rebasing: buffer[..<written]))
    }
  }

  /// Whether a string token's value is exactly `name` (an ASCII key). Comparing the unescaped bytes
  /// is what `JSONDecoder` does in effect: it compares `String`s, and no other string is canonically
  /// equivalent to an ASCII key without `K`, `;` or `` ` `` (the only ASCII targets of singleton
  /// decompositions: U+212A KELVIN SIGN, U+037E, U+1FEF).
  @inline(__always)
  func token(_ token: JSONStringToken, equals name: StaticString) -> Bool {
    let nameCount = name.utf8CodeUnitCount
    if !token.hasEscapes {
      guard token.count == nameCount else { return false }
      return memcmp(self.base + token.start, name.utf8Start, nameCount) == 0
    }
    guard token.count > nameCount else { return false }
    return self.withUnescapedBytes(token) { bytes in
      bytes.count == nameCount && memcmp(bytes.baseAddress!, name.utf8Start, nameCount) == 0
    }
  }

  // MARK: Literals and numbers

  /// Consumes `true`, `false` or `null` at the current position.
  mutating func scanLiteral() throws(JSONScanError) {
    let literal: StaticString
    switch self.base[self.position] {
    case 0x74: literal = "true"
    case 0x66: literal = "false"
    default: literal = "null"
    }
    let length = literal.utf8CodeUnitCount
    for offset in 0..<length {
      let index = self.position + offset
      guard index < self.count else { throw JSONScanError(.unexpectedEndOfInput, at: index) }
      let byte = self.base[index]
      guard byte == literal.utf8Start[offset] else { throw JSONScanError(.unexpectedByte(byte), at: index) }
    }
    self.position += length
  }

  @inline(__always)
  static func isDigit(_ byte: UInt8) -> Bool { byte &- 0x30 < 10 }

  /// Scans a number at the current position (`-` or a digit), checking JSON's grammar and whether
  /// `JSONSerialization` can represent it.
  mutating func scanNumber() throws(JSONScanError) -> JSONNumberToken {
    let start = self.position
    var index = start
    let count = self.count
    if self.base[index] == 0x2D { index += 1 }
    guard index < count else { throw JSONScanError(.unexpectedEndOfInput, at: index) }
    let first = self.base[index]
    let integerStart = index
    if first == 0x30 {
      index += 1
      if index < count, Self.isDigit(self.base[index]) { throw JSONScanError(.numberWithLeadingZero, at: index) }
    } else if Self.isDigit(first) {
      index += 1
      while index < count, Self.isDigit(self.base[index]) { index += 1 }
    } else {
      throw JSONScanError(.unexpectedByte(first), at: index)
    }
    let integerDigits = index - integerStart
    var isPlainInteger = true
    if index < count, self.base[index] == 0x2E {
      isPlainInteger = false
      index += 1
      let fractionStart = index
      while index < count, Self.isDigit(self.base[index]) { index += 1 }
      guard index > fractionStart else {
        if index == count { throw JSONScanError(.unexpectedEndOfInput, at: index) }
        throw JSONScanError(.unexpectedByte(self.base[index]), at: index)
      }
    }
    var exponent = 0
    if index < count, self.base[index] | 0x20 == 0x65 {
      isPlainInteger = false
      index += 1
      var negative = false
      if index < count, self.base[index] == 0x2B || self.base[index] == 0x2D {
        negative = self.base[index] == 0x2D
        index += 1
      }
      let exponentStart = index
      while index < count, Self.isDigit(self.base[index]) {
        exponent = min(exponent * 10 + Int(self.base[index] - 0x30), 1_000_000)
        index += 1
      }
      guard index > exponentStart else {
        if index == count { throw JSONScanError(.unexpectedEndOfInput, at: index) }
        throw JSONScanError(.unexpectedByte(self.base[index]), at: index)
      }
      if negative { exponent = -exponent }
    }
    self.position = index
    let token = JSONNumberToken(start: start, end: index, isPlainInteger: isPlainInteger)
    // Certainly representable: fits Int64, or its magnitude is below 10^308 (a finite Double).
    let certainlyFinite = isPlainInteger ? integerDigits <= 18 : integerDigits + exponent <= 307
    if !certainlyFinite, self.firstUnrepresentableNumber == nil, !self.isRepresentableNumber(token) {
      self.firstUnrepresentableNumber = start
    }
    return token
  }

  /// The text of a token (for the rare slow paths).
  func text(_ token: JSONNumberToken) -> String {
    String(decoding: UnsafeBufferPointer(start: self.base + token.start, count: token.end - token.start), as: UTF8.self)
  }

  /// Whether `JSONSerialization` can represent a number: the rule of swift-corelibs-foundation's
  /// `NSNumber.fromJSONNumber`, quirks included (only a lowercase `e` counts as an exponent there).
  func isRepresentableNumber(_ token: JSONNumberToken) -> Bool {
    let string = self.text(token)
    let decimalIndex = string.firstIndex(of: ".")
    let exponentIndex = string.firstIndex(of: "e")
    let isInteger = decimalIndex == nil && exponentIndex == nil
    let isNegative = string.utf8.first == 0x2D
    let digitCount = string[string.startIndex..<(exponentIndex ?? string.endIndex)].count
    if isInteger {
      if isNegative {
        if digitCount <= 19, Int64(string) != nil { return true }
      } else {
        if digitCount <= 20, UInt64(string) != nil { return true }
      }
    }
    var exponent = 0
    if let exponentIndex, let parsed = Int(string[string.index(after: exponentIndex)...]) {
      exponent = parsed
    }
    if digitCount > 17, exponent >= -128, exponent <= 127, let decimal = Decimal(string: string), decimal.isFinite {
      return true
    }
    if let double = Double(string), double.isFinite { return true }
    return false
  }

  /// The `Int64` value `JSONDecoder` decodes from a number, or `nil` where it throws: a plain
  /// integer exactly; anything else through `Double`, which must be a whole number in range, and
  /// from 2^53 on through `Decimal` (truncating, as swift-foundation's `_slowpath_unwrapFixedWidthInteger`).
  func int64Value(_ token: JSONNumberToken) -> Int64? {
    if token.isPlainInteger {
      var index = token.start
      let negative = self.base[index] == 0x2D
      if negative { index += 1 }
      var value: Int64 = 0
      var overflow = false
      while index < token.end {
        let digit = Int64(self.base[index] - 0x30)
        let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
        let (next, overflow2) = negative ? times10.subtractingReportingOverflow(digit) : times10.addingReportingOverflow(digit)
        if overflow1 || overflow2 {
          overflow = true
          break
        }
        value = next
        index += 1
      }
      if !overflow { return value }
    }
    let text = self.text(token)
    if let double = Double(text) {
      guard let value = Int64(exactly: double) else { return nil }
      if double.magnitude < 9_007_199_254_740_992 { return value }
    }
    guard let decimal = Decimal(string: text) else { return nil }
    return Self.int64(truncating: decimal)
  }

  /// swift-foundation's `FixedWidthInteger.init?(_: Decimal)`, through `Decimal`'s public API.
  static func int64(truncating decimal: Decimal) -> Int64? {
    guard !decimal.isNaN, var magnitude = UInt64(decimal.significand.description) else { return nil }
    let exponent = decimal.exponent
    if exponent < 0 {
      for _ in 0..<(-exponent) { magnitude /= 10 }
    } else {
      for _ in 0..<exponent {
        let (product, overflow) = magnitude.multipliedReportingOverflow(by: 10)
        guard !overflow else { return nil }
        magnitude = product
      }
    }
    guard let value = Int64(exactly: magnitude) else { return nil }
    return decimal.sign == .minus ? -value : value
  }

  // MARK: Skipping

  /// Consumes a member's key and the colon after it (whitespace before the key already skipped).
  @inline(__always)
  mutating func scanKeyAndColon() throws(JSONScanError) -> JSONStringToken {
    let byte = try self.currentByte()
    guard byte == 0x22 else { throw JSONScanError(.unexpectedByte(byte), at: self.position) }
    let key = try self.scanString()
    try self.expect(0x3A)
    return key
  }

  /// Validates and skips one value (leading whitespace allowed) that sits inside `depth` open
  /// arrays and objects. Iterative: nesting costs one bit per level, not a stack frame.
  mutating func skipValue(depth: Int) throws(JSONScanError) {
    var level = 0
    var objectLevels: UInt64 = 0  // bit (level - 1) set: that level is an object (levels 1...64)
    var deeperObjectLevels: [Bool] = []  // levels 65...
    @inline(__always) func isObject(_ level: Int) -> Bool {
      level <= 64 ? objectLevels & (1 << UInt64(level - 1)) != 0 : deeperObjectLevels[level - 65]
    }
    @inline(__always) func open(_ level: Int, object: Bool) {
      if level <= 64 {
        if object { objectLevels |= 1 << UInt64(level - 1) } else { objectLevels &= ~(1 << UInt64(level - 1)) }
      } else if deeperObjectLevels.count == level - 65 {
        deeperObjectLevels.append(object)
      } else {
        deeperObjectLevels[level - 65] = object
      }
    }
    while true {
      // A value.
      let byte = try self.peekNonWhitespace()
      switch byte {
      case 0x7B, 0x5B:  // { [
        guard depth + level < Self.maximumDepth else { throw JSONScanError(.tooDeeplyNested, at: self.position) }
        self.position += 1
        level += 1
        let object = byte == 0x7B
        open(level, object: object)
        let next = try self.peekNonWhitespace()
        if next == (object ? 0x7D : 0x5D) {
          self.position += 1
          level -= 1
        } else {
          if object { _ = try self.scanKeyAndColon() }
          continue
        }
      case 0x22:
        _ = try self.scanString()
      case 0x74, 0x66, 0x6E:
        try self.scanLiteral()
      case 0x2D, 0x30...0x39:
        _ = try self.scanNumber()
      default:
        throw JSONScanError(.unexpectedByte(byte), at: self.position)
      }
      // After a value: close containers, or move to the next element or member.
      while true {
        if level == 0 { return }
        let object = isObject(level)
        let close: UInt8 = object ? 0x7D : 0x5D
        let next = try self.peekNonWhitespace()
        if next == close {
          self.position += 1
          level -= 1
          continue
        }
        guard next == 0x2C else { throw JSONScanError(.unexpectedByte(next), at: self.position) }
        self.position += 1
        let afterComma = try self.peekNonWhitespace()
        if afterComma == close {  // Foundation accepts one trailing comma
          self.position += 1
          level -= 1
          continue
        }
        if object { _ = try self.scanKeyAndColon() }
        break
      }
    }
  }
}
