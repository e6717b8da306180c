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
