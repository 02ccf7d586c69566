import CapstanEtcdAPI
import Foundation

extension RangeOptions {
  func request(for range: EtcdKeyRange) -> Etcdserverpb_RangeRequest {
    var request = Etcdserverpb_RangeRequest()
    request.key = range.key
    request.rangeEnd = range.rangeEnd
    request.limit = self.limit
    request.revision = self.revision
    request.keysOnly = self.keysOnly
    request.countOnly = self.countOnly
    request.serializable = self.serializable
    switch self.sortOrder {
    case .none: request.sortOrder = .none
    case .ascend: request.sortOrder = .ascend
    case .descend: request.sortOrder = .descend
    }
    switch self.sortTarget {
    case .key: request.sortTarget = .key
    case .version: request.sortTarget = .version
    case .createRevision: request.sortTarget = .create
    case .modRevision: request.sortTarget = .mod
    case .value: request.sortTarget = .value
    }
    return request
  }

  func validate(_ operation: String) throws(EtcdError) {
    guard self.limit >= 0, self.revision >= 0 else {
      throw EtcdError(code: .invalidArgument, message: "\(operation): limit and revision must not be negative")
    }
  }
}

extension RangeResult {
  init(_ response: Etcdserverpb_RangeResponse) {
    self.init(
      header: EtcdResponseHeader(response.header),
      kvs: response.kvs.map(KeyValue.init),
      more: response.more,
      count: response.count
    )
  }
}

extension PutResult {
  init(_ response: Etcdserverpb_PutResponse) {
    self.init(
      header: EtcdResponseHeader(response.header),
      prevKV: response.hasPrevKv ? KeyValue(response.prevKv) : nil
    )
  }
}

extension DeleteResult {
  init(_ response: Etcdserverpb_DeleteRangeResponse) {
    self.init(
      header: EtcdResponseHeader(response.header),
      deleted: response.deleted,
      prevKVs: response.prevKvs.map(KeyValue.init)
    )
  }
}

func makePutRequest(key: Data, value: Data, options: PutOptions) -> Etcdserverpb_PutRequest {
  var request = Etcdserverpb_PutRequest()
  request.key = key
  request.value = value
  request.lease = options.lease
  request.prevKv = options.prevKV
  request.ignoreValue = options.ignoreValue
  request.ignoreLease = options.ignoreLease
  return request
}

func makeDeleteRequest(range: EtcdKeyRange, prevKV: Bool) -> Etcdserverpb_DeleteRangeRequest {
  var request = Etcdserverpb_DeleteRangeRequest()
  request.key = range.key
  request.rangeEnd = range.rangeEnd
  request.prevKv = prevKV
  return request
}

extension EtcdCompare {
  var proto: Etcdserverpb_Compare {
    var compare = Etcdserverpb_Compare()
    compare.key = self.range.key
    compare.rangeEnd = self.range.rangeEnd
    switch self.result {
    case .equal: compare.result = .equal
    case .greater: compare.result = .greater
    case .less: compare.result = .less
    case .notEqual: compare.result = .notEqual
    }
    switch self.target {
    case .version(let version):
      compare.target = .version
      compare.version = version
    case .createRevision(let revision):
      compare.target = .create
      compare.createRevision = revision
    case .modRevision(let revision):
      compare.target = .mod
      compare.modRevision = revision
    case .value(let value):
      compare.target = .value
      compare.value = value
    case .lease(let lease):
      compare.target = .lease
      compare.lease = lease
    }
    return compare
  }
}

extension EtcdTxn {
  var proto: Etcdserverpb_TxnRequest {
    var request = Etcdserverpb_TxnRequest()
    request.compare = self.compares.map(\.proto)
    request.success = self.success.map(\.proto)
    request.failure = self.failure.map(\.proto)
    return request
  }

  func validate() throws(EtcdError) {
    for operation in self.success + self.failure {
      switch operation {
      case .range(let range, let options):
        try range.validate("txn range")
        try options.validate("txn range")
      case .put(let key, _, _):
        if key.isEmpty { throw EtcdError(code: .invalidArgument, message: "txn put: the key must not be empty") }
      case .delete(let range, _): try range.validate("txn delete")
      case .txn(let nested): try nested.validate()
      }
    }
  }
}

extension EtcdOperation {
  var proto: Etcdserverpb_RequestOp {
    var op = Etcdserverpb_RequestOp()
    switch self {
    case .range(let range, let options): op.requestRange = options.request(for: range)
    case .put(let key, let value, let options): op.requestPut = makePutRequest(key: key, value: value, options: options)
    case .delete(let range, let prevKV): op.requestDeleteRange = makeDeleteRequest(range: range, prevKV: prevKV)
    case .txn(let txn): op.requestTxn = txn.proto
    }
    return op
  }
}

extension TxnResult {
  init(_ response: Etcdserverpb_TxnResponse) {
    self.init(
      header: EtcdResponseHeader(response.header),
      succeeded: response.succeeded,
      responses: response.responses.compactMap { op in
        switch op.response {
        case .responseRange(let range): .range(RangeResult(range))
        case .responsePut(let put): .put(PutResult(put))
        case .responseDeleteRange(let delete): .delete(DeleteResult(delete))
        case .responseTxn(let txn): .txn(TxnResult(txn))
        case .none: nil
        }
      }
    )
  }
}
