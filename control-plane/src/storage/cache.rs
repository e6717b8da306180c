//! The watch cache: one store watch per resource feeds an in-memory copy of its objects and a
//! bounded history of recent changes. API watches (and lists at `resourceVersion=0`) are
//! served from it, so a thousand watchers cost the store one watch.
//!
//! Each API watcher gets a bounded buffer; one that falls `WATCHER_BUFFER_EVENTS_MAX` events
//! behind is closed (its client re-watches), never allowed to grow memory.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, watch};

use super::backend::{
    prefix_end, Backend, BackendError, Change, ProgressRequester, StoredKv, WatchBatch,
};
use crate::limits;

/// What happened to an object, as a Kubernetes watch reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change to one object, with the object before it (for selector transitions).
#[derive(Clone, Debug)]
pub struct CacheEvent {
    pub kind: EventType,
    /// The object after the change (for a delete, its last state).
    pub object: Arc<Value>,
    pub previous: Option<Arc<Value>>,
    /// The store revision of the change (the object's new resourceVersion).
    pub revision: i64,
}

/// Decides which objects a watcher sees.
pub type Filter = Arc<dyn Fn(&Value) -> bool + Send + Sync>;

/// Why a watch could not start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// The resourceVersion is older than the history kept (Kubernetes answers 410 Gone).
    #[error("too old resource version: {requested} ({oldest})")]
    TooOld { requested: i64, oldest: i64 },
    /// The resourceVersion is newer than the cache reached in time (Kubernetes' 504
    /// "Too large resource version").
    #[error("Too large resource version: {requested}, current: {current}")]
    TooLarge { requested: i64, current: i64 },
    /// The cache has not loaded yet (the store is unreachable).
    #[error("the watch cache for {0} is not ready")]
    NotReady(String),
}

struct Watcher {
    filter: Filter,
    sender: mpsc::Sender<CacheEvent>,
    /// Only changes after this revision are delivered (the watch's resourceVersion).
    after: i64,
}

struct State {
    /// The store revision the cache reflects.
    revision: i64,
    objects: BTreeMap<Vec<u8>, (Arc<Value>, i64)>,
    history: VecDeque<CacheEvent>,
    /// Every change after this revision is in `history`.
    history_from: i64,
    watchers: Vec<Watcher>,
    ready: bool,
}

/// The cache of one resource (one key prefix in the store).
pub struct WatchCache {
    resource: String,
    /// Changes kept for watchers resuming from a resourceVersion.
    history_max: usize,
    prefix: Vec<u8>,
    state: Mutex<State>,
    /// Tells waiters the revision the cache reached.
    revision: watch::Sender<i64>,
    /// Asks the current store watch for a progress notification (consistent reads).
    progress: Mutex<Option<ProgressRequester>>,
}

/// An API watch served by the cache: first `initial` (replayed history or synthetic ADDED
/// events), then whatever arrives on `live`. `live` ends when the watcher fell behind or the
/// cache re-listed; the client then watches again.
pub struct CacheWatch {
    pub initial: Vec<CacheEvent>,
    pub live: mpsc::Receiver<CacheEvent>,
    /// The revision the watch starts after (a bookmark may report it).
    pub revision: i64,
}

/// A consistent view of the cached objects at one revision.
pub struct Snapshot {
    pub objects: Vec<(Vec<u8>, Arc<Value>)>,
    pub revision: i64,
}

