//! `cargo xtask bench-store`: Skiff's store and etcd 3.4 side by side, driven by the same
//! `store-load` generator with the same flags.
//!
//! It measures the machine's floors first (fdatasync of a 256 B append on the data disk, the
//! loopback round trip), then starts a 3-member Skiff cluster on 127.0.120.1-3 and a 3-member
//! etcd on 127.0.121.1-3 (Debian's `etcd-server`, default durability: fsync on) and runs each
//! workload against Skiff, then etcd. Last come 1-member clusters of each (127.0.120.4,
//! 127.0.121.4) for puts. It prints one table, each member's RSS, and writes everything to
//! `<target>/bench/store.json`. Only processes it started are stopped, by PID, also on error.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::{cargo, install_packages, memory_mib, run, stop_child, target_dir, BUILD_PACKAGES};

/// fdatasync samples for the disk floor, and loopback round trips.
const FLOOR_SAMPLES: usize = 1000;
/// A member not agreeing on a leader by then is a failed start.
const LEADER_WAIT_SECONDS: u64 = 60;
/// One generator run's deadline (`--timeout-seconds`); the generator also stops by itself.
const RUN_TIMEOUT_SECONDS: u64 = 600;
const RUN_TIMEOUT_SECONDS_QUICK: u64 = 120;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Server {
    Skiff,
    Etcd,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Skiff => "skiff",
            Server::Etcd => "etcd",
        }
    }
}

struct Options {
    quick: bool,
    only: Option<String>,
    debug: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let mut options = Options { quick: false, only: None, debug: false };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => options.quick = true,
                "--debug" => options.debug = true,
                "--only" => {
                    options.only = Some(args.next().context("--only needs a name")?.clone())
                }
                other => bail!(
                    "unknown argument {other:?}; usage: cargo xtask bench-store [--quick] \
                     [--only <workload>] [--debug]"
                ),
            }
        }
        Ok(options)
    }
}

/// One workload: a short name (for `--only` and the JSON), the table's label and the
/// generator's arguments.
struct Case {
    name: &'static str,
    label: String,
    args: Vec<String>,
}

/// `{total}` in the label is replaced by the total.
fn case(name: &'static str, label: &str, args: &str, total: u64) -> Case {
    let mut args: Vec<String> = args.split_whitespace().map(String::from).collect();
    args.extend(["--total".to_string(), total.to_string()]);
    let watchers = args.iter().skip_while(|a| *a != "--watchers").nth(1).cloned();
    let label = label
        .replace("{total}", &total.to_string())
        .replace("{watchers}", watchers.as_deref().unwrap_or("?"));
    Case { name, label, args }
}

/// Watchers `watch-idle` opens (divided by 10 with `--quick`).
const IDLE_WATCHERS: u64 = 10_000;

/// The 3-member workloads; `scale` divides the totals (10 with `--quick`).
fn three_member_cases(scale: u64) -> Vec<Case> {
    let n = |total: u64| (total / scale).max(10);
    let keys = "--key-space-size 1000";
    vec![
        case("put-1", "put, 1 client", &format!("put --clients 1 --conns 1 {keys}"), n(2_000)),
        case(
            "put-100",
            "put, 100 clients / 10 conns",
            &format!("put --clients 100 --conns 10 {keys}"),
            n(50_000),
        ),
        case(
            "put-1000",
            "put, 1000 clients / 100 conns",
            &format!("put --clients 1000 --conns 100 {keys}"),
            n(100_000),
        ),
        case(
            "range-l-1",
            "linearizable range, 1 client",
            &format!("range --consistency l --clients 1 --conns 1 {keys}"),
            n(10_000),
        ),
        case(
            "range-l-100",
            "linearizable range, 100 clients",
            &format!("range --consistency l --clients 100 --conns 10 {keys}"),
            n(100_000),
        ),
        case(
            "range-s-100",
            "serializable range, 100 clients",
            &format!("range --consistency s --clients 100 --conns 10 {keys}"),
            n(100_000),
        ),
        case(
            "txn-put",
            "txn compare-and-swap, 100 clients",
            &format!("txn-put --clients 100 --conns 10 {keys}"),
            n(20_000),
        ),
        case(
            "mixed",
            "mixed 90% reads, 100 clients",
            &format!("mixed --read-ratio 0.9 --clients 100 --conns 10 {keys}"),
            n(50_000),
        ),
        case(
            "watch",
            "1000 watchers x {total} puts (events/s)",
            "watch --watchers 1000 --conns 100 --clients 10 --key-space-size 1000",
            n(1_000),
        ),
        case(
            "watch-latency",
            "watch latency, 1 watcher (events/s)",
            "watch-latency --conns 2 --key-space-size 1000",
            n(1_000),
        ),
        // Memory, not speed: the row's rate is watch creations; the bytes per idle watcher
        // are printed below the table. `{pids}` becomes the cluster's member PIDs.
        case(
            "watch-idle",
            "{watchers} idle watchers (creates/s)",
            &format!(
                "watch-idle --watchers {} --conns 100 --prefix idle/ --rss-pids {{pids}}",
                n(IDLE_WATCHERS)
            ),
            0,
        ),
    ]
}

