//! etcdctl 3.4 against a three-member Skiff cluster must print what it prints against a
//! three-member etcd 3.4 cluster (Debian's `etcd-server`), for the same command sequence.
//!
//! Outputs are compared exactly after replacing what legitimately differs between two clusters:
//! member and cluster ids, raft terms, addresses, timings and database sizes.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Cluster;

struct Step {
    args: Vec<String>,
    stdin: Option<Vec<u8>>,
    /// Which member (by index) the command is sent to, spreading load over leader and
    /// followers; `ALL` sends it to every member.
    member: usize,
    /// For commands that run until stopped (`watch`): stop after this many stdout lines.
    stop_after_lines: Option<usize>,
    /// Repeat the command (a `get`) until it prints nothing: waiting for a lease to expire.
    until_empty: bool,
    /// Repeat the command while its stderr says this (a transient refusal).
    retry_while: Option<&'static str>,
}

const ALL: usize = usize::MAX;
/// Stands for the id of the lease granted last (etcdctl prints ids in hex).
const LEASE: &str = "LEASE";
/// Stands for a file in the cluster's temporary directory (`snapshot save`).
const SNAPSHOT: &str = "SNAPSHOT";
/// Replaced by the id of the member the last `member add` added.
const MEMBER: &str = "MEMBER";
/// Replaced by a fourth peer URL in the cluster's address range.
const PEER4: &str = "PEER4";
const SNAPSHOT_FILE: &str = "snapshot.db";
/// How long a lease of the minimum TTL may take to expire, on a loaded machine.
const EXPIRY_TIMEOUT: Duration = Duration::from_secs(30);

fn step(member: usize, args: &str) -> Step {
    let args = args.split_whitespace().map(String::from).collect();
    Step {
        args,
        stdin: None,
        member,
        stop_after_lines: None,
        until_empty: false,
        retry_while: None,
    }
}

/// etcd refuses membership changes until every member has been connected for 5 s (its strict
/// reconfiguration check, "unhealthy cluster"); a defragmentation resets that clock.
fn step_member_change(member: usize, args: &str) -> Step {
    Step { retry_while: Some("etcdserver: unhealthy cluster"), ..step(member, args) }
}

fn step_until_empty(member: usize, args: &str) -> Step {
    Step { until_empty: true, ..step(member, args) }
}

fn step_watch(member: usize, args: &str, lines: usize) -> Step {
    Step { stop_after_lines: Some(lines), ..step(member, args) }
}

fn step_stdin(member: usize, args: &str, stdin: &[u8]) -> Step {
    Step { stdin: Some(stdin.to_vec()), ..step(member, args) }
}

