//! The conformance suite every [`KvEngine`] passes: one set of checks, run per backend.
//!
//! `conformance_tests!(fixture)` expands to one `#[test]` per check; `fixture()` returns
//! `(guard, engine)` where the guard (e.g. a temporary directory) outlives the engine.

use super::{Durability, Keyspace, KvEngine, KvRead, WriteBatch};

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

fn write(engine: &dyn KvEngine, batch: WriteBatch) {
    engine.write(batch, Durability::Sync).expect("write");
}

fn put(engine: &dyn KvEngine, keyspace: Keyspace, key: &[u8], value: &[u8]) {
    let mut batch = WriteBatch::default();
    batch.put(keyspace, key.to_vec(), value.to_vec());
    write(engine, batch);
}

fn get(read: &dyn KvRead, keyspace: Keyspace, key: &[u8]) -> Option<Vec<u8>> {
    read.get(keyspace, key).expect("get")
}

fn scan(read: &dyn KvRead, keyspace: Keyspace, start: &[u8], end: Option<&[u8]>) -> Pairs {
    let mut out = Vec::new();
    let mut visit = |k: &[u8], v: &[u8]| {
        out.push((k.to_vec(), v.to_vec()));
        true
    };
    read.scan(keyspace, start, end, &mut visit).expect("scan");
    out
}

fn scan_reverse(read: &dyn KvRead, keyspace: Keyspace, start: &[u8], end: Option<&[u8]>) -> Pairs {
    let mut out = Vec::new();
    let mut visit = |k: &[u8], v: &[u8]| {
        out.push((k.to_vec(), v.to_vec()));
        true
    };
    read.scan_reverse(keyspace, start, end, &mut visit).expect("scan_reverse");
    out
}

fn keys(pairs: &Pairs) -> Vec<&[u8]> {
    pairs.iter().map(|(k, _)| k.as_slice()).collect()
}

/// Puts `key -> key` for each key into `KvIndex`.
fn fill(engine: &dyn KvEngine, keys: &[&[u8]]) {
    let mut batch = WriteBatch::default();
    for key in keys {
        batch.put(Keyspace::KvIndex, key.to_vec(), key.to_vec());
    }
    write(engine, batch);
}

pub(crate) fn get_put_delete(engine: &dyn KvEngine) {
    let ks = Keyspace::KvIndex;
    assert_eq!(get(engine, ks, b"a"), None);
    put(engine, ks, b"a", b"1");
    assert_eq!(get(engine, ks, b"a"), Some(b"1".to_vec()));
    put(engine, ks, b"a", b"2");
    assert_eq!(get(engine, ks, b"a"), Some(b"2".to_vec()));
    let mut batch = WriteBatch::default();
    batch.delete(ks, b"a".to_vec());
    batch.delete(ks, b"never-written".to_vec());
    engine.write(batch, Durability::Buffered).expect("write");
    assert_eq!(get(engine, ks, b"a"), None);
}

pub(crate) fn delete_range(engine: &dyn KvEngine) {
    let ks = Keyspace::KvIndex;
    fill(engine, &[b"a", b"b", b"c", b"d"]);
    let mut batch = WriteBatch::default();
    batch.delete_range(ks, b"b".to_vec(), b"d".to_vec());
    // Inverted and empty ranges delete nothing.
    batch.delete_range(ks, b"d".to_vec(), b"a".to_vec());
    batch.delete_range(ks, b"a".to_vec(), b"a".to_vec());
    write(engine, batch);
    assert_eq!(keys(&scan(engine, ks, b"", None)), vec![b"a" as &[u8], b"d"]);
}

pub(crate) fn scan_bounds(engine: &dyn KvEngine) {
    let ks = Keyspace::KvIndex;
    fill(engine, &[b"a", b"b", b"c", b"d"]);
    let all = scan(engine, ks, b"", None);
    assert_eq!(all[0], (b"a".to_vec(), b"a".to_vec()));
    assert_eq!(keys(&all), vec![b"a" as &[u8], b"b", b"c", b"d"]);
    assert_eq!(keys(&scan(engine, ks, b"b", Some(b"d"))), vec![b"b" as &[u8], b"c"]);
    assert_eq!(keys(&scan(engine, ks, b"bb", Some(b"cc"))), vec![b"c" as &[u8]]);
    assert_eq!(keys(&scan(engine, ks, b"c", None)), vec![b"c" as &[u8], b"d"]);
    assert!(scan(engine, ks, b"d", Some(b"a")).is_empty());
    assert!(scan(engine, ks, b"b", Some(b"b")).is_empty());
    assert!(scan(engine, ks, b"e", None).is_empty());
}