fn one_member_cases(scale: u64) -> Vec<Case> {
    let puts = |case: &Case| matches!(case.name, "put-1" | "put-100");
    three_member_cases(scale).into_iter().filter(puts).collect()
}

/// A member process this run started: what it was started with (to restart it the same way)
/// and the process, while it runs.
pub(crate) struct Member {
    pub(crate) ip: String,
    name: String,
    pub(crate) data_dir: PathBuf,
    initial_cluster: String,
    /// Joined a running cluster (`--initial-cluster-state existing`).
    joined: bool,
    child: Option<Child>,
}

impl Member {
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("{}:2379", self.ip)
    }
}

/// A running cluster; dropping it stops its members (SIGTERM, then SIGKILL), by PID.
pub(crate) struct Cluster {
    pub(crate) server: Server,
    pub(crate) members: Vec<Member>,
    bins: PathBuf,
    token: String,
    /// Flags every member gets beyond the cluster's own.
    extra_args: Vec<String>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            if let Some(child) = member.child.as_mut() {
                stop_child(child);
            }
        }
    }
}

impl Cluster {
    /// Starts one member per address (`{prefix}.{i}`), data and logs under `work`.
    fn start(server: Server, bins: &Path, work: &Path, prefix: &str, ids: &[u32]) -> Result<Self> {
        Cluster::start_with(server, bins, work, prefix, ids, &[])
    }

    /// `start`, every member also getting `extra_args`.
    pub(crate) fn start_with(
        server: Server,
        bins: &Path,
        work: &Path,
        prefix: &str,
        ids: &[u32],
        extra_args: &[String],
    ) -> Result<Self> {
        let ips: Vec<String> = ids.iter().map(|i| format!("{prefix}.{i}")).collect();
        let token = format!("bench-{}-{}", server.name(), ids.len());
        let initial_cluster: Vec<String> =
            ips.iter().enumerate().map(|(i, ip)| format!("m{i}=http://{ip}:2380")).collect();
        let bins = bins.to_path_buf();
        let extra_args = extra_args.to_vec();
        let mut cluster = Cluster { server, members: Vec::new(), bins, token, extra_args };
        for (i, ip) in ips.iter().enumerate() {
            let name = format!("m{i}");
            let data_dir = work.join(format!("{}-{}-{name}", server.name(), ids.len()));
            let initial_cluster = initial_cluster.join(",");
            let member = Member {
                ip: ip.clone(),
                name,
                data_dir,
                initial_cluster,
                joined: false,
                child: None,
            };
            cluster.members.push(member);
            cluster.spawn(i)?;
        }
        Ok(cluster)
    }

