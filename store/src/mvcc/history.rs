//! Reading the write log back as events, for watchers catching up from an old revision.

use super::keys::{self, RecordHeader, Revision};
use super::read::compacted_revision;
use super::{Event, KeyValue, MvccError};
use crate::engine::{Keyspace, KvRead};

/// The events of revisions `start_revision..end_revision` (`end_revision` exclusive), in
/// revision order. Stops after the revision during which `events_max` was reached, so whole
/// revisions are returned and the caller resumes at the last event's revision + 1. A start
/// below the compacted revision is `Compacted` (a start at it is allowed, as for ranges; the
/// tombstones compaction dropped at that revision are gone, as in etcd).
pub fn events(
    r: &dyn KvRead,
    start_revision: i64,
    end_revision: i64,
    events_max: usize,
    with_prev_kv: bool,
) -> Result<Vec<Event>, MvccError> {
    if start_revision < compacted_revision(r)? {
        return Err(MvccError::Compacted);
    }
    if events_max == 0 || end_revision <= start_revision.max(0) {
        return Ok(Vec::new());
    }
    let start = Revision::new(start_revision.max(0), 0).to_bytes();
    let end = Revision::new(end_revision, 0).to_bytes();
    let mut written = Vec::new();
    let mut failure = None;
    let mut visit = |raw: &[u8], entry: &[u8]| {
        let decoded = Revision::from_bytes(raw).and_then(|revision| {
            let (tombstone, key) = keys::decode_revision_entry(entry)?;
            Ok((revision, tombstone, key.to_vec()))
        });
        match decoded {
            Ok(decoded) => {
                let revision_done =
                    |last: &(Revision, bool, Vec<u8>)| last.0.main != decoded.0.main;
                let full = written.len() >= events_max && written.last().is_some_and(revision_done);
                if !full {
                    written.push(decoded);
                }
                !full
            }
            Err(error) => {
                failure = Some(error);
                false
            }
        }
    };
    r.scan(Keyspace::KvRevision, &start, Some(&end), &mut visit)?;
    if let Some(error) = failure {
        return Err(error);
    }
    written
        .into_iter()
        .map(|(revision, tombstone, key)| {
            let mut event = event(r, revision, tombstone, key)?;
            if with_prev_kv {
                event.prev_kv =
                    super::read::live_version(r, &event.kv.key, Some(revision.main - 1))?;
            }
            Ok(event)
        })
        .collect()
}

fn event(
    r: &dyn KvRead,
    revision: Revision,
    tombstone: bool,
    key: Vec<u8>,
) -> Result<Event, MvccError> {
    if tombstone {
        let tombstone = KeyValue { key, mod_revision: revision.main, ..KeyValue::default() };
        return Ok(Event::delete(tombstone, None));
    }
    let index_key = keys::index_key(&keys::encode_user_key(&key), revision);
    let record = r.get(Keyspace::KvIndex, &index_key)?.ok_or_else(|| {
        MvccError::Corrupt(format!("revision log entry {revision:?} has no index entry"))
    })?;
    match keys::decode_record(&record)? {
        (RecordHeader::Put { create_revision, version, lease }, value) => {
            let kv = KeyValue {
                key,
                create_revision,
                mod_revision: revision.main,
                version,
                value: value.to_vec(),
                lease,
            };
            Ok(Event::put(kv, None))
        }
        (RecordHeader::Tombstone, _) => Err(MvccError::Corrupt(format!(
            "revision log says put, index says tombstone at {revision:?}"
        ))),
    }
}
