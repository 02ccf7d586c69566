import Capstan
import CapstanTestSupport
import PodSetExample
import PropertyBased
import Testing

/// Whatever happens to a set while its controller runs — scaling to any count, pods deleted
/// behind its back, in any order and without waiting in between — it ends with exactly the last
/// requested replicas, its status at its final generation, and no pod of anyone else's.
@Suite("PodSet reconciler properties")
struct PodSetReconcilerPropertyTests {
  @Test func anySequenceOfScalesAndPodDeletionsConverges() async {
    // Each step: 0…6 scales to that count; a negative value deletes one of the set's pods.
    await propertyCheck(count: 10, input: Gen.int(in: 0...4), Gen.int(in: -3...6).array(of: 1...6)) { initial, steps in
      do {
        let world = try PodSetWorld()
        try await world.run {
          _ = try await world.client.create(PodSetWorld.set("web", replicas: initial))
          var replicas = initial
          var generation: Int64 = 1
          for step in steps {
            if step >= 0 {
              if step != replicas { generation += 1 }
              replicas = step
              _ = try await world.client.scale(namespace: "default", name: "web", replicas: step)
            } else {
              let pods = try await world.pods(controlledBy: "uid-web")
              guard !pods.isEmpty else { continue }
              _ = try await world.backend.delete(.key(pods[(-step) % pods.count].key))
            }
          }
          let expected = replicas
          try await eventually("\(expected) replicas after \(steps) from \(initial)") {
            try await world.isConverged("web", replicas: expected)
          }
          let set = try #require(try await world.set("web"))
          #expect(set.metadata.generation == generation)
          #expect(set.status?.observedGeneration == generation)
          #expect(try await world.pods().count == expected, "no pod besides the set's own")
        }
      } catch {
        Issue.record("\(error)")
      }
    }
  }
}
