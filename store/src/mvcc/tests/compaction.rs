//! Compaction: what history survives, errors, and reads around the compacted revision.

use super::*;

/// 2 a=1, 3 a=2, 4 b=1, 5 delete b, 6 a=3, 7 c=1, 8 delete c.
fn fixture() -> TestStore {
    let store = TestStore::new();
    store.put("a", "1");
    store.put("a", "2");
    store.put("b", "1");
    store.delete("b", "");
    store.put("a", "3");
    store.put("c", "1");
    store.delete("c", "");
    assert_eq!(store.current(), 8);
    store
}

fn all_at(revision: i64) -> RangeRequest {
    RangeRequest { revision, ..range_req("\0", "\0") }
}

#[test]
fn keeps_the_newest_live_version_at_or_below_the_revision() {
    let store = fixture();
    assert_eq!(store.compact(5), Ok(8));
    assert_eq!(compacted_revision(&store.engine).unwrap(), 5);
    // a@2 is gone, a@3 stays (newest <= 5), a@6 is above; b's put and tombstone are gone;
    // c (put 7, tombstone 8) is untouched.
    assert_eq!(store.entries(Keyspace::KvIndex), 4);
    assert_eq!(store.entries(Keyspace::KvRevision), 4);
    assert_eq!(render(store.range(&all_at(5))), "a=2 count=1");
    assert_eq!(render(store.range(&all_at(6))), "a=3 count=1");
    assert_eq!(render(store.range(&all_at(7))), "a=3 c=1 count=2");
    assert_eq!(store.get_at("a", 5).unwrap(), Some(kv("a", "2", 2, 3, 2)));
    // Versions continue where they were.
    store.put("a", "4");
    assert_eq!(store.get("a"), Some(kv("a", "4", 2, 9, 4)));
}

#[test]
fn drops_tombstones_at_or_below_the_revision() {
    let store = fixture();
    store.compact(8).unwrap();
    assert_eq!(store.entries(Keyspace::KvIndex), 1);
    assert_eq!(store.entries(Keyspace::KvRevision), 1);
    assert_eq!(render(store.range(&all_at(8))), "a=3 count=1");
    // A deleted key comes back as new after its history is gone.
    store.put("b", "again");
    assert_eq!(store.get("b"), Some(kv("b", "again", 9, 9, 1)));
}

#[test]
fn reads_below_the_compacted_revision_fail() {
    let store = fixture();
    store.compact(5).unwrap();
    for (revision, expected) in [
        (1, "error: mvcc: required revision has been compacted"),
        (4, "error: mvcc: required revision has been compacted"),
        (5, "a=2 count=1"),
        (0, "a=3 count=1"),
        (9, "error: mvcc: required revision is a future revision"),
    ] {
        assert_eq!(render(store.range(&all_at(revision))), expected, "at {revision}");
    }
}

#[test]
fn revision_errors_and_no_new_revision() {
    let store = fixture();
    assert_eq!(store.compact(9), Err(MvccError::FutureRevision));
    assert_eq!(store.compact(0), Err(MvccError::Compacted));
    assert_eq!(store.compact(3), Ok(8));
    assert_eq!(store.compact(3), Err(MvccError::Compacted));
    assert_eq!(store.compact(2), Err(MvccError::Compacted));
    assert_eq!(store.compact(8), Ok(8));
    assert_eq!(store.compact(8), Err(MvccError::Compacted));
    assert_eq!(store.current(), 8);
    store.put("d", "1");
    let (response, events) =
        store.write(WriteRequest::Compaction(CompactionRequest { revision: 9 })).unwrap();
    let expected = CompactionResponse { header_revision: 9 };
    assert_eq!((response, events), (WriteResponse::Compaction(expected), vec![]));
    assert_eq!(store.current(), 9);
}

#[test]
fn compaction_on_an_empty_store() {
    let store = TestStore::new();
    assert_eq!(store.compact(1), Ok(1));
    assert_eq!(store.compact(1), Err(MvccError::Compacted));
    assert_eq!(render(store.range(&all_at(1))), "count=0");
    assert_eq!(store.put("a", "1"), 2);
}

#[test]
fn repeated_compactions_converge() {
    let store = TestStore::new();
    for round in 0..5 {
        for key in ["x", "y", "z"] {
            store.put(key, &round.to_string());
        }
        store.delete("y", "");
        store.compact(store.current() - 1).unwrap();
        // Each key keeps at most two versions: the one at the compacted revision and newer.
        assert!(store.entries(Keyspace::KvIndex) <= 6, "round {round}");
        assert_eq!(
            render(store.range(&range_req("\0", "\0"))),
            format!("x={round} z={round} count=2")
        );
    }
}
