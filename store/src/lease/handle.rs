//! The lease methods of the [`Store`] handle. Every lease request is served by the leader:
//! grants and revokes because it proposes them, keep-alives and time-to-live because only its
//! table keeps deadlines. A follower forwards them over the peer transport, as it does writes.

use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{attached_keys, stored_leases, LeaseError, LeaseId, LeaseProposal, SharedLeaseTable};
use super::{TableError, LEASE_TTL_SECONDS_MAX};
use crate::error::StoreError;
use crate::limits;
use crate::mvcc::MvccError;
use crate::node::{Forwarded, Store};
use crate::raft::Proposal;

/// A lease request as the leader serves it (also the peer `Forward` payload).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum LeaseRequest {
    Grant { id: LeaseId, ttl_seconds: i64 },
    Revoke { id: LeaseId },
    KeepAlive { id: LeaseId },
    TimeToLive { id: LeaseId, keys: bool },
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum LeaseReply {
    Granted(LeaseGranted),
    Revoked { revision: i64 },
    KeptAlive { ttl_seconds: i64 },
    TimeToLive(LeaseTimeToLive),
}

/// A granted lease: its id (chosen by the server when asked for 0) and TTL after clamping.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseGranted {
    pub id: LeaseId,
    pub ttl_seconds: i64,
    pub revision: i64,
}

/// What TimeToLive reports about a lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseTimeToLive {
    pub id: LeaseId,
    /// Whole seconds left (0 once expired, until the leader's revoke lands).
    pub ttl_seconds: i64,
    pub granted_ttl_seconds: i64,
    /// The attached keys, ascending, when asked for.
    pub keys: Vec<Vec<u8>>,
    pub revision: i64,
}

/// etcd's server-chosen ids: random, positive, never 0.
fn random_lease_id() -> LeaseId {
    loop {
        let id = rand::random::<i64>() & i64::MAX;
        if id != 0 {
            return id;
        }
    }
}

fn unexpected(reply: &LeaseReply) -> StoreError {
    StoreError::Internal(format!("unexpected lease reply {reply:?}"))
}

impl From<TableError> for StoreError {
    fn from(error: TableError) -> StoreError {
        match error {
            TableError::NotPrimary => StoreError::NotLeader,
            TableError::NotFound => StoreError::Lease(LeaseError::NotFound),
        }
    }
}

impl Store {
    /// Grants a lease. `id` 0 lets the server choose; a TTL below the minimum (etcd's
    /// `minLeaseTTL`, 1.5 election timeouts rounded up to a second) is raised to it.
    pub async fn lease_grant(
        &self,
        id: LeaseId,
        ttl_seconds: i64,
    ) -> Result<LeaseGranted, StoreError> {
        if ttl_seconds > LEASE_TTL_SECONDS_MAX {
            return Err(LeaseError::TtlTooLarge.into());
        }
        // etcd counts a lease's bookkeeping as 64 bytes against the quota.
        self.check_quota(64).await?;
        let id = if id == 0 { random_lease_id() } else { id };
        let ttl_seconds = ttl_seconds.max(self.lease_ttl_seconds_min());
        match self.route_lease(LeaseRequest::Grant { id, ttl_seconds }).await? {
            LeaseReply::Granted(granted) => Ok(granted),
            other => Err(unexpected(&other)),
        }
    }

    /// Revokes a lease, deleting its keys in one revision; returns the revision after it.
    pub async fn lease_revoke(&self, id: LeaseId) -> Result<i64, StoreError> {
        match self.route_lease(LeaseRequest::Revoke { id }).await? {
            LeaseReply::Revoked { revision } => Ok(revision),
            other => Err(unexpected(&other)),
        }
    }

    /// Renews a lease to its full TTL; returns the TTL. Unknown or expired: `Lease(NotFound)`.
    pub async fn lease_keep_alive(&self, id: LeaseId) -> Result<i64, StoreError> {
        match self.route_lease(LeaseRequest::KeepAlive { id }).await? {
            LeaseReply::KeptAlive { ttl_seconds } => Ok(ttl_seconds),
            other => Err(unexpected(&other)),
        }
    }

    pub async fn lease_time_to_live(
        &self,
        id: LeaseId,
        keys: bool,
    ) -> Result<LeaseTimeToLive, StoreError> {
        match self.route_lease(LeaseRequest::TimeToLive { id, keys }).await? {
            LeaseReply::TimeToLive(time_to_live) => Ok(time_to_live),
            other => Err(unexpected(&other)),
        }
    }

    /// Every lease id (ascending) as of a linearizable read, with the revision then.
    pub async fn lease_leases(&self) -> Result<(Vec<LeaseId>, i64), StoreError> {
        self.read_barrier().await?;
        let engine = self.state().engine.clone();
        let read = tokio::task::spawn_blocking(move || {
            let view = engine.snapshot();
            let leases = stored_leases(&*view).map_err(MvccError::from)?;
            let revision = crate::mvcc::current_revision(&*view)?;
            Ok::<_, StoreError>((leases.into_iter().map(|(id, _)| id).collect(), revision))
        });
        read.await.map_err(|e| StoreError::Internal(format!("lease list task failed: {e}")))?
    }

