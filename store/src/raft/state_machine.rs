//! The replicated state machine: applies committed entries to the MVCC engine, builds and
//! installs snapshots.
//!
//! Durability: state-machine batches go through the same write-ahead log as the Raft log but are
//! not synced themselves. The last applied log id is written in the same batch as the data it
//! covers, so after a crash the state machine is at some consistent earlier index and openraft
//! re-applies the tail from the (synced) log. The log is purged only up to a snapshot, and a
//! snapshot is taken from what the engine holds, so nothing needed for re-applying is purged.

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use openraft::storage::RaftStateMachine;
use openraft::{
    EntryPayload, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageIOError, StoredMembership,
};

use super::{
    decode, encode, read_error, write_error, LogId, MemberAttributes, MemberNode, NodeId, Proposal,
    ProposalResult, StorageError, TypeConfig,
};
use crate::alarm::{self, SharedAlarms};
use crate::engine::EngineError;
use crate::engine::{Durability, Keyspace, KvEngine, KvRead, WriteBatch};
use crate::lease::{self, LeaseProposal, LeaseTable, SharedLeaseTable};
use crate::limits;
use crate::metrics::Metrics;
use crate::mvcc::{self, Event, MvccError, Overlay, RequestOp, WriteRequest};
use crate::watch::WatchHub;

type Entry = openraft::Entry<TypeConfig>;
type Membership = StoredMembership<NodeId, MemberNode>;

pub(crate) const KEY_LAST_APPLIED: &[u8] = b"raft/last_applied";
pub(crate) const KEY_MEMBERSHIP: &[u8] = b"raft/membership";
const MEMBER_ATTRIBUTES_PREFIX: &[u8] = b"cluster/member/";

const SNAPSHOT_MAGIC: &[u8; 8] = b"SKFSNAP1";

fn member_key(id: NodeId) -> Vec<u8> {
    let mut key = MEMBER_ATTRIBUTES_PREFIX.to_vec();
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// The last snapshot this member built or installed.
#[derive(Clone)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, MemberNode>,
    data: Arc<Vec<u8>>,
}

/// The state machine. Clones share everything (the snapshot builder is a clone).
#[derive(Clone)]
pub struct StateMachine {
    engine: Arc<dyn KvEngine>,
    metrics: Metrics,
    /// Where the current snapshot is kept across restarts (`None`: memory only).
    snapshot_dir: Option<PathBuf>,
    current_snapshot: Arc<Mutex<Option<StoredSnapshot>>>,
    /// Told the revision after each applied batch (readers wait on it).
    applied: Arc<tokio::sync::watch::Sender<AppliedState>>,
    /// Told the events of each applied batch, once they are in the engine.
    watch_hub: Arc<WatchHub>,
    /// The lease set as applied (plus the leader's deadlines), updated after each batch.
    leases: SharedLeaseTable,
    /// The raised alarms as applied, updated after each batch.
    alarms: SharedAlarms,
}

/// What readers need to know about the applied state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppliedState {
    pub log_index: u64,
    pub revision: i64,
}

/// A read-only view of the state machine for the serving side.
#[derive(Clone)]
pub struct StateMachineHandle {
    pub engine: Arc<dyn KvEngine>,
    pub applied: tokio::sync::watch::Receiver<AppliedState>,
    pub watch_hub: Arc<WatchHub>,
    pub leases: SharedLeaseTable,
    pub alarms: SharedAlarms,
}

impl StateMachineHandle {
    /// Published member attributes (names and client URLs) by member id.
    pub fn member_attributes(&self) -> Result<Vec<MemberAttributes>, crate::engine::EngineError> {
        let mut end = MEMBER_ATTRIBUTES_PREFIX.to_vec();
        *end.last_mut().expect("prefix is not empty") += 1;
        let mut out = Vec::new();
        self.engine.scan(Keyspace::KvMeta, MEMBER_ATTRIBUTES_PREFIX, Some(&end), &mut |_, v| {
            out.push(decode(v, "member attributes"));
            true
        })?;
        Ok(out)
    }
}

