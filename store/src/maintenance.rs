//! Maintenance operations on the [`Store`] handle: HashKV and Hash (consistency checks),
//! defragmentation, backups, and leadership transfer (which openraft 0.9 cannot do).
//!
//! Each is served from this member's own state, as etcd serves them; long work (hashing,
//! compaction of the files, building a backup) runs off the async runtime.

use crate::backup;
use crate::error::StoreError;
use crate::mvcc::{self, KvHash};
use crate::node::Store;
use crate::raft::NodeId;

/// Why a leadership transfer was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MoveLeaderError {
    /// Only the leader can hand leadership over (etcd's `ErrNotLeader`).
    #[error("not leader")]
    NotLeader,
    /// The target is not a voting member (etcd's `ErrBadLeaderTransferee`).
    #[error("bad leader transferee")]
    BadTransferee,
    /// openraft 0.9.25 has no leadership transfer; see docs/compatibility.md.
    #[error("leadership transfer is not supported (openraft 0.9 has no transfer_leader)")]
    NotSupported,
}

impl Store {
    /// HashKV: the hash of the key-value history up to `revision` (0: the current revision),
    /// from one consistent view of this member's applied state.
    pub async fn hash_kv(&self, revision: i64) -> Result<KvHash, StoreError> {
        let engine = self.state().engine.clone();
        let hashed =
            tokio::task::spawn_blocking(move || mvcc::hash_kv(&*engine.snapshot(), revision));
        Ok(hashed.await.map_err(|e| StoreError::Internal(format!("hash task failed: {e}")))??)
    }

    /// Hash: the hash of every state-machine keyspace, with the revision of the view hashed.
    pub async fn hash(&self) -> Result<(u32, i64), StoreError> {
        let engine = self.state().engine.clone();
        let hashed = tokio::task::spawn_blocking(move || {
            let view = engine.snapshot();
            let revision = mvcc::current_revision(&*view)?;
            let hash = backup::hash_state_machine(&*view).map_err(mvcc::MvccError::from)?;
            Ok::<_, StoreError>((hash, revision))
        });
        hashed.await.map_err(|e| StoreError::Internal(format!("hash task failed: {e}")))?
    }

    /// Compacts this member's storage files (etcd's defragment); the data is unchanged.
    pub async fn defragment(&self) -> Result<(), StoreError> {
        let engine = self.state().engine.clone();
        let done = tokio::task::spawn_blocking(move || engine.defragment());
        done.await
            .map_err(|e| StoreError::Internal(format!("defragment task failed: {e}")))?
            .map_err(|e| StoreError::Internal(e.to_string()))
    }

    /// A backup of this member's applied state (see [`crate::backup`] for the format), taken
    /// from one engine snapshot; returns it with the revision it holds.
    pub async fn backup(&self) -> Result<(Vec<u8>, i64), StoreError> {
        let engine = self.state().engine.clone();
        let built = tokio::task::spawn_blocking(move || {
            let view = engine.snapshot();
            let revision = mvcc::current_revision(&*view)?;
            let bytes = backup::build_backup(&*view).map_err(mvcc::MvccError::from)?;
            Ok::<_, StoreError>((bytes, revision))
        });
        built.await.map_err(|e| StoreError::Internal(format!("backup task failed: {e}")))?
    }

    /// etcd's MoveLeader. Checked as etcd checks it (only the leader may transfer; the target
    /// must be a voter; a transfer to the current leader is done), then refused: openraft
    /// 0.9.25 has no way to hand leadership over without an election that any member may win.
    pub fn move_leader(&self, target: NodeId) -> Result<(), MoveLeaderError> {
        let metrics = self.raft().metrics().borrow().clone();
        if metrics.current_leader != Some(self.member_id()) {
            return Err(MoveLeaderError::NotLeader);
        }
        if !metrics.membership_config.membership().voter_ids().any(|voter| voter == target) {
            return Err(MoveLeaderError::BadTransferee);
        }
        if target == self.member_id() {
            return Ok(());
        }
        Err(MoveLeaderError::NotSupported)
    }
}