    /// Starts member `i` (again), as it was first started.
    pub(crate) fn spawn(&mut self, i: usize) -> Result<()> {
        let server = self.server;
        let member = &self.members[i];
        assert!(member.child.is_none(), "member {} is running", member.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(member.data_dir.with_extension("log"))?;
        let mut command = match server {
            Server::Skiff => {
                let mut command = Command::new(self.bins.join("skiff"));
                command.arg("store");
                command
            }
            Server::Etcd => Command::new("etcd"),
        };
        let ip = &member.ip;
        command
            .args(["--name", &member.name])
            .arg("--data-dir")
            .arg(&member.data_dir)
            .args(["--listen-client-urls", &format!("http://{ip}:2379")])
            .args(["--advertise-client-urls", &format!("http://{ip}:2379")])
            .args(["--listen-peer-urls", &format!("http://{ip}:2380")])
            .args(["--initial-advertise-peer-urls", &format!("http://{ip}:2380")])
            .args(["--initial-cluster", &member.initial_cluster])
            .args(["--initial-cluster-token", &self.token]);
        if member.joined {
            command.args(["--initial-cluster-state", "existing"]);
        }
        let child = command
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {} member {}", server.name(), member.name))?;
        self.members[i].child = Some(child);
        Ok(())
    }

    /// SIGKILL to member `i` (by its PID) and waits for it: no chance to flush anything.
    pub(crate) fn kill(&mut self, i: usize) -> Result<()> {
        if let Some(mut child) = self.members[i].child.take() {
            child.kill().context("kill a member")?;
            child.wait().context("reap a killed member")?;
        }
        Ok(())
    }

    /// Describes one more member at `ip`, with its data under `work`, that joins the running
    /// cluster (add it with MemberAdd first, then `spawn` it). Returns its index.
    pub(crate) fn plan_member(&mut self, work: &Path, ip: &str) -> usize {
        let name = format!("m{}", self.members.len());
        let mut initial_cluster = self.members[0].initial_cluster.clone();
        initial_cluster.push_str(&format!(",{name}=http://{ip}:2380"));
        let data_dir = work.join(format!("{}-{}-{name}", self.server.name(), self.members.len()));
        let member = Member {
            ip: ip.to_string(),
            name,
            data_dir,
            initial_cluster,
            joined: true,
            child: None,
        };
        self.members.push(member);
        self.members.len() - 1
    }

    pub(crate) fn endpoints(&self) -> String {
        let endpoints: Vec<String> = self.members.iter().map(Member::endpoint).collect();
        endpoints.join(",")
    }

    /// Each running member's resident and peak memory, in MiB.
    pub(crate) fn memory(&self) -> Value {
        let members: Vec<Value> = self
            .members
            .iter()
            .filter_map(|m| {
                let (rss, peak) = memory_mib(m.pid()?);
                Some(json!({"member": m.ip, "rss_mib": rss, "peak_mib": peak}))
            })
            .collect();
        Value::Array(members)
    }

    /// Fails when a member has exited (it could not start: a port in use, a bad flag).
    pub(crate) fn check_running(&mut self, logs: &Path) -> Result<()> {
        for member in &mut self.members {
            let Some(child) = member.child.as_mut() else { continue };
            if let Some(status) = child.try_wait()? {
                bail!(
                    "{} member {} exited ({status}); logs in {}",
                    self.server.name(),
                    member.ip,
                    logs.display()
                );
            }
        }
        Ok(())
    }
}

/// `cargo xtask bench-store [--quick] [--only <workload>] [--debug]`.
pub fn bench_store(root: &Path, args: &[String]) -> Result<()> {
    let options = Options::parse(args)?;
    let scale = if options.quick { 10 } else { 1 };
    let three = select(three_member_cases(scale), options.only.as_deref());
    let one = select(one_member_cases(scale), options.only.as_deref());
    if three.is_empty() && one.is_empty() {
        let names: Vec<&str> = three_member_cases(1).iter().map(|c| c.name).collect();
        bail!("--only names no workload; workloads: {}", names.join(", "));
    }
    install_packages(BUILD_PACKAGES)?;
    install_packages(&["etcd-server"])?;
    build(root, options.debug)?;
    let target = target_dir(root);
    let bins = target.join(if options.debug { "debug" } else { "release" });
    let work = target.join("bench").join(format!("store-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = run_all(&bins, &work, &options, (&three, &one));
    match &result {
        Ok(_) => {
            let _ = std::fs::remove_dir_all(&work);
        }
        Err(_) => eprintln!("bench-store: data and logs kept in {}", work.display()),
    }
    let results = result?;
    let out = target.join("bench").join("store.json");
    std::fs::write(&out, serde_json::to_string_pretty(&results)?)?;
    println!("results written to {}", out.display());
    Ok(())
}

/// Builds `skiff` and `store-load` (release unless `debug`).
pub(crate) fn build(root: &Path, debug: bool) -> Result<()> {
    let mut command = cargo();
    command.current_dir(root).arg("build");
    if !debug {
        command.arg("--release");
    }
    run(command.args(["-p", "cli", "--bin", "skiff", "-p", "benches", "--bin", "store-load"]))
}

/// Runs the 3-member cases, then the 1-member ones; returns the results document.
fn run_all(
    bins: &Path,
    work: &Path,
    options: &Options,
    cases: (&[Case], &[Case]),
) -> Result<Value> {
    let (three, one) = cases;
    let etcd_version = etcd_version()?;
    eprintln!("bench-store: measuring the fdatasync floor and the loopback round trip");
    let fdatasync = fdatasync_floor(work)?;
    let loopback = loopback_round_trip()?;
    eprintln!(
        "bench-store: fdatasync (256 B append) median {:.0} µs, p99 {:.0} µs; loopback round \
         trip median {:.0} µs",
        fdatasync.0, fdatasync.1, loopback
    );
    let runner = Runner { bins, work, timeout: run_timeout(options.quick) };
    let (three_results, three_memory) = runner.group(three, &[1, 2, 3])?;
    let (one_results, one_memory) = runner.group(one, &[4])?;
    print_table(three, &three_results, one, &one_results);
    print_memory("3-member", &three_memory);
    print_idle_watchers(three, &three_results);
    print_memory("1-member", &one_memory);
    println!(
        "machine: {} cores; fdatasync (256 B append) median {:.0} µs, p99 {:.0} µs; loopback \
         round trip median {:.0} µs; etcd {etcd_version}; {} build{}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        fdatasync.0,
        fdatasync.1,
        loopback,
        if options.debug { "debug" } else { "release" },
        if options.quick { ", --quick (10x smaller totals)" } else { "" }
    );
    Ok(json!({
        "profile": if options.debug { "debug" } else { "release" },
        "quick": options.quick,
        "etcd_version": etcd_version,
        "machine": {
            "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "fdatasync_256b_append_us": {"median": fdatasync.0, "p99": fdatasync.1},
            "loopback_round_trip_us": {"median": loopback},
        },
        "three_member": results_json(three, &three_results),
        "one_member": results_json(one, &one_results),
        "memory": {"three_member": three_memory, "one_member": one_memory},
    }))
}

fn run_timeout(quick: bool) -> u64 {
    if quick {
        RUN_TIMEOUT_SECONDS_QUICK
    } else {
        RUN_TIMEOUT_SECONDS
    }
}

fn select(cases: Vec<Case>, only: Option<&str>) -> Vec<Case> {
    cases.into_iter().filter(|c| only.is_none_or(|name| c.name == name)).collect()
}

fn etcd_version() -> Result<String> {
    let output = Command::new("etcd")
        .arg("--version")
        .output()
        .context("etcd is not installed (Debian's etcd-server)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text.lines().find_map(|l| l.strip_prefix("etcd Version: ")).unwrap_or("?");
    Ok(version.trim().to_string())
}

/// Median and 99th percentile, in microseconds, of `write(256 B)` + `fdatasync` appending to a
/// file in `dir`: the least a durable write can cost on this disk.
fn fdatasync_floor(dir: &Path) -> Result<(f64, f64)> {
    let path = dir.join("fdatasync-probe");
    let mut file =
        std::fs::OpenOptions::new().create(true).write(true).truncate(true).open(&path)?;
    let block = [0x5au8; 256];
    let mut samples = Vec::with_capacity(FLOOR_SAMPLES);
    for _ in 0..FLOOR_SAMPLES {
        let started = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        samples.push(started.elapsed().as_secs_f64() * 1e6);
    }
    drop(file);
    std::fs::remove_file(&path)?;
    samples.sort_by(f64::total_cmp);
    Ok((samples[samples.len() / 2], samples[samples.len() * 99 / 100]))
}

/// Median round trip, in microseconds, of one byte over a loopback TCP connection.
fn loopback_round_trip() -> Result<f64> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        let mut byte = [0u8; 1];
        while stream.read(&mut byte)? == 1 {
            stream.write_all(&byte)?;
        }
        Ok(())
    });
    let mut stream = std::net::TcpStream::connect(address)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut samples = Vec::with_capacity(FLOOR_SAMPLES);
    let mut byte = [1u8; 1];
    for _ in 0..FLOOR_SAMPLES {
        let started = Instant::now();
        stream.write_all(&byte)?;
        stream.read_exact(&mut byte)?;
        samples.push(started.elapsed().as_secs_f64() * 1e6);
    }
    drop(stream);
    echo.join().map_err(|_| anyhow::anyhow!("echo thread panicked"))??;
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

/// Runs groups of workloads against a Skiff and an etcd cluster.
struct Runner<'a> {
    bins: &'a Path,
    work: &'a Path,
    timeout: u64,
}

/// One workload's results: Skiff's, then etcd's (the generator's JSON, or `{"error": ...}`).
type Pair = (Value, Value);

impl Runner<'_> {
    /// Starts a Skiff and an etcd cluster with members `ids`, runs every case against each
    /// (Skiff, then etcd), and returns the results and each member's memory.
    fn group(&self, cases: &[Case], ids: &[u32]) -> Result<(Vec<Pair>, Value)> {
        if cases.is_empty() {
            return Ok((Vec::new(), Value::Null));
        }
        let size = ids.len();
        eprintln!("bench-store: starting {size}-member Skiff and etcd clusters");
        let mut skiff = Cluster::start(Server::Skiff, self.bins, self.work, "127.0.120", ids)?;
        let mut etcd = Cluster::start(Server::Etcd, self.bins, self.work, "127.0.121", ids)?;
        for cluster in [&mut skiff, &mut etcd] {
            self.wait_for_leader(cluster)?;
        }
        let mut results = Vec::with_capacity(cases.len());
        for (i, case) in cases.iter().enumerate() {
            let mut pair = Vec::with_capacity(2);
            for cluster in [&mut skiff, &mut etcd] {
                cluster.check_running(self.work)?;
                eprintln!(
                    "bench-store: [{}/{}] {size}-member {} on {}",
                    i + 1,
                    cases.len(),
                    case.name,
                    cluster.server.name()
                );
                let result = self.load(cluster, case, size);
                eprintln!("bench-store:   {}", one_line(&result));
                pair.push(result);
            }
            let etcd_result = pair.pop().expect("two results");
            results.push((pair.pop().expect("two results"), etcd_result));
        }
        let memory = json!({"skiff": skiff.memory(), "etcd": etcd.memory()});
        Ok((results, memory))
    }

