//! The node lifecycle controller: watches every node's heartbeat, marks nodes whose kubelet
//! went silent Unknown, taints nodes by their conditions and evicts pods from nodes with
//! NoExecute taints they do not tolerate, as Kubernetes' node lifecycle and taint eviction
//! controllers do.
//!
//! - Health: a node's heartbeat is the newer of its Lease's `renewTime` (in `kube-node-lease`)
//!   and its Ready condition's `lastHeartbeatTime`. As in Kubernetes, a heartbeat is timed by
//!   when this controller saw it change, not by the timestamp written in it: clock skew between
//!   a node and the control plane cannot make the node look dead, and a newly elected
//!   controller gives every node a full grace period. A node silent for longer than
//!   `node_monitor_grace_period` gets its Ready, MemoryPressure, DiskPressure and PIDPressure
//!   conditions set to Unknown ("Kubelet stopped posting node status.").
//! - Taints: NoSchedule taints mirror the conditions (Kubernetes' TaintNodesByCondition, plus
//!   `unschedulable` for cordoned nodes). Ready False adds `node.kubernetes.io/not-ready` and
//!   Ready Unknown `node.kubernetes.io/unreachable`, both NoExecute with `timeAdded`; Ready True
//!   removes them. New NoExecute taints are rate-limited per zone (`--node-eviction-rate`,
//!   slower or stopped while much of a zone is down), and when every node is down the
//!   controller assumes the fault is on its side ("master disruption mode"): it removes those
//!   taints and adds none until some node is Ready again.
//! - Eviction: a pod on a node with a NoExecute taint it does not tolerate is deleted at once;
//!   one tolerating it for `tolerationSeconds` is deleted that long after the taint's
//!   `timeAdded`. Pods without a toleration for not-ready or unreachable count as tolerating
//!   them for `default_not_ready_toleration`, as Kubernetes' DefaultTolerationSeconds
//!   admission would have given them.
//! - Pods on an Unknown node are marked not Ready (Kubernetes' MarkPodsNotReady), so endpoints
//!   stop sending them traffic while the node may still be running them.
//!
//! One loop drives it all: a pass over every node runs on a ticker (Kubernetes' node monitor
//! period), at the next deadline it knows of (a heartbeat running out, an eviction falling
//! due) and shortly after any change to nodes, Leases or pods. Node writes carry the
//! resourceVersion they were computed from, so a decision taken on a stale cache fails with a
//! conflict and is taken again on the next pass; nothing is written that did not change.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, PodCondition, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;
use tokio::sync::{watch, Notify};

use super::Context;
use crate::events::{reference, EventType};
use crate::limits::{
    CONTROLLER_CACHE_SYNC_TIMEOUT_MS, NODE_EVICTION_RATE_PER_SECOND,
    NODE_LARGE_CLUSTER_SIZE_THRESHOLD, NODE_LIFECYCLE_PASS_INTERVAL_MIN_MS,
    NODE_LIFECYCLE_RETRY_MS, NODE_LIFECYCLE_WRITES_IN_FLIGHT, NODE_MONITOR_PERIOD_MS,
    NODE_SECONDARY_EVICTION_RATE_PER_SECOND, NODE_UNHEALTHY_ZONE_THRESHOLD_PERCENT,
};

const NAME: &str = "nodelifecycle";
/// Where node agents keep their Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// Taints Kubernetes' controllers put on nodes, and their effects.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const TAINT_MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const TAINT_DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const TAINT_PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
pub const TAINT_NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";
pub const NO_SCHEDULE: &str = "NoSchedule";
pub const NO_EXECUTE: &str = "NoExecute";

/// Nodes carrying this label are left out of zone health (Kubernetes' label of that name).
const EXCLUDE_DISRUPTION_LABEL: &str = "node.kubernetes.io/exclude-disruption";
/// The conditions a silent node's kubelet can no longer vouch for. NetworkUnavailable is left
/// alone: the network's own controller owns it.
const MONITORED_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];
/// Keys of the NoSchedule taints that mirror conditions.
const CONDITION_TAINT_KEYS: [&str; 6] = [
    TAINT_NOT_READY,
    TAINT_UNREACHABLE,
    TAINT_MEMORY_PRESSURE,
    TAINT_DISK_PRESSURE,
    TAINT_NETWORK_UNAVAILABLE,
    TAINT_PID_PRESSURE,
];

// ---- Pure rules (unit-tested) ----

/// Kubernetes' `Toleration.ToleratesTaint`: an empty effect or key matches any, `Exists`
/// ignores the value, `Equal` (or no operator) needs the same value.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("") {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        "Exists" => true,
        _ => false,
    }
}

/// The first of the `taints` that `filter` selects and none of the `tolerations` tolerates
/// (Kubernetes' `FindMatchingUntoleratedTaint`).
pub fn untolerated_taint<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    filter: impl Fn(&Taint) -> bool,
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|taint| filter(taint))
        .find(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
}

fn find_condition<'a>(conditions: &'a [NodeCondition], kind: &str) -> Option<&'a NodeCondition> {
    conditions.iter().find(|c| c.type_ == kind)
}

/// The status of the Ready condition; a node that never reported one counts as Unknown.
pub fn ready_status(conditions: &[NodeCondition]) -> &str {
    find_condition(conditions, "Ready").map_or("Unknown", |c| c.status.as_str())
}

/// The node's latest heartbeat: the newer of its Lease's renewal and its Ready condition's
/// `lastHeartbeatTime`.
pub fn heartbeat(node: &Node, lease: Option<&Lease>) -> Option<Timestamp> {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or(&[]);
    let posted = find_condition(conditions, "Ready")
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| t.0);
    let renewed = lease.and_then(|l| l.spec.as_ref()?.renew_time.as_ref()).map(|t| t.0);
    posted.max(renewed)
}

/// The last heartbeat seen from a node, and when this controller first saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub heartbeat: Option<Timestamp>,
    pub observed: Instant,
}

/// The probe after looking at the node again at `now`: a newer heartbeat restarts the clock; an
/// unchanged (or older, which is a clock error) one does not. A node seen for the first time
/// starts its clock now.
pub fn observe(previous: Option<&Probe>, heartbeat: Option<Timestamp>, now: Instant) -> Probe {
    match previous {
        Some(probe) if probe.heartbeat >= heartbeat => *probe,
        _ => Probe { heartbeat, observed: now },
    }
}

/// Whether no heartbeat came for longer than `grace`.
pub fn is_silent(probe: &Probe, now: Instant, grace: Duration) -> bool {
    now.saturating_duration_since(probe.observed) > grace
}

