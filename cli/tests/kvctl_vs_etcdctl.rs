//! End-to-end compatibility: one script of commands runs through etcdctl 3.4 against a fresh
//! etcd, then through `kvctl` against another fresh etcd with the same name, ports and
//! cluster token (so the same member and cluster ids and revisions), and every command's
//! stdout, stderr and exit status must match byte for byte. Only what etcd cannot make
//! repeatable is masked: how long a health check took, and etcdctl's client log lines.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ETCD_START_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A binary from PATH, or a failure that says how to get it.
fn require(binary: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{binary}` is not installed; this test compares kvctl with etcdctl 3.4 on a \
                 real etcd. `cargo xtask test` installs them (Debian packages etcd-server and \
                 etcd-client)."
            )
        })
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// A throwaway etcd on loopback, stopped (by its own pid) when dropped.
struct Etcd {
    child: Child,
    _data: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy)]
struct Ports {
    client: u16,
    peer: u16,
}

impl Ports {
    fn client_endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client)
    }
}

fn start_etcd(etcd: &Path, etcdctl: &Path, ports: Ports) -> Etcd {
    let data = tempfile::tempdir().expect("temporary directory");
    let log = File::create(data.path().join("etcd.log")).expect("etcd log file");
    let client_url = format!("http://127.0.0.1:{}", ports.client);
    let peer_url = format!("http://127.0.0.1:{}", ports.peer);
    let child = Command::new(etcd)
        .arg("--name=kvctl-test")
        .arg(format!("--data-dir={}", data.path().join("member").display()))
        .arg(format!("--listen-client-urls={client_url}"))
        .arg(format!("--advertise-client-urls={client_url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=kvctl-test={peer_url}"))
        .arg("--initial-cluster-token=kvctl-vs-etcdctl")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start etcd");
    let etcd = Etcd { child, _data: data };
    wait_until_ready(etcdctl, ports);
    etcd
}

/// Ready means done with the start-up proposals (the member publishes its name and client
/// URLs, the leader sets the cluster version, both through Raft) and the Raft index has
/// settled, so that both runs of the script start from the same index.
fn wait_until_ready(etcdctl: &Path, ports: Ports) {
    let deadline = Instant::now() + ETCD_START_TIMEOUT;
    let mut previous_status = String::new();
    loop {
        let members = etcdctl_output(etcdctl, ports, &["member", "list"]);
        let version = http_get(ports.client, "/version").unwrap_or_default();
        let status = etcdctl_output(etcdctl, ports, &["endpoint", "status", "-w", "fields"]);
        let published = members.contains(", started, ");
        let cluster_version_set = version.contains("\"etcdcluster\":\"3.");
        if published && cluster_version_set && status.contains("\"RaftAppliedIndex\"") {
            if status == previous_status {
                return;
            }
            previous_status = status;
        }
        assert!(
            Instant::now() < deadline,
            "etcd did not become ready:\n{members}\n{version}\n{previous_status}"
        );
        std::thread::sleep(POLL_INTERVAL);
    }
}

fn etcdctl_output(etcdctl: &Path, ports: Ports, args: &[&str]) -> String {
    let output = etcdctl_command(etcdctl, ports)
        .arg("--command-timeout=1s")
        .args(args)
        .output()
        .expect("run etcdctl");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A plain HTTP/1.0 GET on etcd's client port (for `/version`, which gRPC does not expose).
fn http_get(port: u16, path: &str) -> Option<String> {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = std::net::TcpStream::connect_timeout(&address, POLL_INTERVAL * 10).ok()?;
    stream.set_read_timeout(Some(POLL_INTERVAL * 10)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    std::io::Read::read_to_string(&mut stream, &mut response).ok()?;
    Some(response)
}

fn etcdctl_command(etcdctl: &Path, ports: Ports) -> Command {
    let mut command = Command::new(etcdctl);
    command.env_clear().env("ETCDCTL_API", "3");
    command.arg(format!("--endpoints={}", ports.client_endpoint()));
    command
}

/// The client for one step; a step naming its own endpoints replaces the default ones
/// (repeating `--endpoints` would add to them, in both tools).
fn client_command(etcdctl: &Path, ports: Ports, kvctl: bool, step: &Step) -> Command {
    let own_endpoints =
        step.args.iter().any(|arg| arg.to_string_lossy().starts_with("--endpoints"));
    let (program, env): (&Path, &[(&str, &str)]) = if kvctl {
        (Path::new(env!("CARGO_BIN_EXE_kvctl")), &[])
    } else {
        (etcdctl, &[("ETCDCTL_API", "3")])
    };
    let mut command = Command::new(program);
    command.env_clear().envs(env.iter().copied());
    if !own_endpoints {
        command.arg(format!("--endpoints={}", ports.client_endpoint()));
    }
    command
}

/// One command of the script: arguments after `--endpoints`, standard input, and whether
/// its output carries a health-check duration.
struct Step {
    args: Vec<OsString>,
    stdin: &'static str,
    unrepeatable: bool,
}

fn step(args: &[&str]) -> Step {
    Step { args: args.iter().map(OsString::from).collect(), stdin: "", unrepeatable: false }
}

impl Step {
    fn stdin(mut self, stdin: &'static str) -> Step {
        self.stdin = stdin;
        self
    }

    /// The output shows health-check durations or the database size; see `mask_unrepeatable`.
    fn unrepeatable(mut self) -> Step {
        self.unrepeatable = true;
        self
    }

    fn describe(&self) -> String {
        let args: Vec<String> =
            self.args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        format!("{} (stdin {:?})", args.join(" "), self.stdin)
    }
}

const TXN_MIXED: &str = "mod(\"k1\") > \"0\"\nvalue(\"k2\") = \"5\"\n\nput k3 v3\nget k1\n\
                         get k --prefix\ndel k2 --prev-kv\n\nput k4 f\n\n";
const TXN_FAILING: &str = "version(\"k1\") > \"5\"\n\n\nput k3 \"a b\"\ndel k9\nget k3\n\n";
const TXN_COMPARES: &str = "ver(\"k1\") = \"1\"\ncreate(\"k1\") != \"0\"\n\
                            mod(\"k1\") < \"1000\"\nvalue(`k4`) = `f`\n\n\
                            get k1\nput k9 v --prev-kv\ndel k3 --prev-kv\n\n\n";

/// The whole script, in order: later steps depend on the keys and revisions earlier ones made.
fn script(ports: Ports) -> Vec<Step> {
    let mut steps = writes_and_reads(ports);
    steps.extend(refusals());
    steps.extend(deletes_and_transactions());
    steps.extend(compaction_and_cluster(ports));
    steps.extend(leases());
    steps
}

/// Lease commands whose output does not depend on a granted lease's id (etcd's ids are
/// time-based, so two runs never share them): errors, unknown leases, the empty list.
fn leases() -> Vec<Step> {
    vec![
        step(&["lease", "list"]),
        step(&["lease", "list", "-w", "json"]),
        step(&["lease", "list", "-w", "fields"]),
        step(&["lease", "list", "-w", "table"]),
        step(&["lease", "timetolive", "1234"]),
        step(&["lease", "timetolive", "1234", "--keys", "-w", "json"]),
        step(&["lease", "timetolive", "1234", "-w", "fields"]),
        step(&["lease", "revoke", "1234"]),
        step(&["lease", "keep-alive", "--once", "1234"]),
        step(&["lease", "keep-alive", "1234"]),
        step(&["put", "k", "v", "--lease", "1234"]),
        step(&["lease", "grant"]),
        step(&["lease", "grant", "x"]),
        step(&["lease", "grant", "9000000001"]),
        step(&["lease", "revoke", "zz"]),
        step(&["lease", "timetolive"]),
        step(&["lease", "keep-alive"]),
    ]
}

fn writes_and_reads(ports: Ports) -> Vec<Step> {
    let with_scheme = format!("--endpoints=http://{}", ports.client_endpoint());
    let mut binary_key = step(&["put"]);
    binary_key.args.push(OsString::from_vec(b"uni\xff\x01\xc3\xa9".to_vec()));
    binary_key.args.push("z".into());
    vec![
        step(&["put", "foo", "bar"]),
        step(&["put", "foo", "bar2", "--prev-kv"]),
        step(&["put", "foo2", "x", "-w", "json"]),
        step(&["put", "foo3", "y", "--prev-kv", "-w", "json"]),
        step(&["put", "foo3", "z", "--prev-kv", "-w", "fields"]),
        step(&["put", "stdinkey"]).stdin("multi\nline\n"),
        binary_key,
        step(&["get", "foo"]),
        step(&["get", "foo", "-w", "json"]),
        step(&["get", "foo", "-w", "fields"]),
        step(&["get", "foo", "-w", "protobuf"]),
        step(&["get", "--prefix", "foo", "-w", "json"]),
        step(&["get", "--prefix", "foo", "--keys-only"]),
        step(&["get", "--prefix", "uni", "-w", "fields"]),
        step(&["get", "--prefix", "uni", "-w", "json"]),
        step(&["get", "--prefix", "uni"]),
        step(&["get", "foo", "--print-value-only"]),
        step(&["get", "foo", "--hex"]),
        step(&["get", "foo", "foo3"]),
        step(&["get", "--from-key", "foo2", "-w", "fields"]),
        step(&[
            "get",
            "--from-key",
            "",
            "--keys-only",
            "--limit",
            "2",
            "--sort-by=MODIFY",
            "--order=DESCEND",
        ]),
        step(&["get", "--prefix", "", "--limit=3", "--sort-by", "value", "-w", "json"]),
        step(&["get", "stdinkey", "-w", "json", "--consistency=s"]),
        step(&["get", "nothing"]),
        step(&["get", "nothing", "-w", "json"]),
        step(&["get", "foo", "--rev", "3", "-w", "json"]),
        step(&["get", "foo", "--rev", "1"]),
        step(&[&with_scheme, "get", "foo"]),
    ]
}

/// Unsupported formats, argument errors and server errors.
fn refusals() -> Vec<Step> {
    vec![
        step(&["get", "foo", "-w", "table"]),
        step(&["get", "foo", "--print-value-only", "-w", "json"]),
        step(&["get", "foo", "-w", "bogus"]),
        step(&["get"]),
        step(&["get", "--prefix", "a", "b"]),
        step(&["get", "--prefix", "--from-key", "a"]),
        step(&["get", "k", "--sort-by", "foo"]),
        step(&["get", "k", "--order", "up"]),
        step(&["get", "k", "--consistency", "x"]),
        step(&["get", "foo", "--rev", "100"]),
        step(&["put"]),
        step(&["put", "k"]),
        step(&["put", "--ignore-value", "k", "v"]),
        step(&["put", "k", "v", "--lease", "zz"]),
        step(&["put", "foo", "v", "-w", "table"]),
        step(&["del"]),
        step(&["del", "a", "b", "c"]),
    ]
}

fn deletes_and_transactions() -> Vec<Step> {
    vec![
        step(&["del", "foo"]),
        step(&["del", "foo2", "foo4", "--prev-kv", "-w", "json"]),
        step(&["del", "nothing", "-w", "fields"]),
        step(&["put", "a", "1"]),
        step(&["put", "b", "2"]),
        step(&["del", "a", "--from-key", "--prev-kv", "-w", "json"]),
        step(&["put", "k1", "v1"]),
        step(&["put", "k2", "5"]),
        step(&["del", "k", "--prefix", "--prev-kv"]).stdin(""),
        step(&["put", "k1", "v1"]),
        step(&["put", "k2", "5"]),
        step(&["txn", "-i"]).stdin(TXN_MIXED),
        step(&["txn"]).stdin(TXN_MIXED),
        step(&["txn", "-w", "json"]).stdin(TXN_FAILING),
        step(&["txn", "-w", "fields"]).stdin(TXN_COMPARES),
        step(&["txn", "-w", "json"]).stdin(TXN_COMPARES),
        step(&["txn", "--interactive=false", "-w", "table"]).stdin(TXN_FAILING),
        step(&["txn"]).stdin("\n\n\n"),
        step(&["txn"]).stdin(""),
        step(&["txn"]).stdin("mod(k1) > \"0\"\n\n\n"),
        step(&["txn"]).stdin("foo(\"k\") = \"1\"\n\n\n"),
        step(&["txn"]).stdin("mod(\"k\") > \"x\"\n\n\n"),
        step(&["txn"]).stdin("\nbogus k\n\n"),
        step(&["txn"]).stdin("\nput\n\n"),
        step(&["txn"]).stdin("\nput k\n\n"),
        step(&["txn"]).stdin("\nget k --prefix --from-key\n\n"),
        step(&["txn"]).stdin("mod(\"k\") = \"0\"\n\nput a b\n\n"),
        step(&["txn", "extra"]),
        step(&["txn"]).stdin("\nput dup 1\ndel dup\n\n\n"),
    ]
}

fn compaction_and_cluster(ports: Ports) -> Vec<Step> {
    let dead_and_alive = format!("--endpoints=127.0.0.1:1,{}", ports.client_endpoint());
    vec![
        step(&["compaction", "3"]),
        step(&["compaction", "3"]),
        step(&["get", "foo", "--rev", "2"]),
        step(&["compaction", "5", "--physical", "-w", "json"]),
        step(&["compaction", "500"]),
        step(&["compaction", "abc"]),
        step(&["compaction"]),
        step(&["member", "list"]),
        step(&["member", "list", "-w", "json"]),
        step(&["member", "list", "-w", "table"]),
        step(&["member", "list", "-w", "fields"]),
        step(&["member", "list", "-w", "protobuf"]),
        step(&["endpoint", "status"]).unrepeatable(),
        step(&["endpoint", "status", "-w", "json"]).unrepeatable(),
        step(&["endpoint", "status", "-w", "table"]).unrepeatable(),
        step(&["endpoint", "status", "-w", "fields"]).unrepeatable(),
        step(&["endpoint", "status", "-w", "protobuf"]),
        step(&["endpoint", "status", "--cluster", "-w", "table"]).unrepeatable(),
        step(&["endpoint", "health"]).unrepeatable(),
        step(&["endpoint", "health", "-w", "json"]).unrepeatable(),
        step(&["endpoint", "health", "-w", "table"]).unrepeatable(),
        step(&["endpoint", "health", "-w", "fields"]).unrepeatable(),
        step(&["--command-timeout=1s", &dead_and_alive, "endpoint", "status"]).unrepeatable(),
        step(&["--command-timeout=1s", &dead_and_alive, "endpoint", "health", "-w", "json"])
            .unrepeatable(),
        step(&["--command-timeout=1s", "--endpoints=127.0.0.1:1", "get", "foo"]),
        step(&["get", "--prefix", "", "-w", "json"]),
    ]
}

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    stdout: String,
    stderr: String,
    status: Option<i32>,
}

fn run(mut command: Command, step: &Step) -> Outcome {
    command.args(&step.args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("start client");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(step.stdin.as_bytes()).expect("write stdin");
    drop(stdin);
    let output = child.wait_with_output().expect("client output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    // etcdctl's client library logs retries as JSON lines; they are not part of the interface.
    let stderr: String = stderr
        .lines()
        .filter(|line| !line.starts_with("{\"level\":"))
        .map(|line| format!("{line}\n"))
        .collect();
    let mut outcome = Outcome {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr,
        status: output.status.code(),
    };
    if step.unrepeatable {
        outcome.stdout = mask_unrepeatable(&outcome.stdout);
        outcome.stderr = mask_unrepeatable(&outcome.stderr);
    }
    outcome
}

/// Masks what etcd does not reproduce from run to run: Go duration strings (`1.2ms`,
/// `850µs`, `5.0006s`) and the database file's size (`"dbSize":24576`, `25 kB`), which depends
/// on when bbolt happened to commit. Then collapses the runs of spaces and dashes whose length
/// depends on them in tables.
fn mask_unrepeatable(text: &str) -> String {
    const SIZE_KEYS: [&str; 3] = ["\"dbSize\":", "\"dbSizeInUse\":", "\"DBSize\" : "];
    const SIZE_UNITS: [&str; 3] = [" kB", " MB", " GB"];
    let is_number =
        |token: &str| !token.is_empty() && token.chars().all(|c| c.is_ascii_digit() || c == '.');
    let is_duration = |token: &str| {
        let number = token.trim_end_matches(|c: char| c.is_alphabetic() || c == 'µ');
        is_number(number) && ["ns", "µs", "ms", "s"].contains(&&token[number.len()..])
    };
    let mut masked = String::new();
    let mut token_start = None;
    for (index, c) in text.char_indices().chain(std::iter::once((text.len(), '\0'))) {
        if c.is_alphanumeric() || c == '.' || c == 'µ' {
            token_start.get_or_insert(index);
            continue;
        }
        let token = token_start.take().map_or("", |start| &text[start..index]);
        let sized = SIZE_KEYS.iter().any(|key| masked.ends_with(key))
            || SIZE_UNITS.iter().any(|unit| text[index..].starts_with(unit));
        masked.push_str(match token {
            token if is_duration(token) => "<took>",
            token if is_number(token) && sized => "<size>",
            token => token,
        });
        if c != '\0' && !(matches!(c, ' ' | '-') && masked.ends_with(c)) {
            masked.push(c);
        }
    }
    masked
}

fn run_script(etcd: &Path, etcdctl: &Path, ports: Ports, kvctl: bool) -> Vec<Outcome> {
    let _server = start_etcd(etcd, etcdctl, ports);
    script(ports)
        .iter()
        .map(|step| run(client_command(etcdctl, ports, kvctl, step), step))
        .collect()
}

#[test]
fn kvctl_prints_what_etcdctl_prints() {
    let etcd = require("etcd");
    let etcdctl = require("etcdctl");
    let ports = Ports { client: free_port(), peer: free_port() };
    let expected = run_script(&etcd, &etcdctl, ports, false);
    // Equal failures would prove nothing: etcdctl must really have talked to its etcd.
    assert_eq!(expected[0].stdout, "OK\n", "etcdctl's first put: {:#?}", expected[0]);
    let successes = expected.iter().filter(|outcome| outcome.status == Some(0)).count();
    assert!(successes > expected.len() / 2, "etcdctl mostly failed: {expected:#?}");
    let actual = run_script(&etcd, &etcdctl, ports, true);
    let mut report = String::new();
    for ((step, expected), actual) in script(ports).iter().zip(&expected).zip(&actual) {
        if expected != actual {
            report.push_str(&format!(
                "\n=== {}\n--- etcdctl: {expected:#?}\n--- kvctl:   {actual:#?}\n",
                step.describe()
            ));
        }
    }
    assert!(report.is_empty(), "kvctl differs from etcdctl:{report}");
}

#[test]
fn masking_keeps_everything_but_durations_and_sizes() {
    let cases = [
        (
            "| 127.0.0.1:2379 |   true | 934.537µs |       |\n",
            "| 127.0.0.1:2379 | true | <took> | |\n",
        ),
        (
            "[{\"endpoint\":\"a:1\",\"took\":\"5.000635485s\",\"error\":\"x 2s\"}]",
            "[{\"endpoint\":\"a:1\",\"took\":\"<took>\",\"error\":\"x <took>\"}]",
        ),
        (
            "a:1, 5627ea7a6419d01a, 3.4.23, 29 kB, true, false, 2, 33, 33, \n",
            "a:1, 5627ea7a6419d01a, 3.4.23, <size> kB, true, false, 2, 33, 33, \n",
        ),
        (
            "{\"dbSize\":28672,\"leader\":62,\"raftIndex\":33,\"dbSizeInUse\":20480}",
            "{\"dbSize\":<size>,\"leader\":62,\"raftIndex\":33,\"dbSizeInUse\":<size>}",
        ),
        ("\"DBSize\" : 24576\n\"Leader\" : 62\n", "\"DBSize\" : <size>\n\"Leader\" : 62\n"),
    ];
    for (text, expected) in cases {
        assert_eq!(mask_unrepeatable(text), expected);
    }
}