    fn wait_for_leader(&self, cluster: &mut Cluster) -> Result<()> {
        let output = Command::new(self.bins.join("store-load"))
            .args(["wait-leader", "--endpoints", &cluster.endpoints()])
            .args(["--timeout-seconds", &LEADER_WAIT_SECONDS.to_string()])
            .stderr(Stdio::inherit())
            .output()
            .context("run store-load wait-leader")?;
        let said = String::from_utf8_lossy(&output.stdout);
        eprintln!("bench-store: {} {}", cluster.server.name(), said.trim());
        cluster.check_running(self.work)?;
        if !output.status.success() {
            bail!(
                "{} cluster had no leader within {LEADER_WAIT_SECONDS} s; logs in {}",
                cluster.server.name(),
                self.work.display()
            );
        }
        Ok(())
    }

    /// One generator run; a failure becomes `{"error": ...}` so the other runs still happen.
    fn load(&self, cluster: &Cluster, case: &Case, size: usize) -> Value {
        let stem = format!("{}-{size}-{}", cluster.server.name(), case.name);
        let json_path = self.work.join(format!("{stem}.json"));
        let pids: Vec<String> =
            cluster.members.iter().filter_map(Member::pid).map(|p| p.to_string()).collect();
        let args = case.args.iter().map(|arg| arg.replace("{pids}", &pids.join(",")));
        let output = Command::new(self.bins.join("store-load"))
            .args(args)
            .args(["--endpoints", &cluster.endpoints(), "--target", "leader"])
            .args(["--timeout-seconds", &self.timeout.to_string()])
            .arg("--json")
            .arg(&json_path)
            .stdin(Stdio::null())
            .output();
        let output = match output {
            Ok(output) => output,
            Err(error) => return json!({"error": format!("cannot run store-load: {error}")}),
        };
        let text = [output.stdout.as_slice(), output.stderr.as_slice()].concat();
        let _ = std::fs::write(self.work.join(format!("{stem}.txt")), &text);
        if !output.status.success() {
            let text = String::from_utf8_lossy(&text);
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return json!({"error": format!("store-load failed: {}", tail.join(" / "))});
        }
        std::fs::read_to_string(&json_path)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_else(|| json!({"error": "store-load wrote no JSON"}))
    }
}

