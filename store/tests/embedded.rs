//! One member in-process: the embedded `Store` handle and the gRPC API over real sockets.

use std::time::Duration;

use store::config::StoreConfig;
use store::mvcc::{
    CompactionRequest, MvccError, PutRequest, RangeRequest, WriteRequest, WriteResponse,
};
use store::proto::etcdserverpb as pb;
use store::proto::etcdserverpb::kv_client::KvClient;
use store::StoreError;

fn config(ip: &str, data_dir: Option<std::path::PathBuf>) -> StoreConfig {
    let mut config = StoreConfig::single("solo", data_dir);
    config.listen_client_urls = vec![format!("http://{ip}:2379")];
    config.advertise_client_urls = config.listen_client_urls.clone();
    config.listen_peer_urls = vec![format!("http://{ip}:2380")];
    config.initial_advertise_peer_urls = config.listen_peer_urls.clone();
    config.initial_cluster = format!("solo=http://{ip}:2380");
    config
}

fn put(key: &str, value: &str) -> WriteRequest {
    WriteRequest::Put(PutRequest { key: key.into(), value: value.into(), ..Default::default() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_handle_follows_etcd_revisions() {
    let running = store::start(config("127.0.30.1", None)).await.expect("start");
    let store = running.store.clone();
    let mut revisions = Vec::new();
    for (key, value) in [("a", "1"), ("b", "2"), ("a", "3")] {
        match store.write(put(key, value)).await.expect("put") {
            WriteResponse::Put(r) => revisions.push(r.header_revision),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(revisions, vec![2, 3, 4], "an empty store is at revision 1");
    let request = RangeRequest { key: b"a".to_vec(), ..Default::default() };
    let now = store.range(request.clone(), false).await.expect("range");
    assert_eq!(now.kvs[0].value, b"3");
    assert_eq!((now.kvs[0].create_revision, now.kvs[0].mod_revision), (2, 4));
    assert_eq!(now.kvs[0].version, 2);
    let past = store.range(RangeRequest { revision: 2, ..request.clone() }, true).await;
    assert_eq!(past.expect("past read").kvs[0].value, b"1");
    store
        .write(WriteRequest::Compaction(CompactionRequest { revision: 3 }))
        .await
        .expect("compact");
    let compacted = store.range(RangeRequest { revision: 2, ..request.clone() }, false).await;
    assert_eq!(compacted, Err(StoreError::Mvcc(MvccError::Compacted)));
    let future = store.range(RangeRequest { revision: 99, ..request }, false).await;
    assert_eq!(future, Err(StoreError::Mvcc(MvccError::FutureRevision)));
    drop(store);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_errors_carry_etcds_codes_and_messages() {
    let running = store::start(config("127.0.30.2", None)).await.expect("start");
    let channel = tonic::transport::Channel::from_static("http://127.0.30.2:2379")
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .expect("connect");
    let mut client = KvClient::new(channel);
    let empty = pb::PutRequest { key: vec![], value: b"v".to_vec(), ..Default::default() };
    let status = client.put(empty).await.expect_err("empty key");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(status.message(), "etcdserver: key is not provided");
    let large = pb::PutRequest {
        key: b"big".to_vec(),
        value: vec![0; store::limits::REQUEST_BYTES_MAX + 1],
        ..Default::default()
    };
    let status = client.put(large).await.expect_err("too large");
    assert_eq!(status.message(), "etcdserver: request is too large");
    let op = || pb::RequestOp {
        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
            key: b"k".to_vec(),
            ..Default::default()
        })),
    };
    let many = pb::TxnRequest {
        success: (0..=store::limits::TXN_OPS_MAX).map(|_| op()).collect(),
        ..Default::default()
    };
    let status = client.txn(many).await.expect_err("too many ops");
    assert_eq!(status.message(), "etcdserver: too many operations in txn request");
    let future = pb::RangeRequest { key: b"k".to_vec(), revision: 50, ..Default::default() };
    let status = client.range(future).await.expect_err("future revision");
    assert_eq!(status.code(), tonic::Code::OutOfRange);
    assert_eq!(status.message(), "etcdserver: mvcc: required revision is a future revision");
    // Nothing was lost or half-applied by the refused requests.
    let all = pb::RangeRequest { key: vec![0], range_end: vec![0], ..Default::default() };
    let response = client.range(all).await.expect("range").into_inner();
    assert_eq!((response.count, response.header.expect("header").revision), (0, 1));
    // An open client connection would hold the member's storage until it closes.
    drop(client);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_data_and_metrics_are_served() {
    let dir = tempfile::tempdir().expect("temp dir");
    let running = store::start(config("127.0.30.3", Some(dir.path().into()))).await.expect("start");
    running.store.write(put("kept", "yes")).await.expect("put");
    running.shutdown().await;
    let running =
        store::start(config("127.0.30.3", Some(dir.path().into()))).await.expect("restart");
    let request = RangeRequest { key: b"kept".to_vec(), ..Default::default() };
    let response = running.store.range(request, false).await.expect("range");
    assert_eq!(response.kvs[0].value, b"yes");
    assert_eq!(response.header_revision, 2);
    let body = http_get("127.0.30.3:2379", "/metrics").await;
    assert!(body.contains("skiff_store_has_leader 1"), "{body}");
    assert!(body.contains("skiff_store_wal_fsync_duration_seconds_count"), "{body}");
    running.shutdown().await;
}

/// A minimal HTTP/1.1 GET, enough for /metrics.
async fn http_get(address: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
}

/// Under concurrent load, writes share Raft entries (group commit) and each still gets its own
/// revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_are_group_committed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let running = store::start(config("127.0.30.4", Some(dir.path().into()))).await.expect("start");
    let writers: Vec<_> = (0..200)
        .map(|i| {
            let store = running.store.clone();
            tokio::spawn(async move { store.write(put(&format!("gc/{i:03}"), "v")).await })
        })
        .collect();
    let mut revisions = Vec::new();
    for writer in writers {
        match writer.await.expect("writer").expect("put") {
            WriteResponse::Put(r) => revisions.push(r.header_revision),
            other => panic!("unexpected {other:?}"),
        }
    }
    revisions.sort();
    assert_eq!(revisions, (2..202).collect::<Vec<i64>>(), "one revision per write");
    let batches = running.store.metrics().proposal_batch_requests.get_sample_count();
    let batched = running.store.metrics().proposal_batch_requests.get_sample_sum();
    assert_eq!(batched as u64, 200, "every write went through the proposer");
    assert!(batches < 200, "200 concurrent writes took {batches} Raft entries: no batching");
    running.shutdown().await;
}
