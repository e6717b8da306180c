//! The watch workloads.
//!
//! `watch`: `--watchers` watchers on the key prefix, each its own gRPC stream, spread over the
//! connections; then `--clients` clients put `--total` keys under the prefix. Each event's
//! latency runs from its put's acknowledgement (matched by revision) to its delivery to a
//! watcher; an event that arrives before the acknowledgement counts 0. A second series times
//! it from just before the put was sent. Afterwards every watcher's deliveries are checked
//! against the acknowledged puts: each revision exactly once, in order.
//!
//! `watch-latency`: one watcher, puts one at a time, each timed from just before it is sent
//! to its event's delivery.
//!
//! `watch-idle`: `--watchers` watchers that receive nothing, and the servers' resident memory
//! before and after they open.

use control_plane::storage::backend::prefix_end;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde_json::json;
use store::proto::etcdserverpb as pb;
use store::proto::etcdserverpb::kv_client::KvClient;
use store::proto::etcdserverpb::watch_client::WatchClient;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Duration, Instant};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use super::record::{Latencies, Row};
use super::{Outcome, Run};
use crate::limits;

/// An open watch: the request side (kept open: closing it ends the stream) and the responses.
struct OpenWatch {
    _requests: mpsc::Sender<pb::WatchRequest>,
    responses: Streaming<pb::WatchResponse>,
}

/// Opens a watch of the prefix from the next revision on connection `connection` and waits for
/// the server to confirm it was created.
async fn open_watch(run: &Run, connection: usize) -> Result<OpenWatch> {
    let key = run.flags.prefix.as_bytes().to_vec();
    let range_end = prefix_end(&key);
    let (requests, outgoing) = mpsc::channel(limits::WATCH_REQUEST_BUFFER_LEN);
    let create = pb::WatchCreateRequest { key, range_end, ..Default::default() };
    let request = pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(create)),
    };
    requests.send(request).await.expect("the receiver is held below");
    let mut client = WatchClient::new(run.channel(connection));
    let timeout = Duration::from_millis(run.flags.request_timeout_ms);
    let opened = tokio::time::timeout(timeout, async {
        let mut responses = client.watch(ReceiverStream::new(outgoing)).await?.into_inner();
        loop {
            match responses.message().await? {
                Some(response) if response.created && !response.canceled => {
                    return Ok::<_, tonic::Status>(responses)
                }
                Some(response) if response.canceled => {
                    return Err(tonic::Status::aborted(response.cancel_reason))
                }
                Some(_) => {}
                None => return Err(tonic::Status::aborted("stream ended before created")),
            }
        }
    });
    let responses = opened.await.context("watch create timed out")??;
    Ok(OpenWatch { _requests: requests, responses })
}

/// How far watchers should read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Puts are still going on.
    Putting,
    /// Read until this revision (the last acknowledged put's) has been delivered.
    Until(i64),
    /// Stop now (the drain deadline passed).
    Stop,
}

/// What one watcher received: (revision, arrival) per event, at most `recorded_max`.
#[derive(Default)]
struct Deliveries {
    events: Vec<(i64, Instant)>,
    /// Events past `recorded_max` (counted as duplicates: there are only `--total` puts).
    overflow: u64,
}

