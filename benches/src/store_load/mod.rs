//! `store-load`: a load generator speaking etcd's v3 gRPC API through the store crate's tonic
//! client stubs, so the same code drives Skiff and etcd.
//!
//! A run opens `--conns` HTTP/2 connections (tonic channels) to the target endpoints and starts
//! `--clients` tokio tasks that share them round robin. Clients take operations from one shared
//! budget (`--total`) until it is spent or `--timeout-seconds` passes; every latency goes into
//! an HDR histogram (microseconds) and every failure is counted by gRPC code. The report is a
//! text table and, with `--json PATH`, a JSON object.
//!
//! Layout: this module holds the flags, connecting and the run's shared state; `kv` the put,
//! range, txn-put and mixed workloads; `watch` the watch workloads; `scale` the workloads of
//! `cargo xtask bench-store-scale` (catch-up, member-add, compaction-pause); `record` the
//! histograms, error counts and rendering.

mod kv;
mod record;
mod scale;
mod watch;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use clap::{Parser, ValueEnum};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use store::proto::etcdserverpb as pb;
use store::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::limits;
use record::{Errors, Row};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Puts of random keys in the key space.
    Put,
    /// Single-key ranges of random keys in the (pre-filled) key space.
    Range,
    /// Compare-and-swap: a txn comparing the key's mod revision to the last one seen, put on
    /// success; on failure re-read and retry (a conflict).
    TxnPut,
    /// `--watchers` watchers on the key prefix; `--total` puts; delivery latency (put
    /// acknowledged → event delivered) and completeness.
    Watch,
    /// One watcher, puts one at a time: put sent → event delivered.
    WatchLatency,
    /// `--watchers` watchers on the key prefix that receive nothing; the resident memory of
    /// the `--rss-pids` processes (the servers, on this machine) before they open and once
    /// they are open gives the memory an idle watcher costs.
    WatchIdle,
    /// Ranges and puts of random keys, `--read-ratio` of them ranges.
    Mixed,
    /// Waits until every endpoint names the same leader, and prints it.
    WaitLeader,
    /// Waits until the first endpoint answers a serializable get and has applied the revision
    /// `--reference` had when the wait began (a restarted or new member catching up).
    CatchUp,
    /// Adds `--peer-url` as a member (a learner with `--learner`) through the first endpoint.
    MemberAdd,
    /// Puts of random keys in the key space; after `--before-seconds`, one compaction at the
    /// current revision; `--after-seconds` after it returns, the run stops. Put latency before,
    /// during and after the compaction call, and the call's own duration. `--total` does not
    /// apply.
    CompactionPause,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Consistency {
    /// Linearizable: the member confirms its leadership (read index) before reading.
    L,
    /// Serializable: the member answers from its own applied state.
    S,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// Find the leader (Maintenance.Status) and send everything there.
    Leader,
    /// Spread connections over every endpoint.
    All,
}

