//! Starting and stopping one store member: storage, Raft, listeners and background tasks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{listen_address, ClusterState, ConfigError, StoreConfig};
use crate::engine::WriteBatch;
use crate::engine::{Durability, EngineError, Keyspace, KvEngine, MemoryEngine, RocksEngine};
use crate::grpc::LeaseService;
use crate::grpc::{ClusterService, KvService, MaintenanceService, WatchService};
use crate::limits;
use crate::metrics::Metrics;
use crate::node::Store;
use crate::peer::PeerService;
use crate::proto::etcdserverpb::cluster_server::ClusterServer;
use crate::proto::etcdserverpb::kv_server::KvServer;
use crate::proto::etcdserverpb::lease_server::LeaseServer;
use crate::proto::etcdserverpb::maintenance_server::MaintenanceServer;
use crate::proto::etcdserverpb::watch_server::WatchServer;
use crate::proto::peer::peer_server::PeerServer;
use crate::raft::{LogStore, MemberAttributes, PeerNetworkFactory, Raft, StateMachine};

/// Why a member could not start; each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot create data directory {path}: {reason}")]
    DataDir { path: String, reason: String },
    #[error("cannot listen on {url}: {reason}")]
    Listen { url: String, reason: String },
    #[error(
        "data directory belongs to member {found:?} of cluster {found_cluster:x}, not {expected:?} \
         of {expected_cluster:x}"
    )]
    WrongMember { found: String, found_cluster: u64, expected: String, expected_cluster: u64 },
    #[error("raft: {0}")]
    Raft(String),
}

/// Who a data directory belongs to, written on first start and checked on every start.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Identity {
    pub(crate) name: String,
    pub(crate) member_id: u64,
    pub(crate) cluster_id: u64,
}

const KEY_IDENTITY: &[u8] = b"identity";

/// A running member. Dropping it does not stop it; call [`RunningStore::shutdown`].
pub struct RunningStore {
    pub store: Store,
    pub client_addresses: Vec<SocketAddr>,
    pub peer_addresses: Vec<SocketAddr>,
    pub metrics_addresses: Vec<SocketAddr>,
    raft: Raft,
    stop: watch::Sender<bool>,
    /// Becomes true once this member applied a membership that no longer includes it.
    removed: watch::Receiver<bool>,
    tasks: Vec<JoinHandle<()>>,
    engine: std::sync::Weak<dyn KvEngine>,
}

/// Why a running member stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum StopReason {
    #[error(
        "this member ({0:x}) has been removed from the cluster; remove its data directory \
         before adding it again"
    )]
    Removed(u64),
}

impl RunningStore {
    /// Stops serving and shuts Raft down; returns when every task has ended and the storage
    /// is closed, so the data directory can be opened again at once.
    pub async fn shutdown(self) {
        let RunningStore { store, raft, stop, tasks, engine, .. } = self;
        drop(store);
        let _ = stop.send(true);
        let _ = raft.shutdown().await;
        drop(raft);
        // Servers close their connections gracefully (GOAWAY) when told to stop; whatever has
        // not ended by the deadline is aborted.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        for mut task in tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
                let _ = task.await;
            }
        }
        // Connections still closing and blocking reads in flight hold the engine briefly.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while engine.strong_count() > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if engine.strong_count() > 0 {
            tracing::warn!("storage still in use 10 s after shutdown");
        }
    }

    /// Resolves once the member has applied a membership without itself (it was removed,
    /// as etcd's `MemberRemove`); the member keeps running until shut down.
    pub async fn removed(&self) -> StopReason {
        let mut removed = self.removed.clone();
        if removed.wait_for(|r| *r).await.is_err() {
            // The watcher ended (shutdown) without seeing a removal: never resolves.
            std::future::pending::<()>().await;
        }
        StopReason::Removed(self.store.member_id())
    }

    /// Waits until ctrl-c or SIGTERM, or until this member is removed from the cluster, then
    /// shuts down. A removal is returned as an error, as etcd exits when removed.
    pub async fn run_until_signal(self) -> Result<(), StopReason> {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("SIGTERM handler");
        let outcome = tokio::select! {
            _ = tokio::signal::ctrl_c() => Ok(()),
            _ = terminate.recv() => Ok(()),
            reason = self.removed() => Err(reason),
        };
        match &outcome {
            Ok(()) => tracing::info!("shutting down"),
            Err(reason) => tracing::error!(%reason, "shutting down"),
        }
        self.shutdown().await;
        outcome
    }
}

