//! Criterion micro-benchmarks of the MVCC engine over the real RocksDB engine in a temp dir:
//! puts (one, and batches as the apply loop commits them), ranges (one key, a 10k-key prefix,
//! count-only) and one compaction of every key's history, each on a store of
//! `SKIFF_BENCH_KEYS` keys (default 1,000,000).
//!
//! Requests go through the store's public API exactly as the state machine applies them:
//! `mvcc::apply` into an [`Overlay`] over the engine, then one `KvEngine::write` of the
//! overlay's batch with `Durability::Buffered` (the Raft log's append is what syncs). Ranges read
//! through an engine snapshot, as the server does. Each group builds its store once, the first
//! time one of its benchmarks runs (so a filter that skips a group skips its set-up), and
//! removes it at the end. Temp dirs follow `TMPDIR`. How to run: `docs/benchmarks.md`.

use std::cell::OnceCell;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use store::engine::{BatchOp, Durability, KvEngine, RocksEngine, WriteBatch};
use store::limits::PROPOSAL_BATCH_LEN_MAX;
use store::mvcc::{self, CompactionRequest, Overlay, PutRequest, RangeRequest, WriteRequest};

/// Keys in every group's store unless `SKIFF_BENCH_KEYS` says otherwise.
const KEYS_DEFAULT: u64 = 1_000_000;
/// Bytes of every value (the `store-load` generator's default).
const VALUE_BYTES: usize = 256;
/// Puts per engine write while building a store (not measured).
const FIXTURE_BATCH_LEN: u64 = 4096;
/// Keys a prefix range covers: `key/` then the first four of eight digits.
const PREFIX_KEYS: u64 = 10_000;
/// Batch sizes of the batched put benchmark: a small batch, and a full Raft entry's worth.
const PUT_BATCH_LENS: [usize; 2] = [16, PROPOSAL_BATCH_LEN_MAX];
/// Steps between consecutive keys the put and get benchmarks touch: a prime, so they walk the
/// whole key space in a scattered order instead of hitting neighbouring (cached) blocks.
const KEY_STRIDE: u64 = 7_919;

fn key_count() -> u64 {
    match std::env::var("SKIFF_BENCH_KEYS") {
        Ok(text) => match text.parse::<u64>() {
            Ok(keys) if (1..100_000_000).contains(&keys) => keys,
            _ => panic!("SKIFF_BENCH_KEYS={text:?}: expected a key count from 1 to 99,999,999"),
        },
        Err(_) => KEYS_DEFAULT,
    }
}

/// Key `index`: eight digits, so keys sort as their indexes and four digits name 10k keys.
fn key(index: u64) -> Vec<u8> {
    format!("key/{index:08}").into_bytes()
}

/// Incompressible bytes (xorshift), so RocksDB gains nothing from compressing values.
fn value(seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..VALUE_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn put_request(index: u64, value: &[u8]) -> WriteRequest {
    WriteRequest::Put(PutRequest {
        key: key(index),
        value: value.to_vec(),
        ..PutRequest::default()
    })
}

/// Applies requests on top of the engine as one batch, as the state machine applies the
/// requests of the entries it is handed.
fn apply_batch<'r>(engine: &RocksEngine, requests: impl Iterator<Item = &'r WriteRequest>) {
    let mut overlay = Overlay::new(engine);
    for request in requests {
        mvcc::apply(&mut overlay, request).expect("apply");
    }
    engine.write(overlay.into_batch(), Durability::Buffered).expect("write");
}

/// A store in a temp dir: `keys` keys, each written `versions` times.
struct Fixture {
    dir: tempfile::TempDir,
    engine: RocksEngine,
    keys: u64,
}

impl Fixture {
    fn build(keys: u64, versions: u64) -> Fixture {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let engine = RocksEngine::open(&dir.path().join("db")).expect("open rocksdb");
        let started = Instant::now();
        eprintln!("fixture: writing {keys} keys x {versions} versions of {VALUE_BYTES} B");
        let value = value(1);
        for _ in 0..versions {
            let mut start = 0;
            while start < keys {
                let end = (start + FIXTURE_BATCH_LEN).min(keys);
                let requests: Vec<WriteRequest> =
                    (start..end).map(|i| put_request(i, &value)).collect();
                apply_batch(&engine, requests.iter());
                start = end;
            }
        }
        // Every measurement starts from the same shape: all data in fully compacted SST files.
        engine.defragment().expect("full compaction");
        eprintln!("fixture: ready in {:.1} s", started.elapsed().as_secs_f64());
        Fixture { dir, engine, keys }
    }

