//! The NOSPACE alarm: a member past its backend quota raises it through Raft, every member
//! then refuses writes that need space with etcd's error, and `alarm disarm` clears it.
//! Compared step by step with etcd 3.4 under the same quota, and followed on Skiff through an
//! operator's recovery (delete, compact, defragment, disarm).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{kv, put, Cluster};
use store::proto::etcdserverpb as pb;
use store::proto::etcdserverpb::maintenance_client::MaintenanceClient;

const LEADER_TIMEOUT: Duration = Duration::from_secs(20);
const NO_SPACE: &str = "etcdserver: mvcc: database space exceeded";

/// One etcdctl run: exit success, stdout, stderr.
fn etcdctl(endpoint: &str, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("--command-timeout=10s")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run etcdctl");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.unwrap_or("").as_bytes()).expect("write stdin");
    drop(input);
    let output = child.wait_with_output().expect("etcdctl output");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

async fn member_id(url: &str) -> u64 {
    common::status(url).await.expect("status").header.expect("header").member_id
}

/// The steps of an alarm's life, as etcdctl shows them; member ids replaced by their role.
async fn transcript(cluster: &Cluster) -> Vec<String> {
    let first = cluster.members[0].endpoint();
    let second = cluster.members[1].endpoint();
    let first_id = member_id(&cluster.members[0].client_url()).await.to_string();
    let steps: Vec<(&str, Vec<&str>, Option<&str>)> = vec![
        (&first, vec!["alarm", "list"], None),
        (&first, vec!["put", "foo", "bar"], None),
        (&first, vec!["alarm", "list"], None),
        // Raised by the first member, refused by every member.
        (&second, vec!["put", "foo", "bar"], None),
        (&second, vec!["txn"], Some("\nput a b\n\n")),
        (&second, vec!["lease", "grant", "100"], None),
        // Reads, deletes and read-only txns still work.
        (&second, vec!["get", "foo"], None),
        (&second, vec!["del", "foo"], None),
        (&second, vec!["txn"], Some("\nget a\n\n")),
        (&second, vec!["alarm", "disarm"], None),
        (&first, vec!["alarm", "list"], None),
        // Still past the quota: the next write raises it again.
        (&second, vec!["put", "foo", "bar"], None),
        (&first, vec!["alarm", "list"], None),
    ];
    let second_id = member_id(&cluster.members[1].client_url()).await.to_string();
    let mut lines = Vec::new();
    for (endpoint, args, stdin) in steps {
        let (ok, stdout, stderr) = etcdctl(endpoint, &args, stdin);
        // etcdctl's client logs its retries as JSON lines with times and client ids. etcd
        // lists alarms in Go map order (random), so a list of alarms is compared sorted.
        let named = |s: &str| {
            let mut lines: Vec<String> = s
                .lines()
                .filter(|line| !line.starts_with("{\"level\":"))
                .map(|line| {
                    line.replace(&format!("memberID:{first_id} "), "memberID:<first> ")
                        .replace(&format!("memberID:{second_id} "), "memberID:<second> ")
                })
                .collect();
            if lines.iter().all(|line| line.starts_with("memberID:")) {
                lines.sort();
            }
            lines.iter().map(|line| format!("{line}\n")).collect::<String>()
        };
        lines.push(format!(
            "$ {} -> ok={ok}\n{}{}",
            args.join(" "),
            named(&stdout),
            named(&stderr)
        ));
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_sees_the_same_alarm_life_on_skiff_as_on_etcd() {
    // A one-byte quota: the first write that needs space is past it.
    let etcd = Cluster::start_etcd_with("127.0.70", 3, &["--quota-backend-bytes=1"]);
    let skiff = Cluster::start("127.0.71", 3, &["--quota-backend-bytes=1"]);
    etcd.wait_for_leader(LEADER_TIMEOUT).await;
    skiff.wait_for_leader(LEADER_TIMEOUT).await;
    let expected = transcript(&etcd).await;
    let got = transcript(&skiff).await;
    // The reference itself must show the alarm, or the comparison proves nothing.
    assert!(expected[1].contains(NO_SPACE), "{}", expected[1]);
    assert!(expected[2].contains("memberID:<first> alarm:NOSPACE"), "{}", expected[2]);
    for (expected, got) in expected.iter().zip(&got) {
        assert_eq!(got, expected);
    }
    assert_eq!(got.len(), expected.len());

    // `endpoint status` reports the raised alarm among its errors, in etcd's text form.
    let ids = regex::Regex::new(r"memberID:\d+ ").expect("regex");
    let errors = |status: pb::StatusResponse| {
        let errors = status.errors.iter();
        errors.map(|e| ids.replace_all(e, "memberID:<id> ").into_owned()).collect::<Vec<_>>()
    };
    let etcd_status = common::status(&etcd.members[0].client_url()).await.expect("status");
    let skiff_status = common::status(&skiff.members[0].client_url()).await.expect("status");
    assert_eq!(errors(skiff_status), errors(etcd_status));
    assert_eq!(
        errors(common::status(&skiff.members[2].client_url()).await.expect("status")).len(),
        1
    );
}

async fn alarms(url: &str) -> Vec<pb::AlarmMember> {
    let channel = common::connect(url).await.expect("connect");
    let request = pb::AlarmRequest::default();
    let response = MaintenanceClient::new(channel).alarm(request).await.expect("alarm list");
    response.into_inner().alarms
}

/// etcd's recovery procedure: once past the quota, delete data, compact, defragment every
/// member, disarm; then writes succeed again. The alarm survives a restart meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freeing_space_and_disarming_lets_writes_through_again() {
    let quota = 6 * 1024 * 1024;
    let mut cluster = Cluster::start("127.0.72", 3, &[&format!("--quota-backend-bytes={quota}")]);
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await;
    let url = cluster.members[leader].client_url();
    let mut client = kv(&url).await;
    let value = "x".repeat(64 * 1024);
    let mut written = 0;
    let refused = loop {
        // 6 MiB of quota takes about 100 such writes; 400 is a bound, not a guess.
        assert!(written < 400, "no NOSPACE after {written} writes of 64 KiB");
        match client.put(put(&format!("big/{written:04}"), &value)).await {
            Ok(_) => written += 1,
            Err(status) => break status,
        }
    };
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert_eq!(refused.message(), NO_SPACE);
    let raised = alarms(&url).await;
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(raised[0].alarm, pb::AlarmType::Nospace as i32);

    // The alarm is replicated state: a restarted member still has it.
    let follower = (leader + 1) % 3;
    cluster.kill(follower);
    cluster.spawn(follower);
    let follower_url = cluster.members[follower].client_url();
    let deadline = Instant::now() + Duration::from_secs(20);
    while common::status(&follower_url).await.is_err() {
        assert!(Instant::now() < deadline, "restarted member never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut follower_kv = kv(&follower_url).await;
    let status = follower_kv.put(put("after-restart", "v")).await.expect_err("still refused");
    assert_eq!(status.message(), NO_SPACE);

    // Free the space: delete everything written, compact history away, defragment.
    let all = pb::DeleteRangeRequest {
        key: b"big/".to_vec(),
        range_end: common::prefix_end("big/"),
        ..Default::default()
    };
    let deleted = client.delete_range(all).await.expect("delete").into_inner();
    assert_eq!(deleted.deleted, written);
    let revision = deleted.header.expect("header").revision;
    let compact = pb::CompactionRequest { revision, physical: true };
    client.compact(compact).await.expect("compact");
    for member in &cluster.members {
        let channel = common::connect(&member.client_url()).await.expect("connect");
        let mut maintenance = MaintenanceClient::new(channel);
        maintenance.defragment(pb::DefragmentRequest {}).await.expect("defragment");
        let size = maintenance.status(pb::StatusRequest {}).await.expect("status").into_inner();
        assert!(size.db_size < quota, "{} still past the quota of {quota}", size.db_size);
    }
    // Still refused until disarmed.
    let status = client.put(put("small", "v")).await.expect_err("alarm still raised");
    assert_eq!(status.message(), NO_SPACE);
    let channel = common::connect(&url).await.expect("connect");
    let disarm = pb::AlarmRequest {
        action: pb::alarm_request::AlarmAction::Deactivate as i32,
        member_id: raised[0].member_id,
        alarm: raised[0].alarm,
    };
    let cleared = MaintenanceClient::new(channel).alarm(disarm).await.expect("disarm");
    assert_eq!(cleared.into_inner().alarms, raised);
    assert!(alarms(&follower_url).await.is_empty());
    client.put(put("small", "v")).await.expect("write after disarming");
    follower_kv.put(put("small-too", "v")).await.expect("write through a follower");
}
