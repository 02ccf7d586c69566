import CapstanDemo
import Testing

@Suite("Demo configuration")
struct DemoConfigurationTests {
  @Test func defaultsValidate() throws {
    let configuration = DemoConfiguration()
    try configuration.validate()
    #expect(configuration.podSets == 200 && configuration.replicas == 5)
  }

  /// Each bad value, as `setting:case`.
  static let badValues = [
    "podSets:zero", "replicas:negative", "namespaces:none", "namespaces:invalid", "namespaces:repeated",
    "disturbanceRounds:negative", "junkObjects:too-many", "convergenceTimeout:zero", "workers:zero",
    "progressInterval:zero", "roundInterval:negative",
  ]

  @Test(arguments: Self.badValues)
  func badSettingIsNamed(badValue: String) {
    var configuration = DemoConfiguration()
    switch badValue {
    case "podSets:zero": configuration.podSets = 0
    case "replicas:negative": configuration.replicas = -1
    case "namespaces:none": configuration.namespaces = []
    case "namespaces:invalid": configuration.namespaces = ["Bad_Name"]
    case "namespaces:repeated": configuration.namespaces = ["a", "a"]
    case "disturbanceRounds:negative": configuration.disturbanceRounds = -1
    case "junkObjects:too-many": configuration.junkObjects = 10_001
    case "convergenceTimeout:zero": configuration.convergenceTimeout = .zero
    case "workers:zero": configuration.workers = 0
    case "progressInterval:zero": configuration.progressInterval = .zero
    case "roundInterval:negative": configuration.roundInterval = .milliseconds(-1)
    default: Issue.record("unknown case \(badValue)")
    }
    let setting = String(badValue.prefix { $0 != ":" })
    let error = #expect(throws: DemoConfigurationError.self) { try configuration.validate() }
    #expect(error?.setting == setting)
    #expect(error?.description.hasPrefix("invalid demo setting \(setting): ") == true)
  }
}
