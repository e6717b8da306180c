//! Txn: compares of every target and result, branches, nesting, reads of own writes.

use super::*;

fn compare(key: &str, result: CompareResult, target: CompareTarget) -> Compare {
    Compare { result, target, key: b(key), range_end: vec![] }
}

fn over(key: &str, end: &str, result: CompareResult, target: CompareTarget) -> Compare {
    Compare { range_end: b(end), ..compare(key, result, target) }
}

/// The txn that answers whether `compares` hold: it puts `flag` on success only.
fn evaluate(store: &TestStore, compares: Vec<Compare>) -> bool {
    let txn = TxnRequest { compare: compares, success: vec![], failure: vec![] };
    store.txn(txn).unwrap().succeeded
}

/// `a` = "m" at create 2, mod 3, version 2, lease 7; `b` = "z" at 4/4/1; `gone` deleted.
fn fixture() -> TestStore {
    let store = TestStore::new();
    store.put("a", "x"); // 2
    store.write(WriteRequest::Put(PutRequest { lease: 7, ..put("a", "m") })).unwrap(); // 3
    store.put("b", "z"); // 4
    store.put("gone", "g"); // 5
    store.delete("gone", ""); // 6
    store
}

#[test]
fn compare_every_target_and_result() {
    use CompareResult::{Equal, Greater, Less, NotEqual};
    use CompareTarget::{Create, Lease, Mod, Value, Version};
    let store = fixture();
    let cases = [
        (Version(2), [true, false, false, false]),
        (Version(1), [false, true, false, true]),
        (Version(3), [false, false, true, true]),
        (Create(2), [true, false, false, false]),
        (Create(1), [false, true, false, true]),
        (Mod(3), [true, false, false, false]),
        (Mod(4), [false, false, true, true]),
        (Lease(7), [true, false, false, false]),
        (Lease(0), [false, true, false, true]),
        (Value(b("m")), [true, false, false, false]),
        (Value(b("a")), [false, true, false, true]),
        (Value(b("n")), [false, false, true, true]),
        (Value(b("mm")), [false, false, true, true]),
        (Value(vec![]), [false, true, false, true]),
    ];
    for (target, expected) in cases {
        for (result, holds) in [Equal, Greater, Less, NotEqual].into_iter().zip(expected) {
            let cmp = compare("a", result, target.clone());
            assert_eq!(evaluate(&store, vec![cmp]), holds, "a {result:?} {target:?}");
        }
    }
    // Read-only txns make no revision.
    assert_eq!(store.current(), 6);
}

#[test]
fn compare_missing_keys_as_zero_but_never_by_value() {
    use CompareResult::{Equal, Greater, Less, NotEqual};
    use CompareTarget::{Create, Lease, Mod, Value, Version};
    let store = fixture();
    for key in ["missing", "gone"] {
        let cases = [
            (compare(key, Equal, Create(0)), true),
            (compare(key, Equal, Version(0)), true),
            (compare(key, Equal, Mod(0)), true),
            (compare(key, Equal, Lease(0)), true),
            (compare(key, Less, Mod(1)), true),
            (compare(key, Greater, Version(0)), false),
            (compare(key, Equal, Value(vec![])), false),
            (compare(key, NotEqual, Value(b("x"))), false),
            (compare(key, Less, Value(b("x"))), false),
        ];
        for (cmp, holds) in cases {
            assert_eq!(evaluate(&store, vec![cmp.clone()]), holds, "{cmp:?}");
        }
    }
}

