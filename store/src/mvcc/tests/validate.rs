//! validate: empty keys, txn size, duplicate keys, as etcd's v3rpc checks.

use super::*;
use crate::limits::TXN_OPS_MAX;

fn p(key: &str) -> RequestOp {
    RequestOp::Put(put(key, "v"))
}

fn d(key: &str, end: &str) -> RequestOp {
    RequestOp::DeleteRange(DeleteRangeRequest { key: b(key), range_end: b(end), prev_kv: false })
}

fn r(key: &str) -> RequestOp {
    RequestOp::Range(range_req(key, ""))
}

fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
    TxnRequest { compare: vec![], success, failure }
}

fn nested(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
    RequestOp::Txn(txn(success, failure))
}

fn check(cases: Vec<(TxnRequest, Result<(), MvccError>)>) {
    for (req, expected) in cases {
        assert_eq!(validate(&WriteRequest::Txn(req.clone())), expected, "{req:?}");
    }
}

#[test]
fn plain_requests() {
    assert_eq!(validate(&WriteRequest::Put(put("a", ""))), Ok(()));
    assert_eq!(validate(&WriteRequest::Put(put("", "v"))), Err(MvccError::EmptyKey));
    let delete = |key: &str| DeleteRangeRequest { key: b(key), ..Default::default() };
    assert_eq!(validate(&WriteRequest::DeleteRange(delete("a"))), Ok(()));
    assert_eq!(validate(&WriteRequest::DeleteRange(delete(""))), Err(MvccError::EmptyKey));
    let compaction = WriteRequest::Compaction(CompactionRequest { revision: 0 });
    assert_eq!(validate(&compaction), Ok(()));
}

#[test]
fn empty_keys_anywhere_in_a_txn() {
    let empty_compare = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal,
            target: CompareTarget::Version(0),
            key: vec![],
            range_end: vec![],
        }],
        ..TxnRequest::default()
    };
    check(vec![
        (txn(vec![p("a"), r("b"), d("c", "")], vec![p("a")]), Ok(())),
        (txn(vec![p("")], vec![]), Err(MvccError::EmptyKey)),
        (txn(vec![], vec![r("")]), Err(MvccError::EmptyKey)),
        (txn(vec![d("", "z")], vec![]), Err(MvccError::EmptyKey)),
        (txn(vec![nested(vec![], vec![p("")])], vec![]), Err(MvccError::EmptyKey)),
        (empty_compare, Err(MvccError::EmptyKey)),
    ]);
}

#[test]
fn too_many_ops_counts_the_largest_part_and_nesting() {
    let puts = |count: usize| (0..count).map(|i| p(&format!("k{i}"))).collect::<Vec<_>>();
    let many_compares = TxnRequest {
        compare: vec![
            Compare {
                result: CompareResult::Equal,
                target: CompareTarget::Version(0),
                key: b("a"),
                range_end: vec![],
            };
            TXN_OPS_MAX + 1
        ],
        ..TxnRequest::default()
    };
    check(vec![
        (txn(puts(TXN_OPS_MAX), puts(TXN_OPS_MAX)), Ok(())),
        (txn(puts(TXN_OPS_MAX + 1), vec![]), Err(MvccError::TooManyOps)),
        (txn(vec![], puts(TXN_OPS_MAX + 1)), Err(MvccError::TooManyOps)),
        (many_compares, Err(MvccError::TooManyOps)),
        // A nested txn gets what its parent's largest branch left over.
        (txn(vec![nested(puts(TXN_OPS_MAX - 1), vec![])], vec![]), Ok(())),
        (txn(vec![nested(puts(TXN_OPS_MAX), vec![])], vec![]), Err(MvccError::TooManyOps)),
        (txn(vec![p("x"), nested(puts(TXN_OPS_MAX - 2), vec![])], vec![]), Ok(())),
        (
            txn(vec![p("x"), nested(puts(TXN_OPS_MAX - 1), vec![])], vec![]),
            Err(MvccError::TooManyOps),
        ),
        // The size check comes before the empty-key check, as in etcd.
        (txn(vec![p(""); TXN_OPS_MAX + 1], vec![]), Err(MvccError::TooManyOps)),
    ]);
}

#[test]
fn duplicate_keys_in_a_branch() {
    let dup = Err(MvccError::DuplicateKey);
    check(vec![
        (txn(vec![p("a"), p("b")], vec![p("a")]), Ok(())),
        (txn(vec![p("a"), p("a")], vec![]), dup.clone()),
        (txn(vec![], vec![p("a"), p("a")]), dup.clone()),
        (txn(vec![p("a"), d("a", "")], vec![]), dup.clone()),
        (txn(vec![d("a", "c"), p("b")], vec![]), dup.clone()),
        (txn(vec![d("a", "c"), p("c")], vec![]), Ok(())),
        (txn(vec![d("a", "c"), d("b", "d"), r("b")], vec![]), Ok(())),
        // etcd compares a from-key end ([0]) literally, so it conflicts with no put.
        (txn(vec![d("a", "\0"), p("b")], vec![]), Ok(())),
        // Nested txns: a put below conflicts with puts and deletes above.
        (txn(vec![p("a"), nested(vec![p("a")], vec![])], vec![]), dup.clone()),
        (txn(vec![d("a", ""), nested(vec![], vec![p("a")])], vec![]), dup.clone()),
        (txn(vec![nested(vec![d("a", "z")], vec![]), p("b")], vec![]), dup.clone()),
        // The two branches of a nested txn exclude each other.
        (txn(vec![nested(vec![p("a")], vec![p("a")])], vec![]), Ok(())),
        (
            txn(vec![nested(vec![p("a")], vec![]), nested(vec![], vec![p("a")])], vec![]),
            dup.clone(),
        ),
        (txn(vec![nested(vec![p("a")], vec![]), nested(vec![p("b")], vec![p("a")])], vec![]), dup),
        // Deletes alone never conflict.
        (txn(vec![d("a", ""), d("a", ""), nested(vec![d("a", "b")], vec![])], vec![]), Ok(())),
    ]);
}
