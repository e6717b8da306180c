//! The RocksDB [`KvEngine`]: one database, one column family per [`Keyspace`].
//!
//! Every write goes through the write-ahead log. `Durability::Sync` fdatasyncs it before
//! returning; `Durability::Buffered` does not, but because all column families share the one
//! WAL, the next synced write makes every earlier buffered write durable too. The Raft log and
//! the state machine rely on exactly that: they share one synced WAL instead of paying for
//! durability twice.

use std::path::{Path, PathBuf};

use rocksdb::{
    properties, AsColumnFamilyRef, DBRawIteratorWithThreadMode, Options, ReadOptions,
    SnapshotWithThreadMode, WriteOptions, DB,
};

use super::{BatchOp, Durability, EngineError, Keyspace, KvEngine, KvRead, Visit, WriteBatch};

/// Info log files RocksDB keeps in the data directory; the default (1000) only wastes space.
const INFO_LOG_FILES_KEPT_MAX: usize = 4;
/// One block cache shared by every column family (RocksDB's default is 8 MiB per table
/// factory); index and filter blocks live in it too, so it bounds their memory.
pub const BLOCK_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// Bloom filter bits per key: about 1 % false positives. Every put looks its key up first
/// (a new key is absent, and the filter answers that without reading a data block).
const BLOOM_BITS_PER_KEY: f64 = 10.0;
/// SST writes are synced every this many bytes, spreading a flush's or compaction's I/O
/// instead of one large writeback that stalls the WAL syncs behind it.
const SST_BYTES_PER_SYNC: u64 = 1024 * 1024;

/// A RocksDB database holding every keyspace as a column family.
pub struct RocksEngine {
    db: DB,
    path: PathBuf,
}

impl RocksEngine {
    /// Opens (creating if missing) the database in directory `path`.
    pub fn open(path: &Path) -> Result<RocksEngine, EngineError> {
        let open_error =
            |reason: String| EngineError::Open { path: path.display().to_string(), reason };
        std::fs::create_dir_all(path).map_err(|e| open_error(e.to_string()))?;
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_keep_log_file_num(INFO_LOG_FILES_KEPT_MAX);
        options.set_bytes_per_sync(SST_BYTES_PER_SYNC);
        // RocksDB's default is Snappy, which this build does not link (it would silently store
        // SST files uncompressed); LZ4 is as cheap and is linked.
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        // Levels sized from the last one up: less space amplification when data shrinks
        // after compaction of MVCC history (RocksDB's recommended setting).
        options.set_level_compaction_dynamic_level_bytes(true);
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_block_cache(&rocksdb::Cache::new_lru_cache(BLOCK_CACHE_BYTES));
        table.set_bloom_filter(BLOOM_BITS_PER_KEY, false);
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        options.set_block_based_table_factory(&table);
        let names = Keyspace::ALL.map(Keyspace::name);
        let db = DB::open_cf(&options, path, names).map_err(|e| open_error(e.into_string()))?;
        Ok(RocksEngine { db, path: path.to_path_buf() })
    }

    /// The data directory the database lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn reader(&self) -> Reader<'_> {
        Reader { db: &self.db, snapshot: None }
    }
}

fn backend(error: rocksdb::Error) -> EngineError {
    EngineError::Backend(error.into_string())
}

fn column_family<'d>(db: &'d DB, keyspace: Keyspace) -> impl AsColumnFamilyRef + 'd {
    // Every keyspace's column family is created by `open`; a missing one is a programming error.
    db.cf_handle(keyspace.name())
        .unwrap_or_else(|| panic!("column family {} not opened", keyspace.name()))
}

/// Reads through the live database or through one snapshot of it.
struct Reader<'d> {
    db: &'d DB,
    snapshot: Option<SnapshotWithThreadMode<'d, DB>>,
}

impl<'d> Reader<'d> {
    fn read_options(&self) -> ReadOptions {
        let mut options = ReadOptions::default();
        if let Some(snapshot) = &self.snapshot {
            options.set_snapshot(snapshot);
        }
        options
    }

