//! Three-member `skiff store` clusters on loopback: replication, leader failure, catch-up.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{get, kv, prefix_end, put, Cluster};
use store::proto::etcdserverpb as pb;

const LEADER_TIMEOUT: Duration = Duration::from_secs(20);

async fn read_all(url: &str, prefix: &str, serializable: bool) -> BTreeMap<String, String> {
    let mut client = kv(url).await;
    let request = pb::RangeRequest {
        key: prefix.into(),
        range_end: prefix_end(prefix),
        serializable,
        ..Default::default()
    };
    let response = client.range(request).await.expect("range").into_inner();
    response
        .kvs
        .into_iter()
        .map(|kv| {
            (String::from_utf8(kv.key).expect("utf-8"), String::from_utf8(kv.value).expect("utf-8"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_any_member_are_read_from_every_member() {
    let cluster = Cluster::start("127.0.10", 3, &[]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    for (i, member) in cluster.members.iter().enumerate() {
        let mut client = kv(&member.client_url()).await;
        let response = client.put(put(&format!("k/{i}"), &format!("v{i}"))).await.expect("put");
        let header = response.into_inner().header.expect("header");
        assert_ne!(header.cluster_id, 0);
        assert_ne!(header.member_id, 0);
        assert!(header.raft_term >= 1);
    }
    let expected: BTreeMap<String, String> =
        (0..3).map(|i| (format!("k/{i}"), format!("v{i}"))).collect();
    for member in &cluster.members {
        // Linearizable reads see every acknowledged write at once, on any member.
        assert_eq!(read_all(&member.client_url(), "k/", false).await, expected);
    }
    // Revisions agree across members: three puts on a fresh store end at revision 4.
    for member in &cluster.members {
        let mut client = kv(&member.client_url()).await;
        let response = client.range(get("k/0")).await.expect("range").into_inner();
        assert_eq!(response.header.expect("header").revision, 4);
    }
    let _ = leader;
}

/// Writers hammer every member while the leader is killed with SIGKILL; every acknowledged
/// write must be readable afterwards, from every member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start("127.0.11", 3, &[]);
    let old_leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for (w, member) in cluster.members.iter().enumerate() {
        let url = member.client_url();
        let acknowledged = acknowledged.clone();
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            // Bounded: at most 400 writes per writer.
            for n in 0..400 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let key = format!("load/{w}/{n:04}");
                let Ok(channel) = common::connect(&url).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let mut client = pb::kv_client::KvClient::new(channel);
                if client.put(put(&key, "x")).await.is_ok() {
                    acknowledged.lock().expect("lock").push(key);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.kill(old_leader);
    let new_leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    assert_ne!(new_leader, old_leader);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for writer in writers {
        writer.await.expect("writer");
    }
    cluster.spawn(old_leader);
    cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert!(acknowledged.len() > 50, "too few writes acknowledged: {}", acknowledged.len());
    for member in &cluster.members {
        let stored = read_all(&member.client_url(), "load/", false).await;
        let missing: Vec<_> = acknowledged.iter().filter(|k| !stored.contains_key(*k)).collect();
        assert!(missing.is_empty(), "{} lost acknowledged writes: {missing:?}", member.name);
    }
}

/// A follower that misses more entries than the leader keeps after a snapshot must be brought
/// back with a snapshot, and then follow the log again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_far_behind_catches_up_through_a_snapshot() {
    let mut cluster = Cluster::start("127.0.12", 3, &["--snapshot-count", "50"]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let follower = (leader + 1) % 3;
    cluster.kill(follower);
    let leader_url = cluster.members[leader].client_url();
    let mut client = kv(&leader_url).await;
    for n in 0..300 {
        client.put(put(&format!("lag/{n:04}"), &n.to_string())).await.expect("put");
    }
    cluster.spawn(follower);
    let follower_url = cluster.members[follower].client_url();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let seen = read_all(&follower_url, "lag/", true).await;
        if seen.len() == 300 {
            assert_eq!(seen.get("lag/0299").map(String::as_str), Some("299"));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "follower saw {} of 300", seen.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let snapshot_meta = cluster.members[follower].data_dir.join("snapshots/snapshot.meta");
    assert!(snapshot_meta.exists(), "the follower caught up without installing a snapshot");
    // And it keeps following the log afterwards.
    client.put(put("lag/after", "yes")).await.expect("put");
    let mut follower_client = kv(&follower_url).await;
    let response = follower_client.range(get("lag/after")).await.expect("range").into_inner();
    assert_eq!(response.kvs.len(), 1);
}

#[test]
fn bad_flags_and_unusable_data_dirs_fail_clearly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").expect("write file");
    let check = |args: &[&str], expected: &str| {
        let output = std::process::Command::new(common::skiff_binary())
            .arg("store")
            .args(args)
            .output()
            .expect("run skiff");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} should fail");
        assert!(stderr.contains(expected), "{args:?}: {stderr:?} should mention {expected:?}");
    };
    let file = file.to_str().expect("utf-8 path");
    check(&["--data-dir", file, "--listen-client-urls", "http://127.0.13.1:2379"], "not-a-dir");
    check(&["--initial-cluster", "x=http://127.0.0.1:2380"], "does not list this member");
    check(&["--listen-client-urls", "http://localhost:2379"], "IP address");
    check(&["--initial-cluster-state", "sideways"], "sideways");
}
