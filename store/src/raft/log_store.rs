//! The Raft log and Raft metadata (vote, committed, last purged) in the engine.
//!
//! Appends are acknowledged to openraft (the log-flush callback) only after the engine's
//! write-ahead log is synced with fdatasync, so an acknowledged entry survives a crash of this
//! member. The sync is group-committed: `append` writes its entries unsynced (readable at
//! once, so the leader can replicate them while they are being made durable) and hands its
//! callback to the flusher thread, which syncs once for every callback waiting and then
//! acknowledges them all. Under load one fdatasync covers many appends, as etcd's WAL does.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogId, RaftLogReader, Vote};

use super::log_cache::LogCache;
use super::{decode, encode, read_error, write_error, LogId, NodeId, StorageError, TypeConfig};
use crate::engine::{Durability, EngineError, Keyspace, KvEngine, WriteBatch};
use crate::limits;
use crate::metrics::Metrics;

type Entry = openraft::Entry<TypeConfig>;

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

/// Log entries are keyed by big-endian index so engine order is log order.
fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn key_index(key: &[u8]) -> u64 {
    let bytes: [u8; 8] = key.try_into().expect("raft log keys are 8 bytes");
    u64::from_be_bytes(bytes)
}

/// Log storage over a shared engine. Cloning shares the engine (the log reader is a clone).
#[derive(Clone)]
pub struct LogStore {
    engine: Arc<dyn KvEngine>,
    metrics: Metrics,
    /// Callbacks of appends written but not yet synced, for the flusher thread (bounded: a
    /// full queue holds the next append back).
    flushes: tokio::sync::mpsc::Sender<LogFlushed<TypeConfig>>,
    /// The log's latest entries, shared by every clone (`log_cache`).
    cache: Arc<Mutex<LogCache>>,
}

