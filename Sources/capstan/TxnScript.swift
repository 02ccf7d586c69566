import CapstanEtcd
import Foundation

/// A line of a transaction script that could not be parsed.
struct TxnScriptError: Error, CustomStringConvertible {
  /// The 1-based line number.
  let lineNumber: Int
  /// The offending line.
  let line: String
  /// What is wrong with it.
  let problem: String

  var description: String { "txn line \(self.lineNumber): \(self.problem): \(self.line)" }
}

/// Parses etcdctl's `txn` input: compare lines, a blank line, success requests, a blank line,
/// failure requests (and an optional final blank line). The end of input also ends a section.
///
/// Compares: `mod("k") = "5"`, `create("k") = "0"`, `version("k") > "0"`, `value("k") != "v"`,
/// `lease("k") = "694da21336db3e0c"` (targets `m`/`c`/`ver`/`val` too; operators `=`, `==`, `!=`,
/// `<`, `>`). Requests: `put KEY VALUE [--lease=HEX] [--prev-kv]`, `get KEY [END] [--prefix]
/// [--from-key] [--limit=N] [--rev=N] [--keys-only] [--count-only]`, `del KEY [END] [--prefix]
/// [--from-key] [--prev-kv]`; arguments may be "double-quoted" (with escapes) or 'single-quoted'.
enum TxnScript {
  static func parse(_ text: String) throws(TxnScriptError) -> EtcdTxn {
    var txn = EtcdTxn()
    var section = 0
    for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
      guard section < 3 else { break }
      let line = rawLine.trimmingCharacters(in: .whitespacesAndNewlines)
      if line.isEmpty {
        section += 1
        continue
      }
      let lineNumber = index + 1
      switch section {
      case 0: txn.compares.append(try parseCompare(line, lineNumber: lineNumber))
      case 1: txn.success.append(try parseRequest(line, lineNumber: lineNumber))
      default: txn.failure.append(try parseRequest(line, lineNumber: lineNumber))
      }
    }
    return txn
  }

  // MARK: Compares

  static func parseCompare(_ line: String, lineNumber: Int) throws(TxnScriptError) -> EtcdCompare {
    func malformed(_ problem: String) -> TxnScriptError {
      TxnScriptError(lineNumber: lineNumber, line: line, problem: "malformed comparison (\(problem))")
    }
    guard let open = line.firstIndex(of: "(") else { throw malformed("expected e.g. mod(\"key\") = \"5\"") }
    let target = line[..<open].trimmingCharacters(in: .whitespaces)
    var scanner = TokenScanner(line[line.index(after: open)...])
    guard let key = scanner.quoted() else { throw malformed("the key must be a quoted string") }
    scanner.skipWhitespace()
    guard scanner.consume(")") else { throw malformed("expected ')' after the key") }
    guard let op = scanner.operatorToken() else { throw malformed("expected one of = == != < >") }
    guard let value = scanner.quoted() else { throw malformed("the value must be a quoted string") }
    scanner.skipWhitespace()
    guard scanner.isAtEnd else { throw malformed("unexpected text after the value") }

    let result: EtcdCompare.Result
    switch op {
    case "=", "==": result = .equal
    case "!=": result = .notEqual
    case ">": result = .greater
    case "<": result = .less
    default: throw malformed("unknown operator \(op)")
    }
    func number() throws(TxnScriptError) -> Int64 {
      guard let number = Int64(value) else { throw malformed("\(target) needs an integer, got \"\(value)\"") }
      return number
    }
    let compareTarget: EtcdCompare.Target
    switch target {
    case "ver", "version": compareTarget = .version(try number())
    case "c", "create": compareTarget = .createRevision(try number())
    case "m", "mod": compareTarget = .modRevision(try number())
    case "val", "value": compareTarget = .value(Data(value.utf8))
    case "lease":
      guard let lease = LeaseID(argument: value) else { throw malformed("lease needs a hex lease ID") }
      compareTarget = .lease(lease.rawValue)
    default: throw malformed("unknown target '\(target)'")
    }
    return EtcdCompare(.key(key), compareTarget, result)
  }

  // MARK: Requests

  static func parseRequest(_ line: String, lineNumber: Int) throws(TxnScriptError) -> EtcdOperation {
    func invalid(_ problem: String) -> TxnScriptError {
      TxnScriptError(lineNumber: lineNumber, line: line, problem: "invalid txn request (\(problem))")
    }
    var scanner = TokenScanner(Substring(line))
    var words: [String] = []
    while true {
      scanner.skipWhitespace()
      if scanner.isAtEnd { break }
      guard let word = scanner.word() else { throw invalid("unterminated quote") }
      words.append(word)
    }
    guard let verb = words.first else { throw invalid("empty request") }
    var positional: [String] = []
    var flags: [String: String] = [:]
    var rest = words.dropFirst()[...]
    while let word = rest.popFirst() {
      guard word.hasPrefix("--") else {
        positional.append(word)
        continue
      }
      let body = word.dropFirst(2)
      if let equals = body.firstIndex(of: "=") {
        flags[String(body[..<equals])] = String(body[body.index(after: equals)...])
      } else if ["lease", "limit", "rev"].contains(String(body)) {
        guard let value = rest.popFirst() else { throw invalid("--\(body) needs a value") }
        flags[String(body)] = value
      } else {
        flags[String(body)] = "true"
      }
    }
    func flag(_ name: String) throws(TxnScriptError) -> Bool {
      guard let value = flags.removeValue(forKey: name) else { return false }
      guard let bool = Bool(value) else { throw invalid("--\(name) takes true or false") }
      return bool
    }
    func integer(_ name: String) throws(TxnScriptError) -> Int64 {
      guard let value = flags.removeValue(forKey: name) else { return 0 }
      guard let number = Int64(value) else { throw invalid("--\(name) needs an integer") }
      return number
    }
    func range(prefix: Bool, fromKey: Bool) throws(TxnScriptError) -> EtcdKeyRange {
      guard (1...2).contains(positional.count) else { throw invalid("\(verb) takes a key and an optional range end") }
      if prefix && fromKey { throw invalid("--prefix and --from-key cannot be combined") }
      if positional.count == 2 {
        if prefix || fromKey { throw invalid("a range end cannot be combined with --prefix or --from-key") }
        return .range(from: positional[0], to: positional[1])
      }
      return KeySelection.range(key: positional[0], prefix: prefix, fromKey: fromKey)
    }

    let operation: EtcdOperation
    switch verb {
    case "put":
      guard positional.count == 2 else { throw invalid("put takes a key and a value") }
      var options = PutOptions(prevKV: try flag("prev-kv"))
      if let leaseText = flags.removeValue(forKey: "lease") {
        guard let lease = LeaseID(argument: leaseText) else { throw invalid("--lease needs a hex lease ID") }
        options.lease = lease.rawValue
      }
      operation = .put(positional[0], positional[1], options)
    case "get":
      let prefix = try flag("prefix")
      let fromKey = try flag("from-key")
      let options = RangeOptions(
        limit: try integer("limit"), revision: try integer("rev"), keysOnly: try flag("keys-only"),
        countOnly: try flag("count-only"))
      operation = .range(try range(prefix: prefix, fromKey: fromKey), options)
    case "del", "delete":
      let prefix = try flag("prefix")
      let fromKey = try flag("from-key")
      let prevKV = try flag("prev-kv")
      operation = .delete(try range(prefix: prefix, fromKey: fromKey), prevKV: prevKV)
    default:
      throw invalid("unknown request '\(verb)'; expected put, get or del")
    }
    if let unknown = flags.keys.sorted().first { throw invalid("unknown flag --\(unknown) for \(verb)") }
    return operation
  }
}

