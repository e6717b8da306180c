//! The MVCC engine: etcd's data model (revisions, versions, tombstones, history, compaction)
//! over the [`crate::engine`] trait.
//!
//! **Architecture invariant:** `store::mvcc` knows nothing about Raft or gRPC. It reads through
//! [`KvRead`] and writes only into an [`Overlay`]; the caller decides when and how the overlay's
//! batch reaches storage.
//!
//! Layout: `keys` (byte formats of the three MVCC keyspaces), `overlay` (read-your-writes
//! buffer), `read` (revisions, live keys at a revision, Range), `compare` (txn compares),
//! `apply` (put, delete, txn), `compaction`, `validate` (pre-proposal checks), `history`
//! (the write log as events, for watches), `hash` (HashKV, the consistency check).
//!
//! [`KvRead`]: crate::engine::KvRead

mod apply;
mod compaction;
mod compare;
mod error;
pub(crate) mod hash;
mod history;
mod keys;
mod overlay;
mod read;
mod types;
mod validate;

#[cfg(test)]
mod tests;

pub use apply::apply;
pub use error::MvccError;
pub use hash::{hash_kv, KvHash};
pub use history::events;
pub(crate) use keys::META_CURRENT_REVISION;
pub use overlay::Overlay;
pub use read::{compacted_revision, current_revision, live_key_count, live_key_delta, range};
pub use types::*;
pub use validate::validate;
