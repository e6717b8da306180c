//! The watch cache over a real embedded store member: thousands of API watchers cost the
//! store one watch, every watcher sees every change in order, and a watcher that stops
//! reading is closed without holding the others back.

use std::sync::Arc;

use control_plane::storage::cache::{EventType, Filter};
use control_plane::storage::{Backend, Swap, WatchCache};
use serde_json::{json, Value};

const WATCHERS: usize = 2_000;

fn store_config() -> store::StoreConfig {
    store_config_on("127.0.83.1")
}

fn store_config_on(ip: &str) -> store::StoreConfig {
    let mut config = store::StoreConfig::single("cache", None);
    config.listen_client_urls = vec![format!("http://{ip}:2379")];
    config.advertise_client_urls = config.listen_client_urls.clone();
    config.listen_peer_urls = vec![format!("http://{ip}:2380")];
    config.initial_advertise_peer_urls = config.listen_peer_urls.clone();
    config.initial_cluster = format!("cache=http://{ip}:2380");
    config
}

fn pod(name: &str, generation: u32) -> Vec<u8> {
    let labels = json!({"g": generation.to_string()});
    let object = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels}});
    serde_json::to_vec(&object).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_watchers_share_one_store_watch() {
    let running = store::start(store_config()).await.expect("start store");
    let backend = Backend::Embedded(running.store.clone());
    let history = control_plane::limits::CACHE_HISTORY_EVENTS_MAX;
    let cache = WatchCache::new("pods", b"/registry/pods/".to_vec(), history);
    let feeder = tokio::spawn(cache.clone().run(backend.clone()));
    cache.wait_ready().await.expect("cache loads");
    let store_watchers = || {
        let (synced, unsynced) = running.store.watch_hub().watcher_counts();
        synced + unsynced
    };
    // The cache reports ready after its list, and opens its store watch right after.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while store_watchers() != 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(store_watchers(), 1, "the cache's own store watch");

    let everything: Filter = Arc::new(|_: &Value| true);
    let mut watches = Vec::new();
    for _ in 0..WATCHERS {
        watches.push(cache.watch(cache.revision(), everything.clone()).await.expect("watch"));
    }
    // One watcher never reads: it must be closed, not slow the rest down or grow memory.
    let stalled = cache.watch(cache.revision(), everything).await.expect("watch");
    assert_eq!(cache.watcher_count(), WATCHERS + 1);
    assert_eq!(store_watchers(), 1, "API watchers add no store watchers");

    let key = b"/registry/pods/default/web";
    let mut revisions = Vec::new();
    let Swap::Done { revision, .. } = backend.create(key, pod("web", 0), 0).await.expect("create")
    else {
        panic!("web already existed");
    };
    revisions.push(revision);
    let updates = control_plane::limits::WATCHER_BUFFER_EVENTS_MAX as u32 + 10;
    let mut mod_revision = revision;
    for generation in 1..=updates {
        let swap = backend.update(key, mod_revision, pod("web", generation)).await.expect("update");
        let Swap::Done { revision, .. } = swap else { panic!("lost a race with nobody") };
        mod_revision = revision;
        revisions.push(revision);
        // Readers keep up; the stalled watcher does not.
        for watch in &mut watches {
            while let Ok(event) = watch.live.try_recv() {
                watch.initial.push(event);
            }
        }
    }
    cache.wait_for_revision(mod_revision).await.expect("cache catches up");
    for watch in &mut watches {
        while let Ok(event) = watch.live.try_recv() {
            watch.initial.push(event);
        }
        let seen: Vec<i64> = watch.initial.iter().map(|e| e.revision).collect();
        assert_eq!(seen, revisions, "every change, in order, exactly once");
        assert_eq!(watch.initial[0].kind, EventType::Added);
        assert!(watch.initial[1..].iter().all(|e| e.kind == EventType::Modified));
    }
    assert_eq!(cache.watcher_count(), WATCHERS, "the stalled watcher was dropped");
    drop(stalled);
    feeder.abort();
    running.shutdown().await;
}

/// A consistent read needs the cache at the store's current revision even when the latest
/// writes were elsewhere: a progress request gets it there at once, through the embedded
/// member and through etcd's gRPC API alike (the periodic progress notification would take
/// ten minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_reads_catch_up_by_progress_request() {
    let running = store::start(store_config_on("127.0.83.2")).await.expect("start store");
    let embedded = Backend::Embedded(running.store.clone());
    let remote = Backend::remote(&["http://127.0.83.2:2379".to_string()]).expect("remote");
    for (round, backend) in [embedded.clone(), remote].into_iter().enumerate() {
        let key = format!("/registry/pods/default/p{round}");
        let history = control_plane::limits::CACHE_HISTORY_EVENTS_MAX;
        let cache = WatchCache::new("pods", b"/registry/pods/".to_vec(), history);
        let feeder = tokio::spawn(cache.clone().run(backend.clone()));
        cache.wait_ready().await.expect("cache loads");
        let swap = embedded.create(key.as_bytes(), pod("a", 1), 0).await;
        assert!(matches!(swap.expect("create"), Swap::Done { .. }));
        // Writes outside the cache's range move the store on without telling the cache.
        for i in 0..5 {
            let key = format!("/registry/nodes/n{i}-{}", cache.revision());
            embedded.create(key.as_bytes(), b"{}".to_vec(), 0).await.expect("write");
        }
        let current = backend.current_revision().await.expect("revision");
        assert!(cache.revision() < current, "the cache has not seen the other writes");
        let started = std::time::Instant::now();
        cache.wait_for_current(current).await.expect("caught up by a progress request");
        assert!(cache.revision() >= current);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let snapshot = cache.snapshot(b"/registry/pods/").await.expect("snapshot");
        assert!(snapshot.objects.iter().any(|(k, _)| *k == key.as_bytes()));
        feeder.abort();
    }
    running.shutdown().await;
}
