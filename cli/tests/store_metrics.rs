//! A store member's `/metrics`, on its client port and on `--listen-metrics-urls`: Prometheus
//! accepts the exposition (`promtool check metrics`), and every family an operator needs is
//! there with the values the member's work implies.

mod common;

use std::time::{Duration, Instant};

use common::{kv, put, Cluster};
use store::proto::etcdserverpb as pb;
use store::proto::etcdserverpb::lease_client::LeaseClient;
use store::proto::etcdserverpb::watch_client::WatchClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const LEADER_TIMEOUT: Duration = Duration::from_secs(20);
const METRICS_ADDRESS: &str = "127.0.122.1:2381";

/// `GET /metrics` over HTTP/1.0, so the body comes whole (never chunked); returns the body.
async fn scrape(address: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect");
    let request = format!("GET /metrics HTTP/1.0\r\nHost: {address}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.") && head.contains(" 200 "), "{head}");
    body.to_string()
}

/// The value of one series (`name{labels}` exactly as exposed).
fn value(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// Every family the issue asks for, with its type.
const FAMILIES: &[(&str, &str)] = &[
    ("skiff_store_has_leader", "gauge"),
    ("skiff_store_is_leader", "gauge"),
    ("skiff_store_leader_changes_seen_total", "counter"),
    ("skiff_store_proposals_committed_total", "counter"),
    ("skiff_store_proposals_applied_total", "counter"),
    ("skiff_store_proposals_pending", "gauge"),
    ("skiff_store_proposals_failed_total", "counter"),
    ("skiff_store_wal_fsync_duration_seconds", "histogram"),
    ("skiff_store_backend_commit_duration_seconds", "histogram"),
    ("skiff_store_db_total_size_in_bytes", "gauge"),
    ("skiff_store_db_total_size_in_use_in_bytes", "gauge"),
    ("skiff_store_mvcc_keys", "gauge"),
    ("skiff_store_watchers", "gauge"),
    ("skiff_store_slow_watchers", "gauge"),
    ("skiff_store_watch_events_sent_total", "counter"),
    ("skiff_store_leases", "gauge"),
    ("skiff_store_lease_granted_total", "counter"),
    ("skiff_store_lease_revoked_total", "counter"),
    ("skiff_store_lease_renewed_total", "counter"),
    ("skiff_store_grpc_requests_total", "counter"),
    ("skiff_store_grpc_request_duration_seconds", "histogram"),
    ("process_resident_memory_bytes", "gauge"),
    ("process_cpu_seconds_total", "counter"),
    ("process_open_fds", "gauge"),
    ("process_start_time_seconds", "gauge"),
];

/// Series whose value the test's own work fixes (polled: some gauges follow Raft's metrics
/// asynchronously).
const VALUES: &[(&str, f64)] = &[
    ("skiff_store_has_leader", 1.0),
    ("skiff_store_is_leader", 1.0),
    ("skiff_store_leader_changes_seen_total", 1.0),
    // k/a, k/b, k/d: k/a was overwritten and k/c deleted.
    ("skiff_store_mvcc_keys", 3.0),
    ("skiff_store_watchers", 1.0),
    ("skiff_store_watch_events_sent_total", 1.0),
    ("skiff_store_leases", 1.0),
    ("skiff_store_lease_granted_total", 1.0),
    ("skiff_store_lease_renewed_total", 1.0),
    ("skiff_store_grpc_requests_total{code=\"Ok\",method=\"Put\"}", 5.0),
    ("skiff_store_grpc_requests_total{code=\"Ok\",method=\"Range\"}", 1.0),
    ("skiff_store_grpc_requests_total{code=\"Ok\",method=\"LeaseGrant\"}", 1.0),
];

/// Series that must be above zero once the member has done some work (sizes are refreshed
/// about once a second).
const POSITIVE: &[&str] = &[
    "skiff_store_proposals_committed_total",
    "skiff_store_proposals_applied_total",
    "skiff_store_wal_fsync_duration_seconds_count",
    "skiff_store_backend_commit_duration_seconds_count",
    "skiff_store_grpc_request_duration_seconds_count{method=\"Range\"}",
    "skiff_store_db_total_size_in_bytes",
    "skiff_store_db_total_size_in_use_in_bytes",
    "process_resident_memory_bytes",
    "process_open_fds",
];

/// An open watch: it counts as a watcher while both sides are held.
struct OpenWatch {
    _requests: mpsc::Sender<pb::WatchRequest>,
    _responses: tonic::Streaming<pb::WatchResponse>,
}

/// Puts, a get, a delete, a watch that sees one event and a lease granted and renewed.
async fn do_work(url: &str) -> OpenWatch {
    let mut client = kv(url).await;
    for (key, value) in [("k/a", "1"), ("k/b", "1"), ("k/c", "1"), ("k/a", "2")] {
        client.put(put(key, value)).await.expect("put");
    }
    let got = client.range(common::get("k/a")).await.expect("get").into_inner();
    assert_eq!(got.kvs[0].value, b"2");
    let delete = pb::DeleteRangeRequest { key: "k/c".into(), ..Default::default() };
    assert_eq!(client.delete_range(delete).await.expect("delete").into_inner().deleted, 1);

    let channel = common::connect(url).await.expect("connect");
    let (requests, outgoing) = mpsc::channel(4);
    let create = pb::WatchCreateRequest {
        key: "k/".into(),
        range_end: common::prefix_end("k/"),
        ..Default::default()
    };
    let request = pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(create)),
    };
    requests.send(request).await.expect("send create");
    let mut watch = WatchClient::new(channel.clone());
    let mut responses =
        watch.watch(ReceiverStream::new(outgoing)).await.expect("watch").into_inner();
    let created = responses.message().await.expect("created").expect("open");
    assert!(created.created);
    client.put(put("k/d", "1")).await.expect("put");
    let event = responses.message().await.expect("event").expect("open");
    assert_eq!(event.events.len(), 1);

    let mut lease = LeaseClient::new(channel);
    let grant = pb::LeaseGrantRequest { ttl: 60, id: 0 };
    let granted = lease.lease_grant(grant).await.expect("grant").into_inner();
    let (renewals, renewal_requests) = mpsc::channel(1);
    renewals.send(pb::LeaseKeepAliveRequest { id: granted.id }).await.expect("send");
    let mut kept = lease
        .lease_keep_alive(ReceiverStream::new(renewal_requests))
        .await
        .expect("keep-alive")
        .into_inner();
    assert_eq!(kept.message().await.expect("renewed").expect("open").ttl, 60);
    OpenWatch { _requests: requests, _responses: responses }
}

