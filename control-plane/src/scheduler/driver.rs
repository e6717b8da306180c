//! The scheduler's driver: one task that owns the cache, the queue and the algorithm, fed by
//! the node and pod watches, and that hands bindings and failure reports to bounded sets of
//! API tasks. Everything that decides is in the pure modules; this file only moves events
//! between them and the API.
//!
//! The loop prefers watch events over scheduling (`biased` select), so the cluster view is as
//! fresh as the watches allow when a pod is decided. Scheduling starts once both watches have
//! delivered their first full list, and pauses while every binding or report slot is taken.

use std::collections::{HashMap, HashSet};
use std::pin::pin;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::{Id, JoinError, JoinSet};

use super::cache::{Cache, NodeChange};
use super::core::Algorithm;
use super::metrics::{Metrics, ERROR, SCHEDULED, UNSCHEDULABLE};
use super::model;
use super::queue::{QueueTiming, SchedulingQueue};
use super::SchedulerConfig;
use crate::events::{self, EventType, Recorder};
use crate::limits::SCHEDULER_FAILURE_REPORTS_IN_FLIGHT_MAX;

/// A pod waiting to be scheduled: what the API calls need to name it, and its scheduling
/// model.
#[derive(Debug)]
pub(super) struct Pending {
    key: String,
    namespace: String,
    name: String,
    uid: String,
    resource_version: String,
    /// The pod's PodScheduled condition as (status, reason, message), if it has one.
    scheduled_condition: Option<(String, String, String)>,
    pod: Arc<model::Pod>,
}

impl Pending {
    fn from_wire(key: String, pod: &Pod) -> Pending {
        let meta = &pod.metadata;
        let scheduled_condition = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .find(|c| c.type_ == "PodScheduled")
            .map(|c| {
                (
                    c.status.clone(),
                    c.reason.clone().unwrap_or_default(),
                    c.message.clone().unwrap_or_default(),
                )
            });
        Pending {
            key,
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            scheduled_condition,
            pod: Arc::new(model::Pod::from_wire(pod)),
        }
    }

    /// The pod as an event's `involvedObject`.
    fn reference(&self) -> ObjectReference {
        events::reference(&Pod {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                uid: Some(self.uid.clone()),
                resource_version: Some(self.resource_version.clone()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        })
    }
}

fn pod_key(pod: &Pod) -> Option<String> {
    let name = pod.metadata.name.as_deref()?;
    Some(format!("{}/{name}", pod.metadata.namespace.as_deref().unwrap_or("")))
}

/// How a binding task ended.
struct BindOutcome {
    pending: Arc<Pending>,
    node: String,
    /// When the attempt began (for the attempt duration).
    started: Instant,
    result: Result<(), kube::Error>,
}

/// Gauges set after every loop turn, resolved once.
struct Gauges {
    active: prometheus::IntGauge,
    backoff: prometheus::IntGauge,
    unschedulable: prometheus::IntGauge,
    nodes: prometheus::IntGauge,
    pods: prometheus::IntGauge,
    assumed: prometheus::IntGauge,
    binding: prometheus::IntGauge,
    reporting: prometheus::IntGauge,
}

impl Gauges {
    fn new(metrics: &Metrics) -> Gauges {
        let queue = |name: &str| metrics.pending_pods.with_label_values(&[name]);
        let cache = |name: &str| metrics.cache_size.with_label_values(&[name]);
        let operation = |name: &str| metrics.in_flight.with_label_values(&[name]);
        Gauges {
            active: queue("active"),
            backoff: queue("backoff"),
            unschedulable: queue("unschedulable"),
            nodes: cache("nodes"),
            pods: cache("pods"),
            assumed: cache("assumed_pods"),
            binding: operation("binding"),
            reporting: operation("report"),
        }
    }
}

pub(super) struct Driver {
    client: kube::Client,
    config: SchedulerConfig,
    recorder: Arc<Recorder>,
    metrics: Arc<Metrics>,
    gauges: Gauges,
    cache: Cache,
    queue: SchedulingQueue<Arc<Pending>>,
    algorithm: Algorithm,
    rng: StdRng,
    bindings: JoinSet<BindOutcome>,
    /// The pod each binding task binds, so a task that panicked still releases its pod.
    binding_keys: HashMap<Id, String>,
    reports: JoinSet<()>,
    /// Pending pods this run reported unschedulable, whose PodScheduled condition the binding
    /// must turn True even if the watch has not shown the False one yet. Bounded by the queue.
    reported: HashSet<String>,
    nodes_synced: bool,
    pods_synced: bool,
    /// Names and keys seen since a watch (re)started listing; the rest are gone.
    nodes_listed: Option<HashSet<String>>,
    pods_listed: Option<HashSet<String>>,
}

impl Driver {
    pub(super) fn new(
        client: kube::Client,
        config: SchedulerConfig,
        registry: &prometheus::Registry,
    ) -> Driver {
        let recorder =
            Arc::new(Recorder::new(client.clone(), &config.scheduler_name, &config.host, registry));
        let metrics = Arc::new(Metrics::register(registry, &config.scheduler_name));
        let timing = QueueTiming {
            backoff_initial: config.pod_backoff_initial,
            backoff_max: config.pod_backoff_max,
            unschedulable_max: config.unschedulable_max,
        };
        Driver {
            gauges: Gauges::new(&metrics),
            recorder,
            metrics,
            cache: Cache::new(),
            queue: SchedulingQueue::new(timing),
            algorithm: Algorithm::new(config.percentage_of_nodes_to_score),
            rng: StdRng::from_entropy(),
            bindings: JoinSet::new(),
            binding_keys: HashMap::new(),
            reports: JoinSet::new(),
            reported: HashSet::new(),
            nodes_synced: false,
            pods_synced: false,
            nodes_listed: None,
            pods_listed: None,
            client,
            config,
        }
    }

