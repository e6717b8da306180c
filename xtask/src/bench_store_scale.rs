//! `cargo xtask bench-store-scale`: Skiff's store holding many keys (default 1,000,000 of
//! 1 KiB: about 1 GiB), on a 3-member cluster of release binaries on 127.0.123.1-3.
//!
//! It loads the keys with `store-load put --sequential-keys`, then measures, in this order:
//! - a follower's restart: SIGKILL, start again, until it answers a serializable get and has
//!   applied the leader's revision;
//! - ranges of 10,000 keys, linearizable, 50 of them one after another (p50, p99);
//! - a compaction at the current revision while 16 clients put: put latency before and during
//!   the compaction call, and the call's own duration;
//! - a snapshot install: MemberAdd (a learner) and a 4th member on 127.0.123.4 with an empty
//!   data directory, until it has applied the leader's revision.
//!
//! Each member's data directory size and RSS are read after the load and at the end. It prints
//! a table and writes everything to `<target>/bench/store-scale.json`. Data and logs go to
//! `<target>/bench/store-scale-<pid>/`, removed after a successful run and kept after a failed
//! one. Only processes it started are stopped, by PID, also on error.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use super::bench_store::{build, Cluster, Server};
use super::{install_packages, target_dir, BUILD_PACKAGES};

/// The cluster's addresses: `{IP_PREFIX}.1` to `.3`, and `.4` for the member that joins.
const IP_PREFIX: &str = "127.0.123";
const JOINER_IP: &str = "127.0.123.4";
const KEYS_DEFAULT: u64 = 1_000_000;
const VALUE_BYTES_DEFAULT: u64 = 1024;
/// `load/` and eleven digits: every key of the space has the same length, so keys sort as
/// their numbers and a range of consecutive numbers is a range of keys.
const KEY_BYTES: u64 = 16;
/// Well above what any run writes, so the NOSPACE alarm (default 2 GiB of state machine) never
/// cuts a run short; the quota check itself still runs on every write.
const QUOTA_BACKEND_BYTES: u64 = 64 * 1024 * 1024 * 1024;
/// Loading: concurrent clients and connections (the proposer folds them into Raft entries).
const LOAD_CLIENTS: u32 = 64;
const LOAD_CONNS: u32 = 8;
/// Keys per range, and ranges measured (one at a time).
const RANGE_KEYS: u64 = 10_000;
const RANGE_RUNS: u64 = 50;
/// The put load around the compaction.
const PAUSE_CLIENTS: u32 = 16;
const PAUSE_CONNS: u32 = 4;
const PAUSE_BEFORE_SECONDS: u64 = 10;
const PAUSE_AFTER_SECONDS: u64 = 5;
/// Deadlines of the generator's runs: the load, and every other step.
const LOAD_TIMEOUT_SECONDS: u64 = 7_200;
const STEP_TIMEOUT_SECONDS: u64 = 1_800;
const LEADER_WAIT_SECONDS: u64 = 60;
/// Bounds of `--keys` and `--value-size` (the generator's own bounds).
const KEYS_MAX: u64 = 10_000_000;
const VALUE_BYTES_MAX: u64 = 1024 * 1024;

struct Options {
    keys: u64,
    value_size: u64,
    debug: bool,
}

const USAGE: &str = "usage: cargo xtask bench-store-scale [--keys N] [--value-size B] [--debug]";

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let mut options =
            Options { keys: KEYS_DEFAULT, value_size: VALUE_BYTES_DEFAULT, debug: false };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut number = |name: &str| -> Result<u64> {
                let value = args.next().with_context(|| format!("{name} needs a number"))?;
                value.parse().with_context(|| format!("{name} {value:?}: not a number"))
            };
            match arg.as_str() {
                "--keys" => options.keys = number("--keys")?,
                "--value-size" => options.value_size = number("--value-size")?,
                "--debug" => options.debug = true,
                other => bail!("unknown argument {other:?}; {USAGE}"),
            }
        }
        ensure!((1..=KEYS_MAX).contains(&options.keys), "--keys: 1 to {KEYS_MAX}");
        ensure!(options.value_size <= VALUE_BYTES_MAX, "--value-size: at most {VALUE_BYTES_MAX}");
        Ok(options)
    }
}

