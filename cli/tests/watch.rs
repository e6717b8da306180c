//! Watch guarantees on three-member clusters: events in revision order, never duplicated or
//! skipped, across history catch-up, slow consumers and member restarts.

mod common;

use std::time::{Duration, Instant};

use common::{kv, put, Cluster};
use store::proto::etcdserverpb as pb;
use store::proto::etcdserverpb::watch_client::WatchClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const LEADER_TIMEOUT: Duration = Duration::from_secs(20);

struct WatchStream {
    requests: mpsc::Sender<pb::WatchRequest>,
    responses: tonic::Streaming<pb::WatchResponse>,
}

async fn open(url: &str) -> WatchStream {
    let channel = common::connect(url).await.expect("connect");
    let (requests, receiver) = mpsc::channel(16);
    let mut client = WatchClient::new(channel);
    let responses =
        client.watch(ReceiverStream::new(receiver)).await.expect("watch stream").into_inner();
    WatchStream { requests, responses }
}

impl WatchStream {
    async fn create(&mut self, prefix: &str, start_revision: i64) -> pb::WatchResponse {
        let mut end = prefix.as_bytes().to_vec();
        *end.last_mut().expect("prefix") += 1;
        let create = pb::WatchCreateRequest {
            key: prefix.into(),
            range_end: end,
            start_revision,
            ..Default::default()
        };
        let request = pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(create)),
        };
        self.requests.send(request).await.expect("send create");
        let created = self.next().await;
        assert!(created.created, "expected a created response, got {created:?}");
        created
    }

    async fn next(&mut self) -> pb::WatchResponse {
        let next = tokio::time::timeout(Duration::from_secs(20), self.responses.message());
        next.await.expect("a watch response in time").expect("stream ok").expect("stream open")
    }

    /// Reads until `count` events arrived; returns (key, mod_revision) pairs.
    async fn events(&mut self, count: usize) -> Vec<(String, i64)> {
        let mut seen = Vec::new();
        while seen.len() < count {
            let response = self.next().await;
            assert!(!response.canceled, "watch cancelled: {response:?}");
            for event in response.events {
                let kv = event.kv.expect("kv");
                seen.push((String::from_utf8(kv.key).expect("utf-8"), kv.mod_revision));
            }
        }
        seen
    }
}

/// The keys `k{n}` for `range`, written one per revision starting at `first_revision`.
fn expected(range: std::ops::Range<usize>, first_revision: i64) -> Vec<(String, i64)> {
    range.enumerate().map(|(i, n)| (format!("k{n:04}"), first_revision + i as i64)).collect()
}

async fn write_keys(url: &str, range: std::ops::Range<usize>) {
    write_values(url, range, "v").await
}

async fn write_values(url: &str, range: std::ops::Range<usize>, value: &str) {
    let mut client = kv(url).await;
    for n in range {
        client.put(put(&format!("k{n:04}"), value)).await.expect("put");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_member_streams_history_then_live_events_in_order() {
    let cluster = Cluster::start("127.0.14", 3, &[]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    write_keys(&cluster.members[leader].client_url(), 0..50).await;
    let mut streams = Vec::new();
    for member in &cluster.members {
        let mut stream = open(&member.client_url()).await;
        stream.create("k", 1).await;
        streams.push(stream);
    }
    let follower = (leader + 1) % 3;
    write_keys(&cluster.members[follower].client_url(), 50..100).await;
    for stream in &mut streams {
        assert_eq!(stream.events(100).await, expected(0..100, 2));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_start_revision_is_cancelled_with_the_compact_revision() {
    let cluster = Cluster::start("127.0.15", 3, &[]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let url = cluster.members[leader].client_url();
    write_keys(&url, 0..30).await;
    let mut client = kv(&url).await;
    client.compact(pb::CompactionRequest { revision: 20, physical: true }).await.expect("compact");
    // The follower applies the compaction a moment after the leader answers: wait until its
    // own state says revision 5 is gone (a local read), so the watch meets the compaction.
    let follower_url = cluster.members[(leader + 1) % 3].client_url();
    let mut follower = kv(&follower_url).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let old = pb::RangeRequest {
            key: b"k".to_vec(),
            revision: 5,
            serializable: true,
            ..Default::default()
        };
        match follower.range(old).await {
            Err(status) if status.message().contains("compacted") => break,
            _ => assert!(Instant::now() < deadline, "the follower never applied the compaction"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut stream = open(&follower_url).await;
    let created = stream.create("k", 5).await;
    let cancelled = stream.next().await;
    assert_eq!(cancelled.watch_id, created.watch_id);
    assert!(cancelled.canceled);
    assert_eq!(cancelled.compact_revision, 20);
    assert!(cancelled.events.is_empty());
}

/// A watcher that does not read holds up neither writers nor other watchers, and when it
/// reads again it gets everything, once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_watcher_blocks_nobody_and_misses_nothing() {
    let cluster = Cluster::start("127.0.16", 3, &[]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let url = cluster.members[leader].client_url();
    let mut slow = open(&url).await;
    slow.create("k", 0).await;
    let mut fast = open(&url).await;
    fast.create("k", 0).await;
    // 1,500 events of 2 KiB: far more than the stream's buffers and HTTP/2 window hold.
    let total = 1500;
    let writer = tokio::spawn({
        let url = url.clone();
        async move { write_values(&url, 0..total, &"v".repeat(2048)).await }
    });
    let fast_seen = fast.events(total).await;
    writer.await.expect("writes finished while the slow watcher was not reading");
    assert_eq!(fast_seen, expected(0..total, 2));
    let metrics = common::http_get(&cluster.members[leader].endpoint(), "/metrics").await;
    let moved = metrics
        .lines()
        .find_map(|l| l.strip_prefix("skiff_store_watchers_moved_to_unsynced_total "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .expect("the counter is exported");
    assert!(moved >= 1, "the slow watcher was never moved aside");
    assert_eq!(slow.events(total).await, expected(0..total, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_after_a_member_restart_without_gaps() {
    let mut cluster = Cluster::start("127.0.17", 3, &[]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let follower = (leader + 1) % 3;
    let leader_url = cluster.members[leader].client_url();
    let follower_url = cluster.members[follower].client_url();
    let mut stream = open(&follower_url).await;
    stream.create("k", 0).await;
    write_keys(&leader_url, 0..40).await;
    let mut seen = stream.events(40).await;
    let last_revision = seen.last().expect("events").1;
    cluster.kill(follower);
    write_keys(&leader_url, 40..80).await;
    cluster.spawn(follower);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stream = loop {
        if let Ok(channel) = common::connect(&follower_url).await {
            drop(channel);
            break open(&follower_url).await;
        }
        assert!(Instant::now() < deadline, "restarted member did not come back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    stream.create("k", last_revision + 1).await;
    write_keys(&leader_url, 80..100).await;
    seen.extend(stream.events(60).await);
    assert_eq!(seen, expected(0..100, 2));
}
