//! Leases (etcd's lessor): keys attached to a lease are deleted, in one revision, when the
//! lease is revoked or expires.
//!
//! Layout: `table` (the pure in-memory table of leases and their expiries, with injected
//! time), `apply` (the replicated half: lease records and key attachments in the state
//! machine's `KvMeta` keyspace, applied from Raft entries), `handle` (the [`crate::Store`]
//! methods: grant, revoke, keep-alive, time-to-live, list, routed to the leader) and `driver`
//! (the leader's loop that promotes the table and proposes revokes of expired leases).
//!
//! Who decides what: grant and revoke go through Raft and are applied on every member. Expiry
//! is decided by the leader alone: its table is *primary* and holds a deadline per lease;
//! keep-alives, which only move deadlines, are served by the leader without touching Raft.
//! A member that becomes leader first extends every lease by its full TTL plus an election
//! timeout (etcd's `Promote`), so a keep-alive the old leader accepted is never lost.
//!
//! **Architecture invariant:** the table never decides membership of the lease set: it mirrors
//! what the state machine applied, plus deadlines that only the primary keeps.

mod apply;
mod driver;
mod handle;
mod table;

use serde::{Deserialize, Serialize};

pub(crate) use apply::{apply_kv, apply_lease, attached_keys, stored_leases};
pub(crate) use driver::run_lease_driver;
pub(crate) use handle::LeaseRequest;
pub use handle::{LeaseGranted, LeaseTimeToLive};
pub use table::{LeaseTable, TableError};

/// A lease's id as etcd spells it (`int64`; 0 means "no lease").
pub type LeaseId = i64;

/// etcd's largest TTL (`MaxLeaseTTL`, 9 000 000 000 s); larger grants fail.
pub const LEASE_TTL_SECONDS_MAX: i64 = 9_000_000_000;

/// A lease operation carried by a Raft entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseProposal {
    /// `ttl_seconds` is already clamped to the minimum by the proposer, so every member applies
    /// the same TTL whatever its own configuration.
    Grant {
        id: LeaseId,
        ttl_seconds: i64,
    },
    Revoke {
        id: LeaseId,
    },
}

/// Why a lease request failed; the error travels in Raft results and peer replies.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum LeaseError {
    #[error("requested lease not found")]
    NotFound,
    #[error("lease already exists")]
    Exists,
    #[error("too large lease TTL")]
    TtlTooLarge,
    /// A grant while a NOSPACE alarm is raised (or the quota is passed), as etcd refuses it.
    #[error("mvcc: database space exceeded")]
    NoSpace,
}

/// The shared table: written by the apply loop, read and renewed by the serving side.
pub type SharedLeaseTable = std::sync::Arc<std::sync::Mutex<LeaseTable>>;
