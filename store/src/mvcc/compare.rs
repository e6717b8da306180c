//! Txn compares, evaluated as etcd 3.4's `applyCompare` does.

use std::cmp::Ordering;

use super::read::live_keys;
use super::{Compare, CompareResult, CompareTarget, KeyValue, MvccError};
use crate::engine::KvRead;

/// Whether every compare holds at revision `at`.
pub(crate) fn all_hold(r: &dyn KvRead, compares: &[Compare], at: i64) -> Result<bool, MvccError> {
    for compare in compares {
        if !holds(r, compare, at)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A compare over a range holds if it holds for every live key in it. With no live key, a
/// value compare fails (etcd cannot tell a missing value from an empty one) and the others
/// compare against zero, so `create_revision == 0` means "does not exist".
fn holds(r: &dyn KvRead, compare: &Compare, at: i64) -> Result<bool, MvccError> {
    let with_values = matches!(compare.target, CompareTarget::Value(_));
    let live = live_keys(r, &compare.key, &compare.range_end, at, usize::MAX, with_values)?;
    if live.kvs.is_empty() {
        return Ok(!with_values && holds_for(compare, &KeyValue::default()));
    }
    Ok(live.kvs.iter().all(|kv| holds_for(compare, kv)))
}

fn holds_for(compare: &Compare, kv: &KeyValue) -> bool {
    let ordering = match &compare.target {
        CompareTarget::Version(version) => kv.version.cmp(version),
        CompareTarget::Create(revision) => kv.create_revision.cmp(revision),
        CompareTarget::Mod(revision) => kv.mod_revision.cmp(revision),
        CompareTarget::Value(value) => kv.value.as_slice().cmp(value.as_slice()),
        CompareTarget::Lease(lease) => kv.lease.cmp(lease),
    };
    match compare.result {
        CompareResult::Equal => ordering == Ordering::Equal,
        CompareResult::NotEqual => ordering != Ordering::Equal,
        CompareResult::Greater => ordering == Ordering::Greater,
        CompareResult::Less => ordering == Ordering::Less,
    }
}
