public import Capstan
import Foundation
public import Logging
import PodSetExample
import Synchronization

/// The `capstan demo` scenario on a running ``Manager`` that has the PodSet controller installed
/// (``PodSetOperator``) and counts its metrics into a ``DemoMetrics``.
///
/// ``run(progress:)``:
/// 1. waits for the manager's informers to sync;
/// 2. creates ``DemoConfiguration/podSets`` PodSets (`podset-0000`, … spread over the namespaces,
///    labelled `app=<name>`, `demo=capstan`) and waits until the world converges;
/// 3. runs ``DemoConfiguration/disturbanceRounds`` rounds, each of which deletes random pods
///    (a tenth of the sets' count), marks others unready (a twentieth), scales random sets (a tenth) up or down — bumping their
///    generation —, and deletes random sets (a twentieth, through the finalizer path; at least one
///    set always stays); the first round also writes ``DemoConfiguration/junkObjects`` malformed
///    and zero-value objects under `junk-…` keys in both prefixes (bad JSON, `{}`, an empty
///    payload, an empty UID, an empty name, a name that does not match the key);
/// 4. waits until the world converges again or the timeout passes, judged by ``DemoWorld``'s
///    fresh list of the store (never the cache), which also scans for zero-value keys.
///
/// Sets already stored when the run starts are expected to stay (with their replicas).
public struct DemoScenario: Sendable {
  /// What the run does.
  public let configuration: DemoConfiguration
  /// The store the manager runs on.
  public let backend: any Backend
  /// The running manager with the PodSet controller.
  public let manager: Manager
  /// The manager's metrics factory.
  public let metrics: DemoMetrics
  /// The PodSet controller's name (its metrics' `controller` label).
  public let controllerName: String
  private let logger: Logger

  /// A scenario on `manager` (running, or about to: ``run(progress:)`` waits for it to be ready).
  ///
  /// - Throws: ``DemoConfigurationError`` when `configuration` does not validate.
  public init(
    configuration: DemoConfiguration, backend: any Backend, manager: Manager, metrics: DemoMetrics,
    controllerName: String = PodSetOperator.defaultName, logger: Logger
  ) throws(DemoConfigurationError) {
    try configuration.validate()
    self.configuration = configuration
    self.backend = backend
    self.manager = manager
    self.metrics = metrics
    self.controllerName = controllerName
    self.logger = logger
  }

  /// Runs the scenario, calling `progress` every ``DemoConfiguration/progressInterval`` and once
  /// at the end; returns the summary (``DemoSummary/converged`` says whether the world matched).
  ///
  /// - Throws: the backend's errors, or ``ManagerError`` if the manager does not get ready within
  ///   the convergence timeout.
  public func run(progress: @escaping @Sendable (DemoProgress) -> Void = { _ in }) async throws -> DemoSummary {
    let run = RunState()
    return try await withThrowingTaskGroup(of: DemoSummary?.self) { group in
      group.addTask {
        while true {
          progress(self.progress(run))
          do { try await Task.sleep(for: self.configuration.progressInterval) } catch { return nil }
        }
      }
      defer { group.cancelAll() }
      let summary = try await self.drive(run)
      // Stop the ticker first, so that no older line follows the final one.
      group.cancelAll()
      while try await group.next() != nil {}
      progress(self.progress(run))
      return summary
    }
  }

  // MARK: the run

  private func drive(_ run: RunState) async throws -> DemoSummary {
    let clock = ContinuousClock()
    let memoryBefore = ProcessMemory.current()
    try await self.manager.waitUntilReady(timeout: self.configuration.convergenceTimeout)
    var random = SeededGenerator(seed: self.configuration.seed)
    let client = PodSetClient(backend: self.backend)
    var expected = try await self.existingSets()

    run.phase = .creating
    for (key, replicas) in try await self.createSets(client: client) { expected[key] = replicas }
    let created = clock.now
    run.phase = .converging
    var report = try await self.waitForConvergence(expected: expected, run: run)
    let initialConvergence = report.isConverged ? created.duration(to: clock.now) : nil

    var disturbed = clock.now
    var disturbances = DemoDisturbances()
    if report.isConverged && self.configuration.disturbanceRounds > 0 {
      for round in 1...self.configuration.disturbanceRounds {
        run.phase = .disturbing(round: round, of: self.configuration.disturbanceRounds)
        disturbances.rounds = round
        if round == 1 { disturbances.junkWritten = try await self.writeJunk() }
        try await self.disturb(expected: &expected, client: client, random: &random, counting: &disturbances)
        if round < self.configuration.disturbanceRounds { try await Task.sleep(for: self.configuration.roundInterval) }
      }
      disturbed = clock.now
      run.phase = .settling
      report = try await self.waitForConvergence(expected: expected, run: run)
    }
    let timeToConverge = report.isConverged ? disturbed.duration(to: clock.now) : nil
    run.phase = .done
    return self.summary(
      report: report, disturbances: disturbances, run: run, elapsed: run.started.duration(to: clock.now), initialConvergence: initialConvergence,
      timeToConverge: timeToConverge, memoryBefore: memoryBefore)
  }

