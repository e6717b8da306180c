//! `control-plane-load`: the control-plane benchmark's client. Against a running master with
//! hollow nodes (see `cargo xtask bench-control-plane`), it measures:
//! - **Scheduling throughput:** N bare pods created by C concurrent clients. Each pod's bind
//!   time is seen through a watch; sustained pods/s is taken between the 10th and 90th
//!   percentile of binds.
//! - **Deployment latency:** Deployments created one after another, each timed from its create
//!   to its last pod bound (p50/p99).
//! - **Mutating-call latency:** the client's own create latencies under that load, and the API
//!   server's request-duration histogram for POST, PUT and PATCH, read from `/metrics`.
//!
//! Results print as text and, with `--json`, as one JSON object on the last line.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;

#[derive(Parser)]
struct Flags {
    #[arg(long)]
    kubeconfig: std::path::PathBuf,
    /// `scheduling` (hollow nodes: throughput, Deployment latency, API latency) or
    /// `pod-startup` (a real agent: create → Running latency at a fixed rate).
    #[arg(long, default_value = "scheduling")]
    mode: String,
    /// Pods per second in `pod-startup` mode.
    #[arg(long, default_value_t = 50)]
    rate: u32,
    /// Pods in `pod-startup` mode (a node takes 110 at most).
    #[arg(long, default_value_t = 100)]
    count: usize,
    /// Nodes to wait for before starting.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Bare pods in the throughput phase.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Concurrent creating clients.
    #[arg(long, default_value_t = 64)]
    creators: usize,
    /// Deployments in the latency phase, created one after another.
    #[arg(long, default_value_t = 20)]
    deployments: usize,
    /// Replicas of each.
    #[arg(long, default_value_t = 50)]
    replicas: i32,
    /// Give up on a phase after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Print a JSON summary as the last line.
    #[arg(long)]
    json: bool,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(|a, b| a.total_cmp(b));
    values
}

async fn ensure_namespace(client: &kube::Client, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    match api.create(&PostParams::default(), &namespace).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(error) => Err(error.into()),
    }
}

