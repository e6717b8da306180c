//! `etcdserverpb.Lease`: grant, revoke, keep-alive (a bidirectional stream), time-to-live and
//! list, over the [`Store`]'s lease methods.

use std::pin::Pin;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::{convert, instrument};
use crate::error::StoreError;
use crate::lease::LeaseError;
use crate::limits;
use crate::node::Store;
use crate::proto::etcdserverpb as pb;
use crate::proto::etcdserverpb::lease_server::Lease;

pub struct LeaseService {
    store: Store,
}

impl LeaseService {
    pub fn new(store: Store) -> LeaseService {
        LeaseService { store }
    }
}

type KeepAliveStream =
    Pin<Box<dyn Stream<Item = Result<pb::LeaseKeepAliveResponse, Status>> + Send>>;

fn is_not_found(error: &StoreError) -> bool {
    matches!(error, StoreError::Lease(LeaseError::NotFound))
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let request = request.into_inner();
        instrument(self.store.metrics(), "LeaseGrant", async {
            let granted = self.store.lease_grant(request.id, request.ttl).await?;
            Ok(Response::new(pb::LeaseGrantResponse {
                header: convert::header(self.store.header(granted.revision)),
                id: granted.id,
                ttl: granted.ttl_seconds,
                error: String::new(),
            }))
        })
        .await
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let request = request.into_inner();
        instrument(self.store.metrics(), "LeaseRevoke", async {
            let revision = self.store.lease_revoke(request.id).await?;
            let header = convert::header(self.store.header(revision));
            Ok(Response::new(pb::LeaseRevokeResponse { header }))
        })
        .await
    }

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<KeepAliveStream>, Status> {
        let (responses, receiver) = mpsc::channel(limits::LEASE_KEEP_ALIVE_STREAM_BUFFER_LEN);
        tokio::spawn(serve_keep_alives(self.store.clone(), request.into_inner(), responses));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let request = request.into_inner();
        instrument(self.store.metrics(), "LeaseTimeToLive", async {
            match self.store.lease_time_to_live(request.id, request.keys).await {
                Ok(found) => Ok(Response::new(pb::LeaseTimeToLiveResponse {
                    header: convert::header(self.store.header(found.revision)),
                    id: found.id,
                    ttl: found.ttl_seconds,
                    granted_ttl: found.granted_ttl_seconds,
                    keys: found.keys,
                })),
                // etcd answers an unknown lease with TTL -1, not an error (etcdctl then prints
                // "lease ... already expired").
                Err(error) if is_not_found(&error) => {
                    let revision = self.store.local_revision()?;
                    Ok(Response::new(pb::LeaseTimeToLiveResponse {
                        header: convert::header(self.store.header(revision)),
                        id: request.id,
                        ttl: -1,
                        granted_ttl: 0,
                        keys: Vec::new(),
                    }))
                }
                Err(error) => Err(error.into()),
            }
        })
        .await
    }

    async fn lease_leases(
        &self,
        _request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        instrument(self.store.metrics(), "LeaseLeases", async {
            let (ids, revision) = self.store.lease_leases().await?;
            Ok(Response::new(pb::LeaseLeasesResponse {
                header: convert::header(self.store.header(revision)),
                leases: ids.into_iter().map(|id| pb::LeaseStatus { id }).collect(),
            }))
        })
        .await
    }
}

/// Answers each keep-alive in order. An unknown (or expired) lease gets TTL 0, as etcd; any
/// other failure ends the stream with its status.
async fn serve_keep_alives(
    store: Store,
    mut requests: Streaming<pb::LeaseKeepAliveRequest>,
    responses: mpsc::Sender<Result<pb::LeaseKeepAliveResponse, Status>>,
) {
    loop {
        let request = match requests.message().await {
            Ok(Some(request)) => request,
            Ok(None) | Err(_) => return,
        };
        // The header is taken before the renewal (as etcd), so a client never sees a renewal
        // at a revision after the lease's revoke.
        let revision = match store.local_revision() {
            Ok(revision) => revision,
            Err(error) => {
                let _ = responses.send(Err(error.into())).await;
                return;
            }
        };
        let metrics = store.metrics().clone();
        let renewed = instrument(&metrics, "LeaseKeepAlive", async {
            match store.lease_keep_alive(request.id).await {
                Ok(ttl) => Ok(ttl),
                Err(error) if is_not_found(&error) => Ok(0),
                Err(error) => Err(Status::from(error)),
            }
        });
        let response = renewed.await.map(|ttl| pb::LeaseKeepAliveResponse {
            header: convert::header(store.header(revision)),
            id: request.id,
            ttl,
        });
        let failed = response.is_err();
        if responses.send(response).await.is_err() || failed {
            return;
        }
    }
}
