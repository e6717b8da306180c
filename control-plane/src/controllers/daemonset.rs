//! The DaemonSet controller: runs one copy of a DaemonSet's pod on every node its template
//! fits, as Kubernetes' does.
//!
//! - Placement: a node is eligible when it matches the template's nodeSelector and required
//!   node affinity and the pod tolerates the node's NoSchedule and NoExecute taints. Daemon
//!   pods carry Kubernetes' automatic tolerations: not-ready and unreachable NoExecute with no
//!   time limit; disk-, memory- and pid-pressure and unschedulable NoSchedule; and
//!   network-unavailable NoSchedule for host-network pods. A pod already running on a node
//!   that stops fitting keeps running unless the node now has a NoExecute taint it does not
//!   tolerate: a new NoSchedule taint only keeps new pods away (the pod counts as
//!   misscheduled).
//! - Pods are created unbound and pinned to their node by a required node affinity on the
//!   field `metadata.name` (Kubernetes since 1.12), so the scheduler places them and accounts
//!   for their resources. Pods of nodes that left the cluster are deleted, standing in for
//!   Kubernetes' pod garbage collector, which Skiff does not have.
//! - History: every distinct template is a ControllerRevision `<daemonset>-<hash>` holding the
//!   patch that restores it (what `kubectl rollout undo` applies) and numbered by `revision`;
//!   the hash labels it and the pods made from it (`controller-revision-hash`). Old revisions
//!   beyond `revisionHistoryLimit` that no pod uses are deleted.
//! - Updates: RollingUpdate replaces out-of-date pods while at most `maxUnavailable` of the
//!   eligible nodes lack an available up-to-date pod; with `maxSurge` it instead starts new
//!   pods beside old ones and deletes an old pod once its replacement is available. OnDelete
//!   leaves replacing to whoever deletes the old pods.
//! - Status: desired, scheduled, misscheduled, ready, available, updated and unavailable
//!   counts, and the generation observed, which `kubectl rollout status` reads.
//!
//! Creations and deletions are tracked as expectations (see the ReplicaSet controller): a
//! DaemonSet is not acted on again until its pod cache shows its own writes.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, PodTemplateSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Resource;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::nodelifecycle::{
    untolerated_taint, NO_EXECUTE, NO_SCHEDULE, TAINT_DISK_PRESSURE, TAINT_MEMORY_PRESSURE,
    TAINT_NETWORK_UNAVAILABLE, TAINT_NOT_READY, TAINT_PID_PRESSURE, TAINT_UNREACHABLE,
    TAINT_UNSCHEDULABLE,
};
use super::replicaset::Expectations;
use super::{Context, ReconcileError};
use crate::events::{reference, EventType};
use crate::limits::{
    CONTROLLER_BURST_REPLICAS, CONTROLLER_CACHE_SYNC_TIMEOUT_MS, DAEMONSET_DELETES_IN_FLIGHT,
    DAEMONSET_FAILED_POD_BACKOFF_INITIAL_MS, DAEMONSET_FAILED_POD_BACKOFF_MAX_MS,
};

const NAME: &str = "daemonset";
/// The label tying a ControllerRevision and the pods made from it to one template.
pub const CONTROLLER_REVISION_HASH: &str = "controller-revision-hash";
/// The pod label carrying the template generation a pod was made from.
pub const POD_TEMPLATE_GENERATION: &str = "pod-template-generation";
/// The DaemonSet annotation in which apps/v1 carries its template generation.
pub const TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";
/// The node field daemon pods are pinned by.
const NODE_NAME_FIELD: &str = "metadata.name";

// ---- Pure rules (unit-tested) ----

fn exists_toleration(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Toleration::default()
    }
}

/// Kubernetes' AddOrUpdateTolerationInPodSpec: a toleration with the same key, operator, value
/// and effect is replaced (dropping any `tolerationSeconds`), otherwise it is appended.
fn add_or_update_toleration(tolerations: &mut Vec<Toleration>, toleration: Toleration) {
    let text = |s: &Option<String>| s.clone().unwrap_or_default();
    let same = |t: &Toleration| {
        text(&t.key) == text(&toleration.key)
            && text(&t.operator) == text(&toleration.operator)
            && text(&t.value) == text(&toleration.value)
            && text(&t.effect) == text(&toleration.effect)
    };
    match tolerations.iter_mut().find(|t| same(t)) {
        Some(existing) => *existing = toleration,
        None => tolerations.push(toleration),
    }
}

/// A DaemonSet template's pod spec with the tolerations Kubernetes gives every daemon pod.
pub fn daemon_pod_spec(template: &PodSpec) -> PodSpec {
    let mut spec = template.clone();
    let mut tolerations = spec.tolerations.take().unwrap_or_default();
    let mut automatic = vec![
        exists_toleration(TAINT_NOT_READY, NO_EXECUTE),
        exists_toleration(TAINT_UNREACHABLE, NO_EXECUTE),
        exists_toleration(TAINT_DISK_PRESSURE, NO_SCHEDULE),
        exists_toleration(TAINT_MEMORY_PRESSURE, NO_SCHEDULE),
        exists_toleration(TAINT_PID_PRESSURE, NO_SCHEDULE),
        exists_toleration(TAINT_UNSCHEDULABLE, NO_SCHEDULE),
    ];
    if spec.host_network == Some(true) {
        automatic.push(exists_toleration(TAINT_NETWORK_UNAVAILABLE, NO_SCHEDULE));
    }
    for toleration in automatic {
        add_or_update_toleration(&mut tolerations, toleration);
    }
    spec.tolerations = Some(tolerations);
    spec
}

/// Whether a node selector requirement holds for `value` (a label, or a field).
fn requirement_matches(requirement: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = requirement.values.as_deref().unwrap_or(&[]);
    let listed = |v: &str| values.iter().any(|x| x == v);
    match requirement.operator.as_str() {
        "In" => value.is_some_and(listed),
        "NotIn" => value.is_none_or(|v| !listed(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        operator @ ("Gt" | "Lt") => {
            let (Some(value), [bound]) = (value, values) else { return false };
            let (Ok(value), Ok(bound)) = (value.parse::<i64>(), bound.parse::<i64>()) else {
                return false;
            };
            if operator == "Gt" {
                value > bound
            } else {
                value < bound
            }
        }
        _ => false,
    }
}

/// A term holds when all its label expressions and field requirements do; a term with neither
/// selects nothing, as in Kubernetes.
fn term_matches(term: &NodeSelectorTerm, labels: &BTreeMap<String, String>, name: &str) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    expressions.iter().all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| r.key == NODE_NAME_FIELD && requirement_matches(r, Some(name)))
}

/// Whether `node` satisfies the pod's nodeSelector and required node affinity (its terms are
/// ORed).
pub fn node_affinity_matches(spec: &PodSpec, node: &Node) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let name = node.metadata.name.as_deref().unwrap_or("");
    let selected = spec.node_selector.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref());
    selected
        && required
            .is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, labels, name)))
}

/// Whether a daemon pod belongs on a node (Kubernetes' NodeShouldRunDaemonPod).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// A pod should be running there: create one if there is none.
    pub should_run: bool,
    /// A pod already there may stay.
    pub should_continue_running: bool,
}

/// Where a daemon pod with `spec` (its tolerations already completed by [`daemon_pod_spec`])
/// belongs on `node`.
pub fn placement(node: &Node, spec: &PodSpec) -> Placement {
    let nowhere = Placement { should_run: false, should_continue_running: false };
    let name = node.metadata.name.as_deref().unwrap_or("");
    if spec.node_name.as_deref().is_some_and(|n| !n.is_empty() && n != name) {
        return nowhere;
    }
    if !node_affinity_matches(spec, node) {
        return nowhere;
    }
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or(&[]);
    let tolerations = spec.tolerations.as_deref().unwrap_or(&[]);
    let blocking =
        |t: &k8s_openapi::api::core::v1::Taint| t.effect == NO_SCHEDULE || t.effect == NO_EXECUTE;
    if untolerated_taint(taints, tolerations, blocking).is_none() {
        return Placement { should_run: true, should_continue_running: true };
    }
    let evicting = untolerated_taint(taints, tolerations, |t| t.effect == NO_EXECUTE);
    Placement { should_run: false, should_continue_running: evicting.is_none() }
}

