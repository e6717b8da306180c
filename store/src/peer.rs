//! The peer service: openraft's RPCs from other members, plus writes and read-index requests
//! forwarded by followers.

use tonic::{Request, Response, Status};

use crate::node::{Forwarded, Store};
use crate::proto::peer::peer_server::Peer;
use crate::proto::peer::PeerMessage;
use crate::raft::TypeConfig;

pub struct PeerService {
    store: Store,
}

impl PeerService {
    pub fn new(store: Store) -> PeerService {
        PeerService { store }
    }
}

/// A peer payload that does not decode came from a member running other code, or was damaged:
/// refuse it with a message, never panic.
fn decode<T: serde::de::DeserializeOwned>(message: Request<PeerMessage>) -> Result<T, Status> {
    bincode::deserialize(&message.into_inner().payload)
        .map_err(|e| Status::invalid_argument(format!("skiff: undecodable peer message: {e}")))
}

fn reply<T: serde::Serialize>(value: &T) -> Result<Response<PeerMessage>, Status> {
    let payload = bincode::serialize(value)
        .map_err(|e| Status::internal(format!("skiff: cannot encode peer reply: {e}")))?;
    Ok(Response::new(PeerMessage { payload }))
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn append_entries(
        &self,
        request: Request<PeerMessage>,
    ) -> Result<Response<PeerMessage>, Status> {
        let rpc: openraft::raft::AppendEntriesRequest<TypeConfig> = decode(request)?;
        reply(&self.store.raft().append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<PeerMessage>) -> Result<Response<PeerMessage>, Status> {
        let rpc: openraft::raft::VoteRequest<u64> = decode(request)?;
        reply(&self.store.raft().vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<PeerMessage>,
    ) -> Result<Response<PeerMessage>, Status> {
        let rpc: openraft::raft::InstallSnapshotRequest<TypeConfig> = decode(request)?;
        reply(&self.store.raft().install_snapshot(rpc).await)
    }

    async fn forward(
        &self,
        request: Request<PeerMessage>,
    ) -> Result<Response<PeerMessage>, Status> {
        match decode(request)? {
            Forwarded::Lease(lease) => reply(&self.store.serve_forwarded_lease(lease).await),
            Forwarded::Alarm(alarm) => reply(&self.store.serve_forwarded_alarm(alarm).await),
            Forwarded::TimeoutNow => reply(&self.store.campaign_now().await),
            forwarded => reply(&self.store.serve_forwarded(forwarded).await),
        }
    }

    async fn read_index(
        &self,
        _request: Request<PeerMessage>,
    ) -> Result<Response<PeerMessage>, Status> {
        reply(&self.store.leader_read_index().await)
    }
}