/// A silent node's conditions: the monitored ones become Unknown (keeping their last heartbeat),
/// and the ones its kubelet never posted are added as Unknown, as Kubernetes words them.
pub fn silent_node_conditions(
    conditions: &[NodeCondition],
    created: Option<&Time>,
    now: &Time,
) -> Vec<NodeCondition> {
    let mut updated = conditions.to_vec();
    for kind in MONITORED_CONDITIONS {
        match updated.iter_mut().find(|c| c.type_ == kind) {
            None => updated.push(NodeCondition {
                type_: kind.into(),
                status: "Unknown".into(),
                reason: Some("NodeStatusNeverUpdated".into()),
                message: Some("Kubelet never posted node status.".into()),
                last_heartbeat_time: created.cloned(),
                last_transition_time: Some(now.clone()),
            }),
            Some(condition) if condition.status != "Unknown" => {
                condition.status = "Unknown".into();
                condition.reason = Some("NodeStatusUnknown".into());
                condition.message = Some("Kubelet stopped posting node status.".into());
                condition.last_transition_time = Some(now.clone());
            }
            Some(_) => {}
        }
    }
    updated
}

/// The NoSchedule taint a condition calls for (Kubernetes' nodeConditionToTaintKeyStatusMap).
fn condition_taint_key(kind: &str, status: &str) -> Option<&'static str> {
    match (kind, status) {
        ("Ready", "False") => Some(TAINT_NOT_READY),
        ("Ready", "Unknown") => Some(TAINT_UNREACHABLE),
        ("MemoryPressure", "True") => Some(TAINT_MEMORY_PRESSURE),
        ("DiskPressure", "True") => Some(TAINT_DISK_PRESSURE),
        ("NetworkUnavailable", "True") => Some(TAINT_NETWORK_UNAVAILABLE),
        ("PIDPressure", "True") => Some(TAINT_PID_PRESSURE),
        _ => None,
    }
}

/// The NoExecute taints this controller owns (not-ready, unreachable).
fn is_readiness_taint(taint: &Taint) -> bool {
    taint.effect == NO_EXECUTE && (taint.key == TAINT_NOT_READY || taint.key == TAINT_UNREACHABLE)
}

/// Taints this controller owns; every other taint is the user's and left alone.
fn is_controller_taint(taint: &Taint) -> bool {
    let condition_taint = taint.effect == NO_SCHEDULE
        && (taint.key == TAINT_UNSCHEDULABLE || CONDITION_TAINT_KEYS.contains(&taint.key.as_str()));
    condition_taint || is_readiness_taint(taint)
}

/// Whether the node carries the not-ready or unreachable NoExecute taint.
pub fn has_readiness_taint(taints: &[Taint]) -> bool {
    taints.iter().any(is_readiness_taint)
}

/// The NoExecute taint a node's Ready status calls for.
pub fn wanted_readiness_taint(ready: &str) -> Option<&'static str> {
    match ready {
        "True" => None,
        "False" => Some(TAINT_NOT_READY),
        _ => Some(TAINT_UNREACHABLE),
    }
}

/// The node's taints with this controller's brought up to date: NoSchedule taints for the
/// `conditions` (and `unschedulable`), and `readiness` (the one NoExecute taint wanted, if
/// any). Other taints are kept in place, and taints already there keep their `timeAdded`; a
/// new NoExecute taint is stamped `now`.
pub fn reconciled_taints(
    current: &[Taint],
    conditions: &[NodeCondition],
    unschedulable: bool,
    readiness: Option<&str>,
    now: &Time,
) -> Vec<Taint> {
    let mut wanted: Vec<(&str, &str)> = conditions
        .iter()
        .filter_map(|c| condition_taint_key(&c.type_, &c.status))
        .map(|key| (key, NO_SCHEDULE))
        .collect();
    if unschedulable {
        wanted.push((TAINT_UNSCHEDULABLE, NO_SCHEDULE));
    }
    if let Some(key) = readiness {
        wanted.push((key, NO_EXECUTE));
    }
    let mut taints: Vec<Taint> = current
        .iter()
        .filter(|t| {
            !is_controller_taint(t) || wanted.contains(&(t.key.as_str(), t.effect.as_str()))
        })
        .cloned()
        .collect();
    for (key, effect) in wanted {
        if !taints.iter().any(|t| t.key == key && t.effect == effect) {
            taints.push(Taint {
                key: key.into(),
                effect: effect.into(),
                value: None,
                time_added: (effect == NO_EXECUTE).then(|| now.clone()),
            });
        }
    }
    taints
}

/// A node's zone as Kubernetes keys it: region and zone labels, empty when it has neither.
pub fn zone_of(node: &Node) -> String {
    let labels = node.metadata.labels.as_ref();
    let label = |names: [&str; 2]| {
        names.iter().find_map(|n| labels.and_then(|l| l.get(*n)).cloned()).unwrap_or_default()
    };
    let region =
        label(["topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region"]);
    let zone = label(["topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone"]);
    if region.is_empty() && zone.is_empty() {
        String::new()
    } else {
        format!("{region}:\x00:{zone}")
    }
}

/// How healthy a zone is, which sets how fast its nodes may be tainted for eviction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneState {
    Normal,
    /// More than two nodes and at least the unhealthy threshold of them not Ready.
    PartialDisruption,
    /// No node Ready.
    FullDisruption,
}

