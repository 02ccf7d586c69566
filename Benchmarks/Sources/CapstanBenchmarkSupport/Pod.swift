import Capstan

/// The Pod the benchmarks decode with `JSONDecoder` (Capstan's ``SamplePod``, shared with
/// `capstan bench ingest`).
public typealias Pod = SamplePod
