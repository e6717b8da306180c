//! The Deployment controller: rolls a Deployment's pod template out through ReplicaSets, as
//! Kubernetes' does. Each distinct template gets a ReplicaSet named `<deployment>-<hash>`
//! (the hash also labels its pods, `pod-template-hash`), numbered by the
//! `deployment.kubernetes.io/revision` annotation; `kubectl rollout undo` works by copying an
//! old ReplicaSet's template back, which makes that ReplicaSet new again with the next
//! revision.
//!
//! - RollingUpdate scales the new ReplicaSet up while the total stays within
//!   `replicas + maxSurge`, and old ones down while available pods stay at least
//!   `replicas - maxUnavailable`.
//! - Recreate scales every old ReplicaSet to zero, waits until their pods are gone, then
//!   scales the new one up.
//! - A paused Deployment is only scaled; a replica change mid-rollout is spread over the
//!   ReplicaSets in proportion to their sizes.
//! - Old ReplicaSets beyond `revisionHistoryLimit` are deleted once scaled to zero. Status
//!   carries counts and the Available and Progressing conditions (with the progress deadline),
//!   which `kubectl rollout status` reads.
//!
//! Every ReplicaSet write carries the resourceVersion the decision was made on, so a decision
//! from a stale cache fails with a conflict and is retried on fresh data instead of
//! overshooting the surge or unavailability bounds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use serde_json::json;
use tokio::sync::watch;

use super::{Context, ReconcileError};
use crate::events::{reference, EventType};

const NAME: &str = "deployment";
/// Annotations Kubernetes' Deployment controller maintains.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
/// The label tying a ReplicaSet and its pods to one template.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

struct State {
    context: Arc<Context>,
    sets: Store<ReplicaSet>,
    pods: Store<Pod>,
}

/// Runs the controller until `stop` turns true.
pub async fn run(context: Arc<Context>, stop: watch::Receiver<bool>) {
    let client = context.client.clone();
    let (sets, set_events) = super::reflect(Api::<ReplicaSet>::all(client.clone()));
    let (pods, pod_events) = super::reflect(Api::<Pod>::all(client.clone()));
    let controller = Controller::new(Api::<Deployment>::all(client), watcher::Config::default());
    let deployments = controller.store();
    let for_sets = deployments.clone();
    let set_lookup = sets.clone();
    let concurrency = context.config.concurrency;
    let state = Arc::new(State { context, sets, pods });
    controller
        .watches_stream(set_events, move |rs: ReplicaSet| owners_of(&for_sets, &rs))
        .watches_stream(pod_events, move |pod: Pod| {
            // Pods matter only to Recreate (waiting for old pods to go): map through their
            // ReplicaSet to its Deployment.
            let Some(owner) = super::controller_ref(&pod.metadata) else { return Vec::new() };
            if owner.kind != "ReplicaSet" {
                return Vec::new();
            }
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            let set_ref = ObjectRef::<ReplicaSet>::new(&owner.name).within(&namespace);
            let Some(rs) = set_lookup.get(&set_ref) else { return Vec::new() };
            super::controller_ref(&rs.metadata)
                .filter(|o| o.kind == "Deployment")
                .map(|o| ObjectRef::new(&o.name).within(&namespace))
                .into_iter()
                .collect()
        })
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(super::stopped(stop))
        .run(reconcile, error_policy, state)
        .for_each(|_| async {})
        .await;
}

fn owners_of(deployments: &Store<Deployment>, rs: &ReplicaSet) -> Vec<ObjectRef<Deployment>> {
    let namespace = rs.metadata.namespace.clone().unwrap_or_default();
    if let Some(owner) = super::controller_ref(&rs.metadata) {
        if owner.kind == "Deployment" {
            return vec![ObjectRef::new(&owner.name).within(&namespace)];
        }
        return Vec::new();
    }
    let labels = rs.metadata.labels.clone().unwrap_or_default();
    deployments
        .state()
        .iter()
        .filter(|d| d.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .filter(|d| {
            let selector = d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
            !super::selector_is_empty(&selector) && super::selector_matches(&selector, &labels)
        })
        .map(|d| ObjectRef::from(d.as_ref()))
        .collect()
}

fn error_policy(_d: Arc<Deployment>, error: &ReconcileError, _state: Arc<State>) -> Action {
    tracing::debug!(%error, "deployment reconcile failed");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(d: Arc<Deployment>, state: Arc<State>) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let result = sync(&d, &state).await;
    state.context.metrics.observe(NAME, result.is_ok(), started.elapsed().as_secs_f64());
    if let Err(error) = &result {
        tracing::debug!(deployment = %super::key_of(&d.metadata), %error, "sync failed");
    }
    result
}

// ---- Pure rules (unit-tested) ----

/// An IntOrString bound resolved against `total`: percentages round up for surge and down for
/// unavailability, as Kubernetes does.
pub fn resolve_bound(
    value: Option<&IntOrString>,
    total: i32,
    round_up: bool,
    default: &str,
) -> i32 {
    let text = match value {
        Some(IntOrString::Int(n)) => return (*n).max(0),
        Some(IntOrString::String(s)) => s.clone(),
        None => default.to_string(),
    };
    match text.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
        Some(percent) => {
            let scaled = i64::from(total) * percent;
            let value = if round_up { (scaled + 99) / 100 } else { scaled / 100 };
            value.clamp(0, i64::from(i32::MAX)) as i32
        }
        None => text.parse::<i32>().unwrap_or(0).max(0),
    }
}