fn script() -> Vec<Step> {
    let too_many: String = (0..129).map(|i| format!("put many{i} v\n")).collect();
    let big_value = vec![b'x'; 1_600_000];
    vec![
        step(0, "put foo bar"),
        step(1, "put foo bar2 --prev-kv"),
        step(2, "put foo1 v1"),
        step(0, "put foo2 v2"),
        step(1, "put zoo z"),
        step(2, "put a/b c"),
        step(0, "get foo"),
        step(1, "get foo -w json"),
        step(2, "get foo --prefix"),
        step(0, "get foo --prefix --limit 2"),
        step(1, "get foo --prefix --limit 2 -w json"),
        step(2, "get foo --prefix --sort-by=MODIFY --order=DESCEND"),
        step(0, "get foo --prefix --sort-by=VALUE --order=ASCEND"),
        step(1, "get foo --prefix --sort-by=CREATE --order=DESCEND"),
        step(2, "get foo --prefix --sort-by=VERSION --order=DESCEND"),
        step(0, "get foo --prefix --sort-by=KEY --order=DESCEND"),
        step(1, "get foo --prefix --keys-only"),
        step(2, "get foo --prefix --count-only -w json"),
        step(0, "get foo --prefix --print-value-only"),
        step(1, "get b --from-key"),
        step(2, "get foo foo2"),
        step(0, "get foo --rev 2"),
        step(1, "get foo --rev 2 -w json"),
        step(2, "get missing"),
        step(0, "get missing -w json"),
        step(1, "get foo --prefix --consistency=s -w json"),
        step(2, "del foo1"),
        step(0, "del foo --prefix --prev-kv"),
        step(1, "del missing"),
        step(2, "get foo --prefix -w json"),
        step_stdin(0, "txn", b"mod(\"zoo\") > \"0\"\n\nput zoo z2\nget zoo\n\nput nope x\n\n"),
        step_stdin(1, "txn", b"value(\"zoo\") = \"nope\"\n\nput zoo z3\n\nget zoo\ndel a/b\n\n"),
        step_stdin(2, "txn -w json", b"ver(\"zoo\") = \"2\"\n\nput zoo z4\n\n\n"),
        step_stdin(0, "txn -w json", b"create(\"zoo\") < \"3\"\n\n\nget zoo\n\n"),
        step(1, "get zoo -w json"),
        step_watch(2, "watch foo --prefix --rev 1", 21),
        step_watch(0, "watch foo --prefix --rev 2 --prev-kv", 29),
        step_watch(1, "watch zoo --rev 1 -w json", 1),
        step_watch(2, "watch a --prefix --rev 1 --prev-kv -w json", 1),
        step(2, "compaction 5"),
        step(0, "get zoo --rev 3"),
        step(1, "watch zoo --rev 3"),
        step(1, "get zoo --rev 5"),
        step(2, "get zoo --rev 1000"),
        step(0, "compaction 4"),
        step(1, "compaction 1000"),
        step(2, "put  x"),
        step_stdin(0, "put big", &big_value),
        step_stdin(1, "txn", format!("\n{too_many}\n\n").as_bytes()),
        step(2, "get a --from-key --keys-only"),
        step(ALL, "endpoint health"),
        step(1, "member list"),
        step(2, "member list -w table"),
        step(ALL, "endpoint status -w table"),
        step(ALL, "endpoint status"),
        // Maintenance: hashes differ between etcd and Skiff by construction (normalized);
        // errors, revisions, compact revisions and the rest of the output must not.
        step(ALL, "endpoint hashkv"),
        step(ALL, "endpoint hashkv -w json"),
        step(0, "endpoint hashkv --rev 3"),
        step(1, "endpoint hashkv --rev 100000"),
        step(ALL, "defrag"),
        step(2, "snapshot save SNAPSHOT"),
        step(0, "alarm list"),
        step(1, "alarm list -w json"),
        // Leases: grant, attach, inspect, keep alive, revoke, expire.
        step(0, "lease grant 60"),
        step(1, "put lk1 v --lease=LEASE"),
        step(2, "lease timetolive LEASE"),
        step(0, "lease timetolive LEASE --keys"),
        step(1, "lease timetolive LEASE --keys -w json"),
        step(2, "lease keep-alive --once LEASE"),
        step(0, "lease keep-alive --once 1234"),
        step(1, "lease list"),
        step(2, "lease list -w json"),
        step(0, "put lk2 v --lease=1234"),
        step(1, "get lk1 -w json"),
        step(2, "lease revoke LEASE"),
        step(0, "lease revoke LEASE"),
        step(1, "lease timetolive LEASE"),
        step(2, "get lk --prefix"),
        step(0, "lease grant 1"),
        step(1, "put lk3 v --lease=LEASE"),
        step(2, "put lk4 v --lease=LEASE"),
        step_until_empty(0, "get lk --prefix"),
        step(1, "lease timetolive LEASE"),
        step(2, "get lk --prefix -w json"),
        step(0, "lease grant 9000000001"),
        step(1, "lease timetolive 1234 -w json"),
        step(2, "lease list"),
        // A learner that never starts: listed without a name, not promotable, removable.
        step_member_change(0, "member add m4 --learner --peer-urls=PEER4"),
        step(1, "member list"),
        step(2, "member promote MEMBER"),
        step_member_change(0, "member remove MEMBER"),
        step(1, "member remove MEMBER"),
        step(2, "member list"),
    ]
}

