//! Every bound the store enforces, in one place. Defaults follow etcd where etcd has one.

/// Largest client request accepted (etcd's `--max-request-bytes` default, 1.5 MiB).
pub const REQUEST_BYTES_MAX: usize = 1536 * 1024;
/// gRPC frames may carry a request plus protobuf overhead; responses may be larger still.
pub const GRPC_RECV_BYTES_MAX: usize = REQUEST_BYTES_MAX + 512 * 1024;
/// Responses (ranges) may be large: etcd's client default is effectively unbounded; we cap them.
pub const GRPC_SEND_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Operations in one txn, counted per branch as etcd does (`--max-txn-ops`).
pub const TXN_OPS_MAX: usize = 128;
/// Default backend quota (etcd's `--quota-backend-bytes` default, 2 GiB), past which the
/// NOSPACE alarm is raised.
pub const BACKEND_BYTES_QUOTA: u64 = 2 * 1024 * 1024 * 1024;
/// How long the quota check reuses a storage size it read.
pub const QUOTA_SIZE_REFRESH_MS: u64 = 100;

/// Client write requests waiting to be proposed; callers wait (backpressure) when full.
pub const PROPOSAL_QUEUE_LEN_MAX: usize = 4096;
/// Requests folded into one Raft entry (group commit).
pub const PROPOSAL_BATCH_LEN_MAX: usize = 256;
/// Bytes of requests folded into one Raft entry.
pub const PROPOSAL_BATCH_BYTES_MAX: usize = 2 * 1024 * 1024;
/// Raft entries proposed but not yet applied at once (the pipeline depth). Kept small on
/// purpose: openraft 0.9's core waits for each log append's fsync before it does anything
/// else, so entries cannot overlap much; writes that wait for a slot are folded into the next
/// entry instead. Measured at 1, 2, 4, 8, 16 (docs/benchmarks.md, run 4): 2 was best or
/// within noise of best at 100 and 1000 clients on 1 and 3 members.
pub const PROPOSALS_IN_FLIGHT_MAX: usize = 2;
/// Requests in a batch of committed entries that the state machine applies on its async task
/// when all are point writes (more, or heavier ones, go to a blocking thread).
pub const APPLY_INLINE_REQUESTS_MAX: usize = 64;
/// Raft log appends written and waiting for the flusher's next WAL sync; one more waits.
pub const LOG_FLUSHES_QUEUED_MAX: usize = 1024;
/// Recently appended Raft log entries kept in memory, so that applying and replicating them
/// does not read them back from the engine: at most this many entries...
pub const LOG_CACHE_ENTRIES_MAX: usize = 4096;
/// ...and at most this many encoded bytes (the oldest are dropped first).
pub const LOG_CACHE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Raft entries between state-machine snapshots.
pub const SNAPSHOT_LOGS_SINCE_LAST: u64 = 10_000;
/// Log entries kept after a snapshot for followers that are only a little behind.
pub const LOGS_KEPT_AFTER_SNAPSHOT: u64 = 1_000;
/// Bytes per snapshot chunk sent to a follower.
pub const SNAPSHOT_CHUNK_BYTES_MAX: u64 = 1024 * 1024;
/// Raft entries sent in one AppendEntries.
pub const APPEND_ENTRIES_LEN_MAX: u64 = 64;

/// How long a client request may wait for its Raft round (etcd answers "request timed out").
pub const REQUEST_TIMEOUT_MS: u64 = 7_000;
/// Peer RPC timeout for AppendEntries and Vote.
pub const PEER_RPC_TIMEOUT_MS: u64 = 1_000;
/// Peer RPC timeout for one snapshot chunk.
pub const PEER_SNAPSHOT_RPC_TIMEOUT_MS: u64 = 10_000;

const _: () = assert!(PROPOSAL_BATCH_BYTES_MAX >= REQUEST_BYTES_MAX);
const _: () = assert!(GRPC_RECV_BYTES_MAX > REQUEST_BYTES_MAX);
const _: () = assert!(LOGS_KEPT_AFTER_SNAPSHOT < SNAPSHOT_LOGS_SINCE_LAST);
const _: () = assert!(PROPOSAL_BATCH_LEN_MAX <= PROPOSAL_QUEUE_LEN_MAX);