#[test]
fn compare_over_ranges_must_hold_for_every_key() {
    use CompareResult::{Equal, Greater, Less};
    use CompareTarget::{Create, Mod, Value, Version};
    let store = fixture();
    let cases = [
        (over("a", "c", Greater, Mod(2)), true),
        (over("a", "c", Greater, Mod(3)), false),
        (over("a", "c", Less, Version(3)), true),
        (over("a", "c", Equal, Version(2)), false),
        (over("a", "\0", Greater, Create(0)), true),
        (over("\0", "\0", Less, Create(5)), true),
        (over("b", "\0", Equal, Value(b("z"))), true),
        (over("a", "\0", Equal, Value(b("z"))), false),
        // An empty range behaves like a missing key.
        (over("c", "f", Equal, Create(0)), true),
        (over("c", "f", Equal, Value(vec![])), false),
    ];
    for (cmp, holds) in cases {
        assert_eq!(evaluate(&store, vec![cmp.clone()]), holds, "{cmp:?}");
    }
    // All compares of a txn must hold.
    let both = vec![compare("a", Equal, Version(2)), compare("b", Equal, Version(2))];
    assert!(!evaluate(&store, both));
}

#[test]
fn branches_apply_and_share_one_revision() {
    let store = fixture();
    let txn = |version| TxnRequest {
        compare: vec![compare("a", CompareResult::Equal, CompareTarget::Version(version))],
        success: vec![
            RequestOp::Put(put("s1", "1")),
            RequestOp::Put(PutRequest { prev_kv: true, ..put("a", "s") }),
            RequestOp::DeleteRange(DeleteRangeRequest {
                key: b("b"),
                prev_kv: true,
                ..Default::default()
            }),
        ],
        failure: vec![RequestOp::Put(put("f1", "1")), RequestOp::Range(range_req("a", ""))],
    };
    let (response, events) = store.write(WriteRequest::Txn(txn(9))).unwrap();
    let WriteResponse::Txn(failed) = response else { panic!("not a txn: {response:?}") };
    assert!(!failed.succeeded);
    assert_eq!(failed.header_revision, 7);
    assert_eq!(
        failed.responses,
        vec![
            ResponseOp::Put(PutResponse { header_revision: 7, prev_kv: None }),
            ResponseOp::Range(RangeResponse {
                header_revision: 7,
                kvs: vec![KeyValue { lease: 7, ..kv("a", "m", 2, 3, 2) }],
                more: false,
                count: 1,
            }),
        ]
    );
    assert_eq!(events, vec![Event::put(kv("f1", "1", 7, 7, 1), None)]);

    let succeeded = store.txn(txn(2)).unwrap();
    assert!(succeeded.succeeded);
    assert_eq!(succeeded.header_revision, 8);
    assert_eq!(
        succeeded.responses,
        vec![
            ResponseOp::Put(PutResponse { header_revision: 8, prev_kv: None }),
            ResponseOp::Put(PutResponse {
                header_revision: 8,
                prev_kv: Some(KeyValue { lease: 7, ..kv("a", "m", 2, 3, 2) }),
            }),
            ResponseOp::DeleteRange(DeleteRangeResponse {
                header_revision: 8,
                deleted: 1,
                prev_kvs: vec![kv("b", "z", 4, 4, 1)],
            }),
        ]
    );
    assert_eq!(store.get("s1"), Some(kv("s1", "1", 8, 8, 1)));
    assert_eq!(store.get("a"), Some(kv("a", "s", 2, 8, 3)));
    assert_eq!(store.get("b"), None);
    assert_eq!(store.current(), 8);
}

#[test]
fn ranges_in_a_txn_see_its_earlier_writes() {
    let store = fixture();
    let txn = TxnRequest {
        compare: vec![],
        success: vec![
            RequestOp::Range(range_req("a", "c")),
            RequestOp::Put(put("a", "new")),
            RequestOp::DeleteRange(DeleteRangeRequest { key: b("b"), ..Default::default() }),
            RequestOp::Put(put("aa", "1")),
            RequestOp::Range(range_req("a", "c")),
            // An explicit revision reads history, not the txn's writes.
            RequestOp::Range(RangeRequest { revision: 6, ..range_req("a", "c") }),
        ],
        failure: vec![],
    };
    let response = store.txn(txn).unwrap();
    let rendered: Vec<String> = response
        .responses
        .iter()
        .filter_map(|op| match op {
            ResponseOp::Range(range) => Some(render(Ok(range.clone()))),
            _ => None,
        })
        .collect();
    assert_eq!(rendered, ["a=m b=z count=2", "a=new aa=1 count=2", "a=m b=z count=2"]);
    let ResponseOp::Range(after) = &response.responses[4] else { panic!() };
    assert_eq!(after.kvs[0], kv("a", "new", 2, 7, 3));
}

