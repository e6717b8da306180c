//! openraft's own storage test suite against our log store and state machine, over both
//! engines.

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};

use super::{LogStore, StateMachine, StorageError, TypeConfig};
use crate::engine::{KvEngine, MemoryEngine, RocksEngine};
use crate::metrics::Metrics;

struct MemoryBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, ()> for MemoryBuilder {
    async fn build(&self) -> Result<((), LogStore, StateMachine), StorageError> {
        let engine: Arc<dyn KvEngine> = Arc::new(MemoryEngine::new());
        let metrics = Metrics::new();
        let state_machine = StateMachine::new(engine.clone(), metrics.clone(), None)?;
        Ok(((), LogStore::new(engine, metrics), state_machine))
    }
}

struct RocksBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for RocksBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine: Arc<dyn KvEngine> =
            Arc::new(RocksEngine::open(&dir.path().join("db")).expect("open rocksdb"));
        let metrics = Metrics::new();
        let snapshots = Some(dir.path().join("snapshots"));
        let state_machine = StateMachine::new(engine.clone(), metrics.clone(), snapshots)?;
        Ok((dir, LogStore::new(engine, metrics), state_machine))
    }
}

#[test]
fn openraft_suite_memory_engine() -> Result<(), StorageError> {
    Suite::test_all(MemoryBuilder)
}

#[test]
fn openraft_suite_rocksdb_engine() -> Result<(), StorageError> {
    Suite::test_all(RocksBuilder)
}
