//! The workloads `cargo xtask bench-store-scale` adds to the generator.
//!
//! `catch-up`: how long a restarted or new member takes to answer a serializable get and to
//! reach the revision the reference member (the leader) had when the wait began. `member-add`:
//! etcd's MemberAdd. `compaction-pause`: put latency before, during and after one compaction,
//! and the compaction call's own duration.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde_json::json;
use store::proto::etcdserverpb as pb;
use store::proto::etcdserverpb::cluster_client::ClusterClient;
use store::proto::etcdserverpb::kv_client::KvClient;
use tokio::time::{Duration, Instant};
use tonic::transport::Channel;

use super::kv::kv_client_on;
use super::record::{Latencies, Row};
use super::{connect, write_json, Flags, Outcome, Run};
use crate::limits;

/// The key the probes read: any key serves, the header carries the member's revision.
const PROBE_KEY: &[u8] = b"store-load/probe";

/// The revision `endpoint`'s answer to a get of the probe key carries in its header.
async fn revision_of(kv: &mut KvClient<Channel>, serializable: bool) -> Result<i64> {
    let request =
        pb::RangeRequest { key: PROBE_KEY.to_vec(), serializable, ..pb::RangeRequest::default() };
    let response = tokio::time::timeout(Duration::from_secs(5), kv.range(request))
        .await
        .context("no answer within 5 s")??
        .into_inner();
    Ok(response.header.map_or(0, |h| h.revision))
}