/// A cursor over one line of a txn script.
private struct TokenScanner {
  private var rest: Substring

  init(_ text: Substring) { self.rest = text }

  var isAtEnd: Bool { self.rest.isEmpty }

  mutating func skipWhitespace() { self.rest = self.rest.drop(while: \.isWhitespace) }

  mutating func consume(_ character: Character) -> Bool {
    guard self.rest.first == character else { return false }
    self.rest.removeFirst()
    return true
  }

  /// A comparison operator made of `=`, `!`, `<`, `>`, surrounded by optional whitespace.
  mutating func operatorToken() -> String? {
    self.skipWhitespace()
    let op = self.rest.prefix(while: { "=!<>".contains($0) })
    guard !op.isEmpty else { return nil }
    self.rest.removeFirst(op.count)
    self.skipWhitespace()
    return String(op)
  }

  /// A "double-quoted" string with Go-style escapes, or a `back-quoted` raw string.
  mutating func quoted() -> String? {
    self.skipWhitespace()
    guard let quote = self.rest.first, quote == "\"" || quote == "`" else { return nil }
    var scan = self.rest.dropFirst()
    var text = ""
    while let character = scan.popFirst() {
      if character == quote {
        self.rest = scan
        return text
      }
      guard quote == "\"", character == "\\" else {
        text.append(character)
        continue
      }
      guard let escaped = scan.popFirst() else { return nil }
      switch escaped {
      case "n": text.append("\n")
      case "t": text.append("\t")
      case "r": text.append("\r")
      case "0": text.append("\0")
      case "\\", "\"", "'": text.append(escaped)
      default: return nil
      }
    }
    return nil
  }

  /// A shell-like word: "double-quoted", 'single-quoted', or up to the next whitespace.
  mutating func word() -> String? {
    switch self.rest.first {
    case "\"": return self.quoted()
    case "'":
      let body = self.rest.dropFirst()
      guard let close = body.firstIndex(of: "'") else { return nil }
      self.rest = body[body.index(after: close)...]
      return String(body[..<close])
    default:
      let word = self.rest.prefix(while: { !$0.isWhitespace })
      self.rest.removeFirst(word.count)
      return String(word)
    }
  }
}
