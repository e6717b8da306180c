//! Maintenance on a real three-member Skiff cluster: HashKV agrees on every member for the same
//! revision; a backup taken with `kvctl snapshot save` (and with etcdctl 3.4's) restores with
//! `kvctl snapshot restore` into three new data directories from which a new cluster starts,
//! serves the saved data (same HashKV at the saved revision) and accepts writes after it.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::Cluster;
use store::proto::etcdserverpb as pb;
use store::proto::etcdserverpb::maintenance_client::MaintenanceClient;

const TIMEOUT: Duration = Duration::from_secs(30);

fn kvctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kvctl")).args(args).output().expect("kvctl runs")
}

fn succeeded(output: Output, what: &str) -> (String, String) {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{what} failed:\n{stdout}\n{stderr}");
    (stdout, stderr)
}

/// HashKV at `revision` from the member at `url`, retrying while it has not applied it yet.
async fn hash_kv(url: &str, revision: i64) -> pb::HashKvResponse {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let channel = common::connect(url).await.expect("connect");
        let request = pb::HashKvRequest { revision };
        match MaintenanceClient::new(channel).hash_kv(request).await {
            Ok(response) => return response.into_inner(),
            Err(status) => {
                let future = status.message().contains("future revision");
                assert!(future && Instant::now() < deadline, "hashkv at {revision}: {status}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Every member's HashKV at `revision`; asserts they agree and returns the common answer.
async fn agreed_hash(cluster: &Cluster, revision: i64) -> (u32, i64) {
    let mut answers = Vec::new();
    for member in &cluster.members {
        let response = hash_kv(&member.client_url(), revision).await;
        answers.push((response.hash, response.compact_revision));
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "members disagree: {answers:?}");
    answers[0]
}

/// Writes history with overwrites, deletes and a compaction through every member; returns
/// the last revision.
async fn write_history(cluster: &Cluster) -> i64 {
    let mut revision = 0;
    for i in 0..120 {
        let member = &cluster.members[i % cluster.members.len()];
        let mut kv = common::kv(&member.client_url()).await;
        let key = format!("key{:03}", i % 80);
        let put = kv.put(common::put(&key, &format!("value{i}"))).await.expect("put");
        revision = put.into_inner().header.expect("header").revision;
    }
    let mut kv = common::kv(&cluster.members[0].client_url()).await;
    let delete = pb::DeleteRangeRequest {
        key: b"key07".to_vec(),
        range_end: common::prefix_end("key07"),
        ..Default::default()
    };
    kv.delete_range(delete).await.expect("delete");
    kv.compact(pb::CompactionRequest { revision: revision - 10, physical: true })
        .await
        .expect("compact");
    let last = kv.put(common::put("last", "before backup")).await.expect("put");
    last.into_inner().header.expect("header").revision
}

fn restore_members(backup: &Path, target: &Cluster) {
    for member in &target.members {
        let peer_url = member.peer_url();
        let output = kvctl(&[
            "snapshot",
            "restore",
            backup.to_str().expect("utf-8 path"),
            "--name",
            &member.name,
            "--data-dir",
            member.data_dir.to_str().expect("utf-8 path"),
            "--initial-cluster",
            target.initial_cluster(),
            "--initial-advertise-peer-urls",
            &peer_url,
        ]);
        let (_, stderr) = succeeded(output, "kvctl snapshot restore");
        assert!(stderr.contains("restored snapshot at revision"), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_into_a_new_cluster_that_serves_it_and_goes_on() {
    let source = Cluster::start("127.0.50", 3, &[]);
    source.wait_for_leader(TIMEOUT).await;
    let saved_revision = write_history(&source).await;
    let (hash_at_saved, compacted) = agreed_hash(&source, saved_revision).await;
    assert_eq!(compacted, saved_revision - 12);
    assert_eq!(agreed_hash(&source, saved_revision - 5).await.1, compacted);

    let dir = tempfile::tempdir().expect("temp dir");
    let backup = dir.path().join("backup.db");
    let endpoint = source.members[1].endpoint();
    let path = backup.to_str().expect("utf-8 path");
    let output = kvctl(&["--endpoints", &endpoint, "snapshot", "save", path]);
    let (stdout, stderr) = succeeded(output, "kvctl snapshot save");
    assert_eq!(stdout, format!("Snapshot saved at {path}\n"));
    assert!(stderr.contains("(100%)"), "progress is reported: {stderr}");
    let output = kvctl(&["snapshot", "status", path, "-w", "json"]);
    let (stdout, _) = succeeded(output, "kvctl snapshot status");
    let status: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(status["revision"], saved_revision);
    assert_eq!(status["totalSize"], std::fs::metadata(&backup).expect("saved").len());

    // etcdctl 3.4 accepts the stream too, and what it saves is the same kind of backup.
    let etcdctl_backup = dir.path().join("etcdctl.db");
    let etcdctl_path = etcdctl_backup.to_str().expect("utf-8 path");
    let output = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &endpoint, "snapshot", "save", etcdctl_path])
        .output()
        .expect("etcdctl is installed");
    let (stdout, _) = succeeded(output, "etcdctl snapshot save");
    assert_eq!(stdout, format!("Snapshot saved at {etcdctl_path}\n"));
    let output = kvctl(&["snapshot", "status", etcdctl_path, "-w", "json"]);
    let (stdout, _) = succeeded(output, "kvctl snapshot status of etcdctl's file");
    let status: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(status["revision"], saved_revision);
    drop(source);

    let mut target = Cluster::unstarted("127.0.51", 3, &[]);
    restore_members(&backup, &target);
    for i in 0..target.members.len() {
        target.spawn(i);
    }
    target.wait_for_leader(TIMEOUT).await;
    // The restored history hashes as the saved one did.
    assert_eq!(agreed_hash(&target, saved_revision).await, (hash_at_saved, compacted));
    let mut kv = common::kv(&target.members[2].client_url()).await;
    let range = pb::RangeRequest {
        key: b"key".to_vec(),
        range_end: common::prefix_end("key"),
        ..Default::default()
    };
    let read = kv.range(range).await.expect("range").into_inner();
    assert_eq!(read.count, 70, "80 keys written, 10 deleted");
    assert_eq!(read.header.expect("header").revision, saved_revision);
    let last = kv.range(common::get("last")).await.expect("get").into_inner();
    assert_eq!(last.kvs[0].value, b"before backup");
    assert_eq!(last.kvs[0].mod_revision, saved_revision);
    // New writes continue the revision sequence, on every member.
    let put = kv.put(common::put("after", "restore")).await.expect("put after restore");
    let revision = put.into_inner().header.expect("header").revision;
    assert_eq!(revision, saved_revision + 1);
    agreed_hash(&target, revision).await;
    let old = pb::RangeRequest { revision: compacted - 1, ..common::get("key001") };
    let error = kv.range(old).await.expect_err("compacted before the backup");
    assert_eq!(error.message(), "etcdserver: mvcc: required revision has been compacted");
}
