//! Prometheus metrics of one store member, with etcd-like names under `skiff_store_`, and the
//! standard `process_*` metrics of the process serving it.
//!
//! Names follow Prometheus' conventions as `promtool check metrics` enforces them: only
//! counters end in `_total`. etcd's gauges named `*_total` (`proposals_committed_total`,
//! `proposals_applied_total`) are counters here that advance with the index they mirror, and
//! its `mvcc_keys_total` gauge is `skiff_store_mvcc_keys`.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// Every metric the member exports. Cloning shares the underlying series.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub has_leader: IntGauge,
    pub is_leader: IntGauge,
    pub leader_changes_seen_total: IntCounter,
    pub raft_log_last_index: IntGauge,
    /// Advanced to the committed Raft index (etcd's gauge of the same name).
    pub proposals_committed_total: IntCounter,
    /// Advanced to the applied Raft index (etcd's gauge of the same name).
    pub proposals_applied_total: IntCounter,
    pub proposals_pending: IntGauge,
    pub proposals_failed_total: IntCounter,
    pub proposal_batch_requests: Histogram,
    pub read_index_batch_requests: Histogram,
    pub wal_fsync_batch_appends: Histogram,
    pub leader_read_index_batch_requests: Histogram,
    pub wal_fsync_duration_seconds: Histogram,
    pub backend_commit_duration_seconds: Histogram,
    pub db_total_size_in_bytes: IntGauge,
    pub db_total_size_in_use_in_bytes: IntGauge,
    pub storage_size_in_bytes: IntGauge,
    pub current_revision: IntGauge,
    /// Live keys (not deleted) in the MVCC keyspace.
    pub mvcc_keys: IntGauge,
    pub watchers: IntGauge,
    pub slow_watchers: IntGauge,
    pub watchers_moved_to_unsynced_total: IntCounter,
    pub watch_events_sent_total: IntCounter,
    pub leases: IntGauge,
    pub lease_granted_total: IntCounter,
    pub lease_revoked_total: IntCounter,
    pub lease_renewed_total: IntCounter,
    pub grpc_requests_total: IntCounterVec,
    pub grpc_request_duration_seconds: HistogramVec,
}

fn seconds_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.0001, 2.0, 16).expect("valid buckets")
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(format!("skiff_store_{name}"), help).expect("valid gauge");
            registry.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(format!("skiff_store_{name}"), help).expect("valid counter");
            registry.register(Box::new(c.clone())).expect("unique metric");
            c
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let opts = HistogramOpts::new(format!("skiff_store_{name}"), help).buckets(buckets);
            let h = Histogram::with_opts(opts).expect("valid histogram");
            registry.register(Box::new(h.clone())).expect("unique metric");
            h
        };
        // Counts of things grouped together (requests per entry, appends per sync): 1 to 512.
        let batch_sizes = || prometheus::exponential_buckets(1.0, 2.0, 10).expect("valid buckets");
        let grpc_requests_total = IntCounterVec::new(
            Opts::new("skiff_store_grpc_requests_total", "gRPC requests by method and code"),
            &["method", "code"],
        )
        .expect("valid counter");
        registry.register(Box::new(grpc_requests_total.clone())).expect("unique metric");
        let grpc_request_duration_seconds = HistogramVec::new(
            HistogramOpts::new("skiff_store_grpc_request_duration_seconds", "gRPC latency")
                .buckets(seconds_buckets()),
            &["method"],
        )
        .expect("valid histogram");
        registry.register(Box::new(grpc_request_duration_seconds.clone())).expect("unique");
        // Resident memory, CPU, file descriptors and threads, as every Prometheus exporter.
        let process = prometheus::process_collector::ProcessCollector::for_self();
        registry.register(Box::new(process)).expect("unique metric");
        Metrics {
            has_leader: gauge("has_leader", "1 if this member knows a leader"),
            is_leader: gauge("is_leader", "1 if this member is the leader"),
            leader_changes_seen_total: counter("leader_changes_seen_total", "Leader changes seen"),
            raft_log_last_index: gauge("raft_log_last_index", "Index of the last Raft log entry"),
            proposals_committed_total: counter(
                "proposals_committed_total",
                "Raft entries committed (follows the committed index)",
            ),
            proposals_applied_total: counter(
                "proposals_applied_total",
                "Raft entries applied (follows the applied index)",
            ),
            proposals_pending: gauge("proposals_pending", "Client writes queued or in flight"),
            proposals_failed_total: counter("proposals_failed_total", "Failed proposals"),
            proposal_batch_requests: histogram(
                "proposal_batch_requests",
                "Client writes per Raft entry (group commit)",
                batch_sizes(),
            ),
            wal_fsync_batch_appends: histogram(
                "wal_fsync_batch_appends",
                "Raft log appends made durable by one WAL sync (group commit)",
                batch_sizes(),
            ),
            read_index_batch_requests: histogram(
                "read_index_batch_requests",
                "Linearizable reads served by one read-index round on this member",
                batch_sizes(),
            ),
            leader_read_index_batch_requests: histogram(
                "leader_read_index_batch_requests",
                "Read-index requests (own and followers') served by one leadership confirmation",
                batch_sizes(),
            ),
            wal_fsync_duration_seconds: histogram(
                "wal_fsync_duration_seconds",
                "Synced Raft log writes",
                seconds_buckets(),
            ),
            backend_commit_duration_seconds: histogram(
                "backend_commit_duration_seconds",
                "State machine batch commits",
                seconds_buckets(),
            ),
            db_total_size_in_bytes: gauge(
                "db_total_size_in_bytes",
                "Backend size in bytes (state machine; what the quota counts)",
            ),
            db_total_size_in_use_in_bytes: gauge(
                "db_total_size_in_use_in_bytes",
                "Estimated live bytes of the backend (without overwritten and deleted data)",
            ),
            storage_size_in_bytes: gauge(
                "storage_size_in_bytes",
                "Bytes this member stores, the Raft log included",
            ),
            current_revision: gauge("mvcc_current_revision", "Current MVCC revision"),
            mvcc_keys: gauge("mvcc_keys", "Live keys in the store"),
            watchers: gauge("watchers", "Watchers on this member"),
            slow_watchers: gauge("slow_watchers", "Watchers catching up from history"),
            watchers_moved_to_unsynced_total: counter(
                "watchers_moved_to_unsynced_total",
                "Watchers whose stream was full and were moved to catch up from history",
            ),
            watch_events_sent_total: counter(
                "watch_events_sent_total",
                "Events sent to gRPC watchers (one per watcher it reached)",
            ),
            leases: gauge("leases", "Leases granted and not yet revoked or expired"),
            lease_granted_total: counter("lease_granted_total", "Leases granted"),
            lease_revoked_total: counter("lease_revoked_total", "Leases revoked or expired"),
            lease_renewed_total: counter("lease_renewed_total", "Lease keep-alives served"),
            grpc_requests_total,
            grpc_request_duration_seconds,
            registry,
        }
    }

    /// Advances `counter` to `value` (a counter that mirrors a monotonic index; an index
    /// below what was counted, as after a restart that re-applies less, leaves it alone).
    pub fn advance_to(counter: &IntCounter, value: u64) {
        let counted = counter.get();
        if value > counted {
            counter.inc_by(value - counted);
        }
    }

    /// The text exposition format, for `/metrics`.
    pub fn render(&self) -> String {
        let encoder = prometheus::TextEncoder::new();
        encoder.encode_to_string(&self.registry.gather()).expect("text encoding cannot fail")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
