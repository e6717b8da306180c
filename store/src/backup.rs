//! Backups: the byte stream `Maintenance.Snapshot` sends (what `etcdctl snapshot save` and
//! `kvctl snapshot save` write to a file), reading a saved backup back (`snapshot status`),
//! and restoring one into a new member's data directory (etcd's disaster-recovery workflow).
//!
//! Format (all integers big-endian):
//!
//! ```text
//! "SKFBAK01" | payload length u64 | payload | zero padding | sha256
//! ```
//!
//! The payload is the state-machine dump Raft snapshots use (`raft::dump_state_machine`: the
//! state-machine keyspaces of one engine snapshot). The padding makes everything before the
//! checksum a multiple of `BACKUP_ALIGNMENT_BYTES` (512), and the checksum is the SHA-256 of
//! everything before it: etcdctl 3.4's `snapshot save` accepts only a stream of that shape (a
//! bbolt file plus its sha256). The length in the header makes the padding unambiguous.
//!
//! Restore writes the MVCC data (`KvIndex`, `KvRevision`, and `KvMeta` minus Raft's and the
//! old membership's keys: revisions, compaction, leases) into a fresh engine and records the
//! new member's identity. Raft starts empty: the new cluster initializes as any new cluster
//! does, and its first entries apply on top of the restored revision. Every member of the new
//! cluster must be restored from the same backup, as with etcd.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::config::{ConfigError, StoreConfig};
use crate::engine::{Durability, EngineError, Keyspace, KvEngine, KvRead, RocksEngine, WriteBatch};
use crate::limits::{BACKUP_ALIGNMENT_BYTES, RESTORE_BATCH_BYTES_MAX};
use crate::mvcc::hash::{digest_u32, feed};
use crate::raft::{dump_state_machine, parse_dump, SnapshotRecord};
use crate::server::{check_identity, Identity};

/// The first bytes of every backup.
pub const BACKUP_MAGIC: &[u8; 8] = b"SKFBAK01";
const HEADER_BYTES: usize = BACKUP_MAGIC.len() + 8;
/// The trailing SHA-256.
pub const CHECKSUM_BYTES: usize = 32;

/// `KvMeta` keys that belong to the old cluster's Raft state and membership, not to the data:
/// a restored member starts a new cluster with a fresh log and its own membership.
const NOT_RESTORED_META_PREFIXES: [&[u8]; 2] = [b"raft/", b"cluster/"];

/// Why a backup could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BackupError {
    #[error("cannot read {path}: {reason}")]
    Io { path: String, reason: String },
    #[error("not a Skiff backup (no {:?} header)", String::from_utf8_lossy(BACKUP_MAGIC))]
    BadMagic,
    #[error("backup has {found} bytes, {expected} expected: truncated or padded wrongly")]
    BadLength { found: u64, expected: u64 },
    #[error("sha256 checksum mismatch: the backup is corrupt")]
    Checksum,
    #[error("backup contents are corrupt: {0}")]
    Corrupt(String),
}

/// Why a restore failed; each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("a data directory is needed to restore into")]
    NoDataDir,
    #[error("data-dir {0:?} exists")]
    DataDirExists(String),
    #[error("cannot write {path}: {reason}")]
    Io { path: String, reason: String },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot record the member identity: {0}")]
    Identity(String),
}

/// Builds the backup of one consistent view (the whole stream, checksum included).
pub(crate) fn build_backup(view: &dyn KvRead) -> Result<Vec<u8>, EngineError> {
    let dump = dump_state_machine(view).map_err(|e| EngineError::Backend(e.to_string()))?;
    Ok(frame(&dump))
}

