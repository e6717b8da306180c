//! Put and delete-range: revisions, versions, tombstones, history, events, binary keys.

use super::*;

#[test]
fn empty_store_is_at_revision_one() {
    let store = TestStore::new();
    assert_eq!(store.current(), 1);
    assert_eq!(compacted_revision(&store.engine).unwrap(), 0);
    assert_eq!(render(store.range(&range_req("a", "\0"))), "count=0");
    assert_eq!(store.range(&range_req("a", "")).unwrap().header_revision, 1);
}

#[test]
fn puts_advance_revision_and_version() {
    let store = TestStore::new();
    assert_eq!(store.put("a", "1"), 2);
    assert_eq!(store.put("b", "1"), 3);
    assert_eq!(store.put("a", "2"), 4);
    assert_eq!(store.current(), 4);
    assert_eq!(store.get("a"), Some(kv("a", "2", 2, 4, 2)));
    assert_eq!(store.get("b"), Some(kv("b", "1", 3, 3, 1)));
    assert_eq!(store.range(&range_req("a", "")).unwrap().header_revision, 4);
}

#[test]
fn delete_leaves_tombstone_and_resets_version() {
    let store = TestStore::new();
    store.put("a", "1");
    store.put("a", "2");
    assert_eq!(store.delete("a", ""), 1);
    assert_eq!(store.current(), 4);
    assert_eq!(store.get("a"), None);
    assert_eq!(store.put("a", "3"), 5);
    assert_eq!(store.get("a"), Some(kv("a", "3", 5, 5, 1)));
    // Every version and the tombstone stay in history until compaction.
    assert_eq!(store.entries(Keyspace::KvIndex), 4);
    assert_eq!(store.entries(Keyspace::KvRevision), 4);
}

#[test]
fn reads_at_past_revisions_see_the_state_then() {
    let store = TestStore::new();
    store.put("a", "1"); // 2
    store.put("a", "2"); // 3
    store.delete("a", ""); // 4
    store.put("a", "3"); // 5
    for (revision, expected) in [
        (1, None),
        (2, Some(kv("a", "1", 2, 2, 1))),
        (3, Some(kv("a", "2", 2, 3, 2))),
        (4, None),
        (5, Some(kv("a", "3", 5, 5, 1))),
        (0, Some(kv("a", "3", 5, 5, 1))),
        (-1, Some(kv("a", "3", 5, 5, 1))),
    ] {
        assert_eq!(store.get_at("a", revision).unwrap(), expected, "at {revision}");
    }
    assert_eq!(store.get_at("a", 6), Err(MvccError::FutureRevision));
    // The header is the current revision whatever revision was read.
    let response = store.range(&RangeRequest { revision: 2, ..range_req("a", "") }).unwrap();
    assert_eq!(response.header_revision, 5);
}

#[test]
fn delete_of_nothing_makes_no_revision() {
    let store = TestStore::new();
    store.put("a", "1");
    let req = DeleteRangeRequest { key: b("b"), range_end: b("z"), prev_kv: true };
    let (response, events) = store.write(WriteRequest::DeleteRange(req)).unwrap();
    let expected = DeleteRangeResponse { header_revision: 2, deleted: 0, prev_kvs: vec![] };
    assert_eq!(response, WriteResponse::DeleteRange(expected));
    assert!(events.is_empty());
    assert_eq!(store.current(), 2);
    assert_eq!(store.delete("a", ""), 1);
    assert_eq!(store.delete("a", ""), 0);
    assert_eq!(store.current(), 3);
}

#[test]
fn delete_range_reports_prev_kvs_and_one_revision() {
    let store = TestStore::new();
    for key in ["a", "b", "c", "d"] {
        store.put(key, key);
    }
    let req = DeleteRangeRequest { key: b("b"), range_end: b("d"), prev_kv: true };
    let (response, events) = store.write(WriteRequest::DeleteRange(req)).unwrap();
    let expected = DeleteRangeResponse {
        header_revision: 6,
        deleted: 2,
        prev_kvs: vec![kv("b", "b", 3, 3, 1), kv("c", "c", 4, 4, 1)],
    };
    assert_eq!(response, WriteResponse::DeleteRange(expected));
    let tombstone = |key: &str, prev: KeyValue| {
        Event::delete(KeyValue { key: b(key), mod_revision: 6, ..KeyValue::default() }, Some(prev))
    };
    let expected =
        vec![tombstone("b", kv("b", "b", 3, 3, 1)), tombstone("c", kv("c", "c", 4, 4, 1))];
    assert_eq!(events, expected);
    assert_eq!(render(store.range(&range_req("\0", "\0"))), "a=a d=d count=2");
    assert_eq!(store.delete("a", "\0"), 2);
    assert_eq!(render(store.range(&range_req("\0", "\0"))), "count=0");
}

