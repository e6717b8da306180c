//! Consensus: openraft 0.9 wired to the engine (log storage and state machine) and to the peer
//! transport.
//!
//! **Architecture invariant:** only this module (and `node`) talks to openraft; the MVCC core
//! sees a sequence of requests to apply and nothing else.

// openraft's `StorageError` is large, and its storage traits return it; boxing it in our own
// helpers would only add conversions at every trait boundary.
#![allow(clippy::result_large_err)]

mod log_cache;
mod log_store;
mod network;
mod state_machine;

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::engine::EngineError;
use crate::lease::{LeaseError, LeaseProposal};
use crate::mvcc::{MvccError, WriteRequest, WriteResponse};

pub use log_store::LogStore;
pub(crate) use network::peer_client;
pub use network::PeerNetworkFactory;
pub(crate) use state_machine::{dump_state_machine, parse_dump, SnapshotRecord};
pub use state_machine::{StateMachine, StateMachineHandle};

/// A member's Raft node id; the same number etcd clients see as the member ID.
pub type NodeId = u64;

/// What Raft membership records about a member.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberNode {
    pub name: String,
    pub peer_urls: Vec<String>,
}

impl std::fmt::Display for MemberNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.name, self.peer_urls.join(","))
    }
}

/// A member's published attributes (etcd publishes name and client URLs through Raft too).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberAttributes {
    pub id: NodeId,
    pub name: String,
    pub client_urls: Vec<String>,
}

/// The payload of one Raft entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Proposal {
    /// Client writes folded into one entry (group commit); applied in order, each at its own
    /// revision, all in one engine batch.
    Kv(Vec<WriteRequest>),
    PublishMember(MemberAttributes),
    /// A lease grant or revoke (a revoke deletes the lease's keys in one revision).
    Lease(LeaseProposal),
    /// Raising or clearing an alarm (NOSPACE refuses writes that need space on every member).
    Alarm(crate::alarm::AlarmProposal),
}

impl std::fmt::Display for Proposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Proposal::Kv(requests) => write!(f, "kv({} requests)", requests.len()),
            Proposal::PublishMember(attributes) => write!(f, "publish({})", attributes.name),
            Proposal::Lease(proposal) => write!(f, "lease({proposal:?})"),
            Proposal::Alarm(proposal) => write!(f, "alarm({proposal:?})"),
        }
    }
}

/// The state machine's answer to one entry: one result per request of a `Proposal::Kv`, or
/// for a `Proposal::Lease` the revision after it (or why it was refused).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalResult {
    pub responses: Vec<Result<WriteResponse, MvccError>>,
    pub lease: Option<Result<i64, LeaseError>>,
    /// For a `Proposal::Alarm`: the alarm raised or cleared (`None`: it was not raised).
    pub alarm: Option<crate::alarm::AlarmMember>,
}

openraft::declare_raft_types!(
    /// Skiff's Raft type configuration.
    pub TypeConfig:
        D = Proposal,
        R = ProposalResult,
        NodeId = NodeId,
        Node = MemberNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type LogId = openraft::LogId<NodeId>;

fn io_error(verb: openraft::ErrorVerb, error: &EngineError) -> StorageError {
    openraft::StorageIOError::new(
        openraft::ErrorSubject::Store,
        verb,
        openraft::AnyError::new(error),
    )
    .into()
}

fn read_error(error: &EngineError) -> StorageError {
    io_error(openraft::ErrorVerb::Read, error)
}

fn write_error(error: &EngineError) -> StorageError {
    io_error(openraft::ErrorVerb::Write, error)
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serialize(value).expect("in-memory bincode serialization cannot fail")
}

/// Decodes bytes the store wrote itself; anything undecodable is corruption.
fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> T {
    match bincode::deserialize(bytes) {
        Ok(value) => value,
        Err(error) => panic!("corrupt {what} in storage: {error}"),
    }
}

#[cfg(test)]
mod tests;
