//! HashKV: a digest of the key-value history up to a revision, the consistency check that
//! must give the same value on every member for the same revision.
//!
//! etcd hashes the bbolt key bucket entries at or below the revision (and above the compacted
//! one, plus the versions compaction kept). Our layout differs, so the hash is defined over our
//! logical MVCC contents instead: every stored version in `KvIndex` whose main revision is at
//! or below the requested one, in `KvIndex` order (user key, then revision), each fed to
//! SHA-256 as `key length u32 BE | index key | record length u32 BE | record`. The index key
//! encodes (user key, revision) and the record (create revision, version, lease, value or
//! tombstone), so the hash covers exactly the history a read at or below the revision can see
//! plus the tombstones. The result is the first four bytes of the digest, big-endian.
//!
//! Members apply the same entries in the same order, compactions included, so two members
//! that have applied the same compaction agree for every revision at or below their current
//! one. A member that has not yet applied a compaction another has applied may differ, as in
//! etcd: compare hashes whose `compact_revision` agree.

use sha2::{Digest, Sha256};

use super::keys;
use super::read::{compacted_revision, current_revision};
use super::MvccError;
use crate::engine::{Keyspace, KvRead};

/// The answer to HashKV.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvHash {
    pub hash: u32,
    /// The revision hashed up to (the current revision when 0 was asked for).
    pub revision: i64,
    /// The compacted revision, or -1 if the store was never compacted (as etcd reports it).
    pub compact_revision: i64,
    /// The store's current revision in the view that was hashed (the response header's).
    pub current_revision: i64,
}

/// Hashes the history at or below `revision` (0: the current revision) of one consistent view.
/// As etcd: a revision at or below the compacted one is `Compacted`, past the current one
/// `FutureRevision`.
pub fn hash_kv(r: &dyn KvRead, revision: i64) -> Result<KvHash, MvccError> {
    let current = current_revision(r)?;
    let compacted = compacted_revision(r)?;
    if revision > 0 && compacted > 0 && revision <= compacted {
        return Err(MvccError::Compacted);
    }
    if revision > current {
        return Err(MvccError::FutureRevision);
    }
    let at = if revision <= 0 { current } else { revision };
    let mut digest = Sha256::new();
    let mut failure = None;
    r.scan(Keyspace::KvIndex, b"", None, &mut |raw, record| match keys::split_index_key(raw) {
        Ok((_, version)) => {
            if version.main <= at {
                feed(&mut digest, raw);
                feed(&mut digest, record);
            }
            true
        }
        Err(error) => {
            failure = Some(error);
            false
        }
    })?;
    if let Some(error) = failure {
        return Err(error);
    }
    Ok(KvHash {
        hash: digest_u32(digest),
        revision: at,
        compact_revision: if compacted > 0 { compacted } else { -1 },
        current_revision: current,
    })
}

/// Feeds one length-prefixed field, so field boundaries are part of what is hashed.
pub(crate) fn feed(digest: &mut Sha256, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("stored keys and values are below 4 GiB");
    digest.update(len.to_be_bytes());
    digest.update(bytes);
}

/// The first four bytes of the digest as a big-endian number (etcd's hashes are `uint32`).
pub(crate) fn digest_u32(digest: Sha256) -> u32 {
    let bytes = digest.finalize();
    u32::from_be_bytes(bytes[..4].try_into().expect("sha256 has 32 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Durability, KvEngine, MemoryEngine};
    use crate::mvcc::{apply, CompactionRequest, Overlay, PutRequest, WriteRequest};

    fn write(engine: &MemoryEngine, request: WriteRequest) {
        let mut overlay = Overlay::new(engine);
        apply(&mut overlay, &request).expect("apply");
        engine.write(overlay.into_batch(), Durability::Sync).expect("write");
    }

    fn put(engine: &MemoryEngine, key: &str, value: &str) {
        let request = PutRequest { key: key.into(), value: value.into(), ..Default::default() };
        write(engine, WriteRequest::Put(request));
    }

    #[test]
    fn hash_depends_on_history_up_to_the_revision_only() {
        let (a, b) = (MemoryEngine::new(), MemoryEngine::new());
        for engine in [&a, &b] {
            put(engine, "k", "1");
            put(engine, "k", "2");
        }
        let at_3 = hash_kv(&a, 0).expect("hash");
        assert_eq!((at_3.revision, at_3.compact_revision, at_3.current_revision), (3, -1, 3));
        assert_eq!(at_3, hash_kv(&b, 3).expect("hash"));
        put(&a, "k", "3");
        put(&b, "other", "3");
        // Both still agree on the history up to 3, and differ after.
        assert_eq!(hash_kv(&a, 3).expect("hash").hash, at_3.hash);
        assert_eq!(hash_kv(&b, 3).expect("hash").hash, at_3.hash);
        assert_ne!(hash_kv(&a, 0).expect("hash").hash, hash_kv(&b, 0).expect("hash").hash);
        assert_ne!(hash_kv(&a, 2).expect("hash").hash, at_3.hash);
    }

    #[test]
    fn compacted_and_future_revisions_are_refused_as_etcd_does() {
        let engine = MemoryEngine::new();
        for value in ["1", "2", "3"] {
            put(&engine, "k", value);
        }
        assert_eq!(hash_kv(&engine, 5), Err(MvccError::FutureRevision));
        write(&engine, WriteRequest::Compaction(CompactionRequest { revision: 3 }));
        assert_eq!(hash_kv(&engine, 3), Err(MvccError::Compacted));
        assert_eq!(hash_kv(&engine, 2), Err(MvccError::Compacted));
        let hashed = hash_kv(&engine, 4).expect("hash");
        assert_eq!((hashed.revision, hashed.compact_revision), (4, 3));
        assert_eq!(hash_kv(&engine, 0).expect("hash"), hashed);
    }
}