impl StateMachine {
    pub fn new(
        engine: Arc<dyn KvEngine>,
        metrics: Metrics,
        snapshot_dir: Option<PathBuf>,
    ) -> Result<StateMachine, StorageError> {
        let (last_applied, _) = read_applied(&*engine)?;
        let revision = mvcc::current_revision(&*engine)
            .map_err(|e| read_error(&crate::engine::EngineError::Backend(e.to_string())))?;
        let applied = AppliedState { log_index: last_applied.map_or(0, |l| l.index), revision };
        let (sender, _) = tokio::sync::watch::channel(applied);
        let watch_hub = Arc::new(WatchHub::new(engine.clone(), revision, metrics.clone()));
        let leases = SharedLeaseTable::default();
        reload_leases(&*engine, &leases)?;
        count_keys_and_leases(&*engine, &leases, &metrics)?;
        let alarms = SharedAlarms::default();
        reload_alarms(&*engine, &alarms)?;
        let machine = StateMachine {
            watch_hub,
            leases,
            alarms,
            engine,
            metrics,
            snapshot_dir,
            current_snapshot: Arc::new(Mutex::new(None)),
            applied: Arc::new(sender),
        };
        let loaded = machine.load_snapshot_file()?;
        *machine.current_snapshot.lock().expect("snapshot lock") = loaded;
        Ok(machine)
    }

    pub fn handle(&self) -> StateMachineHandle {
        StateMachineHandle {
            engine: self.engine.clone(),
            applied: self.applied.subscribe(),
            watch_hub: self.watch_hub.clone(),
            leases: self.leases.clone(),
            alarms: self.alarms.clone(),
        }
    }

    fn load_snapshot_file(&self) -> Result<Option<StoredSnapshot>, StorageError> {
        let Some(dir) = &self.snapshot_dir else { return Ok(None) };
        let (meta_path, data_path) = (dir.join("snapshot.meta"), dir.join("snapshot.data"));
        if !meta_path.exists() {
            return Ok(None);
        }
        let read = |p: &PathBuf| {
            std::fs::read(p)
                .map_err(|e| StorageError::from(StorageIOError::read_snapshot(None, &e)))
        };
        let meta = decode(&read(&meta_path)?, "snapshot metadata");
        Ok(Some(StoredSnapshot { meta, data: Arc::new(read(&data_path)?) }))
    }

    fn save_snapshot_file(&self, snapshot: &StoredSnapshot) -> Result<(), StorageError> {
        let Some(dir) = &self.snapshot_dir else { return Ok(()) };
        let io = |e: std::io::Error| StorageError::from(StorageIOError::write_snapshot(None, &e));
        std::fs::create_dir_all(dir).map_err(io)?;
        // Data first, then metadata, each via rename: a crash leaves the old pair or the new.
        for (name, bytes) in
            [("snapshot.data", &snapshot.data[..]), ("snapshot.meta", &encode(&snapshot.meta)[..])]
        {
            let tmp = dir.join(format!("{name}.tmp"));
            std::fs::write(&tmp, bytes).map_err(io)?;
            std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
            std::fs::rename(&tmp, dir.join(name)).map_err(io)?;
        }
        Ok(())
    }
}

fn read_applied(r: &dyn KvRead) -> Result<(Option<LogId>, Membership), StorageError> {
    let last_applied = r.get(Keyspace::KvMeta, KEY_LAST_APPLIED).map_err(|e| read_error(&e))?;
    let membership = r.get(Keyspace::KvMeta, KEY_MEMBERSHIP).map_err(|e| read_error(&e))?;
    Ok((
        last_applied.and_then(|b| decode::<Option<LogId>>(&b, "last applied log id")),
        membership.map(|b| decode(&b, "membership")).unwrap_or_default(),
    ))
}

/// Replaces the lease table's set with the stored one (start-up, snapshot install).
fn reload_leases(engine: &dyn KvEngine, leases: &SharedLeaseTable) -> Result<(), StorageError> {
    let stored = lease::stored_leases(engine).map_err(|e| read_error(&e))?;
    let now = tokio::time::Instant::now();
    leases.lock().expect("lease table lock").reset(stored, now);
    Ok(())
}

/// Sets the key and lease gauges from storage (start-up, snapshot install); applies keep
/// them up to date afterwards.
fn count_keys_and_leases(
    engine: &dyn KvEngine,
    leases: &SharedLeaseTable,
    metrics: &Metrics,
) -> Result<(), StorageError> {
    let keys = mvcc::live_key_count(engine)
        .map_err(|e| read_error(&EngineError::Backend(e.to_string())))?;
    metrics.mvcc_keys.set(keys);
    metrics.leases.set(leases.lock().expect("lease table lock").len() as i64);
    Ok(())
}

