//! Every bound the load generators keep, in one place (the crate's `limits` module).

/// Largest latency a histogram records, in microseconds (one hour); longer ones are clamped.
pub const LATENCY_US_MAX: u64 = 3_600_000_000;
/// Significant decimal digits of the latency histograms (1 µs resolution below 1 ms).
pub const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;

/// Most connections a run opens.
pub const CONNS_MAX: usize = 1_000;
/// Most concurrent clients (tokio tasks) a run starts.
pub const CLIENTS_MAX: usize = 10_000;
/// Most watchers a `watch` run opens (each is its own gRPC stream).
pub const WATCHERS_MAX: usize = 10_000;
/// Most operations one run issues.
pub const OPS_MAX: u64 = 100_000_000;
/// Largest key and value the generator builds.
pub const KEY_BYTES_MAX: usize = 1_024;
pub const VALUE_BYTES_MAX: usize = 1_024 * 1_024;
/// Keys a client remembers the mod revision of (`txn-put`); at most the key space.
pub const KEY_SPACE_SIZE_MAX: u64 = 10_000_000;

/// Requests queued on one watch stream's request side (only its create request is sent).
pub const WATCH_REQUEST_BUFFER_LEN: usize = 4;
/// Events a watcher records per put issued; more (duplicates) are counted, not stored.
pub const WATCH_EVENTS_RECORDED_PER_PUT_MAX: u64 = 2;
/// Deliveries buffered between the `watch-latency` watcher and the putting loop.
pub const WATCH_LATENCY_EVENT_BUFFER_LEN: usize = 1_024;
/// How long watchers may take, after the last put is acknowledged, to deliver every event.
pub const WATCH_DRAIN_SECONDS_MAX: u64 = 60;
/// Compare-and-swap attempts for one `txn-put` operation before it counts as an error.
pub const TXN_ATTEMPTS_MAX: u32 = 100;
/// Concurrent writers filling the key space before a read workload.
pub const PREPARE_WRITERS_MAX: usize = 64;
/// Distinct error messages kept per gRPC code (the rest are counted only).
pub const ERROR_SAMPLES_PER_CODE_MAX: usize = 1;
/// How often `--progress` prints the operations completed so far.
pub const PROGRESS_INTERVAL_SECONDS: u64 = 5;
/// Largest response a KV client accepts: a range of many large values (10,000 keys of 1 KiB
/// is 10 MiB). Skiff sends at most 64 MiB (`store::limits::GRPC_SEND_BYTES_MAX`).
pub const RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// How often `catch-up` asks the member it waits for.
pub const CATCH_UP_POLL_MS: u64 = 10;
/// Put samples `compaction-pause` keeps (start and latency of each), over all clients; later
/// puts still run but are not recorded (the report says how many).
pub const PAUSE_SAMPLES_MAX: usize = 10_000_000;
/// The overall deadline is enforced this long after `--timeout-seconds`, for requests in flight
/// (each bounded by `--request-timeout-ms`) to finish.
pub const DEADLINE_GRACE_SECONDS: u64 = 15;

const _: () = assert!(PREPARE_WRITERS_MAX <= CLIENTS_MAX);
const _: () = assert!(WATCH_EVENTS_RECORDED_PER_PUT_MAX >= 1);
const _: () = assert!(RESPONSE_BYTES_MAX >= store::limits::GRPC_SEND_BYTES_MAX);
