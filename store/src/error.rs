//! The store's closed set of errors, as callers of the [`crate::Store`] handle see them.
//!
//! The gRPC layer maps each to etcd's status code and message (`grpc::status`).

use serde::{Deserialize, Serialize};

use crate::lease::LeaseError;
use crate::mvcc::MvccError;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum StoreError {
    /// The request was rejected by the data model (compacted, future revision, bad txn...).
    #[error(transparent)]
    Mvcc(#[from] MvccError),
    /// A lease request was refused (unknown lease, duplicate id, TTL too large).
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// A membership change was refused (unknown member, duplicate URLs, not a learner...).
    #[error(transparent)]
    Membership(#[from] crate::membership::MembershipError),
    #[error("request is too large")]
    RequestTooLarge,
    #[error("too many requests")]
    TooManyRequests,
    #[error("no leader")]
    NoLeader,
    /// This member is not (or no longer) the leader and did not append the request.
    #[error("not leader")]
    NotLeader,
    /// Leadership moved while the request was in flight; it may or may not have been applied.
    #[error("leader changed")]
    LeaderChanged,
    /// The request's Raft round did not finish in time; it may still be applied.
    #[error("request timed out")]
    Timeout,
    #[error("server stopped")]
    Stopped,
    #[error("{0} is not implemented yet")]
    NotImplemented(String),
    /// A fault in this member (storage, transport) that the caller cannot fix.
    #[error("internal error: {0}")]
    Internal(String),
}

impl StoreError {
    /// Whether the request certainly had no effect, so retrying it cannot apply it twice.
    pub fn is_safe_to_retry(&self) -> bool {
        matches!(
            self,
            StoreError::NoLeader
                | StoreError::NotLeader
                | StoreError::TooManyRequests
                | StoreError::Stopped
        )
    }
}
