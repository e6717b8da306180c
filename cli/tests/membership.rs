//! Membership changes on a running three-member cluster: a learner joins, catches up, is
//! promoted; the leader is removed and the cluster carries on.

mod common;

use std::time::{Duration, Instant};

use common::{get, kv, put, Cluster};
use store::proto::etcdserverpb as pb;
use store::proto::etcdserverpb::cluster_client::ClusterClient;

const LEADER_TIMEOUT: Duration = Duration::from_secs(20);

async fn cluster_client(url: &str) -> ClusterClient<tonic::transport::Channel> {
    ClusterClient::new(common::connect(url).await.expect("connect"))
}

async fn wait_until_serves(url: &str, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(channel) = common::connect(url).await {
            let mut client = pb::kv_client::KvClient::new(channel);
            let request = pb::RangeRequest { serializable: true, ..get(key) };
            if let Ok(response) = client.range(request).await {
                if !response.into_inner().kvs.is_empty() {
                    return;
                }
            }
        }
        assert!(Instant::now() < deadline, "{url} never served {key}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_joins_is_promoted_and_the_leader_can_be_removed() {
    let mut cluster = Cluster::start("127.0.18", 3, &[]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let leader_url = cluster.members[leader].client_url();
    let mut client = kv(&leader_url).await;
    for n in 0..50 {
        client.put(put(&format!("before/{n}"), "v")).await.expect("put");
    }
    // Added through a follower, which forwards the change to the leader.
    let joiner = cluster.plan_member();
    let follower_url = cluster.members[(leader + 1) % 3].client_url();
    let mut members = cluster_client(&follower_url).await;
    let added = members
        .member_add(pb::MemberAddRequest {
            peer_ur_ls: vec![cluster.members[joiner].peer_url()],
            is_learner: true,
        })
        .await
        .expect("member add")
        .into_inner();
    let new_id = added.member.expect("added member").id;
    assert_eq!(added.members.len(), 4);
    assert!(added.members.iter().any(|m| m.id == new_id && m.is_learner));
    let again = members
        .member_add(pb::MemberAddRequest {
            peer_ur_ls: vec![cluster.members[joiner].peer_url()],
            is_learner: true,
        })
        .await
        .expect_err("duplicate");
    assert_eq!(again.message(), "etcdserver: member ID already exist");
    cluster.spawn(joiner);
    wait_until_serves(&cluster.members[joiner].client_url(), "before/49").await;
    let promoted = members
        .member_promote(pb::MemberPromoteRequest { id: new_id })
        .await
        .expect("promote")
        .into_inner();
    assert!(promoted.members.iter().all(|m| !m.is_learner), "{promoted:?}");
    let twice = members.member_promote(pb::MemberPromoteRequest { id: new_id }).await;
    assert_eq!(
        twice.expect_err("not a learner").message(),
        "etcdserver: can only promote a learner member"
    );

    // Remove the leader itself; the others elect a new one and keep serving.
    let leader_id = common::status(&leader_url).await.expect("status").header.expect("h").member_id;
    let mut leader_members = cluster_client(&leader_url).await;
    let remaining = leader_members
        .member_remove(pb::MemberRemoveRequest { id: leader_id })
        .await
        .unwrap_or_else(|e| panic!("remove leader: {e}\n{}", cluster.log_of(leader)))
        .into_inner();
    assert_eq!(remaining.members.len(), 3);
    assert!(remaining.members.iter().all(|m| m.id != leader_id));
    // Like etcd, a removed member stops on its own, saying why.
    let exited = cluster.wait_for_exit(leader, Duration::from_secs(20));
    let log = cluster.log_of(leader);
    assert!(
        exited.is_some_and(|s| !s.success()),
        "removed leader still running: {exited:?}\n{log}"
    );
    assert!(log.contains("has been removed from the cluster"), "{log}");
    let new_leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    assert_ne!(new_leader, leader);
    let mut client = kv(&cluster.members[joiner].client_url()).await;
    client.put(put("after", "yes")).await.expect("write after removing the leader");
    let response = client.range(get("after")).await.expect("read").into_inner();
    assert_eq!(response.kvs.len(), 1);
    let unknown = members.member_remove(pb::MemberRemoveRequest { id: leader_id }).await;
    assert_eq!(unknown.expect_err("gone").message(), "etcdserver: member not found");
}

/// Regression: promoting a learner that never started used to pass the in-sync check and
/// leave the joint configuration waiting for it, blocking every later membership change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_that_never_started_is_not_promoted() {
    let mut cluster = Cluster::start("127.0.19", 3, &[]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let url = cluster.members[leader].client_url();
    let absent = cluster.plan_member();
    let mut members = cluster_client(&url).await;
    let add = pb::MemberAddRequest {
        peer_ur_ls: vec![cluster.members[absent].peer_url()],
        is_learner: true,
    };
    let id = members.member_add(add).await.expect("add").into_inner().member.expect("member").id;
    let refused = members.member_promote(pb::MemberPromoteRequest { id }).await;
    assert_eq!(
        refused.expect_err("not in sync").message(),
        "etcdserver: can only promote a learner member which is in sync with leader"
    );
    let removed = members.member_remove(pb::MemberRemoveRequest { id }).await.expect("remove");
    assert_eq!(removed.into_inner().members.len(), 3);
}

fn etcdctl(endpoint: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .output()
        .expect("run etcdctl")
}

/// etcdctl's `move-leader` hands leadership to the chosen member (twice, so neither choice
/// is luck) while a writer keeps writing; no acknowledged write is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_leader_hands_leadership_to_the_chosen_member() {
    let cluster = Cluster::start("127.0.23", 3, &[]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let mut ids = Vec::new();
    for member in &cluster.members {
        let status = common::status(&member.client_url()).await.expect("status");
        ids.push(status.header.expect("header").member_id);
    }
    let writer_url = cluster.members[leader].client_url();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut client = kv(&writer_url).await;
            let mut acknowledged = 0;
            // Bounded in count and time; writes made during a transfer wait for it.
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && acknowledged < 5_000 {
                if client.put(put(&format!("w/{acknowledged:05}"), "v")).await.is_ok() {
                    acknowledged += 1;
                }
            }
            acknowledged
        }
    });
    let mut current = leader;
    for step in 1..=2 {
        let target = (current + step) % 3;
        let endpoints = cluster.endpoints().join(",");
        let output = etcdctl(&endpoints, &["move-leader", &format!("{:x}", ids[target])]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(
            stdout,
            format!("Leadership transferred from {:x} to {:x}\n", ids[current], ids[target])
        );
        assert_eq!(cluster.wait_for_leader(LEADER_TIMEOUT).await, target);
        current = target;
    }
    // A follower cannot hand leadership over; the server says so as etcd does.
    let follower = (current + 1) % 3;
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_kvctl"))
        .arg(format!("--endpoints={}", cluster.members[follower].endpoint()))
        .args(["move-leader", &format!("{:x}", ids[current])])
        .output()
        .expect("run kvctl");
    assert!(!refused.status.success());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acknowledged = writer.await.expect("writer");
    assert!(acknowledged > 0, "the writer never got a write through");
    let mut client = kv(&cluster.members[current].client_url()).await;
    let all = pb::RangeRequest {
        key: b"w/".to_vec(),
        range_end: common::prefix_end("w/"),
        count_only: true,
        ..Default::default()
    };
    let count = client.range(all).await.expect("count").into_inner().count;
    assert!(count >= acknowledged as i64, "{count} stored < {acknowledged} acknowledged");
}
