//! The small key-value engine trait the store is built on, with RocksDB and in-memory backends.
//!
//! Everything durable in the store (the Raft log, Raft metadata and the MVCC state machine) is
//! written through this trait, so tests can run the same code over memory or over real RocksDB.
//!
//! **Architecture invariant:** this module knows nothing about MVCC, Raft or gRPC; it moves
//! bytes between named keyspaces.

#[cfg(test)]
mod conformance;
mod memory;
mod rocks;

pub use memory::MemoryEngine;
pub use rocks::RocksEngine;

/// A named, independent key space (a RocksDB column family).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Keyspace {
    /// Raft log entries keyed by big-endian log index.
    RaftLog,
    /// Raft vote, committed log id, last purged log id.
    RaftState,
    /// MVCC versions: encoded user key followed by revision.
    KvIndex,
    /// MVCC revision log: revision to the key written at it (for watch catch-up).
    KvRevision,
    /// MVCC and state-machine metadata: current and compacted revision, applied log id.
    KvMeta,
}

impl Keyspace {
    pub const ALL: [Keyspace; 5] = [
        Keyspace::RaftLog,
        Keyspace::RaftState,
        Keyspace::KvIndex,
        Keyspace::KvRevision,
        Keyspace::KvMeta,
    ];

    /// The keyspaces that make up the replicated state machine (what a Raft snapshot carries).
    pub const STATE_MACHINE: [Keyspace; 3] =
        [Keyspace::KvIndex, Keyspace::KvRevision, Keyspace::KvMeta];

    pub fn name(self) -> &'static str {
        match self {
            Keyspace::RaftLog => "raft_log",
            Keyspace::RaftState => "raft_state",
            Keyspace::KvIndex => "kv_index",
            Keyspace::KvRevision => "kv_revision",
            Keyspace::KvMeta => "kv_meta",
        }
    }
}

/// Errors from the storage backend. All of them are fatal to the operation that hit them.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("storage backend: {0}")]
    Backend(String),
    #[error("cannot open data directory {path}: {reason}")]
    Open { path: String, reason: String },
}

/// Whether a write must be on stable storage (fdatasync of the write-ahead log) before the
/// call returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    Sync,
    Buffered,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchOp {
    Put {
        keyspace: Keyspace,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        keyspace: Keyspace,
        key: Vec<u8>,
    },
    /// Deletes every key in `[start, end)`.
    DeleteRange {
        keyspace: Keyspace,
        start: Vec<u8>,
        end: Vec<u8>,
    },
}

/// Writes applied atomically: all or none survive a crash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    pub ops: Vec<BatchOp>,
}

impl WriteBatch {
    pub fn put(&mut self, keyspace: Keyspace, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push(BatchOp::Put { keyspace, key, value });
    }
    pub fn delete(&mut self, keyspace: Keyspace, key: Vec<u8>) {
        self.ops.push(BatchOp::Delete { keyspace, key });
    }
    pub fn delete_range(&mut self, keyspace: Keyspace, start: Vec<u8>, end: Vec<u8>) {
        self.ops.push(BatchOp::DeleteRange { keyspace, start, end });
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Visitor for scans: return `false` to stop.
pub type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> bool + 'a;

/// Read access to one consistent view (the live engine or a point-in-time snapshot).
pub trait KvRead {
    fn get(&self, keyspace: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError>;
    /// Visits `start <= key < end` (no `end`: to the end of the keyspace) in ascending order.
    fn scan(
        &self,
        keyspace: Keyspace,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut Visit<'_>,
    ) -> Result<(), EngineError>;
    /// Visits `start <= key < end` in descending order.
    fn scan_reverse(
        &self,
        keyspace: Keyspace,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut Visit<'_>,
    ) -> Result<(), EngineError>;
}

/// A storage backend.
pub trait KvEngine: KvRead + Send + Sync + 'static {
    /// A consistent point-in-time view; later writes are invisible to it.
    fn snapshot(&self) -> Box<dyn KvRead + '_>;
    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), EngineError>;
    /// Makes every write so far durable (one fdatasync of the write-ahead log): a
    /// `Buffered` write followed by this is as durable as a `Sync` one. An engine without a
    /// log has nothing to do.
    fn sync_wal(&self) -> Result<(), EngineError> {
        Ok(())
    }
    /// Approximate bytes used on disk (or in memory) by these keyspaces.
    fn size_bytes(&self, keyspaces: &[Keyspace]) -> u64;
    /// Approximate bytes of live data in these keyspaces: `size_bytes` less what a defragment
    /// would reclaim. An engine that keeps no dead data reports `size_bytes`.
    fn live_size_bytes(&self, keyspaces: &[Keyspace]) -> u64 {
        self.size_bytes(keyspaces)
    }
    /// Rewrites storage to drop deleted data and reclaim space (etcd's defragment); contents
    /// are unchanged. May take long on a large store: call it off the async runtime.
    fn defragment(&self) -> Result<(), EngineError>;
}
