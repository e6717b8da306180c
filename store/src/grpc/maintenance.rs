//! `etcdserverpb.Maintenance`: status (the rest of maintenance arrives with issue 4).

use tonic::{Request, Response, Status};

use super::{convert, instrument};
use crate::limits;
use crate::node::Store;
use crate::proto::etcdserverpb as pb;
use crate::proto::etcdserverpb::maintenance_server::Maintenance;

/// The etcd API version Skiff speaks (what `endpoint status` shows as VERSION).
pub const ETCD_API_VERSION: &str = "3.4.23";

pub struct MaintenanceService {
    store: Store,
}

impl MaintenanceService {
    pub fn new(store: Store) -> MaintenanceService {
        MaintenanceService { store }
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        instrument(self.store.metrics(), "Status", async {
            let status = self.store.status()?;
            Ok(Response::new(pb::StatusResponse {
                header: convert::header(status.header),
                version: ETCD_API_VERSION.to_string(),
                db_size: status.db_size_bytes,
                leader: status.leader,
                raft_index: status.raft_index,
                raft_term: status.raft_term,
                raft_applied_index: status.raft_applied_index,
                errors: Vec::new(),
                db_size_in_use: status.db_size_bytes,
                is_learner: status.is_learner,
                storage_version: String::new(),
                db_size_quota: limits::BACKEND_BYTES_QUOTA as i64,
                downgrade_info: None,
            }))
        })
        .await
    }
}