#[derive(Parser, Clone, Debug)]
#[command(name = "store-load", about = "etcd v3 load generator for Skiff and etcd")]
pub struct Flags {
    #[arg(value_enum)]
    pub workload: Workload,
    /// Client endpoints, `host:port` or `http://host:port`, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:2379")]
    pub endpoints: Vec<String>,
    /// HTTP/2 connections opened; clients share them round robin.
    #[arg(long, default_value_t = 1)]
    pub conns: usize,
    /// Concurrent clients (tokio tasks), each with one request in flight.
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// Operations in the run (puts, for the watch workloads).
    #[arg(long, default_value_t = 10_000)]
    pub total: u64,
    /// Key length in bytes, the prefix included (longer when the key space needs more digits).
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    /// Value length in bytes (random, incompressible).
    #[arg(long, default_value_t = 256)]
    pub val_size: usize,
    /// Distinct keys used; read workloads write each once first.
    #[arg(long, default_value_t = 1)]
    pub key_space_size: u64,
    /// Every key starts with this.
    #[arg(long, default_value = "load/")]
    pub prefix: String,
    /// Range consistency: `l` (linearizable) or `s` (serializable).
    #[arg(long, value_enum, default_value = "l")]
    pub consistency: Consistency,
    /// `leader`: everything to the leader; `all`: connections spread over the endpoints.
    #[arg(long, value_enum, default_value = "leader")]
    pub target: Target,
    /// Watchers in the `watch` workload, spread over the connections.
    #[arg(long, default_value_t = 100)]
    pub watchers: usize,
    /// Fraction of ranges in the `mixed` workload (0 to 1).
    #[arg(long, default_value_t = 0.9)]
    pub read_ratio: f64,
    /// Overall deadline of the run; operations stop being issued when it passes.
    #[arg(long, default_value_t = 300)]
    pub timeout_seconds: u64,
    /// A request without an answer after this long counts as an error.
    #[arg(long, default_value_t = 10_000)]
    pub request_timeout_ms: u64,
    /// Seed of the key choice and value bytes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// KV workloads: the n-th operation uses key n (modulo the key space) instead of a random
    /// key, so a `put` with `--total` equal to `--key-space-size` writes every key once.
    #[arg(long)]
    pub sequential_keys: bool,
    /// Print the operations completed so far to stderr every few seconds.
    #[arg(long)]
    pub progress: bool,
    /// `range`: keys each range covers, consecutive from a random start (1: a single-key get).
    #[arg(long, default_value_t = 1)]
    pub range_keys: u64,
    /// Read workloads: the key space is already written (by an earlier `put
    /// --sequential-keys` with the same key flags), so do not write it first.
    #[arg(long)]
    pub no_fill: bool,
    /// `catch-up`: the endpoint (the leader) whose current revision the first endpoint must
    /// reach.
    #[arg(long)]
    pub reference: Option<String>,
    /// `member-add`: the new member's peer URL.
    #[arg(long)]
    pub peer_url: Option<String>,
    /// `member-add`: add the member as a learner (not counted in the quorum).
    #[arg(long)]
    pub learner: bool,
    /// `compaction-pause`: seconds of puts before the compaction.
    #[arg(long, default_value_t = 10)]
    pub before_seconds: u64,
    /// `compaction-pause`: seconds of puts after the compaction call returns.
    #[arg(long, default_value_t = 5)]
    pub after_seconds: u64,
    /// `watch-idle`: the server processes (on this machine) whose resident memory is read,
    /// comma separated.
    #[arg(long, value_delimiter = ',')]
    pub rss_pids: Vec<u32>,
    /// `watch-idle`: how long the watchers stay open before the memory is read again.
    #[arg(long, default_value_t = 3)]
    pub settle_seconds: u64,
}

impl Flags {
    fn validate(&self) -> Result<()> {
        ensure!(!self.endpoints.is_empty(), "--endpoints is empty");
        ensure!(
            (1..=limits::CONNS_MAX).contains(&self.conns),
            "--conns: 1 to {}",
            limits::CONNS_MAX
        );
        ensure!(
            (1..=limits::CLIENTS_MAX).contains(&self.clients),
            "--clients: 1 to {}",
            limits::CLIENTS_MAX
        );
        ensure!(self.total <= limits::OPS_MAX, "--total: at most {}", limits::OPS_MAX);
        ensure!(
            self.key_size <= limits::KEY_BYTES_MAX,
            "--key-size: at most {}",
            limits::KEY_BYTES_MAX
        );
        ensure!(
            self.val_size <= limits::VALUE_BYTES_MAX,
            "--val-size: at most {}",
            limits::VALUE_BYTES_MAX
        );
        ensure!(
            (1..=limits::KEY_SPACE_SIZE_MAX).contains(&self.key_space_size),
            "--key-space-size: 1 to {}",
            limits::KEY_SPACE_SIZE_MAX
        );
        ensure!(!self.prefix.is_empty(), "--prefix must not be empty");
        ensure!(
            (1..=limits::WATCHERS_MAX).contains(&self.watchers),
            "--watchers: 1 to {}",
            limits::WATCHERS_MAX
        );
        ensure!((0.0..=1.0).contains(&self.read_ratio), "--read-ratio: 0 to 1");
        ensure!(self.timeout_seconds > 0 && self.request_timeout_ms > 0, "timeouts must be > 0");
        ensure!(
            (1..=self.key_space_size).contains(&self.range_keys),
            "--range-keys: 1 to --key-space-size"
        );
        // A multi-key range relies on keys sorting as their numbers: every key of the space
        // (and the one past its end) must have the same number of digits.
        let digits = self.key_space_size.to_string().len();
        ensure!(
            self.range_keys == 1 || self.key_size >= self.prefix.len() + digits,
            "--range-keys > 1 needs --key-size of at least {} (the prefix and {digits} digits)",
            self.prefix.len() + digits
        );
        ensure!(
            self.workload != Workload::CatchUp || self.reference.is_some(),
            "catch-up needs --reference"
        );
        ensure!(
            self.workload != Workload::MemberAdd || self.peer_url.is_some(),
            "member-add needs --peer-url"
        );
        ensure!(
            self.workload != Workload::WatchIdle || !self.rss_pids.is_empty(),
            "watch-idle needs --rss-pids"
        );
        ensure!(
            self.settle_seconds < self.timeout_seconds,
            "--settle-seconds must be under --timeout-seconds"
        );
        ensure!(
            self.before_seconds + self.after_seconds < self.timeout_seconds,
            "--before-seconds plus --after-seconds must be under --timeout-seconds"
        );
        Ok(())
    }