/// `cargo xtask bench-store-scale [--keys N] [--value-size B] [--debug]`.
pub fn bench_store_scale(root: &Path, args: &[String]) -> Result<()> {
    let options = Options::parse(args)?;
    install_packages(BUILD_PACKAGES)?;
    build(root, options.debug)?;
    let target = target_dir(root);
    let bins = target.join(if options.debug { "debug" } else { "release" });
    let work = target.join("bench").join(format!("store-scale-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let scale = Scale { bins, work: work.clone(), options };
    let result = scale.run();
    match &result {
        Ok(_) => {
            let _ = std::fs::remove_dir_all(&work);
        }
        Err(_) => eprintln!("bench-store-scale: data and logs kept in {}", work.display()),
    }
    let results = result?;
    print_table(&results);
    let out = target.join("bench").join("store-scale.json");
    std::fs::write(&out, serde_json::to_string_pretty(&results)?)?;
    println!("results written to {}", out.display());
    Ok(())
}

struct Scale {
    bins: PathBuf,
    work: PathBuf,
    options: Options,
}

impl Scale {
    fn run(&self) -> Result<Value> {
        let Options { keys, value_size, debug } = self.options;
        let quota = ["--quota-backend-bytes".to_string(), QUOTA_BACKEND_BYTES.to_string()];
        let mut cluster = Cluster::start_with(
            Server::Skiff,
            &self.bins,
            &self.work,
            IP_PREFIX,
            &[1, 2, 3],
            &quota,
        )?;
        let founders = cluster.endpoints();
        let leader = self.leader(&mut cluster, &founders)?;
        eprintln!("bench-store-scale: loading {keys} keys of {value_size} B through {leader}");
        let load = self.load(&founders)?;
        for i in 0..cluster.members.len() {
            self.catch_up(&cluster, i, &leader, "settle")?;
        }
        let after_load = self.footprint(&cluster);
        let restart = self.restart(&mut cluster, &leader)?;
        let range = self.range(&founders)?;
        let pause = self.compaction_pause(&founders)?;
        let leader = self.leader(&mut cluster, &founders)?;
        let install = self.snapshot_install(&mut cluster, &leader)?;
        let at_end = self.footprint(&cluster);
        Ok(json!({
            "profile": if debug { "debug" } else { "release" },
            "keys": keys, "value_size": value_size, "key_size": KEY_BYTES,
            "machine": {"cores": std::thread::available_parallelism().map_or(0, |n| n.get())},
            "load": load, "restart": restart, "range": range, "compaction_pause": pause,
            "snapshot_install": install,
            "footprint": {"after_load": after_load, "at_end": at_end},
        }))
    }

    /// Waits for an agreed leader among `endpoints`; returns its endpoint.
    fn leader(&self, cluster: &mut Cluster, endpoints: &str) -> Result<String> {
        let timeout = LEADER_WAIT_SECONDS.to_string();
        let args = ["wait-leader", "--endpoints", endpoints, "--timeout-seconds", &timeout];
        let found = self.store_load("wait-leader", &args, false);
        cluster.check_running(&self.work)?;
        let found = found?;
        let leader = found["leader_endpoint"].as_str().context("wait-leader named no leader")?;
        Ok(leader.to_string())
    }

    /// The generator's flags that describe the key space.
    fn key_flags(&self) -> Vec<String> {
        let Options { keys, value_size, .. } = self.options;
        let flags =
            format!("--key-space-size {keys} --key-size {KEY_BYTES} --val-size {value_size}");
        flags.split_whitespace().map(String::from).collect()
    }

    /// Writes every key once, in key order, showing progress.
    fn load(&self, founders: &str) -> Result<Value> {
        let keys = self.options.keys.to_string();
        let mut args = words(&format!(
            "put --sequential-keys --progress --clients {LOAD_CLIENTS} --conns {LOAD_CONNS} \
             --timeout-seconds {LOAD_TIMEOUT_SECONDS} --target leader"
        ));
        args.extend(["--total".into(), keys, "--endpoints".into(), founders.into()]);
        args.extend(self.key_flags());
        let result = self.store_load("load", &args, true)?;
        // Not fatal: the table reports them, and a range missing a key reports `ShortRange`.
        let errors = result.pointer("/errors/total").and_then(Value::as_u64).unwrap_or(0);
        if errors > 0 {
            eprintln!("bench-store-scale: {errors} puts failed while loading");
        }
        Ok(result)
    }

    /// Waits until member `i` answers and has applied `reference`'s current revision.
    fn catch_up(&self, cluster: &Cluster, i: usize, reference: &str, stem: &str) -> Result<Value> {
        let member = cluster.members[i].endpoint();
        let timeout = STEP_TIMEOUT_SECONDS.to_string();
        let args = [
            "catch-up",
            "--endpoints",
            &member,
            "--reference",
            reference,
            "--timeout-seconds",
            &timeout,
        ];
        self.store_load(&format!("{stem}-{}", cluster.members[i].ip), &args, false)
    }

    /// (a) SIGKILL to a follower, start it again, wait until it has caught up.
    fn restart(&self, cluster: &mut Cluster, leader: &str) -> Result<Value> {
        let follower = cluster
            .members
            .iter()
            .position(|m| m.endpoint() != leader)
            .context("no follower to restart")?;
        eprintln!("bench-store-scale: restarting {} (kill -9)", cluster.members[follower].ip);
        cluster.kill(follower)?;
        let spawned = Instant::now();
        cluster.spawn(follower)?;
        self.timed_catch_up(cluster, follower, leader, spawned, "restart")
    }

    /// Runs `catch-up` on member `i` and adds the times since it was spawned.
    fn timed_catch_up(
        &self,
        cluster: &mut Cluster,
        i: usize,
        leader: &str,
        spawned: Instant,
        stem: &str,
    ) -> Result<Value> {
        let waiting_since_spawn = spawned.elapsed().as_secs_f64();
        let result = self.catch_up(cluster, i, leader, stem);
        let caught_up = spawned.elapsed().as_secs_f64();
        cluster.check_running(&self.work)?;
        let mut result = result?;
        let first_answer = result["first_answer_seconds"].as_f64().unwrap_or(f64::NAN);
        result["member"] = json!(cluster.members[i].ip);
        result["since_start"] = json!({
            "first_answer_seconds": waiting_since_spawn + first_answer,
            "caught_up_seconds": caught_up,
        });
        Ok(result)
    }

    /// (c) Linearizable ranges of `RANGE_KEYS` consecutive keys, one at a time.
    fn range(&self, founders: &str) -> Result<Value> {
        let range_keys = RANGE_KEYS.min(self.options.keys);
        eprintln!("bench-store-scale: {RANGE_RUNS} linearizable ranges of {range_keys} keys");
        let mut args = words(&format!(
            "range --no-fill --consistency l --clients 1 --conns 1 --total {RANGE_RUNS} \
             --range-keys {range_keys} --timeout-seconds {STEP_TIMEOUT_SECONDS} --target leader"
        ));
        args.extend(["--endpoints".into(), founders.into()]);
        args.extend(self.key_flags());
        self.store_load("range", &args, false)
    }

    /// (d) Puts around one compaction at the current revision.
    fn compaction_pause(&self, founders: &str) -> Result<Value> {
        eprintln!(
            "bench-store-scale: {PAUSE_BEFORE_SECONDS} s of puts, a compaction, \
             {PAUSE_AFTER_SECONDS} s of puts"
        );
        let mut args = words(&format!(
            "compaction-pause --clients {PAUSE_CLIENTS} --conns {PAUSE_CONNS} \
             --before-seconds {PAUSE_BEFORE_SECONDS} --after-seconds {PAUSE_AFTER_SECONDS} \
             --timeout-seconds {STEP_TIMEOUT_SECONDS} --target leader"
        ));
        args.extend(["--endpoints".into(), founders.into()]);
        args.extend(self.key_flags());
        self.store_load("compaction-pause", &args, false)
    }

    /// (b) MemberAdd (a learner), then a 4th member with an empty data directory, until it
    /// has applied the leader's revision.
    fn snapshot_install(&self, cluster: &mut Cluster, leader: &str) -> Result<Value> {
        let peer_url = format!("http://{JOINER_IP}:2380");
        eprintln!("bench-store-scale: adding {JOINER_IP} as a learner and starting it empty");
        let args = ["member-add", "--endpoints", leader, "--peer-url", &peer_url, "--learner"];
        let added = self.store_load("member-add", &args, false)?;
        let joiner = cluster.plan_member(&self.work, JOINER_IP);
        let spawned = Instant::now();
        cluster.spawn(joiner)?;
        let mut result =
            self.timed_catch_up(cluster, joiner, leader, spawned, "snapshot-install")?;
        // Evidence that a snapshot (not the log) brought it up: installing one keeps it on disk.
        let snapshots = cluster.members[joiner].data_dir.join("snapshots");
        result["snapshot_files"] = json!(std::fs::read_dir(&snapshots).map_or(0, Iterator::count));
        result["member_add"] = added;
        Ok(result)
    }

    /// Each member's data directory (and its snapshots) on disk, and its memory.
    fn footprint(&self, cluster: &Cluster) -> Value {
        let disk: Vec<Value> = cluster
            .members
            .iter()
            .map(|m| {
                json!({"member": m.ip, "data_dir_bytes": dir_bytes(&m.data_dir),
                    "snapshots_bytes": dir_bytes(&m.data_dir.join("snapshots"))})
            })
            .collect();
        json!({"disk": disk, "memory": cluster.memory()})
    }

    /// Runs `store-load` with `args` and `--json`; returns its JSON. Its output goes to
    /// `<stem>.txt` in the work directory; with `live`, stderr (progress) is shown as well.
    fn store_load<S: AsRef<OsStr>>(&self, stem: &str, args: &[S], live: bool) -> Result<Value> {
        let json_path = self.work.join(format!("{stem}.json"));
        let log_path = self.work.join(format!("{stem}.txt"));
        let mut command = Command::new(self.bins.join("store-load"));
        command.args(args).arg("--json").arg(&json_path).stdin(Stdio::null());
        if live {
            command.stderr(Stdio::inherit());
        }
        let output = command.output().context("run store-load")?;
        let text = [output.stdout.as_slice(), output.stderr.as_slice()].concat();
        std::fs::write(&log_path, &text)?;
        if !output.status.success() {
            let text = String::from_utf8_lossy(&text);
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!("store-load {stem} failed ({}): {}", output.status, tail.join(" / "));
        }
        let json = std::fs::read_to_string(&json_path)
            .with_context(|| format!("store-load {stem} wrote no JSON"))?;
        serde_json::from_str(&json).with_context(|| format!("store-load {stem}'s JSON"))
    }
}

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(String::from).collect()
}

/// Bytes of the files under `dir` (0 if it does not exist).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

fn print_table(results: &Value) {
    let f = |pointer: &str| results.pointer(pointer).and_then(Value::as_f64);
    let ms = |pointer: &str| f(pointer).map_or("-".into(), |us| format!("{:.1}", us / 1000.0));
    let s = |pointer: &str| f(pointer).map_or("-".into(), |s| format!("{s:.2}"));
    let keys = results["keys"].as_u64().unwrap_or(0);
    let value_size = results["value_size"].as_u64().unwrap_or(0);
    println!("\n| measure | result |\n|---|---|");
    let failed = match results.pointer("/load/errors/total").and_then(Value::as_u64) {
        Some(errors) if errors > 0 => format!(" ({errors} puts failed)"),
        _ => String::new(),
    };
    println!(
        "| load: {keys} keys of {value_size} B, {LOAD_CLIENTS} clients | {} s, {} puts/s, p50 {} \
         ms, p99 {} ms{failed} |",
        s("/load/headline/seconds"),
        f("/load/headline/per_second").map_or("-".into(), |r| format!("{r:.0}")),
        ms("/load/headline/latency/p50_us"),
        ms("/load/headline/latency/p99_us"),
    );
    println!(
        "| follower restart (kill -9 → serving → caught up) | first answer {} s, caught up {} \
         s |",
        s("/restart/since_start/first_answer_seconds"),
        s("/restart/since_start/caught_up_seconds"),
    );
    println!(
        "| snapshot install on a new member (learner, empty data dir) | first answer {} s, \
         caught up {} s ({}) |",
        s("/snapshot_install/since_start/first_answer_seconds"),
        s("/snapshot_install/since_start/caught_up_seconds"),
        match results.pointer("/snapshot_install/snapshot_files").and_then(Value::as_u64) {
            Some(0) => "no snapshot file: it caught up from the log",
            Some(_) => "a snapshot was installed",
            None => "-",
        },
    );
    let range_errors = match results.pointer("/range/errors/total").and_then(Value::as_u64) {
        Some(errors) if errors > 0 => format!(" ({errors} failed)"),
        _ => String::new(),
    };
    println!(
        "| range of {} keys, linearizable, {RANGE_RUNS} runs | p50 {} ms, p99 {} ms, max {} \
         ms{range_errors} |",
        RANGE_KEYS.min(keys),
        ms("/range/headline/latency/p50_us"),
        ms("/range/headline/latency/p99_us"),
        ms("/range/headline/latency/max_us"),
    );
    let pause_row = |index: usize| {
        let row = format!("/compaction_pause/rows/{index}");
        (
            ms(&format!("{row}/latency/p99_us")),
            ms(&format!("{row}/latency/max_us")),
            f(&format!("{row}/ops")).map_or("-".into(), |n| format!("{n:.0}")),
        )
    };
    for (index, label) in [(0, "before"), (1, "during")] {
        let (p99, max, ops) = pause_row(index);
        println!(
            "| put latency {label} the compaction | p99 {p99} ms, max {max} ms ({ops} puts) |"
        );
    }
    let error = results.pointer("/compaction_pause/compaction/error").and_then(Value::as_str);
    println!(
        "| compaction call at revision {} | {} ms{} |",
        results.pointer("/compaction_pause/compaction/revision").unwrap_or(&Value::Null),
        f("/compaction_pause/compaction/duration_ms").map_or("-".into(), |d| format!("{d:.1}")),
        error.map_or(String::new(), |e| format!(" (failed: {e})")),
    );
    print_footprint(results);
}

fn print_footprint(results: &Value) {
    println!("\n| member | when | data dir MiB | of which snapshots MiB | RSS MiB | peak MiB |");
    println!("|---|---|---:|---:|---:|---:|");
    let mib =
        |value: &Value| value.as_f64().map_or("-".into(), |b| format!("{:.0}", b / 1048576.0));
    for when in ["after_load", "at_end"] {
        let footprint = &results["footprint"][when];
        let empty = Vec::new();
        let memory = footprint["memory"].as_array().unwrap_or(&empty);
        for disk in footprint["disk"].as_array().unwrap_or(&empty) {
            let member = &disk["member"];
            let rss = memory.iter().find(|m| &m["member"] == member);
            let field = |name: &str| {
                rss.and_then(|m| m[name].as_f64()).map_or("-".into(), |v| format!("{v:.0}"))
            };
            println!(
                "| {} | {when} | {} | {} | {} | {} |",
                member.as_str().unwrap_or("?"),
                mib(&disk["data_dir_bytes"]),
                mib(&disk["snapshots_bytes"]),
                field("rss_mib"),
                field("peak_mib"),
            );
        }
    }
}