    pub(crate) fn lease_table(&self) -> &SharedLeaseTable {
        &self.state().leases
    }

    /// etcd's `minLeaseTTL`: 1.5 election timeouts, rounded up to whole seconds.
    pub fn lease_ttl_seconds_min(&self) -> i64 {
        let election_ms = self.raft().config().election_timeout_min;
        i64::try_from((3 * election_ms).div_ceil(2000)).unwrap_or(i64::MAX)
    }

    /// How much longer than their TTL leases live after a leader change: an election
    /// timeout (the longest one this member may wait), as etcd's `Promote`.
    pub(crate) fn lease_promote_extension(&self) -> Duration {
        Duration::from_millis(self.raft().config().election_timeout_max)
    }

    async fn route_lease(&self, request: LeaseRequest) -> Result<LeaseReply, StoreError> {
        let deadline = Instant::now() + Duration::from_millis(limits::REQUEST_TIMEOUT_MS);
        let routed = async {
            loop {
                let leader = self.wait_for_leader(deadline).await?;
                let result = if leader == self.member_id() {
                    self.serve_lease(&request).await
                } else {
                    self.forward(leader, &Forwarded::Lease(request.clone())).await
                };
                match result {
                    // Nothing was proposed: the request may go to the new leader.
                    Err(StoreError::NotLeader) => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    other => return other,
                }
            }
        };
        tokio::time::timeout_at(deadline, routed).await.map_err(|_| StoreError::Timeout)?
    }

    /// Serves a lease request forwarded by a follower.
    pub(crate) async fn serve_forwarded_lease(
        &self,
        request: LeaseRequest,
    ) -> Result<LeaseReply, StoreError> {
        let timeout = Duration::from_millis(limits::REQUEST_TIMEOUT_MS);
        tokio::time::timeout(timeout, self.serve_lease(&request))
            .await
            .map_err(|_| StoreError::Timeout)?
    }

    async fn serve_lease(&self, request: &LeaseRequest) -> Result<LeaseReply, StoreError> {
        match *request {
            LeaseRequest::Grant { id, ttl_seconds } => {
                let revision = self.propose_lease(LeaseProposal::Grant { id, ttl_seconds }).await?;
                Ok(LeaseReply::Granted(LeaseGranted { id, ttl_seconds, revision }))
            }
            LeaseRequest::Revoke { id } => {
                let revision = self.propose_lease(LeaseProposal::Revoke { id }).await?;
                Ok(LeaseReply::Revoked { revision })
            }
            LeaseRequest::KeepAlive { id } => {
                self.check_leading()?;
                let ttl_seconds = self
                    .lease_table()
                    .lock()
                    .expect("lease table lock")
                    .keep_alive(id, Instant::now())?;
                self.metrics().lease_renewed_total.inc();
                Ok(LeaseReply::KeptAlive { ttl_seconds })
            }
            LeaseRequest::TimeToLive { id, keys } => self.time_to_live_here(id, keys).await,
        }
    }

    /// Only the leader's table is authoritative: a deposed leader whose table has not been
    /// demoted yet must not answer.
    fn check_leading(&self) -> Result<(), StoreError> {
        let leader = self.raft().metrics().borrow().current_leader;
        if leader == Some(self.member_id()) {
            Ok(())
        } else {
            Err(StoreError::NotLeader)
        }
    }

    async fn time_to_live_here(&self, id: LeaseId, keys: bool) -> Result<LeaseReply, StoreError> {
        self.check_leading()?;
        let remaining =
            self.lease_table().lock().expect("lease table lock").remaining(id, Instant::now())?;
        let engine = self.state().engine.clone();
        let read = tokio::task::spawn_blocking(move || {
            let view = engine.snapshot();
            let keys = match keys {
                true => attached_keys(&*view, id).map_err(MvccError::from)?,
                false => Vec::new(),
            };
            Ok::<_, StoreError>((keys, crate::mvcc::current_revision(&*view)?))
        });
        let (keys, revision) = read
            .await
            .map_err(|e| StoreError::Internal(format!("lease read task failed: {e}")))??;
        Ok(LeaseReply::TimeToLive(LeaseTimeToLive {
            id,
            ttl_seconds: remaining.ttl_seconds,
            granted_ttl_seconds: remaining.granted_ttl_seconds,
            keys,
            revision,
        }))
    }

    /// Proposes a grant or revoke on this member; returns the revision after it is applied.
    pub(crate) async fn propose_lease(&self, proposal: LeaseProposal) -> Result<i64, StoreError> {
        let _open = self.proposal_gate().read().await;
        match self.raft().client_write(Proposal::Lease(proposal)).await {
            Ok(response) => match response.data.lease {
                Some(result) => Ok(result?),
                None => Err(StoreError::Internal("lease proposal without a result".into())),
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                Err(StoreError::NotLeader)
            }
            Err(error) => Err(StoreError::Internal(error.to_string())),
        }
    }
}