/// (maxSurge, maxUnavailable) for `replicas`; both zero would stall, so unavailability
/// becomes one then (Kubernetes' ResolveFenceposts).
pub fn fenceposts(d: &Deployment) -> (i32, i32) {
    let spec = d.spec.as_ref();
    let replicas = spec.and_then(|s| s.replicas).unwrap_or(1);
    let rolling = spec.and_then(|s| s.strategy.as_ref()).and_then(|s| s.rolling_update.as_ref());
    let surge = resolve_bound(rolling.and_then(|r| r.max_surge.as_ref()), replicas, true, "25%");
    let unavailable =
        resolve_bound(rolling.and_then(|r| r.max_unavailable.as_ref()), replicas, false, "25%");
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// FNV-1a, 32 bits.
fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(0x811c_9dc5_u32, |hash, byte| (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193))
}

/// The `pod-template-hash` of a template (and the Deployment's collision count), spelled with
/// Kubernetes' consonant-and-digit alphabet so it never forms words.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut text = serde_json::to_string(template).unwrap_or_default();
    if let Some(count) = collision_count {
        text.push_str(&count.to_string());
    }
    fnv1a32(text.as_bytes())
        .to_string()
        .bytes()
        .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect()
}

fn without_hash(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut template = template.clone();
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    template
}

/// Drops nulls and empty objects and arrays, recursively: Go decodes them all to the same
/// zero value, so clients (kubectl's `rollout undo` sends `resources: {}`) treat them alike.
fn pruned(value: serde_json::Value) -> Option<serde_json::Value> {
    use serde_json::Value;
    match value {
        Value::Null => None,
        Value::Object(map) => {
            let map: serde_json::Map<String, Value> =
                map.into_iter().filter_map(|(k, v)| pruned(v).map(|v| (k, v))).collect();
            (!map.is_empty()).then_some(Value::Object(map))
        }
        Value::Array(items) => {
            let items: Vec<Value> =
                items.into_iter().map(|v| pruned(v).unwrap_or_default()).collect();
            (!items.is_empty()).then_some(Value::Array(items))
        }
        other => Some(other),
    }
}

/// Whether two templates are the same apart from the `pod-template-hash` label, comparing as
/// Kubernetes' semantic equality does (empty and absent alike).
pub fn same_template(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let semantic =
        |t: &PodTemplateSpec| serde_json::to_value(without_hash(t)).ok().and_then(pruned);
    semantic(a) == semantic(b)
}

fn replicas_of(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn available_of(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)
}

fn revision_of(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// How far the new ReplicaSet may grow now under RollingUpdate: up to `replicas`, keeping
/// the total of all ReplicaSets within `replicas + maxSurge`.
pub fn rolling_new_size(replicas: i32, surge: i32, total: i32, new_size: i32) -> i32 {
    if new_size >= replicas {
        return replicas;
    }
    let room = (replicas + surge - total).max(0);
    new_size + room.min(replicas - new_size)
}

/// How many old pods may be removed now under RollingUpdate: what keeps available pods at
/// least `replicas - maxUnavailable`, counting the new ReplicaSet's unavailable pods as
/// already missing.
pub fn rolling_scale_down_budget(
    replicas: i32,
    unavailable: i32,
    total: i32,
    new_size: i32,
    new_available: i32,
) -> i32 {
    let min_available = replicas - unavailable;
    let new_unavailable = new_size - new_available;
    (total - min_available - new_unavailable).max(0)
}

/// Spreads `target` (the allowed total) over ReplicaSets of the given sizes in proportion to
/// them; the remainder from rounding goes to the first (the newest). Returns the new sizes.
pub fn proportional_sizes(sizes: &[i32], target: i32) -> Vec<i32> {
    let current: i64 = sizes.iter().map(|s| i64::from(*s)).sum();
    if sizes.is_empty() {
        return Vec::new();
    }
    if current == 0 {
        let mut out = vec![0; sizes.len()];
        out[0] = target;
        return out;
    }
    let mut out: Vec<i32> =
        sizes.iter().map(|s| (i64::from(*s) * i64::from(target) / current) as i32).collect();
    let assigned: i32 = out.iter().sum();
    out[0] += target - assigned;
    if out[0] < 0 {
        // Scaling down further than the newest holds: take the rest from the others.
        let mut deficit = -out[0];
        out[0] = 0;
        for size in out.iter_mut().skip(1) {
            let take = deficit.min(*size);
            *size -= take;
            deficit -= take;
        }
    }
    out
}

// ---- The reconcile ----

struct Plan<'a> {
    d: &'a Deployment,
    state: &'a State,
    namespace: String,
    name: String,
    replicas: i32,
}