#[test]
fn nested_txns_share_the_revision_and_compare_before_the_txn() {
    use CompareResult::Equal;
    use CompareTarget::Version;
    let store = fixture();
    let nested = TxnRequest {
        // Sees the store before the outer txn (etcd 3.4): `new` does not exist yet.
        compare: vec![compare("new", Equal, Version(0))],
        success: vec![RequestOp::Put(put("inner", "then")), RequestOp::Range(range_req("new", ""))],
        failure: vec![RequestOp::Put(put("inner", "else"))],
    };
    let outer = TxnRequest {
        compare: vec![],
        success: vec![RequestOp::Put(put("new", "1")), RequestOp::Txn(nested)],
        failure: vec![],
    };
    let (response, events) = store.write(WriteRequest::Txn(outer)).unwrap();
    let WriteResponse::Txn(outer) = response else { panic!() };
    let ResponseOp::Txn(inner) = &outer.responses[1] else { panic!() };
    assert!(inner.succeeded);
    assert_eq!(inner.header_revision, 7);
    let ResponseOp::Range(read) = &inner.responses[1] else { panic!() };
    assert_eq!((read.header_revision, read.kvs.clone()), (7, vec![kv("new", "1", 7, 7, 1)]));
    assert_eq!(
        events,
        vec![
            Event::put(kv("new", "1", 7, 7, 1), None),
            Event::put(kv("inner", "then", 7, 7, 1), None),
        ]
    );
    assert_eq!(store.current(), 7);
}

#[test]
fn read_only_txn_keeps_the_revision() {
    let store = fixture();
    let txn = TxnRequest {
        compare: vec![],
        success: vec![
            RequestOp::Range(range_req("a", "")),
            RequestOp::DeleteRange(DeleteRangeRequest { key: b("nothing"), ..Default::default() }),
        ],
        failure: vec![],
    };
    let (response, events) = store.write(WriteRequest::Txn(txn)).unwrap();
    let WriteResponse::Txn(response) = response else { panic!() };
    assert_eq!(response.header_revision, 6);
    assert!(events.is_empty());
    assert_eq!(store.current(), 6);
}

#[test]
fn txn_errors_apply_nothing() {
    let store = fixture();
    store.compact(4).unwrap();
    let failing = |op: RequestOp| TxnRequest {
        compare: vec![],
        success: vec![RequestOp::Put(put("first", "1")), op],
        failure: vec![],
    };
    let cases = [
        (
            RequestOp::Range(RangeRequest { revision: 3, ..range_req("a", "") }),
            MvccError::Compacted,
        ),
        // The txn's own revision is in the future for an explicit read, as in etcd.
        (
            RequestOp::Range(RangeRequest { revision: 7, ..range_req("a", "") }),
            MvccError::FutureRevision,
        ),
        (
            RequestOp::Put(PutRequest { ignore_value: true, ..put("none", "") }),
            MvccError::KeyNotFound,
        ),
        (RequestOp::Put(put("", "v")), MvccError::EmptyKey),
    ];
    for (op, error) in cases {
        assert_eq!(store.txn(failing(op)), Err(error));
    }
    assert_eq!(store.get("first"), None);
    assert_eq!(store.current(), 6);
    let at_compacted = RequestOp::Range(RangeRequest { revision: 4, ..range_req("a", "") });
    assert!(store.txn(failing(at_compacted)).is_ok());
}
