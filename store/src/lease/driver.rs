//! The lease driver, one task per member: follows leadership (promoting the lease table when
//! this member becomes leader, demoting it when it stops) and, while leading, proposes revokes
//! of expired leases, at most `LEASE_REVOKES_PER_TICK_MAX` in flight.

use std::time::Duration;

use openraft::ServerState;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use super::{LeaseError, LeaseProposal};
use crate::error::StoreError;
use crate::limits;
use crate::node::Store;

/// Runs until Raft shuts down.
pub(crate) async fn run_lease_driver(store: Store) {
    let mut metrics = store.raft().metrics();
    let mut tick = tokio::time::interval(Duration::from_millis(limits::LEASE_EXPIRY_TICK_MS));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut leading_term: Option<u64> = None;
    let mut revoking = JoinSet::new();
    loop {
        let leading = {
            let m = metrics.borrow_and_update();
            (m.state == ServerState::Leader).then_some(m.current_term)
        };
        follow_leadership(&store, leading, &mut leading_term);
        tokio::select! {
            changed = metrics.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = tick.tick() => revoke_expired(&store, &mut revoking),
            Some(_) = revoking.join_next(), if !revoking.is_empty() => {}
        }
    }
}

fn follow_leadership(store: &Store, leading: Option<u64>, leading_term: &mut Option<u64>) {
    if leading == *leading_term {
        return;
    }
    let mut table = store.lease_table().lock().expect("lease table lock");
    match leading {
        Some(term) => {
            let extension = store.lease_promote_extension();
            table.promote(Instant::now(), extension);
            tracing::info!(term, leases = table.len(), ?extension, "lease table promoted");
        }
        None => {
            table.demote();
            tracing::info!("lease table demoted");
        }
    }
    *leading_term = leading;
}

fn revoke_expired(store: &Store, revoking: &mut JoinSet<()>) {
    let room = limits::LEASE_REVOKES_PER_TICK_MAX.saturating_sub(revoking.len());
    let retry = Duration::from_millis(limits::LEASE_REVOKE_RETRY_MS);
    let expired =
        store.lease_table().lock().expect("lease table lock").expired(Instant::now(), room, retry);
    for id in expired {
        let store = store.clone();
        revoking.spawn(async move {
            let timeout = Duration::from_millis(limits::REQUEST_TIMEOUT_MS);
            let revoked =
                tokio::time::timeout(timeout, store.propose_lease(LeaseProposal::Revoke { id }));
            match revoked.await {
                Ok(Ok(_) | Err(StoreError::Lease(LeaseError::NotFound))) => {}
                // The table hands the lease out again after the retry interval.
                Ok(Err(error)) => tracing::warn!(lease = id, %error, "revoking an expired lease"),
                Err(_) => tracing::warn!(lease = id, "revoking an expired lease timed out"),
            }
        });
    }
}