async fn wait_nodes(client: &kube::Client, count: usize, timeout: Duration) -> Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + timeout;
    loop {
        let nodes = api.list(&ListParams::default()).await?.items;
        let ready = nodes
            .iter()
            .filter(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        eprintln!("control-plane-load: {ready}/{count} nodes ready");
        if ready >= count {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {ready} of {count} nodes became ready");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Records, per pod name in `namespace`, when it was first seen bound.
fn watch_binds(
    client: &kube::Client,
    namespace: &str,
    started: Instant,
) -> (Arc<Mutex<HashMap<String, f64>>>, tokio::task::JoinHandle<()>) {
    let bound = Arc::new(Mutex::new(HashMap::new()));
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let sink = bound.clone();
    let task = tokio::spawn(async move {
        let mut events =
            watcher(api, watcher::Config::default()).default_backoff().applied_objects().boxed();
        while let Ok(Some(pod)) = events.try_next().await {
            let assigned = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
            if let (true, Some(name)) = (assigned, pod.metadata.name) {
                let at = started.elapsed().as_secs_f64();
                sink.lock().expect("lock").entry(name).or_insert(at);
            }
        }
    });
    (bound, task)
}

/// What every benchmark pod runs: one container asking for 10m CPU and 10 MiB.
fn bench_spec() -> serde_json::Value {
    json!({"containers": [{"name": "main", "image": "bench:1",
        "resources": {"requests": {"cpu": "10m", "memory": "10Mi"}}}]})
}

async fn throughput(client: &kube::Client, flags: &Flags) -> Result<serde_json::Value> {
    let namespace = "bench-scheduling";
    ensure_namespace(client, namespace).await?;
    let started = Instant::now();
    let (bound, watch) = watch_binds(client, namespace, started);
    // Let the watch establish before the first create.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let create_started = started.elapsed().as_secs_f64();
    let latencies: Vec<f64> = futures::stream::iter(0..flags.pods)
        .map(|i| {
            let api = api.clone();
            async move {
                let pod: Pod = serde_json::from_value(
                    json!({"metadata": {"name": format!("p-{i}")}, "spec": bench_spec()}),
                )
                .expect("pod");
                let at = Instant::now();
                api.create(&PostParams::default(), &pod).await.context("create pod")?;
                Ok::<f64, anyhow::Error>(at.elapsed().as_secs_f64())
            }
        })
        .buffer_unordered(flags.creators)
        .try_collect()
        .await?;
    let created_at = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(flags.timeout);
    loop {
        let count = bound.lock().expect("lock").len();
        if count >= flags.pods {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {count} of {} pods were bound", flags.pods);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    watch.abort();
    let binds = sorted(bound.lock().expect("lock").values().copied().collect());
    let (first, last) = (binds[0], binds[binds.len() - 1]);
    let (p10, p90) = (percentile(&binds, 10.0), percentile(&binds, 90.0));
    let sustained = 0.8 * binds.len() as f64 / (p90 - p10).max(1e-9);
    let overall = binds.len() as f64 / (last - create_started).max(1e-9);
    let creates = sorted(latencies);
    let create_rate = flags.pods as f64 / (created_at - create_started).max(1e-9);
    println!(
        "scheduling: {} pods on {} nodes; created at {:.0}/s; bound {:.0} pods/s sustained \
         (10th-90th percentile of binds), {:.0} pods/s overall; last bind {:.1} s after the \
         first create (first bind at {:.2} s)",
        flags.pods,
        flags.nodes,
        create_rate,
        sustained,
        overall,
        last - create_started,
        first - create_started
    );
    println!(
        "create latency under load: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&creates, 50.0) * 1e3,
        percentile(&creates, 99.0) * 1e3,
        percentile(&creates, 100.0) * 1e3
    );
    Ok(json!({
        "pods": flags.pods, "nodes": flags.nodes, "creators": flags.creators,
        "create_per_second": create_rate,
        "bind_per_second_sustained": sustained,
        "bind_per_second_overall": overall,
        "create_latency_ms": {"p50": percentile(&creates, 50.0) * 1e3,
            "p99": percentile(&creates, 99.0) * 1e3, "max": percentile(&creates, 100.0) * 1e3},
    }))
}

async fn deployments(client: &kube::Client, flags: &Flags) -> Result<serde_json::Value> {
    let namespace = "bench-deployments";
    ensure_namespace(client, namespace).await?;
    let started = Instant::now();
    let (bound, watch) = watch_binds(client, namespace, started);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let mut latencies = Vec::new();
    for i in 0..flags.deployments {
        let name = format!("d-{i}");
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"replicas": flags.replicas, "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": bench_spec()}}
        }))?;
        let at = started.elapsed().as_secs_f64();
        api.create(&PostParams::default(), &deployment).await.context("create deployment")?;
        let prefix = format!("{name}-");
        let deadline = Instant::now() + Duration::from_secs(flags.timeout);
        let done = loop {
            let times: Vec<f64> = bound
                .lock()
                .expect("lock")
                .iter()
                .filter(|(pod, _)| pod.starts_with(&prefix))
                .map(|(_, t)| *t)
                .collect();
            if times.len() >= flags.replicas as usize {
                break times.into_iter().fold(0.0, f64::max);
            }
            if Instant::now() > deadline {
                bail!("deployment {name}: only {} pods bound", times.len());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        latencies.push(done - at);
    }
    watch.abort();
    let latencies = sorted(latencies);
    println!(
        "deployment create -> all {} pods bound ({} deployments, one at a time): p50 {:.0} ms, \
         p99 {:.0} ms, max {:.0} ms",
        flags.replicas,
        flags.deployments,
        percentile(&latencies, 50.0) * 1e3,
        percentile(&latencies, 99.0) * 1e3,
        percentile(&latencies, 100.0) * 1e3
    );
    let ms = |p: f64| percentile(&latencies, p) * 1e3;
    Ok(json!({"deployments": flags.deployments, "replicas": flags.replicas,
        "create_to_bound_ms": {"p50": ms(50.0), "p99": ms(99.0), "max": ms(100.0)}}))
}

/// The API server's p50/p99 for mutating verbs, from its cumulative histogram buckets (an
/// upper bound: the bucket's edge).
async fn server_latency(client: &kube::Client) -> Result<serde_json::Value> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(request).await?;
    let mut buckets: std::collections::BTreeMap<u64, f64> = std::collections::BTreeMap::new();
    let mut counted = 0.0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_duration_seconds_bucket{") else {
            continue;
        };
        let mutating = [
            "verb=\"POST\"",
            "verb=\"PUT\"",
            "verb=\"PATCH\"",
            "verb=\"create\"",
            "verb=\"update\"",
            "verb=\"patch\"",
        ];
        if !mutating.iter().any(|v| rest.contains(v)) {
            continue;
        }
        let Some(le) = rest.split("le=\"").nth(1).and_then(|s| s.split('"').next()) else {
            continue;
        };
        let value: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        if le == "+Inf" {
            counted += value;
            *buckets.entry(u64::MAX).or_default() += value;
        } else if let Ok(edge) = le.parse::<f64>() {
            *buckets.entry((edge * 1e6) as u64).or_default() += value;
        }
    }
    let edge_for = |p: f64| -> Option<f64> {
        buckets.iter().find(|(_, count)| **count >= counted * p / 100.0).map(|(edge, _)| {
            if *edge == u64::MAX {
                f64::INFINITY
            } else {
                *edge as f64 / 1e3
            }
        })
    };
    let (p50, p99) = (edge_for(50.0), edge_for(99.0));
    println!(
        "API server mutating requests ({counted:.0}): p50 <= {} ms, p99 <= {} ms (bucket edges)",
        p50.map_or("?".into(), |v| format!("{v}")),
        p99.map_or("?".into(), |v| format!("{v}"))
    );
    Ok(json!({"requests": counted, "p50_le_ms": p50, "p99_le_ms": p99}))
}