/// Replaces the in-memory alarm set with the stored one (start-up, snapshot install).
fn reload_alarms(engine: &dyn KvEngine, alarms: &SharedAlarms) -> Result<(), StorageError> {
    let stored = alarm::load(engine).map_err(|e| read_error(&e))?;
    *alarms.lock().expect("alarm set lock") = stored;
    Ok(())
}

/// Applies one lease proposal into the overlay; the table learns of it after the batch is
/// written (`changes`).
fn apply_lease_entry(
    overlay: &mut Overlay<'_>,
    proposal: &LeaseProposal,
    events: &mut Vec<Event>,
    changes: &mut Vec<LeaseProposal>,
) -> Result<Result<i64, lease::LeaseError>, StorageError> {
    let applied = lease::apply_lease(overlay, proposal)
        .map_err(|error| write_error(&EngineError::Backend(error.to_string())))?;
    Ok(applied.map(|applied| {
        events.extend(applied.events);
        changes.push(proposal.clone());
        applied.revision
    }))
}

fn update_lease_table(table: &mut LeaseTable, changes: Vec<LeaseProposal>, metrics: &Metrics) {
    let now = tokio::time::Instant::now();
    for change in changes {
        match change {
            LeaseProposal::Grant { id, ttl_seconds } => {
                table.granted(id, ttl_seconds, now);
                metrics.lease_granted_total.inc();
            }
            LeaseProposal::Revoke { id } => {
                table.revoked(id);
                metrics.lease_revoked_total.inc();
            }
        }
    }
    metrics.leases.set(table.len() as i64);
}

/// Whether entries are cheap enough to apply on the async task: at most
/// `APPLY_INLINE_REQUESTS_MAX` requests, each a put or a txn of puts and single-key reads.
fn is_light(entries: &[Entry]) -> bool {
    fn light_op(op: &RequestOp) -> bool {
        match op {
            RequestOp::Put(_) => true,
            RequestOp::Range(range) => range.range_end.is_empty(),
            RequestOp::DeleteRange(_) | RequestOp::Txn(_) => false,
        }
    }
    let mut requests = 0;
    for entry in entries {
        match &entry.payload {
            EntryPayload::Blank | EntryPayload::Membership(_) => {}
            EntryPayload::Normal(Proposal::Kv(batch)) => {
                requests += batch.len();
                let light = batch.iter().all(|request| match request {
                    WriteRequest::Put(_) => true,
                    WriteRequest::Txn(txn) => {
                        txn.success.iter().chain(&txn.failure).all(light_op)
                            && txn.compare.iter().all(|c| c.range_end.is_empty())
                    }
                    WriteRequest::DeleteRange(_) | WriteRequest::Compaction(_) => false,
                });
                if !light {
                    return false;
                }
            }
            EntryPayload::Normal(_) => return false,
        }
    }
    requests <= limits::APPLY_INLINE_REQUESTS_MAX
}