  /// The sets stored before the run (not being deleted): expected to stay as they are.
  private func existingSets() async throws -> [String: Int] {
    let (values, _) = try await DemoWorld.list(PodSet.layout.prefix, backend: self.backend, at: 0)
    var expected: [String: Int] = [:]
    for keyValue in values where !DemoWorld.isJunk(keyValue.key) {
      guard let set = try? JSONDecoder().decode(PodSet.self, from: keyValue.value),
        set.metadata.deletionTimestamp == nil, !set.metadata.uid.isEmpty
      else { continue }
      expected[set.metadata.namespacedName] = set.spec.replicas
    }
    return expected
  }

  /// Creates the sets, 16 at a time; returns namespace/name → replicas of those created.
  private func createSets(client: PodSetClient) async throws -> [String: Int] {
    let namespaces = self.configuration.namespaces
    let replicas = self.configuration.replicas
    let sets = (0..<self.configuration.podSets).map { index in
      let name = "podset-\(Self.padded(index, width: 4))"
      return PodSet(
        name: name, namespace: namespaces[index % namespaces.count], uid: UUID().uuidString.lowercased(),
        replicas: replicas, labels: ["app": name, "demo": "capstan"])
    }
    return try await withThrowingTaskGroup(of: (String, Int)?.self) { group in
      var created: [String: Int] = [:]
      var pending = sets.makeIterator()
      func addNext() {
        guard let set = pending.next() else { return }
        group.addTask {
          try await client.create(set) == nil ? nil : (set.metadata.namespacedName, set.spec.replicas)
        }
      }
      for _ in 0..<16 { addNext() }
      while let result = try await group.next() {
        if let (key, replicas) = result { created[key] = replicas }
        addNext()
      }
      return created
    }
  }

  /// How often a convergence wait lists the store again: the resolution of the convergence times.
  static let convergencePollInterval = Duration.milliseconds(100)

  /// Polls ``DemoWorld/check(backend:expected:)`` until converged or the timeout.
  private func waitForConvergence(expected: [String: Int], run: RunState) async throws -> DemoWorldReport {
    let deadline = ContinuousClock.now + self.configuration.convergenceTimeout
    while true {
      let report = try await DemoWorld.check(backend: self.backend, expected: expected)
      run.observe(objects: report.podSets + report.pods)
      if report.isConverged || ContinuousClock.now >= deadline { return report }
      try await Task.sleep(for: Self.convergencePollInterval)
    }
  }

  /// One round: deletes random pods, scales and deletes random sets.
  private func disturb(
    expected: inout [String: Int], client: PodSetClient, random: inout SeededGenerator,
    counting disturbances: inout DemoDisturbances
  ) async throws {
    let setCount = expected.count
    guard setCount > 0 else { return }
    let pods = try await DemoWorld.list(Pod.layout.prefix, backend: self.backend, at: 0).0
      .filter { !DemoWorld.isJunk($0.key) }
    let shuffledPods = pods.shuffled(using: &random)
    let podDeletions = max(1, setCount / 10)
    for pod in shuffledPods.prefix(podDeletions) {
      disturbances.podsDeleted += try await self.backend.delete(.key(pod.key)).deleted.count
    }
    // A few pods stop being ready (as a kubelet would report): their sets' readyReplicas drop.
    for pod in shuffledPods.dropFirst(podDeletions).prefix(max(1, setCount / 20)) {
      guard let (namespace, name) = Pod.layout.namespaceAndName(of: pod.key) else { continue }
      if try await client.setPodReady(namespace: namespace, name: name, ready: false) {
        disturbances.podsMadeUnready += 1
      }
    }
    let replicas = self.configuration.replicas
    for key in expected.keys.sorted().shuffled(using: &random).prefix(max(1, setCount / 10)) {
      let current = expected[key] ?? replicas
      var target = current
      while target == current { target = Int.random(in: 0...max(2, replicas * 2), using: &random) }
      let (namespace, name) = Self.split(key)
      if try await client.scale(namespace: namespace, name: name, replicas: target) == nil {
        expected[key] = nil
      } else {
        expected[key] = target
        disturbances.setsScaled += 1
      }
    }
    let deletions = min(max(1, setCount / 20), expected.count - 1)
    guard deletions > 0 else { return }
    for key in expected.keys.sorted().shuffled(using: &random).prefix(deletions) {
      let (namespace, name) = Self.split(key)
      if try await client.requestDeletion(namespace: namespace, name: name) != .notFound { disturbances.setsDeleted += 1 }
      expected[key] = nil
    }
    self.logger.debug("disturbed the world", metadata: ["sets": "\(expected.count)"])
  }

  /// The kinds of junk written, in turn.
  enum Junk: String, CaseIterable {
    case badJSON = "bad-json"
    case emptyObject = "empty-object"
    case emptyPayload = "empty-payload"
    case emptyUID = "empty-uid"
    case emptyName = "empty-name"
    case keyMismatch = "key-mismatch"