fn open_engine(config: &StoreConfig) -> Result<Arc<dyn KvEngine>, StartError> {
    let Some(dir) = &config.data_dir else { return Ok(Arc::new(MemoryEngine::new())) };
    std::fs::create_dir_all(dir).map_err(|e| StartError::DataDir {
        path: dir.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok(Arc::new(RocksEngine::open(&dir.join("db"))?))
}

/// Checks the data directory belongs to `expected`, recording it there on first start (or on
/// restore from a backup).
pub(crate) fn check_identity(engine: &dyn KvEngine, expected: Identity) -> Result<(), StartError> {
    if let Some(bytes) = engine.get(Keyspace::RaftState, KEY_IDENTITY)? {
        let found: Identity = bincode::deserialize(&bytes)
            .unwrap_or_else(|e| panic!("corrupt member identity in data directory: {e}"));
        if found.member_id != expected.member_id || found.cluster_id != expected.cluster_id {
            return Err(StartError::WrongMember {
                found: found.name,
                found_cluster: found.cluster_id,
                expected: expected.name,
                expected_cluster: expected.cluster_id,
            });
        }
        return Ok(());
    }
    let mut batch = WriteBatch::default();
    let bytes = bincode::serialize(&expected).expect("serializable");
    batch.put(Keyspace::RaftState, KEY_IDENTITY.to_vec(), bytes);
    Ok(engine.write(batch, Durability::Sync)?)
}

async fn bind_all(flag: &'static str, urls: &[String]) -> Result<Vec<TcpListener>, StartError> {
    let mut listeners = Vec::new();
    for url in urls {
        let address = listen_address(flag, url)?;
        let listener = TcpListener::bind(address)
            .await
            .map_err(|e| StartError::Listen { url: url.clone(), reason: e.to_string() })?;
        listeners.push(listener);
    }
    Ok(listeners)
}

fn raft_config(config: &StoreConfig) -> Result<openraft::Config, StartError> {
    let raft_config = openraft::Config {
        cluster_name: config.initial_cluster_token.clone(),
        heartbeat_interval: config.heartbeat_interval_ms,
        election_timeout_min: config.election_timeout_ms,
        election_timeout_max: config.election_timeout_ms * 2,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_count),
        max_in_snapshot_log_to_keep: limits::LOGS_KEPT_AFTER_SNAPSHOT.min(config.snapshot_count),
        snapshot_max_chunk_size: limits::SNAPSHOT_CHUNK_BYTES_MAX,
        max_payload_entries: limits::APPEND_ENTRIES_LEN_MAX,
        install_snapshot_timeout: limits::PEER_SNAPSHOT_RPC_TIMEOUT_MS,
        ..Default::default()
    };
    raft_config.validate().map_err(|e| StartError::Raft(e.to_string()))
}

/// Starts a member: opens (or creates) its data, joins the static cluster, serves clients.
pub async fn start(config: StoreConfig) -> Result<RunningStore, StartError> {
    let plan = config.plan()?;
    let engine = open_engine(&config)?;
    let identity = Identity {
        name: config.name.clone(),
        member_id: plan.member_id,
        cluster_id: plan.cluster_id,
    };
    check_identity(&*engine, identity)?;
    let peer_listeners = bind_all("--listen-peer-urls", &config.listen_peer_urls).await?;
    let client_listeners = bind_all("--listen-client-urls", &config.listen_client_urls).await?;
    let metrics_listeners = bind_all("--listen-metrics-urls", &config.listen_metrics_urls).await?;

    let metrics = Metrics::new();
    let log_store = LogStore::new(engine.clone(), metrics.clone());
    let snapshot_dir = config.data_dir.as_ref().map(|d| d.join("snapshots"));
    let state_machine = StateMachine::new(engine.clone(), metrics.clone(), snapshot_dir)
        .map_err(|e| StartError::Raft(e.to_string()))?;
    let handle = state_machine.handle();
    let raft = Raft::new(
        plan.member_id,
        Arc::new(raft_config(&config)?),
        PeerNetworkFactory::default(),
        log_store,
        state_machine,
    )
    .await
    .map_err(|e| StartError::Raft(e.to_string()))?;
    let quota = match config.quota_backend_bytes {
        0 => crate::limits::BACKEND_BYTES_QUOTA,
        bytes => bytes,
    };
    let (store, proposer) =
        Store::new(plan.member_id, plan.cluster_id, raft.clone(), handle, metrics.clone(), quota);

    let (stop, stopped) = watch::channel(false);
    let (removed_sender, removed) = watch::channel(false);
    let address = |l: &TcpListener| l.local_addr().expect("bound listener has an address");
    let mut running = RunningStore {
        store: store.clone(),
        client_addresses: client_listeners.iter().map(address).collect(),
        peer_addresses: peer_listeners.iter().map(address).collect(),
        metrics_addresses: metrics_listeners.iter().map(address).collect(),
        raft: raft.clone(),
        stop,
        removed,
        tasks: vec![proposer],
        engine: Arc::downgrade(&engine),
    };
    for listener in peer_listeners {
        running.tasks.push(tokio::spawn(serve_peer(listener, store.clone(), stopped.clone())));
    }
    // Every member of a new cluster initializes with the same membership; openraft accepts
    // identical initial configurations, and a restarted member is already initialized.
    // A member joining a running cluster (`existing`) waits to be contacted by its leader.
    let initialized = raft.is_initialized().await.map_err(|e| StartError::Raft(e.to_string()))?;
    if !initialized && config.initial_cluster_state == ClusterState::New {
        if let Err(error) = raft.initialize(plan.members.clone()).await {
            tracing::info!(%error, "initialize skipped");
        }
    }
    for listener in client_listeners {
        running.tasks.push(tokio::spawn(serve_client(listener, store.clone(), stopped.clone())));
    }
    for listener in metrics_listeners {
        running.tasks.push(tokio::spawn(serve_metrics(listener, metrics.clone(), stopped.clone())));
    }
    running.tasks.push(tokio::spawn(track_raft_metrics(store.clone())));
    running.tasks.push(tokio::spawn(watch_for_removal(store.clone(), removed_sender)));
    running.tasks.push(tokio::spawn(crate::lease::run_lease_driver(store.clone())));
    running.tasks.push(tokio::spawn(store.watch_hub().clone().run_syncer()));
    let attributes = MemberAttributes {
        id: plan.member_id,
        name: config.name.clone(),
        client_urls: config.advertise_client_urls.clone(),
    };
    let publisher = store.clone();
    running.tasks.push(tokio::spawn(async move { publisher.publish_attributes(attributes).await }));
    let member = format!("{:x}", plan.member_id);
    tracing::info!(%member, name = %config.name, "store member started");
    Ok(running)
}

async fn until_stopped(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// Connections accepted from `listener`, with Nagle's algorithm off. The builder's
/// `tcp_nodelay` applies only to listeners tonic binds itself; without this, a response written
/// in pieces (headers, data, trailers) waits for the client's delayed ACK, ~40 ms.
fn incoming(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

async fn serve_peer(listener: TcpListener, store: Store, stopped: watch::Receiver<bool>) {
    let service = PeerServer::new(PeerService::new(store))
        .max_decoding_message_size(limits::PEER_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(limits::PEER_MESSAGE_BYTES_MAX);
    let served = tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(incoming(listener), until_stopped(stopped));
    if let Err(error) = served.await {
        tracing::error!(%error, "peer server failed");
    }
}

fn metrics_router(metrics: Metrics) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move { metrics.render() }
        }),
    )
}