async fn sync(d: &Deployment, state: &State) -> Result<Action, ReconcileError> {
    let Some(spec) = d.spec.as_ref() else { return Ok(Action::await_change()) };
    if d.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    super::loaded(&state.sets, "ReplicaSet").await?;
    super::loaded(&state.pods, "pod").await?;
    if super::selector_is_empty(&spec.selector) {
        state
            .context
            .recorder
            .record(
                &reference(d),
                EventType::Warning,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.",
            )
            .await;
        return Ok(Action::await_change());
    }
    let plan = Plan {
        d,
        state,
        namespace: d.metadata.namespace.clone().unwrap_or_default(),
        name: d.metadata.name.clone().unwrap_or_default(),
        replicas: spec.replicas.unwrap_or(1).max(0),
    };
    let sets = plan.claim().await?;
    let paused = spec.paused == Some(true);
    let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
    let new = plan.new_replica_set(&sets, !paused).await?;
    let old: Vec<ReplicaSet> = sets
        .iter()
        .filter(|rs| new.as_ref().is_none_or(|n| n.metadata.uid != rs.metadata.uid))
        .cloned()
        .collect();

    if paused || plan.is_scaling_event(new.as_ref(), &old) {
        plan.scale(new.as_ref(), &old).await?;
        if paused {
            plan.cleanup(&old).await?;
        }
        return plan.sync_status(new.as_ref(), &old, false).await;
    }
    let changed = if recreate {
        plan.rollout_recreate(new.as_ref(), &old).await?
    } else {
        plan.rollout_rolling(new.as_ref(), &old).await?
    };
    if !changed && plan.complete(new.as_ref(), &old) {
        plan.cleanup(&old).await?;
    }
    plan.sync_status(new.as_ref(), &old, changed).await
}