impl WatchCache {
    /// A cache of the objects under `prefix` keeping `history_max` recent changes
    /// (`limits::CACHE_HISTORY_EVENTS_MAX` by default, kube-apiserver's watch cache size).
    pub fn new(resource: &str, prefix: Vec<u8>, history_max: usize) -> Arc<WatchCache> {
        let (revision, _) = watch::channel(0);
        Arc::new(WatchCache {
            resource: resource.to_string(),
            history_max: history_max.max(1),
            prefix,
            state: Mutex::new(State {
                revision: 0,
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                history_from: 0,
                watchers: Vec::new(),
                ready: false,
            }),
            revision,
            progress: Mutex::new(None),
        })
    }

    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// Number of cached objects (for metrics).
    pub fn len(&self) -> usize {
        self.state.lock().expect("cache lock").objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of watchers (for metrics).
    pub fn watcher_count(&self) -> usize {
        self.state.lock().expect("cache lock").watchers.len()
    }

    /// Every cached object, as cached now (empty until loaded); for in-process readers such
    /// as the authorizer.
    pub fn all_objects(&self) -> Vec<Arc<Value>> {
        let state = self.state.lock().expect("cache lock");
        state.objects.values().map(|(object, _)| object.clone()).collect()
    }

    /// The revision the cache reflects (0 until loaded).
    pub fn revision(&self) -> i64 {
        self.state.lock().expect("cache lock").revision
    }

    /// Waits (bounded) until the cache has reached `revision` (a write's revision, so a
    /// reader after a write sees it).
    pub async fn wait_for_revision(&self, revision: i64) -> Result<(), CacheError> {
        let mut current = self.revision.subscribe();
        let limit = Duration::from_millis(limits::CACHE_READY_TIMEOUT_MS);
        let reached = tokio::time::timeout(limit, current.wait_for(|r| *r >= revision)).await;
        let reached = matches!(reached, Ok(Ok(_)));
        if reached {
            Ok(())
        } else {
            Err(CacheError::NotReady(self.resource.clone()))
        }
    }

    /// For a consistent read: waits until the cache has reached `revision`, the store's current
    /// revision read linearizably by the caller. Progress requests make the store confirm at
    /// once that nothing in this range changed since the cache's last event. Bounded by
    /// `limits::CONSISTENT_READ_CACHE_WAIT_MS`; on `Err` the caller reads the store instead.
    pub async fn wait_for_current(&self, revision: i64) -> Result<(), CacheError> {
        let deadline = tokio::time::Instant::now()
            + Duration::from_millis(limits::CONSISTENT_READ_CACHE_WAIT_MS);
        let mut current = self.revision.subscribe();
        loop {
            if *current.borrow() >= revision && self.state.lock().expect("cache lock").ready {
                return Ok(());
            }
            let requester = self.progress.lock().expect("progress lock").clone();
            if let Some(requester) = requester {
                requester.request();
            }
            let step = tokio::time::Instant::now() + Duration::from_millis(50);
            let until = step.min(deadline);
            let reached =
                tokio::time::timeout_at(until, current.wait_for(|r| *r >= revision)).await;
            if matches!(reached, Ok(Ok(_))) && self.state.lock().expect("cache lock").ready {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(CacheError::NotReady(self.resource.clone()));
            }
        }
    }

    /// Waits (bounded) until the cache has loaded.
    pub async fn wait_ready(&self) -> Result<(), CacheError> {
        let mut revision = self.revision.subscribe();
        let limit = Duration::from_millis(limits::CACHE_READY_TIMEOUT_MS);
        let ready = tokio::time::timeout(limit, revision.wait_for(|r| *r > 0)).await;
        let ready = matches!(ready, Ok(Ok(_)));
        if ready {
            Ok(())
        } else {
            Err(CacheError::NotReady(self.resource.clone()))
        }
    }

    /// Objects whose key starts with `prefix` (a namespace's, or all), in key order.
    pub async fn snapshot(&self, prefix: &[u8]) -> Result<Snapshot, CacheError> {
        self.wait_ready().await?;
        let state = self.state.lock().expect("cache lock");
        let end = prefix_end(prefix);
        let objects = state
            .objects
            .range(prefix.to_vec()..end)
            .map(|(key, (object, _))| (key.clone(), object.clone()))
            .collect();
        Ok(Snapshot { objects, revision: state.revision })
    }

    /// Starts an API watch after `resource_version` (0: synthetic ADDED events for every
    /// current object first, as Kubernetes does for an unset or "0" resourceVersion).
    pub async fn watch(
        &self,
        resource_version: i64,
        filter: Filter,
    ) -> Result<CacheWatch, CacheError> {
        self.wait_ready().await?;
        // A resourceVersion from a store read the cache has not caught up with yet: wait for
        // it, so nothing at or before it is sent (Kubernetes waits the same way).
        if resource_version > self.revision() {
            self.wait_for_revision(resource_version).await.map_err(|_| CacheError::TooLarge {
                requested: resource_version,
                current: self.revision(),
            })?;
        }
        let (sender, live) = mpsc::channel(limits::WATCHER_BUFFER_EVENTS_MAX);
        let mut state = self.state.lock().expect("cache lock");
        let initial: Vec<CacheEvent> = if resource_version == 0 {
            state
                .objects
                .values()
                .filter(|(object, _)| filter(object))
                .map(|(object, revision)| CacheEvent {
                    kind: EventType::Added,
                    object: object.clone(),
                    previous: None,
                    revision: *revision,
                })
                .collect()
        } else if resource_version < state.history_from {
            return Err(CacheError::TooOld {
                requested: resource_version,
                oldest: state.history_from,
            });
        } else {
            state
                .history
                .iter()
                .filter(|e| e.revision > resource_version)
                .filter_map(|e| filtered(e, &filter))
                .collect()
        };
        let revision = if resource_version == 0 { state.revision } else { resource_version };
        let after = revision.max(state.revision);
        state.watchers.push(Watcher { filter, sender, after });
        Ok(CacheWatch { initial, live, revision: revision.max(state.revision) })
    }

    /// Keeps the cache fed: lists the prefix, watches from there, re-lists when the watch
    /// breaks or its revision is compacted away. Runs until the task is aborted.
    pub async fn run(self: Arc<Self>, backend: Backend) {
        loop {
            match self.load(&backend).await {
                Ok(revision) => {
                    let ended = self.follow(&backend, revision).await;
                    tracing::info!(resource = %self.resource, %ended, "watch cache re-listing");
                }
                Err(error) => {
                    tracing::warn!(resource = %self.resource, %error, "watch cache list failed");
                }
            }
            tokio::time::sleep(Duration::from_millis(limits::CACHE_RELIST_BACKOFF_MS)).await;
        }
    }

    /// Lists everything under the prefix at one revision, page by page, and replaces the
    /// cache's contents; every current watcher is closed (it may have missed changes).
    async fn load(&self, backend: &Backend) -> Result<i64, BackendError> {
        let end = prefix_end(&self.prefix);
        let mut start = self.prefix.clone();
        let mut revision = 0;
        let mut objects = BTreeMap::new();
        loop {
            let page = backend.list(&start, &end, revision, limits::STORE_PAGE_LEN).await?;
            revision = page.revision;
            for kv in &page.kvs {
                if let Some(object) = decode(kv) {
                    objects.insert(kv.key.clone(), (object, kv.mod_revision));
                }
            }
            match (page.more, page.kvs.last()) {
                (true, Some(last)) => {
                    start = last.key.clone();
                    start.push(0);
                }
                _ => break,
            }
        }
        let mut state = self.state.lock().expect("cache lock");
        state.objects = objects;
        state.history.clear();
        state.history_from = revision;
        state.revision = revision;
        state.watchers.clear();
        state.ready = true;
        drop(state);
        self.revision.send_replace(revision);
        Ok(revision)
    }

    /// Applies store changes until the store watch ends; returns why it ended.
    async fn follow(&self, backend: &Backend, revision: i64) -> String {
        let mut watch = match backend.watch(&self.prefix, revision + 1).await {
            Ok(watch) => watch,
            Err(error) => return error.to_string(),
        };
        *self.progress.lock().expect("progress lock") = Some(watch.progress_requester());
        let ended = self.follow_watch(&mut watch).await;
        *self.progress.lock().expect("progress lock") = None;
        ended
    }

    async fn follow_watch(&self, watch: &mut super::backend::BackendWatch) -> String {
        loop {
            match watch.next().await {
                Some(Ok(WatchBatch::Changes { changes, revision })) => {
                    self.apply(changes, revision);
                }
                Some(Ok(WatchBatch::Progress { revision })) => self.advance(revision),
                Some(Err(error)) => return error.to_string(),
                None => return "store watch ended".to_string(),
            }
        }
    }

    fn advance(&self, revision: i64) {
        let mut state = self.state.lock().expect("cache lock");
        if revision > state.revision {
            state.revision = revision;
            drop(state);
            self.revision.send_replace(revision);
        }
    }

    fn apply(&self, changes: Vec<Change>, batch_revision: i64) {
        let mut state = self.state.lock().expect("cache lock");
        let mut events = Vec::with_capacity(changes.len());
        for change in changes {
            match change {
                Change::Put { kv, .. } => {
                    let Some(object) = decode(&kv) else { continue };
                    let previous =
                        state.objects.insert(kv.key.clone(), (object.clone(), kv.mod_revision));
                    let kind =
                        if previous.is_some() { EventType::Modified } else { EventType::Added };
                    events.push(CacheEvent {
                        kind,
                        object,
                        previous: previous.map(|(p, _)| p),
                        revision: kv.mod_revision,
                    });
                }
                Change::Delete { key, revision, .. } => {
                    let Some((last, _)) = state.objects.remove(&key) else { continue };
                    // A deleted object is reported at the deletion's revision.
                    let object = Arc::new(with_resource_version(&last, revision));
                    events.push(CacheEvent {
                        kind: EventType::Deleted,
                        object,
                        previous: Some(last),
                        revision,
                    });
                }
            }
        }
        for event in &events {
            state.history.push_back(event.clone());
        }
        while state.history.len() > self.history_max {
            if let Some(dropped) = state.history.pop_front() {
                state.history_from = dropped.revision;
            }
        }
        state.revision = state.revision.max(batch_revision);
        // Deliver; a watcher whose buffer is full is dropped (its stream ends).
        state.watchers.retain(|watcher| {
            for event in events.iter().filter(|e| e.revision > watcher.after) {
                let Some(event) = filtered(event, &watcher.filter) else { continue };
                if watcher.sender.try_send(event).is_err() {
                    return false;
                }
            }
            true
        });
        let revision = state.revision;
        drop(state);
        self.revision.send_replace(revision);
    }
}

/// The event as a filtered watcher sees it: an object that stops matching is DELETED for
/// it, one that starts matching is ADDED (as Kubernetes' cacher does).
fn filtered(event: &CacheEvent, filter: &Filter) -> Option<CacheEvent> {
    let now = filter(&event.object);
    let before = event.previous.as_ref().is_some_and(|p| filter(p));
    let kind = match (event.kind, before, now) {
        (EventType::Deleted, true, _) => EventType::Deleted,
        (EventType::Deleted, false, _) => return None,
        (_, false, true) => EventType::Added,
        (_, true, true) => EventType::Modified,
        (_, true, false) => EventType::Deleted,
        (_, false, false) => return None,
    };
    Some(CacheEvent { kind, ..event.clone() })
}

/// Parses a stored object and sets its resourceVersion from the store. Undecodable values
/// (written by something else under our prefix) are skipped with a warning.
fn decode(kv: &StoredKv) -> Option<Arc<Value>> {
    match serde_json::from_slice::<Value>(&kv.value) {
        Ok(object) => Some(Arc::new(with_resource_version(&object, kv.mod_revision))),
        Err(error) => {
            let key = String::from_utf8_lossy(&kv.key);
            tracing::warn!(%key, %error, "skipping an undecodable object");
            None
        }
    }
}

/// A copy of `object` with `metadata.resourceVersion` set to `revision`.
pub fn with_resource_version(object: &Value, revision: i64) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.insert("resourceVersion".into(), Value::String(revision.to_string()));
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn put(cache: &WatchCache, name: &str, revision: i64, label: &str) {
        let object = json!({"metadata": {"name": name, "labels": {"app": label}}});
        let kv = StoredKv {
            key: format!("/registry/pods/default/{name}").into_bytes(),
            value: serde_json::to_vec(&object).unwrap(),
            mod_revision: revision,
        };
        cache.apply(vec![Change::Put { kv, previous: None }], revision);
    }