    /// An iterator confined to `[start, end)` by RocksDB's own bounds, so it never reads (or
    /// skips tombstones) outside the range.
    fn iterator(
        &self,
        keyspace: Keyspace,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> DBRawIteratorWithThreadMode<'d, DB> {
        let mut options = self.read_options();
        options.set_iterate_lower_bound(start.to_vec());
        if let Some(end) = end {
            options.set_iterate_upper_bound(end.to_vec());
        }
        let cf = column_family(self.db, keyspace);
        self.db.raw_iterator_cf_opt(&cf, options)
    }
}

fn is_empty_range(start: &[u8], end: Option<&[u8]>) -> bool {
    end.is_some_and(|end| start >= end)
}

impl KvRead for Reader<'_> {
    fn get(&self, keyspace: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        let cf = column_family(self.db, keyspace);
        self.db.get_cf_opt(&cf, key, &self.read_options()).map_err(backend)
    }

    fn scan(
        &self,
        keyspace: Keyspace,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut Visit<'_>,
    ) -> Result<(), EngineError> {
        if is_empty_range(start, end) {
            return Ok(());
        }
        let mut iterator = self.iterator(keyspace, start, end);
        iterator.seek_to_first();
        while let Some((key, value)) = iterator.item() {
            if !visit(key, value) {
                return Ok(());
            }
            iterator.next();
        }
        iterator.status().map_err(backend)
    }

    fn scan_reverse(
        &self,
        keyspace: Keyspace,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut Visit<'_>,
    ) -> Result<(), EngineError> {
        if is_empty_range(start, end) {
            return Ok(());
        }
        let mut iterator = self.iterator(keyspace, start, end);
        // With iterate_upper_bound set, SeekToLast lands on the last key below the bound.
        iterator.seek_to_last();
        while let Some((key, value)) = iterator.item() {
            if !visit(key, value) {
                return Ok(());
            }
            iterator.prev();
        }
        iterator.status().map_err(backend)
    }
}

impl KvRead for RocksEngine {
    fn get(&self, keyspace: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        self.reader().get(keyspace, key)
    }

    fn scan(
        &self,
        keyspace: Keyspace,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut Visit<'_>,
    ) -> Result<(), EngineError> {
        self.reader().scan(keyspace, start, end, visit)
    }

    fn scan_reverse(
        &self,
        keyspace: Keyspace,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut Visit<'_>,
    ) -> Result<(), EngineError> {
        self.reader().scan_reverse(keyspace, start, end, visit)
    }
}

