//! Hub tests over the in-memory engine: live delivery, catch-up from history, slow watchers
//! moved aside and fed from storage without gaps or duplicates, compacted starts.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{Notification, WatchHub, WatchSpec};
use crate::engine::{Durability, KvEngine, MemoryEngine};
use crate::mvcc::{self, CompactionRequest, Event, Overlay, PutRequest, WriteRequest};

struct Fixture {
    engine: Arc<dyn KvEngine>,
    hub: WatchHub,
}

impl Fixture {
    fn new() -> Fixture {
        let engine: Arc<dyn KvEngine> = Arc::new(MemoryEngine::new());
        let hub = WatchHub::new(engine.clone(), 1, crate::metrics::Metrics::new());
        Fixture { engine, hub }
    }

    /// Applies one request, commits it, then publishes its events as the state machine does.
    fn write(&self, request: WriteRequest) {
        let (events, batch) = {
            let mut overlay = Overlay::new(&*self.engine);
            let (_, events) = mvcc::apply(&mut overlay, &request).expect("apply");
            (events, overlay.into_batch())
        };
        self.engine.write(batch, Durability::Buffered).expect("write");
        let revision = mvcc::current_revision(&*self.engine).expect("revision");
        self.hub.publish(&events, revision);
    }

    fn put(&self, key: &str, value: &str) {
        self.write(WriteRequest::Put(PutRequest {
            key: key.into(),
            value: value.into(),
            ..PutRequest::default()
        }));
    }
}

/// Keys with the prefix `key` (every test uses "k", so the end is "l").
fn spec(key: &str, start_revision: i64) -> WatchSpec {
    WatchSpec { key: key.into(), range_end: b"l".to_vec(), start_revision, ..WatchSpec::default() }
}

/// Everything delivered so far, as (key, revision) pairs, checked for order.
fn drain(receiver: &mut mpsc::Receiver<Notification>) -> Vec<(String, i64)> {
    let mut seen = Vec::new();
    while let Ok(notification) = receiver.try_recv() {
        match notification {
            Notification::Events { events, .. } => seen.extend(events.iter().map(|e: &Event| {
                (String::from_utf8_lossy(&e.kv.key).into_owned(), e.kv.mod_revision)
            })),
            Notification::Compacted { .. } => panic!("unexpected compaction"),
        }
    }
    seen
}

fn keys(range: std::ops::Range<i64>) -> Vec<(String, i64)> {
    range.map(|r| (format!("k{r}"), r)).collect()
}

#[test]
fn live_watchers_get_new_events_once_in_order() {
    let f = Fixture::new();
    let (sender, mut receiver) = mpsc::channel(16);
    f.hub.watch(spec("k", 0), sender);
    for r in 2..6 {
        f.put(&format!("k{r}"), "v");
    }
    f.put("other", "v");
    assert_eq!(drain(&mut receiver), keys(2..6));
    assert_eq!(f.hub.watcher_counts(), (1, 0));
}

#[test]
fn old_start_replays_history_then_joins_live() {
    let f = Fixture::new();
    for r in 2..8 {
        f.put(&format!("k{r}"), "v");
    }
    let (sender, mut receiver) = mpsc::channel(16);
    let id = f.hub.watch(spec("k", 4), sender);
    assert!(!f.hub.is_synced(id));
    f.hub.sync_once();
    assert!(f.hub.is_synced(id));
    f.put("k8", "v");
    assert_eq!(drain(&mut receiver), keys(4..9));
}

#[test]
fn a_full_stream_moves_aside_and_catches_up_without_gaps_or_duplicates() {
    let f = Fixture::new();
    let (slow_sender, mut slow) = mpsc::channel(2);
    let (fast_sender, mut fast) = mpsc::channel(64);
    let slow_id = f.hub.watch(spec("k", 0), slow_sender);
    f.hub.watch(spec("k", 0), fast_sender);
    let mut slow_seen = Vec::new();
    for r in 2..40 {
        f.put(&format!("k{r}"), "v");
        if r % 10 == 0 {
            // The slow reader wakes up now and then; the syncer runs in between.
            slow_seen.extend(drain(&mut slow));
            f.hub.sync_once();
        }
    }
    assert_eq!(drain(&mut fast), keys(2..40), "the fast watcher never waited");
    for _ in 0..40 {
        slow_seen.extend(drain(&mut slow));
        f.hub.sync_once();
    }
    assert_eq!(slow_seen, keys(2..40));
    assert!(f.hub.is_synced(slow_id));
}