    fn workload_name(&self) -> String {
        self.workload.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default()
    }
}

/// The operations left to issue, shared by every client of a run.
pub struct Budget {
    issued: AtomicU64,
    total: u64,
    deadline: Instant,
    deadline_hit: AtomicBool,
}

impl Budget {
    fn new(total: u64, deadline: Instant) -> Budget {
        Budget { issued: AtomicU64::new(0), total, deadline, deadline_hit: AtomicBool::new(false) }
    }

    /// Takes one operation; false once the budget is spent or the deadline has passed.
    pub fn take(&self) -> bool {
        if Instant::now() >= self.deadline {
            self.deadline_hit.store(true, Ordering::Relaxed);
            return false;
        }
        self.issued.fetch_add(1, Ordering::Relaxed) < self.total
    }

    pub fn deadline_hit(&self) -> bool {
        self.deadline_hit.load(Ordering::Relaxed)
    }
}

/// A run's shared state: flags, connections, budget and error counts.
pub struct Run {
    pub flags: Flags,
    /// The next key of `--sequential-keys` puts.
    next_key: AtomicU64,
    /// The endpoints the connections go to (the leader alone with `--target leader`).
    pub endpoints: Vec<String>,
    channels: Vec<Channel>,
    pub budget: Budget,
    pub errors: Errors,
    pub deadline: Instant,
    request_timeout: Duration,
}

impl Run {
    /// Connection `i`, round robin.
    pub fn channel(&self, i: usize) -> Channel {
        self.channels[i % self.channels.len()].clone()
    }

    /// A client's own random source, derived from `--seed`.
    pub fn rng(&self, client: usize) -> StdRng {
        StdRng::seed_from_u64(self.flags.seed.wrapping_mul(1_000_003).wrapping_add(client as u64))
    }

    /// Key number `index`: the prefix, then the index zero-padded to `--key-size`.
    pub fn key(&self, index: u64) -> Vec<u8> {
        let width = self.flags.key_size.saturating_sub(self.flags.prefix.len());
        format!("{}{index:0width$}", self.flags.prefix).into_bytes()
    }

    pub fn random_key(&self, rng: &mut StdRng) -> (u64, Vec<u8>) {
        let index = rng.gen_range(0..self.flags.key_space_size);
        (index, self.key(index))
    }

    /// The next key in key order, shared by every client (`--sequential-keys`).
    pub fn sequential_key(&self) -> (u64, Vec<u8>) {
        let index = self.next_key.fetch_add(1, Ordering::Relaxed) % self.flags.key_space_size;
        (index, self.key(index))
    }

    /// A value of `--val-size` random bytes (incompressible, so neither store gains from
    /// compressing it).
    pub fn value(&self, rng: &mut StdRng) -> Vec<u8> {
        let mut value = vec![0u8; self.flags.val_size];
        rng.fill(&mut value[..]);
        value
    }