async fn serve_client(listener: TcpListener, store: Store, stopped: watch::Receiver<bool>) {
    let kv = KvServer::new(KvService::new(store.clone()))
        .max_decoding_message_size(limits::GRPC_RECV_BYTES_MAX)
        .max_encoding_message_size(limits::GRPC_SEND_BYTES_MAX);
    let cluster = ClusterServer::new(ClusterService::new(store.clone()));
    let lease = LeaseServer::new(LeaseService::new(store.clone()));
    let maintenance = MaintenanceServer::new(MaintenanceService::new(store.clone()));
    let watch = WatchServer::new(WatchService::new(store.clone()))
        .max_decoding_message_size(limits::GRPC_RECV_BYTES_MAX)
        .max_encoding_message_size(limits::GRPC_SEND_BYTES_MAX);
    let routes = tonic::service::Routes::from(metrics_router(store.metrics().clone()))
        .add_service(kv)
        .add_service(lease)
        .add_service(cluster)
        .add_service(maintenance)
        .add_service(watch);
    let served = tonic::transport::Server::builder()
        .accept_http1(true)
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming(listener), until_stopped(stopped));
    if let Err(error) = served.await {
        tracing::error!(%error, "client server failed");
    }
}

async fn serve_metrics(listener: TcpListener, metrics: Metrics, stopped: watch::Receiver<bool>) {
    let served = axum::serve(listener, metrics_router(metrics))
        .with_graceful_shutdown(until_stopped(stopped));
    if let Err(error) = served.await {
        tracing::error!(%error, "metrics server failed");
    }
}