    /// The bytes stored for this junk under namespace `namespace`, key name `name`.
    func value(namespace: String, name: String) -> Data {
      switch self {
      case .badJSON: Data(#"{"metadata":{"name":"\#(name)","#.utf8)
      case .emptyObject: Data("{}".utf8)
      case .emptyPayload: Data()
      case .emptyUID: Data(#"{"metadata":{"name":"\#(name)","namespace":"\#(namespace)"}}"#.utf8)
      case .emptyName: Data(#"{"metadata":{"uid":"\#(name)-uid","namespace":"\#(namespace)"}}"#.utf8)
      case .keyMismatch:
        Data(#"{"metadata":{"uid":"\#(name)-uid","name":"not-\#(name)","namespace":"\#(namespace)"}}"#.utf8)
      }
    }
  }

  /// Writes the junk objects: each kind in turn, under the pod and then the PodSet prefix.
  /// Returns how many it wrote.
  private func writeJunk() async throws -> Int {
    let namespace = self.configuration.namespaces[0]
    let layouts = [Pod.layout, PodSet.layout]
    for index in 0..<self.configuration.junkObjects {
      // Each kind of junk in turn, under both prefixes.
      let junk = Junk.allCases[(index / 2) % Junk.allCases.count]
      let layout = layouts[index % 2]
      let name = "junk-\(junk.rawValue)-\(index)"
      _ = try await self.backend.put(
        layout.key(namespace: namespace, name: name), value: junk.value(namespace: namespace, name: name), lease: nil)
    }
    return self.configuration.junkObjects
  }

  // MARK: reporting

  private func progress(_ run: RunState) -> DemoProgress {
    func count(_ layout: ResourceLayout) -> Int {
      guard let informer = self.manager.informers.first(where: { $0.layout.prefix == layout.prefix }) else { return 0 }
      return (try? informer.cache.count) ?? 0
    }
    return DemoProgress(
      phase: run.phase, elapsed: run.started.duration(to: .now), podSets: count(PodSet.layout), pods: count(Pod.layout),
      reconciles: self.metrics.counterTotal("controller_runtime_reconcile_total", matching: [("controller", self.controllerName)]),
      queueDepth: self.metrics.gaugeTotal("workqueue_depth", matching: [("name", self.controllerName)]).map { Int($0) })
  }

  private func summary(
    report: DemoWorldReport, disturbances: DemoDisturbances, run: RunState, elapsed: Duration, initialConvergence: Duration?, timeToConverge: Duration?,
    memoryBefore: ProcessMemory?
  ) -> DemoSummary {
    let controller = [("controller", self.controllerName)]
    let samples = self.metrics.samples(DemoMetrics.reconcileTime)
    let peakObjects = run.peakObjects
    var memoryPerObject: Int?
    if let before = memoryBefore, let after = ProcessMemory.current(), after.peakResident > before.peakResident,
      peakObjects > 0
    {
      memoryPerObject = (after.peakResident - before.resident) / peakObjects
    }
    return DemoSummary(
      podSets: report.podSets, pods: report.pods, peakObjects: peakObjects, disturbances: disturbances,
      reconciles: self.metrics.counterTotal("controller_runtime_reconcile_total", matching: controller),
      reconcileErrors: self.metrics.counterTotal("controller_runtime_reconcile_errors_total", matching: controller),
      reconcileP50: DemoSummary.percentile(0.5, of: samples), reconcileP99: DemoSummary.percentile(0.99, of: samples),
      initialConvergence: initialConvergence, timeToConverge: timeToConverge, elapsed: elapsed,
      informerEvents: self.metrics.counterTotal("capstan_informer_events_total"),
      malformedRejected: self.metrics.counterTotal("capstan_cache_decode_errors_total"),
      zeroValueRejected: self.metrics.counterTotal("capstan_cache_zero_value_keys_total"),
      junkKeys: report.junkKeys, zeroValueKeys: report.zeroValueKeys, peakMemoryPerObject: memoryPerObject,
      converged: report.isConverged, mismatches: report.mismatches)
  }

  private static func padded(_ value: Int, width: Int) -> String {
    let digits = String(value)
    return String(repeating: "0", count: max(0, width - digits.count)) + digits
  }

  private static func split(_ namespacedName: String) -> (String, String) {
    let parts = namespacedName.split(separator: "/", maxSplits: 1)
    return parts.count == 2 ? (String(parts[0]), String(parts[1])) : ("", namespacedName)
  }
}

/// What the progress reporter reads while the run writes it.
private final class RunState: Sendable {
  let started = ContinuousClock.now
  private let state = Mutex((phase: DemoPhase.starting, peakObjects: 0))

  var phase: DemoPhase {
    get { self.state.withLock { $0.phase } }
    set { self.state.withLock { $0.phase = newValue } }
  }

  var peakObjects: Int { self.state.withLock { $0.peakObjects } }

  func observe(objects: Int) { self.state.withLock { $0.peakObjects = max($0.peakObjects, objects) } }
}
