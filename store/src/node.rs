//! The [`Store`] handle: the embedded API (range, write, status, members) over one member's
//! Raft node and state machine, plus the proposer that batches client writes into Raft entries.
//!
//! The gRPC services and the control plane both call this handle; neither touches openraft.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::ClientWriteError;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::alarm::{self, AlarmKind, AlarmMember, AlarmProposal};
use crate::engine::Keyspace;
use crate::error::StoreError;
use crate::limits;
use crate::metrics::Metrics;
use crate::mvcc::WriteResponse;
use crate::mvcc::{self, MvccError, Overlay, RangeRequest, RangeResponse, WriteRequest};
use crate::proto::peer::peer_client::PeerClient;
use crate::proto::peer::PeerMessage;
use crate::raft::{
    MemberAttributes, MemberNode, NodeId, Proposal, ProposalResult, Raft, StateMachineHandle,
};
use crate::read_index::Coalescer;
use crate::watch::{Notification, WatchHub, WatchSpec, WatcherId};

/// etcd's response header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub cluster_id: u64,
    pub member_id: u64,
    pub revision: i64,
    pub raft_term: u64,
}

/// What `endpoint status` reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStatus {
    pub header: Header,
    pub leader: u64,
    pub raft_index: u64,
    pub raft_term: u64,
    pub raft_applied_index: u64,
    pub db_size_bytes: i64,
    pub is_learner: bool,
}

/// One member as `member list` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberInfo {
    pub id: u64,
    /// Empty until the member has started and published its attributes (as in etcd).
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

/// What a follower sends its leader over the peer `Forward` RPC.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Forwarded {
    Kv(WriteRequest),
    Publish(MemberAttributes),
    /// Served by `serve_forwarded_lease` (see `crate::lease`), never proposed as a write.
    Lease(crate::lease::LeaseRequest),
    Member(crate::membership::MemberChange),
    /// Served by `serve_forwarded_alarm`; answers the alarm raised or cleared.
    Alarm(AlarmProposal),
    /// Sent by a leader handing leadership over to this member: campaign now (Raft's
    /// TimeoutNow). Served by `campaign_now`.
    TimeoutNow,
}

struct Pending {
    request: WriteRequest,
    bytes: usize,
    reply: oneshot::Sender<Result<WriteResponse, StoreError>>,
}

struct Inner {
    member_id: NodeId,
    cluster_id: u64,
    raft: Raft,
    state: StateMachineHandle,
    proposals: mpsc::Sender<Pending>,
    metrics: Metrics,
    peers: Mutex<HashMap<NodeId, PeerClient<Channel>>>,
    /// Backend bytes past which writes that need space raise NOSPACE and are refused.
    quota_bytes: u64,
    /// The last storage size read for the quota check, and when (reading it costs a few
    /// RocksDB property lookups; writes reuse it for `QUOTA_SIZE_REFRESH_MS`).
    size_for_quota: Mutex<Option<(Instant, u64)>>,
    /// Held shared while submitting a proposal; a leadership transfer holds it exclusively so
    /// nothing is appended (which would renew the followers' leader lease) while it waits.
    proposal_gate: Arc<tokio::sync::RwLock<()>>,
    /// Read-index rounds of this member's linearizable reads (leader or follower).
    reads: Arc<Coalescer>,
    /// Leadership confirmations on the leader, shared by its own reads and its followers'.
    leader_reads: Arc<Coalescer>,
}

/// An embedded watch: notifications for one watcher, cancelled when dropped.
pub struct Watch {
    pub id: WatcherId,
    receiver: mpsc::Receiver<Notification>,
    hub: Arc<WatchHub>,
}

impl Watch {
    /// The next notification; `None` once the member shut down.
    pub async fn next(&mut self) -> Option<Notification> {
        self.receiver.recv().await
    }

    /// A handle that asks for a progress notification on this watch (see
    /// [`WatchHub::request_progress`]).
    pub fn progress_handle(&self) -> ProgressHandle {
        ProgressHandle { id: self.id, hub: self.hub.clone() }
    }
}

