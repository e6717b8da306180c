//! Maintenance operations on the [`Store`] handle: HashKV and Hash (consistency checks),
//! defragmentation, backups, and leadership transfer.
//!
//! Each is served from this member's own state, as etcd serves them; long work (hashing,
//! compaction of the files, building a backup) runs off the async runtime.

use std::time::Duration;

use crate::backup;
use crate::error::StoreError;
use crate::mvcc::{self, KvHash};
use crate::node::{Forwarded, Store};
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
    /// The target did not become leader in time (etcd's `ErrTimeoutLeaderTransfer`).
    #[error("request timed out, leader transfer took too long")]
    Timeout,
    #[error("server stopped")]
    Stopped,
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

    /// etcd's MoveLeader, checked as etcd checks it (only the leader may transfer; the
    /// target must be a voter; a transfer to the current leader is done at once).
    ///
    /// openraft 0.9 has no leadership transfer, so it is built from what it has: the leader
    /// stops appending (new proposals wait) and sending heartbeats, waits until the target
    /// holds its whole log, then until the followers' leader lease (an election timeout) has
    /// run out, and tells the target to campaign (Raft's TimeoutNow). Followers time out a
    /// whole election timeout later than their lease, so the target campaigns first, and its
    /// log is at least as long as anyone's, so it wins unless a member is unreachable.
    pub async fn move_leader(&self, target: NodeId) -> Result<(), MoveLeaderError> {
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
        // In its own task: a caller that gives up (a client deadline) must not leave the
        // gate closed or heartbeats off.
        let store = self.clone();
        let transfer = tokio::spawn(async move {
            let _closed = store.proposal_gate().write().await;
            store.raft().runtime_config().heartbeat(false);
            let transferred = store.hand_over(target).await;
            store.raft().runtime_config().heartbeat(true);
            transferred
        });
        transfer.await.unwrap_or(Err(MoveLeaderError::Stopped))
    }

    async fn hand_over(&self, target: NodeId) -> Result<(), MoveLeaderError> {
        let lease = Duration::from_millis(self.raft().config().election_timeout_max);
        let heartbeat = Duration::from_millis(self.raft().config().heartbeat_interval);
        let me = self.member_id();
        let mut metrics = self.raft().metrics();
        // Nothing new is appended now; wait for the target to hold everything there is.
        let caught_up = metrics.wait_for(|m| {
            let matched = m.replication.as_ref().and_then(|r| r.get(&target).copied()).flatten();
            m.current_leader != Some(me) || matched.map(|l| l.index) == m.last_log_index
        });
        match tokio::time::timeout(lease, caught_up).await {
            Ok(Ok(m)) if m.current_leader == Some(me) => {}
            Ok(Ok(_)) => return Err(MoveLeaderError::NotLeader),
            Ok(Err(_)) => return Err(MoveLeaderError::Stopped),
            Err(_) => return Err(MoveLeaderError::Timeout),
        }
        // The followers' lease was last renewed at most now; a heartbeat's worth of slack.
        tokio::time::sleep(lease + heartbeat).await;
        let told: Result<(), StoreError> = self.forward(target, &Forwarded::TimeoutNow).await;
        if let Err(error) = told {
            tracing::warn!(%error, target = %format!("{target:x}"), "leader transfer: not sent");
            return Err(MoveLeaderError::Timeout);
        }
        let moved = metrics.wait_for(|m| m.current_leader.is_some_and(|l| l != me));
        let outcome = match tokio::time::timeout(2 * lease, moved).await {
            Ok(Ok(m)) if m.current_leader == Some(target) => Ok(()),
            Ok(Ok(_)) | Err(_) => Err(MoveLeaderError::Timeout),
            Ok(Err(_)) => Err(MoveLeaderError::Stopped),
        };
        outcome
    }

    /// Campaigns at once, at a leader's request (see `move_leader`).
    pub(crate) async fn campaign_now(&self) -> Result<(), StoreError> {
        self.raft().trigger().elect().await.map_err(|e| StoreError::Internal(e.to_string()))
    }
}
