//! The replicated half of leases, applied from Raft entries on every member: lease records
//! and key attachments in the `KvMeta` keyspace (so snapshots and restarts carry them), and the
//! lease checks and bookkeeping around every MVCC write.
//!
//! Layout in `KvMeta`: `lease/<id: 8 bytes BE>` holds the granted TTL;
//! `lease_keys/<id: 8 bytes BE><key>` (empty value) marks `key` as attached to the lease.
//! Attachments follow the MVCC events: a put with a lease attaches its key, a put with another
//! lease or a delete detaches it.

use serde::{Deserialize, Serialize};

use super::{LeaseError, LeaseId, LeaseProposal, LEASE_TTL_SECONDS_MAX};
use crate::engine::{EngineError, Keyspace, KvRead};
use crate::mvcc::{self, DeleteRangeRequest, Event, EventKind, MvccError, Overlay, RequestOp};
use crate::mvcc::{TxnRequest, WriteRequest, WriteResponse};

const LEASE_PREFIX: &[u8] = b"lease/";
const ATTACHMENT_PREFIX: &[u8] = b"lease_keys/";

/// What a lease record stores.
#[derive(Debug, Serialize, Deserialize)]
struct LeaseRecord {
    ttl_seconds: i64,
}

fn lease_key(id: LeaseId) -> Vec<u8> {
    [LEASE_PREFIX, &id.to_be_bytes()].concat()
}

fn attachment_prefix(id: LeaseId) -> Vec<u8> {
    [ATTACHMENT_PREFIX, &id.to_be_bytes()].concat()
}

fn attachment_key(id: LeaseId, key: &[u8]) -> Vec<u8> {
    [&attachment_prefix(id)[..], key].concat()
}

/// The first key after every key starting with `prefix` (`None`: there is none, the prefix
/// is all 0xFF). Lease ids end in any byte, 0xFF included.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn lease_exists(r: &dyn KvRead, id: LeaseId) -> Result<bool, EngineError> {
    Ok(r.get(Keyspace::KvMeta, &lease_key(id))?.is_some())
}

/// Every stored lease as (id, granted TTL), ascending by id.
pub(crate) fn stored_leases(r: &dyn KvRead) -> Result<Vec<(LeaseId, i64)>, EngineError> {
    let mut leases = Vec::new();
    let end = prefix_end(LEASE_PREFIX);
    r.scan(Keyspace::KvMeta, LEASE_PREFIX, end.as_deref(), &mut |k, v| {
        let id = k[LEASE_PREFIX.len()..].try_into().map(i64::from_be_bytes);
        let record = bincode::deserialize::<LeaseRecord>(v);
        match (id, record) {
            (Ok(id), Ok(record)) => leases.push((id, record.ttl_seconds)),
            _ => panic!("corrupt lease record in storage: {k:?}"),
        }
        true
    })?;
    Ok(leases)
}

/// The keys attached to a lease, ascending.
pub(crate) fn attached_keys(r: &dyn KvRead, id: LeaseId) -> Result<Vec<Vec<u8>>, EngineError> {
    let prefix = attachment_prefix(id);
    let mut keys = Vec::new();
    let end = prefix_end(&prefix);
    r.scan(Keyspace::KvMeta, &prefix, end.as_deref(), &mut |k, _| {
        keys.push(k[prefix.len()..].to_vec());
        true
    })?;
    Ok(keys)
}

/// Applies a client write as `mvcc::apply` does, and also rejects a put naming a lease that
/// does not exist (as etcd, also inside txns; `o` is then unchanged) and keeps the key
/// attachments in step with the events.
pub(crate) fn apply_kv(
    o: &mut Overlay<'_>,
    request: &WriteRequest,
) -> Result<(WriteResponse, Vec<Event>), MvccError> {
    let mut child = Overlay::new(o);
    let (response, events) = mvcc::apply(&mut child, request)?;
    for event in &events {
        if event.kind == EventKind::Put
            && event.kv.lease != 0
            && !lease_exists(&child, event.kv.lease)?
        {
            return Err(MvccError::LeaseNotFound);
        }
    }
    let writes = child.into_writes();
    o.merge(writes);
    track_attachments(o, &events);
    Ok((response, events))
}

fn track_attachments(o: &mut Overlay<'_>, events: &[Event]) {
    for event in events {
        let old = event.prev_kv.as_ref().map_or(0, |previous| previous.lease);
        let new = match event.kind {
            EventKind::Put => event.kv.lease,
            EventKind::Delete => 0,
        };
        if old == new {
            continue;
        }
        if old != 0 {
            o.delete(Keyspace::KvMeta, attachment_key(old, &event.kv.key));
        }
        if new != 0 {
            o.put(Keyspace::KvMeta, attachment_key(new, &event.kv.key), Vec::new());
        }
    }
}

