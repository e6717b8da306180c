//! Criterion micro-benchmarks of watch matching: `WatchHub::publish` of one put event to
//! synced watchers, as the state machine publishes each applied batch.
//!
//! Cases: 10,000 watchers each on its own key, or its own prefix, with the event matching one
//! of them; and one event fanned out to 1,000 watchers of the same prefix. Every watcher has its
//! own channel of the production size (`WATCH_STREAM_BUFFER_LEN`); what a publish delivered is
//! drained outside the measurement, so no watcher ever falls behind (which would move it to the
//! unsynced set and change what is measured). Publishing reads no storage, so the hub's engine
//! (used only to catch slow watchers up) is the in-memory one. How to run:
//! `docs/benchmarks.md`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use store::engine::{KvEngine, MemoryEngine};
use store::limits::WATCH_STREAM_BUFFER_LEN;
use store::metrics::Metrics;
use store::mvcc::{Event, KeyValue};
use store::watch::{Notification, WatchHub, WatchSpec};
use tokio::sync::mpsc;

/// Watchers of the matching benchmarks, each on its own key or prefix.
const DISTINCT_WATCHERS: usize = 10_000;
/// Watchers of the fan-out benchmark, all on one prefix.
const FAN_OUT_WATCHERS: usize = 1_000;
/// Bytes of the event's value (the `store-load` generator's default).
const VALUE_BYTES: usize = 256;

/// A hub at revision 1 with one watcher per spec; returns the hub and each watcher's receiver.
fn hub_with(specs: Vec<WatchSpec>) -> (WatchHub, Vec<mpsc::Receiver<Notification>>) {
    let engine: Arc<dyn KvEngine> = Arc::new(MemoryEngine::new());
    let hub = WatchHub::new(engine, 1, Metrics::new());
    let watchers = specs.len();
    let receivers = specs
        .into_iter()
        .map(|spec| {
            let (sender, receiver) = mpsc::channel(WATCH_STREAM_BUFFER_LEN);
            hub.watch(spec, sender);
            receiver
        })
        .collect();
    assert_eq!(hub.watcher_counts(), (watchers, 0), "every watcher starts synced");
    (hub, receivers)
}

fn single_key(key: String) -> WatchSpec {
    WatchSpec { key: key.into_bytes(), ..WatchSpec::default() }
}

/// Every key starting with `prefix` (etcd's `--prefix`: the range end is the prefix with its
/// last byte incremented; the prefixes here end in `/`).
fn prefix(prefix: &str) -> WatchSpec {
    let mut range_end = prefix.as_bytes().to_vec();
    *range_end.last_mut().expect("a non-empty prefix") += 1;
    WatchSpec { key: prefix.as_bytes().to_vec(), range_end, ..WatchSpec::default() }
}

/// A put of `key` at `revision` that updates an existing version (so it carries a prev_kv, which
/// watchers that did not ask for it have stripped).
fn put_event(key: &[u8], revision: i64) -> Event {
    let kv = KeyValue {
        key: key.to_vec(),
        create_revision: 1,
        mod_revision: revision,
        version: 2,
        value: vec![0x5a; VALUE_BYTES],
        lease: 0,
    };
    let previous = KeyValue { mod_revision: revision - 1, version: 1, ..kv.clone() };
    Event::put(kv, Some(previous))
}

/// Publishes one event per iteration (the key `key_of(i)` chooses) and times only the
/// publish; then empties the receivers `drain_of(i)` names, outside the measurement.
fn publish_loop(
    hub: &WatchHub,
    receivers: &mut [mpsc::Receiver<Notification>],
    iterations: u64,
    key_of: impl Fn(u64) -> Vec<u8>,
    drain_of: impl Fn(u64) -> std::ops::Range<usize>,
    delivered_per_event: usize,
) -> Duration {
    let mut measured = Duration::ZERO;
    for i in 0..iterations {
        let revision = hub.current_revision() + 1;
        let events = [put_event(&key_of(i), revision)];
        let started = Instant::now();
        hub.publish(black_box(&events), revision);
        measured += started.elapsed();
        let mut delivered = 0;
        for receiver in &mut receivers[drain_of(i)] {
            while receiver.try_recv().is_ok() {
                delivered += 1;
            }
        }
        assert_eq!(delivered, delivered_per_event, "every matching watcher got the event");
    }
    measured
}

fn matching_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group(format!("watch/{DISTINCT_WATCHERS}-watchers"));
    group.throughput(Throughput::Elements(1));
    let count = DISTINCT_WATCHERS as u64;
    let nth = |i: u64| (i % count) as usize;
    group.bench_function("distinct-keys", |b| {
        let specs = (0..DISTINCT_WATCHERS).map(|n| single_key(format!("key/{n:05}"))).collect();
        let (hub, mut receivers) = hub_with(specs);
        b.iter_custom(|iterations| {
            let key_of = |i| format!("key/{:05}", nth(i)).into_bytes();
            let drain_of = |i| nth(i)..nth(i) + 1;
            publish_loop(&hub, &mut receivers, iterations, key_of, drain_of, 1)
        });
    });
    group.bench_function("distinct-prefixes", |b| {
        let specs = (0..DISTINCT_WATCHERS).map(|n| prefix(&format!("pods/ns{n:05}/"))).collect();
        let (hub, mut receivers) = hub_with(specs);
        b.iter_custom(|iterations| {
            let key_of = |i| format!("pods/ns{:05}/pod", nth(i)).into_bytes();
            let drain_of = |i| nth(i)..nth(i) + 1;
            publish_loop(&hub, &mut receivers, iterations, key_of, drain_of, 1)
        });
    });
    group.finish();
}

fn fan_out_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group(format!("watch/{FAN_OUT_WATCHERS}-watchers-one-prefix"));
    // Throughput in deliveries: one event reaches every watcher.
    group.throughput(Throughput::Elements(FAN_OUT_WATCHERS as u64));
    group.bench_function("fan-out", |b| {
        let (hub, mut receivers) = hub_with(vec![prefix("pods/"); FAN_OUT_WATCHERS]);
        b.iter_custom(|iterations| {
            let key_of = |i| format!("pods/default/pod-{i}").into_bytes();
            let drain_of = |_| 0..FAN_OUT_WATCHERS;
            publish_loop(&hub, &mut receivers, iterations, key_of, drain_of, FAN_OUT_WATCHERS)
        });
    });
    group.finish();
}

criterion_group!(benches, matching_benches, fan_out_benches);
criterion_main!(benches);
