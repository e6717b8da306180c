//! Applying write requests: put, delete-range, txn and compaction, each as one revision.

use super::keys::{self, Revision};
use super::read::{current_revision, latest, live_keys, range_at};
use super::{compaction, compare, Overlay};
use super::{
    DeleteRangeRequest, DeleteRangeResponse, Event, KeyValue, MvccError, PutRequest, PutResponse,
    RequestOp, ResponseOp, TxnRequest, TxnResponse, WriteRequest, WriteResponse,
};
use crate::engine::Keyspace;

/// The revision one write request is applied at.
struct WriteContext {
    /// The store's revision before the request.
    base: i64,
    /// The revision every write of the request shares.
    main: i64,
    /// The next sub-revision; also how many writes the request made so far.
    sub: i64,
    events: Vec<Event>,
}

impl WriteContext {
    fn new(base: i64) -> WriteContext {
        WriteContext { base, main: base + 1, sub: 0, events: Vec::new() }
    }

    fn wrote(&self) -> bool {
        self.sub > 0
    }

    /// Reads inside the request see its earlier writes; after it, this is the store's revision.
    fn read_revision(&self) -> i64 {
        if self.wrote() {
            self.main
        } else {
            self.base
        }
    }

    fn next_revision(&mut self) -> Revision {
        let revision = Revision::new(self.main, self.sub);
        self.sub += 1;
        revision
    }
}

/// Applies one write request on top of `o`. A request that changes keys makes exactly one new
/// revision (a txn's writes share it, ordered by sub-revision); one that changes nothing
/// (a delete of nothing, a read-only txn, a compaction) makes none. Returns the response and
/// the events in revision order. On error `o` is unchanged: the request is applied into a
/// child overlay that is merged only on success.
pub fn apply(
    o: &mut Overlay<'_>,
    req: &WriteRequest,
) -> Result<(WriteResponse, Vec<Event>), MvccError> {
    let base = current_revision(o)?;
    let mut child = Overlay::new(o);
    let mut ctx = WriteContext::new(base);
    let mut response = match req {
        WriteRequest::Put(put) => WriteResponse::Put(apply_put(&mut child, &mut ctx, put)?),
        WriteRequest::DeleteRange(delete) => {
            WriteResponse::DeleteRange(apply_delete(&mut child, &mut ctx, delete)?)
        }
        WriteRequest::Txn(txn) => WriteResponse::Txn(apply_txn(&mut child, &mut ctx, txn)?),
        WriteRequest::Compaction(compaction) => {
            WriteResponse::Compaction(compaction::compact(&mut child, base, compaction)?)
        }
    };
    if ctx.wrote() {
        assert!(ctx.main > base, "revisions only grow: {base} -> {}", ctx.main);
        child.put(
            Keyspace::KvMeta,
            keys::META_CURRENT_REVISION.to_vec(),
            keys::encode_i64(ctx.main),
        );
    }
    set_header_revision(&mut response, ctx.read_revision());
    let writes = child.into_writes();
    o.merge(writes);
    assert!(ctx.events.len() == usize::try_from(ctx.sub).expect("sub >= 0"), "event per write");
    Ok((response, ctx.events))
}

/// Records one version of `key` in the index and in the revision log.
fn write_version(o: &mut Overlay<'_>, key: &[u8], revision: Revision, version: Version<'_>) {
    let (record, tombstone) = match version {
        Version::Put { create_revision, version, lease, value } => {
            (keys::encode_put(create_revision, version, lease, value), false)
        }
        Version::Tombstone => (keys::encode_tombstone(), true),
    };
    let encoded = keys::encode_user_key(key);
    o.put(Keyspace::KvIndex, keys::index_key(&encoded, revision), record);
    let entry = keys::encode_revision_entry(tombstone, key);
    o.put(Keyspace::KvRevision, revision.to_bytes().to_vec(), entry);
}

enum Version<'v> {
    Put { create_revision: i64, version: i64, lease: i64, value: &'v [u8] },
    Tombstone,
}