async fn watcher(
    run: Arc<Run>,
    index: usize,
    mut phase: watch::Receiver<Phase>,
    ready: mpsc::Sender<Result<(), String>>,
    recorded_max: usize,
) -> Deliveries {
    let mut deliveries = Deliveries::default();
    let mut open = match open_watch(&run, index).await {
        Ok(open) => open,
        Err(error) => {
            let _ = ready.send(Err(format!("{error:#}"))).await;
            return deliveries;
        }
    };
    let _ = ready.send(Ok(())).await;
    let mut newest = 0;
    loop {
        let done = match *phase.borrow_and_update() {
            Phase::Putting => false,
            Phase::Until(revision) => newest >= revision,
            Phase::Stop => true,
        };
        if done {
            return deliveries;
        }
        tokio::select! {
            message = open.responses.message() => match message {
                Ok(Some(response)) => {
                    let at = Instant::now();
                    for event in response.events {
                        let revision = event.kv.map_or(0, |kv| kv.mod_revision);
                        newest = newest.max(revision);
                        if deliveries.events.len() < recorded_max {
                            deliveries.events.push((revision, at));
                        } else {
                            deliveries.overflow += 1;
                        }
                    }
                    if response.canceled {
                        run.errors.count("WatchCanceled", &response.cancel_reason);
                        return deliveries;
                    }
                }
                Ok(None) => {
                    run.errors.count("WatchEnded", "the server ended a watch stream");
                    return deliveries;
                }
                Err(status) => {
                    run.errors.status(&status);
                    return deliveries;
                }
            },
            changed = phase.changed() => {
                if changed.is_err() {
                    return deliveries;
                }
            }
        }
    }
}

/// When a put was sent and when its answer came.
#[derive(Clone, Copy, Debug)]
struct PutTimes {
    sent: Instant,
    acknowledged: Instant,
}

/// One client's acknowledged puts, by revision.
async fn putter(run: Arc<Run>, client: usize, latencies: Arc<Latencies>) -> Vec<(i64, PutTimes)> {
    let mut kv = KvClient::new(run.channel(client));
    let mut rng = run.rng(client);
    let value = run.value(&mut rng);
    let mut acknowledged = Vec::new();
    while run.budget.take() {
        let (_, key) = run.random_key(&mut rng);
        let put = pb::PutRequest { key, value: value.clone(), ..Default::default() };
        let sent = Instant::now();
        if let Some(response) = run.call(kv.put(put)).await {
            let acknowledged_at = Instant::now();
            latencies.record(acknowledged_at - sent);
            let times = PutTimes { sent, acknowledged: acknowledged_at };
            acknowledged.push((response.header.map_or(0, |h| h.revision), times));
        }
    }
    acknowledged
}

/// Aborts the tasks it holds when dropped (a failed run leaves nothing behind).
struct Tasks<T>(Vec<JoinHandle<T>>);