/// Largest peer message: a batch of entries or one snapshot chunk, with room to spare.
/// An AppendEntries carries at most `APPEND_ENTRIES_LEN_MAX` entries of at most
/// `PROPOSAL_BATCH_BYTES_MAX` each (a batch never grows past it; one request is smaller).
pub const PEER_MESSAGE_BYTES_MAX: usize = 192 * 1024 * 1024;
const _: () = assert!(PEER_MESSAGE_BYTES_MAX as u64 > 2 * SNAPSHOT_CHUNK_BYTES_MAX);
const _: () = assert!(
    PEER_MESSAGE_BYTES_MAX as u64
        > APPEND_ENTRIES_LEN_MAX * PROPOSAL_BATCH_BYTES_MAX as u64 * 5 / 4
);

/// How often the watch syncer looks at unsynced watchers even without a nudge.
pub const WATCH_SYNC_INTERVAL_MS: u64 = 100;
/// Events read from history for one unsynced watcher per catch-up round.
pub const WATCH_CATCHUP_EVENTS_MAX: usize = 1000;
/// Notifications buffered per watch stream (embedded watcher or gRPC stream) before its
/// watchers are moved to the unsynced set.
pub const WATCH_STREAM_BUFFER_LEN: usize = 128;
/// Watchers one gRPC watch stream may hold.
pub const WATCHERS_PER_STREAM_MAX: usize = 4096;
/// Interval of progress notifications for watchers that asked for them (etcd: 10 minutes).
pub const WATCH_PROGRESS_NOTIFY_INTERVAL_MS: u64 = 600_000;
/// A watch response larger than this is split into fragments when the watcher allows it.
pub const WATCH_RESPONSE_BYTES_MAX: usize = REQUEST_BYTES_MAX;
const _: () = assert!(WATCH_CATCHUP_EVENTS_MAX >= 1 && WATCH_STREAM_BUFFER_LEN >= 2);

/// How often the leader looks for expired leases (etcd: 500 ms).
pub const LEASE_EXPIRY_TICK_MS: u64 = 500;
/// Revokes of expired leases the leader starts per tick, and has in flight at once (etcd
/// revokes at most 1000 leases a second).
pub const LEASE_REVOKES_PER_TICK_MAX: usize = 500;
/// An expired lease whose revoke did not land is handed out again after this (etcd: 3 s).
pub const LEASE_REVOKE_RETRY_MS: u64 = 3_000;
/// Keep-alive responses buffered per gRPC keep-alive stream.
pub const LEASE_KEEP_ALIVE_STREAM_BUFFER_LEN: usize = 16;
const _: () = assert!(LEASE_EXPIRY_TICK_MS < LEASE_REVOKE_RETRY_MS);

/// Bytes of backup data per `Maintenance.Snapshot` response message (etcd sends 32 KiB).
pub const BACKUP_STREAM_CHUNK_BYTES: usize = 32 * 1024;
/// A backup stream's length before its trailing sha256 is a multiple of this (etcdctl 3.4's
/// `snapshot save` checks `length % 512 == 32`).
pub const BACKUP_ALIGNMENT_BYTES: usize = 512;
const _: () = assert!(BACKUP_STREAM_CHUNK_BYTES < GRPC_SEND_BYTES_MAX);
const _: () = assert!(BACKUP_STREAM_CHUNK_BYTES.is_multiple_of(BACKUP_ALIGNMENT_BYTES));
/// Bytes of restored entries written per engine batch while restoring a backup.
pub const RESTORE_BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;

/// How long a member that learns it was removed keeps serving before it stops, so answers in
/// flight (a leader's reply to its own removal) still reach their clients.
pub const REMOVED_MEMBER_STOP_DELAY_MS: u64 = 1_000;
/// How long a membership change waits for the previous one to commit before failing.
pub const MEMBERSHIP_IN_PROGRESS_WAIT_MS: u64 = 5_000;
