//! `lock`, `elect`, `watch -i` and `alarm` through etcdctl 3.4 and kvctl, on a three-member
//! etcd 3.4 cluster (127.0.60.x) and a three-member Skiff cluster (127.0.61.x): both tools must
//! print the same on both servers, a waiting lock must wait for its holder, and observers must
//! follow leader changes.
//!
//! Every child process is stopped by its own pid (SIGINT to release, SIGKILL when dropped), and
//! every wait has a deadline.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Cluster;

const ETCD_PREFIX: &str = "127.0.60";
const SKIFF_PREFIX: &str = "127.0.61";
const LEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a step may take to print what it should or to exit.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a waiting lock is given to (wrongly) print while its holder still holds.
const STILL_WAITING: Duration = Duration::from_millis(800);

/// Both tests start a Skiff cluster on the same addresses: one at a time.
static SKIFF_ADDRESSES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Clone, Copy, Debug)]
enum Tool {
    Etcdctl,
    Kvctl,
}

impl Tool {
    fn command(self, endpoint: &str) -> Command {
        let mut command = match self {
            Tool::Etcdctl => {
                let mut command = Command::new("etcdctl");
                command.env("ETCDCTL_API", "3");
                command
            }
            Tool::Kvctl => Command::new(env!("CARGO_BIN_EXE_kvctl")),
        };
        command.arg(format!("--endpoints={endpoint}"));
        command
    }
}