/// Asks for progress notifications on one embedded watch.
#[derive(Clone)]
pub struct ProgressHandle {
    id: WatcherId,
    hub: Arc<WatchHub>,
}

impl ProgressHandle {
    pub fn request(&self) -> bool {
        self.hub.request_progress(self.id)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.hub.cancel(self.id);
    }
}

/// A cheap-to-clone handle on one store member.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl Store {
    pub(crate) fn new(
        member_id: NodeId,
        cluster_id: u64,
        raft: Raft,
        state: StateMachineHandle,
        metrics: Metrics,
        quota_bytes: u64,
    ) -> (Store, tokio::task::JoinHandle<()>) {
        let (proposals, queue) = mpsc::channel(limits::PROPOSAL_QUEUE_LEN_MAX);
        let proposal_gate = Arc::new(tokio::sync::RwLock::new(()));
        let proposer =
            tokio::spawn(run_proposer(raft.clone(), queue, metrics.clone(), proposal_gate.clone()));
        let inner = Inner {
            member_id,
            cluster_id,
            raft,
            state,
            proposals,
            metrics,
            peers: Mutex::new(HashMap::new()),
            quota_bytes,
            size_for_quota: Mutex::new(None),
            proposal_gate,
            reads: Arc::default(),
            leader_reads: Arc::default(),
        };
        (Store { inner: Arc::new(inner) }, proposer)
    }

    pub fn member_id(&self) -> u64 {
        self.inner.member_id
    }

    pub fn cluster_id(&self) -> u64 {
        self.inner.cluster_id
    }

    /// See `Inner::proposal_gate`.
    pub(crate) fn proposal_gate(&self) -> &tokio::sync::RwLock<()> {
        &self.inner.proposal_gate
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub(crate) fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    pub(crate) fn state(&self) -> &StateMachineHandle {
        &self.inner.state
    }

    /// Watches keys from this member's applied state (see [`crate::watch`]).
    pub fn watch(&self, spec: WatchSpec) -> Watch {
        let (sender, receiver) = mpsc::channel(limits::WATCH_STREAM_BUFFER_LEN);
        let hub = self.inner.state.watch_hub.clone();
        let id = hub.watch(spec, sender);
        Watch { id, receiver, hub }
    }

    pub fn watch_hub(&self) -> &Arc<WatchHub> {
        &self.inner.state.watch_hub
    }

    pub fn has_leader(&self) -> bool {
        self.inner.raft.metrics().borrow().current_leader.is_some()
    }

    pub fn header(&self, revision: i64) -> Header {
        Header {
            cluster_id: self.inner.cluster_id,
            member_id: self.inner.member_id,
            revision,
            raft_term: self.inner.raft.metrics().borrow().current_term,
        }
    }

    /// The store's current revision as this member has applied it.
    pub fn local_revision(&self) -> Result<i64, StoreError> {
        Ok(mvcc::current_revision(&*self.inner.state.engine)?)
    }

    /// Reads a range: linearizable (confirmed with the leader first) unless `serializable`.
    pub async fn range(
        &self,
        request: RangeRequest,
        serializable: bool,
    ) -> Result<RangeResponse, StoreError> {
        if !serializable {
            self.read_barrier().await?;
        }
        let engine = self.inner.state.engine.clone();
        // A single key is two point lookups, microseconds from the engine's memtables and
        // block cache: cheaper read here than handed to a blocking thread and back (a thread
        // wake-up each way). A range may scan many keys, so it goes to a blocking thread.
        if request.range_end.is_empty() {
            return Ok(mvcc::range(&*engine.snapshot(), &request)?);
        }
        // A consistent view: applies and compactions running meanwhile are invisible to it.
        Ok(tokio::task::spawn_blocking(move || mvcc::range(&*engine.snapshot(), &request))
            .await
            .map_err(|e| StoreError::Internal(format!("range task failed: {e}")))??)
    }

    /// Applies a write through Raft and returns its result once applied on this member's
    /// leader. Read-only txns are answered locally after a read barrier.
    pub async fn write(&self, request: WriteRequest) -> Result<WriteResponse, StoreError> {
        mvcc::validate(&request)?;
        if let WriteRequest::Txn(txn) = &request {
            if alarm::txn_is_read_only(txn) {
                self.read_barrier().await?;
                return self.evaluate_locally(request).await;
            }
        }
        if alarm::needs_space(&request) {
            let cost = bincode::serialized_size(&request).unwrap_or(0);
            self.check_quota(cost).await?;
        }
        let deadline = Instant::now() + Duration::from_millis(limits::REQUEST_TIMEOUT_MS);
        tokio::time::timeout_at(deadline, self.route_write(Forwarded::Kv(request), deadline))
            .await
            .map_err(|_| StoreError::Timeout)?
    }

    async fn evaluate_locally(&self, request: WriteRequest) -> Result<WriteResponse, StoreError> {
        let engine = self.inner.state.engine.clone();
        let result = tokio::task::spawn_blocking(move || {
            let view = engine.snapshot();
            let mut overlay = Overlay::new(&*view);
            let (response, _) = mvcc::apply(&mut overlay, &request)?;
            assert!(overlay.into_batch().is_empty(), "a read-only txn wrote something");
            Ok::<_, StoreError>(response)
        });
        result.await.map_err(|e| StoreError::Internal(format!("txn task failed: {e}")))?
    }

    /// Sends a write to wherever the leader is, retrying only where the request certainly did
    /// not reach a leader's log (so nothing is applied twice).
    async fn route_write(
        &self,
        request: Forwarded,
        deadline: Instant,
    ) -> Result<WriteResponse, StoreError> {
        loop {
            let leader = self.wait_for_leader(deadline).await?;
            let result = if leader == self.inner.member_id {
                self.propose_local(&request).await
            } else {
                self.forward(leader, &request).await
            };
            match result {
                Err(StoreError::NotLeader) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => return other,
            }
        }
    }

    async fn propose_local(&self, request: &Forwarded) -> Result<WriteResponse, StoreError> {
        match request {
            Forwarded::Kv(request) => {
                let (reply, receiver) = oneshot::channel();
                let bytes = bincode::serialized_size(request).unwrap_or(0) as usize;
                let pending = Pending { request: request.clone(), bytes, reply };
                self.inner.metrics.proposals_pending.inc();
                let sent = self.inner.proposals.send(pending).await;
                let result = match sent {
                    Ok(()) => receiver.await.unwrap_or(Err(StoreError::Stopped)),
                    Err(_) => Err(StoreError::Stopped),
                };
                self.inner.metrics.proposals_pending.dec();
                result
            }
            Forwarded::Publish(attributes) => {
                let proposal = Proposal::PublishMember(attributes.clone());
                let _open = self.inner.proposal_gate.read().await;
                match self.inner.raft.client_write(proposal).await {
                    Ok(_) => Ok(WriteResponse::Compaction(Default::default())),
                    Err(openraft::error::RaftError::APIError(
                        ClientWriteError::ForwardToLeader(_),
                    )) => Err(StoreError::NotLeader),
                    Err(error) => Err(StoreError::Internal(error.to_string())),
                }
            }
            Forwarded::Lease(_) | Forwarded::Alarm(_) | Forwarded::TimeoutNow => {
                Err(StoreError::Internal("not a write request".into()))
            }
            Forwarded::Member(change) => {
                self.change_members_on_leader(change.clone()).await?;
                Ok(WriteResponse::Compaction(Default::default()))
            }
        }
    }

    /// Runs a membership change on the leader, wherever it is.
    pub(crate) async fn route_member_change(
        &self,
        change: crate::membership::MemberChange,
    ) -> Result<(), StoreError> {
        // Two configuration changes (joint, then final) per step, each a Raft round.
        let deadline = Instant::now() + Duration::from_millis(2 * limits::REQUEST_TIMEOUT_MS);
        let routed = self.route_write(Forwarded::Member(change), deadline);
        tokio::time::timeout_at(deadline, routed)
            .await
            .map_err(|_| StoreError::Timeout)?
            .map(|_| ())
    }

    /// Serves a follower's forwarded write on the leader.
    pub(crate) async fn serve_forwarded(
        &self,
        request: Forwarded,
    ) -> Result<WriteResponse, StoreError> {
        let deadline = Instant::now() + Duration::from_millis(limits::REQUEST_TIMEOUT_MS);
        if let Forwarded::Kv(kv) = &request {
            mvcc::validate(kv)?;
        }
        tokio::time::timeout_at(deadline, self.propose_local(&request))
            .await
            .map_err(|_| StoreError::Timeout)?
    }

    fn peer(&self, id: NodeId) -> Result<PeerClient<Channel>, StoreError> {
        let mut peers = self.inner.peers.lock().expect("peer map lock");
        if let Some(client) = peers.get(&id) {
            return Ok(client.clone());
        }
        let membership = self.inner.raft.metrics().borrow().membership_config.clone();
        let node = membership
            .membership()
            .get_node(&id)
            .ok_or_else(|| StoreError::Internal(format!("member {id:x} is not in membership")))?;
        let client = crate::raft::peer_client(node)
            .ok_or_else(|| StoreError::Internal(format!("member {id:x} has no peer URL")))?;
        peers.insert(id, client.clone());
        Ok(client)
    }

    /// Sends a request to the leader; `R` is what the leader answers for this kind of request.
    pub(crate) async fn forward<R: serde::de::DeserializeOwned>(
        &self,
        leader: NodeId,
        request: &Forwarded,
    ) -> Result<R, StoreError> {
        let mut client = self.peer(leader)?;
        let message = PeerMessage { payload: bincode::serialize(request).expect("serializable") };
        match client.forward(message).await {
            Ok(reply) => {
                let payload = reply.into_inner().payload;
                bincode::deserialize::<Result<R, StoreError>>(&payload)
                    .map_err(|e| StoreError::Internal(format!("undecodable leader reply: {e}")))?
            }
            // Refused before anything was sent: the leader never saw it; safe to try again.
            Err(status) if is_connect_failure(&status) => Err(StoreError::NotLeader),
            Err(_) => Err(StoreError::LeaderChanged),
        }
    }

    pub(crate) async fn wait_for_leader(&self, deadline: Instant) -> Result<NodeId, StoreError> {
        let mut metrics = self.inner.raft.metrics();
        let waited = tokio::time::timeout_at(deadline, async {
            metrics.wait_for(|m| m.current_leader.is_some()).await.map(|m| m.current_leader)
        });
        match waited.await {
            Ok(Ok(leader)) => Ok(leader.expect("waited for a leader")),
            Ok(Err(_)) => Err(StoreError::Stopped),
            Err(_) => Err(StoreError::NoLeader),
        }
    }

    /// Returns once this member has applied everything committed before the call (ReadIndex).
    /// Concurrent calls share read-index rounds (see [`crate::read_index`]).
    pub async fn read_barrier(&self) -> Result<(), StoreError> {
        let deadline = Instant::now() + Duration::from_millis(limits::REQUEST_TIMEOUT_MS);
        let barrier = async {
            loop {
                let store = self.clone();
                let round = move || {
                    let store = store.clone();
                    async move {
                        let deadline =
                            Instant::now() + Duration::from_millis(limits::REQUEST_TIMEOUT_MS);
                        let leader = store.wait_for_leader(deadline).await?;
                        if leader == store.inner.member_id {
                            store.leader_read_index().await
                        } else {
                            store.remote_read_index(leader).await
                        }
                    }
                };
                let batch = self.inner.metrics.read_index_batch_requests.clone();
                let index =
                    self.inner.reads.read_index(round, move |n| batch.observe(n as f64)).await;
                match index {
                    Ok(index) => return self.wait_applied(index).await,
                    Err(StoreError::NotLeader) => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(error) => return Err(error),
                }
            }
        };
        tokio::time::timeout_at(deadline, barrier).await.map_err(|_| StoreError::Timeout)?
    }

    /// On the leader: confirms leadership with a quorum and returns the index to read at.
    /// Concurrent calls (this member's reads and its followers') share confirmations.
    pub(crate) async fn leader_read_index(&self) -> Result<u64, StoreError> {
        let raft = self.inner.raft.clone();
        let round = move || {
            let raft = raft.clone();
            async move { Self::confirmed_read_index(&raft).await }
        };
        let batch = self.inner.metrics.leader_read_index_batch_requests.clone();
        self.inner.leader_reads.read_index(round, move |n| batch.observe(n as f64)).await
    }

    async fn confirmed_read_index(raft: &Raft) -> Result<u64, StoreError> {
        match raft.get_read_log_id().await {
            Ok((read_log_id, _)) => Ok(read_log_id.map_or(0, |l| l.index)),
            Err(openraft::error::RaftError::APIError(_)) => Err(StoreError::NotLeader),
            Err(error) => Err(StoreError::Internal(error.to_string())),
        }
    }

    async fn remote_read_index(&self, leader: NodeId) -> Result<u64, StoreError> {
        let mut client = self.peer(leader)?;
        match client.read_index(PeerMessage { payload: Vec::new() }).await {
            Ok(reply) => {
                bincode::deserialize::<Result<u64, StoreError>>(&reply.into_inner().payload)
                    .map_err(|e| StoreError::Internal(format!("undecodable leader reply: {e}")))?
            }
            Err(status) if is_connect_failure(&status) => Err(StoreError::NotLeader),
            Err(status) => Err(StoreError::Internal(format!("read index: {}", status.message()))),
        }
    }

    async fn wait_applied(&self, index: u64) -> Result<(), StoreError> {
        let mut applied = self.inner.state.applied.clone();
        let reached = applied.wait_for(|a| a.log_index >= index).await.map(|_| ());
        reached.map_err(|_| StoreError::Stopped)
    }

    /// Publishes this member's name and client URLs through Raft (etcd does the same), retrying
    /// until it lands.
    pub(crate) async fn publish_attributes(&self, attributes: MemberAttributes) {
        loop {
            let current = self.inner.state.member_attributes().unwrap_or_default();
            if current.contains(&attributes) {
                return;
            }
            let deadline = Instant::now() + Duration::from_millis(limits::REQUEST_TIMEOUT_MS);
            let request = Forwarded::Publish(attributes.clone());
            let routed = tokio::time::timeout_at(deadline, self.route_write(request, deadline));
            if let Ok(Ok(_)) = routed.await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// etcd's quota check, made by the member serving a write that needs space: past the
    /// quota it raises NOSPACE for itself (replicated, so every member then refuses such
    /// writes) and refuses the write.
    pub(crate) async fn check_quota(&self, cost: u64) -> Result<(), StoreError> {
        let size = {
            let mut cached = self.inner.size_for_quota.lock().expect("quota size lock");
            let now = Instant::now();
            match *cached {
                Some((at, size))
                    if now.duration_since(at)
                        < Duration::from_millis(limits::QUOTA_SIZE_REFRESH_MS) =>
                {
                    size
                }
                _ => {
                    let size = self.db_size_bytes();
                    *cached = Some((now, size));
                    size
                }
            }
        };
        if size.saturating_add(cost) <= self.inner.quota_bytes {
            return Ok(());
        }
        let raised = AlarmMember { member_id: self.inner.member_id, alarm: AlarmKind::NoSpace };
        if !self.alarms().contains(&raised) {
            // The write is refused either way; a failure to raise is retried by the next one.
            let _ = self.route_alarm(AlarmProposal::Activate(raised)).await;
        }
        Err(MvccError::NoSpace.into())
    }

    /// Backend bytes past which NOSPACE is raised.
    pub fn quota_bytes(&self) -> u64 {
        self.inner.quota_bytes
    }

    /// The alarms as this member has applied them.
    pub fn alarms(&self) -> Vec<AlarmMember> {
        self.inner.state.alarms.lock().expect("alarm set lock").iter().copied().collect()
    }

    /// Raises an alarm through Raft; answers it once applied.
    pub async fn alarm_activate(&self, alarm: AlarmMember) -> Result<AlarmMember, StoreError> {
        self.route_alarm(AlarmProposal::Activate(alarm))
            .await?
            .ok_or_else(|| StoreError::Internal("alarm activation without a result".into()))
    }

    /// Clears an alarm through Raft; answers it if it was raised.
    pub async fn alarm_deactivate(
        &self,
        alarm: AlarmMember,
    ) -> Result<Option<AlarmMember>, StoreError> {
        self.route_alarm(AlarmProposal::Deactivate(alarm)).await
    }

    async fn route_alarm(
        &self,
        proposal: AlarmProposal,
    ) -> Result<Option<AlarmMember>, StoreError> {
        let deadline = Instant::now() + Duration::from_millis(limits::REQUEST_TIMEOUT_MS);
        let routed = async {
            loop {
                let leader = self.wait_for_leader(deadline).await?;
                let result = if leader == self.inner.member_id {
                    self.propose_alarm(proposal).await
                } else {
                    self.forward(leader, &Forwarded::Alarm(proposal)).await
                };
                match result {
                    Err(StoreError::NotLeader) => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    other => return other,
                }
            }
        };
        tokio::time::timeout_at(deadline, routed).await.map_err(|_| StoreError::Timeout)?
    }

    /// Serves an alarm change forwarded by a follower.
    pub(crate) async fn serve_forwarded_alarm(
        &self,
        proposal: AlarmProposal,
    ) -> Result<Option<AlarmMember>, StoreError> {
        let timeout = Duration::from_millis(limits::REQUEST_TIMEOUT_MS);
        tokio::time::timeout(timeout, self.propose_alarm(proposal))
            .await
            .map_err(|_| StoreError::Timeout)?
    }

    async fn propose_alarm(
        &self,
        proposal: AlarmProposal,
    ) -> Result<Option<AlarmMember>, StoreError> {
        let _open = self.inner.proposal_gate.read().await;
        match self.inner.raft.client_write(Proposal::Alarm(proposal)).await {
            Ok(response) => Ok(response.data.alarm),
            Err(openraft::error::RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                Err(StoreError::NotLeader)
            }
            Err(error) => Err(StoreError::Internal(error.to_string())),
        }
    }

    /// Approximate bytes of the member's backend: the state machine's keyspaces, what etcd's
    /// `dbSize` and quota count (the Raft log, etcd's WAL, is not counted).
    pub fn db_size_bytes(&self) -> u64 {
        self.inner.state.engine.size_bytes(&Keyspace::STATE_MACHINE)
    }

    /// Estimated live bytes of the backend: `db_size_bytes` without data that compaction
    /// would drop (overwritten and deleted entries), etcd's `dbSizeInUse`.
    pub fn db_size_in_use_bytes(&self) -> u64 {
        self.inner.state.engine.live_size_bytes(&Keyspace::STATE_MACHINE)
    }

    /// Approximate bytes of everything the member stores, the Raft log included.
    pub fn storage_size_bytes(&self) -> u64 {
        self.inner.state.engine.size_bytes(&Keyspace::ALL)
    }

    pub fn status(&self) -> Result<StoreStatus, StoreError> {
        let metrics = self.inner.raft.metrics().borrow().clone();
        let revision = self.local_revision()?;
        Ok(StoreStatus {
            header: self.header(revision),
            leader: metrics.current_leader.unwrap_or(0),
            raft_index: metrics.last_log_index.unwrap_or(0),
            raft_term: metrics.current_term,
            raft_applied_index: metrics.last_applied.map_or(0, |l| l.index),
            db_size_bytes: self.db_size_bytes() as i64,
            is_learner: !is_voter(metrics.membership_config.membership(), self.inner.member_id),
        })
    }

    /// Members from Raft membership, with the attributes each has published.
    pub fn members(&self) -> Result<Vec<MemberInfo>, StoreError> {
        let membership = self.inner.raft.metrics().borrow().membership_config.clone();
        let attributes = self
            .inner
            .state
            .member_attributes()
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        let membership = membership.membership();
        Ok(membership
            .nodes()
            .map(|(id, node)| {
                let published = attributes.iter().find(|a| a.id == *id);
                MemberInfo {
                    id: *id,
                    name: published.map(|a| a.name.clone()).unwrap_or_default(),
                    peer_urls: node.peer_urls.clone(),
                    client_urls: published.map(|a| a.client_urls.clone()).unwrap_or_default(),
                    is_learner: !is_voter(membership, *id),
                }
            })
            .collect())
    }
}

fn is_voter(membership: &openraft::Membership<NodeId, MemberNode>, id: NodeId) -> bool {
    membership.voter_ids().any(|voter| voter == id)
}

fn is_connect_failure(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable && status.message().contains("connect")
}

/// Folds queued client writes into Raft entries: while `PROPOSALS_IN_FLIGHT_MAX` entries are
/// in flight the queue fills, and the next entry takes everything waiting (group commit).
async fn run_proposer(
    raft: Raft,
    mut queue: mpsc::Receiver<Pending>,
    metrics: Metrics,
    gate: Arc<tokio::sync::RwLock<()>>,
) {
    let in_flight = Arc::new(Semaphore::new(limits::PROPOSALS_IN_FLIGHT_MAX));
    let mut carried: Option<Pending> = None;
    loop {
        let first = match carried.take() {
            Some(pending) => pending,
            None => match queue.recv().await {
                Some(pending) => pending,
                None => return,
            },
        };
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        while batch.len() < limits::PROPOSAL_BATCH_LEN_MAX {
            let Ok(next) = queue.try_recv() else { break };
            if bytes + next.bytes > limits::PROPOSAL_BATCH_BYTES_MAX {
                carried = Some(next);
                break;
            }
            bytes += next.bytes;
            batch.push(next);
        }
        metrics.proposal_batch_requests.observe(batch.len() as f64);
        let (requests, replies): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|p| (p.request, p.reply)).unzip();
        // Submitted in queue order; only the wait for the outcome runs concurrently.
        let submitted = {
            let _open = gate.read().await;
            raft.client_write_ff(Proposal::Kv(requests)).await
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let outcome = match submitted {
                Ok(receiver) => receiver.await.map_err(|_| StoreError::Stopped),
                Err(_) => Err(StoreError::Stopped),
            };
            deliver(outcome, replies, &metrics);
            drop(permit);
        });
    }
}

type WriteOutcome = Result<
    Result<
        openraft::raft::ClientWriteResponse<crate::raft::TypeConfig>,
        ClientWriteError<NodeId, MemberNode>,
    >,
    StoreError,
>;

fn deliver(
    outcome: WriteOutcome,
    replies: Vec<oneshot::Sender<Result<WriteResponse, StoreError>>>,
    metrics: &Metrics,
) {
    match outcome {
        Ok(Ok(response)) => {
            let ProposalResult { responses, .. } = response.data;
            assert_eq!(responses.len(), replies.len(), "one result per batched request");
            for (reply, result) in replies.into_iter().zip(responses) {
                let _ = reply.send(result.map_err(StoreError::from));
            }
        }
        Ok(Err(ClientWriteError::ForwardToLeader(_))) => {
            // Rejected before it was appended: the caller may route it to the new leader.
            for reply in replies {
                let _ = reply.send(Err(StoreError::NotLeader));
            }
        }
        Ok(Err(error)) => {
            metrics.proposals_failed_total.inc_by(replies.len() as u64);
            for reply in replies {
                let _ = reply.send(Err(StoreError::Internal(error.to_string())));
            }
        }
        Err(error) => {
            metrics.proposals_failed_total.inc_by(replies.len() as u64);
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}