/// The node a daemon pod is for: the one it is bound to, or the one its node affinity pins it
/// to while it waits for the scheduler (Kubernetes' GetTargetNodeName).
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(name) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(name.clone());
    }
    let required = spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?;
    required
        .node_selector_terms
        .iter()
        .flat_map(|term| term.match_fields.iter().flatten())
        .find(|r| r.key == NODE_NAME_FIELD && r.operator == "In")
        .and_then(|r| match r.values.as_deref() {
            Some([node]) => Some(node.clone()),
            _ => None,
        })
}

/// The affinity with its required node selector replaced by one selecting just `node` by name
/// (Kubernetes' ReplaceDaemonSetPodNodeNameNodeAffinity); other affinities are kept.
pub fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let selector = NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: NODE_NAME_FIELD.into(),
                operator: "In".into(),
                values: Some(vec![node.to_string()]),
            }]),
            match_expressions: None,
        }],
    };
    let mut affinity = affinity.unwrap_or_default();
    let node_affinity = affinity.node_affinity.get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(selector);
    affinity
}

/// The template generation apps/v1 keeps in an annotation, if set.
pub fn template_generation(ds: &DaemonSet) -> Option<i64> {
    ds.metadata.annotations.as_ref()?.get(TEMPLATE_GENERATION)?.parse().ok()
}

/// Whether a pod was made from the current template: its hash label is the current
/// revision's, or its generation label the current template generation (Kubernetes'
/// IsPodUpdated).
pub fn is_updated(pod: &Pod, hash: &str, generation: Option<i64>) -> bool {
    let labels = pod.metadata.labels.as_ref();
    let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
    let hash_matches = !hash.is_empty() && label(CONTROLLER_REVISION_HASH) == Some(hash);
    let generation_matches =
        generation.is_some_and(|g| label(POD_TEMPLATE_GENERATION) == Some(g.to_string().as_str()));
    hash_matches || generation_matches
}

fn is_deleting(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// Kubernetes' podByCreationTimestampAndPhase: bound pods first, then oldest, then by name.
fn oldest_first(a: &Pod, b: &Pod) -> Ordering {
    let bound = |p: &Pod| {
        p.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty())
    };
    bound(b)
        .cmp(&bound(a))
        .then_with(|| a.metadata.creation_timestamp.cmp(&b.metadata.creation_timestamp))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// What the manage loop does on one node.
#[derive(Debug, Default, PartialEq)]
pub struct NodeActions<'a> {
    pub create: bool,
    pub delete: Vec<&'a Pod>,
    /// Failed pods, deleted subject to a per-node back-off.
    pub failed: Vec<&'a Pod>,
}

/// Kubernetes' podsShouldBeOnNode: given a node's placement and the daemon pods targeting it
/// (`None` when there are none at all), whether to create one and which to delete. Without
/// surge only the oldest running pod stays; with surge an old and a new pod may run side by
/// side until the new one is available (or the old one stops being ready).
pub fn node_actions<'a>(
    placement: Placement,
    pods: Option<&[&'a Pod]>,
    surge: bool,
    hash: &str,
    available: &dyn Fn(&Pod) -> bool,
) -> NodeActions<'a> {
    let mut actions = NodeActions::default();
    let Some(pods) = pods else {
        actions.create = placement.should_run;
        return actions;
    };
    if !placement.should_continue_running {
        actions.delete = pods.iter().copied().filter(|p| !is_deleting(p)).collect();
        return actions;
    }
    let mut running: Vec<&Pod> = Vec::new();
    for pod in pods.iter().copied().filter(|p| !is_deleting(p)) {
        match phase(pod) {
            "Failed" => actions.failed.push(pod),
            "Succeeded" => actions.delete.push(pod),
            _ => running.push(pod),
        }
    }
    running.sort_by(|a, b| oldest_first(a, b));
    if !surge {
        actions.delete.extend(running.iter().skip(1));
        return actions;
    }
    let (mut oldest_new, mut oldest_old): (Option<&Pod>, Option<&Pod>) = (None, None);
    for pod in running {
        let current = pod.metadata.labels.as_ref().and_then(|l| l.get(CONTROLLER_REVISION_HASH));
        let slot = if current.map(String::as_str) == Some(hash) {
            &mut oldest_new
        } else {
            &mut oldest_old
        };
        match slot {
            None => *slot = Some(pod),
            Some(_) => actions.delete.push(pod),
        }
    }
    if let (Some(new), Some(old)) = (oldest_new, oldest_old) {
        if !super::pod_is_ready(old) || available(new) {
            actions.delete.push(old);
        }
    }
    actions
}

/// A node's live pods split into the up-to-date one and the old one; `None` when there are
/// several of either, which the manage loop prunes first (Kubernetes' findUpdatedPodsOnNode).
fn new_and_old<'a>(
    pods: &[&'a Pod],
    updated: &dyn Fn(&Pod) -> bool,
) -> Option<(Option<&'a Pod>, Option<&'a Pod>)> {
    let (mut new, mut old) = (None, None);
    for pod in pods.iter().copied().filter(|p| !is_deleting(p)) {
        let slot = if updated(pod) { &mut new } else { &mut old };
        if slot.replace(pod).is_some() {
            return None;
        }
    }
    Some((new, old))
}

/// What one step of a rolling update does.
#[derive(Debug, Default, PartialEq)]
pub struct RolloutStep<'a> {
    pub delete: Vec<&'a Pod>,
    /// Nodes to start a new pod on beside the old one (surge only).
    pub create_on: Vec<String>,
}

/// The inputs of a rolling update step.
pub struct Rollout<'r, 'a> {
    /// Daemon pods by target node, with an empty entry for every node that should run one.
    pub node_pods: &'r BTreeMap<String, Vec<&'a Pod>>,
    pub should_run: &'r dyn Fn(&str) -> bool,
    pub updated: &'r dyn Fn(&Pod) -> bool,
    pub available: &'r dyn Fn(&Pod) -> bool,
    pub max_surge: usize,
    pub max_unavailable: usize,
    pub desired: usize,
}

impl<'a> Rollout<'_, 'a> {
    /// Kubernetes' rollingUpdate: without surge, deletes old pods (unavailable ones always,
    /// available ones while fewer than `max_unavailable` nodes lack an available new pod) and
    /// lets the manage loop create their replacements; with surge, starts new pods next to old
    /// ones (up to `max_surge` at a time for available old pods) and deletes an old pod once
    /// its node's new pod is available.
    pub fn step(&self) -> RolloutStep<'a> {
        if self.max_surge == 0 {
            self.step_without_surge()
        } else {
            self.step_with_surge()
        }
    }

    fn step_without_surge(&self) -> RolloutStep<'a> {
        let mut unavailable = 0;
        let mut replace = Vec::new();
        let mut candidates = Vec::new();
        for pods in self.node_pods.values() {
            let Some((new, old)) = new_and_old(pods, self.updated) else {
                unavailable += 1;
                continue;
            };
            match (new, old) {
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some(new), None) => unavailable += usize::from(!(self.available)(new)),
                (None, Some(old)) if !(self.available)(old) => {
                    replace.push(old);
                    unavailable += 1;
                }
                (None, Some(_)) if unavailable >= self.max_unavailable => {}
                (None, Some(old)) => candidates.push(old),
            }
        }
        let room = self.max_unavailable.saturating_sub(unavailable).min(candidates.len());
        replace.extend(candidates.into_iter().take(room));
        RolloutStep { delete: replace, create_on: Vec::new() }
    }

    fn step_with_surge(&self) -> RolloutStep<'a> {
        let mut step = RolloutStep::default();
        let (mut surging, mut available_count) = (0, 0);
        let mut must_go_when_possible = Vec::new();
        let mut candidates = Vec::new();
        for (node, pods) in self.node_pods {
            let Some((new, old)) = new_and_old(pods, self.updated) else {
                surging += 1;
                continue;
            };
            if let Some(pod) = old.or(new) {
                available_count += usize::from((self.available)(pod));
            }
            match (new, old) {
                (_, None) => {}
                (None, Some(old)) if !(self.available)(old) => {
                    if (self.should_run)(node) {
                        step.create_on.push(node.clone());
                    } else {
                        step.delete.push(old);
                    }
                }
                (None, Some(old)) => {
                    if !(self.should_run)(node) {
                        must_go_when_possible.push(old);
                    } else if surging < self.max_surge {
                        candidates.push(node.clone());
                    }
                }
                (Some(new), Some(old)) => {
                    if (self.available)(new) {
                        step.delete.push(old);
                    } else {
                        surging += 1;
                    }
                }
            }
        }
        // Pods on nodes they no longer fit go only while enough others stay available.
        let spare = available_count.saturating_sub(self.desired).min(must_go_when_possible.len());
        step.delete.extend(must_go_when_possible.into_iter().take(spare));
        let room = self.max_surge.saturating_sub(surging).min(candidates.len());
        step.create_on.extend(candidates.into_iter().take(room));
        step
    }
}