/// Applies entries in one engine batch; returns one result per entry.
fn apply_entries(
    engine: &dyn KvEngine,
    leases: &SharedLeaseTable,
    alarms: &SharedAlarms,
    entries: Vec<Entry>,
    metrics: &Metrics,
) -> Result<(Vec<ProposalResult>, AppliedState, Vec<Event>), StorageError> {
    let (mut last_applied, mut membership) = read_applied(engine)?;
    let mut lease_changes = Vec::new();
    let mut events = Vec::new();
    let mut overlay = Overlay::new(engine);
    let mut results = Vec::with_capacity(entries.len());
    // The batch's working copy: alarms raised earlier in the batch refuse later writes.
    let mut alarm_set = alarms.lock().expect("alarm set lock").clone();
    let alarms_before = alarm_set.clone();
    for entry in entries {
        let index = entry.log_id.index;
        if let Some(previous) = last_applied {
            // openraft applies in log order without gaps; its storage test suite applies
            // hand-made sequences with gaps, so only monotonicity is asserted.
            assert!(index > previous.index, "applied index must advance: {index} after {previous}");
        }
        let mut result = ProposalResult::default();
        match entry.payload {
            EntryPayload::Blank => {}
            EntryPayload::Normal(Proposal::Kv(requests)) => {
                for request in &requests {
                    if alarm::has_no_space(&alarm_set) && alarm::needs_space(request) {
                        result.responses.push(Err(MvccError::NoSpace));
                        continue;
                    }
                    // Through the lease layer: it rejects unknown leases and tracks attachments.
                    let response =
                        lease::apply_kv(&mut overlay, request).map(|(response, applied)| {
                            events.extend(applied);
                            response
                        });
                    // A storage fault is this member's, not the request's: answering it as a
                    // result would let replicas diverge, so the apply fails instead.
                    if let Err(MvccError::Engine(_) | MvccError::Corrupt(_)) = &response {
                        let error = response.expect_err("checked");
                        return Err(write_error(&EngineError::Backend(error.to_string())));
                    }
                    result.responses.push(response);
                }
            }
            EntryPayload::Normal(Proposal::PublishMember(attributes)) => {
                overlay.put(Keyspace::KvMeta, member_key(attributes.id), encode(&attributes));
            }
            EntryPayload::Normal(Proposal::Lease(LeaseProposal::Grant { .. }))
                if alarm::has_no_space(&alarm_set) =>
            {
                result.lease = Some(Err(lease::LeaseError::NoSpace));
            }
            EntryPayload::Normal(Proposal::Alarm(proposal)) => {
                result.alarm = alarm::apply(&mut overlay, &mut alarm_set, &proposal);
            }
            EntryPayload::Normal(Proposal::Lease(proposal)) => {
                let outcome =
                    apply_lease_entry(&mut overlay, &proposal, &mut events, &mut lease_changes)?;
                result.lease = Some(outcome);
            }
            EntryPayload::Membership(m) => {
                membership = StoredMembership::new(Some(entry.log_id), m);
            }
        }
        last_applied = Some(entry.log_id);
        results.push(result);
    }
    overlay.put(Keyspace::KvMeta, KEY_LAST_APPLIED.to_vec(), encode(&last_applied));
    overlay.put(Keyspace::KvMeta, KEY_MEMBERSHIP.to_vec(), encode(&membership));
    let revision = mvcc::current_revision(&overlay)
        .map_err(|e| read_error(&crate::engine::EngineError::Backend(e.to_string())))?;
    let batch = overlay.into_batch();
    let timer = metrics.backend_commit_duration_seconds.start_timer();
    engine.write(batch, Durability::Buffered).map_err(|e| write_error(&e))?;
    timer.observe_duration();
    metrics.mvcc_keys.add(mvcc::live_key_delta(&events));
    update_lease_table(&mut leases.lock().expect("lease table lock"), lease_changes, metrics);
    if alarm_set != alarms_before {
        *alarms.lock().expect("alarm set lock") = alarm_set;
    }
    let log_index = last_applied.map_or(0, |l| l.index);
    Ok((results, AppliedState { log_index, revision }, events))
}

/// Serializes the state-machine keyspaces of one consistent engine view:
/// magic, then records of (keyspace u8, key len u32, key, value len u32, value).
pub(crate) fn dump_state_machine(view: &dyn KvRead) -> Result<Vec<u8>, StorageError> {
    let mut out = SNAPSHOT_MAGIC.to_vec();
    for (tag, keyspace) in Keyspace::STATE_MACHINE.iter().enumerate() {
        view.scan(*keyspace, &[], None, &mut |k, v| {
            out.push(tag as u8);
            out.extend_from_slice(&(k.len() as u32).to_be_bytes());
            out.extend_from_slice(k);
            out.extend_from_slice(&(v.len() as u32).to_be_bytes());
            out.extend_from_slice(v);
            true
        })
        .map_err(|e| read_error(&e))?;
    }
    Ok(out)
}

/// One key-value pair of a state-machine dump.
pub(crate) type SnapshotRecord<'a> = (Keyspace, &'a [u8], &'a [u8]);

/// Parses a snapshot received from the leader; malformed input is an error, not a panic.
pub(crate) fn parse_dump(data: &[u8]) -> Result<Vec<SnapshotRecord<'_>>, String> {
    let rest = data.strip_prefix(&SNAPSHOT_MAGIC[..]).ok_or("snapshot has a bad magic")?;
    let mut records = Vec::new();
    let mut at = 0usize;
    let take = |at: &mut usize, n: usize| -> Result<&[u8], String> {
        let slice = rest.get(*at..*at + n).ok_or("snapshot is truncated")?;
        *at += n;
        Ok(slice)
    };
    let take_len = |at: &mut usize| -> Result<usize, String> {
        let bytes: [u8; 4] = take(at, 4)?.try_into().expect("4 bytes");
        Ok(u32::from_be_bytes(bytes) as usize)
    };
    while at < rest.len() {
        let tag = take(&mut at, 1)?[0] as usize;
        let keyspace = *Keyspace::STATE_MACHINE.get(tag).ok_or("snapshot has a bad keyspace")?;
        let key_len = take_len(&mut at)?;
        let key = take(&mut at, key_len)?;
        let value_len = take_len(&mut at)?;
        let value = take(&mut at, value_len)?;
        records.push((keyspace, key, value));
    }
    Ok(records)
}

