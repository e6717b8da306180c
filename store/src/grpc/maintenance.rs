//! `etcdserverpb.Maintenance`: status, HashKV and Hash, defragment, snapshot (a streamed
//! backup), MoveLeader (refused: see `crate::maintenance`), and alarm listing.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tonic::{Code, Request, Response, Status};

use super::{convert, instrument};
use crate::alarm::{AlarmKind, AlarmMember};
use crate::limits;
use crate::maintenance::MoveLeaderError;
use crate::node::{Store, StoreStatus};
use crate::proto::etcdserverpb as pb;
use crate::proto::etcdserverpb::alarm_request::AlarmAction;
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

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotResponse, Status>> + Send>>;

/// Splits a backup into `Snapshot` responses, each telling how many bytes remain after it.
fn snapshot_responses(backup: Arc<Vec<u8>>) -> impl Iterator<Item = pb::SnapshotResponse> {
    let total = backup.len();
    (0..total).step_by(limits::BACKUP_STREAM_CHUNK_BYTES).map(move |start| {
        let end = (start + limits::BACKUP_STREAM_CHUNK_BYTES).min(total);
        pb::SnapshotResponse {
            header: None,
            remaining_bytes: (total - end) as u64,
            blob: backup[start..end].to_vec(),
            version: String::new(),
        }
    })
}

fn move_leader_status(error: MoveLeaderError) -> Status {
    match error {
        MoveLeaderError::NotLeader => {
            Status::new(Code::FailedPrecondition, "etcdserver: not leader")
        }
        MoveLeaderError::BadTransferee => {
            Status::new(Code::FailedPrecondition, "etcdserver: bad leader transferee")
        }
        MoveLeaderError::Timeout => Status::new(
            Code::DeadlineExceeded,
            "etcdserver: request timed out, leader transfer took too long",
        ),
        MoveLeaderError::Stopped => Status::new(Code::Unavailable, "etcdserver: server stopped"),
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
                errors: status_errors(&status, &self.store.alarms()),
                db_size_in_use: status.db_size_bytes,
                is_learner: status.is_learner,
                storage_version: String::new(),
                db_size_quota: i64::try_from(self.store.quota_bytes()).unwrap_or(i64::MAX),
                downgrade_info: None,
            }))
        })
        .await
    }

    async fn hash_kv(
        &self,
        request: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        instrument(self.store.metrics(), "HashKV", async {
            let hashed = self.store.hash_kv(request.into_inner().revision).await?;
            Ok(Response::new(pb::HashKvResponse {
                header: convert::header(self.store.header(hashed.current_revision)),
                hash: hashed.hash,
                compact_revision: hashed.compact_revision,
                hash_revision: hashed.revision,
            }))
        })
        .await
    }

    async fn hash(
        &self,
        _request: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        instrument(self.store.metrics(), "Hash", async {
            let (hash, revision) = self.store.hash().await?;
            let header = convert::header(self.store.header(revision));
            Ok(Response::new(pb::HashResponse { header, hash }))
        })
        .await
    }

    async fn defragment(
        &self,
        _request: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        instrument(self.store.metrics(), "Defragment", async {
            self.store.defragment().await?;
            let header = convert::header(self.store.header(self.store.local_revision()?));
            Ok(Response::new(pb::DefragmentResponse { header }))
        })
        .await
    }

    async fn snapshot(
        &self,
        _request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<SnapshotStream>, Status> {
        instrument(self.store.metrics(), "Snapshot", async {
            let (backup, _revision) = self.store.backup().await?;
            let responses = snapshot_responses(Arc::new(backup)).map(Ok);
            let stream: SnapshotStream = Box::pin(tokio_stream::iter(responses));
            Ok(Response::new(stream))
        })
        .await
    }

    async fn move_leader(
        &self,
        request: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        instrument(self.store.metrics(), "MoveLeader", async {
            let target = request.into_inner().target_id;
            self.store.move_leader(target).await.map_err(move_leader_status)?;
            let header = convert::header(self.store.header(self.store.local_revision()?));
            Ok(Response::new(pb::MoveLeaderResponse { header }))
        })
        .await
    }

    /// Lists (linearizably), raises or clears alarms, as etcd's apply answers: a listing for
    /// type NONE is every alarm; raising or clearing type NONE does nothing.
    async fn alarm(
        &self,
        request: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        instrument(self.store.metrics(), "Alarm", async {
            let request = request.into_inner();
            let kind = match request.alarm {
                0 => None,
                value => Some(AlarmKind::from_proto(value).ok_or_else(|| {
                    Status::invalid_argument(format!("skiff: unknown alarm type {value}"))
                })?),
            };
            let alarms = match (request.action(), kind) {
                (AlarmAction::Get, _) => {
                    self.store.read_barrier().await?;
                    let all = self.store.alarms();
                    all.into_iter().filter(|a| kind.is_none_or(|k| a.alarm == k)).collect()
                }
                (_, None) => Vec::new(),
                (AlarmAction::Activate, Some(alarm)) => {
                    let member = AlarmMember { member_id: request.member_id, alarm };
                    vec![self.store.alarm_activate(member).await?]
                }
                (AlarmAction::Deactivate, Some(alarm)) => {
                    let member = AlarmMember { member_id: request.member_id, alarm };
                    self.store.alarm_deactivate(member).await?.into_iter().collect()
                }
            };
            let alarms = alarms
                .into_iter()
                .map(|a| pb::AlarmMember { member_id: a.member_id, alarm: a.alarm.to_proto() })
                .collect();
            // etcd's apply answers without a header (`alarm list -w json` prints `{}`).
            Ok(Response::new(pb::AlarmResponse { header: None, alarms }))
        })
        .await
    }
}

/// etcd 3.4's `errors` in a status answer: "no leader" when there is none, then every alarm
/// in its protobuf text form.
fn status_errors(status: &StoreStatus, alarms: &[AlarmMember]) -> Vec<String> {
    let no_leader = (status.leader == 0).then(|| "etcdserver: no leader".to_string());
    no_leader.into_iter().chain(alarms.iter().map(AlarmMember::to_string)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_chunks_cover_the_backup_and_count_down() {
        let total = limits::BACKUP_STREAM_CHUNK_BYTES * 2 + 5;
        let backup: Vec<u8> = (0..total).map(|i| i as u8).collect();
        let responses: Vec<_> = snapshot_responses(Arc::new(backup.clone())).collect();
        assert_eq!(responses.len(), 3);
        let remaining: Vec<u64> = responses.iter().map(|r| r.remaining_bytes).collect();
        assert_eq!(remaining, [limits::BACKUP_STREAM_CHUNK_BYTES as u64 + 5, 5, 0]);
        let joined: Vec<u8> = responses.iter().flat_map(|r| r.blob.clone()).collect();
        assert_eq!(joined, backup);
    }
}