/// Frames a payload: header, payload, padding, checksum.
fn frame(payload: &[u8]) -> Vec<u8> {
    let unpadded = HEADER_BYTES + payload.len();
    let padded = unpadded.div_ceil(BACKUP_ALIGNMENT_BYTES) * BACKUP_ALIGNMENT_BYTES;
    let mut out = Vec::with_capacity(padded + CHECKSUM_BYTES);
    out.extend_from_slice(BACKUP_MAGIC);
    out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    out.extend_from_slice(payload);
    out.resize(padded, 0);
    let checksum = Sha256::digest(&out);
    out.extend_from_slice(&checksum);
    assert_eq!(out.len() % BACKUP_ALIGNMENT_BYTES, CHECKSUM_BYTES, "backup framing");
    out
}

/// Whether a stream of `length` bytes has the shape etcdctl 3.4 accepts (a multiple of 512
/// plus a 32-byte sha256).
pub fn has_checksum_shape(length: u64) -> bool {
    length % BACKUP_ALIGNMENT_BYTES as u64 == CHECKSUM_BYTES as u64
}

/// A backup whose framing and checksum have been verified.
#[derive(Debug)]
pub struct Backup {
    bytes: Vec<u8>,
    payload_len: usize,
}

/// What `snapshot status` shows about a backup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackupStatus {
    /// The state hash (what `Maintenance.Hash` answered when the backup was taken).
    pub hash: u32,
    /// The store's revision in the backup.
    pub revision: i64,
    /// Stored entries in the backup, over all state-machine keyspaces.
    pub total_keys: u64,
    /// The backup's size in bytes.
    pub total_size: u64,
}

impl Backup {
    pub fn read(path: &Path) -> Result<Backup, BackupError> {
        let bytes = std::fs::read(path).map_err(|e| BackupError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Backup::from_bytes(bytes)
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Result<Backup, BackupError> {
        if bytes.len() < HEADER_BYTES + CHECKSUM_BYTES || !bytes.starts_with(BACKUP_MAGIC) {
            return Err(BackupError::BadMagic);
        }
        let length: [u8; 8] = bytes[BACKUP_MAGIC.len()..HEADER_BYTES].try_into().expect("8");
        let payload_len = u64::from_be_bytes(length);
        let padded = (HEADER_BYTES as u64)
            .saturating_add(payload_len)
            .div_ceil(BACKUP_ALIGNMENT_BYTES as u64)
            .saturating_mul(BACKUP_ALIGNMENT_BYTES as u64);
        let expected = padded.saturating_add(CHECKSUM_BYTES as u64);
        if bytes.len() as u64 != expected {
            return Err(BackupError::BadLength { found: bytes.len() as u64, expected });
        }
        let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM_BYTES);
        if Sha256::digest(body).as_slice() != checksum {
            return Err(BackupError::Checksum);
        }
        let payload_len = usize::try_from(payload_len).expect("checked against the file size");
        Ok(Backup { bytes, payload_len })
    }

    fn payload(&self) -> &[u8] {
        &self.bytes[HEADER_BYTES..HEADER_BYTES + self.payload_len]
    }

    fn records(&self) -> Result<Vec<SnapshotRecord<'_>>, BackupError> {
        parse_dump(self.payload()).map_err(BackupError::Corrupt)
    }

    pub fn status(&self) -> Result<BackupStatus, BackupError> {
        let records = self.records()?;
        let mut revision = 1;
        for (keyspace, key, value) in &records {
            if *keyspace == Keyspace::KvMeta && *key == crate::mvcc::META_CURRENT_REVISION {
                let bytes: [u8; 8] = (*value).try_into().map_err(|_| {
                    BackupError::Corrupt(format!("current revision has {} bytes", value.len()))
                })?;
                revision = i64::from_be_bytes(bytes);
            }
        }
        Ok(BackupStatus {
            hash: hash_records(records.iter().copied()),
            revision,
            total_keys: records.len() as u64,
            total_size: self.bytes.len() as u64,
        })
    }
}