/// Replaces what differs between any two clusters, keeping everything else byte for byte.
fn normalize(output: &str, prefix: &str) -> String {
    let rules = [
        (r#""(cluster_id|member_id|raft_term|ID|leader|raftTerm)":\d+"#, r#""$1":N"#),
        // Lease ids are random; remaining TTLs depend on timing (-1, "expired", is kept).
        (r#""(id|lease)":\d{8,}"#, r#""$1":N"#),
        (r#""ttl":\d+"#, r#""ttl":N"#),
        (r"remaining\(\d+s\)", "remaining(Ns)"),
        // etcdctl prints ids with %16x: shorter ids are padded with spaces.
        (r"(Member|cluster) +[0-9a-f]{1,16}\b", "$1 ID"),
        (r"\b[0-9a-f]{14,16}\b", "ID"),
        (r"took = [0-9.]+[µmn]?s", "took = T"),
        // HashKV values (the history hash is defined over each store's own layout).
        (r"^(\S+:2379), \d+$", "$1, HASH"),
        (r#""hash":\d+"#, r#""hash":HASH"#),
        // The snapshot file lives in the cluster's temporary directory.
        (r"\S*/\.tmp\w+/", "TMP/"),
        (r"\| +[0-9.]+ [kMG]?B +\|", "| SIZE |"),
        (r"\| +(\d+) +\| +(\d+) +\| +(\d+) +\| +\|$", "| TERM | INDEX | APPLIED | |"),
        (r"\| +(3\.4\.\d+) +\|", "| VERSION |"),
        (
            r", [0-9.]+ [kMG]?B, (true|false), (true|false), \d+, \d+, \d+, ",
            ", S, $1, $2, T, I, A, ",
        ),
    ];
    // etcdctl's client logs its retries (and `snapshot save` its steps) with timestamps and
    // random client ids.
    let kept: Vec<&str> = output.lines().filter(|l| !l.starts_with("{\"level\":")).collect();
    // `member add` lists the cluster in member-id order, and ids differ between clusters.
    let kept: Vec<String> = kept
        .iter()
        .map(|line| match line.strip_prefix("ETCD_INITIAL_CLUSTER=\"") {
            Some(list) => {
                let mut members: Vec<&str> = list.trim_end_matches('"').split(',').collect();
                members.sort();
                format!("ETCD_INITIAL_CLUSTER=\"{}\"", members.join(","))
            }
            None => line.to_string(),
        })
        .collect();
    let mut text = kept.join("\n").replace(prefix, "IP");
    for (pattern, replacement) in rules {
        let re = regex::Regex::new(pattern).expect("valid regex");
        text = text.lines().map(|l| re.replace_all(l, replacement).into_owned() + "\n").collect();
    }
    text
}

/// Lets a long-running etcdctl print `lines` lines (or 20 s pass), then stops it; returns
/// what it printed.
fn read_lines_then_stop(child: &mut std::process::Child, lines: usize) -> Vec<u8> {
    use std::io::Read;
    let mut stdout = child.stdout.take().expect("stdout");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut byte = [0u8; 1];
        while seen.iter().filter(|b| **b == b'\n').count() < lines {
            match stdout.read(&mut byte) {
                Ok(1) => seen.push(byte[0]),
                _ => break,
            }
        }
        let _ = sender.send(seen);
    });
    let seen = receiver.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
    let _ = child.kill();
    seen
}

fn run(cluster: &Cluster, step: &Step, lease: &str, member: &str) -> String {
    if let Some(transient) = step.retry_while {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (text, _) = run_once(cluster, step, lease, member);
            if !text.contains(transient) || std::time::Instant::now() > deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    if !step.until_empty {
        return run_once(cluster, step, lease, member).0;
    }
    let deadline = std::time::Instant::now() + EXPIRY_TIMEOUT;
    loop {
        let (text, stdout_empty) = run_once(cluster, step, lease, member);
        if stdout_empty || std::time::Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs one etcdctl command; returns its transcript and whether it printed nothing.
fn run_once(cluster: &Cluster, step: &Step, lease: &str, member: &str) -> (String, bool) {
    let endpoint = match step.member {
        ALL => cluster.endpoints().join(","),
        member => cluster.members[member].endpoint(),
    };
    let snapshot = cluster.members[0].data_dir.with_file_name(SNAPSHOT_FILE);
    let snapshot = snapshot.to_str().expect("utf-8 temporary path");
    let (prefix, _) = cluster.members[0].ip.rsplit_once('.').expect("dotted address");
    let peer4 = format!("http://{prefix}.4:2380");
    let args: Vec<String> = step
        .args
        .iter()
        .map(|a| {
            a.replace(LEASE, lease)
                .replace(MEMBER, member)
                .replace(SNAPSHOT, snapshot)
                .replace(PEER4, &peer4)
        })
        .collect();
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("etcdctl is installed (`cargo xtask test` installs etcd-client)");
    let mut stdin = child.stdin.take().expect("stdin");
    if let Some(input) = &step.stdin {
        stdin.write_all(input).expect("write stdin");
    }
    drop(stdin);
    let stopped = step.stop_after_lines.map(|lines| read_lines_then_stop(&mut child, lines));
    let output = child.wait_with_output().expect("etcdctl ran");
    let (stdout, exit) = match stopped {
        Some(seen) => (seen, "stopped".to_string()),
        None => (output.stdout, output.status.code().unwrap_or(-1).to_string()),
    };
    let text = format!(
        "$ etcdctl {}\n{}{}exit: {exit}\n",
        args.join(" "),
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    (text, stdout.is_empty())
}

async fn transcript(cluster: &Cluster, prefix: &str) -> Vec<String> {
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    let mut lines = Vec::new();
    let any_member = regex::Regex::new(r"IP\d").expect("valid regex");
    let granted = regex::Regex::new(r"lease ([0-9a-f]+) granted with").expect("valid regex");
    let added = regex::Regex::new(r"Member +([0-9a-f]+) added to cluster").expect("valid regex");
    let mut lease = String::new();
    let mut member = String::new();
    for step in script() {
        let raw = run(cluster, &step, &lease, &member);
        if let Some(captures) = granted.captures(&raw) {
            lease = captures[1].to_string();
        }
        if let Some(captures) = added.captures(&raw) {
            member = captures[1].to_string();
        }
        let mut text = normalize(&raw, prefix);
        // etcd lists leases in map order: compare the rows as a set.
        let lease_list = step.args.iter().take(2).eq(["lease", "list"].iter());
        if lease_list
            || matches!(step.args.first().map(String::as_str), Some("member" | "endpoint"))
        {
            // Rows come ordered by member id (or by reply), ids and the leader differ between
            // clusters: compare them as a set of rows, whoever they are about.
            let text_any = any_member.replace_all(&text, "IP").into_owned();
            let mut rows: Vec<&str> = text_any.lines().collect();
            rows.sort();
            text = rows.join("\n");
        }
        lines.push(text);
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_prints_the_same_for_skiff_as_for_etcd() {
    let reference = Cluster::start_etcd("127.0.20", 3);
    let expected = transcript(&reference, "127.0.20.").await;
    drop(reference);
    let skiff = Cluster::start("127.0.21", 3, &[]);
    let actual = transcript(&skiff, "127.0.21.").await;
    let mut differences = Vec::new();
    for (want, got) in expected.iter().zip(&actual) {
        if want != got {
            differences.push(format!("--- etcd 3.4:\n{want}\n--- skiff:\n{got}"));
        }
    }
    assert_eq!(expected.len(), actual.len());
    let count = differences.len();
    assert!(differences.is_empty(), "{count} differences:\n{}", differences.join("\n"));
}