#[test]
fn put_events_and_prev_kv() {
    let store = TestStore::new();
    let req = PutRequest { lease: 7, prev_kv: true, ..put("a", "1") };
    let (response, events) = store.write(WriteRequest::Put(req.clone())).unwrap();
    let expected = PutResponse { header_revision: 2, prev_kv: None };
    assert_eq!(response, WriteResponse::Put(expected));
    assert_eq!(events, vec![Event::put(KeyValue { lease: 7, ..kv("a", "1", 2, 2, 1) }, None)]);
    let (response, _) = store.write(WriteRequest::Put(put("a", "2"))).unwrap();
    assert_eq!(response, WriteResponse::Put(PutResponse { header_revision: 3, prev_kv: None }));
    let (response, _) = store.write(WriteRequest::Put(req)).unwrap();
    let previous = kv("a", "2", 2, 3, 2);
    let expected = PutResponse { header_revision: 4, prev_kv: Some(previous) };
    assert_eq!(response, WriteResponse::Put(expected));
}

#[test]
fn ignore_value_and_ignore_lease_keep_the_stored_ones() {
    let store = TestStore::new();
    store.write(WriteRequest::Put(PutRequest { lease: 9, ..put("a", "v") })).unwrap();
    let keep_value = PutRequest { ignore_value: true, lease: 3, ..put("a", "") };
    store.write(WriteRequest::Put(keep_value)).unwrap();
    assert_eq!(store.get("a"), Some(KeyValue { lease: 3, ..kv("a", "v", 2, 3, 2) }));
    let keep_lease = PutRequest { ignore_lease: true, ..put("a", "w") };
    store.write(WriteRequest::Put(keep_lease)).unwrap();
    assert_eq!(store.get("a"), Some(KeyValue { lease: 3, ..kv("a", "w", 2, 4, 3) }));
    let both = PutRequest { ignore_lease: true, ignore_value: true, ..put("a", "") };
    store.write(WriteRequest::Put(both)).unwrap();
    assert_eq!(store.get("a"), Some(KeyValue { lease: 3, ..kv("a", "w", 2, 5, 4) }));
}

#[test]
fn ignore_flags_on_a_missing_key_are_key_not_found() {
    let store = TestStore::new();
    store.put("gone", "1");
    store.delete("gone", "");
    for key in ["missing", "gone"] {
        for (ignore_value, ignore_lease) in [(true, false), (false, true), (true, true)] {
            let req = PutRequest { ignore_value, ignore_lease, ..put(key, "") };
            let result = store.write(WriteRequest::Put(req));
            assert_eq!(result, Err(MvccError::KeyNotFound));
        }
    }
    assert_eq!(store.current(), 3);
    assert_eq!(MvccError::KeyNotFound.to_string(), "key not found");
}

#[test]
fn empty_keys_are_rejected_by_apply_too() {
    let store = TestStore::new();
    assert_eq!(store.write(WriteRequest::Put(put("", "v"))), Err(MvccError::EmptyKey));
    let delete = DeleteRangeRequest { key: vec![], range_end: b("z"), prev_kv: false };
    assert_eq!(store.write(WriteRequest::DeleteRange(delete)), Err(MvccError::EmptyKey));
    assert_eq!(render(store.range(&range_req("", "z"))), "error: key is not provided");
    assert_eq!(store.current(), 1);
}

#[test]
fn binary_keys_keep_byte_order() {
    let store = TestStore::new();
    let keys: [&[u8]; 8] =
        [&[0], &[0, 0], &[0, 0xFF], &[0, 0xFF, 0], &[1], b"a", &[0xFF], &[0xFF, 0xFF]];
    for key in keys.iter().rev() {
        let req = PutRequest { key: key.to_vec(), value: vec![0, 0xFF], ..PutRequest::default() };
        store.write(WriteRequest::Put(req)).unwrap();
    }
    let all = store.range(&range_req("\0", "\0")).unwrap();
    let found: Vec<&[u8]> = all.kvs.iter().map(|kv| kv.key.as_slice()).collect();
    assert_eq!(found, keys.to_vec());
    assert!(all.kvs.iter().all(|kv| kv.value == [0, 0xFF]));
    // Keys found in `[key, end)`, rendered with `show`.
    let found_in = |key: &[u8], end: &[u8]| {
        let req = RangeRequest { key: key.to_vec(), range_end: end.to_vec(), ..Default::default() };
        let response = store.range(&req).unwrap();
        response.kvs.iter().map(|kv| show(&kv.key)).collect::<Vec<_>>().join(" ")
    };
    assert_eq!(found_in(&[0], &[]), "\\x00");
    assert_eq!(found_in(&[0], &[1]), "\\x00 \\x00\\x00 \\x00\\xff \\x00\\xff\\x00");
    assert_eq!(found_in(&[0, 0xFF], &[0, 0xFF, 1]), "\\x00\\xff \\x00\\xff\\x00");
    assert_eq!(found_in(&[0xFF], &[0]), "\\xff \\xff\\xff");
    let delete = DeleteRangeRequest { key: vec![0], range_end: vec![0, 0xFF], prev_kv: false };
    store.write(WriteRequest::DeleteRange(delete)).unwrap();
    assert_eq!(found_in(&[0], &[1]), "\\x00\\xff \\x00\\xff\\x00");
}