    /// Closes the store, so that copies of its directory can be made.
    fn close(self) -> ClosedFixture {
        drop(self.engine);
        ClosedFixture { dir: self.dir, keys: self.keys }
    }
}

/// A built store whose engine is closed: the pristine original that copies are made from.
struct ClosedFixture {
    dir: tempfile::TempDir,
    keys: u64,
}

impl ClosedFixture {
    /// Opens a copy of the store; the copy is removed when the returned directory is dropped.
    fn open_copy(&self) -> (tempfile::TempDir, RocksEngine) {
        let copy = tempfile::TempDir::new_in(self.dir.path()).expect("temp dir");
        link_or_copy_db(&self.dir.path().join("db"), copy.path());
        let engine = RocksEngine::open(copy.path()).expect("open the copy");
        (copy, engine)
    }
}

/// A prefix covering `PREFIX_KEYS` keys in the middle of a store of `keys` keys (fewer if the
/// store is smaller), its range end, and how many keys it covers.
fn prefix_range(keys: u64) -> (Vec<u8>, Vec<u8>, u64) {
    let block = keys / 2 / PREFIX_KEYS;
    let prefix = format!("key/{block:04}").into_bytes();
    let range_end = format!("key/{:04}", block + 1).into_bytes();
    let covered = keys.saturating_sub(block * PREFIX_KEYS).min(PREFIX_KEYS);
    (prefix, range_end, covered)
}

/// The next key index of a scattered walk over `keys` keys.
fn next_index(index: &mut u64, keys: u64) -> u64 {
    *index = (*index + KEY_STRIDE) % keys;
    *index
}

fn range_benches(c: &mut Criterion) {
    let keys = key_count();
    let cell = OnceCell::new();
    let fixture = || cell.get_or_init(|| Fixture::build(keys, 1));
    let mut group = c.benchmark_group(format!("range/{keys}-keys"));
    group.throughput(Throughput::Elements(1));
    group.bench_function("one-key", |b| {
        let fixture = fixture();
        let mut index = 0;
        b.iter(|| {
            let request =
                RangeRequest { key: key(next_index(&mut index, keys)), ..RangeRequest::default() };
            let response = mvcc::range(fixture.engine.snapshot().as_ref(), &request);
            assert_eq!(black_box(response.expect("range")).kvs.len(), 1);
        });
    });
    // Scans of thousands of keys: fewer, longer samples.
    group.sample_size(20);
    let (prefix, range_end, covered) = prefix_range(keys);
    group.throughput(Throughput::Elements(covered));
    for (name, count_only) in [("prefix-10k", false), ("prefix-10k-count-only", true)] {
        let request = RangeRequest {
            key: prefix.clone(),
            range_end: range_end.clone(),
            count_only,
            ..RangeRequest::default()
        };
        group.bench_function(name, |b| {
            let fixture = fixture();
            b.iter(|| {
                let response = mvcc::range(fixture.engine.snapshot().as_ref(), &request);
                let response = black_box(response.expect("range"));
                assert_eq!(response.count, covered as i64);
            });
        });
    }
    group.sample_size(10);
    group.throughput(Throughput::Elements(keys));
    group.bench_function("all-count-only", |b| {
        let fixture = fixture();
        let request = RangeRequest {
            key: vec![0],
            range_end: vec![0],
            count_only: true,
            ..RangeRequest::default()
        };
        b.iter(|| {
            let response = mvcc::range(fixture.engine.snapshot().as_ref(), &request);
            assert_eq!(black_box(response.expect("range")).count, keys as i64);
        });
    });
    group.finish();
}