/// An IntOrString bound scaled against `total`, percentages rounded up (Kubernetes'
/// GetScaledValueFromIntOrPercent as the DaemonSet controller calls it).
fn scaled(value: &IntOrString, total: usize) -> usize {
    match value {
        IntOrString::Int(n) => usize::try_from(*n).unwrap_or(0),
        IntOrString::String(text) => match text.strip_suffix('%') {
            Some(percent) => {
                let percent = percent.parse::<usize>().unwrap_or(0);
                (total.saturating_mul(percent)).div_ceil(100)
            }
            None => text.parse().unwrap_or(0),
        },
    }
}

fn is_rolling(spec: &DaemonSetSpec) -> bool {
    let kind = spec.update_strategy.as_ref().and_then(|s| s.type_.as_deref());
    matches!(kind, None | Some("RollingUpdate"))
}

/// (maxSurge, maxUnavailable) for `desired` nodes; both zero would stall, so unavailability
/// becomes one then. Both are zero for OnDelete.
pub fn rollout_bounds(spec: &DaemonSetSpec, desired: usize) -> (usize, usize) {
    if !is_rolling(spec) {
        return (0, 0);
    }
    let rolling = spec.update_strategy.as_ref().and_then(|s| s.rolling_update.as_ref());
    let surge = rolling.and_then(|r| r.max_surge.as_ref()).map_or(0, |v| scaled(v, desired));
    let unavailable =
        rolling.and_then(|r| r.max_unavailable.as_ref()).map_or(1, |v| scaled(v, desired));
    if desired > 0 && surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// Whether the manage loop lets an old and a new pod share a node.
pub fn allows_surge(spec: &DaemonSetSpec) -> bool {
    rollout_bounds(spec, 1).0 > 0
}

/// The status counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub desired: i32,
    pub current: i32,
    pub misscheduled: i32,
    pub ready: i32,
    pub available: i32,
    pub updated: i32,
}

/// Counts by node (Kubernetes' updateDaemonSetStatus): each eligible node is desired, and
/// scheduled if a daemon pod targets it, whose oldest pod counts as ready, available and
/// updated; a pod on a node it should not run on is misscheduled.
pub fn count(
    placements: &[(String, Placement)],
    node_pods: &BTreeMap<String, Vec<&Pod>>,
    updated: &dyn Fn(&Pod) -> bool,
    available: &dyn Fn(&Pod) -> bool,
) -> Counts {
    let mut counts = Counts::default();
    for (node, placement) in placements {
        let mut pods: Vec<&Pod> = node_pods.get(node).cloned().unwrap_or_default();
        if !placement.should_run {
            counts.misscheduled += i32::from(!pods.is_empty());
            continue;
        }
        counts.desired += 1;
        pods.sort_by(|a, b| oldest_first(a, b));
        let Some(pod) = pods.first() else { continue };
        counts.current += 1;
        if super::pod_is_ready(pod) {
            counts.ready += 1;
            counts.available += i32::from(available(pod));
        }
        counts.updated += i32::from(updated(pod));
    }
    counts
}

/// A revision's data: the strategic merge patch that puts the template back (Kubernetes'
/// getPatch), which `kubectl rollout undo` applies.
pub fn revision_data(template: &PodTemplateSpec) -> Value {
    let mut template = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(fields) = template.as_object_mut() {
        fields.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": template}})
}

/// Whether a revision records `data` (the current template's).
pub fn revision_matches(revision: &ControllerRevision, data: &Value) -> bool {
    revision.data.as_ref().is_some_and(|d| &d.0 == data)
}

fn hash_label(meta: &ObjectMeta) -> Option<&str> {
    meta.labels.as_ref()?.get(CONTROLLER_REVISION_HASH).map(String::as_str)
}

/// Old revisions to delete, oldest first, leaving `limit` and any a live pod still uses.
pub fn revisions_to_delete<'a>(
    old: &'a [ControllerRevision],
    limit: usize,
    live_hashes: &HashSet<&str>,
) -> Vec<&'a ControllerRevision> {
    let mut excess = old.len().saturating_sub(limit);
    let mut sorted: Vec<&ControllerRevision> = old.iter().collect();
    sorted.sort_by_key(|r| r.revision);
    let mut doomed = Vec::new();
    for revision in sorted {
        if excess == 0 {
            break;
        }
        if hash_label(&revision.metadata).is_some_and(|h| live_hashes.contains(h)) {
            continue;
        }
        doomed.push(revision);
        excess -= 1;
    }
    doomed
}

// ---- Driver ----

struct State {
    context: Arc<Context>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    revisions: Store<ControllerRevision>,
    expectations: Expectations,
    /// Per (DaemonSet uid, node): the current back-off and when it started.
    failed_backoff: Mutex<HashMap<String, (Duration, Instant)>>,
}

/// Runs the controller until `stop` turns true.
pub async fn run(context: Arc<Context>, stop: watch::Receiver<bool>) {
    let client = context.client.clone();
    let config = watcher::Config::default();
    let (pods, pod_writer) = reflector::store();
    let pod_events =
        reflector::reflector(pod_writer, watcher(Api::<Pod>::all(client.clone()), config.clone()))
            .default_backoff()
            .touched_objects();
    let (nodes, node_writer) = reflector::store();
    let node_events = reflector::reflector(
        node_writer,
        watcher(Api::<Node>::all(client.clone()), config.clone()),
    )
    .default_backoff()
    .touched_objects();
    let (revisions, revision_writer) = reflector::store();
    let revision_events = reflector::reflector(
        revision_writer,
        watcher(Api::<ControllerRevision>::all(client.clone()), config.clone()),
    )
    .default_backoff()
    .touched_objects();
    let controller = Controller::new(Api::<DaemonSet>::all(client), config);
    let sets = controller.store();
    let (for_pods, for_nodes, for_revisions) = (sets.clone(), sets.clone(), sets);
    let concurrency = context.config.concurrency;
    let state = Arc::new(State {
        context,
        pods,
        nodes,
        revisions,
        expectations: Expectations::default(),
        failed_backoff: Mutex::new(HashMap::new()),
    });
    controller
        .watches_stream(pod_events, move |pod: Pod| owners_of(&for_pods, &pod.metadata))
        // Any node change may change where every DaemonSet belongs.
        .watches_stream(node_events, move |_node: Node| {
            for_nodes.state().iter().map(|ds| ObjectRef::from(ds.as_ref())).collect::<Vec<_>>()
        })
        .watches_stream(revision_events, move |revision: ControllerRevision| {
            owners_of(&for_revisions, &revision.metadata)
        })
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(super::stopped(stop))
        .run(reconcile, error_policy, state)
        .for_each(|_| async {})
        .await;
}

/// The DaemonSets an object's event concerns: its controller if that is a DaemonSet, else (an
/// orphan) every DaemonSet in its namespace whose selector matches it.
fn owners_of(sets: &Store<DaemonSet>, meta: &ObjectMeta) -> Vec<ObjectRef<DaemonSet>> {
    let namespace = meta.namespace.clone().unwrap_or_default();
    if let Some(owner) = super::controller_ref(meta) {
        if owner.kind == "DaemonSet" {
            return vec![ObjectRef::new(&owner.name).within(&namespace)];
        }
        return Vec::new();
    }
    let labels = meta.labels.clone().unwrap_or_default();
    sets.state()
        .iter()
        .filter(|ds| ds.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .filter(|ds| {
            let selector = ds.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
            !super::selector_is_empty(&selector) && super::selector_matches(&selector, &labels)
        })
        .map(|ds| ObjectRef::from(ds.as_ref()))
        .collect()
}

fn error_policy(_ds: Arc<DaemonSet>, error: &ReconcileError, _state: Arc<State>) -> Action {
    tracing::debug!(%error, "daemonset reconcile failed");
    Action::requeue(Duration::from_secs(2))
}

async fn reconcile(ds: Arc<DaemonSet>, state: Arc<State>) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let result = sync(&ds, &state).await;
    state.context.metrics.observe(NAME, result.is_ok(), started.elapsed().as_secs_f64());
    if let Err(error) = &result {
        tracing::info!(daemonset = %super::key_of(&ds.metadata), %error, "sync failed");
    }
    result
}

