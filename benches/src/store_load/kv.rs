//! The KV workloads: `put`, `range`, `mixed` and `txn-put` (compare-and-swap with retries).
//!
//! `put --sequential-keys` writes the key space in key order (loading a store); `range
//! --range-keys N` reads N consecutive keys per range and counts a range that returned fewer as
//! an error (`ShortRange`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{ensure, Result};
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::json;
use store::proto::etcdserverpb as pb;
use store::proto::etcdserverpb::kv_client::KvClient;
use tokio::time::Instant;
use tonic::transport::Channel;

use super::record::{Latencies, Row};
use super::{Consistency, Outcome, Run, Workload};
use crate::limits;

/// The latency series a KV run keeps.
#[derive(Default)]
struct Series {
    all: Latencies,
    reads: Latencies,
    writes: Latencies,
    /// Failed compare-and-swap attempts (`txn-put`).
    conflicts: AtomicU64,
    /// Every txn sent (`txn-put`).
    attempts: AtomicU64,
}

pub async fn run(run: Arc<Run>) -> Result<Outcome> {
    let workload = run.flags.workload;
    if workload != Workload::Put && !run.flags.no_fill {
        prepare(&run).await?;
    }
    let series = Arc::new(Series::default());
    let progress = run.flags.progress.then(|| {
        let series = series.clone();
        super::spawn_progress(run.flags.total, move || series.all.count())
    });
    let started = Instant::now();
    let mut clients = Vec::with_capacity(run.flags.clients);
    for client in 0..run.flags.clients {
        let (run, series) = (run.clone(), series.clone());
        clients.push(tokio::spawn(async move {
            if workload == Workload::TxnPut {
                txn_client(&run, &series, client).await;
            } else {
                kv_client(&run, &series, client).await;
            }
        }));
    }
    for client in clients {
        client.await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(progress) = progress {
        progress.abort();
    }
    let row = |name: &str, latencies: &Latencies| {
        Row::new(name, latencies.count(), seconds, latencies.summary())
    };
    let mut outcome = Outcome { rows: Vec::new(), extra: Default::default(), notes: Vec::new() };
    match workload {
        Workload::Put => outcome.rows.push(row("put", &series.writes)),
        Workload::Range => outcome.rows.push(row("range", &series.reads)),
        Workload::Mixed => outcome.rows.extend([
            row("all", &series.all),
            row("reads", &series.reads),
            row("writes", &series.writes),
        ]),
        Workload::TxnPut => {
            outcome.rows.push(row("txn-put", &series.writes));
            let conflicts = series.conflicts.load(Ordering::Relaxed);
            let attempts = series.attempts.load(Ordering::Relaxed);
            outcome.notes.push(format!("txn attempts {attempts}, conflicts {conflicts}"));
            outcome
                .extra
                .insert("txn".into(), json!({"attempts": attempts, "conflicts": conflicts}));
        }
        other => unreachable!("{other:?} is not a KV workload"),
    }
    Ok(outcome)
}

fn range_request(run: &Run, key: Vec<u8>) -> pb::RangeRequest {
    let serializable = run.flags.consistency == Consistency::S;
    pb::RangeRequest { key, serializable, ..Default::default() }
}

/// A KV client on connection `i` that accepts large range responses.
pub fn kv_client_on(run: &Run, i: usize) -> KvClient<Channel> {
    KvClient::new(run.channel(i)).max_decoding_message_size(limits::RESPONSE_BYTES_MAX)
}

/// A get of `key`, or with `--range-keys` N > 1 a range of N consecutive keys from a random
/// start.
fn range_of(run: &Run, key: Vec<u8>, rng: &mut StdRng) -> pb::RangeRequest {
    let keys = run.flags.range_keys;
    if keys <= 1 {
        return range_request(run, key);
    }
    let start = rng.gen_range(0..=run.flags.key_space_size - keys);
    pb::RangeRequest { range_end: run.key(start + keys), ..range_request(run, run.key(start)) }
}

/// Runs one range; a range that returns fewer keys than it covers counts as an error.
async fn range_once(run: &Run, kv: &mut KvClient<Channel>, key: Vec<u8>, rng: &mut StdRng) -> bool {
    let request = range_of(run, key, rng);
    let Some(response) = run.call(kv.range(request)).await else {
        return false;
    };
    let expected = run.flags.range_keys;
    if expected > 1 && response.kvs.len() as u64 != expected {
        let message = format!("a range of {expected} keys returned {}", response.kvs.len());
        run.errors.count("ShortRange", &message);
        return false;
    }
    true
}

/// `put`, `range` and `mixed`: one operation at a time until the budget is spent.
async fn kv_client(run: &Run, series: &Series, client: usize) {
    let mut kv = kv_client_on(run, client);
    let mut rng = run.rng(client);
    let value = run.value(&mut rng);
    while run.budget.take() {
        let (_, key) =
            if run.flags.sequential_keys { run.sequential_key() } else { run.random_key(&mut rng) };
        let read = match run.flags.workload {
            Workload::Range => true,
            Workload::Mixed => rng.gen_bool(run.flags.read_ratio),
            _ => false,
        };
        let started = Instant::now();
        let done = if read {
            range_once(run, &mut kv, key, &mut rng).await
        } else {
            let put = pb::PutRequest { key, value: value.clone(), ..Default::default() };
            run.call(kv.put(put)).await.is_some()
        };
        if done {
            let elapsed = started.elapsed();
            series.all.record(elapsed);
            if read { &series.reads } else { &series.writes }.record(elapsed);
        }
    }
}

/// `txn-put`: each operation is one successful compare-and-swap, retries included. A client
/// remembers the mod revision it last saw per key, as a caching writer (the API server) does;
/// a key it has not seen yet is read first, outside the timing.
async fn txn_client(run: &Run, series: &Series, client: usize) {
    let mut kv = KvClient::new(run.channel(client));
    let mut rng = run.rng(client);
    let value = run.value(&mut rng);
    let mut seen: HashMap<u64, i64> = HashMap::new();
    while run.budget.take() {
        let (index, key) = run.random_key(&mut rng);
        let expected = match seen.get(&index) {
            Some(revision) => *revision,
            None => match run.call(kv.range(range_request(run, key.clone()))).await {
                Some(response) => response.kvs.first().map_or(0, |kv| kv.mod_revision),
                None => continue,
            },
        };
        let started = Instant::now();
        if let Some(revision) = compare_and_put(run, series, &mut kv, key, &value, expected).await {
            series.writes.record(started.elapsed());
            seen.insert(index, revision);
        } else {
            seen.remove(&index);
        }
    }
}

/// Puts `key` if its mod revision is `expected`; on a conflict takes the revision the txn's
/// failure branch read and tries again. Returns the put's revision.
async fn compare_and_put(
    run: &Run,
    series: &Series,
    kv: &mut KvClient<Channel>,
    key: Vec<u8>,
    value: &[u8],
    mut expected: i64,
) -> Option<i64> {
    use pb::compare::{CompareResult, CompareTarget, TargetUnion};
    use pb::request_op::Request;
    use pb::response_op::Response;
    for _ in 0..limits::TXN_ATTEMPTS_MAX {
        series.attempts.fetch_add(1, Ordering::Relaxed);
        let txn = pb::TxnRequest {
            compare: vec![pb::Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Mod as i32,
                key: key.clone(),
                target_union: Some(TargetUnion::ModRevision(expected)),
                ..Default::default()
            }],
            success: vec![pb::RequestOp {
                request: Some(Request::RequestPut(pb::PutRequest {
                    key: key.clone(),
                    value: value.to_vec(),
                    ..Default::default()
                })),
            }],
            failure: vec![pb::RequestOp {
                request: Some(Request::RequestRange(pb::RangeRequest {
                    key: key.clone(),
                    ..Default::default()
                })),
            }],
        };
        let response = run.call(kv.txn(txn)).await?;
        if response.succeeded {
            return Some(response.header.map_or(0, |h| h.revision));
        }
        series.conflicts.fetch_add(1, Ordering::Relaxed);
        expected = match response.responses.into_iter().next().and_then(|r| r.response) {
            Some(Response::ResponseRange(range)) => {
                range.kvs.first().map_or(0, |kv| kv.mod_revision)
            }
            _ => 0,
        };
    }
    run.errors.count("TxnAttemptsExhausted", "compare-and-swap kept conflicting");
    None
}

/// Writes every key of the key space once (not measured), so reads find values.
async fn prepare(run: &Arc<Run>) -> Result<()> {
    let keys = run.flags.key_space_size;
    let writers = limits::PREPARE_WRITERS_MAX.min(keys as usize).max(1);
    eprintln!("store-load: writing {keys} keys with {writers} writers before the run");
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(writers);
    for writer in 0..writers {
        let (run, next, failed) = (run.clone(), next.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut kv = KvClient::new(run.channel(writer));
            let value = run.value(&mut run.rng(writer));
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= keys || Instant::now() >= run.deadline {
                    return;
                }
                let put = pb::PutRequest {
                    key: run.key(index),
                    value: value.clone(),
                    ..Default::default()
                };
                if run.call(kv.put(put)).await.is_none() {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let failed = failed.load(Ordering::Relaxed);
    ensure!(failed == 0, "{failed} puts failed while filling the key space");
    ensure!(Instant::now() < run.deadline, "the deadline passed while filling the key space");
    Ok(())
}