impl LogStore {
    pub fn new(engine: Arc<dyn KvEngine>, metrics: Metrics) -> LogStore {
        let (flushes, waiting) = tokio::sync::mpsc::channel(limits::LOG_FLUSHES_QUEUED_MAX);
        let (flusher_engine, flusher_metrics) = (engine.clone(), metrics.clone());
        std::thread::Builder::new()
            .name("raft-log-flush".into())
            .spawn(move || run_flusher(&*flusher_engine, &flusher_metrics, waiting))
            .expect("spawn the Raft log flusher");
        let cache = LogCache::new(limits::LOG_CACHE_ENTRIES_MAX, limits::LOG_CACHE_BYTES_MAX);
        LogStore { engine, metrics, flushes, cache: Arc::new(Mutex::new(cache)) }
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StorageError> {
        let bytes = self.engine.get(Keyspace::RaftState, key).map_err(|e| read_error(&e))?;
        Ok(bytes.map(|b| decode(&b, "raft metadata")))
    }

    async fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), StorageError> {
        let engine = self.engine.clone();
        let fsync_seconds = self.metrics.wal_fsync_duration_seconds.clone();
        tokio::task::spawn_blocking(move || {
            let _timer = (durability == Durability::Sync).then(|| fsync_seconds.start_timer());
            engine.write(batch, durability)
        })
        .await
        .expect("engine write task panicked")
        .map_err(|e| write_error(&e))
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId>, StorageError> {
        let mut last = None;
        self.engine
            .scan_reverse(Keyspace::RaftLog, &[], None, &mut |_, value| {
                let entry: Entry = decode(value, "raft log entry");
                last = Some(*entry.get_log_id());
                false
            })
            .map_err(|e| read_error(&e))?;
        Ok(last)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => *i + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Some(*i + 1),
            Bound::Excluded(i) => Some(*i),
            Bound::Unbounded => None,
        };
        if let Some(cached) = self.cache.lock().expect("log cache lock").read(start, end) {
            return Ok(cached);
        }
        let end_key = end.map(index_key);
        let mut entries: Vec<Entry> = Vec::new();
        let end_key = end_key.as_ref().map(|k| &k[..]);
        self.engine
            .scan(Keyspace::RaftLog, &index_key(start), end_key, &mut |k, v| {
                let entry: Entry = decode(v, "raft log entry");
                let index = entry.get_log_id().index;
                assert_eq!(key_index(k), index, "log key and entry disagree");
                if let Some(previous) = entries.last() {
                    assert_eq!(previous.get_log_id().index + 1, index, "hole in the raft log");
                }
                entries.push(entry);
                true
            })
            .map_err(|e| read_error(&e))?;
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.read_meta(KEY_LAST_PURGED)?;
        let last_log_id = self.last_entry_log_id()?.or(last_purged_log_id);
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        batch.put(Keyspace::RaftState, KEY_VOTE.to_vec(), encode(vote));
        self.write(batch, Durability::Sync).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.read_meta(KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not synced: after a crash a smaller committed index only means re-applying less at
        // start-up; the leader's next heartbeat brings the rest.
        // Inline: openraft awaits this on its core task, and a buffered write of one small
        // key takes microseconds, less than a hop to a blocking thread and back.
        let mut batch = WriteBatch::default();
        batch.put(Keyspace::RaftState, KEY_COMMITTED.to_vec(), encode(&committed));
        self.engine.write(batch, Durability::Buffered).map_err(|e| write_error(&e))?;
        let index = committed.map_or(0, |c| c.index);
        Metrics::advance_to(&self.metrics.proposals_committed_total, index);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let committed = self.read_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten();
        let index = committed.map_or(0, |c| c.index);
        Metrics::advance_to(&self.metrics.proposals_committed_total, index);
        Ok(committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut batch = WriteBatch::default();
        let mut appended = Vec::new();
        for entry in entries {
            let encoded = encode(&entry);
            let size = encoded.len();
            batch.put(Keyspace::RaftLog, index_key(entry.get_log_id().index).to_vec(), encoded);
            appended.push((entry, size));
        }
        // Unsynced, inline: a buffered engine write takes microseconds and keeps appends in
        // order with truncations and purges, which openraft issues on this same task.
        if let Err(error) = self.engine.write(batch, Durability::Buffered) {
            callback.log_io_completed(Err(std::io::Error::other(error.to_string())));
            return Err(write_error(&error));
        }
        self.cache.lock().expect("log cache lock").append(appended);
        self.flushes.send(callback).await.map_err(|_| {
            write_error(&EngineError::Backend("the Raft log flusher stopped".into()))
        })?;
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.cache.lock().expect("log cache lock").truncate(log_id.index);
        let mut batch = WriteBatch::default();
        batch.delete_range(
            Keyspace::RaftLog,
            index_key(log_id.index).to_vec(),
            index_key(u64::MAX).to_vec(),
        );
        batch.delete(Keyspace::RaftLog, index_key(u64::MAX).to_vec());
        self.write(batch, Durability::Sync).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.cache.lock().expect("log cache lock").purge(log_id.index);
        let mut batch = WriteBatch::default();
        batch.put(Keyspace::RaftState, KEY_LAST_PURGED.to_vec(), encode(&log_id));
        batch.delete_range(
            Keyspace::RaftLog,
            index_key(0).to_vec(),
            index_key(log_id.index + 1).to_vec(),
        );
        self.write(batch, Durability::Sync).await
    }
}

/// The flusher thread: one WAL sync for every append waiting, then their acknowledgements.
/// Ends when every `LogStore` clone is gone.
fn run_flusher(
    engine: &dyn KvEngine,
    metrics: &Metrics,
    mut waiting: tokio::sync::mpsc::Receiver<LogFlushed<TypeConfig>>,
) {
    while let Some(first) = waiting.blocking_recv() {
        let mut callbacks = vec![first];
        while let Ok(next) = waiting.try_recv() {
            callbacks.push(next);
        }
        let timer = metrics.wal_fsync_duration_seconds.start_timer();
        let synced = engine.sync_wal();
        timer.observe_duration();
        metrics.wal_fsync_batch_appends.observe(callbacks.len() as f64);
        for callback in callbacks {
            let result = synced.as_ref().map_err(|e| std::io::Error::other(e.to_string()));
            callback.log_io_completed(result.map(|_| ()));
        }
    }
}
