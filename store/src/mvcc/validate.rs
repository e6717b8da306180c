//! Request checks done before proposing, as etcd's `v3rpc/key.go` (`checkTxnRequest`,
//! `checkIntervals`): pure, no I/O, so a bad request never reaches the Raft log.

use std::collections::BTreeSet;

use super::{MvccError, RequestOp, TxnRequest, WriteRequest};
use crate::limits::TXN_OPS_MAX;

/// Rejects requests etcd rejects before applying them: empty keys, txns with more than
/// [`TXN_OPS_MAX`] operations in a branch, and txn branches that write one key twice.
pub fn validate(req: &WriteRequest) -> Result<(), MvccError> {
    match req {
        WriteRequest::Put(put) => check_put(put),
        WriteRequest::DeleteRange(delete) => check_key(&delete.key),
        WriteRequest::Txn(txn) => {
            check_txn(txn, TXN_OPS_MAX)?;
            // After the size check, so the interval check's cost stays bounded.
            check_intervals(&txn.success)?;
            check_intervals(&txn.failure)?;
            Ok(())
        }
        WriteRequest::Compaction(_) => Ok(()),
    }
}

/// etcd's `checkPutRequest`: a key, and no value or lease alongside "keep the current one".
fn check_put(put: &super::PutRequest) -> Result<(), MvccError> {
    check_key(&put.key)?;
    if put.ignore_value && !put.value.is_empty() {
        return Err(MvccError::ValueProvided);
    }
    if put.ignore_lease && put.lease != 0 {
        return Err(MvccError::LeaseProvided);
    }
    Ok(())
}

fn check_key(key: &[u8]) -> Result<(), MvccError> {
    if key.is_empty() {
        return Err(MvccError::EmptyKey);
    }
    Ok(())
}

/// etcd counts a txn's size as its largest part (compares, success or failure); a nested
/// txn gets what is left of its parent's budget.
fn check_txn(txn: &TxnRequest, ops_max: usize) -> Result<(), MvccError> {
    let ops = txn.compare.len().max(txn.success.len()).max(txn.failure.len());
    if ops > ops_max {
        return Err(MvccError::TooManyOps);
    }
    for compare in &txn.compare {
        check_key(&compare.key)?;
    }
    for op in txn.success.iter().chain(&txn.failure) {
        match op {
            RequestOp::Range(range) => check_key(&range.key)?,
            RequestOp::Put(put) => check_put(put)?,
            RequestOp::DeleteRange(delete) => check_key(&delete.key)?,
            RequestOp::Txn(nested) => check_txn(nested, ops_max - ops)?,
        }
    }
    Ok(())
}

/// A deleted interval as etcd's `adt` sees it: a point, or `[start, end)` compared literally.
/// A from-key delete (`end == [0]`) is thus an empty interval and conflicts with no put, a
/// quirk of etcd's check that we keep so the same txns are accepted.
enum Deleted<'r> {
    Point(&'r [u8]),
    Range(&'r [u8], &'r [u8]),
}

impl Deleted<'_> {
    fn contains(&self, key: &[u8]) -> bool {
        match *self {
            Deleted::Point(point) => point == key,
            Deleted::Range(start, end) => start <= key && key < end,
        }
    }
}

type Puts<'r> = BTreeSet<&'r [u8]>;

fn is_deleted(deleted: &[Deleted<'_>], key: &[u8]) -> bool {
    deleted.iter().any(|interval| interval.contains(key))
}

/// etcd's `checkIntervals`: within one branch (nested txns included) no key may be put twice
/// or put and deleted. The two branches of a nested txn exclude each other, so both may put
/// the same key.
fn check_intervals(ops: &[RequestOp]) -> Result<(Puts<'_>, Vec<Deleted<'_>>), MvccError> {
    let mut deleted: Vec<Deleted<'_>> = ops
        .iter()
        .filter_map(|op| match op {
            RequestOp::DeleteRange(delete) if delete.range_end.is_empty() => {
                Some(Deleted::Point(&delete.key))
            }
            RequestOp::DeleteRange(delete) => Some(Deleted::Range(&delete.key, &delete.range_end)),
            _ => None,
        })
        .collect();
    let mut puts = Puts::new();
    for op in ops {
        let RequestOp::Txn(nested) = op else {
            continue;
        };
        let (puts_then, deleted_then) = check_intervals(&nested.success)?;
        let (puts_else, deleted_else) = check_intervals(&nested.failure)?;
        for &key in &puts_then {
            if puts.contains(key) || is_deleted(&deleted, key) {
                return Err(MvccError::DuplicateKey);
            }
            puts.insert(key);
        }
        for &key in &puts_else {
            let in_other_branch = puts_then.contains(key);
            if (puts.contains(key) && !in_other_branch) || is_deleted(&deleted, key) {
                return Err(MvccError::DuplicateKey);
            }
            puts.insert(key);
        }
        deleted.extend(deleted_then);
        deleted.extend(deleted_else);
    }
    for op in ops {
        let RequestOp::Put(put) = op else {
            continue;
        };
        if puts.contains(put.key.as_slice()) || is_deleted(&deleted, &put.key) {
            return Err(MvccError::DuplicateKey);
        }
        puts.insert(&put.key);
    }
    Ok((puts, deleted))
}