impl KvEngine for RocksEngine {
    fn snapshot(&self) -> Box<dyn KvRead + '_> {
        Box::new(Reader { db: &self.db, snapshot: Some(self.db.snapshot()) })
    }

    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), EngineError> {
        let mut rocks_batch = rocksdb::WriteBatch::default();
        for op in &batch.ops {
            match op {
                BatchOp::Put { keyspace, key, value } => {
                    rocks_batch.put_cf(&column_family(&self.db, *keyspace), key, value);
                }
                BatchOp::Delete { keyspace, key } => {
                    rocks_batch.delete_cf(&column_family(&self.db, *keyspace), key);
                }
                // RocksDB rejects an inverted range; the trait defines it as deleting nothing.
                BatchOp::DeleteRange { start, end, .. } if start >= end => {}
                BatchOp::DeleteRange { keyspace, start, end } => {
                    rocks_batch.delete_range_cf(&column_family(&self.db, *keyspace), start, end);
                }
            }
        }
        let mut options = WriteOptions::default();
        options.set_sync(durability == Durability::Sync);
        self.db.write_opt(rocks_batch, &options).map_err(backend)
    }

    fn size_bytes(&self, keyspaces: &[Keyspace]) -> u64 {
        let mut bytes = 0;
        for &keyspace in keyspaces {
            let cf = column_family(&self.db, keyspace);
            for property in [properties::TOTAL_SST_FILES_SIZE, properties::CUR_SIZE_ALL_MEM_TABLES]
            {
                // A property RocksDB cannot report counts as zero: the size is an estimate that
                // feeds the quota alarm, not something worth failing a caller over.
                bytes += self.db.property_int_value_cf(&cf, property).ok().flatten().unwrap_or(0);
            }
        }
        bytes
    }

    fn sync_wal(&self) -> Result<(), EngineError> {
        self.db.flush_wal(true).map_err(|e| EngineError::Backend(e.to_string()))
    }

    /// RocksDB's estimate of live SST data plus the memtables.
    fn live_size_bytes(&self, keyspaces: &[Keyspace]) -> u64 {
        let mut bytes = 0;
        for &keyspace in keyspaces {
            let cf = column_family(&self.db, keyspace);
            for property in
                [properties::ESTIMATE_LIVE_DATA_SIZE, properties::CUR_SIZE_ALL_MEM_TABLES]
            {
                bytes += self.db.property_int_value_cf(&cf, property).ok().flatten().unwrap_or(0);
            }
        }
        bytes
    }

    /// A full manual compaction of every column family: rewrites the SST files without
    /// deleted and overwritten entries (tombstones of compacted MVCC history included).
    fn defragment(&self) -> Result<(), EngineError> {
        let mut options = rocksdb::CompactOptions::default();
        options.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        for keyspace in Keyspace::ALL {
            let cf = column_family(&self.db, keyspace);
            self.db.flush_cf(&cf).map_err(backend)?;
            self.db.compact_range_cf_opt(&cf, None::<&[u8]>, None::<&[u8]>, &options);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::RocksEngine;
    use crate::engine::{Durability, EngineError, Keyspace, KvEngine, KvRead, WriteBatch};

    fn open_temporary() -> (tempfile::TempDir, RocksEngine) {
        let dir = tempfile::TempDir::new().expect("create temporary directory");
        let engine = RocksEngine::open(dir.path()).expect("open rocksdb");
        (dir, engine)
    }

    crate::engine::conformance::conformance_tests!(open_temporary);

    #[test]
    fn reopen_keeps_synced_and_buffered_writes() {
        let dir = tempfile::TempDir::new().unwrap();
        {
            let engine = RocksEngine::open(dir.path()).unwrap();
            assert_eq!(engine.path(), dir.path());
            let mut batch = WriteBatch::default();
            batch.put(Keyspace::KvIndex, b"a".to_vec(), b"1".to_vec());
            batch.put(Keyspace::RaftLog, b"b".to_vec(), b"2".to_vec());
            engine.write(batch, Durability::Buffered).unwrap();
            let mut batch = WriteBatch::default();
            batch.put(Keyspace::KvMeta, b"c".to_vec(), b"3".to_vec());
            engine.write(batch, Durability::Sync).unwrap();
        }
        let engine = RocksEngine::open(dir.path()).unwrap();
        assert_eq!(engine.get(Keyspace::KvIndex, b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(engine.get(Keyspace::RaftLog, b"b").unwrap(), Some(b"2".to_vec()));
        assert_eq!(engine.get(Keyspace::KvMeta, b"c").unwrap(), Some(b"3".to_vec()));
        assert_eq!(engine.get(Keyspace::KvMeta, b"a").unwrap(), None);
    }

    #[test]
    fn open_reports_an_unusable_directory() {
        let dir = tempfile::TempDir::new().unwrap();
        let file = dir.path().join("not-a-directory");
        std::fs::write(&file, b"x").unwrap();
        match RocksEngine::open(&file.join("data")) {
            Err(EngineError::Open { path, reason }) => {
                assert!(path.ends_with("not-a-directory/data"), "{path}");
                assert!(!reason.is_empty());
            }
            other => panic!("expected EngineError::Open, got {:?}", other.err()),
        }
    }

    #[test]
    fn size_counts_memtables() {
        let (_dir, engine) = open_temporary();
        let before = engine.size_bytes(&Keyspace::ALL);
        let mut batch = WriteBatch::default();
        for i in 0..1000u32 {
            batch.put(Keyspace::KvIndex, i.to_be_bytes().to_vec(), vec![7; 100]);
        }
        engine.write(batch, Durability::Buffered).unwrap();
        assert!(
            engine.size_bytes(&Keyspace::ALL) > before,
            "{} <= {before}",
            engine.size_bytes(&Keyspace::ALL)
        );
    }
}
