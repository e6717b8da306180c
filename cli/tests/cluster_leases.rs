//! Leases on three-member `skiff store` clusters: keys vanish in one revision on revoke and on
//! expiry, leases survive a restart of every member, and keep working after the leader dies.

mod common;

use std::time::{Duration, Instant};

use common::{get, kv, prefix_end, Cluster};
use store::proto::etcdserverpb as pb;
use store::proto::etcdserverpb::lease_client::LeaseClient;
use tonic::transport::Channel;

const LEADER_TIMEOUT: Duration = Duration::from_secs(20);
/// Expiry takes the TTL plus up to one expiry tick; a new leader adds an election timeout and a
/// full TTL. Generous bounds for a loaded machine.
const EXPIRY_TIMEOUT: Duration = Duration::from_secs(30);

async fn lease_client(url: &str) -> LeaseClient<Channel> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match common::connect(url).await {
            Ok(channel) => return LeaseClient::new(channel),
            Err(error) => {
                assert!(Instant::now() < deadline, "cannot connect to {url}: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn grant(url: &str, ttl: i64) -> i64 {
    let request = pb::LeaseGrantRequest { ttl, id: 0 };
    let granted = lease_client(url).await.lease_grant(request).await.expect("grant");
    let granted = granted.into_inner();
    assert!(granted.id > 0, "server-chosen ids are positive");
    granted.id
}

async fn put_with_lease(url: &str, key: &str, lease: i64) -> i64 {
    let request =
        pb::PutRequest { key: key.into(), value: b"v".to_vec(), lease, ..Default::default() };
    let response = kv(url).await.put(request).await.expect("put").into_inner();
    response.header.expect("header").revision
}

/// (keys with their mod revisions, header revision) under `prefix`, at `revision` (0: now).
async fn keys_at(url: &str, prefix: &str, revision: i64) -> (Vec<(String, i64)>, i64) {
    let request = pb::RangeRequest {
        key: prefix.into(),
        range_end: prefix_end(prefix),
        revision,
        ..Default::default()
    };
    let response = kv(url).await.range(request).await.expect("range").into_inner();
    let keys = response
        .kvs
        .into_iter()
        .map(|kv| (String::from_utf8(kv.key).expect("utf-8"), kv.lease))
        .collect();
    (keys, response.header.expect("header").revision)
}

async fn time_to_live(url: &str, id: i64) -> pb::LeaseTimeToLiveResponse {
    let request = pb::LeaseTimeToLiveRequest { id, keys: true };
    lease_client(url).await.lease_time_to_live(request).await.expect("ttl").into_inner()
}

/// Waits until no key is left under `prefix`; returns the revision at which they vanished.
async fn wait_until_gone(url: &str, prefix: &str) -> i64 {
    let deadline = Instant::now() + EXPIRY_TIMEOUT;
    loop {
        let (keys, revision) = keys_at(url, prefix, 0).await;
        if keys.is_empty() {
            return revision;
        }
        assert!(Instant::now() < deadline, "keys {keys:?} did not expire");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks that every key under `prefix` alive at `revision - 1` is gone at `revision`, i.e.
/// they went together in one revision.
async fn assert_deleted_in_one_revision(url: &str, prefix: &str, revision: i64, count: usize) {
    let (before, _) = keys_at(url, prefix, revision - 1).await;
    let (after, _) = keys_at(url, prefix, revision).await;
    assert_eq!(before.len(), count, "all {count} keys were alive just before {revision}");
    assert!(after.is_empty(), "none is left at {revision}: {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_and_expiry_delete_attached_keys_in_one_revision() {
    let cluster = Cluster::start("127.0.40", 3, &[]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let follower = cluster.members[(leader + 1) % 3].client_url();
    let other = cluster.members[(leader + 2) % 3].client_url();

    // Granted through a follower (forwarded to the leader), revoked through another member.
    let lease = grant(&follower, 60).await;
    for key in ["r/a", "r/b", "r/c"] {
        put_with_lease(&other, key, lease).await;
    }
    let last_put = put_with_lease(&follower, "kept", 0).await;
    let ttl = time_to_live(&other, lease).await;
    assert_eq!((ttl.granted_ttl, ttl.keys.len()), (60, 3));
    assert!(ttl.ttl > 50 && ttl.ttl <= 60, "remaining {}", ttl.ttl);
    let revoke = pb::LeaseRevokeRequest { id: lease };
    let revoked = lease_client(&other).await.lease_revoke(revoke).await.expect("revoke");
    let revision = revoked.into_inner().header.expect("header").revision;
    assert_eq!(revision, last_put + 1, "a revoke is one revision");
    assert_deleted_in_one_revision(&follower, "r/", revision, 3).await;
    assert_eq!(time_to_live(&follower, lease).await.ttl, -1, "revoked leases are gone");
    let again = lease_client(&follower).await.lease_revoke(revoke).await.expect_err("unknown");
    assert_eq!(again.code(), tonic::Code::NotFound);
    assert_eq!(again.message(), "etcdserver: requested lease not found");

    // A put naming an unknown lease is refused, on its own and inside a txn.
    let put = pb::PutRequest { key: "x".into(), lease, ..Default::default() };
    let refused = kv(&follower).await.put(put.clone()).await.expect_err("unknown lease");
    assert_eq!(refused.message(), "etcdserver: requested lease not found");
    let op = pb::RequestOp { request: Some(pb::request_op::Request::RequestPut(put)) };
    let txn = pb::TxnRequest { success: vec![op], ..Default::default() };
    let refused = kv(&other).await.txn(txn).await.expect_err("unknown lease in txn");
    assert_eq!(refused.code(), tonic::Code::NotFound);

    // Expiry: the minimum TTL (2 s for a 1 s election timeout), decided by the leader.
    let short = grant(&follower, 1).await;
    let ttl = time_to_live(&leader_url(&cluster, leader), short).await;
    assert_eq!(ttl.granted_ttl, 2, "TTLs are raised to the minimum");
    put_with_lease(&other, "e/1", short).await;
    let last_put = put_with_lease(&other, "e/2", short).await;
    let gone_at = wait_until_gone(&follower, "e/").await;
    assert_eq!(gone_at, last_put + 1, "expiry is one revision");
    assert_deleted_in_one_revision(&other, "e/", gone_at, 2).await;
    assert_eq!(time_to_live(&other, short).await.ttl, -1);
}

fn leader_url(cluster: &Cluster, leader: usize) -> String {
    cluster.members[leader].client_url()
}

/// Sends one keep-alive on a fresh stream; returns the TTL answered.
async fn keep_alive_once(url: &str, id: i64) -> i64 {
    let requests = tokio_stream::iter([pb::LeaseKeepAliveRequest { id }]);
    let mut responses =
        lease_client(url).await.lease_keep_alive(requests).await.expect("stream").into_inner();
    let response = responses.message().await.expect("keep-alive").expect("one response");
    assert_eq!(response.id, id);
    response.ttl
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_survive_a_full_restart_and_the_loss_of_the_leader() {
    let mut cluster = Cluster::start("127.0.41", 3, &[]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let url = cluster.members[(leader + 1) % 3].client_url();
    let long = grant(&url, 600).await;
    put_with_lease(&url, "l/long", long).await;
    assert_eq!(keep_alive_once(&url, long).await, 600);
    assert_eq!(keep_alive_once(&url, 12345).await, 0, "an unknown lease gets TTL 0");

    // Every member stops (SIGKILL) and starts again: leases and attachments are replicated
    // state, so they are all back.
    for i in 0..3 {
        cluster.kill(i);
    }
    for i in 0..3 {
        cluster.spawn(i);
    }
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let ttl = time_to_live(&cluster.members[(leader + 2) % 3].client_url(), long).await;
    assert_eq!((ttl.granted_ttl, ttl.keys), (600, vec![b"l/long".to_vec()]));
    let short = grant(&leader_url(&cluster, leader), 2).await;
    put_with_lease(&leader_url(&cluster, leader), "s/short", short).await;

    // The leader dies: the new one extends every lease before expiring any, serves
    // keep-alives, and still expires what nobody keeps alive.
    cluster.kill(leader);
    let new_leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    assert_ne!(new_leader, leader);
    let survivor =
        cluster.members[(0..3).find(|i| *i != leader && *i != new_leader).unwrap()].client_url();
    assert_eq!(keep_alive_once(&survivor, long).await, 600);
    wait_until_gone(&survivor, "s/").await;
    let (keys, _) = keys_at(&survivor, "l/", 0).await;
    assert_eq!(keys, vec![("l/long".to_string(), long)]);
    let fresh = grant(&survivor, 60).await;
    put_with_lease(&survivor, "l/fresh", fresh).await;
    let listed = lease_client(&survivor).await.lease_leases(pb::LeaseLeasesRequest {}).await;
    let mut ids: Vec<i64> =
        listed.expect("list").into_inner().leases.iter().map(|l| l.id).collect();
    ids.sort_unstable();
    let mut expected = vec![long, fresh];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    let revoke = pb::LeaseRevokeRequest { id: long };
    lease_client(&survivor).await.lease_revoke(revoke).await.expect("revoke after failover");
    let (keys, _) = keys_at(&survivor, "l/", 0).await;
    assert_eq!(keys, vec![("l/fresh".to_string(), fresh)]);
    let response = kv(&survivor).await.range(get("l/long")).await.expect("range").into_inner();
    assert!(response.kvs.is_empty());
}