/// The headline figures of one result: (per second, p50 ms, p99 ms).
fn headline(result: &Value) -> Option<(f64, f64, f64)> {
    let row = result.get("headline")?;
    let latency = row.get("latency")?;
    let ms = |field: &str| latency.get(field).and_then(Value::as_f64).map(|us| us / 1000.0);
    Some((row.get("per_second")?.as_f64()?, ms("p50_us")?, ms("p99_us")?))
}

/// What went wrong in a result, if anything: failure, errors, missing or duplicate events.
fn problems(result: &Value) -> Option<String> {
    if let Some(error) = result.get("error").and_then(Value::as_str) {
        return Some(error.to_string());
    }
    let mut problems = Vec::new();
    let count = |pointer: &str| result.pointer(pointer).and_then(Value::as_u64).unwrap_or(0);
    for (pointer, what) in [
        ("/errors/total", "errors"),
        ("/watch/missing", "missing events"),
        ("/watch/duplicates", "duplicate events"),
        ("/watch/out_of_order", "events out of order"),
    ] {
        if count(pointer) > 0 {
            problems.push(format!("{} {what}", count(pointer)));
        }
    }
    if result.get("deadline_hit").and_then(Value::as_bool) == Some(true) {
        problems.push("deadline hit".into());
    }
    (!problems.is_empty()).then(|| problems.join(", "))
}