#[test]
fn a_compacted_start_cancels_with_the_compact_revision() {
    let f = Fixture::new();
    for r in 2..6 {
        f.put(&format!("k{r}"), "v");
    }
    f.write(WriteRequest::Compaction(CompactionRequest { revision: 4 }));
    let (sender, mut receiver) = mpsc::channel(4);
    let id = f.hub.watch(spec("k", 2), sender);
    f.hub.sync_once();
    match receiver.try_recv() {
        Ok(Notification::Compacted { watcher, compact_revision }) => {
            assert_eq!((watcher, compact_revision), (id, 4));
        }
        other => panic!("expected a compaction cancel, got {other:?}"),
    }
    assert_eq!(f.hub.watcher_counts(), (0, 0));
}

#[test]
fn a_future_start_waits_for_its_revision() {
    let f = Fixture::new();
    let (sender, mut receiver) = mpsc::channel(16);
    f.hub.watch(spec("k", 5), sender);
    for r in 2..8 {
        f.put(&format!("k{r}"), "v");
    }
    assert_eq!(drain(&mut receiver), keys(5..8));
}

#[test]
fn a_snapshot_install_sends_watchers_back_to_history() {
    let f = Fixture::new();
    let (sender, mut receiver) = mpsc::channel(16);
    let id = f.hub.watch(spec("k", 0), sender);
    // Writes land without being published, as when a snapshot replaces the state.
    for r in 2..5 {
        let mut overlay = Overlay::new(&*f.engine);
        let put = PutRequest { key: format!("k{r}").into(), ..PutRequest::default() };
        mvcc::apply(&mut overlay, &WriteRequest::Put(put)).expect("apply");
        let batch = overlay.into_batch();
        f.engine.write(batch, Durability::Buffered).expect("write");
    }
    f.hub.reset_after_snapshot(4);
    f.hub.sync_once();
    assert!(f.hub.is_synced(id));
    assert_eq!(drain(&mut receiver), keys(2..5));
}

/// A watcher of exactly one key.
fn key_spec(key: &str) -> WatchSpec {
    WatchSpec { key: key.into(), ..WatchSpec::default() }
}

#[test]
fn single_key_watchers_get_their_key_only_and_ranges_get_everything() {
    let f = Fixture::new();
    let mut receivers = Vec::new();
    for key in ["k2", "k3", "k3"] {
        let (sender, receiver) = mpsc::channel(16);
        f.hub.watch(key_spec(key), sender);
        receivers.push(receiver);
    }
    let (sender, mut range) = mpsc::channel(16);
    f.hub.watch(spec("k", 0), sender);
    for r in 2..6 {
        f.put(&format!("k{r}"), "v");
    }
    f.put("k3", "again");
    assert_eq!(drain(&mut receivers[0]), [("k2".to_string(), 2)]);
    for receiver in &mut receivers[1..] {
        assert_eq!(drain(receiver), [("k3".to_string(), 3), ("k3".to_string(), 6)]);
    }
    assert_eq!(drain(&mut range).len(), 5);
    // A cancelled key watcher leaves the index; the other one on the key still gets events.
    assert!(f.hub.cancel(1));
    f.put("k3", "third");
    assert_eq!(drain(&mut receivers[1]), []);
    assert_eq!(drain(&mut receivers[2]), [("k3".to_string(), 7)]);
}

#[test]
fn a_key_watcher_nothing_matched_is_not_behind_after_compaction_and_snapshot() {
    let f = Fixture::new();
    let (sender, mut receiver) = mpsc::channel(16);
    let id = f.hub.watch(key_spec("quiet"), sender);
    // Its stored next revision stays 2 while 2..=6 are published to others, then compacted.
    for r in 2..7 {
        f.put(&format!("k{r}"), "v");
    }
    f.write(WriteRequest::Compaction(CompactionRequest { revision: 6 }));
    f.hub.reset_after_snapshot(mvcc::current_revision(&*f.engine).expect("revision"));
    f.hub.sync_once();
    // Replayed from after what was published, not from its stale revision: no compaction.
    assert!(f.hub.is_synced(id), "still watching");
    assert_eq!(drain(&mut receiver), []);
    f.put("quiet", "now");
    assert_eq!(drain(&mut receiver), [("quiet".to_string(), 7)]);
}