/// A running etcdctl or kvctl, killed (by pid) if still running when dropped.
struct Process {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Process {
    fn spawn(tool: Tool, endpoint: &str, args: &[&str]) -> Process {
        let mut child = tool
            .command(endpoint)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {tool:?} (is etcd-client installed?): {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().expect("stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let stdin = child.stdin.take();
        Process { child, stdin, lines, stderr: Some(stderr) }
    }

    /// The next `count` lines of stdout; fails the test if they do not come in time.
    fn read_lines(&mut self, count: usize) -> Vec<String> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        (0..count)
            .map(|_| {
                let left = deadline.saturating_duration_since(Instant::now());
                self.lines.recv_timeout(left).unwrap_or_else(|_| {
                    panic!("expected {count} lines of output within {STEP_TIMEOUT:?}")
                })
            })
            .collect()
    }

    /// A line printed within `wait`, if any.
    fn line_within(&mut self, wait: Duration) -> Option<String> {
        self.lines.recv_timeout(wait).ok()
    }

    fn write_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").and_then(|()| stdin.flush()).expect("write stdin");
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args([&format!("-{name}"), &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -{name} {pid}");
    }

    /// Waits for the exit; returns the rest of stdout, stderr (without etcdctl's client log
    /// lines) and the exit code.
    fn finish(mut self) -> (String, String, i32) {
        let deadline = Instant::now() + STEP_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("poll child") {
                break status;
            }
            assert!(Instant::now() < deadline, "process did not exit within {STEP_TIMEOUT:?}");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stdout = String::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            stdout.push_str(&line);
            stdout.push('\n');
        }
        let stderr = self.stderr.take().expect("stderr reader").join().expect("stderr read");
        let stderr: String = stderr
            .lines()
            .filter(|line| !line.starts_with("{\"level\":"))
            .map(|line| format!("{line}\n"))
            .collect();
        (stdout, stderr, status.code().unwrap_or(-1))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a command to completion: `$ args`, stdout, stderr, exit code.
fn run(tool: Tool, endpoint: &str, args: &[&str]) -> String {
    let process = Process::spawn(tool, endpoint, args);
    let (stdout, stderr, code) = process.finish();
    format!("$ {}\n{stdout}{stderr}exit: {code}\n", args.join(" "))
}

/// Runs a command that holds something until interrupted: reads the `lines` it prints once it
/// holds, then sends SIGINT and waits for the exit.
fn run_until_interrupted(tool: Tool, endpoint: &str, args: &[&str], lines: usize) -> String {
    let mut process = Process::spawn(tool, endpoint, args);
    let held: String = process.read_lines(lines).iter().map(|l| format!("{l}\n")).collect();
    process.signal("INT");
    let (stdout, stderr, code) = process.finish();
    format!("$ {} (then SIGINT)\n{held}{stdout}{stderr}exit: {code}\n", args.join(" "))
}

/// `watch -i`: each input line is written once the previous one's output has arrived, so the
/// output's order does not depend on timing; then standard input is closed.
fn run_interactive_watch(tool: Tool, endpoint: &str, script: &[(&str, usize)]) -> String {
    let mut process = Process::spawn(tool, endpoint, &["watch", "-i"]);
    let mut text = String::from("$ watch -i\n");
    for (line, printed) in script {
        process.write_line(line);
        text.push_str(&format!("< {line}\n"));
        for printed in process.read_lines(*printed) {
            text.push_str(&printed);
            text.push('\n');
        }
    }
    process.close_stdin();
    let (stdout, stderr, code) = process.finish();
    format!("{text}{stdout}{stderr}exit: {code}\n")
}

/// Replaces lease ids (they end lock and election keys) and, with `revisions`, the revisions
/// printed, which differ between two runs on the same cluster.
fn normalize(text: &str, revisions: bool) -> String {
    let mut rules = vec![(r"/[0-9a-f]{1,16}\b", "/LEASE")];
    if revisions {
        rules.push((r"(/LEASE) \d+", "$1 REV"));
        rules.push((r"progress notify: \d+", "progress notify: REV"));
    }
    let mut text = text.to_string();
    for (pattern, replacement) in rules {
        let re = regex::Regex::new(pattern).expect("valid regex");
        text = re.replace_all(&text, replacement).into_owned();
    }
    text
}

/// What both tools print for the same steps on one cluster, in order: each step once through
/// etcdctl, then through kvctl.
fn transcript(cluster: &Cluster) -> Vec<(String, String)> {
    let first = cluster.members[0].endpoint();
    let second = cluster.members[1].endpoint();
    let all = cluster.endpoints().join(",");
    let both = |step: &dyn Fn(Tool) -> String| (step(Tool::Etcdctl), step(Tool::Kvctl));
    let show_lock = "echo \"$ETCD_LOCK_KEY $ETCD_LOCK_REV\"";
    let put = |key: &str, value: &str| {
        let output = run(Tool::Etcdctl, &first, &["put", key, value]);
        assert!(output.contains("\nOK\n"), "{output}");
    };
    put("w1", "a");
    put("w1", "b");
    put("w2", "c");
    let watch_script = [
        ("watch w1 --rev 1", 6),
        ("", 0),
        ("bogus x", 0),
        ("watch --prev-kv w2 --rev 1", 3),
        ("progress", 2),
        ("watch --prefix a b", 0),
        ("watch", 0),
    ];
    vec![
        both(&|tool| run(tool, &first, &["lock", "L1", "--", "sh", "-c", show_lock])),
        both(&|tool| run(tool, &second, &["lock", "--ttl", "5", "L1", "sh", "--", "-c", "exit 3"])),
        both(&|tool| run(tool, &first, &["lock"])),
        both(&|tool| run(tool, &all, &["lock", "L1", "no-such-command-here"])),
        both(&|tool| run_until_interrupted(tool, &second, &["lock", "L2"], 2)),
        both(&|tool| run(tool, &first, &["get", "--prefix", "L"])),
        both(&|tool| run_until_interrupted(tool, &first, &["elect", "E1", "p1"], 2)),
        both(&|tool| run(tool, &first, &["get", "--prefix", "E"])),
        both(&|tool| run(tool, &first, &["elect", "E1"])),
        both(&|tool| run(tool, &first, &["elect", "E1", "p", "extra"])),
        both(&|tool| run_interactive_watch(tool, &second, &watch_script)),
        both(&|tool| run(tool, &first, &["alarm", "list"])),
        both(&|tool| run(tool, &second, &["alarm", "disarm"])),
        both(&|tool| run(tool, &first, &["alarm", "list", "-w", "json"])),
        both(&|tool| run(tool, &first, &["alarm", "disarm", "-w", "json"])),
        both(&|tool| run(tool, &first, &["alarm", "list", "-w", "table"])),
        both(&|tool| run(tool, &first, &["alarm", "list", "extra"])),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_elect_watch_interactive_and_alarm_print_the_same_as_etcdctl_on_etcd() {
    let reference = Cluster::start_etcd(ETCD_PREFIX, 3);
    let _skiff_addresses = SKIFF_ADDRESSES.lock().await;
    let skiff = Cluster::start(SKIFF_PREFIX, 3, &[]);
    reference.wait_for_leader(LEADER_TIMEOUT).await;
    let expected = tokio::task::block_in_place(|| transcript(&reference));
    drop(reference);
    skiff.wait_for_leader(LEADER_TIMEOUT).await;
    let actual = tokio::task::block_in_place(|| transcript(&skiff));
    assert_eq!(expected.len(), actual.len());
    let mut differences = Vec::new();
    for ((etcdctl_on_etcd, kvctl_on_etcd), (etcdctl_on_skiff, kvctl_on_skiff)) in
        expected.iter().zip(&actual)
    {
        // Revisions agree between the two servers, which ran the same steps from scratch.
        let want = normalize(etcdctl_on_etcd, false).replace(ETCD_PREFIX, "IP");
        let runs = [
            ("etcdctl on skiff", normalize(etcdctl_on_skiff, false), false),
            ("kvctl on skiff", normalize(kvctl_on_skiff, false), true),
            ("kvctl on etcd", normalize(kvctl_on_etcd, false), true),
        ];
        for (who, got, later) in runs {
            let got = got.replace(SKIFF_PREFIX, "IP").replace(ETCD_PREFIX, "IP");
            // kvctl ran each step after etcdctl had changed the revision.
            let (want, got) = if later {
                (normalize(&want, true), normalize(&got, true))
            } else {
                (want.clone(), got)
            };
            if want != got {
                differences.push(format!("--- etcdctl on etcd 3.4:\n{want}--- {who}:\n{got}"));
            }
        }
    }
    let lock_output = &expected[0].0;
    assert!(lock_output.contains("\nL1/"), "lock printed its key: {lock_output}");
    let count = differences.len();
    assert!(differences.is_empty(), "{count} differences:\n{}", differences.join("\n"));
}

/// Waits until `get --prefix <prefix>` lists `count` keys.
fn wait_for_keys(endpoint: &str, prefix: &str, count: usize) {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let listed = run(Tool::Etcdctl, endpoint, &["get", "--prefix", "--keys-only", prefix]);
        let keys = listed.lines().filter(|l| l.starts_with(prefix)).count();
        if keys == count {
            return;
        }
        assert!(Instant::now() < deadline, "expected {count} keys under {prefix}: {listed}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn lock_waits_for_its_holder(cluster: &Cluster) {
    let first = cluster.members[0].endpoint();
    let second = cluster.members[1].endpoint();
    let mut holder = Process::spawn(Tool::Kvctl, &first, &["lock", "L"]);
    let held = holder.read_lines(1);
    assert!(held[0].starts_with("L/"), "holder printed its key: {held:?}");
    let mut waiter = Process::spawn(Tool::Etcdctl, &second, &["lock", "L", "echo", "got"]);
    // Queued behind the holder: its key is there, and it runs nothing.
    wait_for_keys(&first, "L/", 2);
    assert_eq!(waiter.line_within(STILL_WAITING), None, "the waiter ran while the lock was held");
    holder.signal("INT");
    assert_eq!(waiter.read_lines(1), ["got"]);
    let (_, holder_errors, holder_code) = holder.finish();
    assert_eq!((holder_errors.as_str(), holder_code), ("", 0));
    let (_, waiter_errors, waiter_code) = waiter.finish();
    assert_eq!((waiter_errors.as_str(), waiter_code), ("", 0));
    wait_for_keys(&first, "L/", 0);
}

fn observers_follow_leader_changes(cluster: &Cluster) {
    let first = cluster.members[0].endpoint();
    let third = cluster.members[2].endpoint();
    let mut kvctl_observer = Process::spawn(Tool::Kvctl, &third, &["elect", "-l", "E"]);
    let mut etcdctl_observer = Process::spawn(Tool::Etcdctl, &first, &["elect", "-l", "E"]);
    let mut leader = Process::spawn(Tool::Etcdctl, &first, &["elect", "E", "p1"]);
    let elected = leader.read_lines(2);
    assert_eq!(elected[1], "p1");
    let mut next = Process::spawn(Tool::Kvctl, &third, &["elect", "E", "p2"]);
    wait_for_keys(&first, "E/", 2);
    assert_eq!(next.line_within(STILL_WAITING), None, "elected while another leads");
    leader.signal("INT");
    let succeeded = next.read_lines(2);
    assert_eq!(succeeded[1], "p2");
    assert_ne!(elected[0], succeeded[0], "a new leader key");
    let leaders = [elected.clone(), succeeded.clone()].concat();
    assert_eq!(kvctl_observer.read_lines(4), leaders, "kvctl elect -l saw both leaders");
    assert_eq!(etcdctl_observer.read_lines(4), leaders, "etcdctl elect -l saw both leaders");
    for process in [next, kvctl_observer, etcdctl_observer] {
        process.signal("INT");
        let (stdout, stderr, code) = process.finish();
        assert_eq!((stdout.as_str(), stderr.as_str(), code), ("", "", 0));
    }
    let (_, stderr, code) = leader.finish();
    assert_eq!((stderr.as_str(), code), ("", 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_skiff_a_lock_waits_for_its_holder_and_observers_follow_leaders() {
    let _skiff_addresses = SKIFF_ADDRESSES.lock().await;
    let skiff = Cluster::start(SKIFF_PREFIX, 3, &[]);
    skiff.wait_for_leader(LEADER_TIMEOUT).await;
    tokio::task::block_in_place(|| {
        lock_waits_for_its_holder(&skiff);
        observers_follow_leader_changes(&skiff);
    });
}