    /// Awaits one unary call with the client-side request timeout; a failure is counted and
    /// comes back as `None`.
    pub async fn call<T>(
        &self,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Option<T> {
        match tokio::time::timeout(self.request_timeout, call).await {
            Ok(Ok(response)) => Some(response.into_inner()),
            Ok(Err(status)) => {
                self.errors.status(&status);
                None
            }
            Err(_) => {
                self.errors.count("ClientTimeout", "no answer within --request-timeout-ms");
                None
            }
        }
    }
}

/// What a workload measured: rows for the table (the first is the headline the comparison
/// uses) and workload-specific figures.
pub struct Outcome {
    pub rows: Vec<Row>,
    pub extra: serde_json::Map<String, Value>,
    pub notes: Vec<String>,
}

/// Runs the workload the flags name and prints (and writes) its report.
pub async fn main(flags: Flags) -> Result<()> {
    flags.validate()?;
    let deadline = Instant::now() + Duration::from_secs(flags.timeout_seconds);
    let grace = Duration::from_secs(limits::DEADLINE_GRACE_SECONDS);
    let request_timeout = Duration::from_millis(flags.request_timeout_ms);
    match flags.workload {
        Workload::WaitLeader => {
            let (endpoint, member) = wait_for_leader(&flags.endpoints, deadline).await?;
            println!("leader: {endpoint} (member {member:x})");
            let json = json!({"leader_endpoint": endpoint, "leader_id": format!("{member:x}")});
            return write_json(&flags, &json);
        }
        Workload::CatchUp => return scale::catch_up(&flags, deadline).await,
        Workload::MemberAdd => return scale::member_add(&flags).await,
        _ => {}
    }
    let endpoints = match flags.target {
        Target::Leader => vec![find_leader(&flags.endpoints).await?.0],
        Target::All => flags.endpoints.clone(),
    };
    let mut channels = Vec::with_capacity(flags.conns);
    for i in 0..flags.conns {
        channels.push(connect(&endpoints[i % endpoints.len()]).await?);
    }
    let run = std::sync::Arc::new(Run {
        next_key: AtomicU64::new(0),
        budget: Budget::new(flags.total, deadline),
        flags,
        endpoints,
        channels,
        errors: Errors::default(),
        deadline,
        request_timeout,
    });
    let work = async {
        match run.flags.workload {
            Workload::Put | Workload::Range | Workload::Mixed | Workload::TxnPut => {
                kv::run(run.clone()).await
            }
            Workload::Watch => watch::fan_out(run.clone()).await,
            Workload::WatchLatency => watch::latency(run.clone()).await,
            Workload::WatchIdle => watch::idle(run.clone()).await,
            Workload::CompactionPause => scale::compaction_pause(run.clone()).await,
            Workload::WaitLeader | Workload::CatchUp | Workload::MemberAdd => {
                unreachable!("handled above")
            }
        }
    };
    let outcome = tokio::time::timeout_at(deadline + grace, work)
        .await
        .context("the run overran --timeout-seconds (requests still in flight)")??;
    report(&run, &outcome)
}

/// `host:port` or a URL → a connected channel (one HTTP/2 connection).
pub async fn connect(endpoint: &str) -> Result<Channel> {
    let url =
        if endpoint.contains("://") { endpoint.to_string() } else { format!("http://{endpoint}") };
    Endpoint::from_shared(url.clone())
        .with_context(|| format!("bad endpoint {endpoint:?}"))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("cannot connect to {url}"))
}

/// Each endpoint's (member id, leader id) from Maintenance.Status.
async fn statuses(endpoints: &[String]) -> Vec<Result<(u64, u64)>> {
    let mut out = Vec::with_capacity(endpoints.len());
    for endpoint in endpoints {
        let status = async {
            let mut client = MaintenanceClient::new(connect(endpoint).await?);
            let call = client.status(pb::StatusRequest {});
            let status = tokio::time::timeout(Duration::from_secs(5), call)
                .await
                .context("Status timed out")??
                .into_inner();
            let member = status.header.map_or(0, |h| h.member_id);
            Ok((member, status.leader))
        };
        out.push(status.await);
    }
    out
}

/// The endpoint of the leader every reachable endpoint names, and its member id.
async fn find_leader(endpoints: &[String]) -> Result<(String, u64)> {
    leader_of(endpoints, &statuses(endpoints).await)
}