async fn sync(ds: &DaemonSet, state: &State) -> Result<Action, ReconcileError> {
    let Some(spec) = ds.spec.as_ref() else { return Ok(Action::await_change()) };
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    if ds.metadata.deletion_timestamp.is_some() {
        // Its pods and revisions may already be going: no status can be trusted.
        state.expectations.forget(&uid);
        return Ok(Action::await_change());
    }
    let run = Reconciler {
        ds,
        spec,
        state,
        namespace: ds.metadata.namespace.clone().unwrap_or_default(),
        name: ds.metadata.name.clone().unwrap_or_default(),
        uid,
    };
    if super::selector_is_empty(&spec.selector) {
        let message = "This daemon set is selecting all pods. A non-empty selector is required.";
        run.event(EventType::Warning, "SelectingAll", message).await;
        return Ok(Action::await_change());
    }
    let timeout = Duration::from_millis(CONTROLLER_CACHE_SYNC_TIMEOUT_MS);
    let caches = async {
        state.pods.wait_until_ready().await?;
        state.nodes.wait_until_ready().await?;
        state.revisions.wait_until_ready().await
    };
    tokio::time::timeout(timeout, caches)
        .await
        .map_err(|_| ReconcileError::Invalid("caches did not load".into()))?
        .map_err(|_| ReconcileError::Invalid("caches stopped".into()))?;
    run.sync().await
}

/// One reconcile of one DaemonSet.
struct Reconciler<'a> {
    ds: &'a DaemonSet,
    spec: &'a DaemonSetSpec,
    state: &'a State,
    namespace: String,
    name: String,
    uid: String,
}