/// Tells `removed` once this member has applied a membership that has members but not it
/// (a member that joins with `existing` starts with an empty membership, which does not
/// count).
async fn watch_for_removal(store: Store, removed: watch::Sender<bool>) {
    let mut raft_metrics = store.raft().metrics();
    // A joining member replays memberships from before it was added: only a membership
    // without it that follows one with it means it was removed.
    let mut seen_self = false;
    loop {
        let is_removed = {
            let m = raft_metrics.borrow_and_update();
            let config = &m.membership_config;
            let applied = config.log_id().is_some() && config.log_id() <= &m.last_applied;
            let present = config.membership().nodes().any(|(id, _)| *id == store.member_id());
            seen_self |= applied && present;
            seen_self && applied && !present
        };
        if is_removed {
            let member = format!("{:x}", store.member_id());
            tracing::warn!(%member, "this member was removed from the cluster");
            // Let in-flight answers go out first: when a leader removes itself, the client
            // that asked must still hear that the removal succeeded.
            tokio::time::sleep(Duration::from_millis(limits::REMOVED_MEMBER_STOP_DELAY_MS)).await;
            let _ = removed.send(true);
            return;
        }
        if raft_metrics.changed().await.is_err() {
            return;
        }
    }
}

/// Mirrors openraft's metrics into Prometheus gauges and counters.
async fn track_raft_metrics(store: Store) {
    let mut raft_metrics = store.raft().metrics();
    let mut last_leader = None;
    // Raft metrics change with every append and apply; storage figures (RocksDB properties and
    // a read) are refreshed at most once a second, not on that hot path.
    let mut storage_read_at: Option<std::time::Instant> = None;
    loop {
        {
            let m = raft_metrics.borrow_and_update().clone();
            let metrics = store.metrics();
            metrics.has_leader.set(i64::from(m.current_leader.is_some()));
            metrics.is_leader.set(i64::from(m.current_leader == Some(store.member_id())));
            if m.current_leader.is_some() && m.current_leader != last_leader {
                metrics.leader_changes_seen_total.inc();
            }
            last_leader = m.current_leader;
            metrics.raft_log_last_index.set(m.last_log_index.unwrap_or(0) as i64);
            let applied = m.last_applied.map_or(0, |l| l.index);
            Metrics::advance_to(&metrics.proposals_applied_total, applied);
            if storage_read_at.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                storage_read_at = Some(std::time::Instant::now());
                metrics.db_total_size_in_bytes.set(store.db_size_bytes() as i64);
                metrics.db_total_size_in_use_in_bytes.set(store.db_size_in_use_bytes() as i64);
                metrics.storage_size_in_bytes.set(store.storage_size_bytes() as i64);
                if let Ok(revision) = store.local_revision() {
                    metrics.current_revision.set(revision);
                }
            }
        }
        let changed = tokio::time::timeout(Duration::from_secs(5), raft_metrics.changed()).await;
        if let Ok(Err(_)) = changed {
            return;
        }
    }
}