/// The `Maintenance.Hash` value: SHA-256 over every entry of every state-machine keyspace (in
/// keyspace, then key order) as `keyspace name | key | value`, each length-prefixed; the first
/// four bytes, big-endian. A backup's status shows the same hash over its contents.
pub(crate) fn hash_state_machine(view: &dyn KvRead) -> Result<u32, EngineError> {
    let mut digest = Sha256::new();
    for keyspace in Keyspace::STATE_MACHINE {
        view.scan(keyspace, &[], None, &mut |key, value| {
            feed_record(&mut digest, keyspace, key, value);
            true
        })?;
    }
    Ok(digest_u32(digest))
}

fn hash_records<'a>(records: impl Iterator<Item = SnapshotRecord<'a>>) -> u32 {
    let mut digest = Sha256::new();
    for (keyspace, key, value) in records {
        feed_record(&mut digest, keyspace, key, value);
    }
    digest_u32(digest)
}

fn feed_record(digest: &mut Sha256, keyspace: Keyspace, key: &[u8], value: &[u8]) {
    feed(digest, keyspace.name().as_bytes());
    feed(digest, key);
    feed(digest, value);
}

fn is_restored(keyspace: Keyspace, key: &[u8]) -> bool {
    keyspace != Keyspace::KvMeta || !NOT_RESTORED_META_PREFIXES.iter().any(|p| key.starts_with(p))
}

/// Progress of a restore: records written so far and in all.
pub type RestoreProgress<'a> = dyn FnMut(u64, u64) + 'a;

/// Restores `backup` into the data directory of `config` (which must not exist), for the
/// member `config` describes: the MVCC data and leases, and the member's identity. Start the
/// member with the same flags (name, peer URLs, initial cluster and token) afterwards.
pub fn restore(
    backup: &Backup,
    config: &StoreConfig,
    progress: &mut RestoreProgress<'_>,
) -> Result<BackupStatus, RestoreError> {
    let plan = config.plan()?;
    let data_dir = config.data_dir.as_ref().ok_or(RestoreError::NoDataDir)?;
    if data_dir.exists() {
        return Err(RestoreError::DataDirExists(data_dir.display().to_string()));
    }
    let status = backup.status()?;
    // Built beside the target and renamed into place, so a failed restore never leaves a
    // half-written data directory that `skiff store` would start from.
    let partial = partial_dir(data_dir);
    if partial.exists() {
        return Err(RestoreError::DataDirExists(partial.display().to_string()));
    }
    let io = |path: &Path, e: std::io::Error| RestoreError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    {
        let engine = RocksEngine::open(&partial.join("db"))?;
        write_records(&engine, &backup.records()?, progress)?;
        let identity = Identity {
            name: config.name.clone(),
            member_id: plan.member_id,
            cluster_id: plan.cluster_id,
        };
        check_identity(&engine, identity).map_err(|e| RestoreError::Identity(e.to_string()))?;
    }
    std::fs::rename(&partial, data_dir).map_err(|e| io(data_dir, e))?;
    if let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent).and_then(|d| d.sync_all()).map_err(|e| io(parent, e))?;
    }
    Ok(status)
}

fn partial_dir(data_dir: &Path) -> PathBuf {
    let mut name = data_dir.file_name().unwrap_or_default().to_os_string();
    name.push(".restoring");
    data_dir.with_file_name(name)
}