/// Pod startup latency on real agents: pods (`image: host`, a long sleep) created at a fixed
/// rate, each timed from just before its create to the first time a watch sees it Running.
/// The pods are deleted afterwards and the run waits until they are gone.
async fn pod_startup(client: &kube::Client, flags: &Flags) -> Result<serde_json::Value> {
    let namespace = "bench-startup";
    ensure_namespace(client, namespace).await?;
    let started = Instant::now();
    let running = Arc::new(Mutex::new(HashMap::<String, f64>::new()));
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let sink = running.clone();
    let watch_api = api.clone();
    let watch = tokio::spawn(async move {
        let mut events = watcher(watch_api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Ok(Some(pod)) = events.try_next().await {
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            if let (Some("Running"), Some(name)) = (phase, pod.metadata.name) {
                let at = started.elapsed().as_secs_f64();
                sink.lock().expect("lock").entry(name).or_insert(at);
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut created: HashMap<String, f64> = HashMap::new();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(flags.rate)));
    let mut creates = Vec::new();
    for i in 0..flags.count {
        ticker.tick().await;
        let name = format!("s-{i}");
        created.insert(name.clone(), started.elapsed().as_secs_f64());
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "main",
                "image": "host", "command": ["sleep", "3600"]}]}}))?;
        let api = api.clone();
        creates.push(tokio::spawn(async move { api.create(&PostParams::default(), &pod).await }));
    }
    for create in creates {
        create.await?.context("create pod")?;
    }
    let deadline = Instant::now() + Duration::from_secs(flags.timeout);
    while running.lock().expect("lock").len() < flags.count {
        if Instant::now() > deadline {
            bail!("only {} of {} pods ran", running.lock().expect("lock").len(), flags.count);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    watch.abort();
    let latencies =
        sorted(running.lock().expect("lock").iter().map(|(name, at)| at - created[name]).collect());
    let ms = |p: f64| percentile(&latencies, p) * 1e3;
    println!(
        "pod startup (create -> Running, {} pods at {}/s): p50 {:.0} ms, p99 {:.0} ms, \
         max {:.0} ms",
        flags.count,
        flags.rate,
        ms(50.0),
        ms(99.0),
        ms(100.0)
    );
    api.delete_collection(&Default::default(), &ListParams::default()).await?;
    let deadline = Instant::now() + Duration::from_secs(flags.timeout);
    while !api.list(&ListParams::default()).await?.items.is_empty() {
        if Instant::now() > deadline {
            bail!("the benchmark's pods were not all deleted");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(json!({"pods": flags.count, "rate": flags.rate,
        "create_to_running_ms": {"p50": ms(50.0), "p99": ms(99.0), "max": ms(100.0)}}))
}

#[tokio::main]
async fn main() -> Result<()> {
    let flags = Flags::parse();
    let client = control_plane::client::from_kubeconfig_file(&flags.kubeconfig).await?;
    wait_nodes(&client, flags.nodes, Duration::from_secs(flags.timeout)).await?;
    if flags.mode == "pod-startup" {
        let startup = pod_startup(&client, &flags).await?;
        if flags.json {
            println!("{}", json!({"pod_startup": startup}));
        }
        return Ok(());
    }
    let scheduling = throughput(&client, &flags).await?;
    let deployments = deployments(&client, &flags).await?;
    let server = server_latency(&client).await?;
    if flags.json {
        println!(
            "{}",
            json!({"scheduling": scheduling, "deployments": deployments, "apiserver": server})
        );
    }
    Ok(())
}