    fn ready_cache() -> Arc<WatchCache> {
        let cache =
            WatchCache::new("pods", b"/registry/pods/".to_vec(), limits::CACHE_HISTORY_EVENTS_MAX);
        {
            let mut state = cache.state.lock().unwrap();
            state.ready = true;
            state.revision = 1;
            state.history_from = 1;
        }
        cache.revision.send_replace(1);
        cache
    }

    fn app_is(value: &'static str) -> Filter {
        Arc::new(move |o: &Value| o["metadata"]["labels"]["app"] == value)
    }

    #[tokio::test]
    async fn a_watcher_sees_selector_transitions_as_added_and_deleted() {
        let cache = ready_cache();
        let mut watch = cache.watch(1, app_is("web")).await.unwrap();
        put(&cache, "a", 2, "db");
        put(&cache, "a", 3, "web");
        put(&cache, "a", 4, "web");
        put(&cache, "a", 5, "db");
        let mut kinds = Vec::new();
        while let Ok(event) = watch.live.try_recv() {
            kinds.push((event.kind, event.revision));
        }
        assert_eq!(
            kinds,
            vec![(EventType::Added, 3), (EventType::Modified, 4), (EventType::Deleted, 5)]
        );
    }

    #[tokio::test]
    async fn history_replays_after_a_revision_and_refuses_older_than_kept() {
        let cache = ready_cache();
        for revision in 2..(2 + limits::CACHE_HISTORY_EVENTS_MAX as i64 + 5) {
            put(&cache, &format!("p{revision}"), revision, "web");
        }
        let last = 1 + limits::CACHE_HISTORY_EVENTS_MAX as i64 + 5;
        let recent = cache.watch(last - 3, app_is("web")).await.unwrap();
        let revisions: Vec<i64> = recent.initial.iter().map(|e| e.revision).collect();
        assert_eq!(revisions, vec![last - 2, last - 1, last]);
        let too_old = cache.watch(2, app_is("web")).await.err();
        assert!(matches!(too_old, Some(CacheError::TooOld { requested: 2, .. })), "{too_old:?}");
        // From 0: one ADDED per current object, then live.
        let all = cache.watch(0, app_is("web")).await.unwrap();
        assert_eq!(all.initial.len(), cache.len());
        assert!(all.initial.iter().all(|e| e.kind == EventType::Added));
    }