fn leader_of(endpoints: &[String], statuses: &[Result<(u64, u64)>]) -> Result<(String, u64)> {
    let mut leaders: Vec<u64> = statuses.iter().flatten().map(|(_, leader)| *leader).collect();
    leaders.sort_unstable();
    leaders.dedup();
    let [leader] = leaders[..] else {
        bail!("endpoints do not agree on one leader: {leaders:x?}");
    };
    ensure!(leader != 0, "no leader");
    endpoints
        .iter()
        .zip(statuses)
        .find(|(_, status)| status.as_ref().is_ok_and(|(member, _)| *member == leader))
        .map(|(endpoint, _)| (endpoint.clone(), leader))
        .with_context(|| format!("the leader {leader:x} is not among --endpoints"))
}

/// Waits until every endpoint answers and they name the same leader.
async fn wait_for_leader(endpoints: &[String], deadline: Instant) -> Result<(String, u64)> {
    loop {
        let statuses = statuses(endpoints).await;
        let found = leader_of(endpoints, &statuses);
        match found {
            Ok(found) if statuses.iter().all(Result::is_ok) => return Ok(found),
            Err(error) if Instant::now() >= deadline => {
                return Err(error.context("no agreed leader before --timeout-seconds"))
            }
            _ => ensure!(Instant::now() < deadline, "an endpoint did not answer in time"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn report(run: &Run, outcome: &Outcome) -> Result<()> {
    let flags = &run.flags;
    let name = flags.workload_name();
    println!(
        "store-load {name}: {} ({}), {} conns, {} clients, total {}, {} B keys in a space of {}, \
         {} B values",
        run.endpoints.join(","),
        if flags.target == Target::Leader { "leader" } else { "all" },
        flags.conns,
        flags.clients,
        flags.total,
        flags.key_size,
        flags.key_space_size,
        flags.val_size,
    );
    print!("{}", record::table(&outcome.rows));
    println!("errors: {}", run.errors.total());
    for line in run.errors.lines() {
        println!("  {line}");
    }
    for note in &outcome.notes {
        println!("{note}");
    }
    if run.budget.deadline_hit() {
        println!("deadline: --timeout-seconds passed before --total operations were issued");
    }
    if flags.json.is_none() {
        return Ok(());
    }
    let consistency = match flags.consistency {
        Consistency::L => "l",
        Consistency::S => "s",
    };
    let mut json = json!({
        "workload": name,
        "endpoints": run.endpoints,
        "target": if flags.target == Target::Leader { "leader" } else { "all" },
        "conns": flags.conns, "clients": flags.clients, "total": flags.total,
        "key_size": flags.key_size, "val_size": flags.val_size,
        "key_space_size": flags.key_space_size, "consistency": consistency,
        "watchers": flags.watchers, "read_ratio": flags.read_ratio,
        "headline": outcome.rows.first().map(Row::to_json),
        "rows": outcome.rows.iter().map(Row::to_json).collect::<Vec<_>>(),
        "errors": {"total": run.errors.total(), "by_code": run.errors.to_json()},
        "deadline_hit": run.budget.deadline_hit(),
    });
    for (key, value) in &outcome.extra {
        json[key] = value.clone();
    }
    write_json(flags, &json)
}

/// Writes `json` to `--json`, if given.
fn write_json(flags: &Flags, json: &Value) -> Result<()> {
    let Some(path) = &flags.json else { return Ok(()) };
    std::fs::write(path, serde_json::to_string_pretty(json)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Prints `done` of `total` operations (and the rate since the last line) to stderr every
/// `PROGRESS_INTERVAL_SECONDS` until aborted.
pub fn spawn_progress(
    total: u64,
    done: impl Fn() -> u64 + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let interval = Duration::from_secs(limits::PROGRESS_INTERVAL_SECONDS);
        let started = Instant::now();
        let mut last = 0;
        loop {
            tokio::time::sleep(interval).await;
            let now = done();
            let rate = (now - last.min(now)) as f64 / interval.as_secs_f64();
            let percent = if total > 0 { now as f64 * 100.0 / total as f64 } else { 0.0 };
            eprintln!(
                "store-load: {now}/{total} done ({percent:.1}%), {rate:.0}/s, {:.0} s",
                started.elapsed().as_secs_f64()
            );
            last = now;
        }
    })
}