fn install_dump(engine: &dyn KvEngine, data: &[u8]) -> Result<(), StorageError> {
    let records = parse_dump(data).map_err(|reason| {
        StorageError::from(StorageIOError::read_snapshot(None, openraft::AnyError::error(reason)))
    })?;
    let mut batch = WriteBatch::default();
    for keyspace in Keyspace::STATE_MACHINE {
        engine
            .scan(keyspace, &[], None, &mut |k, _| {
                batch.delete(keyspace, k.to_vec());
                true
            })
            .map_err(|e| read_error(&e))?;
    }
    for (keyspace, key, value) in records {
        batch.put(keyspace, key.to_vec(), value.to_vec());
    }
    engine.write(batch, Durability::Sync).map_err(|e| write_error(&e))
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let engine = self.engine.clone();
        let (data, last_applied, membership) = tokio::task::spawn_blocking(move || {
            // Everything, including the applied log id, comes from one engine snapshot.
            let view = engine.snapshot();
            let (last_applied, membership) = read_applied(&*view)?;
            Ok::<_, StorageError>((dump_state_machine(&*view)?, last_applied, membership))
        })
        .await
        .expect("snapshot task panicked")?;
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, rand::random::<u32>()),
            None => format!("0-0-{}", rand::random::<u32>()),
        };
        let meta =
            SnapshotMeta { last_log_id: last_applied, last_membership: membership, snapshot_id };
        let stored = StoredSnapshot { meta: meta.clone(), data: Arc::new(data) };
        self.save_snapshot_file(&stored)?;
        let snapshot = Box::new(Cursor::new(stored.data.to_vec()));
        *self.current_snapshot.lock().expect("snapshot lock") = Some(stored);
        Ok(Snapshot { meta, snapshot })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError> {
        read_applied(&*self.engine)
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ProposalResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let engine = self.engine.clone();
        let metrics = self.metrics.clone();
        let leases = self.leases.clone();
        let alarms = self.alarms.clone();
        // A batch of point writes applies in tens of microseconds, less than the two thread
        // wake-ups a blocking task costs; anything that may touch many keys (a range delete, a
        // lease revoke, a compaction) goes to a blocking thread.
        let (results, applied, events) = if is_light(&entries) {
            apply_entries(&*engine, &leases, &alarms, entries, &metrics)?
        } else {
            tokio::task::spawn_blocking(move || {
                apply_entries(&*engine, &leases, &alarms, entries, &metrics)
            })
            .await
            .expect("apply task panicked")?
        };
        self.applied.send_replace(applied);
        self.watch_hub.publish(&events, applied.revision);
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> StateMachine {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, MemberNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = Arc::new(snapshot.into_inner());
        let engine = self.engine.clone();
        let to_install = data.clone();
        tokio::task::spawn_blocking(move || install_dump(&*engine, &to_install))
            .await
            .expect("snapshot install task panicked")?;
        let (last_applied, _) = read_applied(&*self.engine)?;
        assert_eq!(last_applied, meta.last_log_id, "installed snapshot disagrees with its meta");
        let revision = mvcc::current_revision(&*self.engine)
            .map_err(|e| read_error(&crate::engine::EngineError::Backend(e.to_string())))?;
        let log_index = last_applied.map_or(0, |l| l.index);
        self.applied.send_replace(AppliedState { log_index, revision });
        self.watch_hub.reset_after_snapshot(revision);
        reload_leases(&*self.engine, &self.leases)?;
        count_keys_and_leases(&*self.engine, &self.leases, &self.metrics)?;
        reload_alarms(&*self.engine, &self.alarms)?;
        let stored = StoredSnapshot { meta: meta.clone(), data };
        self.save_snapshot_file(&stored)?;
        *self.current_snapshot.lock().expect("snapshot lock") = Some(stored);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let current = self.current_snapshot.lock().expect("snapshot lock").clone();
        Ok(current
            .map(|s| Snapshot { meta: s.meta, snapshot: Box::new(Cursor::new(s.data.to_vec())) }))
    }
}
