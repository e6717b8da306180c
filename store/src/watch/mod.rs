//! Watches: the hub that fans applied events out to watchers, etcd's synced/unsynced design.
//!
//! Every member serves watches from its own applied state. A watcher is *synced* when it has
//! seen everything up to the last published revision and receives new events as they are
//! applied; otherwise it is *unsynced* and the syncer feeds it from stored history until it
//! catches up. A watcher whose stream cannot take more (its bounded channel is full) is moved
//! to the unsynced set instead of blocking the apply loop or other watchers.
//!
//! Invariant: each watcher has a `next_revision`; every event at or above it that matches is
//! delivered exactly once, in revision order. Publishing and the unsynced → synced move happen
//! under one lock, so no event falls between stored history and the live stream.
//!
//! Publishing visits only the synced watchers an event can match: single-key watchers are
//! indexed by their key, range watchers are visited for every publish. A synced watcher that
//! nothing matched keeps its stored `next_revision`; its effective one is
//! `max(next_revision, current_revision + 1)`, which is what leaving the synced set uses.

mod matcher;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};

pub use matcher::WatchSpec;

use crate::engine::KvEngine;
use crate::limits;
use crate::metrics::Metrics;
use crate::mvcc::{self, Event, MvccError};

/// A hub-wide watcher id (a gRPC stream maps its clients' watch ids onto these).
pub type WatcherId = u64;

/// What a watcher's stream receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notification {
    /// Events in revision order; `revision` is the store revision they bring the watcher to.
    Events { watcher: WatcherId, events: Vec<Event>, revision: i64 },
    /// The watcher's next revision was compacted away: it is cancelled.
    Compacted { watcher: WatcherId, compact_revision: i64 },
}

struct Watcher {
    spec: WatchSpec,
    next_revision: i64,
    sender: mpsc::Sender<Notification>,
}

/// The synced watchers: single-key ones indexed by their key, range ones in a map of their
/// own that publishing walks as it is.
#[derive(Default)]
struct Synced {
    keyed: HashMap<WatcherId, Watcher>,
    by_key: HashMap<Vec<u8>, Vec<WatcherId>>,
    ranged: HashMap<WatcherId, Watcher>,
}

impl Synced {
    fn len(&self) -> usize {
        self.keyed.len() + self.ranged.len()
    }

    fn contains_key(&self, id: &WatcherId) -> bool {
        self.keyed.contains_key(id) || self.ranged.contains_key(id)
    }

    fn get(&self, id: &WatcherId) -> Option<&Watcher> {
        self.keyed.get(id).or_else(|| self.ranged.get(id))
    }

    fn insert(&mut self, id: WatcherId, watcher: Watcher) {
        if watcher.spec.range_end.is_empty() {
            self.by_key.entry(watcher.spec.key.clone()).or_default().push(id);
            self.keyed.insert(id, watcher);
        } else {
            self.ranged.insert(id, watcher);
        }
    }

    fn remove(&mut self, id: &WatcherId) -> Option<Watcher> {
        if let Some(watcher) = self.ranged.remove(id) {
            return Some(watcher);
        }
        let watcher = self.keyed.remove(id)?;
        if let Some(ids) = self.by_key.get_mut(&watcher.spec.key) {
            ids.retain(|other| other != id);
            if ids.is_empty() {
                self.by_key.remove(&watcher.spec.key);
            }
        }
        Some(watcher)
    }

    /// Every watcher, removed.
    fn drain(&mut self) -> Vec<(WatcherId, Watcher)> {
        self.by_key.clear();
        self.keyed.drain().chain(self.ranged.drain()).collect()
    }

    /// The single-key watchers of the events' keys, each once.
    fn keyed_candidates(&self, events: &[Event]) -> Vec<WatcherId> {
        let mut ids = Vec::new();
        for event in events {
            if let Some(watching) = self.by_key.get(&event.kv.key) {
                ids.extend(watching);
            }
        }
        if events.len() > 1 {
            ids.sort_unstable();
            ids.dedup();
        }
        ids
    }
}

