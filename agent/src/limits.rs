//! Every bound and default of the node agent, in one place. Kubernetes' kubelet defaults are
//! named after the kubelet setting they copy.

/// How often a pod worker looks at its containers even when nothing told it to (the kubelet's
/// PLEG relist period, 1 s).
pub const POD_SYNC_PERIOD_MS: u64 = 1_000;
/// Pods this agent runs at once (the kubelet's `maxPods`, also the Node's `pods` capacity).
pub const PODS_MAX: usize = 110;
/// Pod IPs recorded on one node at once (loopback pod network). Twice the pods a node runs:
/// addresses of pods gone while the agent was down are released only after its first list.
pub const POD_IPS_MAX: usize = 2 * PODS_MAX;
/// How long a container's creation waits for the agent's Service cache to have listed once
/// (its service environment variables need it); then it fails and is retried next pass.
pub const SERVICE_CACHE_WAIT_MS: u64 = 5_000;
/// How soon a failed API write (status, deletion, lease) is tried again.
pub const API_RETRY_MS: u64 = 1_000;

/// Restart back-off of a crashing container: first delay, doubling up to the maximum; a
/// container that ran for twice the maximum starts again from the first (kubelet:
/// `backOffPeriod` 10 s, `MaxContainerBackOff` 300 s).
pub const RESTART_BACKOFF_INITIAL_MS: u64 = 10_000;
pub const RESTART_BACKOFF_MAX_MS: u64 = 300_000;
/// Back-off entries kept per agent (one per pod container that ever crashed).
pub const RESTART_BACKOFF_ENTRIES_MAX: usize = 4_096;

/// Termination grace when a pod says nothing (`terminationGracePeriodSeconds` default).
pub const TERMINATION_GRACE_SECONDS_DEFAULT: i64 = 30;
/// The least time a container gets between SIGTERM and SIGKILL (kubelet's
/// `minimumGracePeriodInSeconds`).
pub const TERMINATION_GRACE_SECONDS_MIN: i64 = 2;
/// How long to wait for a killed (SIGKILL) container's exit to be recorded.
pub const KILL_CONFIRM_TIMEOUT_MS: u64 = 5_000;

/// Probe defaults (Kubernetes' `Probe` defaults).
pub const PROBE_PERIOD_SECONDS_DEFAULT: i32 = 10;
pub const PROBE_TIMEOUT_SECONDS_DEFAULT: i32 = 1;
pub const PROBE_SUCCESS_THRESHOLD_DEFAULT: i32 = 1;
pub const PROBE_FAILURE_THRESHOLD_DEFAULT: i32 = 3;
/// Output of an exec probe, or body of an HTTP probe response, read at most (kubelet's
/// `maxReadLength`, 10 KiB).
pub const PROBE_OUTPUT_BYTES_MAX: usize = 10 * 1024;

/// Node Lease duration (kubelet's `nodeLeaseDurationSeconds`); it is renewed every quarter of
/// it (Kubernetes' `renewIntervalFraction`, 0.25: 10 s for 40 s).
pub const NODE_LEASE_DURATION_SECONDS_DEFAULT: i32 = 40;
pub const NODE_LEASE_RENEW_DIVISOR: u32 = 4;
/// How often the Node's status is computed, and how often it is posted even when unchanged
/// (kubelet's `nodeStatusUpdateFrequency` 10 s, `nodeStatusReportFrequency` 5 min).
pub const NODE_STATUS_UPDATE_PERIOD_MS: u64 = 10_000;
pub const NODE_STATUS_REPORT_PERIOD_MS: u64 = 300_000;
/// Hard eviction thresholds that set the pressure conditions (kubelet's defaults:
/// `memory.available<100Mi`, `nodefs.available<10%`; PID pressure at less than 10% free).
pub const MEMORY_AVAILABLE_BYTES_MIN: u64 = 100 * 1024 * 1024;
pub const DISK_AVAILABLE_PERCENT_MIN: u64 = 10;
pub const PIDS_AVAILABLE_PERCENT_MIN: u64 = 10;

/// Longest line the container shim writes as one log record; longer output is split into
/// partial (`P`) records, as the CRI log format does.
pub const LOG_LINE_BYTES_MAX: usize = 16 * 1024;
/// A container's log file is rotated (to `<n>.log.1`) past this size (kubelet's
/// `containerLogMaxSize`, 10 Mi).
pub const LOG_FILE_BYTES_MAX: u64 = 10 * 1024 * 1024;
/// `tailLines` larger than this is served as this many lines (the ring the tail is kept in).
pub const LOG_TAIL_LINES_MAX: usize = 100_000;
/// How often a followed log is checked for new output.
pub const LOG_FOLLOW_POLL_MS: u64 = 200;
/// Chunks of a log response queued for a slow reader, and the size of one chunk.
pub const LOG_RESPONSE_CHUNKS_BUFFERED: usize = 16;
pub const LOG_RESPONSE_CHUNK_BYTES_MAX: usize = 64 * 1024;

/// Connections the agent's HTTPS server serves at once.
pub const SERVER_CONNECTIONS_MAX: usize = 256;
/// Time a client has to finish the TLS handshake and to send its request headers.
pub const SERVER_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
pub const SERVER_HEADER_READ_TIMEOUT_MS: u64 = 10_000;

/// How long a started container shim has to report its container's pid (or its failure).
pub const SHIM_START_TIMEOUT_MS: u64 = 10_000;
/// Output kept from an exec of a probe command or a start error message.
pub const EXEC_OUTPUT_BYTES_MAX: usize = PROBE_OUTPUT_BYTES_MAX;

/// `kubectl exec` sessions the agent serves at once; more are refused with 429.
pub const EXEC_SESSIONS_MAX: usize = 64;
/// Bytes of one WebSocket message an exec client may send (stdin chunks, resizes).
pub const EXEC_MESSAGE_BYTES_MAX: usize = 1024 * 1024;
/// Bytes read from an exec's stdout or stderr per message sent to the client.
pub const EXEC_CHUNK_BYTES_MAX: usize = 32 * 1024;
/// Terminal resizes queued for a runtime that has not applied the previous ones.
pub const EXEC_RESIZES_BUFFERED: usize = 4;
/// How long an exec's output may keep flowing after its process exited (a background child
/// holding the pipe open) before the session ends anyway.
pub const EXEC_OUTPUT_DRAIN_MS: u64 = 2_000;

const _: () = assert!(POD_IPS_MAX >= PODS_MAX);
const _: () = assert!(RESTART_BACKOFF_INITIAL_MS <= RESTART_BACKOFF_MAX_MS);
const _: () = assert!(TERMINATION_GRACE_SECONDS_MIN >= 1);
const _: () = assert!(LOG_LINE_BYTES_MAX <= LOG_RESPONSE_CHUNK_BYTES_MAX);
const _: () = assert!((LOG_LINE_BYTES_MAX as u64) < LOG_FILE_BYTES_MAX);
const _: () = assert!(NODE_STATUS_UPDATE_PERIOD_MS <= NODE_STATUS_REPORT_PERIOD_MS);
const _: () = assert!(LOG_FOLLOW_POLL_MS < POD_SYNC_PERIOD_MS);
