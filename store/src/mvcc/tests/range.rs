//! Range: key conventions, revisions, limit/more/count, sorting, keys/count only, filters.

use super::*;

/// History (revision: write):
/// 2 a=1, 3 b=2, 4 c=3, 5 a=11, 6 d=4, 7 b=22, 8 b=222, 9 delete d, 10 e=0.
/// Live at 10: a=11 (create 2, mod 5, v2), b=222 (3, 8, v3), c=3 (4, 4, v1), e=0 (10, 10, v1).
fn fixture() -> TestStore {
    let store = TestStore::new();
    for (key, value) in [("a", "1"), ("b", "2"), ("c", "3"), ("a", "11"), ("d", "4")] {
        store.put(key, value);
    }
    store.put("b", "22");
    store.put("b", "222");
    store.delete("d", "");
    store.put("e", "0");
    assert_eq!(store.current(), 10);
    store
}

fn check(store: &TestStore, cases: &[(RangeRequest, &str)]) {
    for (req, expected) in cases {
        assert_eq!(render(store.range(req)), *expected, "{req:?}");
    }
}

fn all() -> RangeRequest {
    range_req("\0", "\0")
}

#[test]
fn key_conventions() {
    let store = fixture();
    check(
        &store,
        &[
            (range_req("a", ""), "a=11 count=1"),
            (range_req("d", ""), "count=0"),
            (range_req("aa", ""), "count=0"),
            (range_req("a", "c"), "a=11 b=222 count=2"),
            (range_req("a", "a"), "count=0"),
            (range_req("c", "a"), "count=0"),
            (range_req("b", "\0"), "b=222 c=3 e=0 count=3"),
            (range_req("f", "\0"), "count=0"),
            (all(), "a=11 b=222 c=3 e=0 count=4"),
            (range_req("\0", "c"), "a=11 b=222 count=2"),
        ],
    );
}

#[test]
fn prefixes() {
    let store = TestStore::new();
    for key in ["p", "p/1", "p/2", "p0", "q", "o/"] {
        store.put(key, "v");
    }
    check(
        &store,
        &[
            (range_req("p/", "p0"), "p/1=v p/2=v count=2"),
            (range_req("p", "q"), "p=v p/1=v p/2=v p0=v count=4"),
            (range_req("o/", "o0"), "o/=v count=1"),
        ],
    );
}

#[test]
fn past_revisions() {
    let store = fixture();
    let at = |revision| RangeRequest { revision, ..all() };
    check(
        &store,
        &[
            (at(1), "count=0"),
            (at(2), "a=1 count=1"),
            (at(4), "a=1 b=2 c=3 count=3"),
            (at(8), "a=11 b=222 c=3 d=4 count=4"),
            (at(9), "a=11 b=222 c=3 count=3"),
            (at(10), "a=11 b=222 c=3 e=0 count=4"),
            (at(11), "error: mvcc: required revision is a future revision"),
            (at(0), "a=11 b=222 c=3 e=0 count=4"),
            (at(-5), "a=11 b=222 c=3 e=0 count=4"),
        ],
    );
}

#[test]
fn limit_more_and_count() {
    let store = fixture();
    let limit = |limit| RangeRequest { limit, ..all() };
    check(
        &store,
        &[
            (limit(1), "a=11 count=4 more"),
            (limit(2), "a=11 b=222 count=4 more"),
            (limit(3), "a=11 b=222 c=3 count=4 more"),
            (limit(4), "a=11 b=222 c=3 e=0 count=4"),
            (limit(5), "a=11 b=222 c=3 e=0 count=4"),
            (limit(0), "a=11 b=222 c=3 e=0 count=4"),
            (limit(-1), "a=11 b=222 c=3 e=0 count=4"),
            (RangeRequest { limit: 1, revision: 4, ..all() }, "a=1 count=3 more"),
        ],
    );
}