impl<T> Drop for Tasks<T> {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

pub async fn fan_out(run: Arc<Run>) -> Result<Outcome> {
    let count = run.flags.watchers;
    let recorded_max =
        usize::try_from(run.flags.total.saturating_mul(limits::WATCH_EVENTS_RECORDED_PER_PUT_MAX))
            .unwrap_or(usize::MAX);
    let (phase_sender, phase) = watch::channel(Phase::Putting);
    // One message per watcher, so the channel never blocks a watcher.
    let (ready_sender, mut ready) = mpsc::channel(count);
    let mut watchers = Tasks(Vec::with_capacity(count));
    for index in 0..count {
        let task = watcher(run.clone(), index, phase.clone(), ready_sender.clone(), recorded_max);
        watchers.0.push(tokio::spawn(task));
    }
    drop(ready_sender);
    eprintln!("store-load: opening {count} watchers");
    for created in 0..count {
        match tokio::time::timeout_at(run.deadline, ready.recv()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(error))) => bail!("a watcher could not start: {error}"),
            Ok(None) => bail!("watchers ended before starting"),
            Err(_) => bail!("only {created} of {count} watchers started before the deadline"),
        }
    }
    let put_latencies = Arc::new(Latencies::default());
    let started = Instant::now();
    let mut putters = Tasks(Vec::with_capacity(run.flags.clients));
    for client in 0..run.flags.clients {
        putters.0.push(tokio::spawn(putter(run.clone(), client, put_latencies.clone())));
    }
    let mut acknowledged = HashMap::new();
    for task in std::mem::take(&mut putters.0) {
        acknowledged.extend(task.await?);
    }
    let put_seconds = started.elapsed().as_secs_f64();
    let last = acknowledged.keys().copied().max().unwrap_or(0);
    let _ = phase_sender.send(Phase::Until(last));
    // Watchers get until the drain deadline to deliver everything; then they are stopped and
    // what they have not delivered counts as missing.
    let drain = Duration::from_secs(limits::WATCH_DRAIN_SECONDS_MAX);
    let drain_deadline = (Instant::now() + drain).min(run.deadline);
    let stopper = Tasks(vec![tokio::spawn(async move {
        tokio::time::sleep_until(drain_deadline).await;
        let _ = phase_sender.send(Phase::Stop);
    })]);
    let mut deliveries = Vec::with_capacity(count);
    for task in std::mem::take(&mut watchers.0) {
        deliveries.push(task.await?);
    }
    let drain_deadline_hit = stopper.0.iter().all(JoinHandle::is_finished);
    drop(stopper);
    let latencies = EventLatencies::default();
    let check = check_deliveries(&acknowledged, &deliveries, count, &latencies);
    let last_delivery = deliveries.iter().flat_map(|d| d.events.iter().map(|(_, at)| *at)).max();
    let event_seconds = last_delivery.map_or(0.0, |at| (at - started).as_secs_f64());
    let rows = vec![
        Row::new("event", check.delivered, event_seconds, latencies.from_ack.summary()),
        Row::new("event-from-send", check.delivered, event_seconds, latencies.from_send.summary()),
        Row::new("put", acknowledged.len() as u64, put_seconds, put_latencies.summary()),
    ];
    let notes = vec![format!(
        "watchers {count}, puts acknowledged {}, events expected {}, delivered {}, missing {}, \
         duplicates {}, out of order {}, unexpected {}, delivered before the put's ack {}",
        acknowledged.len(),
        acknowledged.len() * count,
        check.delivered,
        check.missing,
        check.duplicates,
        check.out_of_order,
        check.unexpected,
        check.before_ack
    )];
    let mut outcome = Outcome { rows, extra: Default::default(), notes };
    if drain_deadline_hit {
        outcome.notes.push(format!(
            "watchers were stopped {} s after the last put, before delivering everything",
            limits::WATCH_DRAIN_SECONDS_MAX
        ));
    }
    outcome.extra.insert("watch".into(), check.to_json(count, acknowledged.len()));
    Ok(outcome)
}

/// Completeness of every watcher's deliveries against the acknowledged puts.
#[derive(Debug, Default, PartialEq, Eq)]
struct Check {
    delivered: u64,
    missing: u64,
    duplicates: u64,
    out_of_order: u64,
    /// Revisions no acknowledged put made (a put that failed for the client but was applied).
    unexpected: u64,
    /// Events that reached the watcher before the put's answer reached the putter (their
    /// latency is recorded as 0).
    before_ack: u64,
}

impl Check {
    fn to_json(&self, watchers: usize, puts: usize) -> serde_json::Value {
        json!({
            "watchers": watchers, "puts_acknowledged": puts,
            "events_expected": (watchers * puts) as u64, "delivered": self.delivered,
            "missing": self.missing, "duplicates": self.duplicates,
            "out_of_order": self.out_of_order, "unexpected": self.unexpected,
            "before_ack": self.before_ack,
        })
    }
}

/// Delivery latencies of the expected events.
#[derive(Default)]
struct EventLatencies {
    /// Put acknowledged → event delivered (0 when the event came first).
    from_ack: Latencies,
    /// Put sent → event delivered.
    from_send: Latencies,
}