    /// Runs until `stop` is true (or its sender is gone), then stops every task it started.
    pub(super) async fn run(mut self, mut stop: watch::Receiver<bool>) {
        if *stop.borrow_and_update() {
            return;
        }
        let config = watcher::Config::default().any_semantic();
        let nodes = watcher(Api::<Node>::all(self.client.clone()), config.clone());
        let pods = watcher(Api::<Pod>::all(self.client.clone()), config);
        let mut nodes = pin!(nodes.default_backoff());
        let mut pods = pin!(pods.default_backoff());
        loop {
            self.publish_gauges();
            let deadline = self.queue.next_deadline();
            let wake = tokio::time::Instant::from_std(deadline.unwrap_or_else(Instant::now));
            tokio::select! {
                biased;
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break;
                    }
                }
                Some(event) = nodes.next() => self.on_node_event(event),
                Some(event) = pods.next() => self.on_pod_event(event),
                Some(done) = self.bindings.join_next_with_id(), if !self.bindings.is_empty() => {
                    self.on_bind_done(done);
                }
                Some(_) = self.reports.join_next(), if !self.reports.is_empty() => {}
                () = tokio::time::sleep_until(wake), if deadline.is_some() => {
                    self.queue.flush(Instant::now());
                }
                () = std::future::ready(()), if self.can_schedule() => self.schedule_one(),
            }
        }
        self.bindings.shutdown().await;
        self.reports.shutdown().await;
        tracing::info!(scheduler = %self.config.scheduler_name, "scheduler stopped");
    }

    fn can_schedule(&self) -> bool {
        self.nodes_synced
            && self.pods_synced
            && self.queue.lengths().active > 0
            && self.bindings.len() < self.config.bindings_in_flight_max
            && self.reports.len() < SCHEDULER_FAILURE_REPORTS_IN_FLIGHT_MAX
    }

    fn publish_gauges(&self) {
        let lengths = self.queue.lengths();
        let g = &self.gauges;
        g.active.set(lengths.active as i64);
        g.backoff.set(lengths.backoff as i64);
        g.unschedulable.set(lengths.unschedulable as i64);
        g.nodes.set(self.cache.nodes().len() as i64);
        g.pods.set(self.cache.pods_len() as i64);
        g.assumed.set(self.cache.assumed_len() as i64);
        g.binding.set(self.bindings.len() as i64);
        g.reporting.set(self.reports.len() as i64);
    }

    fn on_node_event(&mut self, event: Result<watcher::Event<Node>, watcher::Error>) {
        let now = Instant::now();
        match event {
            Err(error) => tracing::warn!(%error, "node watch failed; retrying"),
            Ok(watcher::Event::Init) => self.nodes_listed = Some(HashSet::new()),
            Ok(watcher::Event::InitApply(node)) => {
                if let (Some(listed), Some(name)) = (&mut self.nodes_listed, &node.metadata.name) {
                    listed.insert(name.clone());
                }
                self.apply_node(&node, now);
            }
            Ok(watcher::Event::InitDone) => {
                if let Some(listed) = self.nodes_listed.take() {
                    for name in self.cache.node_names() {
                        if !listed.contains(&name) {
                            self.cache.delete_node(&name);
                        }
                    }
                }
                self.nodes_synced = true;
            }
            Ok(watcher::Event::Apply(node)) => self.apply_node(&node, now),
            Ok(watcher::Event::Delete(node)) => {
                if let Some(name) = &node.metadata.name {
                    self.cache.delete_node(name);
                }
            }
        }
    }

    fn apply_node(&mut self, node: &Node, now: Instant) {
        match self.cache.apply_node(model::Node::from_wire(node)) {
            NodeChange::Added | NodeChange::Changed => self.queue.move_all(now),
            NodeChange::Unchanged => {}
        }
    }

    fn on_pod_event(&mut self, event: Result<watcher::Event<Pod>, watcher::Error>) {
        let now = Instant::now();
        match event {
            Err(error) => tracing::warn!(%error, "pod watch failed; retrying"),
            Ok(watcher::Event::Init) => self.pods_listed = Some(HashSet::new()),
            Ok(watcher::Event::InitApply(pod)) => {
                if let (Some(listed), Some(key)) = (&mut self.pods_listed, pod_key(&pod)) {
                    listed.insert(key);
                }
                self.apply_pod(&pod, now);
            }
            Ok(watcher::Event::InitDone) => {
                if let Some(listed) = self.pods_listed.take() {
                    let mut known = self.cache.pod_keys();
                    known.extend(self.queue.keys());
                    for key in known {
                        if !listed.contains(&key) {
                            self.delete_pod(&key, now);
                        }
                    }
                }
                self.pods_synced = true;
            }
            Ok(watcher::Event::Apply(pod)) => self.apply_pod(&pod, now),
            Ok(watcher::Event::Delete(pod)) => {
                if let Some(key) = pod_key(&pod) {
                    self.delete_pod(&key, now);
                }
            }
        }
    }

    fn delete_pod(&mut self, key: &str, now: Instant) {
        self.queue.delete(key);
        self.reported.remove(key);
        if self.cache.remove_pod(key) {
            self.queue.move_all(now);
        }
    }

    /// Whether this scheduler is the one named by the pod.
    fn responsible_for(&self, pod: &Pod) -> bool {
        let name = pod.spec.as_ref().and_then(|s| s.scheduler_name.as_deref()).unwrap_or("");
        name.is_empty() || name == self.config.scheduler_name
    }

    fn apply_pod(&mut self, pod: &Pod, now: Instant) {
        let Some(key) = pod_key(pod) else {
            return;
        };
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            // A finished pod holds nothing on its node any more.
            self.delete_pod(&key, now);
            return;
        }
        let spec = pod.spec.as_ref();
        if let Some(node) = spec.and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty()) {
            self.queue.delete(&key);
            self.reported.remove(&key);
            if self.cache.apply_bound_pod(&key, node, Arc::new(model::Pod::from_wire(pod))) {
                self.queue.move_all(now);
            }
            return;
        }
        if self.cache.is_assumed(&key) {
            // Its binding is on the way; the API has not caught up yet.
            return;
        }
        // A bound pod of this name was replaced by this unbound one (its deletion was missed
        // while a watch re-listed): it no longer holds its node.
        if self.cache.remove_pod(&key) {
            self.queue.move_all(now);
        }
        let gated = spec.and_then(|s| s.scheduling_gates.as_ref()).is_some_and(|g| !g.is_empty());
        let deleting = pod.metadata.deletion_timestamp.is_some();
        if gated || deleting || !self.responsible_for(pod) {
            self.queue.delete(&key);
            self.reported.remove(&key);
            return;
        }
        let pending = Arc::new(Pending::from_wire(key.clone(), pod));
        // Status-only updates (our own condition patches among them) change nothing that
        // scheduling reads and must not make an unschedulable pod retry.
        let changed = self.queue.get(&key).is_some_and(|old| old.pod != pending.pod);
        let priority = pending.pod.priority;
        self.queue.add(&key, pending, priority);
        if changed {
            self.queue.activate(&key, now);
        }
    }

    fn schedule_one(&mut self) {
        let now = Instant::now();
        let Some(popped) = self.queue.pop(now) else {
            return;
        };
        let pending = popped.item;
        let decision = self.algorithm.schedule(&pending.pod, self.cache.nodes(), &mut self.rng);
        self.metrics.algorithm_duration.observe(now.elapsed().as_secs_f64());
        match decision {
            Ok(index) => {
                let node = self.cache.nodes()[index].node.name.clone();
                self.cache.assume(&pending.key, &node, pending.pod.clone());
                let key = pending.key.clone();
                let was_reported = self.reported.remove(&key);
                let task = bind(
                    self.client.clone(),
                    self.recorder.clone(),
                    self.metrics.clone(),
                    pending,
                    node,
                    now,
                    was_reported,
                );
                let handle = self.bindings.spawn(task);
                self.binding_keys.insert(handle.id(), key);
            }
            Err(fit) => {
                let message = fit.to_string();
                tracing::debug!(pod = %pending.key, %message, "unschedulable");
                self.metrics.attempt(UNSCHEDULABLE, now.elapsed().as_secs_f64());
                self.queue.unschedulable(&pending.key, popped.cycle, now);
                self.reported.insert(pending.key.clone());
                let task = report_unschedulable(
                    self.client.clone(),
                    self.recorder.clone(),
                    pending,
                    message,
                );
                self.reports.spawn(task);
            }
        }
    }

    fn on_bind_done(&mut self, done: Result<(Id, BindOutcome), JoinError>) {
        let now = Instant::now();
        let outcome = match done {
            Ok((id, outcome)) => {
                self.binding_keys.remove(&id);
                outcome
            }
            Err(error) => {
                // Only a panic gets here (the set is never aborted while running).
                tracing::error!(%error, "binding task failed");
                if let Some(key) = self.binding_keys.remove(&error.id()) {
                    if self.cache.forget(&key) {
                        self.queue.move_all(now);
                    }
                    self.queue.backoff(&key, now);
                }
                return;
            }
        };
        let key = &outcome.pending.key;
        let seconds = outcome.started.elapsed().as_secs_f64();
        match outcome.result {
            Ok(()) => {
                self.metrics.attempt(SCHEDULED, seconds);
                self.queue.done(key);
            }
            Err(error) => {
                self.metrics.attempt(ERROR, seconds);
                tracing::warn!(pod = %key, node = %outcome.node, %error, "binding failed");
                if self.cache.forget(key) {
                    self.queue.move_all(now);
                }
                if matches!(&error, kube::Error::Api(status) if status.code == 404) {
                    self.queue.delete(key);
                    return;
                }
                self.queue.backoff(key, now);
                if self.reports.len() < SCHEDULER_FAILURE_REPORTS_IN_FLIGHT_MAX {
                    let recorder = self.recorder.clone();
                    let pending = outcome.pending.clone();
                    let message = format!("Binding rejected: {error}");
                    self.reports.spawn(async move {
                        let reference = pending.reference();
                        let warning = EventType::Warning;
                        recorder.record(&reference, warning, "FailedScheduling", &message).await;
                    });
                }
            }
        }
    }
}

