//! Membership changes, etcd's Cluster service: add (as voter or learner), promote, remove and
//! update members, through openraft's joint consensus, always run on the leader.

use std::collections::{BTreeMap, BTreeSet};

use openraft::ChangeMembers;
use serde::{Deserialize, Serialize};

use crate::config::member_id;
use crate::error::StoreError;
use crate::node::{MemberInfo, Store};
use crate::raft::{MemberNode, NodeId};

/// A requested change, as forwarded from a follower to the leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberChange {
    Add { peer_urls: Vec<String>, is_learner: bool },
    Promote { id: NodeId },
    Remove { id: NodeId },
    Update { id: NodeId, peer_urls: Vec<String> },
}

/// Why a change was refused; each is one of etcd's errors.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum MembershipError {
    #[error("member ID already exist")]
    MemberExists,
    #[error("Peer URLs already exists")]
    PeerUrlExists,
    #[error("member not found")]
    MemberNotFound,
    #[error("can only promote a learner member")]
    NotLearner,
    #[error("can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("given member URLs are invalid")]
    BadUrls,
}

/// A learner this many entries or fewer behind the leader counts as in sync.
const LEARNER_IN_SYNC_LAG_MAX: u64 = crate::limits::LOGS_KEPT_AFTER_SNAPSHOT;

fn check_urls(urls: &[String]) -> Result<(), MembershipError> {
    let valid = |url: &String| {
        url::Url::parse(url)
            .is_ok_and(|u| u.scheme() == "http" && u.host_str().is_some() && u.port().is_some())
    };
    if urls.is_empty() || !urls.iter().all(valid) {
        return Err(MembershipError::BadUrls);
    }
    Ok(())
}

impl Store {
    /// The id a member with these peer URLs has in this cluster (etcd derives it the same
    /// way on both sides: the leader adding it, the member starting with
    /// `--initial-cluster-state existing`).
    pub fn member_id_for(&self, peer_urls: &[String]) -> NodeId {
        member_id(peer_urls, &self.raft().config().cluster_name)
    }

    /// Applies a membership change on the leader; returns once the new configuration is
    /// committed.
    pub(crate) async fn change_members_on_leader(
        &self,
        change: MemberChange,
    ) -> Result<(), StoreError> {
        let membership = self.raft().metrics().borrow().membership_config.clone();
        let membership = membership.membership();
        let known = |id: &NodeId| membership.get_node(id).is_some();
        let is_voter = |id: &NodeId| membership.voter_ids().any(|v| v == *id);
        let changes: Vec<ChangeMembers<NodeId, MemberNode>> = match change {
            MemberChange::Add { peer_urls, is_learner } => {
                check_urls(&peer_urls)?;
                let id = self.member_id_for(&peer_urls);
                if known(&id) {
                    return Err(MembershipError::MemberExists.into());
                }
                let taken = membership
                    .nodes()
                    .any(|(_, node)| node.peer_urls.iter().any(|u| peer_urls.contains(u)));
                if taken {
                    return Err(MembershipError::PeerUrlExists.into());
                }
                let node = MemberNode { name: String::new(), peer_urls };
                let mut changes = vec![ChangeMembers::AddNodes(BTreeMap::from([(id, node)]))];
                if !is_learner {
                    changes.push(ChangeMembers::AddVoterIds(BTreeSet::from([id])));
                }
                changes
            }
            MemberChange::Promote { id } => {
                if !known(&id) {
                    return Err(MembershipError::MemberNotFound.into());
                }
                if is_voter(&id) {
                    return Err(MembershipError::NotLearner.into());
                }
                self.check_learner_in_sync(id)?;
                vec![ChangeMembers::AddVoterIds(BTreeSet::from([id]))]
            }
            MemberChange::Remove { id } => {
                if !known(&id) {
                    return Err(MembershipError::MemberNotFound.into());
                }
                // One change either way: `retain = false` drops a removed voter's node too. A
                // second change after removing the leader itself would reach a stepped-down
                // leader, which openraft 0.9 does not survive.
                let ids = BTreeSet::from([id]);
                if is_voter(&id) {
                    vec![ChangeMembers::RemoveVoters(ids)]
                } else {
                    vec![ChangeMembers::RemoveNodes(ids)]
                }
            }
            MemberChange::Update { id, peer_urls } => {
                check_urls(&peer_urls)?;
                let node = membership.get_node(&id).ok_or(MembershipError::MemberNotFound)?;
                let node = MemberNode { name: node.name.clone(), peer_urls };
                vec![ChangeMembers::SetNodes(BTreeMap::from([(id, node)]))]
            }
        };
        use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
        for change in changes {
            // A change waits, bounded, while the previous one is not committed yet (a leader
            // just elected has not committed its first entry, or a joint step is finishing).
            let patience =
                std::time::Duration::from_millis(crate::limits::MEMBERSHIP_IN_PROGRESS_WAIT_MS);
            let deadline = tokio::time::Instant::now() + patience;
            loop {
                match self.raft().change_membership(change.clone(), false).await {
                    Ok(_) => break,
                    Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                        ChangeMembershipError::InProgress(_),
                    ))) if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                    Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                        return Err(StoreError::NotLeader)
                    }
                    Err(other) => {
                        return Err(StoreError::Internal(format!("membership change: {other}")))
                    }
                }
            }
        }
        Ok(())
    }

    fn check_learner_in_sync(&self, id: NodeId) -> Result<(), StoreError> {
        let metrics = self.raft().metrics().borrow().clone();
        let last = metrics.last_log_index.unwrap_or(0);
        // A learner that never acknowledged anything (not started, unreachable) is not in sync:
        // promoting it would leave the joint configuration waiting for it.
        let matched = metrics
            .replication
            .as_ref()
            .and_then(|r| r.get(&id).cloned().flatten())
            .map(|log_id| log_id.index);
        match matched {
            Some(matched) if last.saturating_sub(matched) <= LEARNER_IN_SYNC_LAG_MAX => Ok(()),
            _ => Err(MembershipError::LearnerNotReady.into()),
        }
    }

    /// Runs a change wherever the leader is, then answers from this member's view once it
    /// has applied the change.
    pub async fn change_members(
        &self,
        change: MemberChange,
    ) -> Result<Vec<MemberInfo>, StoreError> {
        self.route_member_change(change).await?;
        self.read_barrier().await?;
        self.members()
    }
}