/// What is wrong with an exposition: series without their expected value, or not positive.
fn wrong_values(exposition: &str) -> Vec<String> {
    let mut wrong: Vec<String> = VALUES
        .iter()
        .filter(|(series, expected)| value(exposition, series) != Some(*expected))
        .map(|(series, want)| format!("{series} = {:?}, want {want}", value(exposition, series)))
        .collect();
    for series in POSITIVE {
        let found = value(exposition, series);
        if !found.is_some_and(|v| v > 0.0) {
            wrong.push(format!("{series} = {found:?}, want > 0"));
        }
    }
    wrong
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_valid_prometheus_and_count_the_members_work() {
    let metrics_url = format!("http://{METRICS_ADDRESS}");
    let cluster = Cluster::start("127.0.122", 1, &["--listen-metrics-urls", &metrics_url]);
    cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let member = &cluster.members[0];
    let _watch = do_work(&member.client_url()).await;

    let deadline = Instant::now() + Duration::from_secs(20);
    let exposition = loop {
        let exposition = scrape(&member.endpoint()).await;
        let wrong = wrong_values(&exposition);
        if wrong.is_empty() {
            break exposition;
        }
        assert!(Instant::now() < deadline, "wrong values:\n{}\n{exposition}", wrong.join("\n"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for (family, kind) in FAMILIES {
        let declared = format!("# TYPE {family} {kind}");
        assert!(exposition.lines().any(|l| l == declared), "{declared:?} missing:\n{exposition}");
    }
    common::promtool_check(&exposition);

    // The metrics-only listener serves the same registry.
    let separate = scrape(METRICS_ADDRESS).await;
    assert_eq!(value(&separate, "skiff_store_mvcc_keys"), Some(3.0));
    common::promtool_check(&separate);
}