/// Writes the binding, then the Scheduled event (and a True PodScheduled condition when an
/// earlier attempt set it False: `was_reported`, or the pod says so).
async fn bind(
    client: kube::Client,
    recorder: Arc<Recorder>,
    metrics: Arc<Metrics>,
    pending: Arc<Pending>,
    node: String,
    started: Instant,
    was_reported: bool,
) -> BindOutcome {
    let api: Api<Pod> = Api::namespaced(client, &pending.namespace);
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(pending.name.clone()),
            namespace: Some(pending.namespace.clone()),
            uid: Some(pending.uid.clone()),
            ..ObjectMeta::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.clone()),
            ..ObjectReference::default()
        },
    };
    let requested = Instant::now();
    let result = api
        .create_subresource::<_, serde_json::Value>(
            "binding",
            &pending.name,
            &PostParams::default(),
            &binding,
        )
        .await
        .map(drop);
    metrics.binding_duration.observe(requested.elapsed().as_secs_f64());
    if result.is_ok() {
        let message =
            format!("Successfully assigned {}/{} to {node}", pending.namespace, pending.name);
        recorder.record(&pending.reference(), EventType::Normal, "Scheduled", &message).await;
        // Kubernetes' binding sets PodScheduled True itself; ours does not, so a pod that
        // was reported unschedulable before gets it from here.
        let not_true = pending.scheduled_condition.as_ref().is_some_and(|(s, _, _)| s != "True");
        if was_reported || not_true {
            let condition = json!({"type": "PodScheduled", "status": "True", "reason": null,
                "message": null, "lastProbeTime": null, "lastTransitionTime": now()});
            patch_status(&api, &pending, json!({"status": {"conditions": [condition]}})).await;
        }
    }
    BindOutcome { pending, node, started, result }
}

/// Tells the pod's watchers why it waits: a FailedScheduling event, and a False PodScheduled
/// condition (written only when it says something new).
async fn report_unschedulable(
    client: kube::Client,
    recorder: Arc<Recorder>,
    pending: Arc<Pending>,
    message: String,
) {
    recorder.record(&pending.reference(), EventType::Warning, "FailedScheduling", &message).await;
    let mut condition = json!({"type": "PodScheduled", "status": "False",
        "reason": "Unschedulable", "message": message, "lastProbeTime": null});
    match &pending.scheduled_condition {
        Some((status, reason, old)) if status == "False" => {
            if reason == "Unschedulable" && *old == message {
                return;
            }
        }
        _ => condition["lastTransitionTime"] = json!(now()),
    }
    let api: Api<Pod> = Api::namespaced(client, &pending.namespace);
    patch_status(&api, &pending, json!({"status": {"conditions": [condition]}})).await;
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

async fn patch_status(api: &Api<Pod>, pending: &Pending, patch: serde_json::Value) {
    let params = PatchParams::default();
    if let Err(error) = api.patch_status(&pending.name, &params, &Patch::Strategic(patch)).await {
        tracing::warn!(pod = %pending.key, %error, "cannot update the PodScheduled condition");
    }
}