    #[tokio::test]
    async fn a_watcher_that_falls_behind_is_closed_and_others_are_not() {
        let cache = ready_cache();
        let mut slow = cache.watch(1, app_is("web")).await.unwrap();
        let mut fast = cache.watch(1, app_is("web")).await.unwrap();
        for revision in 2..(2 + limits::WATCHER_BUFFER_EVENTS_MAX as i64 + 1) {
            put(&cache, "same", revision, "web");
            while fast.live.try_recv().is_ok() {}
        }
        let mut received = 0;
        while slow.live.recv().await.is_some() {
            received += 1;
        }
        assert_eq!(received, limits::WATCHER_BUFFER_EVENTS_MAX, "closed once full");
        assert_eq!(cache.watcher_count(), 1);
        put(&cache, "same", 100_000, "web");
        assert!(fast.live.try_recv().is_ok(), "the fast watcher still gets events");
    }

    #[tokio::test]
    async fn deleted_objects_carry_the_deletion_revision() {
        let cache = ready_cache();
        put(&cache, "a", 2, "web");
        let mut watch = cache.watch(2, app_is("web")).await.unwrap();
        let key = b"/registry/pods/default/a".to_vec();
        cache.apply(vec![Change::Delete { key, revision: 3, previous: None }], 3);
        let event = watch.live.try_recv().unwrap();
        assert_eq!(event.kind, EventType::Deleted);
        assert_eq!(event.object["metadata"]["resourceVersion"], "3");
        assert!(cache.is_empty());
    }
}