fn apply_put(
    o: &mut Overlay<'_>,
    ctx: &mut WriteContext,
    req: &PutRequest,
) -> Result<PutResponse, MvccError> {
    if req.key.is_empty() {
        return Err(MvccError::EmptyKey);
    }
    let previous = latest(o, &req.key)?;
    let (value, lease) = match (&previous, req.ignore_value || req.ignore_lease) {
        (None, true) => return Err(MvccError::KeyNotFound),
        (Some(previous), true) => (
            if req.ignore_value { &previous.value } else { &req.value },
            if req.ignore_lease { previous.lease } else { req.lease },
        ),
        (_, false) => (&req.value, req.lease),
    };
    let revision = ctx.next_revision();
    let (create_revision, version) = match &previous {
        Some(previous) => (previous.create_revision, previous.version + 1),
        None => (revision.main, 1),
    };
    let written = Version::Put { create_revision, version, lease, value };
    write_version(o, &req.key, revision, written);
    let kv = KeyValue {
        key: req.key.clone(),
        create_revision,
        mod_revision: revision.main,
        version,
        value: value.clone(),
        lease,
    };
    let prev_kv = if req.prev_kv { previous.clone() } else { None };
    ctx.events.push(Event::put(kv, previous));
    Ok(PutResponse { header_revision: 0, prev_kv })
}

fn apply_delete(
    o: &mut Overlay<'_>,
    ctx: &mut WriteContext,
    req: &DeleteRangeRequest,
) -> Result<DeleteRangeResponse, MvccError> {
    if req.key.is_empty() {
        return Err(MvccError::EmptyKey);
    }
    let doomed =
        // Values always: the events carry the deleted versions for watchers asking prev_kv.
        live_keys(o, &req.key, &req.range_end, ctx.read_revision(), usize::MAX, true)?;
    for kv in &doomed.kvs {
        let revision = ctx.next_revision();
        write_version(o, &kv.key, revision, Version::Tombstone);
        let tombstone =
            KeyValue { key: kv.key.clone(), mod_revision: revision.main, ..KeyValue::default() };
        ctx.events.push(Event::delete(tombstone, Some(kv.clone())));
    }
    let deleted = i64::try_from(doomed.kvs.len()).expect("deleted count fits i64");
    let prev_kvs = if req.prev_kv { doomed.kvs } else { Vec::new() };
    Ok(DeleteRangeResponse { header_revision: 0, deleted, prev_kvs })
}

/// A txn as etcd 3.4 runs it: compares (also a nested txn's) see the store before the txn;
/// ranges see the txn's earlier writes; every write shares the txn's revision.
fn apply_txn(
    o: &mut Overlay<'_>,
    ctx: &mut WriteContext,
    req: &TxnRequest,
) -> Result<TxnResponse, MvccError> {
    let succeeded = compare::all_hold(o, &req.compare, ctx.base)?;
    let ops = if succeeded { &req.success } else { &req.failure };
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        let response = match op {
            RequestOp::Range(range) => {
                ResponseOp::Range(range_at(o, range, ctx.read_revision(), ctx.base)?)
            }
            RequestOp::Put(put) => ResponseOp::Put(apply_put(o, ctx, put)?),
            RequestOp::DeleteRange(delete) => {
                ResponseOp::DeleteRange(apply_delete(o, ctx, delete)?)
            }
            RequestOp::Txn(txn) => ResponseOp::Txn(apply_txn(o, ctx, txn)?),
        };
        responses.push(response);
    }
    Ok(TxnResponse { header_revision: 0, succeeded, responses })
}

/// Every response of a request, nested ones too, carries the revision after the request.
fn set_header_revision(response: &mut WriteResponse, revision: i64) {
    match response {
        WriteResponse::Put(put) => put.header_revision = revision,
        WriteResponse::DeleteRange(delete) => delete.header_revision = revision,
        WriteResponse::Txn(txn) => set_txn_header_revision(txn, revision),
        WriteResponse::Compaction(compaction) => compaction.header_revision = revision,
    }
}

fn set_txn_header_revision(txn: &mut TxnResponse, revision: i64) {
    txn.header_revision = revision;
    for response in &mut txn.responses {
        match response {
            ResponseOp::Range(range) => range.header_revision = revision,
            ResponseOp::Put(put) => put.header_revision = revision,
            ResponseOp::DeleteRange(delete) => delete.header_revision = revision,
            ResponseOp::Txn(nested) => set_txn_header_revision(nested, revision),
        }
    }
}