pub(crate) fn scan_reverse_bounds(engine: &dyn KvEngine) {
    let ks = Keyspace::KvIndex;
    fill(engine, &[b"a", b"b", b"c", b"d"]);
    assert_eq!(keys(&scan_reverse(engine, ks, b"", None)), vec![b"d" as &[u8], b"c", b"b", b"a"]);
    assert_eq!(keys(&scan_reverse(engine, ks, b"b", Some(b"d"))), vec![b"c" as &[u8], b"b"]);
    assert_eq!(keys(&scan_reverse(engine, ks, b"bb", Some(b"cc"))), vec![b"c" as &[u8]]);
    assert_eq!(keys(&scan_reverse(engine, ks, b"c", None)), vec![b"d" as &[u8], b"c"]);
    assert_eq!(keys(&scan_reverse(engine, ks, b"", Some(b"b"))), vec![b"a" as &[u8]]);
    assert!(scan_reverse(engine, ks, b"d", Some(b"a")).is_empty());
    assert!(scan_reverse(engine, ks, b"e", None).is_empty());
    let values = scan_reverse(engine, ks, b"d", None);
    assert_eq!(values, vec![(b"d".to_vec(), b"d".to_vec())]);
}

pub(crate) fn scan_early_stop(engine: &dyn KvEngine) {
    let ks = Keyspace::KvIndex;
    fill(engine, &[b"a", b"b", b"c", b"d"]);
    let mut seen = Vec::new();
    let mut visit = |k: &[u8], _: &[u8]| {
        seen.push(k.to_vec());
        seen.len() < 2
    };
    engine.scan(ks, b"", None, &mut visit).unwrap();
    assert_eq!(seen, vec![b"a".to_vec(), b"b".to_vec()]);
    seen.clear();
    let mut visit = |k: &[u8], _: &[u8]| {
        seen.push(k.to_vec());
        false
    };
    engine.scan_reverse(ks, b"", None, &mut visit).unwrap();
    assert_eq!(seen, vec![b"d".to_vec()]);
}

pub(crate) fn keyspace_isolation(engine: &dyn KvEngine) {
    for (i, keyspace) in Keyspace::ALL.into_iter().enumerate() {
        put(engine, keyspace, b"k", &[i as u8]);
    }
    for (i, keyspace) in Keyspace::ALL.into_iter().enumerate() {
        assert_eq!(get(engine, keyspace, b"k"), Some(vec![i as u8]));
        assert_eq!(scan(engine, keyspace, b"", None).len(), 1);
    }
    let mut batch = WriteBatch::default();
    batch.delete(Keyspace::KvIndex, b"k".to_vec());
    batch.delete_range(Keyspace::RaftLog, b"".to_vec(), b"z".to_vec());
    write(engine, batch);
    assert_eq!(get(engine, Keyspace::KvIndex, b"k"), None);
    assert_eq!(get(engine, Keyspace::RaftLog, b"k"), None);
    assert_eq!(get(engine, Keyspace::KvMeta, b"k"), Some(vec![4]));
    assert_eq!(get(engine, Keyspace::RaftState, b"k"), Some(vec![1]));
}

/// A batch is applied in order and as a whole: a snapshot taken before sees none of it.
pub(crate) fn batch_atomic_in_order(engine: &dyn KvEngine) {
    let ks = Keyspace::KvIndex;
    fill(engine, &[b"x1", b"x2"]);
    let before = engine.snapshot();
    let mut batch = WriteBatch::default();
    batch.put(ks, b"a".to_vec(), b"1".to_vec());
    batch.delete(ks, b"a".to_vec());
    batch.delete(ks, b"b".to_vec());
    batch.put(ks, b"b".to_vec(), b"2".to_vec());
    batch.delete_range(ks, b"x".to_vec(), b"y".to_vec());
    batch.put(ks, b"x2".to_vec(), b"new".to_vec());
    batch.put(Keyspace::KvMeta, b"m".to_vec(), b"3".to_vec());
    assert!(!batch.is_empty());
    write(engine, batch);
    assert_eq!(get(engine, ks, b"a"), None);
    assert_eq!(get(engine, ks, b"b"), Some(b"2".to_vec()));
    assert_eq!(keys(&scan(engine, ks, b"x", Some(b"y"))), vec![b"x2" as &[u8]]);
    assert_eq!(get(engine, ks, b"x2"), Some(b"new".to_vec()));
    assert_eq!(get(engine, Keyspace::KvMeta, b"m"), Some(b"3".to_vec()));
    assert_eq!(keys(&scan(before.as_ref(), ks, b"", None)), vec![b"x1" as &[u8], b"x2"]);
    assert_eq!(get(before.as_ref(), Keyspace::KvMeta, b"m"), None);
    write(engine, WriteBatch::default());
}

pub(crate) fn snapshot_isolation(engine: &dyn KvEngine) {
    let ks = Keyspace::KvIndex;
    fill(engine, &[b"a", b"b", b"c"]);
    let snapshot = engine.snapshot();
    put(engine, ks, b"a", b"changed");
    put(engine, ks, b"bb", b"new");
    let mut batch = WriteBatch::default();
    batch.delete(ks, b"c".to_vec());
    write(engine, batch);
    let snapshot = snapshot.as_ref();
    assert_eq!(get(snapshot, ks, b"a"), Some(b"a".to_vec()));
    assert_eq!(get(snapshot, ks, b"bb"), None);
    assert_eq!(get(snapshot, ks, b"c"), Some(b"c".to_vec()));
    let forward = scan(snapshot, ks, b"", None);
    assert_eq!(keys(&forward), vec![b"a" as &[u8], b"b", b"c"]);
    assert_eq!(forward[0].1, b"a".to_vec());
    let backward = scan_reverse(snapshot, ks, b"a", Some(b"c"));
    assert_eq!(keys(&backward), vec![b"b" as &[u8], b"a"]);
    assert_eq!(keys(&scan(engine, ks, b"", None)), vec![b"a" as &[u8], b"b", b"bb"]);
    let later = engine.snapshot();
    assert_eq!(get(later.as_ref(), ks, b"a"), Some(b"changed".to_vec()));
}

