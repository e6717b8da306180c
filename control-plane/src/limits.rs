//! Every bound the control plane enforces, in one place. Defaults follow Kubernetes where it
//! has one.

/// Connecting to an external store endpoint.
pub const STORE_CONNECT_TIMEOUT_MS: u64 = 2_000;
/// One store request (kube-apiserver's etcd request timeout is of this order).
pub const STORE_REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Store watch batches buffered between the store and a watch cache.
pub const STORE_WATCH_BUFFER_BATCHES: usize = 1_024;
/// Keys per store read when a cache loads or a list is paged from the store.
pub const STORE_PAGE_LEN: i64 = 500;

/// Recent changes a watch cache keeps for watchers resuming from a resourceVersion
/// (kube-apiserver's default watch cache capacity is of this order).
pub const CACHE_HISTORY_EVENTS_MAX: usize = 1_000;
/// Events buffered per API watcher; a watcher that falls this far behind is closed.
pub const WATCHER_BUFFER_EVENTS_MAX: usize = 1_000;
/// How long a request waits for a resource's watch cache to load.
pub const CACHE_READY_TIMEOUT_MS: u64 = 5_000;
/// Open client connections to the API server; more wait to be accepted.
pub const CONNECTIONS_MAX: usize = 4_096;
/// How long an HTTP/1 client may take to send a request's headers.
pub const HEADER_READ_TIMEOUT_MS: u64 = 30_000;
/// Pause before a watch cache re-lists after its store watch broke.
pub const CACHE_RELIST_BACKOFF_MS: u64 = 500;

/// Distinct (object, reason, message) events a recorder remembers to count repeats instead of
/// creating new Events.
pub const EVENT_DEDUPE_ENTRIES_MAX: usize = 4_096;
/// Reconciles one controller runs at once (kube-controller-manager's `--concurrent-*-syncs`
/// default is 5; Skiff's reconciles are async, so a few more cost little).
pub const CONTROLLER_CONCURRENT_RECONCILES: u16 = 8;
/// Pods a ReplicaSet or DaemonSet creates in one reconcile, in slow-start batches (1, 2, 4,
/// ...) that stop at the first failure (Kubernetes' burstReplicas).
pub const CONTROLLER_BURST_REPLICAS: usize = 500;
/// How long a controller waits to observe its own creations and deletions before acting again
/// anyway (Kubernetes' expectations timeout).
pub const CONTROLLER_EXPECTATIONS_TIMEOUT_MS: u64 = 300_000;
/// Longest a controller waits for its caches to load before giving up on a reconcile.
pub const CONTROLLER_CACHE_SYNC_TIMEOUT_MS: u64 = 30_000;
/// Status and Lease writes hollow nodes keep in flight at once.
pub const HOLLOW_STATUS_WRITES_IN_FLIGHT: usize = 32;

/// Pod bindings the scheduler has in flight at once (each a `pods/binding` POST followed by the
/// `Scheduled` event); scheduling pauses while all are taken. At ~20 ms per binding and event
/// this sustains ~3,000 pods/s, above the 1,000 pods/s target.
pub const SCHEDULER_BINDINGS_IN_FLIGHT_MAX: usize = 64;
/// Unschedulable reports (`FailedScheduling` event and PodScheduled condition) in flight at once;
/// scheduling pauses while all are taken, so a flood of unfit pods cannot queue API calls
/// without bound.
pub const SCHEDULER_FAILURE_REPORTS_IN_FLIGHT_MAX: usize = 16;
/// A pod's back-off after a failed attempt: first, then doubling up to the maximum
/// (kube-scheduler's `podInitialBackoffSeconds` and `podMaxBackoffSeconds`).
pub const SCHEDULER_POD_BACKOFF_INITIAL_MS: u64 = 1_000;
pub const SCHEDULER_POD_BACKOFF_MAX_MS: u64 = 10_000;
/// The longest an unschedulable pod waits for a helpful cluster change before it is tried again
/// (kube-scheduler's `podMaxInUnschedulablePodsDuration`).
pub const SCHEDULER_UNSCHEDULABLE_MAX_MS: u64 = 300_000;
const _: () = assert!(SCHEDULER_BINDINGS_IN_FLIGHT_MAX >= 1);
const _: () = assert!(SCHEDULER_FAILURE_REPORTS_IN_FLIGHT_MAX >= 1);
const _: () = assert!(SCHEDULER_POD_BACKOFF_INITIAL_MS <= SCHEDULER_POD_BACKOFF_MAX_MS);
const _: () = assert!(SCHEDULER_POD_BACKOFF_MAX_MS < SCHEDULER_UNSCHEDULABLE_MAX_MS);
/// Object changes queued from the garbage collector's watches to its graph.
pub const GC_CHANGES_BUFFERED: usize = 4_096;

