//! The write log read back as events.

use super::*;

fn tombstone(key: &str, revision: i64) -> Event {
    Event::delete(KeyValue { key: b(key), mod_revision: revision, ..KeyValue::default() }, None)
}

fn history() -> TestStore {
    let store = TestStore::new();
    store.put("a", "1"); // 2
    store.put("b", "1"); // 3
    store
        .txn(TxnRequest {
            compare: vec![],
            success: vec![
                RequestOp::Put(put("c", "1")),
                RequestOp::DeleteRange(DeleteRangeRequest { key: b("a"), ..Default::default() }),
                RequestOp::Put(put("b", "2")),
            ],
            failure: vec![],
        })
        .unwrap(); // 4
    store.put("a", "2"); // 5
    store
}

#[test]
fn events_match_what_apply_returned() {
    let store = TestStore::new();
    let mut returned = Vec::new();
    for req in [
        WriteRequest::Put(put("a", "1")),
        WriteRequest::Put(PutRequest { lease: 5, ..put("b", "1") }),
        WriteRequest::DeleteRange(DeleteRangeRequest { key: b("a"), ..Default::default() }),
        WriteRequest::Put(put("b", "2")),
    ] {
        returned.extend(store.write(req).unwrap().1);
    }
    assert_eq!(events(&store.engine, 1, 100, 100, true).unwrap(), returned);
}

#[test]
fn events_in_revision_order_and_bounds() {
    let store = history();
    let all = events(&store.engine, 0, i64::MAX, 100, false).unwrap();
    assert_eq!(
        all,
        vec![
            Event::put(kv("a", "1", 2, 2, 1), None),
            Event::put(kv("b", "1", 3, 3, 1), None),
            Event::put(kv("c", "1", 4, 4, 1), None),
            tombstone("a", 4),
            Event::put(kv("b", "2", 3, 4, 2), None),
            Event::put(kv("a", "2", 5, 5, 1), None),
        ]
    );
    assert_eq!(events(&store.engine, 3, 5, 100, false).unwrap(), all[1..5].to_vec());
    assert_eq!(events(&store.engine, 5, 5, 100, false).unwrap(), vec![]);
    assert_eq!(events(&store.engine, 6, 10, 100, false).unwrap(), vec![]);
}

#[test]
fn events_stop_at_revision_boundaries() {
    let store = history();
    let all = events(&store.engine, 0, i64::MAX, 100, false).unwrap();
    for (events_max, returned) in [(0, 0), (1, 1), (2, 2), (3, 5), (4, 5), (5, 5), (6, 6)] {
        let got = events(&store.engine, 0, i64::MAX, events_max, false).unwrap();
        assert_eq!(got, all[..returned].to_vec(), "events_max {events_max}");
    }
}

#[test]
fn events_below_compaction_are_compacted() {
    let store = history();
    store.compact(4).unwrap();
    assert_eq!(events(&store.engine, 3, 10, 100, false), Err(MvccError::Compacted));
    // At the compacted revision: the tombstone of `a` at 4 is gone, as in etcd.
    let expected = vec![
        Event::put(kv("c", "1", 4, 4, 1), None),
        Event::put(kv("b", "2", 3, 4, 2), None),
        Event::put(kv("a", "2", 5, 5, 1), None),
    ];
    assert_eq!(events(&store.engine, 4, 10, 100, false).unwrap(), expected);
}
