import CapstanApp
import Synchronization
import Testing

@Suite("ProgressPrinter")
struct ProgressPrinterTests {
  final class Captured: Sendable {
    let text = Mutex("")
    var value: String { self.text.withLock { $0 } }
    func append(_ more: String) { self.text.withLock { $0 += more } }
  }

  @Test("on a terminal one line is rewritten in place, then closed before the summary")
  func terminal() {
    let captured = Captured()
    let printer = ProgressPrinter(isTerminal: true) { captured.append($0) }
    printer.update("objects 10")
    printer.update("objects 10")
    printer.update("objects 20")
    printer.finish(with: ["converged: yes"])
    #expect(captured.value == "\robjects 10\u{1B}[K\robjects 20\u{1B}[K\nconverged: yes\n")
  }

  @Test("elsewhere plain lines, each change once, no escape codes")
  func plain() {
    let captured = Captured()
    let printer = ProgressPrinter(isTerminal: false) { captured.append($0) }
    printer.update("objects 10")
    printer.update("objects 10")
    printer.update("objects\n20")
    printer.finish(with: ["converged: no", "objects: 20"])
    #expect(captured.value == "objects 10\nobjects 20\nconverged: no\nobjects: 20\n")
  }

  @Test("finishing without progress prints only the lines")
  func noProgress() {
    let captured = Captured()
    let printer = ProgressPrinter(isTerminal: true) { captured.append($0) }
    printer.finish(with: ["done"])
    printer.finish()
    #expect(captured.value == "done\n")
  }
}