/// Kubernetes' ComputeZoneState.
pub fn zone_state(ready: usize, not_ready: usize) -> ZoneState {
    let total = ready + not_ready;
    if ready == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2 && not_ready * 100 >= total * NODE_UNHEALTHY_ZONE_THRESHOLD_PERCENT {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// NoExecute taints per second a zone may receive: the normal rate, or while partially
/// disrupted the secondary rate in a large zone and none in a small one. A fully disrupted
/// zone keeps the normal rate; only the whole cluster being down stops tainting.
pub fn zone_taint_rate(state: ZoneState, zone_size: usize) -> f64 {
    match state {
        ZoneState::Normal | ZoneState::FullDisruption => NODE_EVICTION_RATE_PER_SECOND,
        ZoneState::PartialDisruption if zone_size > NODE_LARGE_CLUSTER_SIZE_THRESHOLD => {
            NODE_SECONDARY_EVICTION_RATE_PER_SECOND
        }
        ZoneState::PartialDisruption => 0.0,
    }
}

/// A token bucket holding at most one token (Kubernetes' eviction limiter has burst 1).
#[derive(Clone, Debug)]
pub struct TokenBucket {
    per_second: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket refilling at `per_second`.
    pub fn new(per_second: f64, now: Instant) -> TokenBucket {
        TokenBucket { per_second, tokens: 1.0, at: now }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(1.0);
        self.at = now;
    }

    /// Changes the rate, keeping what the bucket holds (a drained bucket stays drained).
    pub fn set_rate(&mut self, per_second: f64, now: Instant) {
        self.refill(now);
        self.per_second = per_second;
    }

    /// Takes a token if there is one; at rate zero there never is (Kubernetes swaps in a
    /// never-accepting limiter).
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.per_second > 0.0 && self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// When the next token will be there; never at rate zero.
    pub fn next_token(&self) -> Option<Instant> {
        if self.per_second <= 0.0 {
            return None;
        }
        let wait = ((1.0 - self.tokens).max(0.0) / self.per_second).min(86_400.0);
        Some(self.at + Duration::from_secs_f64(wait))
    }
}

/// The pod's tolerations with what Kubernetes' DefaultTolerationSeconds admission adds: the
/// not-ready and unreachable NoExecute taints tolerated for `seconds`, unless the pod already
/// tolerates that key (or every key) with that effect (or every effect).
pub fn with_default_tolerations(tolerations: &[Toleration], seconds: i64) -> Vec<Toleration> {
    let mut all = tolerations.to_vec();
    for key in [TAINT_NOT_READY, TAINT_UNREACHABLE] {
        let covered = tolerations.iter().any(|t| {
            matches!(t.key.as_deref(), None | Some("")) || t.key.as_deref() == Some(key)
        } && matches!(t.effect.as_deref(), None | Some("") | Some(NO_EXECUTE)));
        if !covered {
            all.push(Toleration {
                key: Some(key.into()),
                operator: Some("Exists".into()),
                effect: Some(NO_EXECUTE.into()),
                toleration_seconds: Some(seconds),
                value: None,
            });
        }
    }
    all
}

/// When a pod has to leave its node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eviction {
    Never,
    Now,
    At(Timestamp),
}

/// When a pod with `tolerations` must leave a node with `taints`: at once if some NoExecute
/// taint is not tolerated; otherwise at the earliest `timeAdded + tolerationSeconds` over the
/// tolerations used (the first matching one per taint, as Kubernetes picks); never if they
/// all tolerate forever. A taint without `timeAdded` counts from `now`.
pub fn eviction(tolerations: &[Toleration], taints: &[Taint], now: Timestamp) -> Eviction {
    let mut due: Option<Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == NO_EXECUTE) {
        let Some(toleration) = tolerations.iter().find(|t| tolerates(t, taint)) else {
            return Eviction::Now;
        };
        let Some(seconds) = toleration.toleration_seconds else { continue };
        let added = taint.time_added.as_ref().map_or(now, |t| t.0);
        let at = added.checked_add(SignedDuration::from_secs(seconds.max(0))).unwrap_or(added);
        due = Some(due.map_or(at, |d| d.min(at)));
    }
    match due {
        None => Eviction::Never,
        Some(at) if at <= now => Eviction::Now,
        Some(at) => Eviction::At(at),
    }
}

/// The pod's conditions with Ready turned False, if it is not False already (Kubernetes'
/// MarkPodsNotReady leaves pods without a Ready condition alone).
pub fn not_ready_conditions(pod: &Pod, now: &Time) -> Option<Vec<PodCondition>> {
    let mut conditions = pod.status.as_ref()?.conditions.clone()?;
    let ready = conditions.iter_mut().find(|c| c.type_ == "Ready")?;
    if ready.status == "False" {
        return None;
    }
    ready.status = "False".into();
    ready.last_transition_time = Some(now.clone());
    Some(conditions)
}

/// The pod's conditions with the DisruptionTarget condition the taint manager sets before
/// deleting a pod, if it is not there yet.
pub fn disruption_conditions(pod: &Pod, now: &Time) -> Option<Vec<PodCondition>> {
    let mut conditions = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let reason = "DeletionByTaintManager";
    if conditions.iter().any(|c| {
        c.type_ == "DisruptionTarget" && c.status == "True" && c.reason.as_deref() == Some(reason)
    }) {
        return None;
    }
    conditions.retain(|c| c.type_ != "DisruptionTarget");
    conditions.push(PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some("Taint manager: deleting due to NoExecute taint".into()),
        last_transition_time: Some(now.clone()),
        ..PodCondition::default()
    });
    Some(conditions)
}

// ---- Driver ----

/// Runs the controller until `stop` turns true.
pub async fn run(context: Arc<Context>, stop: watch::Receiver<bool>) {
    let client = context.client.clone();
    let changed = Arc::new(Notify::new());
    let (nodes, node_writer) = reflector::store::<Node>();
    let (leases, lease_writer) = reflector::store::<Lease>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let config = watcher::Config::default();
    let node_api = Api::<Node>::all(client.clone());
    let lease_api = Api::<Lease>::namespaced(client.clone(), NODE_LEASE_NAMESPACE);
    let _feeds = [
        feed(reflector::reflector(node_writer, watcher(node_api, config.clone())), &changed),
        feed(reflector::reflector(lease_writer, watcher(lease_api, config.clone())), &changed),
        feed(reflector::reflector(pod_writer, watcher(Api::<Pod>::all(client), config)), &changed),
    ];
    let mut monitor = Monitor {
        context,
        nodes,
        leases,
        pods,
        probes: HashMap::new(),
        zones: HashMap::new(),
        master_disruption: false,
        untimed_taints: HashMap::new(),
        scheduled: HashMap::new(),
        evicted: HashSet::new(),
        readiness: HashMap::new(),
    };
    monitor.watch(changed, stop).await;
}

/// Resolves once the three caches hold their first listing.
async fn loaded(nodes: Store<Node>, leases: Store<Lease>, pods: Store<Pod>) {
    let _ = nodes.wait_until_ready().await;
    let _ = leases.wait_until_ready().await;
    let _ = pods.wait_until_ready().await;
}

/// A task aborted when dropped, so a controller dropped without being stopped leaves no
/// watch running.
struct Task(tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Keeps a reflector's cache current in its own task and signals `changed` on every event.
fn feed<K, S>(events: S, changed: &Arc<Notify>) -> Task
where
    K: Send + 'static,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    let changed = changed.clone();
    Task(tokio::spawn(async move {
        let events = events.default_backoff();
        futures::pin_mut!(events);
        while let Some(event) = events.next().await {
            match event {
                Ok(_) => changed.notify_one(),
                Err(error) => tracing::debug!(%error, "node lifecycle watch failed; retrying"),
            }
        }
    }))
}

/// A zone's health and its limiter for new NoExecute taints.
struct Zone {
    state: ZoneState,
    bucket: TokenBucket,
}

/// A pod due for eviction later.
struct Scheduled {
    namespace: String,
    name: String,
    at: Timestamp,
}

struct Monitor {
    context: Arc<Context>,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
    /// By node name.
    probes: HashMap<String, Probe>,
    zones: HashMap<String, Zone>,
    /// Every zone fully disrupted: no node is tainted for eviction.
    master_disruption: bool,
    /// When NoExecute taints written without `timeAdded` were first seen, by (node, key,
    /// value, effect).
    untimed_taints: HashMap<(String, String, String, String), Timestamp>,
    /// Pending evictions, by pod uid.
    scheduled: HashMap<String, Scheduled>,
    /// Pods deleted and not yet gone from the cache, by uid.
    evicted: HashSet<String>,
    /// The Ready status last seen per node, to notice a node leaving Ready.
    readiness: HashMap<String, String>,
}

