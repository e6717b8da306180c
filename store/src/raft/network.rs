//! openraft's network over the peer transport: bincode payloads in a tonic (HTTP/2) service.

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{RaftNetwork, RaftNetworkFactory};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use super::{encode, MemberNode, NodeId, TypeConfig};
use crate::limits;
use crate::proto::peer::peer_client::PeerClient;
use crate::proto::peer::PeerMessage;

/// Creates one connection object per target; channels connect lazily and reconnect by
/// themselves.
#[derive(Clone, Default)]
pub struct PeerNetworkFactory {}

impl RaftNetworkFactory<TypeConfig> for PeerNetworkFactory {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &MemberNode) -> PeerConnection {
        PeerConnection { target, client: peer_client(node) }
    }
}

/// A lazily connecting client for a member's peer URL (`None`: the URL is unusable).
pub(crate) fn peer_client(node: &MemberNode) -> Option<PeerClient<Channel>> {
    let url = node.peer_urls.first()?;
    let endpoint = Endpoint::from_shared(url.clone())
        .ok()?
        .connect_timeout(Duration::from_millis(limits::PEER_RPC_TIMEOUT_MS))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10));
    Some(
        PeerClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(limits::PEER_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(limits::PEER_MESSAGE_BYTES_MAX),
    )
}

pub struct PeerConnection {
    target: NodeId,
    client: Option<PeerClient<Channel>>,
}

#[derive(Debug, thiserror::Error)]
#[error("peer {0}: {1}")]
struct TransportError(NodeId, String);

type RpcResult<T, E> = Result<T, RPCError<NodeId, MemberNode, RaftError<NodeId, E>>>;

impl PeerConnection {
    async fn call<Req, Resp, E>(
        &mut self,
        method: Method,
        request: &Req,
        timeout: Duration,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let target = self.target;
        let Some(client) = self.client.as_mut() else {
            let error = TransportError(target, "member has no usable peer URL".into());
            return Err(RPCError::Unreachable(Unreachable::new(&error)));
        };
        let message = PeerMessage { payload: encode(request) };
        let call = async {
            match method {
                Method::AppendEntries => client.append_entries(message).await,
                Method::Vote => client.vote(message).await,
                Method::InstallSnapshot => client.install_snapshot(message).await,
            }
        };
        let reply = match tokio::time::timeout(timeout, call).await {
            Err(_) => {
                let error = TransportError(target, format!("timed out after {timeout:?}"));
                return Err(RPCError::Network(NetworkError::new(&error)));
            }
            Ok(Err(status)) => {
                let error = TransportError(target, status.message().to_string());
                return Err(match status.code() {
                    tonic::Code::Unavailable => RPCError::Unreachable(Unreachable::new(&error)),
                    _ => RPCError::Network(NetworkError::new(&error)),
                });
            }
            Ok(Ok(reply)) => reply.into_inner(),
        };
        let result: Result<Resp, RaftError<NodeId, E>> = bincode::deserialize(&reply.payload)
            .map_err(|e| {
                let error = TransportError(target, format!("undecodable reply: {e}"));
                RPCError::Network(NetworkError::new(&error))
            })?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(target, e)))
    }
}

#[derive(Clone, Copy)]
enum Method {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        self.call(Method::AppendEntries, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        let timeout =
            option.hard_ttl().max(Duration::from_millis(limits::PEER_SNAPSHOT_RPC_TIMEOUT_MS));
        self.call(Method::InstallSnapshot, &rpc, timeout).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.call(Method::Vote, &rpc, option.hard_ttl()).await
    }
}
