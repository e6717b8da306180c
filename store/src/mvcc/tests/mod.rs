//! Unit tests of the MVCC core, mostly over [`MemoryEngine`], some over RocksDB.
//!
//! [`TestStore`] applies one request per batch, as the state machine would, and checks on
//! every write that a failed apply left nothing in the overlay.

mod compaction;
mod history;
mod model;
mod range;
mod rocks;
mod txn;
mod validate;
mod writes;

use super::*;
use crate::engine::{Durability, Keyspace, KvEngine, KvRead, MemoryEngine};

pub(super) struct TestStore<E: KvEngine = MemoryEngine> {
    pub engine: E,
}

impl TestStore<MemoryEngine> {
    pub fn new() -> TestStore<MemoryEngine> {
        TestStore { engine: MemoryEngine::new() }
    }
}

impl<E: KvEngine> TestStore<E> {
    pub fn write(&self, req: WriteRequest) -> Result<(WriteResponse, Vec<Event>), MvccError> {
        let mut overlay = Overlay::new(&self.engine);
        let result = apply(&mut overlay, &req);
        assert!(result.is_ok() || overlay.is_empty(), "failed apply left writes: {req:?}");
        self.engine.write(overlay.into_batch(), Durability::Sync).unwrap();
        result
    }

    /// Puts `key = value`; returns the new revision.
    pub fn put(&self, key: &str, value: &str) -> i64 {
        match self.write(WriteRequest::Put(put(key, value))).unwrap().0 {
            WriteResponse::Put(response) => response.header_revision,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Deletes `[key, end)`; returns how many keys went.
    pub fn delete(&self, key: &str, end: &str) -> i64 {
        let req = DeleteRangeRequest { key: b(key), range_end: b(end), prev_kv: false };
        match self.write(WriteRequest::DeleteRange(req)).unwrap().0 {
            WriteResponse::DeleteRange(response) => response.deleted,
            other => panic!("unexpected {other:?}"),
        }
    }

    pub fn txn(&self, txn: TxnRequest) -> Result<TxnResponse, MvccError> {
        match self.write(WriteRequest::Txn(txn))?.0 {
            WriteResponse::Txn(response) => Ok(response),
            other => panic!("unexpected {other:?}"),
        }
    }

    pub fn compact(&self, revision: i64) -> Result<i64, MvccError> {
        match self.write(WriteRequest::Compaction(CompactionRequest { revision }))?.0 {
            WriteResponse::Compaction(response) => Ok(response.header_revision),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Ranges through a snapshot, as the server does.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        range(self.engine.snapshot().as_ref(), req)
    }

    pub fn get(&self, key: &str) -> Option<KeyValue> {
        let mut response = self.range(&range_req(key, "")).unwrap();
        assert!(response.kvs.len() <= 1);
        response.kvs.pop()
    }

    pub fn get_at(&self, key: &str, revision: i64) -> Result<Option<KeyValue>, MvccError> {
        let response = self.range(&RangeRequest { revision, ..range_req(key, "") })?;
        Ok(response.kvs.into_iter().next())
    }

    pub fn current(&self) -> i64 {
        current_revision(&self.engine).unwrap()
    }

    /// How many raw entries a keyspace holds (history included).
    pub fn entries(&self, keyspace: Keyspace) -> usize {
        let mut count = 0;
        self.engine
            .scan(keyspace, b"", None, &mut |_, _| {
                count += 1;
                true
            })
            .unwrap();
        count
    }
}

pub(super) fn b(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

pub(super) fn put(key: &str, value: &str) -> PutRequest {
    PutRequest { key: b(key), value: b(value), ..PutRequest::default() }
}

pub(super) fn range_req(key: &str, end: &str) -> RangeRequest {
    RangeRequest { key: b(key), range_end: b(end), ..RangeRequest::default() }
}

pub(super) fn kv(key: &str, value: &str, create: i64, modified: i64, version: i64) -> KeyValue {
    KeyValue {
        key: b(key),
        create_revision: create,
        mod_revision: modified,
        version,
        value: b(value),
        lease: 0,
    }
}

/// "key=value ..." then "count=N", then " more" if set; or "error: message".
pub(super) fn render(result: Result<RangeResponse, MvccError>) -> String {
    match result {
        Ok(response) => {
            let mut parts: Vec<String> = response
                .kvs
                .iter()
                .map(|kv| format!("{}={}", show(&kv.key), show(&kv.value)))
                .collect();
            parts.push(format!("count={}", response.count));
            if response.more {
                parts.push("more".to_string());
            }
            parts.join(" ")
        }
        Err(error) => format!("error: {error}"),
    }
}

/// Printable bytes as text, others as `\xNN`.
pub(super) fn show(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&byte| match byte {
            b'!'..=b'~' => (byte as char).to_string(),
            _ => format!("\\x{byte:02x}"),
        })
        .collect()
}