#[test]
fn failed_apply_leaves_the_overlay_unchanged() {
    let engine = MemoryEngine::new();
    let mut with_failure = Overlay::new(&engine);
    let mut without = Overlay::new(&engine);
    for overlay in [&mut with_failure, &mut without] {
        apply(overlay, &WriteRequest::Put(put("a", "1"))).unwrap();
    }
    // A txn that writes, then fails on a future-revision range.
    let failing = TxnRequest {
        compare: vec![],
        success: vec![
            RequestOp::Put(put("b", "1")),
            RequestOp::DeleteRange(DeleteRangeRequest { key: b("a"), ..Default::default() }),
            RequestOp::Range(RangeRequest { revision: 3, ..range_req("a", "") }),
        ],
        failure: vec![],
    };
    let result = apply(&mut with_failure, &WriteRequest::Txn(failing));
    assert_eq!(result, Err(MvccError::FutureRevision));
    assert_eq!(current_revision(&with_failure).unwrap(), 2);
    assert_eq!(with_failure.into_batch(), without.into_batch());
}

#[test]
fn requests_in_one_overlay_see_each_other() {
    let engine = MemoryEngine::new();
    let mut overlay = Overlay::new(&engine);
    apply(&mut overlay, &WriteRequest::Put(put("a", "1"))).unwrap();
    let (response, _) = apply(&mut overlay, &WriteRequest::Put(put("a", "2"))).unwrap();
    assert_eq!(response, WriteResponse::Put(PutResponse { header_revision: 3, prev_kv: None }));
    let response = range(&overlay, &range_req("a", "")).unwrap();
    assert_eq!(response.kvs, vec![kv("a", "2", 2, 3, 2)]);
    assert_eq!(current_revision(&engine).unwrap(), 1);
    engine.write(overlay.into_batch(), Durability::Sync).unwrap();
    assert_eq!(current_revision(&engine).unwrap(), 3);
}

#[test]
fn error_messages_match_etcd() {
    let cases = [
        (MvccError::Compacted, "mvcc: required revision has been compacted"),
        (MvccError::FutureRevision, "mvcc: required revision is a future revision"),
        (MvccError::EmptyKey, "key is not provided"),
        (MvccError::TooManyOps, "too many operations in txn request"),
        (MvccError::DuplicateKey, "duplicate key given in txn request"),
        (MvccError::KeyNotFound, "key not found"),
    ];
    for (error, message) in cases {
        assert_eq!(error.to_string(), message);
    }
}

#[test]
fn errors_survive_bincode() {
    let engine = MvccError::Engine(crate::engine::EngineError::Backend("disk".into()));
    for error in [MvccError::Compacted, MvccError::Corrupt("x".into()), engine.clone()] {
        let bytes = bincode::serialize(&error).unwrap();
        let back: MvccError = bincode::deserialize(&bytes).unwrap();
        assert_eq!(back.to_string(), error.to_string());
    }
    let back: MvccError = bincode::deserialize(&bincode::serialize(&engine).unwrap()).unwrap();
    assert_eq!(back, engine);
}

#[test]
fn corrupt_index_is_an_error() {
    let store = TestStore::new();
    store.put("a", "1");
    let mut batch = crate::engine::WriteBatch::default();
    let mut index_key = Vec::new();
    store
        .engine
        .scan(Keyspace::KvIndex, b"", None, &mut |key, _| {
            index_key = key.to_vec();
            false
        })
        .unwrap();
    batch.put(Keyspace::KvIndex, index_key, vec![0x7F]);
    store.engine.write(batch, Durability::Sync).unwrap();
    assert!(matches!(store.range(&range_req("a", "")), Err(MvccError::Corrupt(_))));
}

#[test]
fn live_key_count_follows_the_events_of_writes() {
    let store = TestStore::new();
    let mut counted = 0;
    let mut apply = |req: WriteRequest| {
        let (_, events) = store.write(req).unwrap();
        counted += live_key_delta(&events);
        counted
    };
    assert_eq!(apply(WriteRequest::Put(put("a", "1"))), 1);
    assert_eq!(apply(WriteRequest::Put(put("b", "1"))), 2);
    assert_eq!(apply(WriteRequest::Put(put("a", "2"))), 2, "an overwrite adds no key");
    let delete_all = DeleteRangeRequest { key: b("a"), range_end: b("c"), prev_kv: false };
    assert_eq!(apply(WriteRequest::DeleteRange(delete_all)), 0);
    assert_eq!(apply(WriteRequest::Put(put("a", "3"))), 1, "a re-created key counts again");
    assert_eq!(live_key_count(&store.engine).unwrap(), counted);
}
