//! The in-memory [`KvEngine`]: one ordered map per keyspace, for tests and the pure cores.
//!
//! Each keyspace is an `Arc<BTreeMap>` behind one `RwLock`. Readers clone the `Arc` and release
//! the lock before visiting, so a visitor may call back into the engine without deadlocking,
//! and a snapshot is just a set of `Arc` clones. A write after a snapshot copies the touched
//! keyspace once (copy-on-write through `Arc::make_mut`).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, RwLock};

use super::{BatchOp, Durability, EngineError, Keyspace, KvEngine, KvRead, Visit, WriteBatch};

type Table = BTreeMap<Vec<u8>, Vec<u8>>;

/// One immutable view of every keyspace.
#[derive(Clone, Default)]
struct Tables {
    by_keyspace: BTreeMap<Keyspace, Arc<Table>>,
}

impl Tables {
    fn table(&self, keyspace: Keyspace) -> Arc<Table> {
        self.by_keyspace.get(&keyspace).cloned().unwrap_or_default()
    }

    fn table_mut(&mut self, keyspace: Keyspace) -> &mut Table {
        Arc::make_mut(self.by_keyspace.entry(keyspace).or_default())
    }
}

/// An engine that keeps everything in memory; `Durability` is ignored.
#[derive(Default)]
pub struct MemoryEngine {
    tables: RwLock<Tables>,
}

impl MemoryEngine {
    pub fn new() -> MemoryEngine {
        MemoryEngine::default()
    }

    fn current(&self) -> Tables {
        // A panic while holding the write lock may have left a batch half applied: that state is
        // corrupt, so poisoning is fatal rather than ignored.
        self.tables.read().expect("memory engine lock poisoned").clone()
    }
}

impl KvRead for MemoryEngine {
    fn get(&self, keyspace: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        self.current().get(keyspace, key)
    }

    fn scan(
        &self,
        keyspace: Keyspace,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut Visit<'_>,
    ) -> Result<(), EngineError> {
        self.current().scan(keyspace, start, end, visit)
    }

    fn scan_reverse(
        &self,
        keyspace: Keyspace,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut Visit<'_>,
    ) -> Result<(), EngineError> {
        self.current().scan_reverse(keyspace, start, end, visit)
    }
}

impl KvEngine for MemoryEngine {
    fn snapshot(&self) -> Box<dyn KvRead + '_> {
        Box::new(self.current())
    }

    fn write(&self, batch: WriteBatch, _durability: Durability) -> Result<(), EngineError> {
        let mut tables = self.tables.write().expect("memory engine lock poisoned");
        for op in batch.ops {
            match op {
                BatchOp::Put { keyspace, key, value } => {
                    tables.table_mut(keyspace).insert(key, value);
                }
                BatchOp::Delete { keyspace, key } => {
                    tables.table_mut(keyspace).remove(&key);
                }
                BatchOp::DeleteRange { keyspace, start, end } => {
                    delete_range(tables.table_mut(keyspace), &start, &end);
                }
            }
        }
        Ok(())
    }

    fn size_bytes(&self, keyspaces: &[Keyspace]) -> u64 {
        let tables = self.current();
        let bytes: usize = tables
            .by_keyspace
            .iter()
            .filter(|(keyspace, _)| keyspaces.contains(keyspace))
            .flat_map(|(_, table)| table.iter())
            .map(|(key, value)| key.len() + value.len())
            .sum();
        bytes as u64
    }

    /// Maps hold no deleted data: nothing to reclaim.
    fn defragment(&self) -> Result<(), EngineError> {
        Ok(())
    }
}

fn delete_range(table: &mut Table, start: &[u8], end: &[u8]) {
    if start >= end {
        return;
    }
    let doomed: Vec<Vec<u8>> =
        table.range::<[u8], _>(bounds(start, Some(end))).map(|(k, _)| k.clone()).collect();
    for key in doomed {
        table.remove(&key);
    }
}

/// `[start, end)` as map bounds. Callers check `start < end` first: `BTreeMap::range` panics on
/// an inverted range, while the trait defines it as empty.
fn bounds<'k>(start: &'k [u8], end: Option<&'k [u8]>) -> (Bound<&'k [u8]>, Bound<&'k [u8]>) {
    let upper = match end {
        Some(end) => Bound::Excluded(end),
        None => Bound::Unbounded,
    };
    (Bound::Included(start), upper)
}

fn is_empty_range(start: &[u8], end: Option<&[u8]>) -> bool {
    end.is_some_and(|end| start >= end)
}

impl KvRead for Tables {
    fn get(&self, keyspace: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self.by_keyspace.get(&keyspace).and_then(|table| table.get(key).cloned()))
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
        let table = self.table(keyspace);
        for (key, value) in table.range::<[u8], _>(bounds(start, end)) {
            if !visit(key, value) {
                break;
            }
        }
        Ok(())
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
        let table = self.table(keyspace);
        for (key, value) in table.range::<[u8], _>(bounds(start, end)).rev() {
            if !visit(key, value) {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::MemoryEngine;

    crate::engine::conformance::conformance_tests!(|| ((), MemoryEngine::new()));
}
