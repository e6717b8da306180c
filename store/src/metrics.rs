//! Prometheus metrics of one store member, with etcd-like names under `skiff_store_`.

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
    pub proposals_applied_total: IntGauge,
    pub proposals_pending: IntGauge,
    pub proposals_failed_total: IntCounter,
    pub proposal_batch_requests: Histogram,
    pub wal_fsync_duration_seconds: Histogram,
    pub backend_commit_duration_seconds: Histogram,
    pub db_total_size_in_bytes: IntGauge,
    pub storage_size_in_bytes: IntGauge,
    pub current_revision: IntGauge,
    pub watchers: IntGauge,
    pub slow_watchers: IntGauge,
    pub watchers_moved_to_unsynced_total: IntCounter,
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
        Metrics {
            has_leader: gauge("has_leader", "1 if this member knows a leader"),
            is_leader: gauge("is_leader", "1 if this member is the leader"),
            leader_changes_seen_total: counter("leader_changes_seen_total", "Leader changes seen"),
            raft_log_last_index: gauge("raft_log_last_index", "Index of the last Raft log entry"),
            proposals_applied_total: gauge("proposals_applied_total", "Applied index"),
            proposals_pending: gauge("proposals_pending", "Client writes queued or in flight"),
            proposals_failed_total: counter("proposals_failed_total", "Failed proposals"),
            proposal_batch_requests: histogram(
                "proposal_batch_requests",
                "Client writes per Raft entry (group commit)",
                prometheus::exponential_buckets(1.0, 2.0, 10).expect("valid buckets"),
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
            storage_size_in_bytes: gauge(
                "storage_size_in_bytes",
                "Bytes this member stores, the Raft log included",
            ),
            current_revision: gauge("mvcc_current_revision", "Current MVCC revision"),
            watchers: gauge("watchers", "Watchers on this member"),
            slow_watchers: gauge("slow_watchers", "Watchers catching up from history"),
            watchers_moved_to_unsynced_total: counter(
                "watchers_moved_to_unsynced_total",
                "Watchers whose stream was full and were moved to catch up from history",
            ),
            grpc_requests_total,
            grpc_request_duration_seconds,
            registry,
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