/// `catch-up`: polls the first endpoint with serializable gets until one answers with at least
/// the reference's revision; prints (and writes as JSON) when it first answered and when it
/// caught up, both from the start of the wait.
pub async fn catch_up(flags: &Flags, deadline: Instant) -> Result<()> {
    let member = &flags.endpoints[0];
    let reference = flags.reference.as_deref().context("catch-up needs --reference")?;
    let started = Instant::now();
    let mut leader = KvClient::new(connect(reference).await?);
    let target = revision_of(&mut leader, false).await.context("reading --reference's revision")?;
    let mut client = None;
    let mut first_answer = None;
    let mut last_error = String::from("never answered");
    let revision = loop {
        if Instant::now() >= deadline {
            bail!("{member} did not reach revision {target} in time (last: {last_error})");
        }
        if client.is_none() {
            client = connect(member).await.ok().map(KvClient::new);
        }
        if let Some(kv) = client.as_mut() {
            match revision_of(kv, true).await {
                Ok(revision) => {
                    first_answer.get_or_insert_with(|| started.elapsed());
                    if revision >= target {
                        break revision;
                    }
                    last_error = format!("at revision {revision}");
                }
                Err(error) => {
                    last_error = format!("{error:#}");
                    client = None;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(limits::CATCH_UP_POLL_MS)).await;
    };
    let caught_up = started.elapsed();
    let first_answer = first_answer.unwrap_or(caught_up);
    println!(
        "catch-up: {member} first answered after {:.3} s, reached revision {target} \
         (at {revision}) after {:.3} s",
        first_answer.as_secs_f64(),
        caught_up.as_secs_f64()
    );
    let json = json!({
        "workload": "catch-up", "endpoint": member, "reference": reference,
        "target_revision": target, "revision": revision,
        "first_answer_seconds": first_answer.as_secs_f64(),
        "caught_up_seconds": caught_up.as_secs_f64(),
    });
    write_json(flags, &json)
}

/// `member-add`: adds `--peer-url` through the first endpoint; prints the new member's id.
pub async fn member_add(flags: &Flags) -> Result<()> {
    let peer_url = flags.peer_url.clone().context("member-add needs --peer-url")?;
    let mut client = ClusterClient::new(connect(&flags.endpoints[0]).await?);
    let request =
        pb::MemberAddRequest { peer_ur_ls: vec![peer_url.clone()], is_learner: flags.learner };
    let timeout = Duration::from_millis(flags.request_timeout_ms);
    let response = tokio::time::timeout(timeout, client.member_add(request))
        .await
        .context("MemberAdd timed out")?
        .context("MemberAdd")?
        .into_inner();
    let id = response.member.map_or(0, |m| m.id);
    let role = if flags.learner { "learner" } else { "voter" };
    println!("member-add: added {id:x} ({peer_url}, {role}); {} members", response.members.len());
    let json = json!({
        "workload": "member-add", "id": format!("{id:x}"), "peer_url": peer_url,
        "learner": flags.learner, "members": response.members.len(),
    });
    write_json(flags, &json)
}

/// One put: when it was sent and how long it took, in microseconds from the run's start.
#[derive(Clone, Copy)]
struct Sample {
    sent_us: u64,
    latency_us: u64,
}

/// When the compaction call was sent and when it returned, from the run's start.
#[derive(Clone, Copy, Default)]
struct Window {
    start_us: u64,
    end_us: u64,
}

/// What the compaction call did.
struct Compaction {
    revision: i64,
    window: Window,
    error: Option<String>,
}

fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
}

/// `compaction-pause`: `--clients` putters run throughout; the compaction runs after
/// `--before-seconds`; the run stops `--after-seconds` after it returns.
pub async fn compaction_pause(run: Arc<Run>) -> Result<Outcome> {
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let samples_max = limits::PAUSE_SAMPLES_MAX / run.flags.clients;
    let mut putters = Vec::with_capacity(run.flags.clients);
    for client in 0..run.flags.clients {
        let (run, stop) = (run.clone(), stop.clone());
        putters.push(tokio::spawn(async move {
            putter(&run, client, started, &stop, samples_max).await
        }));
    }
    let compaction = compact_after(&run, started).await;
    if let Some(error) = &compaction.error {
        run.errors.count("CompactionFailed", error);
    }
    let after = Duration::from_secs(run.flags.after_seconds);
    tokio::time::sleep_until((Instant::now() + after).min(run.deadline)).await;
    stop.store(true, Ordering::Relaxed);
    let ended = micros(started.elapsed());
    let mut samples = Vec::new();
    let mut unrecorded = 0;
    for putter in putters {
        let (client_samples, client_unrecorded) = putter.await?;
        samples.extend(client_samples);
        unrecorded += client_unrecorded;
    }
    Ok(pause_outcome(&samples, unrecorded, &compaction, ended))
}

/// Puts random keys until `stop`; returns the recorded samples and how many were not recorded.
async fn putter(
    run: &Run,
    client: usize,
    started: Instant,
    stop: &AtomicBool,
    samples_max: usize,
) -> (Vec<Sample>, u64) {
    let mut kv = kv_client_on(run, client);
    let mut rng = run.rng(client);
    let value = run.value(&mut rng);
    let mut samples = Vec::new();
    let mut unrecorded = 0;
    while !stop.load(Ordering::Relaxed) && Instant::now() < run.deadline {
        let (_, key) = run.random_key(&mut rng);
        let put = pb::PutRequest { key, value: value.clone(), ..Default::default() };
        let sent = Instant::now();
        if run.call(kv.put(put)).await.is_some() {
            let sample =
                Sample { sent_us: micros(sent - started), latency_us: micros(sent.elapsed()) };
            if samples.len() < samples_max {
                samples.push(sample);
            } else {
                unrecorded += 1;
            }
        }
    }
    (samples, unrecorded)
}

/// Waits `--before-seconds`, reads the current revision (a linearizable get) and compacts at
/// it; the call may take long, so it gets the whole run's deadline rather than the
/// per-request timeout.
async fn compact_after(run: &Run, started: Instant) -> Compaction {
    let before = Duration::from_secs(run.flags.before_seconds);
    tokio::time::sleep_until(started + before).await;
    let mut kv = kv_client_on(run, 0);
    let mut compaction = Compaction { revision: 0, window: Window::default(), error: None };
    compaction.revision = match revision_of(&mut kv, false).await {
        Ok(revision) => revision,
        Err(error) => {
            compaction.error = Some(format!("reading the current revision: {error:#}"));
            return compaction;
        }
    };
    let request = pb::CompactionRequest { revision: compaction.revision, physical: true };
    compaction.window.start_us = micros(started.elapsed());
    let called = tokio::time::timeout_at(run.deadline, kv.compact(request)).await;
    compaction.window.end_us = micros(started.elapsed());
    compaction.error = match called {
        Ok(Ok(_)) => None,
        Ok(Err(status)) => Some(format!("{:?}: {}", status.code(), status.message())),
        Err(_) => Some("no answer before --timeout-seconds".into()),
    };
    compaction
}

/// Splits the puts by the compaction window: done before it was sent, overlapping it, sent
/// after it returned.
fn pause_outcome(
    samples: &[Sample],
    unrecorded: u64,
    compaction: &Compaction,
    ended_us: u64,
) -> Outcome {
    let window = compaction.window;
    let [before, during, after] = [(); 3].map(|_| Latencies::default());
    for sample in samples {
        let done_us = sample.sent_us + sample.latency_us;
        let series = if done_us <= window.start_us {
            &before
        } else if sample.sent_us < window.end_us {
            &during
        } else {
            &after
        };
        series.record(Duration::from_micros(sample.latency_us));
    }
    let seconds = |from: u64, to: u64| to.saturating_sub(from) as f64 / 1e6;
    let call = Latencies::default();
    call.record(Duration::from_micros(window.end_us - window.start_us));
    let row = |name: &str, latencies: &Latencies, from: u64, to: u64| {
        Row::new(name, latencies.count(), seconds(from, to), latencies.summary())
    };
    let rows = vec![
        row("put before", &before, 0, window.start_us),
        row("put during", &during, window.start_us, window.end_us),
        row("put after", &after, window.end_us, ended_us),
        row("compaction", &call, window.start_us, window.end_us),
    ];
    let mut outcome = Outcome { rows, extra: Default::default(), notes: Vec::new() };
    let duration_ms = (window.end_us - window.start_us) as f64 / 1000.0;
    outcome.notes.push(match &compaction.error {
        None => format!("compaction at revision {} took {duration_ms:.1} ms", compaction.revision),
        Some(error) => format!("compaction at revision {} failed: {error}", compaction.revision),
    });
    if unrecorded > 0 {
        outcome.notes.push(format!("{unrecorded} puts past the sample bound were not recorded"));
    }
    outcome.extra.insert(
        "compaction".into(),
        json!({
            "revision": compaction.revision, "duration_ms": duration_ms,
            "error": compaction.error, "unrecorded_puts": unrecorded,
        }),
    );
    outcome
}
