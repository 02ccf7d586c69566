import Capstan
import PodSetExample
import Testing

@Suite("PodSetOperator")
struct PodSetOperatorTests {
  @Test func installsSharedInformersWithTheIndexesAndTheController() throws {
    let manager = try Manager(backend: MemoryBackend(), logger: silentLogger)
    let installed = try PodSetOperator(installingIn: manager)
    #expect(installed.controller.name == PodSetOperator.defaultName)
    #expect(installed.controller.primary === installed.podSets)
    #expect(installed.controller.owned.count == 1 && installed.controller.owned[0] === installed.pods)
    #expect(Set(installed.pods.indexNames) == Set(PodSetReconciler.podIndexes.map(\.name)))
    #expect(try manager.informer(for: Pod.layout, indexes: PodSetReconciler.podIndexes) === installed.pods)
    #expect(manager.controllers.count == 1)

    let twice = #expect(throws: ManagerError.self) { try PodSetOperator(installingIn: manager) }
    #expect(twice?.code == .conflict)
    let noWorkers = #expect(throws: ManagerError.self) { try PodSetOperator(installingIn: manager, name: "x", workers: 0) }
    #expect(noWorkers?.code == .invalidConfiguration)
  }

  /// A pod informer created earlier without the reconciler's indexes is a conflict, not a
  /// controller that cannot find its pods.
  @Test func podInformerWithoutTheIndexesIsRefused() throws {
    let manager = try Manager(backend: MemoryBackend(), logger: silentLogger)
    _ = try manager.informer(for: Pod.layout)
    let error = #expect(throws: ManagerError.self) { try PodSetOperator(installingIn: manager) }
    #expect(error?.code == .conflict)
  }
}