impl Reconciler<'_> {
    async fn event(&self, kind: EventType, reason: &str, message: &str) {
        self.state.context.recorder.record(&reference(self.ds), kind, reason, message).await;
    }

    fn api<K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>>(
        &self,
    ) -> Api<K> {
        Api::namespaced(self.state.context.client.clone(), &self.namespace)
    }

    async fn sync(&self) -> Result<Action, ReconcileError> {
        let (current, old) = self.history().await?;
        let hash = hash_label(&current.metadata).unwrap_or_default().to_string();
        let pods = self.claim(&self.api(), self.in_namespace(&self.state.pods)).await?;
        let template = self.spec.template.spec.clone().unwrap_or_default();
        let daemon_spec = daemon_pod_spec(&template);
        let placements: Vec<(String, Placement)> = self
            .state
            .nodes
            .state()
            .iter()
            .map(|n| (n.metadata.name.clone().unwrap_or_default(), placement(n, &daemon_spec)))
            .collect();
        let mut node_pods: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
        for pod in &pods {
            // Finished and being deleted: nothing left to do with it.
            let finished = matches!(phase(pod), "Succeeded" | "Failed") && is_deleting(pod);
            match target_node(pod) {
                Some(node) if !finished => node_pods.entry(node).or_default().push(pod),
                Some(_) => {}
                None => tracing::debug!(pod = ?pod.metadata.name, "daemon pod has no node"),
            }
        }
        let generation = template_generation(self.ds);
        let now = Timestamp::now();
        let min_ready = self.spec.min_ready_seconds.unwrap_or(0);
        let available = |p: &Pod| super::pod_is_available(p, min_ready, now);
        let updated = |p: &Pod| is_updated(p, &hash, generation);
        let satisfied = self.state.expectations.satisfied(&self.uid, &self.state.pods);
        let mut failure = None;
        let mut wait = None;
        if satisfied {
            let (delete, create_on, backoff) =
                self.manage(&placements, &node_pods, &hash, &available).await;
            wait = backoff;
            failure = self.sync_nodes(delete, create_on, &hash, generation).await;
            let ready = self.state.expectations.satisfied(&self.uid, &self.state.pods);
            if failure.is_none() && ready && is_rolling(self.spec) {
                let step = self.rollout(&placements, &node_pods, &updated, &available);
                failure = self.sync_nodes(step.delete, step.create_on, &hash, generation).await;
            }
            if let Err(error) = self.clean_history(&old, &pods).await {
                tracing::debug!(daemonset = %self.name, %error, "cannot clean up history");
            }
        }
        let counts = count(&placements, &node_pods, &updated, &available);
        self.update_status(counts, satisfied).await?;
        if let Some(message) = failure {
            return Err(ReconcileError::Invalid(message));
        }
        // Ready pods become available by time alone.
        if min_ready > 0 && counts.ready != counts.available {
            let after = Duration::from_secs(u64::try_from(min_ready).unwrap_or(0) + 1);
            wait = Some(wait.map_or(after, |w: Duration| w.min(after)));
        }
        Ok(Action::requeue(wait.unwrap_or(Duration::from_secs(300))))
    }

    fn in_namespace<K: Resource + Clone>(&self, store: &Store<K>) -> Vec<Arc<K>>
    where
        K::DynamicType: std::hash::Hash + Eq + Clone,
    {
        store
            .state()
            .into_iter()
            .filter(|o| o.meta().namespace.as_deref() == Some(self.namespace.as_str()))
            .collect()
    }

    /// Adopts matching orphans and releases owned objects the selector no longer matches;
    /// returns the objects owned.
    async fn claim<K>(
        &self,
        api: &Api<K>,
        candidates: Vec<Arc<K>>,
    ) -> Result<Vec<Arc<K>>, ReconcileError>
    where
        K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let mut owned = Vec::new();
        for object in candidates {
            let meta = object.meta();
            let labels = meta.labels.clone().unwrap_or_default();
            let matches = super::selector_matches(&self.spec.selector, &labels);
            let name = meta.name.clone().unwrap_or_default();
            let mut references = meta.owner_references.clone().unwrap_or_default();
            match super::controller_ref(meta) {
                Some(owner) if owner.uid == self.uid && matches => owned.push(object),
                Some(owner) if owner.uid == self.uid => {
                    references.retain(|r| r.uid != self.uid);
                    set_owners(api, &name, meta, references).await?;
                }
                None if matches && meta.deletion_timestamp.is_none() => {
                    references.push(super::owner_reference(self.ds));
                    if set_owners(api, &name, meta, references).await? {
                        tracing::info!(object = %name, daemonset = %self.name, "adopted");
                        owned.push(object);
                    }
                }
                _ => {}
            }
        }
        Ok(owned)
    }

    /// The revision of the current template (made if missing, renumbered to be the newest)
    /// and the older ones (Kubernetes' constructHistory).
    async fn history(
        &self,
    ) -> Result<(ControllerRevision, Vec<ControllerRevision>), ReconcileError> {
        let api: Api<ControllerRevision> = self.api();
        let owned = self.claim(&api, self.in_namespace(&self.state.revisions)).await?;
        let data = revision_data(&self.spec.template);
        let (mut current, mut old) = (Vec::new(), Vec::new());
        for revision in owned {
            let mut revision = (*revision).clone();
            if hash_label(&revision.metadata).is_none() {
                // Older revisions may lack the label: their name is as good as a hash.
                let name = revision.metadata.name.clone().unwrap_or_default();
                let patch = json!({"metadata": {"labels": {CONTROLLER_REVISION_HASH: name}}});
                revision = api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            }
            if revision_matches(&revision, &data) {
                current.push(revision);
            } else {
                old.push(revision);
            }
        }
        let next = old.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
        let current = match current.len() {
            0 => self.snapshot(&api, &data, next).await?,
            _ => {
                let keep = self.deduplicate(&api, current).await?;
                if keep.revision >= next {
                    keep
                } else {
                    let name = keep.metadata.name.clone().unwrap_or_default();
                    let patch = json!({
                        "metadata": {"resourceVersion": keep.metadata.resource_version},
                        "revision": next,
                    });
                    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?
                }
            }
        };
        Ok((current, old))
    }

    /// Records the current template as revision `revision`.
    async fn snapshot(
        &self,
        api: &Api<ControllerRevision>,
        data: &Value,
        revision: i64,
    ) -> Result<ControllerRevision, ReconcileError> {
        let collisions = self.ds.status.as_ref().and_then(|s| s.collision_count);
        let hash = super::deployment::template_hash(&self.spec.template, collisions);
        let name = format!("{}-{hash}", self.name);
        let mut labels =
            self.spec.template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
        labels.insert(CONTROLLER_REVISION_HASH.into(), hash);
        let object = ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some(labels),
                annotations: self.ds.metadata.annotations.clone(),
                owner_references: Some(vec![super::owner_reference(self.ds)]),
                ..ObjectMeta::default()
            },
            data: Some(RawExtension(data.clone())),
            revision,
        };
        match api.create(&PostParams::default(), &object).await {
            Ok(created) => Ok(created),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let existing = api.get(&name).await?;
                if revision_matches(&existing, data) {
                    return Ok(existing);
                }
                // Another template has this hash: count a collision so the next hash differs,
                // unless the count we hashed with is stale.
                let sets: Api<DaemonSet> = self.api();
                let fresh = sets.get(&self.name).await?;
                if fresh.status.as_ref().and_then(|s| s.collision_count) != collisions {
                    return Err(ReconcileError::Invalid("stale collision count".into()));
                }
                let patch = json!({
                    "metadata": {"resourceVersion": fresh.metadata.resource_version},
                    "status": {"collisionCount": collisions.unwrap_or(0) + 1},
                });
                sets.patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                Err(ReconcileError::Invalid(format!("hash collision on ControllerRevision {name}")))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Several revisions record the current template: keeps the newest, moves the pods of the
    /// others over to its hash and deletes them. (Kubernetes relabels every pod; only the
    /// duplicates' pods are the current template's, so only those move here.)
    async fn deduplicate(
        &self,
        api: &Api<ControllerRevision>,
        mut current: Vec<ControllerRevision>,
    ) -> Result<ControllerRevision, ReconcileError> {
        current.sort_by_key(|r| r.revision);
        let keep = current.pop().expect("at least one current revision");
        let keep_hash = hash_label(&keep.metadata).unwrap_or_default().to_string();
        let pods: Api<Pod> = self.api();
        for duplicate in current {
            let hash = hash_label(&duplicate.metadata).unwrap_or_default().to_string();
            for pod in self.in_namespace(&self.state.pods) {
                let ours = super::controller_ref(&pod.metadata).is_some_and(|o| o.uid == self.uid);
                if ours && hash_label(&pod.metadata) == Some(hash.as_str()) {
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    let patch =
                        json!({"metadata": {"labels": {CONTROLLER_REVISION_HASH: keep_hash}}});
                    ignore_gone(
                        pods.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await,
                    )?;
                }
            }
            let name = duplicate.metadata.name.clone().unwrap_or_default();
            ignore_gone(api.delete(&name, &DeleteParams::default()).await.map(|_| ()))?;
        }
        Ok(keep)
    }

    /// Kubernetes' manage loop over every node, plus pods of nodes that are gone; returns the
    /// pods to delete, the nodes to create pods on, and how long until a failed pod's
    /// back-off ends.
    async fn manage<'p>(
        &self,
        placements: &[(String, Placement)],
        node_pods: &BTreeMap<String, Vec<&'p Pod>>,
        hash: &str,
        available: &(dyn Fn(&Pod) -> bool + Sync),
    ) -> (Vec<&'p Pod>, Vec<String>, Option<Duration>) {
        let surge = allows_surge(self.spec);
        let (mut delete, mut create_on, mut wait) = (Vec::new(), Vec::new(), None);
        for (node, placement) in placements {
            let pods = node_pods.get(node).map(Vec::as_slice);
            let actions = node_actions(*placement, pods, surge, hash, available);
            if actions.create {
                create_on.push(node.clone());
            }
            delete.extend(actions.delete);
            for pod in actions.failed {
                match self.failed_pod_backoff(node) {
                    Some(remaining) => {
                        wait = Some(wait.map_or(remaining, |w: Duration| w.min(remaining)))
                    }
                    None => {
                        let (namespace, name) =
                            (&self.namespace, pod.metadata.name.as_deref().unwrap_or(""));
                        let message = format!(
                            "Found failed daemon pod {namespace}/{name} on node {node}, will try \
                             to kill it"
                        );
                        self.event(EventType::Warning, "FailedDaemonPod", &message).await;
                        delete.push(pod);
                    }
                }
            }
        }
        let known: HashSet<&str> = placements.iter().map(|(n, _)| n.as_str()).collect();
        for (node, pods) in node_pods {
            if !known.contains(node.as_str()) {
                delete.extend(pods.iter().copied().filter(|p| !is_deleting(p)));
            }
        }
        (delete, create_on, wait)
    }

    /// `None` when a failed pod on `node` may be deleted now (starting the next, doubled,
    /// back-off), else how long until it may.
    fn failed_pod_backoff(&self, node: &str) -> Option<Duration> {
        let initial = Duration::from_millis(DAEMONSET_FAILED_POD_BACKOFF_INITIAL_MS);
        let max = Duration::from_millis(DAEMONSET_FAILED_POD_BACKOFF_MAX_MS);
        let key = format!("{}/{node}", self.uid);
        let now = Instant::now();
        let mut backoffs = self.state.failed_backoff.lock().expect("backoff lock");
        let previous = backoffs.get(&key).copied();
        if let Some((delay, since)) = previous {
            if now < since + delay {
                return Some(since + delay - now);
            }
        }
        let delay = match previous {
            Some((delay, since)) if now.duration_since(since) <= 2 * max => (delay * 2).min(max),
            _ => initial,
        };
        backoffs.retain(|_, (_, since)| now.duration_since(*since) <= 2 * max);
        backoffs.insert(key, (delay, now));
        None
    }

    fn rollout<'p>(
        &self,
        placements: &[(String, Placement)],
        node_pods: &BTreeMap<String, Vec<&'p Pod>>,
        updated: &(dyn Fn(&Pod) -> bool + Sync),
        available: &(dyn Fn(&Pod) -> bool + Sync),
    ) -> RolloutStep<'p> {
        let mut all = node_pods.clone();
        let mut desired = 0;
        for (node, _) in placements.iter().filter(|(_, p)| p.should_run) {
            desired += 1;
            all.entry(node.clone()).or_default();
        }
        let (max_surge, max_unavailable) = rollout_bounds(self.spec, desired);
        let runs: HashMap<&str, bool> =
            placements.iter().map(|(n, p)| (n.as_str(), p.should_run)).collect();
        let should_run = |node: &str| runs.get(node).copied().unwrap_or(false);
        Rollout {
            node_pods: &all,
            should_run: &should_run,
            updated,
            available,
            max_surge,
            max_unavailable,
            desired,
        }
        .step()
    }

    /// The template pods are made from: labelled with the revision hash (and template
    /// generation), with the daemon tolerations.
    fn pod_template(&self, hash: &str, generation: Option<i64>) -> PodTemplateSpec {
        let mut template = self.spec.template.clone();
        let labels = template
            .metadata
            .get_or_insert_with(ObjectMeta::default)
            .labels
            .get_or_insert_with(BTreeMap::new);
        if let Some(generation) = generation {
            labels.insert(POD_TEMPLATE_GENERATION.into(), generation.to_string());
        }
        labels.insert(CONTROLLER_REVISION_HASH.into(), hash.to_string());
        template.spec = Some(daemon_pod_spec(&template.spec.unwrap_or_default()));
        template
    }

    /// Deletes `delete` and creates a pod on each of `create_on` (slow start: batches of 1, 2,
    /// 4, ... that stop at the first failure), at most the burst limit of each; records the
    /// expectations. Returns the first failure.
    async fn sync_nodes(
        &self,
        mut delete: Vec<&Pod>,
        mut create_on: Vec<String>,
        hash: &str,
        generation: Option<i64>,
    ) -> Option<String> {
        create_on.truncate(CONTROLLER_BURST_REPLICAS);
        delete.truncate(CONTROLLER_BURST_REPLICAS);
        let mut failure = None;
        if !create_on.is_empty() {
            let template = self.pod_template(hash, generation);
            let (created, error) = self.create_pods(&template, &create_on).await;
            self.state.expectations.expect(&self.uid, created, Vec::new());
            failure = error;
        }
        if !delete.is_empty() {
            let api: Api<Pod> = self.api();
            let deletions: Vec<_> = delete.into_iter().map(|p| self.delete_pod(&api, p)).collect();
            let results: Vec<Result<Option<String>, String>> = futures::stream::iter(deletions)
                .buffer_unordered(DAEMONSET_DELETES_IN_FLIGHT)
                .collect()
                .await;
            let mut deleted = Vec::new();
            for result in results {
                match result {
                    Ok(uid) => deleted.extend(uid),
                    Err(error) => failure = failure.or(Some(error)),
                }
            }
            self.state.expectations.expect(&self.uid, Vec::new(), deleted);
        }
        failure
    }

    async fn create_pods(
        &self,
        template: &PodTemplateSpec,
        nodes: &[String],
    ) -> (Vec<String>, Option<String>) {
        let api: Api<Pod> = self.api();
        let owner: OwnerReference = super::owner_reference(self.ds);
        let base =
            super::pod_from_template(template, &self.namespace, &format!("{}-", self.name), owner);
        let params = PostParams::default();
        let (mut created, mut position, mut batch) = (Vec::new(), 0, 1);
        while position < nodes.len() {
            let size = batch.min(nodes.len() - position);
            let results =
                futures::future::join_all(nodes[position..position + size].iter().map(|node| {
                    let mut pod = base.clone();
                    if let Some(spec) = pod.spec.as_mut() {
                        spec.affinity = Some(pin_to_node(spec.affinity.take(), node));
                    }
                    let api = api.clone();
                    let params = params.clone();
                    async move { api.create(&params, &pod).await }
                }))
                .await;
            let mut failure = None;
            for result in results {
                match result {
                    Ok(pod) => {
                        let name = pod.metadata.name.clone().unwrap_or_default();
                        created.push(pod.metadata.uid.clone().unwrap_or_default());
                        let message = format!("Created pod: {name}");
                        self.event(EventType::Normal, "SuccessfulCreate", &message).await;
                    }
                    Err(error) => {
                        let message = match &error {
                            kube::Error::Api(status) => status.message.clone(),
                            other => other.to_string(),
                        };
                        let text = format!("Error creating: {message}");
                        self.event(EventType::Warning, "FailedCreate", &text).await;
                        failure = Some(message);
                    }
                }
            }
            if failure.is_some() {
                return (created, failure);
            }
            position += size;
            batch *= 2;
        }
        (created, None)
    }

    /// Deletes one pod (if it is still the same pod); returns its uid if this deleted it.
    async fn delete_pod(&self, api: &Api<Pod>, pod: &Pod) -> Result<Option<String>, String> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => {
                self.event(EventType::Normal, "SuccessfulDelete", &format!("Deleted pod: {name}"))
                    .await;
                Ok(pod.metadata.uid.clone())
            }
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
            Err(error) => {
                let message = format!("Error deleting: {error}");
                self.event(EventType::Warning, "FailedDelete", &message).await;
                Err(error.to_string())
            }
        }
    }

    /// Deletes old revisions beyond the history limit that no pod uses.
    async fn clean_history(
        &self,
        old: &[ControllerRevision],
        pods: &[Arc<Pod>],
    ) -> Result<(), kube::Error> {
        let limit = usize::try_from(self.spec.revision_history_limit.unwrap_or(10)).unwrap_or(0);
        let live: HashSet<&str> = pods.iter().filter_map(|p| hash_label(&p.metadata)).collect();
        let api: Api<ControllerRevision> = self.api();
        for revision in revisions_to_delete(old, limit, &live) {
            let name = revision.metadata.name.clone().unwrap_or_default();
            ignore_gone(api.delete(&name, &DeleteParams::default()).await.map(|_| ()))?;
        }
        Ok(())
    }

    /// Writes the status if a count changed or the generation is not yet observed; the
    /// generation is only raised once the controller acted on it (`observed`).
    async fn update_status(&self, counts: Counts, observed: bool) -> Result<(), ReconcileError> {
        let old = self.ds.status.clone().unwrap_or_default();
        let unavailable = counts.desired - counts.available;
        let generation = self.ds.metadata.generation;
        let unchanged = old.desired_number_scheduled == counts.desired
            && old.current_number_scheduled == counts.current
            && old.number_misscheduled == counts.misscheduled
            && old.number_ready == counts.ready
            && old.number_available.unwrap_or(0) == counts.available
            && old.updated_number_scheduled.unwrap_or(0) == counts.updated
            && old.number_unavailable.unwrap_or(0) == unavailable
            && old.observed_generation >= generation;
        if unchanged {
            return Ok(());
        }
        let observed_generation = if observed { generation } else { old.observed_generation };
        let patch = json!({"status": {
            "desiredNumberScheduled": counts.desired,
            "currentNumberScheduled": counts.current,
            "numberMisscheduled": counts.misscheduled,
            "numberReady": counts.ready,
            "numberAvailable": counts.available,
            "updatedNumberScheduled": counts.updated,
            "numberUnavailable": unavailable,
            "observedGeneration": observed_generation,
        }});
        let api: Api<DaemonSet> = self.api();
        api.patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        Ok(())
    }
}