/// Checks deliveries and records each expected event's latencies. `watchers` counts watchers
/// that never reported (every expected event of theirs is missing).
fn check_deliveries(
    acknowledged: &HashMap<i64, PutTimes>,
    deliveries: &[Deliveries],
    watchers: usize,
    latencies: &EventLatencies,
) -> Check {
    let mut check = Check::default();
    for delivered in deliveries {
        let mut seen = HashSet::with_capacity(acknowledged.len());
        let mut newest = 0;
        for &(revision, at) in &delivered.events {
            if !seen.insert(revision) {
                check.duplicates += 1;
                continue;
            }
            if revision <= newest {
                check.out_of_order += 1;
            }
            newest = newest.max(revision);
            let Some(put) = acknowledged.get(&revision) else {
                check.unexpected += 1;
                continue;
            };
            check.before_ack += u64::from(at < put.acknowledged);
            latencies.from_ack.record(at.saturating_duration_since(put.acknowledged));
            latencies.from_send.record(at.saturating_duration_since(put.sent));
            check.delivered += 1;
        }
        check.duplicates += delivered.overflow;
        let expected_seen = seen.iter().filter(|r| acknowledged.contains_key(r)).count();
        check.missing += (acknowledged.len() - expected_seen) as u64;
    }
    let silent = watchers.saturating_sub(deliveries.len());
    check.missing += (silent * acknowledged.len()) as u64;
    check
}

pub async fn latency(run: Arc<Run>) -> Result<Outcome> {
    let (events, mut delivered) = mpsc::channel(limits::WATCH_LATENCY_EVENT_BUFFER_LEN);
    let mut open = open_watch(&run, 0).await?;
    let forward_run = run.clone();
    let forwarder = Tasks(vec![tokio::spawn(async move {
        loop {
            let response = match open.responses.message().await {
                Ok(Some(response)) => response,
                Ok(None) => return,
                Err(status) => {
                    forward_run.errors.status(&status);
                    return;
                }
            };
            let at = Instant::now();
            for event in response.events {
                let revision = event.kv.map_or(0, |kv| kv.mod_revision);
                if events.send((revision, at)).await.is_err() {
                    return;
                }
            }
        }
    })]);
    // Its own connection when there are two, so puts and events do not share one.
    let mut kv = KvClient::new(run.channel(1));
    let mut rng = run.rng(0);
    let value = run.value(&mut rng);
    let (event_latencies, put_latencies) = (Latencies::default(), Latencies::default());
    let (mut missing, mut unexpected) = (0u64, 0u64);
    let timeout = Duration::from_millis(run.flags.request_timeout_ms);
    let started = Instant::now();
    while run.budget.take() {
        let (_, key) = run.random_key(&mut rng);
        let put = pb::PutRequest { key, value: value.clone(), ..Default::default() };
        let sent = Instant::now();
        let Some(response) = run.call(kv.put(put)).await else { continue };
        put_latencies.record(sent.elapsed());
        let revision = response.header.map_or(0, |h| h.revision);
        loop {
            match tokio::time::timeout(timeout, delivered.recv()).await {
                Ok(Some((seen, at))) if seen == revision => {
                    event_latencies.record(at - sent);
                    break;
                }
                Ok(Some((seen, _))) if seen < revision => unexpected += 1,
                Ok(Some(_)) => {
                    missing += 1;
                    break;
                }
                Ok(None) => bail!("the watch stream ended"),
                Err(_) => {
                    run.errors.count("EventTimeout", "no event within --request-timeout-ms");
                    missing += 1;
                    break;
                }
            }
        }
    }
    drop(forwarder);
    let seconds = started.elapsed().as_secs_f64();
    let rows = vec![
        Row::new("event", event_latencies.count(), seconds, event_latencies.summary()),
        Row::new("put", put_latencies.count(), seconds, put_latencies.summary()),
    ];
    let notes = vec![format!("missing events {missing}, unexpected events {unexpected}")];
    let mut outcome = Outcome { rows, extra: Default::default(), notes };
    outcome.extra.insert("watch".into(), json!({"missing": missing, "unexpected": unexpected}));
    Ok(outcome)
}

/// Resident memory, in bytes, of the processes (`VmRSS` in `/proc/<pid>/status`), summed.
fn resident_bytes(pids: &[u32]) -> Result<u64> {
    let mut total = 0;
    for pid in pids {
        let path = format!("/proc/{pid}/status");
        let status = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no VmRSS in {path}"))?;
        total += kib * 1024;
    }
    Ok(total)
}