/// One node during a pass: what it is and what it should be.
struct NodeView {
    node: Arc<Node>,
    name: String,
    zone: String,
    observed: Instant,
    conditions: Vec<NodeCondition>,
    taints: Vec<Taint>,
    ready: String,
}

impl NodeView {
    fn current_conditions(&self) -> &[NodeCondition] {
        self.node.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or(&[])
    }

    fn current_taints(&self) -> &[Taint] {
        self.node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or(&[])
    }
}

/// A write to a pod a pass decided on.
enum PodWrite {
    NotReady(Arc<Pod>, Vec<PodCondition>),
    Evict(Arc<Pod>),
}

impl Monitor {
    async fn watch(&mut self, changed: Arc<Notify>, stop: watch::Receiver<bool>) {
        let stopped = super::stopped(stop);
        tokio::pin!(stopped);
        loop {
            let ready = loaded(self.nodes.clone(), self.leases.clone(), self.pods.clone());
            let timeout = Duration::from_millis(CONTROLLER_CACHE_SYNC_TIMEOUT_MS);
            tokio::select! {
                _ = &mut stopped => return,
                loaded = tokio::time::timeout(timeout, ready) => if loaded.is_ok() { break },
            }
            tracing::warn!("node lifecycle controller still waiting for its caches");
        }
        let spacing = Duration::from_millis(NODE_LIFECYCLE_PASS_INTERVAL_MIN_MS);
        let mut next = Instant::now();
        let mut last_pass = Instant::now();
        loop {
            tokio::select! {
                _ = &mut stopped => return,
                _ = changed.clone().notified_owned() => next = next.min(last_pass + spacing),
                _ = tokio::time::sleep_until(next.into()) => {
                    let started = Instant::now();
                    let (wake, ok) = tokio::select! {
                        _ = &mut stopped => return,
                        outcome = self.pass() => outcome,
                    };
                    let seconds = started.elapsed().as_secs_f64();
                    self.context.metrics.observe(NAME, ok, seconds);
                    last_pass = Instant::now();
                    next = wake.max(last_pass + spacing);
                }
            }
        }
    }

    /// One look at every node; returns when to look again and whether every write went
    /// through.
    async fn pass(&mut self) -> (Instant, bool) {
        let now_instant = Instant::now();
        let now = Time(Timestamp::now());
        let mut wake = now_instant + Duration::from_millis(NODE_MONITOR_PERIOD_MS);
        let mut views = self.look(now_instant, &now, &mut wake);
        self.update_zones(&views, now_instant);
        let waiting = self.plan_taints(&mut views, now_instant, &now);
        if waiting {
            let tokens = self.zones.values().filter_map(|z| z.bucket.next_token());
            if let Some(token) = tokens.min() {
                wake = wake.min(token);
            }
        }
        let mut ok = self.write_nodes(&mut views).await;
        ok &= self.handle_pods(&views, &now, &mut wake).await;
        if !ok {
            wake = wake.min(now_instant + Duration::from_millis(NODE_LIFECYCLE_RETRY_MS));
        }
        (wake, ok)
    }

    /// Reads every node's heartbeat and decides its conditions.
    fn look(&mut self, now_instant: Instant, now: &Time, wake: &mut Instant) -> Vec<NodeView> {
        let grace = self.context.config.node_monitor_grace_period;
        let mut views = Vec::new();
        for node in self.nodes.state() {
            let name = node.metadata.name.clone().unwrap_or_default();
            let lease = self.leases.get(&ObjectRef::new(&name).within(NODE_LEASE_NAMESPACE));
            let beat = heartbeat(&node, lease.as_deref());
            let probe = observe(self.probes.get(&name), beat, now_instant);
            self.probes.insert(name.clone(), probe);
            let current =
                node.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
            let conditions = if is_silent(&probe, now_instant, grace) {
                let created = node.metadata.creation_timestamp.as_ref();
                silent_node_conditions(&current, created, now)
            } else {
                // Look again just after the heartbeat would run out.
                *wake = (*wake).min(probe.observed + grace + Duration::from_millis(1));
                current
            };
            let ready = ready_status(&conditions).to_string();
            views.push(NodeView {
                zone: zone_of(&node),
                observed: probe.observed,
                taints: Vec::new(),
                node,
                name,
                conditions,
                ready,
            });
        }
        let present: HashSet<&str> = views.iter().map(|v| v.name.as_str()).collect();
        self.probes.retain(|name, _| present.contains(name.as_str()));
        self.readiness.retain(|name, _| present.contains(name.as_str()));
        views
    }

