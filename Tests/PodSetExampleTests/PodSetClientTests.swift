import Capstan
import Foundation
import PodSetExample
import Testing

/// The writer's side, without a controller.
@Suite("PodSetClient")
struct PodSetClientTests {
  @Test func clientScalesAndDeletes() async throws {
    let backend = MemoryBackend()
    let client = PodSetClient(backend: backend)
    #expect(try await client.create(PodSetWorld.set("web", replicas: 1)) != nil)
    #expect(try await client.create(PodSetWorld.set("web", replicas: 1)) == nil, "the key is taken")
    #expect(try await client.scale(namespace: "default", name: "web", replicas: 1)?.metadata.generation == 1)
    #expect(try await client.scale(namespace: "default", name: "web", replicas: 4)?.metadata.generation == 2)
    #expect(try await client.scale(namespace: "default", name: "missing", replicas: 4) == nil)
    #expect(try await client.requestDeletion(namespace: "default", name: "web") == .deleted, "no finalizers")
    #expect(try await client.get(namespace: "default", name: "web") == nil)
    #expect(try await client.requestDeletion(namespace: "default", name: "web") == .notFound)
    await #expect(throws: BackendError.self) {
      try await client.create(PodSet(name: "", namespace: "default", uid: "", replicas: 1, labels: [:]))
    }
  }

  /// Deletion of a set with finalizers only marks it, once; marking again keeps the first time.
  @Test func requestDeletionMarksASetWithFinalizers() async throws {
    let client = PodSetClient(backend: MemoryBackend())
    var set = PodSetWorld.set("web", replicas: 1)
    set.metadata.finalizers = ["f"]
    _ = try await client.create(set)
    let first = Timestamp(secondsSince1970: 100)
    #expect(try await client.requestDeletion(namespace: "default", name: "web", at: first) == .markedForDeletion)
    #expect(try await client.requestDeletion(namespace: "default", name: "web", at: Timestamp(secondsSince1970: 200)) == .markedForDeletion)
    let stored = try #require(try await client.get(namespace: "default", name: "web"))
    #expect(stored.metadata.deletionTimestamp == first)
    #expect(stored.metadata.finalizers == ["f"])
  }
}