pub async fn idle(run: Arc<Run>) -> Result<Outcome> {
    let count = run.flags.watchers;
    let pids = run.flags.rss_pids.clone();
    let before = resident_bytes(&pids)?;
    eprintln!("store-load: opening {count} idle watchers");
    let create_latencies = Arc::new(Latencies::default());
    let started = Instant::now();
    // Opened a connection's worth at a time, every watcher its own stream.
    let mut open = Vec::with_capacity(count);
    for wave in (0..count).collect::<Vec<_>>().chunks(run.flags.conns) {
        let mut opening = Tasks(Vec::with_capacity(wave.len()));
        for &index in wave {
            let (run, latencies) = (run.clone(), create_latencies.clone());
            opening.0.push(tokio::spawn(async move {
                let sent = Instant::now();
                let opened = open_watch(&run, index).await;
                latencies.record(sent.elapsed());
                opened
            }));
        }
        for task in std::mem::take(&mut opening.0) {
            open.push(task.await?.context("open an idle watcher")?);
        }
    }
    let open_seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(run.flags.settle_seconds)).await;
    let after = resident_bytes(&pids)?;
    // Nothing is written under the prefix, so an idle watcher that got an event is an error.
    let mut unexpected = 0u64;
    for watch in &mut open {
        let poll = tokio::time::timeout(Duration::ZERO, watch.responses.message()).await;
        if let Ok(Ok(Some(response))) = poll {
            unexpected += response.events.len() as u64;
        }
    }
    drop(open);
    let per_watcher = after.saturating_sub(before) as f64 / count as f64;
    let summary = create_latencies.summary();
    let rows = vec![Row::new("watch-create", count as u64, open_seconds, summary)];
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let notes = vec![format!(
        "idle watchers {count}: resident memory of pids {pids:?} {:.1} MiB before, {:.1} MiB \
         with them open ({per_watcher:.0} B per watcher); events received {unexpected}",
        mib(before),
        mib(after)
    )];
    if unexpected > 0 {
        run.errors.count("UnexpectedEvent", "an idle watcher received an event");
    }
    let mut outcome = Outcome { rows, extra: Default::default(), notes };
    outcome.extra.insert(
        "idle_watchers".into(),
        json!({"watchers": count, "pids": pids, "rss_before_bytes": before,
            "rss_after_bytes": after, "bytes_per_watcher": per_watcher}),
    );
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end(b"load/"), b"load0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }

    #[test]
    fn deliveries_are_checked_for_gaps_duplicates_and_order() {
        let base = Instant::now();
        let ms = |n: u64| base + Duration::from_millis(n);
        let put = |sent: u64, acknowledged: u64| PutTimes {
            sent: ms(sent),
            acknowledged: ms(acknowledged),
        };
        let acknowledged: HashMap<i64, PutTimes> =
            [(2, put(8, 10)), (3, put(18, 20)), (4, put(28, 30))].into();
        let complete =
            Deliveries { events: vec![(2, ms(11)), (3, ms(22)), (4, ms(33))], overflow: 0 };
        let faulty = Deliveries {
            // 3 twice, 2 after 4, 9 from no acknowledged put; 2 arrives before its ack.
            events: vec![(3, ms(25)), (3, ms(26)), (4, ms(31)), (2, ms(5)), (9, ms(40))],
            overflow: 1,
        };
        let latencies = EventLatencies::default();
        let check = check_deliveries(&acknowledged, &[complete, faulty], 3, &latencies);
        let expected = Check {
            delivered: 6,
            missing: 3,
            duplicates: 2,
            out_of_order: 1,
            unexpected: 1,
            before_ack: 1,
        };
        assert_eq!(check, expected);
        let (from_ack, from_send) = (latencies.from_ack.summary(), latencies.from_send.summary());
        assert_eq!((from_ack.count, from_send.count), (6, 6));
        // Worst: revision 3 delivered at 25 ms, acknowledged at 20 and sent at 18.
        assert!((5_000..5_010).contains(&from_ack.max_us), "{from_ack:?}");
        assert!((7_000..7_010).contains(&from_send.max_us), "{from_send:?}");
    }
}