fn put_benches(c: &mut Criterion) {
    let keys = key_count();
    let cell = OnceCell::new();
    let fixture = || cell.get_or_init(|| Fixture::build(keys, 1));
    let mut group = c.benchmark_group(format!("put/{keys}-keys"));
    let value = value(2);
    group.throughput(Throughput::Elements(1));
    // Each put overwrites an existing key, so every key's history grows as samples run.
    group.bench_function("one", |b| {
        let fixture = fixture();
        let mut index = 0;
        b.iter(|| {
            let request = put_request(next_index(&mut index, keys), &value);
            apply_batch(&fixture.engine, std::iter::once(&request));
        });
    });
    for len in PUT_BATCH_LENS {
        group.throughput(Throughput::Elements(len as u64));
        group.bench_function(format!("batch-{len}"), |b| {
            let fixture = fixture();
            let mut index = 0;
            b.iter(|| {
                let requests: Vec<WriteRequest> =
                    (0..len).map(|_| put_request(next_index(&mut index, keys), &value)).collect();
                apply_batch(&fixture.engine, requests.iter());
            });
        });
    }
    group.finish();
}

/// One compaction at the current revision of a store whose every key has two versions: it
/// drops the older version of each (one `KvIndex` and one `KvRevision` entry per key).
fn compaction_benches(c: &mut Criterion) {
    let keys = key_count();
    let cell = OnceCell::new();
    let fixture = || cell.get_or_init(|| Fixture::build(keys, 2).close());
    let mut group = c.benchmark_group(format!("compaction/{keys}-keys-x2-versions"));
    // Each sample is one compaction, seconds long at a million keys.
    group.sample_size(10).sampling_mode(SamplingMode::Flat).measurement_time(secs(1));
    group.throughput(Throughput::Elements(keys));
    // Deciding what goes (a scan of the whole index) and building the batch, without writing
    // it: repeatable on one copy of the store.
    group.bench_function("apply-without-write", |b| {
        let (_copy, engine) = fixture().open_copy();
        let revision = mvcc::current_revision(&engine).expect("current revision");
        let request = WriteRequest::Compaction(CompactionRequest { revision });
        b.iter(|| {
            let mut overlay = Overlay::new(&engine);
            mvcc::apply(&mut overlay, &request).expect("compaction");
            black_box(overlay.into_batch());
        });
    });
    // The whole compaction as the state machine runs it, written to the engine. Writing it
    // destroys the history, so every iteration runs on a fresh copy of the store (made, and
    // opened, outside the measurement).
    group.bench_function("apply-and-write", |b| {
        let fixture = fixture();
        b.iter_custom(|iterations| {
            let mut measured = Duration::ZERO;
            for _ in 0..iterations {
                measured += compact_a_copy(fixture);
            }
            measured
        });
    });
    group.finish();
}

fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

/// Compacts a fresh copy of the store at its current revision; returns how long the
/// compaction (apply, then the engine write) took.
fn compact_a_copy(fixture: &ClosedFixture) -> Duration {
    let (copy, engine) = fixture.open_copy();
    let revision = mvcc::current_revision(&engine).expect("current revision");
    let request = WriteRequest::Compaction(CompactionRequest { revision });
    let started = Instant::now();
    let mut overlay = Overlay::new(&engine);
    mvcc::apply(&mut overlay, &request).expect("compaction");
    let batch = overlay.into_batch();
    let elapsed = started.elapsed();
    // Checked outside the measurement.
    assert_eq!(deleted(&batch), 2 * fixture.keys, "one index and one revision entry per key");
    let started = Instant::now();
    engine.write(batch, Durability::Buffered).expect("write");
    let elapsed = elapsed + started.elapsed();
    drop(engine);
    drop(copy);
    elapsed
}

fn deleted(batch: &WriteBatch) -> u64 {
    batch.ops.iter().filter(|op| matches!(op, BatchOp::Delete { .. })).count() as u64
}

/// A copy of a closed RocksDB directory, as RocksDB's own checkpoints make one: SST files are
/// immutable once written, so they are hard-linked; the rest (manifest, WAL, options) is copied.
fn link_or_copy_db(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read the store's directory") {
        let path = entry.expect("directory entry").path();
        let target = to.join(path.file_name().expect("a file name"));
        if path.extension().is_some_and(|e| e == "sst") {
            std::fs::hard_link(&path, &target).expect("hard-link an SST file");
        } else if path.is_file() {
            std::fs::copy(&path, &target).expect("copy a file");
        }
    }
}

criterion_group!(benches, range_benches, put_benches, compaction_benches);
criterion_main!(benches);