impl Plan<'_> {
    fn spec(&self) -> &k8s_openapi::api::apps::v1::DeploymentSpec {
        self.d.spec.as_ref().expect("checked in sync")
    }

    fn api(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.state.context.client.clone(), &self.namespace)
    }

    async fn event(&self, kind: EventType, reason: &str, message: &str) {
        self.state.context.recorder.record(&reference(self.d), kind, reason, message).await;
    }

    /// The Deployment's ReplicaSets, adopting matching orphans and releasing owned ones its
    /// selector no longer matches. Newest first.
    async fn claim(&self) -> Result<Vec<ReplicaSet>, ReconcileError> {
        let uid = self.d.metadata.uid.clone().unwrap_or_default();
        let mut owned = Vec::new();
        for rs in self.state.sets.state() {
            if rs.metadata.namespace.as_deref() != Some(self.namespace.as_str()) {
                continue;
            }
            let labels = rs.metadata.labels.clone().unwrap_or_default();
            let matches = super::selector_matches(&self.spec().selector, &labels);
            let rs_name = rs.metadata.name.clone().unwrap_or_default();
            match super::controller_ref(&rs.metadata) {
                Some(owner) if owner.uid == uid => {
                    if matches {
                        owned.push(rs.as_ref().clone());
                    } else {
                        let references: Vec<_> = rs
                            .metadata
                            .owner_references
                            .iter()
                            .flatten()
                            .filter(|r| r.uid != uid)
                            .cloned()
                            .collect();
                        self.patch_set(&rs, json!({"metadata": {"ownerReferences": references}}))
                            .await?;
                    }
                }
                None if matches && rs.metadata.deletion_timestamp.is_none() => {
                    let mut references = rs.metadata.owner_references.clone().unwrap_or_default();
                    references.push(super::owner_reference(self.d));
                    self.patch_set(&rs, json!({"metadata": {"ownerReferences": references}}))
                        .await?;
                    tracing::info!(replicaset = %rs_name, deployment = %self.name, "adopted");
                    owned.push(rs.as_ref().clone());
                }
                _ => {}
            }
        }
        owned.sort_by_key(|rs| {
            std::cmp::Reverse((
                rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
                rs.metadata.name.clone(),
            ))
        });
        Ok(owned)
    }

    /// A merge patch of a ReplicaSet, conditional on the resourceVersion it was read at.
    async fn patch_set(
        &self,
        rs: &ReplicaSet,
        mut patch: serde_json::Value,
    ) -> Result<ReplicaSet, ReconcileError> {
        patch["metadata"]["resourceVersion"] = json!(rs.metadata.resource_version);
        let name = rs.metadata.name.clone().unwrap_or_default();
        Ok(self.api().patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?)
    }

    fn max_old_revision(&self, old: &[&ReplicaSet]) -> i64 {
        old.iter().map(|rs| revision_of(rs)).max().unwrap_or(0)
    }

    /// The ReplicaSet for the current template: found (its revision annotations brought up to
    /// date) or, when `create`, created.
    async fn new_replica_set(
        &self,
        sets: &[ReplicaSet],
        create: bool,
    ) -> Result<Option<ReplicaSet>, ReconcileError> {
        let template = self.spec().template.clone();
        let existing = sets.iter().rev().find(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| same_template(t, &template))
        });
        let others: Vec<&ReplicaSet> = sets
            .iter()
            .filter(|rs| existing.is_none_or(|e| e.metadata.uid != rs.metadata.uid))
            .collect();
        let revision = self.max_old_revision(&others) + 1;
        let (surge, _) = fenceposts(self.d);
        if let Some(rs) = existing {
            let mut annotations = BTreeMap::new();
            let current = revision_of(rs);
            if current < revision {
                annotations.insert(REVISION.to_string(), json!(revision.to_string()));
                if current > 0 {
                    let old_history = rs
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(REVISION_HISTORY))
                        .cloned()
                        .unwrap_or_default();
                    let history = if old_history.is_empty() {
                        current.to_string()
                    } else {
                        format!("{old_history},{current}")
                    };
                    annotations.insert(REVISION_HISTORY.to_string(), json!(history));
                }
            }
            let rs_annotations = rs.metadata.annotations.clone().unwrap_or_default();
            self.replica_annotations(surge, &rs_annotations, &mut annotations);
            if let Some(cause) = self.change_cause() {
                if rs_annotations.get(CHANGE_CAUSE) != Some(&cause) {
                    annotations.insert(CHANGE_CAUSE.to_string(), json!(cause));
                }
            }
            let rs = if annotations.is_empty() {
                rs.clone()
            } else {
                self.patch_set(rs, json!({"metadata": {"annotations": annotations}})).await?
            };
            self.set_deployment_revision(revision_of(&rs)).await?;
            return Ok(Some(rs));
        }
        if !create {
            return Ok(None);
        }
        let collisions = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = template_hash(&template, collisions);
        let mut new_template = template.clone();
        new_template
            .metadata
            .get_or_insert_with(ObjectMeta::default)
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut selector: LabelSelector = self.spec().selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let recreate =
            self.spec().strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
        let total: i32 = sets.iter().map(replicas_of).sum();
        let size = if recreate { 0 } else { rolling_new_size(self.replicas, surge, total, 0) };
        let mut annotations: BTreeMap<String, String> = self
            .d
            .metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| {
                // Kubernetes copies the Deployment's annotations except these.
                k != REVISION && k != "kubectl.kubernetes.io/last-applied-configuration"
            })
            .collect();
        annotations.insert(REVISION.into(), revision.to_string());
        annotations.insert(DESIRED_REPLICAS.into(), self.replicas.to_string());
        annotations.insert(MAX_REPLICAS.into(), (self.replicas + surge).to_string());
        let mut labels =
            new_template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
        labels.insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let rs_name = format!("{}-{hash}", self.name);
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(rs_name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some(labels),
                annotations: Some(annotations),
                owner_references: Some(vec![super::owner_reference(self.d)]),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(size),
                min_ready_seconds: self.spec().min_ready_seconds,
                selector,
                template: Some(new_template),
            }),
            status: None,
        };
        match self.api().create(&PostParams::default(), &rs).await {
            Ok(created) => {
                self.event(
                    EventType::Normal,
                    "ScalingReplicaSet",
                    &format!("Scaled up replica set {rs_name} from 0 to {size}"),
                )
                .await;
                self.set_deployment_revision(revision).await?;
                Ok(Some(created))
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                // A ReplicaSet of that name exists but is not ours or has another template: a
                // hash collision. Bump the collision count so the next hash differs.
                let api: Api<Deployment> =
                    Api::namespaced(self.state.context.client.clone(), &self.namespace);
                let patch = json!({"status": {"collisionCount": collisions.unwrap_or(0) + 1}});
                api.patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                Err(ReconcileError::Invalid(format!("ReplicaSet {rs_name} exists: hash collision")))
            }
            Err(kube::Error::Api(status)) => {
                self.event(
                    EventType::Warning,
                    "FailedCreate",
                    &format!("Failed to create new replica set {rs_name}: {}", status.message),
                )
                .await;
                Err(ReconcileError::Invalid(status.message))
            }
            Err(error) => Err(error.into()),
        }
    }

    fn change_cause(&self) -> Option<String> {
        self.d.metadata.annotations.as_ref().and_then(|a| a.get(CHANGE_CAUSE)).cloned()
    }

    /// Adds the desired/max-replicas annotations where they differ.
    fn replica_annotations(
        &self,
        surge: i32,
        current: &BTreeMap<String, String>,
        into: &mut BTreeMap<String, serde_json::Value>,
    ) {
        let desired = self.replicas.to_string();
        let max = (self.replicas + surge).to_string();
        if current.get(DESIRED_REPLICAS) != Some(&desired) {
            into.insert(DESIRED_REPLICAS.into(), json!(desired));
        }
        if current.get(MAX_REPLICAS) != Some(&max) {
            into.insert(MAX_REPLICAS.into(), json!(max));
        }
    }

    async fn set_deployment_revision(&self, revision: i64) -> Result<(), ReconcileError> {
        let current = self.d.metadata.annotations.as_ref().and_then(|a| a.get(REVISION));
        if current.map(String::as_str) == Some(revision.to_string().as_str()) {
            return Ok(());
        }
        let api: Api<Deployment> =
            Api::namespaced(self.state.context.client.clone(), &self.namespace);
        let patch = json!({"metadata": {"annotations": {REVISION: revision.to_string()}}});
        api.patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        Ok(())
    }

    /// Scales `rs` to `size`, recording the change; the annotations track the Deployment's
    /// replicas so later reconciles can tell a scaling event from a rollout.
    async fn scale_set(&self, rs: &ReplicaSet, size: i32) -> Result<bool, ReconcileError> {
        let (surge, _) = fenceposts(self.d);
        let annotations = rs.metadata.annotations.clone().unwrap_or_default();
        let mut changes = BTreeMap::new();
        self.replica_annotations(surge, &annotations, &mut changes);
        let from = replicas_of(rs);
        if from == size && changes.is_empty() {
            return Ok(false);
        }
        self.patch_set(
            rs,
            json!({"metadata": {"annotations": changes}, "spec": {"replicas": size}}),
        )
        .await?;
        if from != size {
            let direction = if size > from { "up" } else { "down" };
            let rs_name = rs.metadata.name.clone().unwrap_or_default();
            self.event(
                EventType::Normal,
                "ScalingReplicaSet",
                &format!("Scaled {direction} replica set {rs_name} from {from} to {size}"),
            )
            .await;
        }
        Ok(from != size)
    }

    /// A replica change while ReplicaSets carry another desired-replicas annotation.
    fn is_scaling_event(&self, new: Option<&ReplicaSet>, old: &[ReplicaSet]) -> bool {
        new.into_iter().chain(old.iter()).filter(|rs| replicas_of(rs) > 0).any(|rs| {
            rs.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DESIRED_REPLICAS))
                .and_then(|v| v.parse::<i32>().ok())
                .is_some_and(|desired| desired != self.replicas)
        })
    }

    /// Scaling without rolling: one active ReplicaSet takes the new size; several share it in
    /// proportion to their sizes (within replicas + maxSurge).
    async fn scale(
        &self,
        new: Option<&ReplicaSet>,
        old: &[ReplicaSet],
    ) -> Result<(), ReconcileError> {
        let active: Vec<&ReplicaSet> =
            new.into_iter().chain(old.iter()).filter(|rs| replicas_of(rs) > 0).collect();
        if active.len() <= 1 {
            let target = active.first().copied().or(new);
            if let Some(rs) = target {
                self.scale_set(rs, self.replicas).await?;
            }
            return Ok(());
        }
        let (surge, _) = fenceposts(self.d);
        let allowed = self.replicas
            + if self.spec().strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate")
            {
                0
            } else {
                surge
            };
        let sizes: Vec<i32> = active.iter().map(|rs| replicas_of(rs)).collect();
        for (rs, size) in active.iter().zip(proportional_sizes(&sizes, allowed)) {
            self.scale_set(rs, size).await?;
        }
        Ok(())
    }

    /// One RollingUpdate step; true if anything was scaled.
    async fn rollout_rolling(
        &self,
        new: Option<&ReplicaSet>,
        old: &[ReplicaSet],
    ) -> Result<bool, ReconcileError> {
        let Some(new) = new else { return Ok(false) };
        let (surge, unavailable) = fenceposts(self.d);
        let total: i32 = old.iter().map(replicas_of).sum::<i32>() + replicas_of(new);
        let target = rolling_new_size(self.replicas, surge, total, replicas_of(new));
        if target != replicas_of(new) {
            return self.scale_set(new, target).await;
        }
        let old_total: i32 = old.iter().map(replicas_of).sum();
        if old_total == 0 {
            return Ok(false);
        }
        let mut budget = rolling_scale_down_budget(
            self.replicas,
            unavailable,
            total,
            replicas_of(new),
            available_of(new),
        );
        if budget == 0 {
            return Ok(false);
        }
        let mut scaled = false;
        // Unhealthy replicas of old ReplicaSets first: removing them costs no availability.
        let mut oldest_first: Vec<&ReplicaSet> = old.iter().collect();
        oldest_first.reverse();
        let mut sizes: BTreeMap<String, i32> = BTreeMap::new();
        for rs in &oldest_first {
            let size = replicas_of(rs);
            let unhealthy = (size - available_of(rs)).max(0).min(budget);
            let uid = rs.metadata.uid.clone().unwrap_or_default();
            sizes.insert(uid, size - unhealthy);
            budget -= unhealthy;
        }
        // Then available ones, keeping `replicas - maxUnavailable` available overall.
        let available_total: i32 = old.iter().map(available_of).sum::<i32>() + available_of(new);
        let mut available_budget =
            (available_total - (self.replicas - unavailable)).max(0).min(budget);
        for rs in &oldest_first {
            let uid = rs.metadata.uid.clone().unwrap_or_default();
            let size = sizes[&uid];
            let take = size.min(available_budget);
            sizes.insert(uid, size - take);
            available_budget -= take;
        }
        for rs in oldest_first {
            let uid = rs.metadata.uid.clone().unwrap_or_default();
            if sizes[&uid] != replicas_of(rs) {
                scaled |= self.scale_set(rs, sizes[&uid]).await?;
            }
        }
        Ok(scaled)
    }

    /// One Recreate step; true if anything was scaled.
    async fn rollout_recreate(
        &self,
        new: Option<&ReplicaSet>,
        old: &[ReplicaSet],
    ) -> Result<bool, ReconcileError> {
        let mut scaled = false;
        for rs in old.iter().filter(|rs| replicas_of(rs) > 0) {
            scaled |= self.scale_set(rs, 0).await?;
        }
        if scaled {
            return Ok(true);
        }
        // Wait until no pod of an old ReplicaSet is left running.
        let old_uids: Vec<String> = old.iter().filter_map(|rs| rs.metadata.uid.clone()).collect();
        let old_pods_running = self.state.pods.state().iter().any(|pod| {
            pod.metadata.namespace.as_deref() == Some(self.namespace.as_str())
                && super::controller_ref(&pod.metadata).is_some_and(|o| old_uids.contains(&o.uid))
                && !matches!(
                    pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
        });
        if old_pods_running {
            return Ok(false);
        }
        let new = match new {
            Some(new) => new.clone(),
            None => {
                let sets: Vec<ReplicaSet> = old.to_vec();
                match self.new_replica_set(&sets, true).await? {
                    Some(created) => created,
                    None => return Ok(false),
                }
            }
        };
        self.scale_set(&new, self.replicas).await
    }

    /// Every pod updated and available and nothing old left.
    fn complete(&self, new: Option<&ReplicaSet>, old: &[ReplicaSet]) -> bool {
        let Some(new) = new else { return false };
        let status = new.status.clone().unwrap_or_default();
        replicas_of(new) == self.replicas
            && status.replicas == self.replicas
            && status.available_replicas.unwrap_or(0) >= self.replicas
            && old.iter().all(|rs| {
                replicas_of(rs) == 0 && rs.status.as_ref().is_none_or(|s| s.replicas == 0)
            })
    }

    /// Deletes the oldest ReplicaSets scaled to zero beyond `revisionHistoryLimit`.
    async fn cleanup(&self, old: &[ReplicaSet]) -> Result<(), ReconcileError> {
        let limit = self.spec().revision_history_limit.unwrap_or(10).max(0) as usize;
        let mut idle: Vec<&ReplicaSet> = old
            .iter()
            .filter(|rs| {
                replicas_of(rs) == 0
                    && rs.status.as_ref().is_none_or(|s| s.replicas == 0)
                    && rs.metadata.deletion_timestamp.is_none()
            })
            .collect();
        if idle.len() <= limit {
            return Ok(());
        }
        idle.sort_by_key(|rs| revision_of(rs));
        let excess = idle.len() - limit;
        for rs in idle.into_iter().take(excess) {
            let name = rs.metadata.name.clone().unwrap_or_default();
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: rs.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match self.api().delete(&name, &params).await {
                Ok(_) => tracing::info!(replicaset = %name, "deleted beyond revision history"),
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    /// Writes counts and conditions; requeues while a progress deadline or availability wait
    /// is pending.
    async fn sync_status(
        &self,
        new: Option<&ReplicaSet>,
        old: &[ReplicaSet],
        progressed: bool,
    ) -> Result<Action, ReconcileError> {
        let now = Timestamp::now();
        let all: Vec<&ReplicaSet> = new.into_iter().chain(old.iter()).collect();
        let count = |f: &dyn Fn(&ReplicaSet) -> Option<i32>| -> i32 {
            all.iter().map(|rs| f(rs).unwrap_or(0)).sum()
        };
        let replicas = count(&|rs| rs.status.as_ref().map(|s| s.replicas));
        let ready = count(&|rs| rs.status.as_ref().and_then(|s| s.ready_replicas));
        let available = count(&|rs| rs.status.as_ref().and_then(|s| s.available_replicas));
        let updated = new.and_then(|rs| rs.status.as_ref()).map_or(0, |s| s.replicas);
        let (_, unavailable_allowed) = fenceposts(self.d);
        let old_status = self.d.status.clone().unwrap_or_default();
        let mut conditions = old_status.conditions.clone().unwrap_or_default();
        let condition =
            |kind: &str, status: &str, reason: &str, message: String| DeploymentCondition {
                type_: kind.into(),
                status: status.into(),
                reason: Some(reason.into()),
                message: Some(message),
                last_update_time: Some(Time(now)),
                last_transition_time: Some(Time(now)),
            };
        let (status, reason, message) = if available >= self.replicas - unavailable_allowed {
            ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        } else {
            (
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        };
        set_condition(&mut conditions, condition("Available", status, reason, message.into()));

        let paused = self.spec().paused == Some(true);
        let deadline = self.spec().progress_deadline_seconds.unwrap_or(600);
        let new_name = new.and_then(|rs| rs.metadata.name.clone()).unwrap_or_default();
        let complete = self.complete(new, old);
        let progressing = conditions.iter().find(|c| c.type_ == "Progressing").cloned();
        let mut requeue = None;
        if paused {
            set_condition(
                &mut conditions,
                condition(
                    "Progressing",
                    "Unknown",
                    "DeploymentPaused",
                    "Deployment is paused".into(),
                ),
            );
        } else if complete {
            set_condition(
                &mut conditions,
                condition(
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    format!("ReplicaSet \"{new_name}\" has successfully progressed."),
                ),
            );
        } else if !new_name.is_empty() {
            let resumed =
                progressing.as_ref().and_then(|c| c.reason.as_deref()) == Some("DeploymentPaused");
            let stale = progressing
                .as_ref()
                .and_then(|c| c.message.as_deref())
                .is_none_or(|m| !m.contains(&format!("\"{new_name}\"")));
            let last_update =
                progressing.as_ref().and_then(|c| c.last_update_time.as_ref()).map(|t| t.0);
            if progressed || resumed || stale || progressing.is_none() {
                let reason = if resumed {
                    "DeploymentResumed"
                } else if stale {
                    "NewReplicaSetCreated"
                } else {
                    "ReplicaSetUpdated"
                };
                let message = if resumed {
                    "Deployment is resumed".to_string()
                } else if stale {
                    format!("Created new replica set \"{new_name}\"")
                } else {
                    format!("ReplicaSet \"{new_name}\" is progressing.")
                };
                set_condition(&mut conditions, condition("Progressing", "True", reason, message));
                requeue = Some(Duration::from_secs(deadline.max(0) as u64 + 1));
            } else if let Some(last) = last_update {
                let waited = now.duration_since(last).as_secs();
                let already = progressing.as_ref().and_then(|c| c.reason.as_deref())
                    == Some("ProgressDeadlineExceeded");
                if waited > i64::from(deadline) && !already {
                    set_condition(
                        &mut conditions,
                        condition(
                            "Progressing",
                            "False",
                            "ProgressDeadlineExceeded",
                            format!("ReplicaSet \"{new_name}\" has timed out progressing."),
                        ),
                    );
                } else if !already {
                    requeue =
                        Some(Duration::from_secs((i64::from(deadline) - waited).max(0) as u64 + 1));
                }
            }
        }
        let status = DeploymentStatus {
            observed_generation: self.d.metadata.generation,
            replicas: Some(replicas),
            updated_replicas: Some(updated),
            ready_replicas: Some(ready),
            available_replicas: Some(available),
            unavailable_replicas: Some((self.replicas - available).max(0)),
            collision_count: old_status.collision_count,
            conditions: Some(conditions),
        };
        if !same_status(&old_status, &status) {
            let api: Api<Deployment> =
                Api::namespaced(self.state.context.client.clone(), &self.namespace);
            let patch = json!({"status": status});
            api.patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
        Ok(match requeue {
            Some(after) => Action::requeue(after),
            None => Action::requeue(Duration::from_secs(300)),
        })
    }
}

/// Replaces the condition of the same type, keeping its transition time when the status did
/// not change (and its update time when nothing did).
fn set_condition(conditions: &mut Vec<DeploymentCondition>, mut new: DeploymentCondition) {
    if let Some(old) = conditions.iter().find(|c| c.type_ == new.type_) {
        if old.status == new.status {
            new.last_transition_time = old.last_transition_time.clone();
            if old.reason == new.reason && old.message == new.message {
                new.last_update_time = old.last_update_time.clone();
            }
        }
    }
    conditions.retain(|c| c.type_ != new.type_);
    conditions.push(new);
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
}

fn same_status(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let normalize = |s: &DeploymentStatus| {
        let mut s = s.clone();
        for field in [
            &mut s.replicas,
            &mut s.updated_replicas,
            &mut s.ready_replicas,
            &mut s.available_replicas,
            &mut s.unavailable_replicas,
        ] {
            if *field == Some(0) {
                *field = None;
            }
        }
        if let Some(conditions) = s.conditions.as_mut() {
            conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
        }
        s
    };
    normalize(old) == normalize(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_round_like_kubernetes() {
        let pct = |s: &str| IntOrString::String(s.into());
        assert_eq!(resolve_bound(Some(&pct("25%")), 10, true, "25%"), 3);
        assert_eq!(resolve_bound(Some(&pct("25%")), 10, false, "25%"), 2);
        assert_eq!(resolve_bound(None, 4, true, "25%"), 1);
        assert_eq!(resolve_bound(None, 3, false, "25%"), 0);
        assert_eq!(resolve_bound(Some(&IntOrString::Int(2)), 10, true, "25%"), 2);
        assert_eq!(resolve_bound(Some(&pct("100%")), 7, false, "25%"), 7);
    }

    #[test]
    fn zero_surge_and_zero_unavailable_still_progress() {
        use k8s_openapi::api::apps::v1::{
            DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
        };
        let d = Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(3),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(IntOrString::Int(0)),
                        max_unavailable: Some(IntOrString::Int(0)),
                    }),
                }),
                ..DeploymentSpec::default()
            }),
            ..Deployment::default()
        };
        assert_eq!(fenceposts(&d), (0, 1));
    }

    #[test]
    fn new_replica_set_grows_within_surge() {
        // 10 replicas, surge 3: from an old set of 10, the new one may reach 3.
        assert_eq!(rolling_new_size(10, 3, 10, 0), 3);
        // Total already at 13: no growth.
        assert_eq!(rolling_new_size(10, 3, 13, 3), 3);
        // Old scaled down to 5: the new set may grow to 8.
        assert_eq!(rolling_new_size(10, 3, 8, 3), 8);
        // Never beyond replicas; a bigger set shrinks to replicas.
        assert_eq!(rolling_new_size(10, 3, 9, 9), 10);
        assert_eq!(rolling_new_size(10, 3, 12, 12), 10);
    }

    #[test]
    fn old_sets_shrink_within_unavailability() {
        // 10 replicas, 2 may be unavailable; 13 pods total, new set 3 of which 0 available:
        // 13 - 8 - 3 = 2 old pods may go.
        assert_eq!(rolling_scale_down_budget(10, 2, 13, 3, 0), 2);
        // The new pods became available: 13 - 8 - 0 = 5.
        assert_eq!(rolling_scale_down_budget(10, 2, 13, 3, 3), 5);
        // Nothing to spare.
        assert_eq!(rolling_scale_down_budget(10, 0, 10, 0, 0), 0);
    }

    #[test]
    fn proportional_scaling_keeps_ratios_and_gives_rounding_to_the_newest() {
        assert_eq!(proportional_sizes(&[6, 4], 20), vec![12, 8]);
        assert_eq!(proportional_sizes(&[5, 5], 11), vec![6, 5]);
        assert_eq!(proportional_sizes(&[3, 3, 3], 4), vec![2, 1, 1]);
        assert_eq!(proportional_sizes(&[0, 0], 5), vec![5, 0]);
        assert_eq!(proportional_sizes(&[1, 9], 0), vec![0, 0]);
        let total: i32 = proportional_sizes(&[7, 2, 5], 23).iter().sum();
        assert_eq!(total, 23);
    }

    #[test]
    fn template_hash_is_stable_and_ignores_its_own_label() {
        let mut template = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..ObjectMeta::default()
            }),
            spec: None,
        };
        let hash = template_hash(&template, None);
        assert_eq!(hash, template_hash(&template.clone(), None));
        assert!(hash.bytes().all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)));
        assert_ne!(hash, template_hash(&template, Some(1)));
        let mut labelled = template.clone();
        labelled
            .metadata
            .as_mut()
            .and_then(|m| m.labels.as_mut())
            .map(|l| l.insert(POD_TEMPLATE_HASH.into(), hash.clone()));
        assert!(same_template(&template, &labelled));
        // Empty and absent compare equal, as `rollout undo`'s `resources: {}` needs.
        let with_containers = |resources: Option<serde_json::Value>| -> PodTemplateSpec {
            let mut container = json!({"name": "c", "image": "i"});
            if let Some(resources) = resources {
                container["resources"] = resources;
            }
            serde_json::from_value(json!({"spec": {"containers": [container]}})).expect("template")
        };
        assert!(same_template(&with_containers(None), &with_containers(Some(json!({})))));
        assert!(!same_template(
            &with_containers(None),
            &with_containers(Some(json!({"limits": {"cpu": "1"}})))
        ));
        template
            .metadata
            .as_mut()
            .and_then(|m| m.labels.as_mut())
            .map(|l| l.insert("v".into(), "2".into()));
        assert!(!same_template(&template, &labelled));
    }
}