#[test]
fn sort_every_target_both_orders() {
    let store = fixture();
    let sorted = |sort_order, sort_target| RangeRequest { sort_order, sort_target, ..all() };
    use SortOrder::{Ascend, Descend, None};
    use SortTarget::{Create, Key, Mod, Value, Version};
    check(
        &store,
        &[
            (sorted(None, Key), "a=11 b=222 c=3 e=0 count=4"),
            (sorted(Ascend, Key), "a=11 b=222 c=3 e=0 count=4"),
            (sorted(Descend, Key), "e=0 c=3 b=222 a=11 count=4"),
            // Ties (c and e are both version 1) stay in key order.
            (sorted(Ascend, Version), "c=3 e=0 a=11 b=222 count=4"),
            (sorted(Descend, Version), "b=222 a=11 c=3 e=0 count=4"),
            (sorted(Ascend, Create), "a=11 b=222 c=3 e=0 count=4"),
            (sorted(Descend, Create), "e=0 c=3 b=222 a=11 count=4"),
            (sorted(Ascend, Mod), "c=3 a=11 b=222 e=0 count=4"),
            (sorted(Descend, Mod), "e=0 b=222 a=11 c=3 count=4"),
            (sorted(Ascend, Value), "e=0 a=11 b=222 c=3 count=4"),
            (sorted(Descend, Value), "c=3 b=222 a=11 e=0 count=4"),
            // etcd: no order but a target other than the key means ascending.
            (sorted(None, Mod), "c=3 a=11 b=222 e=0 count=4"),
            (sorted(None, Value), "e=0 a=11 b=222 c=3 count=4"),
        ],
    );
}

#[test]
fn sort_with_limit() {
    let store = fixture();
    let limited =
        |sort_order, sort_target| RangeRequest { sort_order, sort_target, limit: 2, ..all() };
    check(
        &store,
        &[
            // With an order, everything is fetched, sorted, then truncated.
            (limited(SortOrder::Descend, SortTarget::Key), "e=0 c=3 count=4 more"),
            (limited(SortOrder::Ascend, SortTarget::Mod), "c=3 a=11 count=4 more"),
            // etcd 3.4 quirk: with no order the limit applies first (limit + 1 keys in key order:
            // a, b, c), then those are sorted by version.
            (limited(SortOrder::None, SortTarget::Version), "c=3 a=11 count=4 more"),
        ],
    );
}

#[test]
fn keys_only_and_count_only() {
    let store = fixture();
    check(
        &store,
        &[
            (RangeRequest { keys_only: true, ..all() }, "a= b= c= e= count=4"),
            (RangeRequest { keys_only: true, limit: 1, ..all() }, "a= count=4 more"),
            (RangeRequest { count_only: true, ..all() }, "count=4"),
            (RangeRequest { count_only: true, limit: 1, ..all() }, "count=4"),
            (RangeRequest { count_only: true, min_mod_revision: 9, ..all() }, "count=4"),
            (RangeRequest { count_only: true, revision: 4, ..range_req("b", "\0") }, "count=2"),
        ],
    );
    // Sorting by value still works when values are not returned.
    let req = RangeRequest {
        keys_only: true,
        sort_order: SortOrder::Descend,
        sort_target: SortTarget::Value,
        ..all()
    };
    check(&store, &[(req, "c= b= a= e= count=4")]);
    let full = store.range(&RangeRequest { keys_only: true, ..range_req("a", "") }).unwrap();
    assert_eq!(full.kvs, vec![kv("a", "", 2, 5, 2)]);
}

#[test]
fn revision_filters() {
    let store = fixture();
    let filtered = |min_mod, max_mod, min_create, max_create| RangeRequest {
        min_mod_revision: min_mod,
        max_mod_revision: max_mod,
        min_create_revision: min_create,
        max_create_revision: max_create,
        ..all()
    };
    check(
        &store,
        &[
            (filtered(5, 0, 0, 0), "a=11 b=222 e=0 count=4"),
            (filtered(0, 5, 0, 0), "a=11 c=3 count=4"),
            (filtered(0, 0, 4, 0), "c=3 e=0 count=4"),
            (filtered(0, 0, 0, 3), "a=11 b=222 count=4"),
            (filtered(5, 8, 0, 0), "a=11 b=222 count=4"),
            (filtered(5, 0, 3, 0), "b=222 e=0 count=4"),
            (filtered(11, 0, 0, 0), "count=4"),
            // The limit applies after filtering; count is before it, as in etcd.
            (RangeRequest { limit: 1, ..filtered(5, 0, 0, 0) }, "a=11 count=4 more"),
            (RangeRequest { limit: 3, ..filtered(5, 0, 0, 0) }, "a=11 b=222 e=0 count=4"),
        ],
    );
}

#[test]
fn full_key_values() {
    let store = fixture();
    let response = store.range(&all()).unwrap();
    assert_eq!(response.header_revision, 10);
    assert_eq!(
        response.kvs,
        vec![
            kv("a", "11", 2, 5, 2),
            kv("b", "222", 3, 8, 3),
            kv("c", "3", 4, 4, 1),
            kv("e", "0", 10, 10, 1),
        ]
    );
}