/// How often the node lifecycle controller looks at every node even when nothing changed
/// (kube-controller-manager's `--node-monitor-period`).
pub const NODE_MONITOR_PERIOD_MS: u64 = 5_000;
/// The shortest spacing of two node lifecycle passes: changes to nodes, Leases and pods arriving
/// closer together are handled by one pass.
pub const NODE_LIFECYCLE_PASS_INTERVAL_MIN_MS: u64 = 200;
/// How soon a node lifecycle pass runs again after one of its writes failed.
pub const NODE_LIFECYCLE_RETRY_MS: u64 = 1_000;
/// Node and pod writes (status, taints, evictions) the node lifecycle controller keeps in
/// flight at once.
pub const NODE_LIFECYCLE_WRITES_IN_FLIGHT: usize = 16;
/// Nodes per second, per zone, that may receive a NoExecute not-ready/unreachable taint, with a
/// burst of one (`--node-eviction-rate`).
pub const NODE_EVICTION_RATE_PER_SECOND: f64 = 0.1;
/// The same while a large zone is partially disrupted (`--secondary-node-eviction-rate`).
pub const NODE_SECONDARY_EVICTION_RATE_PER_SECOND: f64 = 0.01;
/// Zones with more nodes than this keep tainting, at the secondary rate, while partially
/// disrupted; smaller ones stop (`--large-cluster-size-threshold`).
pub const NODE_LARGE_CLUSTER_SIZE_THRESHOLD: usize = 50;
/// The share of a zone's nodes (more than two) not Ready that makes it partially disrupted
/// (`--unhealthy-zone-threshold`, 0.55).
pub const NODE_UNHEALTHY_ZONE_THRESHOLD_PERCENT: usize = 55;
/// Back-off before a DaemonSet deletes another failed pod on the same node: first, and the
/// doubling maximum (Kubernetes' failedPodsBackoff, 1 s to 15 min).
pub const DAEMONSET_FAILED_POD_BACKOFF_INITIAL_MS: u64 = 1_000;
pub const DAEMONSET_FAILED_POD_BACKOFF_MAX_MS: u64 = 900_000;
/// Pod deletions a DaemonSet reconcile keeps in flight at once.
pub const DAEMONSET_DELETES_IN_FLIGHT: usize = 16;
const _: () = assert!(NODE_LIFECYCLE_PASS_INTERVAL_MIN_MS < NODE_MONITOR_PERIOD_MS);
const _: () = assert!(NODE_LIFECYCLE_RETRY_MS <= NODE_MONITOR_PERIOD_MS);
const _: () = assert!(NODE_LIFECYCLE_WRITES_IN_FLIGHT >= 1 && DAEMONSET_DELETES_IN_FLIGHT >= 1);
const _: () = assert!(NODE_UNHEALTHY_ZONE_THRESHOLD_PERCENT <= 100);
const _: () =
    assert!(DAEMONSET_FAILED_POD_BACKOFF_INITIAL_MS <= DAEMONSET_FAILED_POD_BACKOFF_MAX_MS);
/// How long a consistent list (resourceVersion "") waits for the watch cache to reach the
/// store's current revision before reading the store instead (kube-apiserver waits up to 3 s).
pub const CONSISTENT_READ_CACHE_WAIT_MS: u64 = 1_000;

/// Attempts of a Service create whose dynamically picked ClusterIP or NodePort another API
/// server took between the pick and the write (each attempt re-reads the range).
pub const SERVICE_ALLOCATION_ATTEMPTS_MAX: usize = 8;
/// Range values (a ClusterIP and NodePorts) one Service may hold: its write is one store txn
/// comparing each new and released key (plus the Service's), within the store's txn
/// operation limit.
pub const SERVICE_ALLOCATIONS_PER_SERVICE_MAX: usize = 60;
const _: () = assert!(2 * SERVICE_ALLOCATIONS_PER_SERVICE_MAX < store::limits::TXN_OPS_MAX);
/// How often each API server looks for leaked or unrecorded range keys (kube-apiserver's
/// repair loops run every 3 minutes).
pub const SERVICE_RANGE_REPAIR_INTERVAL_MS: u64 = 60_000;
/// `pods/log` proxying: time to connect to a node agent, time for its response headers, and
/// the most of an agent's error body read.
pub const AGENT_CONNECT_TIMEOUT_MS: u64 = 5_000;
pub const AGENT_RESPONSE_TIMEOUT_MS: u64 = 30_000;
pub const AGENT_ERROR_BYTES_MAX: usize = 64 * 1024;
const _: () = assert!(AGENT_CONNECT_TIMEOUT_MS <= AGENT_RESPONSE_TIMEOUT_MS);
/// How long the garbage collector waits for every kind's first list before acting anyway.
pub const GC_SYNC_WAIT_MS: u64 = 10_000;