/// Sets an object's owner references, conditional on the version the decision was made on;
/// false if the object changed or went meanwhile (the next reconcile sees the new state).
async fn set_owners<K>(
    api: &Api<K>,
    name: &str,
    meta: &ObjectMeta,
    references: Vec<OwnerReference>,
) -> Result<bool, ReconcileError>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({"metadata": {
        "ownerReferences": references,
        "resourceVersion": meta.resource_version,
    }});
    match api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(false),
        Err(error) => Err(error.into()),
    }
}

fn ignore_gone<T>(result: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DaemonSetUpdateStrategy, RollingUpdateDaemonSet};
    use k8s_openapi::api::core::v1::{NodeSpec, PodCondition, PodStatus, Taint};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                taints: Some(
                    taints
                        .iter()
                        .map(|(key, effect)| Taint {
                            key: key.to_string(),
                            effect: effect.to_string(),
                            ..Taint::default()
                        })
                        .collect(),
                ),
                ..NodeSpec::default()
            }),
            status: None,
        }
    }

    fn requirement(key: &str, operator: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn with_affinity(terms: Vec<NodeSelectorTerm>) -> PodSpec {
        PodSpec {
            affinity: Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: terms,
                    }),
                    ..NodeAffinity::default()
                }),
                ..Affinity::default()
            }),
            ..PodSpec::default()
        }
    }

    fn expressions(list: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
        NodeSelectorTerm { match_expressions: Some(list), match_fields: None }
    }

    const RUN: Placement = Placement { should_run: true, should_continue_running: true };
    const STAY: Placement = Placement { should_run: false, should_continue_running: true };
    const NONE: Placement = Placement { should_run: false, should_continue_running: false };

    #[test]
    fn placement_follows_node_selector_and_required_affinity() {
        let web = node("n1", &[("role", "web"), ("cores", "8")], &[]);
        let db = node("n2", &[("role", "db"), ("cores", "2")], &[]);
        let selector = PodSpec {
            node_selector: Some([("role".to_string(), "web".to_string())].into()),
            ..PodSpec::default()
        };
        assert_eq!(placement(&web, &selector), RUN);
        assert_eq!(placement(&db, &selector), NONE);
        let check = |spec: &PodSpec, expected: [bool; 2]| {
            let got = [node_affinity_matches(spec, &web), node_affinity_matches(spec, &db)];
            assert_eq!(got, expected, "{spec:?}");
        };
        check(
            &with_affinity(vec![expressions(vec![requirement("role", "In", &["db"])])]),
            [false, true],
        );
        check(
            &with_affinity(vec![expressions(vec![requirement("role", "NotIn", &["db"])])]),
            [true, false],
        );
        check(
            &with_affinity(vec![expressions(vec![requirement("gpu", "DoesNotExist", &[])])]),
            [true, true],
        );
        check(
            &with_affinity(vec![expressions(vec![requirement("gpu", "Exists", &[])])]),
            [false, false],
        );
        check(
            &with_affinity(vec![expressions(vec![requirement("cores", "Gt", &["4"])])]),
            [true, false],
        );
        check(
            &with_affinity(vec![expressions(vec![requirement("cores", "Lt", &["4"])])]),
            [false, true],
        );
        // Terms are ORed, requirements within one ANDed; an empty term selects nothing.
        check(
            &with_affinity(vec![
                expressions(vec![
                    requirement("role", "In", &["web"]),
                    requirement("cores", "Lt", &["4"]),
                ]),
                expressions(vec![requirement("role", "In", &["db"])]),
            ]),
            [false, true],
        );
        check(&with_affinity(vec![NodeSelectorTerm::default()]), [false, false]);
        let by_name = NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![requirement("metadata.name", "In", &["n2"])]),
        };
        check(&with_affinity(vec![by_name]), [false, true]);
        // A template naming a node runs there only.
        let pinned = PodSpec { node_name: Some("n1".into()), ..PodSpec::default() };
        assert_eq!(placement(&web, &pinned), RUN);
        assert_eq!(placement(&db, &pinned), NONE);
    }

    #[test]
    fn taints_keep_new_pods_away_but_only_no_execute_removes_running_ones() {
        let spec = daemon_pod_spec(&PodSpec::default());
        assert_eq!(placement(&node("n", &[], &[("dedicated", NO_SCHEDULE)]), &spec), STAY);
        assert_eq!(placement(&node("n", &[], &[("dedicated", NO_EXECUTE)]), &spec), NONE);
        assert_eq!(placement(&node("n", &[], &[("dedicated", "PreferNoSchedule")]), &spec), RUN);
        // The automatic tolerations.
        for (key, effect) in [
            (TAINT_NOT_READY, NO_EXECUTE),
            (TAINT_UNREACHABLE, NO_EXECUTE),
            (TAINT_DISK_PRESSURE, NO_SCHEDULE),
            (TAINT_MEMORY_PRESSURE, NO_SCHEDULE),
            (TAINT_PID_PRESSURE, NO_SCHEDULE),
            (TAINT_UNSCHEDULABLE, NO_SCHEDULE),
        ] {
            assert_eq!(placement(&node("n", &[], &[(key, effect)]), &spec), RUN, "{key}");
        }
        // Only NoExecute is tolerated for not-ready: its NoSchedule twin stops new pods.
        assert_eq!(placement(&node("n", &[], &[(TAINT_NOT_READY, NO_SCHEDULE)]), &spec), STAY);
        let network = node("n", &[], &[(TAINT_NETWORK_UNAVAILABLE, NO_SCHEDULE)]);
        assert_eq!(placement(&network, &spec), STAY);
        let host = daemon_pod_spec(&PodSpec { host_network: Some(true), ..PodSpec::default() });
        assert_eq!(placement(&network, &host), RUN);
        // The template's own tolerations count too.
        let tolerant = daemon_pod_spec(&PodSpec {
            tolerations: Some(vec![exists_toleration("dedicated", "")]),
            ..PodSpec::default()
        });
        assert_eq!(placement(&node("n", &[], &[("dedicated", NO_EXECUTE)]), &tolerant), RUN);
    }

    #[test]
    fn automatic_tolerations_replace_the_users_time_limited_ones() {
        let mut limited = exists_toleration(TAINT_UNREACHABLE, NO_EXECUTE);
        limited.toleration_seconds = Some(30);
        let own = exists_toleration("dedicated", NO_SCHEDULE);
        let spec = daemon_pod_spec(&PodSpec {
            tolerations: Some(vec![own.clone(), limited]),
            ..PodSpec::default()
        });
        let tolerations = spec.tolerations.expect("tolerations");
        assert_eq!(tolerations[0], own);
        assert_eq!(tolerations[1], exists_toleration(TAINT_UNREACHABLE, NO_EXECUTE));
        assert_eq!(tolerations.len(), 7);
        // Adding them again changes nothing.
        let again = daemon_pod_spec(&PodSpec {
            tolerations: Some(tolerations.clone()),
            ..PodSpec::default()
        });
        assert_eq!(again.tolerations, Some(tolerations));
    }

    #[test]
    fn pods_are_pinned_by_node_name_and_found_again() {
        let mut spec = with_affinity(vec![expressions(vec![requirement("role", "In", &["web"])])]);
        spec.affinity = Some(pin_to_node(spec.affinity.take(), "n7"));
        let terms = &spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
            .expect("required")
            .node_selector_terms;
        assert_eq!(terms.len(), 1);
        assert_eq!(terms[0].match_fields, Some(vec![requirement("metadata.name", "In", &["n7"])]));
        let mut pod = Pod { spec: Some(spec), ..Pod::default() };
        assert_eq!(target_node(&pod), Some("n7".into()));
        pod.spec.as_mut().expect("spec").node_name = Some("n8".into());
        assert_eq!(target_node(&pod), Some("n8".into()));
        assert_eq!(target_node(&Pod::default()), None);
        assert!(pin_to_node(None, "n").node_affinity.is_some());
    }

    fn pod(name: &str, node: &str, hash: &str, created: &str, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(name.into()),
                labels: Some([(CONTROLLER_REVISION_HASH.to_string(), hash.to_string())].into()),
                creation_timestamp: Some(Time(created.parse().expect("time"))),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec { node_name: Some(node.into()), ..PodSpec::default() }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        }
    }

    const T0: &str = "2026-01-01T00:00:00Z";
    const T1: &str = "2026-01-01T00:01:00Z";

    fn names(pods: &[&Pod]) -> Vec<String> {
        pods.iter().map(|p| p.metadata.name.clone().unwrap_or_default()).collect()
    }

    #[test]
    fn manage_creates_missing_pods_and_prunes_extra_ones() {
        let ready = |p: &Pod| super::super::pod_is_ready(p);
        let none = node_actions(RUN, None, false, "h", &ready);
        assert!(none.create);
        assert!(!node_actions(STAY, None, false, "h", &ready).create);
        let old = pod("old", "n", "h", T0, true);
        let young = pod("young", "n", "h", T1, true);
        let mut failed = pod("failed", "n", "h", T0, false);
        failed.status.as_mut().expect("status").phase = Some("Failed".into());
        let mut done = pod("done", "n", "h", T0, false);
        done.status.as_mut().expect("status").phase = Some("Succeeded".into());
        let pods = [&young, &old, &failed, &done];
        let actions = node_actions(RUN, Some(&pods), false, "h", &ready);
        assert!(!actions.create);
        assert_eq!(names(&actions.delete), ["done", "young"]);
        assert_eq!(names(&actions.failed), ["failed"]);
        // A NoSchedule-tainted node keeps its pod; a NoExecute-tainted one loses all.
        let one = [&old];
        assert_eq!(node_actions(STAY, Some(&one), false, "h", &ready), NodeActions::default());
        assert_eq!(names(&node_actions(NONE, Some(&one), false, "h", &ready).delete), ["old"]);
    }

    #[test]
    fn manage_with_surge_keeps_old_until_new_is_available() {
        let old = pod("old", "n", "h1", T0, true);
        let new = pod("new", "n", "h2", T1, false);
        let pods = [&old, &new];
        let available = |p: &Pod| super::super::pod_is_ready(p);
        assert!(node_actions(RUN, Some(&pods), true, "h2", &available).delete.is_empty());
        let new_ready = pod("new", "n", "h2", T1, true);
        let pods = [&old, &new_ready];
        assert_eq!(names(&node_actions(RUN, Some(&pods), true, "h2", &available).delete), ["old"]);
        // An old pod that stopped being ready goes at once.
        let old_unready = pod("old", "n", "h1", T0, false);
        let pods = [&old_unready, &new];
        assert_eq!(names(&node_actions(RUN, Some(&pods), true, "h2", &available).delete), ["old"]);
    }

    fn rollout_step<'a>(
        node_pods: &BTreeMap<String, Vec<&'a Pod>>,
        max_surge: usize,
        max_unavailable: usize,
    ) -> RolloutStep<'a> {
        let updated = |p: &Pod| is_updated(p, "new", None);
        let available = |p: &Pod| super::super::pod_is_ready(p);
        let should_run = |n: &str| n != "gone";
        Rollout {
            node_pods,
            should_run: &should_run,
            updated: &updated,
            available: &available,
            max_surge,
            max_unavailable,
            desired: node_pods.len(),
        }
        .step()
    }

    #[test]
    fn rolling_update_replaces_at_most_max_unavailable() {
        let a = pod("a", "n1", "old", T0, true);
        let b = pod("b", "n2", "old", T0, true);
        let c = pod("c", "n3", "old", T0, true);
        let mut node_pods: BTreeMap<String, Vec<&Pod>> =
            [("n1".into(), vec![&a]), ("n2".into(), vec![&b]), ("n3".into(), vec![&c])].into();
        assert_eq!(names(&rollout_step(&node_pods, 0, 1).delete), ["a"]);
        assert_eq!(names(&rollout_step(&node_pods, 0, 2).delete), ["a", "b"]);
        // A new pod not yet available uses up the budget.
        let a_new = pod("a2", "n1", "new", T1, false);
        node_pods.insert("n1".into(), vec![&a_new]);
        assert!(rollout_step(&node_pods, 0, 1).delete.is_empty());
        // So does a node with no pod at all.
        node_pods.insert("n1".into(), vec![]);
        assert!(rollout_step(&node_pods, 0, 1).delete.is_empty());
        let a_ready = pod("a2", "n1", "new", T1, true);
        node_pods.insert("n1".into(), vec![&a_ready]);
        assert_eq!(names(&rollout_step(&node_pods, 0, 1).delete), ["b"]);
        // Unavailable old pods are replaced whatever the budget.
        let b_broken = pod("b", "n2", "old", T0, false);
        node_pods.insert("n2".into(), vec![&b_broken]);
        node_pods.insert("n1".into(), vec![&a_new]);
        assert_eq!(names(&rollout_step(&node_pods, 0, 1).delete), ["b"]);
        // Two old pods on one node are the manage loop's business, and count as unavailable.
        let c2 = pod("c2", "n3", "old", T1, true);
        let crowded: BTreeMap<String, Vec<&Pod>> =
            [("n3".into(), vec![&c, &c2]), ("n2".into(), vec![&b])].into();
        assert!(rollout_step(&crowded, 0, 1).delete.is_empty());
    }

    #[test]
    fn rolling_update_with_surge_starts_new_pods_first() {
        let a = pod("a", "n1", "old", T0, true);
        let b = pod("b", "n2", "old", T0, true);
        let node_pods: BTreeMap<String, Vec<&Pod>> =
            [("n1".into(), vec![&a]), ("n2".into(), vec![&b])].into();
        let step = rollout_step(&node_pods, 1, 0);
        assert!(step.delete.is_empty());
        assert_eq!(step.create_on, ["n1"]);
        // Surging on n1: no room for n2 until n1's new pod is available; then the old goes.
        let a_new = pod("a2", "n1", "new", T1, false);
        let surging: BTreeMap<String, Vec<&Pod>> =
            [("n1".into(), vec![&a, &a_new]), ("n2".into(), vec![&b])].into();
        assert_eq!(rollout_step(&surging, 1, 0), RolloutStep::default());
        let a_ready = pod("a2", "n1", "new", T1, true);
        let done: BTreeMap<String, Vec<&Pod>> =
            [("n1".into(), vec![&a, &a_ready]), ("n2".into(), vec![&b])].into();
        let step = rollout_step(&done, 1, 0);
        assert_eq!(names(&step.delete), ["a"]);
        assert_eq!(step.create_on, ["n2"]);
    }

    fn strategy(
        kind: &str,
        surge: Option<IntOrString>,
        unavailable: Option<IntOrString>,
    ) -> DaemonSetSpec {
        DaemonSetSpec {
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some(kind.into()),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_surge: surge,
                    max_unavailable: unavailable,
                }),
            }),
            ..DaemonSetSpec::default()
        }
    }

    #[test]
    fn bounds_round_percentages_up() {
        let percent = |s: &str| Some(IntOrString::String(s.into()));
        let int = |n: i32| Some(IntOrString::Int(n));
        assert_eq!(rollout_bounds(&strategy("RollingUpdate", int(0), int(1)), 10), (0, 1));
        assert_eq!(rollout_bounds(&strategy("RollingUpdate", None, None), 10), (0, 1));
        assert_eq!(rollout_bounds(&strategy("RollingUpdate", None, percent("25%")), 10), (0, 3));
        assert_eq!(rollout_bounds(&strategy("RollingUpdate", percent("10%"), int(0)), 10), (1, 0));
        assert_eq!(rollout_bounds(&strategy("RollingUpdate", int(0), int(0)), 3), (0, 1));
        assert_eq!(rollout_bounds(&strategy("OnDelete", int(1), int(1)), 3), (0, 0));
        assert!(allows_surge(&strategy("RollingUpdate", percent("10%"), int(0))));
        assert!(!allows_surge(&strategy("RollingUpdate", int(0), int(1))));
        assert!(!allows_surge(&strategy("OnDelete", int(1), int(0))));
    }

    #[test]
    fn status_counts_by_node() {
        let a = pod("a", "n1", "new", T0, true);
        let b = pod("b", "n2", "old", T0, false);
        let stray = pod("s", "n4", "old", T0, true);
        let node_pods: BTreeMap<String, Vec<&Pod>> =
            [("n1".into(), vec![&a]), ("n2".into(), vec![&b]), ("n4".into(), vec![&stray])].into();
        let placements = vec![
            ("n1".to_string(), RUN),
            ("n2".to_string(), RUN),
            ("n3".to_string(), RUN),
            ("n4".to_string(), STAY),
        ];
        let updated = |p: &Pod| is_updated(p, "new", None);
        let available = |_: &Pod| true;
        let counts = count(&placements, &node_pods, &updated, &available);
        assert_eq!(
            counts,
            Counts { desired: 3, current: 2, misscheduled: 1, ready: 1, available: 1, updated: 1 }
        );
    }

    #[test]
    fn updated_by_hash_or_template_generation() {
        let mut p = pod("a", "n", "h1", T0, true);
        assert!(is_updated(&p, "h1", None));
        assert!(!is_updated(&p, "h2", Some(3)));
        p.metadata
            .labels
            .as_mut()
            .expect("labels")
            .insert(POD_TEMPLATE_GENERATION.into(), "3".into());
        assert!(is_updated(&p, "h2", Some(3)));
        let mut ds = DaemonSet::default();
        assert_eq!(template_generation(&ds), None);
        ds.metadata.annotations = Some([(TEMPLATE_GENERATION.to_string(), "3".to_string())].into());
        assert_eq!(template_generation(&ds), Some(3));
    }

    fn revision(name: &str, number: i64, hash: &str) -> ControllerRevision {
        ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([(CONTROLLER_REVISION_HASH.to_string(), hash.to_string())].into()),
                ..ObjectMeta::default()
            },
            data: None,
            revision: number,
        }
    }

    #[test]
    fn revisions_record_templates_and_old_ones_are_pruned() {
        let template: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "agent"}},
            "spec": {"containers": [{"name": "main", "image": "agent:1"}]}
        }))
        .expect("template");
        let data = revision_data(&template);
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        assert_eq!(data["spec"]["template"]["spec"]["containers"][0]["image"], "agent:1");
        let mut recorded = revision("ds-a", 1, "a");
        recorded.data = Some(RawExtension(data.clone()));
        assert!(revision_matches(&recorded, &data));
        let mut other = template.clone();
        other.spec.as_mut().expect("spec").containers[0].image = Some("agent:2".into());
        assert!(!revision_matches(&recorded, &revision_data(&other)));
        let old = vec![revision("r3", 3, "c"), revision("r1", 1, "a"), revision("r2", 2, "b")];
        let live: HashSet<&str> = ["a"].into();
        let doomed: Vec<&str> = revisions_to_delete(&old, 1, &live)
            .iter()
            .map(|r| r.metadata.name.as_deref().unwrap_or(""))
            .collect();
        assert_eq!(doomed, ["r2", "r3"]);
        assert!(revisions_to_delete(&old, 3, &live).is_empty());
    }
}