pub(crate) fn empty_keys_and_values(engine: &dyn KvEngine) {
    let ks = Keyspace::KvMeta;
    put(engine, ks, b"", b"empty-key");
    put(engine, ks, b"k", b"");
    assert_eq!(get(engine, ks, b""), Some(b"empty-key".to_vec()));
    assert_eq!(get(engine, ks, b"k"), Some(Vec::new()));
    assert_eq!(keys(&scan(engine, ks, b"", None)), vec![b"" as &[u8], b"k"]);
    assert_eq!(keys(&scan_reverse(engine, ks, b"", Some(b"k"))), vec![b"" as &[u8]]);
}

pub(crate) fn binary_keys_order(engine: &dyn KvEngine) {
    let ks = Keyspace::KvRevision;
    let ordered: [&[u8]; 8] =
        [&[0], &[0, 0], &[0, 1], &[0, 0xFF], &[1], &[0xFF], &[0xFF, 0], &[0xFF, 0xFF]];
    let mut batch = WriteBatch::default();
    for key in ordered.iter().rev() {
        batch.put(ks, key.to_vec(), vec![0xFF, 0, 0xFF]);
    }
    write(engine, batch);
    assert_eq!(keys(&scan(engine, ks, b"", None)), ordered.to_vec());
    let mut reversed = ordered.to_vec();
    reversed.reverse();
    assert_eq!(keys(&scan_reverse(engine, ks, b"", None)), reversed);
    assert_eq!(keys(&scan(engine, ks, &[0, 0], Some(&[0, 0xFF]))), vec![&[0, 0][..], &[0, 1]]);
    assert_eq!(keys(&scan(engine, ks, &[0xFF], None)).len(), 3);
    assert_eq!(get(engine, ks, &[0, 0xFF]), Some(vec![0xFF, 0, 0xFF]));
}

pub(crate) fn size_grows(engine: &dyn KvEngine) {
    let mut batch = WriteBatch::default();
    for i in 0..100u32 {
        batch.put(Keyspace::KvIndex, i.to_be_bytes().to_vec(), vec![1; 64]);
    }
    write(engine, batch);
    assert!(engine.size_bytes(&Keyspace::ALL) > 0);
}

/// Defragmenting keeps every live entry and drops deleted ones, and a snapshot taken before
/// still reads its own view.
pub(crate) fn defragment_keeps_contents(engine: &dyn KvEngine) {
    let mut batch = WriteBatch::default();
    for i in 0..200u32 {
        batch.put(Keyspace::KvIndex, i.to_be_bytes().to_vec(), vec![2; 32]);
        batch.put(Keyspace::KvMeta, i.to_be_bytes().to_vec(), vec![3; 8]);
    }
    write(engine, batch);
    let mut batch = WriteBatch::default();
    batch.delete_range(
        Keyspace::KvIndex,
        0u32.to_be_bytes().to_vec(),
        100u32.to_be_bytes().to_vec(),
    );
    write(engine, batch);
    let before = engine.snapshot();
    engine.defragment().expect("defragment");
    let index = scan(engine, Keyspace::KvIndex, &[], None);
    assert_eq!(keys(&index).first().copied(), Some(&100u32.to_be_bytes()[..]));
    assert_eq!(index.len(), 100);
    assert_eq!(scan(engine, Keyspace::KvMeta, &[], None).len(), 200);
    assert_eq!(scan(&*before, Keyspace::KvIndex, &[], None), index);
    engine.defragment().expect("defragmenting twice is harmless");
}

/// Expands to one `#[test]` per conformance check for the backend `fixture()` builds.
macro_rules! conformance_tests {
    ($fixture:expr) => {
        $crate::engine::conformance::conformance_tests!(
            @each $fixture;
            get_put_delete, delete_range, scan_bounds, scan_reverse_bounds, scan_early_stop,
            keyspace_isolation, batch_atomic_in_order, snapshot_isolation, empty_keys_and_values,
            binary_keys_order, size_grows, defragment_keeps_contents
        );
    };
    (@each $fixture:expr; $($check:ident),+ $(,)?) => {
        mod conformance {
            $(
                #[test]
                fn $check() {
                    #[allow(unused_imports)]
                    use super::*;
                    let (_guard, engine) = ($fixture)();
                    $crate::engine::conformance::$check(&engine);
                }
            )+
        }
    };
}
pub(crate) use conformance_tests;
