//! `etcdserverpb.Cluster`: member list (membership changes arrive with issue 4).

use tonic::{Request, Response, Status};

use super::{convert, instrument};
use crate::node::{MemberInfo, Store};
use crate::proto::etcdserverpb as pb;
use crate::proto::etcdserverpb::cluster_server::Cluster;

pub struct ClusterService {
    store: Store,
}

impl ClusterService {
    pub fn new(store: Store) -> ClusterService {
        ClusterService { store }
    }
}

fn member(m: MemberInfo) -> pb::Member {
    pb::Member {
        id: m.id,
        name: m.name,
        peer_ur_ls: m.peer_urls,
        client_ur_ls: m.client_urls,
        is_learner: m.is_learner,
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_list(
        &self,
        request: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        let linearizable = request.into_inner().linearizable;
        instrument(self.store.metrics(), "MemberList", async {
            if linearizable {
                self.store.read_barrier().await?;
            }
            let members = self.store.members()?.into_iter().map(member).collect();
            let header = convert::header(self.store.header(self.store.local_revision()?));
            Ok(Response::new(pb::MemberListResponse { header, members }))
        })
        .await
    }
}