fn one_line(result: &Value) -> String {
    let figures = headline(result).map_or("no figures".into(), |(qps, p50, p99)| {
        format!("{qps:.0}/s, p50 {p50:.2} ms, p99 {p99:.2} ms")
    });
    match problems(result) {
        Some(problems) => format!("{figures} ({problems})"),
        None => figures,
    }
}

fn print_table(three: &[Case], three_results: &[Pair], one: &[Case], one_results: &[Pair]) {
    println!(
        "\n| workload | Skiff /s | p50 ms | p99 ms | etcd /s | p50 ms | p99 ms | Skiff/etcd | \
         notes |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|");
    let rows = three
        .iter()
        .zip(three_results)
        .map(|(case, pair)| (format!("{} (3 members)", case.label), pair))
        .chain(one.iter().zip(one_results).map(|(c, p)| (format!("{} (1 member)", c.label), p)));
    for (label, (skiff, etcd)) in rows {
        let cells = |result: &Value| {
            headline(result).map_or(["-".to_string(), "-".into(), "-".into()], |(q, p50, p99)| {
                [format!("{q:.0}"), format!("{p50:.2}"), format!("{p99:.2}")]
            })
        };
        let ratio = match (headline(skiff), headline(etcd)) {
            (Some((s, ..)), Some((e, ..))) if e > 0.0 => format!("{:.2}", s / e),
            _ => "-".into(),
        };
        let notes: Vec<String> = [("Skiff", skiff), ("etcd", etcd)]
            .iter()
            .filter_map(|(who, result)| problems(result).map(|p| format!("{who}: {p}")))
            .collect();
        let [sq, s50, s99] = cells(skiff);
        let [eq, e50, e99] = cells(etcd);
        println!(
            "| {label} | {sq} | {s50} | {s99} | {eq} | {e50} | {e99} | {ratio} | {} |",
            notes.join("; ")
        );
    }
}

fn print_memory(group: &str, memory: &Value) {
    for server in ["skiff", "etcd"] {
        let Some(members) = memory.get(server).and_then(Value::as_array) else { continue };
        let rss: Vec<String> = members
            .iter()
            .map(|m| {
                let rss = m["rss_mib"].as_f64().unwrap_or(f64::NAN);
                let peak = m["peak_mib"].as_f64().unwrap_or(f64::NAN);
                format!("{rss:.0} MiB (peak {peak:.0})")
            })
            .collect();
        println!("memory after the {group} runs, {server}: {}", rss.join(", "));
    }
}

/// The resident memory each idle watcher cost, from the `watch-idle` run.
fn print_idle_watchers(cases: &[Case], results: &[Pair]) {
    let Some((_, (skiff, etcd))) = cases.iter().zip(results).find(|(c, _)| c.name == "watch-idle")
    else {
        return;
    };
    let per = |result: &Value| result.pointer("/idle_watchers/bytes_per_watcher")?.as_f64();
    let watchers = skiff.pointer("/idle_watchers/watchers").and_then(Value::as_u64).unwrap_or(0);
    let show = |bytes: Option<f64>| bytes.map_or("-".to_string(), |b| format!("{b:.0} B"));
    let ratio = match (per(skiff), per(etcd)) {
        (Some(s), Some(e)) if e > 0.0 => format!(", Skiff/etcd {:.2}", s / e),
        _ => String::new(),
    };
    println!(
        "resident memory per idle watcher ({watchers} watchers, members' RSS summed): Skiff {}, \
         etcd {}{ratio}",
        show(per(skiff)),
        show(per(etcd))
    );
}

fn results_json(cases: &[Case], results: &[Pair]) -> Value {
    let entries: Vec<Value> = cases
        .iter()
        .zip(results)
        .map(|(case, (skiff, etcd))| {
            json!({"workload": case.name, "label": case.label, "args": case.args,
                "skiff": skiff, "etcd": etcd})
        })
        .collect();
    Value::Array(entries)
}
