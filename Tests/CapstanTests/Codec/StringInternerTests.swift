import Capstan
import Testing

@Suite struct StringInternerTests {
  /// The address of a string's UTF-8 storage (the same for two strings sharing one allocation).
  static func storageAddress(_ string: String) -> UInt? {
    var string = string
    return string.withUTF8 { UInt(bitPattern: $0.baseAddress) }
  }

  @Test func repeatedStringsShareStorage() {
    let interner = StringInterner()
    let first = interner.intern(String(decoding: Array("app.kubernetes.io/name".utf8), as: UTF8.self))
    let second = interner.intern(String(decoding: Array("app.kubernetes.io/name".utf8), as: UTF8.self))
    #expect(first == second)
    #expect(Self.storageAddress(first) == Self.storageAddress(second))
    #expect(interner.count == 1)
  }

  @Test func scannedLabelsShareStorage() throws {
    let interner = StringInterner()
    let scanner = ObjectMetaScanner(interner: interner)
    let document = Array(#"{"metadata":{"namespace":"payments-production","labels":{"app.kubernetes.io/name":"storefront-frontend"}}}"#.utf8)
    let first = try scanner.scan(document)
    let second = try scanner.scan(document)
    #expect(first == second)
    #expect(Self.storageAddress(first.namespace) == Self.storageAddress(second.namespace))
    let firstKey = try #require(first.labels.keys.first)
    let secondKey = try #require(second.labels.keys.first)
    #expect(Self.storageAddress(firstKey) == Self.storageAddress(secondKey))
    #expect(Self.storageAddress(first.labels[firstKey]!) == Self.storageAddress(second.labels[secondKey]!))
    #expect(interner.count == 3)
  }

  @Test func shortAndLongStringsAreNotPooled() {
    let interner = StringInterner(maximumLength: 32)
    #expect(interner.intern("default") == "default")
    #expect(interner.intern(String(repeating: "x", count: 33)) == String(repeating: "x", count: 33))
    #expect(interner.count == 0)
  }

  @Test func capacityBoundsThePool() {
    let interner = StringInterner(capacity: 100)
    for index in 0..<1000 {
      let string = "a-string-longer-than-fifteen-\(index)"
      #expect(interner.intern(string) == string)
    }
    #expect(interner.count == 100)
    // Pooled strings are still found after the pool is full (and after it grew).
    let pooled = interner.intern("a-string-longer-than-fifteen-7")
    #expect(Self.storageAddress(pooled) == Self.storageAddress(interner.intern("a-string-longer-than-fifteen-7")))
  }

  @Test func concurrentUse() async {
    let interner = StringInterner()
    await withTaskGroup(of: Void.self) { group in
      for task in 0..<4 {
        group.addTask {
          for index in 0..<2000 {
            let string = "shared-label-value-\((index + task) % 500)"
            precondition(interner.intern(string) == string)
          }
        }
      }
    }
    #expect(interner.count == 500)
  }
}
