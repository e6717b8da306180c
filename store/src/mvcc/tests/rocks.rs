//! The MVCC core over RocksDB: the same semantics, and history surviving a reopen.

use super::*;
use crate::engine::RocksEngine;

fn open(dir: &tempfile::TempDir) -> TestStore<RocksEngine> {
    TestStore { engine: RocksEngine::open(dir.path()).unwrap() }
}

#[test]
fn writes_ranges_and_compaction() {
    let dir = tempfile::TempDir::new().unwrap();
    let store = open(&dir);
    assert_eq!(store.current(), 1);
    store.put("a", "1"); // 2
    store.put("b\0", "1"); // 3
    store.put("a", "2"); // 4
    assert_eq!(store.delete("b", "c"), 1); // 5
    let txn = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal,
            target: CompareTarget::Mod(4),
            key: b("a"),
            range_end: vec![],
        }],
        success: vec![RequestOp::Put(put("c", "1")), RequestOp::Range(range_req("\0", "\0"))],
        failure: vec![],
    };
    let response = store.txn(txn).unwrap(); // 6
    assert!(response.succeeded);
    let ResponseOp::Range(inside) = &response.responses[1] else { panic!() };
    assert_eq!(render(Ok(inside.clone())), "a=2 c=1 count=2");
    assert_eq!(
        render(store.range(&RangeRequest { revision: 3, ..range_req("\0", "\0") })),
        "a=1 b\\x00=1 count=2"
    );
    store.compact(5).unwrap();
    assert_eq!(store.entries(Keyspace::KvIndex), 2);
    let at = |revision| render(store.range(&RangeRequest { revision, ..range_req("\0", "\0") }));
    assert_eq!(at(4), "error: mvcc: required revision has been compacted");
    assert_eq!(at(5), "a=2 count=1");
    assert_eq!(at(0), "a=2 c=1 count=2");
}

#[test]
fn history_survives_reopen() {
    let dir = tempfile::TempDir::new().unwrap();
    {
        let store = open(&dir);
        store.put("a", "1");
        store.put("a", "2");
        store.delete("a", "");
        store.put("b", "1");
        store.compact(3).unwrap();
    }
    let store = open(&dir);
    assert_eq!(store.current(), 5);
    assert_eq!(compacted_revision(&store.engine).unwrap(), 3);
    assert_eq!(store.get_at("a", 3).unwrap(), Some(kv("a", "2", 2, 3, 2)));
    assert_eq!(store.get("a"), None);
    assert_eq!(store.put("a", "3"), 6);
    assert_eq!(store.get("a"), Some(kv("a", "3", 6, 6, 1)));
    let replayed = events(&store.engine, 3, 10, 100, false).unwrap();
    assert_eq!(replayed.len(), 4);
}
