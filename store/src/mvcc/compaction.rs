//! Compaction: dropping history that no read at or after the compacted revision can see.

use super::keys::{self, RecordHeader, Revision};
use super::read::compacted_revision;
use super::{CompactionRequest, CompactionResponse, MvccError, Overlay};
use crate::engine::{Keyspace, KvRead};

/// Compacts at `req.revision`: for each key, every version with `main <= revision` except the
/// newest goes, and the newest goes too if it is a tombstone (as etcd's keyIndex.compact).
/// Reads at `revision` itself still see the same state. Makes no new revision.
pub(crate) fn compact(
    o: &mut Overlay<'_>,
    current: i64,
    req: &CompactionRequest,
) -> Result<CompactionResponse, MvccError> {
    if req.revision <= compacted_revision(o)? {
        return Err(MvccError::Compacted);
    }
    if req.revision > current {
        return Err(MvccError::FutureRevision);
    }
    for (index_key, revision) in doomed_versions(o, req.revision)? {
        o.delete(Keyspace::KvIndex, index_key);
        o.delete(Keyspace::KvRevision, revision.to_bytes().to_vec());
    }
    let compacted = keys::encode_i64(req.revision);
    o.put(Keyspace::KvMeta, keys::META_COMPACTED_REVISION.to_vec(), compacted);
    Ok(CompactionResponse { header_revision: current })
}

/// The `KvIndex` keys (with their revisions) that compaction at `at` removes.
fn doomed_versions(r: &dyn KvRead, at: i64) -> Result<Vec<(Vec<u8>, Revision)>, MvccError> {
    let mut scan = DoomScan { at, group: Vec::new(), newest: None, doomed: Vec::new() };
    let mut failure = None;
    let mut visit = |raw: &[u8], record: &[u8]| match scan.visit(raw, record) {
        Ok(()) => true,
        Err(error) => {
            failure = Some(error);
            false
        }
    };
    r.scan(Keyspace::KvIndex, b"", None, &mut visit)?;
    if let Some(error) = failure {
        return Err(error);
    }
    scan.finish_group();
    Ok(scan.doomed)
}

struct DoomScan {
    at: i64,
    /// The encoded user key whose versions are being visited (oldest first).
    group: Vec<u8>,
    /// The group's newest version so far with `main <= at`, and whether it is a tombstone.
    newest: Option<(Vec<u8>, Revision, bool)>,
    doomed: Vec<(Vec<u8>, Revision)>,
}

impl DoomScan {
    fn visit(&mut self, raw: &[u8], record: &[u8]) -> Result<(), MvccError> {
        let (encoded, revision) = keys::split_index_key(raw)?;
        if encoded != self.group.as_slice() {
            self.finish_group();
            self.group = encoded.to_vec();
        }
        if revision.main <= self.at {
            let tombstone = keys::decode_record(record)?.0 == RecordHeader::Tombstone;
            if let Some((older, older_revision, _)) =
                self.newest.replace((raw.to_vec(), revision, tombstone))
            {
                self.doomed.push((older, older_revision));
            }
        }
        Ok(())
    }

    fn finish_group(&mut self) {
        if let Some((raw, revision, tombstone)) = self.newest.take() {
            if tombstone {
                self.doomed.push((raw, revision));
            }
        }
    }
}