/// Offers a publish's events to one synced watcher. Returns whether the watcher must leave
/// the synced set (its stream is full or gone).
fn offer(
    id: WatcherId,
    watcher: &mut Watcher,
    events: &[Event],
    first_revision: i64,
    revision: i64,
) -> bool {
    // Its effective next revision (see the module's invariant).
    let from = watcher.next_revision.max(first_revision);
    let matching = watcher.spec.select(events, from);
    if matching.is_empty() {
        return false;
    }
    let message = Notification::Events { watcher: id, events: matching, revision };
    match watcher.sender.try_send(message) {
        Ok(()) => {
            // A watcher of a future revision keeps waiting for it.
            watcher.next_revision = watcher.next_revision.max(revision + 1);
            false
        }
        // Full: replay this batch from storage later.
        Err(mpsc::error::TrySendError::Full(_)) => {
            watcher.next_revision = from;
            true
        }
        // Closed: the stream is gone.
        Err(mpsc::error::TrySendError::Closed(_)) => true,
    }
}

#[derive(Default)]
struct HubState {
    next_id: WatcherId,
    /// The last revision published to synced watchers.
    current_revision: i64,
    synced: Synced,
    unsynced: HashMap<WatcherId, Watcher>,
}

/// Fans events out to watchers; shared by the state machine (publisher), the syncer task and
/// the serving side (watch creation and cancellation).
pub struct WatchHub {
    state: Mutex<HubState>,
    engine: Arc<dyn KvEngine>,
    unsynced_added: Notify,
    metrics: Metrics,
}

impl WatchHub {
    pub fn new(engine: Arc<dyn KvEngine>, current_revision: i64, metrics: Metrics) -> WatchHub {
        let state = HubState { current_revision, ..HubState::default() };
        WatchHub { state: Mutex::new(state), engine, unsynced_added: Notify::new(), metrics }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().expect("watch hub lock")
    }

    fn update_gauges(&self, state: &HubState) {
        self.metrics.watchers.set((state.synced.len() + state.unsynced.len()) as i64);
        self.metrics.slow_watchers.set(state.unsynced.len() as i64);
    }

    pub fn current_revision(&self) -> i64 {
        self.lock().current_revision
    }

    /// Counts of (synced, unsynced) watchers.
    pub fn watcher_counts(&self) -> (usize, usize) {
        let state = self.lock();
        (state.synced.len(), state.unsynced.len())
    }

    /// Registers a watcher. `start_revision` 0 means "from the next revision"; an older
    /// revision is replayed from history first.
    pub fn watch(&self, spec: WatchSpec, sender: mpsc::Sender<Notification>) -> WatcherId {
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        let next_revision = match spec.start_revision {
            revision if revision <= 0 => state.current_revision + 1,
            revision => revision,
        };
        let watcher = Watcher { spec, next_revision, sender };
        if next_revision > state.current_revision {
            state.synced.insert(id, watcher);
        } else {
            state.unsynced.insert(id, watcher);
            self.unsynced_added.notify_one();
        }
        self.update_gauges(&state);
        id
    }

    /// Whether the watcher has seen everything up to the current revision.
    pub fn is_synced(&self, id: WatcherId) -> bool {
        self.lock().synced.contains_key(&id)
    }

    /// etcd's progress request for one watcher: if it is synced, an empty notification at the
    /// current revision is queued behind everything already sent to it, telling it that
    /// nothing else in its range changed up to there. False when the watcher is catching up
    /// (it gets there by itself) or its stream is full.
    pub fn request_progress(&self, id: WatcherId) -> bool {
        let state = self.lock();
        let Some(watcher) = state.synced.get(&id) else { return false };
        let message = Notification::Events {
            watcher: id,
            events: Vec::new(),
            revision: state.current_revision,
        };
        watcher.sender.try_send(message).is_ok()
    }

    /// Forgets a watcher; nothing more is sent for it.
    pub fn cancel(&self, id: WatcherId) -> bool {
        let mut state = self.lock();
        let removed = state.synced.remove(&id).is_some() || state.unsynced.remove(&id).is_some();
        self.update_gauges(&state);
        removed
    }

    /// Called by the state machine after the events of revisions up to `revision` are durable
    /// in the engine (so a watcher moved to the unsynced set can re-read them).
    pub fn publish(&self, events: &[Event], revision: i64) {
        let mut state = self.lock();
        if revision <= state.current_revision {
            return;
        }
        let first_revision = state.current_revision + 1;
        state.current_revision = revision;
        let mut slow = Vec::new();
        for (id, watcher) in state.synced.ranged.iter_mut() {
            if offer(*id, watcher, events, first_revision, revision) {
                slow.push(*id);
            }
        }
        for id in state.synced.keyed_candidates(events) {
            let watcher = state.synced.keyed.get_mut(&id).expect("indexed watchers exist");
            if offer(id, watcher, events, first_revision, revision) {
                slow.push(id);
            }
        }
        for id in slow {
            let watcher = state.synced.remove(&id).expect("listed above");
            if !watcher.sender.is_closed() {
                self.metrics.watchers_moved_to_unsynced_total.inc();
                state.unsynced.insert(id, watcher);
            }
        }
        self.update_gauges(&state);
        if !state.unsynced.is_empty() {
            self.unsynced_added.notify_one();
        }
    }