/// Writes the restored records in bounded batches; the last write syncs them all (they share
/// one write-ahead log).
fn write_records(
    engine: &dyn KvEngine,
    records: &[SnapshotRecord<'_>],
    progress: &mut RestoreProgress<'_>,
) -> Result<(), RestoreError> {
    let total = records.len() as u64;
    let mut batch = WriteBatch::default();
    let mut batch_bytes = 0;
    for (done, (keyspace, key, value)) in records.iter().enumerate() {
        if is_restored(*keyspace, key) {
            batch.put(*keyspace, key.to_vec(), value.to_vec());
            batch_bytes += key.len() + value.len();
        }
        if batch_bytes >= RESTORE_BATCH_BYTES_MAX {
            engine.write(std::mem::take(&mut batch), Durability::Buffered)?;
            batch_bytes = 0;
            progress(done as u64 + 1, total);
        }
    }
    engine.write(batch, Durability::Sync)?;
    progress(total, total);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::MemoryEngine;
    use crate::mvcc::{apply, Overlay, PutRequest, WriteRequest};

    fn engine_with(keys: &[&str]) -> MemoryEngine {
        let engine = MemoryEngine::new();
        for key in keys {
            let request = PutRequest { key: key.as_bytes().into(), ..Default::default() };
            let mut overlay = Overlay::new(&engine);
            apply(&mut overlay, &WriteRequest::Put(request)).expect("apply");
            let mut batch = overlay.into_batch();
            batch.put(Keyspace::KvMeta, b"raft/last_applied".to_vec(), vec![1]);
            engine.write(batch, Durability::Sync).expect("write");
        }
        engine
    }

    #[test]
    fn frames_have_the_shape_etcdctl_accepts_and_read_back() {
        for payload_len in [0, 1, 495, 496, 497, 1000, 5000] {
            let framed = frame(&vec![7; payload_len]);
            assert!(has_checksum_shape(framed.len() as u64), "{payload_len}");
            let backup = Backup::from_bytes(framed).expect("valid");
            assert_eq!(backup.payload(), vec![7; payload_len]);
        }
    }

    #[test]
    fn damaged_backups_are_refused() {
        let engine = engine_with(&["a", "b"]);
        let framed = build_backup(&engine).expect("backup");
        let mut flipped = framed.clone();
        flipped[HEADER_BYTES + 3] ^= 1;
        assert_eq!(Backup::from_bytes(flipped).err(), Some(BackupError::Checksum));
        let truncated = framed[..framed.len() - 1].to_vec();
        assert!(matches!(Backup::from_bytes(truncated), Err(BackupError::BadLength { .. })));
        assert_eq!(Backup::from_bytes(vec![0; 600]).err(), Some(BackupError::BadMagic));
    }

    #[test]
    fn status_hash_is_the_state_hash_and_revision_the_store_revision() {
        let engine = engine_with(&["a", "b", "c"]);
        let backup = Backup::from_bytes(build_backup(&engine).expect("backup")).expect("valid");
        let status = backup.status().expect("status");
        assert_eq!(status.hash, hash_state_machine(&engine).expect("hash"));
        assert_eq!(status.revision, 4);
        assert_eq!(status.total_size, backup.bytes.len() as u64);
        // 3 index entries, 3 revision entries, current revision, last applied.
        assert_eq!(status.total_keys, 8);
    }

    #[test]
    fn restore_writes_the_data_and_identity_but_not_raft_state() {
        let source = engine_with(&["a", "b"]);
        let backup = Backup::from_bytes(build_backup(&source).expect("backup")).expect("valid");
        let dir = tempfile::TempDir::new().expect("temp dir");
        let data_dir = dir.path().join("m1");
        let config = StoreConfig::single("m1", Some(data_dir.clone()));
        let mut calls = Vec::new();
        restore(&backup, &config, &mut |done, total| calls.push((done, total))).expect("restore");
        assert_eq!(calls.last(), Some(&(6, 6)));
        let engine = RocksEngine::open(&data_dir.join("db")).expect("open");
        assert_eq!(crate::mvcc::current_revision(&engine).expect("revision"), 3);
        assert_eq!(engine.get(Keyspace::KvMeta, b"raft/last_applied").expect("get"), None);
        assert!(engine.get(Keyspace::RaftState, b"identity").expect("get").is_some());
        let request =
            crate::mvcc::RangeRequest { key: vec![0], range_end: vec![0], ..Default::default() };
        let range = crate::mvcc::range(&engine, &request).expect("range");
        assert_eq!(range.kvs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>(), [b"a", b"b"]);
        drop(engine);
        let again = restore(&backup, &config, &mut |_, _| {}).expect_err("exists");
        assert!(matches!(again, RestoreError::DataDirExists(_)), "{again}");
    }
}