    /// Recomputes each zone's state and eviction rate; enters or leaves master disruption mode.
    fn update_zones(&mut self, views: &[NodeView], now: Instant) {
        let mut counts: HashMap<&str, (usize, usize)> = HashMap::new();
        for view in views {
            let entry = counts.entry(view.zone.as_str()).or_default();
            let excluded = view
                .node
                .metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(EXCLUDE_DISRUPTION_LABEL));
            if excluded {
                continue;
            }
            if view.ready == "True" {
                entry.0 += 1;
            } else {
                entry.1 += 1;
            }
        }
        let states: HashMap<&str, ZoneState> = counts
            .iter()
            .filter(|(_, (ready, not_ready))| ready + not_ready > 0)
            .map(|(zone, (ready, not_ready))| (*zone, zone_state(*ready, *not_ready)))
            .collect();
        let all_down =
            !states.is_empty() && states.values().all(|s| *s == ZoneState::FullDisruption);
        if all_down && !self.master_disruption {
            tracing::warn!("no node is Ready: entering master disruption mode, evicting nothing");
        }
        if !all_down && self.master_disruption {
            tracing::info!("some node is Ready again: leaving master disruption mode");
            // Every node gets a fresh grace period: their silence may have been ours.
            for probe in self.probes.values_mut() {
                probe.observed = now;
            }
        }
        self.master_disruption = all_down;
        self.zones.retain(|zone, _| counts.contains_key(zone.as_str()));
        for (zone, (ready, not_ready)) in counts {
            let state = states.get(zone).copied().unwrap_or(ZoneState::Normal);
            let rate = zone_taint_rate(state, ready + not_ready);
            let entry = self
                .zones
                .entry(zone.to_string())
                .or_insert_with(|| Zone { state, bucket: TokenBucket::new(rate, now) });
            if entry.state != state {
                tracing::info!(zone, ?state, "zone changed state");
            }
            entry.state = state;
            entry.bucket.set_rate(rate, now);
        }
    }

    /// Decides each node's taints; returns whether some node waits for its zone's limiter.
    fn plan_taints(&mut self, views: &mut [NodeView], now_instant: Instant, now: &Time) -> bool {
        // The longest silent are tainted first when the limiter has to choose.
        views.sort_by(|a, b| a.observed.cmp(&b.observed).then_with(|| a.name.cmp(&b.name)));
        let mut waiting = false;
        for view in views.iter_mut() {
            let current = view.current_taints().to_vec();
            let wanted = match self.master_disruption {
                true => None,
                false => wanted_readiness_taint(&view.ready),
            };
            // Swapping one readiness taint for the other is not a new eviction decision.
            let readiness = match wanted {
                Some(key) if !has_readiness_taint(&current) => {
                    let zone = self.zones.get_mut(&view.zone);
                    if zone.is_some_and(|z| z.bucket.try_take(now_instant)) {
                        Some(key)
                    } else {
                        waiting = true;
                        None
                    }
                }
                other => other,
            };
            let unschedulable =
                view.node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
            view.taints =
                reconciled_taints(&current, &view.conditions, unschedulable, readiness, now);
        }
        waiting
    }

    /// Writes the conditions and taints that changed; afterwards each view's node is the
    /// latest known. Returns whether every write went through.
    async fn write_nodes(&mut self, views: &mut [NodeView]) -> bool {
        // Collected first: a lazy iterator's closures held across the await below would
        // trip the compiler's `Send` check (rust-lang/rust#64552).
        let writes: Vec<_> = views
            .iter()
            .enumerate()
            .filter_map(|(index, view)| {
                let conditions =
                    (view.conditions != view.current_conditions()).then(|| view.conditions.clone());
                let taints = (view.taints != view.current_taints()).then(|| view.taints.clone());
                if conditions.is_none() && taints.is_none() {
                    return None;
                }
                let context = self.context.clone();
                let node = view.node.clone();
                Some(async move { (index, write_node(&context, &node, conditions, taints).await) })
            })
            .collect();
        let results: Vec<(usize, Result<Node, kube::Error>)> = futures::stream::iter(writes)
            .buffer_unordered(NODE_LIFECYCLE_WRITES_IN_FLIGHT)
            .collect()
            .await;
        let mut ok = true;
        for (index, result) in results {
            let view = &mut views[index];
            match result {
                Ok(node) => view.node = Arc::new(node),
                Err(error) => {
                    ok = false;
                    tracing::debug!(node = %view.name, %error, "cannot update node");
                }
            }
        }
        // From here on a view describes the node as the API has it.
        for view in views.iter_mut() {
            view.conditions = view.current_conditions().to_vec();
            view.taints = view.current_taints().to_vec();
            view.ready = ready_status(&view.conditions).to_string();
        }
        ok
    }

    /// Marks pods on nodes that left Ready not ready, and evicts pods whose NoExecute taints
    /// ran out. Returns whether every write went through.
    async fn handle_pods(&mut self, views: &[NodeView], now: &Time, wake: &mut Instant) -> bool {
        let all_pods = self.pods.state();
        let present: HashSet<&str> =
            all_pods.iter().filter_map(|p| p.metadata.uid.as_deref()).collect();
        self.evicted.retain(|uid| present.contains(uid.as_str()));
        let mut by_node: HashMap<&str, Vec<&Arc<Pod>>> = HashMap::new();
        for pod in &all_pods {
            let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("");
            if !node.is_empty() && pod.metadata.deletion_timestamp.is_none() {
                by_node.entry(node).or_default().push(pod);
            }
        }
        let default_seconds =
            i64::try_from(self.context.config.default_not_ready_toleration.as_secs())
                .unwrap_or(i64::MAX);
        let mut writes = Vec::new();
        let mut scheduled = HashMap::new();
        let mut untimed = HashMap::new();
        let mut left_ready = Vec::new();
        for view in views {
            let previous = self.readiness.insert(view.name.clone(), view.ready.clone());
            let leaving_ready = previous.as_deref() == Some("True") && view.ready != "True";
            if leaving_ready {
                left_ready.push(view.node.clone());
            }
            let mark_not_ready = view.ready == "Unknown" || leaving_ready;
            let taints = self.timed_taints(view, now, &mut untimed);
            for pod in by_node.get(view.name.as_str()).into_iter().flatten() {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if self.evicted.contains(&uid) {
                    continue;
                }
                let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.as_deref());
                let tolerations =
                    with_default_tolerations(tolerations.unwrap_or(&[]), default_seconds);
                match eviction(&tolerations, &taints, now.0) {
                    Eviction::Now => {
                        writes.push(PodWrite::Evict((*pod).clone()));
                        continue;
                    }
                    Eviction::At(at) => {
                        let ahead = at.duration_since(Timestamp::now());
                        let ahead = Duration::try_from(ahead).unwrap_or_default();
                        *wake = (*wake).min(Instant::now() + ahead);
                        let (namespace, name) = namespace_and_name(pod);
                        scheduled.insert(uid, Scheduled { namespace, name, at });
                    }
                    Eviction::Never => {}
                }
                if mark_not_ready {
                    if let Some(conditions) = not_ready_conditions(pod, now) {
                        writes.push(PodWrite::NotReady((*pod).clone(), conditions));
                    }
                }
            }
        }
        self.untimed_taints = untimed;
        let cancelled = self.reschedule(scheduled, &present, &writes);
        let context = self.context.clone();
        for node in &left_ready {
            let message = format!(
                "Node {} status is now: NodeNotReady",
                node.metadata.name.as_deref().unwrap_or("")
            );
            context
                .recorder
                .record(&reference(node.as_ref()), EventType::Normal, "NodeNotReady", &message)
                .await;
        }
        for (namespace, name) in cancelled {
            let message = format!("Cancelling deletion of Pod {namespace}/{name}");
            let object = k8s_openapi::api::core::v1::ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                namespace: Some(namespace),
                name: Some(name),
                ..Default::default()
            };
            context
                .recorder
                .record(&object, EventType::Normal, "TaintManagerEviction", &message)
                .await;
        }
        let writes: Vec<_> = writes.into_iter().map(|w| write_pod(&context, w, now)).collect();
        let results: Vec<(Option<String>, bool)> = futures::stream::iter(writes)
            .buffer_unordered(NODE_LIFECYCLE_WRITES_IN_FLIGHT)
            .collect()
            .await;
        let mut ok = true;
        for (evicted, done) in results {
            ok &= done;
            if let Some(uid) = evicted {
                self.evicted.insert(uid);
            }
        }
        ok
    }

    /// The node's NoExecute taints, each with a `timeAdded`: taints written without one count
    /// from when this controller first saw them.
    fn timed_taints(
        &self,
        view: &NodeView,
        now: &Time,
        untimed: &mut HashMap<(String, String, String, String), Timestamp>,
    ) -> Vec<Taint> {
        let mut taints: Vec<Taint> =
            view.taints.iter().filter(|t| t.effect == NO_EXECUTE).cloned().collect();
        for taint in taints.iter_mut().filter(|t| t.time_added.is_none()) {
            let key = (
                view.name.clone(),
                taint.key.clone(),
                taint.value.clone().unwrap_or_default(),
                taint.effect.clone(),
            );
            let seen = self.untimed_taints.get(&key).copied().unwrap_or(now.0);
            untimed.insert(key, seen);
            taint.time_added = Some(Time(seen));
        }
        taints
    }

    /// Replaces the pending evictions; returns the pods (namespace, name) whose eviction was
    /// called off while they still exist.
    fn reschedule(
        &mut self,
        scheduled: HashMap<String, Scheduled>,
        present: &HashSet<&str>,
        writes: &[PodWrite],
    ) -> Vec<(String, String)> {
        let evicting: HashSet<&str> = writes
            .iter()
            .filter_map(|w| match w {
                PodWrite::Evict(pod) => pod.metadata.uid.as_deref(),
                PodWrite::NotReady(..) => None,
            })
            .collect();
        let previous = std::mem::replace(&mut self.scheduled, scheduled);
        previous
            .into_iter()
            .filter(|(uid, _)| {
                !self.scheduled.contains_key(uid)
                    && !evicting.contains(uid.as_str())
                    && present.contains(uid.as_str())
            })
            .map(|(_, s)| {
                tracing::debug!(pod = %s.name, at = %s.at, "eviction called off");
                (s.namespace, s.name)
            })
            .collect()
    }
}