    /// After a snapshot is installed the state jumped without events: every watcher re-reads
    /// what it missed from history.
    pub fn reset_after_snapshot(&self, revision: i64) {
        let mut state = self.lock();
        let published_up_to = state.current_revision;
        state.current_revision = revision;
        for (id, mut watcher) in state.synced.drain() {
            watcher.next_revision = watcher.next_revision.max(published_up_to + 1);
            state.unsynced.insert(id, watcher);
        }
        self.unsynced_added.notify_one();
    }

    /// Feeds unsynced watchers from stored history until the hub is dropped.
    pub async fn run_syncer(self: Arc<Self>) {
        let interval = Duration::from_millis(limits::WATCH_SYNC_INTERVAL_MS);
        loop {
            let _ = tokio::time::timeout(interval, self.unsynced_added.notified()).await;
            let hub = self.clone();
            let synced = tokio::task::spawn_blocking(move || hub.sync_once()).await;
            if let Err(error) = synced {
                tracing::error!(%error, "watch syncer failed");
            }
        }
    }

    /// One catch-up round over every unsynced watcher.
    fn sync_once(&self) {
        let (current, pending): (i64, Vec<(WatcherId, WatchSpec, i64)>) = {
            let state = self.lock();
            let pending = state
                .unsynced
                .iter()
                .map(|(id, w)| (*id, w.spec.clone(), w.next_revision))
                .collect();
            (state.current_revision, pending)
        };
        if pending.is_empty() {
            return;
        }
        // The view holds at least everything published up to `current`.
        let view = self.engine.snapshot();
        for (id, spec, next_revision) in pending {
            let read = mvcc::events(
                &*view,
                next_revision,
                current + 1,
                limits::WATCH_CATCHUP_EVENTS_MAX,
                spec.prev_kv,
            );
            self.deliver_history(id, &spec, next_revision, current, read);
        }
    }

    fn deliver_history(
        &self,
        id: WatcherId,
        spec: &WatchSpec,
        next_revision: i64,
        current: i64,
        read: Result<Vec<Event>, MvccError>,
    ) {
        let mut state = self.lock();
        let Some(watcher) = state.unsynced.get_mut(&id) else { return };
        if watcher.next_revision != next_revision {
            return;
        }
        let events = match read {
            Ok(events) => events,
            Err(MvccError::Compacted) => {
                let compact_revision = mvcc::compacted_revision(&*self.engine).unwrap_or(0);
                let message = Notification::Compacted { watcher: id, compact_revision };
                // Cancelled either way; a full stream learns it when it reads the cancel.
                let _ = watcher.sender.try_send(message);
                state.unsynced.remove(&id);
                self.update_gauges(&state);
                return;
            }
            Err(error) => {
                tracing::error!(%error, "reading watch history failed");
                return;
            }
        };
        // A short read means history continues past the last returned revision.
        let complete = events.len() < limits::WATCH_CATCHUP_EVENTS_MAX;
        let reached = match (complete, events.last()) {
            (true, _) | (false, None) => current,
            (false, Some(last)) => last.kv.mod_revision,
        };
        let matching = spec.select(&events, next_revision);
        if !matching.is_empty() {
            let message = Notification::Events { watcher: id, events: matching, revision: reached };
            match watcher.sender.try_send(message) {
                Ok(()) => {}
                // Still too slow: try again next round.
                Err(mpsc::error::TrySendError::Full(_)) => return,
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    state.unsynced.remove(&id);
                    return;
                }
            }
        }
        watcher.next_revision = reached + 1;
        // Synced only if nothing was published since `current` was read; otherwise go again.
        if complete && state.current_revision == current {
            let watcher = state.unsynced.remove(&id).expect("present");
            state.synced.insert(id, watcher);
            self.update_gauges(&state);
        } else {
            self.unsynced_added.notify_one();
        }
    }
}

#[cfg(test)]
mod tests;
