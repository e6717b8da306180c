//! `etcdserverpb.Cluster`: member list and membership changes (add, promote, remove, update).

use tonic::{Request, Response, Status};

use super::{convert, instrument};
use crate::membership::MemberChange;
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

impl ClusterService {
    fn header(&self) -> Result<Option<pb::ResponseHeader>, Status> {
        Ok(convert::header(self.store.header(self.store.local_revision()?)))
    }

    async fn change(&self, change: MemberChange) -> Result<Vec<pb::Member>, Status> {
        Ok(self.store.change_members(change).await?.into_iter().map(member).collect())
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        request: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        let request = request.into_inner();
        instrument(self.store.metrics(), "MemberAdd", async {
            let id = self.store.member_id_for(&request.peer_ur_ls);
            let change = MemberChange::Add {
                peer_urls: request.peer_ur_ls.clone(),
                is_learner: request.is_learner,
            };
            let members = self.change(change).await?;
            let added = pb::Member {
                id,
                peer_ur_ls: request.peer_ur_ls,
                is_learner: request.is_learner,
                ..Default::default()
            };
            Ok(Response::new(pb::MemberAddResponse {
                header: self.header()?,
                member: Some(added),
                members,
            }))
        })
        .await
    }

    async fn member_remove(
        &self,
        request: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        let id = request.into_inner().id;
        instrument(self.store.metrics(), "MemberRemove", async {
            let members = self.change(MemberChange::Remove { id }).await?;
            Ok(Response::new(pb::MemberRemoveResponse { header: self.header()?, members }))
        })
        .await
    }

    async fn member_update(
        &self,
        request: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        let request = request.into_inner();
        instrument(self.store.metrics(), "MemberUpdate", async {
            let change = MemberChange::Update { id: request.id, peer_urls: request.peer_ur_ls };
            let members = self.change(change).await?;
            Ok(Response::new(pb::MemberUpdateResponse { header: self.header()?, members }))
        })
        .await
    }

    async fn member_promote(
        &self,
        request: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        let id = request.into_inner().id;
        instrument(self.store.metrics(), "MemberPromote", async {
            let members = self.change(MemberChange::Promote { id }).await?;
            Ok(Response::new(pb::MemberPromoteResponse { header: self.header()?, members }))
        })
        .await
    }

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