fn namespace_and_name(pod: &Pod) -> (String, String) {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

/// Writes a node's conditions, then its taints, each conditional on the resourceVersion the
/// decision was made on; returns the node as written.
async fn write_node(
    context: &Context,
    node: &Node,
    conditions: Option<Vec<NodeCondition>>,
    taints: Option<Vec<Taint>>,
) -> Result<Node, kube::Error> {
    let api: Api<Node> = Api::all(context.client.clone());
    let name = node.metadata.name.clone().unwrap_or_default();
    let mut latest = node.clone();
    if let Some(conditions) = conditions {
        let patch = json!({
            "metadata": {"resourceVersion": latest.metadata.resource_version},
            "status": {"conditions": conditions},
        });
        latest = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        tracing::info!(node = %name, ready = %ready_status(&conditions), "node conditions updated");
    }
    if let Some(taints) = taints {
        let value = if taints.is_empty() { json!(null) } else { json!(taints) };
        let patch = json!({
            "metadata": {"resourceVersion": latest.metadata.resource_version},
            "spec": {"taints": value},
        });
        latest = api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        let keys: Vec<String> = taints.iter().map(|t| format!("{}:{}", t.key, t.effect)).collect();
        tracing::info!(node = %name, taints = ?keys, "node taints updated");
    }
    Ok(latest)
}

/// Carries out one pod write; returns the uid of a pod it deleted and whether it succeeded
/// (a pod already gone counts as success).
async fn write_pod(context: &Context, write: PodWrite, now: &Time) -> (Option<String>, bool) {
    let gone = |error: &kube::Error| matches!(error, kube::Error::Api(s) if s.code == 404);
    match write {
        PodWrite::NotReady(pod, conditions) => {
            let (namespace, name) = namespace_and_name(&pod);
            let api: Api<Pod> = Api::namespaced(context.client.clone(), &namespace);
            let patch = json!({
                "metadata": {"resourceVersion": pod.metadata.resource_version},
                "status": {"conditions": conditions},
            });
            match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {
                    let object = reference(pod.as_ref());
                    context
                        .recorder
                        .record(&object, EventType::Warning, "NodeNotReady", "Node is not ready")
                        .await;
                    (None, true)
                }
                Err(error) if gone(&error) => (None, true),
                Err(error) => {
                    tracing::debug!(pod = %name, %error, "cannot mark pod not ready");
                    (None, false)
                }
            }
        }
        PodWrite::Evict(pod) => {
            let (namespace, name) = namespace_and_name(&pod);
            let message = format!("Marking for deletion Pod {namespace}/{name}");
            let object = reference(pod.as_ref());
            context
                .recorder
                .record(&object, EventType::Normal, "TaintManagerEviction", &message)
                .await;
            let api: Api<Pod> = Api::namespaced(context.client.clone(), &namespace);
            if let Some(conditions) = disruption_conditions(&pod, now) {
                // Unconditional: the pod is going anyway, a concurrent status write may lose.
                let patch = json!({"status": {"conditions": conditions}});
                let params = PatchParams::default();
                match api.patch_status(&name, &params, &Patch::Merge(&patch)).await {
                    Ok(_) => {}
                    Err(error) if gone(&error) => return (None, true),
                    Err(error) => {
                        tracing::debug!(pod = %name, %error, "cannot mark pod for disruption");
                        return (None, false);
                    }
                }
            }
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: pod.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&name, &params).await {
                Ok(_) => {
                    tracing::info!(pod = %name, %namespace, "evicted pod for a NoExecute taint");
                    (pod.metadata.uid.clone(), true)
                }
                Err(error) if gone(&error) => (pod.metadata.uid.clone(), true),
                Err(error) => {
                    tracing::debug!(pod = %name, %error, "cannot evict pod");
                    (None, false)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, NodeStatus, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn time(text: &str) -> Time {
        Time(text.parse().expect("time"))
    }

    fn taint(key: &str, value: Option<&str>, effect: &str, added: Option<&str>) -> Taint {
        Taint {
            key: key.into(),
            value: value.map(str::to_string),
            effect: effect.into(),
            time_added: added.map(time),
        }
    }

    fn toleration(
        key: &str,
        operator: &str,
        value: &str,
        effect: &str,
        seconds: Option<i64>,
    ) -> Toleration {
        let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Toleration {
            key: text(key),
            operator: text(operator),
            value: text(value),
            effect: text(effect),
            toleration_seconds: seconds,
        }
    }

    fn condition(kind: &str, status: &str) -> NodeCondition {
        NodeCondition {
            type_: kind.into(),
            status: status.into(),
            last_heartbeat_time: Some(time("2026-01-01T00:00:00Z")),
            last_transition_time: Some(time("2026-01-01T00:00:00Z")),
            ..NodeCondition::default()
        }
    }

    #[test]
    fn tolerations_match_like_kubernetes() {
        let dedicated = taint("dedicated", Some("db"), NO_SCHEDULE, None);
        let check = |t: Toleration, expected: bool| {
            assert_eq!(tolerates(&t, &dedicated), expected, "{t:?}");
        };
        check(toleration("dedicated", "Equal", "db", NO_SCHEDULE, None), true);
        check(toleration("dedicated", "", "db", "", None), true);
        check(toleration("dedicated", "Equal", "web", NO_SCHEDULE, None), false);
        check(toleration("dedicated", "Exists", "", "", None), true);
        check(toleration("dedicated", "Exists", "", NO_EXECUTE, None), false);
        check(toleration("", "Exists", "", "", None), true);
        check(toleration("other", "Exists", "", "", None), false);
        check(toleration("dedicated", "Gt", "db", "", None), false);
        let tolerations = [toleration("dedicated", "Exists", "", "", None)];
        let taints = [dedicated.clone(), taint("gpu", None, NO_EXECUTE, None)];
        assert_eq!(untolerated_taint(&taints, &tolerations, |_| true), Some(&taints[1]));
        assert_eq!(untolerated_taint(&taints, &tolerations, |t| t.effect == NO_SCHEDULE), None);
    }

    #[test]
    fn heartbeats_restart_the_clock_only_when_newer() {
        let start = Instant::now();
        let grace = Duration::from_secs(40);
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
        let t1: Timestamp = "2026-01-01T00:00:10Z".parse().expect("time");
        let first = observe(None, Some(t0), start);
        assert_eq!(first.observed, start);
        let later = start + Duration::from_secs(30);
        assert_eq!(observe(Some(&first), Some(t0), later), first);
        // A heartbeat going back in time is a clock error, not a sign of life.
        let back: Timestamp = "2025-12-31T23:59:00Z".parse().expect("time");
        assert_eq!(observe(Some(&first), Some(back), later), first);
        assert!(!is_silent(&first, start + grace, grace));
        assert!(is_silent(&first, start + grace + Duration::from_millis(1), grace));
        let renewed = observe(Some(&first), Some(t1), later);
        assert_eq!(renewed.observed, later);
        assert!(!is_silent(&renewed, start + grace + Duration::from_secs(1), grace));
    }

    #[test]
    fn heartbeat_is_the_newer_of_lease_and_ready_condition() {
        let node = Node {
            status: Some(NodeStatus {
                conditions: Some(vec![condition("Ready", "True")]),
                ..NodeStatus::default()
            }),
            ..Node::default()
        };
        let posted: Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
        assert_eq!(heartbeat(&node, None), Some(posted));
        let lease: Lease = serde_json::from_value(json!({
            "metadata": {"name": "n"},
            "spec": {"renewTime": "2026-01-01T00:00:07.000000Z"}
        }))
        .expect("lease");
        let renewed: Timestamp = "2026-01-01T00:00:07Z".parse().expect("time");
        assert_eq!(heartbeat(&node, Some(&lease)), Some(renewed));
        assert_eq!(heartbeat(&Node::default(), None), None);
    }

    #[test]
    fn silent_nodes_turn_unknown_as_kubernetes_words_it() {
        let now = time("2026-01-01T00:05:00Z");
        let created = time("2025-12-31T00:00:00Z");
        let conditions = vec![condition("Ready", "True"), condition("DiskPressure", "Unknown")];
        let silent = silent_node_conditions(&conditions, Some(&created), &now);
        let ready = find_condition(&silent, "Ready").expect("ready");
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(ready.message.as_deref(), Some("Kubelet stopped posting node status."));
        assert_eq!(ready.last_transition_time.as_ref(), Some(&now));
        assert_eq!(ready.last_heartbeat_time, conditions[0].last_heartbeat_time);
        // Already Unknown: untouched.
        assert_eq!(find_condition(&silent, "DiskPressure"), Some(&conditions[1]));
        let never = find_condition(&silent, "MemoryPressure").expect("added");
        assert_eq!(never.status, "Unknown");
        assert_eq!(never.reason.as_deref(), Some("NodeStatusNeverUpdated"));
        assert_eq!(never.last_heartbeat_time.as_ref(), Some(&created));
        assert!(find_condition(&silent, "PIDPressure").is_some());
        assert_eq!(silent.len(), 4);
        // A second pass changes nothing, so nothing is written again.
        assert_eq!(silent_node_conditions(&silent, Some(&created), &now), silent);
        assert_eq!(ready_status(&silent), "Unknown");
        assert_eq!(ready_status(&[]), "Unknown");
    }

    #[test]
    fn taints_follow_conditions_and_readiness() {
        let now = time("2026-01-01T00:05:00Z");
        let earlier = "2026-01-01T00:01:00Z";
        let user = taint("dedicated", Some("db"), NO_SCHEDULE, None);
        let ready = [condition("Ready", "True")];
        // Healthy: only the user's taint stays; stale controller taints go.
        let current = vec![
            user.clone(),
            taint(TAINT_UNREACHABLE, None, NO_EXECUTE, Some(earlier)),
            taint(TAINT_UNREACHABLE, None, NO_SCHEDULE, None),
        ];
        let wanted = wanted_readiness_taint(ready_status(&ready));
        assert_eq!(reconciled_taints(&current, &ready, false, wanted, &now), vec![user.clone()]);
        // Unknown: NoSchedule and NoExecute unreachable, the latter stamped now.
        let unknown = [condition("Ready", "Unknown"), condition("MemoryPressure", "True")];
        let wanted = wanted_readiness_taint(ready_status(&unknown));
        assert_eq!(wanted, Some(TAINT_UNREACHABLE));
        let taints = reconciled_taints(std::slice::from_ref(&user), &unknown, true, wanted, &now);
        assert_eq!(
            taints,
            vec![
                user.clone(),
                taint(TAINT_UNREACHABLE, None, NO_SCHEDULE, None),
                taint(TAINT_MEMORY_PRESSURE, None, NO_SCHEDULE, None),
                taint(TAINT_UNSCHEDULABLE, None, NO_SCHEDULE, None),
                taint(TAINT_UNREACHABLE, None, NO_EXECUTE, Some("2026-01-01T00:05:00Z")),
            ]
        );
        // Unchanged on the next pass: the existing taint keeps its time.
        assert_eq!(reconciled_taints(&taints, &unknown, true, wanted, &now), taints);
        // Ready False: unreachable is swapped for not-ready.
        let not_ready = [condition("Ready", "False")];
        let wanted = wanted_readiness_taint(ready_status(&not_ready));
        let swapped = reconciled_taints(&taints, &not_ready, false, wanted, &now);
        assert_eq!(
            swapped,
            vec![
                user,
                taint(TAINT_NOT_READY, None, NO_SCHEDULE, None),
                taint(TAINT_NOT_READY, None, NO_EXECUTE, Some("2026-01-01T00:05:00Z")),
            ]
        );
        assert!(has_readiness_taint(&swapped));
    }

    #[test]
    fn zones_and_their_eviction_rates() {
        assert_eq!(zone_state(3, 0), ZoneState::Normal);
        assert_eq!(zone_state(2, 1), ZoneState::Normal);
        // Two nodes down are never more than normal, whatever the share.
        assert_eq!(zone_state(1, 2), ZoneState::Normal);
        assert_eq!(zone_state(3, 3), ZoneState::Normal);
        assert_eq!(zone_state(45, 55), ZoneState::PartialDisruption);
        assert_eq!(zone_state(46, 54), ZoneState::Normal);
        assert_eq!(zone_state(0, 1), ZoneState::FullDisruption);
        assert_eq!(zone_taint_rate(ZoneState::Normal, 3), NODE_EVICTION_RATE_PER_SECOND);
        assert_eq!(zone_taint_rate(ZoneState::FullDisruption, 3), NODE_EVICTION_RATE_PER_SECOND);
        assert_eq!(zone_taint_rate(ZoneState::PartialDisruption, 10), 0.0);
        assert_eq!(
            zone_taint_rate(ZoneState::PartialDisruption, 100),
            NODE_SECONDARY_EVICTION_RATE_PER_SECOND
        );
        let mut node = Node::default();
        assert_eq!(zone_of(&node), "");
        node.metadata.labels = Some(
            [("topology.kubernetes.io/zone", "a"), ("topology.kubernetes.io/region", "r")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        assert_eq!(zone_of(&node), "r:\x00:a");
    }

    #[test]
    fn token_bucket_allows_one_then_refills() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(0.1, start);
        assert!(bucket.try_take(start));
        assert!(!bucket.try_take(start + Duration::from_secs(9)));
        assert_eq!(bucket.next_token(), Some(start + Duration::from_secs(10)));
        assert!(bucket.try_take(start + Duration::from_secs(10)));
        bucket.set_rate(0.0, start + Duration::from_secs(100));
        assert!(!bucket.try_take(start + Duration::from_secs(1_000)));
        assert_eq!(bucket.next_token(), None);
    }

    fn pod_with(tolerations: Vec<Toleration>) -> Vec<Toleration> {
        with_default_tolerations(&tolerations, 300)
    }

    #[test]
    fn default_tolerations_are_added_only_when_missing() {
        let defaults = pod_with(Vec::new());
        assert_eq!(
            defaults,
            vec![
                toleration(TAINT_NOT_READY, "Exists", "", NO_EXECUTE, Some(300)),
                toleration(TAINT_UNREACHABLE, "Exists", "", NO_EXECUTE, Some(300)),
            ]
        );
        let own = toleration(TAINT_UNREACHABLE, "Exists", "", NO_EXECUTE, Some(10));
        assert_eq!(
            pod_with(vec![own.clone()]),
            vec![own, toleration(TAINT_NOT_READY, "Exists", "", NO_EXECUTE, Some(300))]
        );
        let everything = toleration("", "Exists", "", "", None);
        assert_eq!(pod_with(vec![everything.clone()]), vec![everything]);
        // A NoSchedule toleration does not cover the NoExecute taint.
        let no_schedule = toleration(TAINT_NOT_READY, "Exists", "", NO_SCHEDULE, None);
        assert_eq!(pod_with(vec![no_schedule]).len(), 3);
    }

    #[test]
    fn eviction_times_count_from_the_taints_time_added() {
        let now: Timestamp = "2026-01-01T00:05:00Z".parse().expect("time");
        let added = "2026-01-01T00:04:00Z";
        let unreachable = taint(TAINT_UNREACHABLE, None, NO_EXECUTE, Some(added));
        let at = |s: &str| Eviction::At(s.parse().expect("time"));
        // Default 300 s from 00:04:00.
        assert_eq!(
            eviction(&pod_with(vec![]), std::slice::from_ref(&unreachable), now),
            at("2026-01-01T00:09:00Z")
        );
        // 30 s have long passed.
        let short = toleration(TAINT_UNREACHABLE, "Exists", "", NO_EXECUTE, Some(30));
        assert_eq!(
            eviction(&pod_with(vec![short]), std::slice::from_ref(&unreachable), now),
            Eviction::Now
        );
        // Forever.
        let forever = toleration(TAINT_UNREACHABLE, "Exists", "", NO_EXECUTE, None);
        assert_eq!(
            eviction(&pod_with(vec![forever.clone()]), std::slice::from_ref(&unreachable), now),
            Eviction::Never
        );
        // An untolerated NoExecute taint evicts at once; NoSchedule ones are ignored.
        let gpu = taint("gpu", None, NO_EXECUTE, Some(added));
        let taints = [unreachable.clone(), gpu];
        assert_eq!(eviction(&pod_with(vec![forever.clone()]), &taints, now), Eviction::Now);
        let quiet = taint("gpu", None, NO_SCHEDULE, None);
        assert_eq!(eviction(&pod_with(vec![forever]), &[quiet], now), Eviction::Never);
        // The earliest deadline over the taints wins; no timeAdded counts from now.
        let not_ready = taint(TAINT_NOT_READY, None, NO_EXECUTE, None);
        let tolerations = vec![
            toleration(TAINT_NOT_READY, "Exists", "", NO_EXECUTE, Some(600)),
            toleration(TAINT_UNREACHABLE, "Exists", "", NO_EXECUTE, Some(120)),
        ];
        assert_eq!(
            eviction(&tolerations, &[not_ready, unreachable.clone()], now),
            at("2026-01-01T00:06:00Z")
        );
        // Non-positive seconds mean now.
        let zero = toleration(TAINT_UNREACHABLE, "Exists", "", NO_EXECUTE, Some(-5));
        assert_eq!(eviction(&[zero], &[unreachable], now), Eviction::Now);
        assert_eq!(eviction(&[], &[], now), Eviction::Never);
    }

    #[test]
    fn pods_are_marked_not_ready_and_disrupted_once() {
        let now = time("2026-01-01T00:05:00Z");
        let ready = PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            ..PodCondition::default()
        };
        let mut pod = Pod {
            metadata: ObjectMeta::default(),
            spec: Some(PodSpec::default()),
            status: Some(PodStatus { conditions: Some(vec![ready]), ..PodStatus::default() }),
        };
        let conditions = not_ready_conditions(&pod, &now).expect("changed");
        assert_eq!(conditions[0].status, "False");
        assert_eq!(conditions[0].last_transition_time.as_ref(), Some(&now));
        pod.status.as_mut().expect("status").conditions = Some(conditions);
        assert_eq!(not_ready_conditions(&pod, &now), None);
        assert_eq!(not_ready_conditions(&Pod::default(), &now), None);
        let disrupted = disruption_conditions(&pod, &now).expect("added");
        assert_eq!(disrupted.len(), 2);
        assert_eq!(disrupted[1].reason.as_deref(), Some("DeletionByTaintManager"));
        pod.status.as_mut().expect("status").conditions = Some(disrupted);
        assert_eq!(disruption_conditions(&pod, &now), None);
    }

    #[test]
    fn cordoned_nodes_are_tainted_unschedulable() {
        let now = time("2026-01-01T00:05:00Z");
        let node = Node {
            spec: Some(NodeSpec { unschedulable: Some(true), ..NodeSpec::default() }),
            ..Node::default()
        };
        let unschedulable = node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
        let taints =
            reconciled_taints(&[], &[condition("Ready", "True")], unschedulable, None, &now);
        assert_eq!(taints, vec![taint(TAINT_UNSCHEDULABLE, None, NO_SCHEDULE, None)]);
        assert_eq!(reconciled_taints(&taints, &[], false, None, &now), vec![]);
    }
}