/// A lease proposal's effect: the store's revision after it and the events it made (a
/// revoke's deletes, all at one revision).
#[derive(Debug, Default)]
pub(crate) struct LeaseApplied {
    pub revision: i64,
    pub events: Vec<Event>,
}

/// Applies a grant or revoke. The outer error is a storage fault (fatal to the apply loop);
/// the inner one is the request's outcome, the same on every member.
pub(crate) fn apply_lease(
    o: &mut Overlay<'_>,
    proposal: &LeaseProposal,
) -> Result<Result<LeaseApplied, LeaseError>, MvccError> {
    match *proposal {
        LeaseProposal::Grant { id, ttl_seconds } => {
            if id == 0 || lease_exists(o, id)? {
                // etcd refuses lease 0 as "not found"; the proposer never sends it.
                return Ok(Err(if id == 0 { LeaseError::NotFound } else { LeaseError::Exists }));
            }
            if ttl_seconds > LEASE_TTL_SECONDS_MAX {
                return Ok(Err(LeaseError::TtlTooLarge));
            }
            let record = bincode::serialize(&LeaseRecord { ttl_seconds }).expect("serializable");
            o.put(Keyspace::KvMeta, lease_key(id), record);
            Ok(Ok(LeaseApplied { revision: mvcc::current_revision(o)?, events: Vec::new() }))
        }
        LeaseProposal::Revoke { id } => {
            if !lease_exists(o, id)? {
                return Ok(Err(LeaseError::NotFound));
            }
            let keys = attached_keys(o, id)?;
            let mut events = Vec::new();
            if !keys.is_empty() {
                // One txn: every attached key goes at the same revision.
                let deletes = keys
                    .into_iter()
                    .map(|key| {
                        RequestOp::DeleteRange(DeleteRangeRequest { key, ..Default::default() })
                    })
                    .collect();
                let txn = TxnRequest { compare: Vec::new(), success: deletes, failure: Vec::new() };
                events = apply_kv(o, &WriteRequest::Txn(txn))?.1;
            }
            assert!(attached_keys(o, id)?.is_empty(), "revoke left keys attached to {id:x}");
            o.delete(Keyspace::KvMeta, lease_key(id));
            Ok(Ok(LeaseApplied { revision: mvcc::current_revision(o)?, events }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Durability, KvEngine, MemoryEngine};
    use crate::mvcc::{PutRequest, RangeRequest};

    struct Fixture {
        engine: MemoryEngine,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture { engine: MemoryEngine::new() }
        }

        fn kv(&self, request: WriteRequest) -> Result<(WriteResponse, Vec<Event>), MvccError> {
            let mut overlay = Overlay::new(&self.engine);
            let result = apply_kv(&mut overlay, &request);
            assert!(result.is_ok() || overlay.is_empty(), "a failed write left writes");
            self.engine.write(overlay.into_batch(), Durability::Sync).unwrap();
            result
        }

        fn lease(&self, proposal: LeaseProposal) -> Result<LeaseApplied, LeaseError> {
            let mut overlay = Overlay::new(&self.engine);
            let result = apply_lease(&mut overlay, &proposal).unwrap();
            self.engine.write(overlay.into_batch(), Durability::Sync).unwrap();
            result
        }

        fn put(&self, key: &str, lease: LeaseId) -> Result<i64, MvccError> {
            let put =
                PutRequest { key: key.into(), value: b"v".to_vec(), lease, ..Default::default() };
            match self.kv(WriteRequest::Put(put))?.0 {
                WriteResponse::Put(response) => Ok(response.header_revision),
                other => panic!("unexpected {other:?}"),
            }
        }

        fn keys(&self) -> Vec<(String, i64)> {
            let all = RangeRequest { key: vec![0], range_end: vec![0], ..Default::default() };
            let response = mvcc::range(&self.engine, &all).unwrap();
            response
                .kvs
                .into_iter()
                .map(|kv| (String::from_utf8(kv.key).unwrap(), kv.lease))
                .collect()
        }

        fn attached(&self, id: LeaseId) -> Vec<String> {
            attached_keys(&self.engine, id)
                .unwrap()
                .into_iter()
                .map(|k| String::from_utf8(k).unwrap())
                .collect()
        }
    }

    fn grant(id: LeaseId, ttl_seconds: i64) -> LeaseProposal {
        LeaseProposal::Grant { id, ttl_seconds }
    }

    #[test]
    fn grant_stores_the_lease_and_refuses_duplicates() {
        let f = Fixture::new();
        assert_eq!(f.lease(grant(5, 60)).unwrap().revision, 1);
        assert_eq!(f.lease(grant(5, 60)).unwrap_err(), LeaseError::Exists);
        assert_eq!(f.lease(grant(0, 60)).unwrap_err(), LeaseError::NotFound);
        let too_long = grant(6, LEASE_TTL_SECONDS_MAX + 1);
        assert_eq!(f.lease(too_long).unwrap_err(), LeaseError::TtlTooLarge);
        assert_eq!(stored_leases(&f.engine).unwrap(), vec![(5, 60)]);
    }

    #[test]
    fn a_put_with_an_unknown_lease_is_rejected_and_changes_nothing() {
        let f = Fixture::new();
        assert_eq!(f.put("a", 9), Err(MvccError::LeaseNotFound));
        let put = PutRequest { key: b"b".to_vec(), lease: 9, ..Default::default() };
        let txn = TxnRequest { success: vec![RequestOp::Put(put)], ..Default::default() };
        assert_eq!(f.kv(WriteRequest::Txn(txn)).unwrap_err(), MvccError::LeaseNotFound);
        assert_eq!(mvcc::current_revision(&f.engine).unwrap(), 1);
        assert!(f.keys().is_empty());
    }

    #[test]
    fn a_txn_branch_not_taken_does_not_check_leases() {
        let f = Fixture::new();
        let put = PutRequest { key: b"b".to_vec(), lease: 9, ..Default::default() };
        let txn = TxnRequest { failure: vec![RequestOp::Put(put)], ..Default::default() };
        assert!(f.kv(WriteRequest::Txn(txn)).is_ok());
    }

    #[test]
    fn attachments_follow_puts_and_deletes() {
        let f = Fixture::new();
        f.lease(grant(1, 60)).unwrap();
        f.lease(grant(2, 60)).unwrap();
        f.put("a", 1).unwrap();
        f.put("b", 1).unwrap();
        f.put("c", 2).unwrap();
        assert_eq!(f.attached(1), vec!["a", "b"]);
        // Moving a key to another lease, or to none, detaches it.
        f.put("b", 2).unwrap();
        f.put("c", 0).unwrap();
        assert_eq!(f.attached(1), vec!["a"]);
        assert_eq!(f.attached(2), vec!["b"]);
        // ignore_lease keeps the attachment.
        let keep = PutRequest { key: b"b".to_vec(), ignore_lease: true, ..Default::default() };
        f.kv(WriteRequest::Put(keep)).unwrap();
        assert_eq!(f.attached(2), vec!["b"]);
        let delete = DeleteRangeRequest { key: b"a".to_vec(), ..Default::default() };
        f.kv(WriteRequest::DeleteRange(delete)).unwrap();
        assert!(f.attached(1).is_empty());
    }

    #[test]
    fn revoke_deletes_every_attached_key_in_one_revision() {
        let f = Fixture::new();
        f.lease(grant(7, 60)).unwrap();
        f.put("x", 7).unwrap();
        f.put("y", 7).unwrap();
        let before = f.put("z", 0).unwrap();
        let applied = f.lease(LeaseProposal::Revoke { id: 7 }).unwrap();
        assert_eq!(applied.revision, before + 1);
        assert_eq!(applied.events.len(), 2);
        assert!(applied.events.iter().all(|e| e.kind == EventKind::Delete));
        assert!(applied.events.iter().all(|e| e.kv.mod_revision == before + 1));
        assert_eq!(f.keys(), vec![("z".to_string(), 0)]);
        assert!(stored_leases(&f.engine).unwrap().is_empty());
        assert!(f.attached(7).is_empty());
        assert_eq!(f.lease(LeaseProposal::Revoke { id: 7 }).unwrap_err(), LeaseError::NotFound);
        assert_eq!(f.put("w", 7), Err(MvccError::LeaseNotFound));
    }

    /// Regression: an id ending in 0xFF made the attachment scan's end key panic (in apply,
    /// on every member at once).
    #[test]
    fn ids_ending_in_0xff_keep_their_keys_apart_from_the_next_id() {
        let f = Fixture::new();
        f.lease(grant(0x1FF, 60)).unwrap();
        f.lease(grant(0x200, 60)).unwrap();
        f.lease(grant(i64::MAX, 60)).unwrap();
        f.put("a", 0x1FF).unwrap();
        f.put("b", 0x200).unwrap();
        f.put("c", i64::MAX).unwrap();
        assert_eq!(f.attached(0x1FF), vec!["a"]);
        assert_eq!(f.attached(i64::MAX), vec!["c"]);
        f.lease(LeaseProposal::Revoke { id: 0x1FF }).unwrap();
        assert_eq!(f.keys(), vec![("b".to_string(), 0x200), ("c".to_string(), i64::MAX)]);
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF, 0xFF]), None);
    }

    #[test]
    fn revoking_a_lease_without_keys_makes_no_revision() {
        let f = Fixture::new();
        f.lease(grant(3, 60)).unwrap();
        let revision = f.put("k", 0).unwrap();
        let applied = f.lease(LeaseProposal::Revoke { id: 3 }).unwrap();
        assert_eq!(applied.revision, revision);
        assert!(applied.events.is_empty());
    }
}
