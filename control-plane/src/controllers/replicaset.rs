//! The ReplicaSet controller: keeps `spec.replicas` active pods for each ReplicaSet, adopting
//! orphans its selector matches and releasing pods it no longer selects, and reports counts in
//! its status, as Kubernetes' ReplicaSet controller does.
//!
//! Its pod cache lags its own writes, so it keeps *expectations* (the uids of pods it created
//! or deleted and has not yet seen do so) and does not act on a ReplicaSet again until they
//! are met or time out; without them a quick second reconcile would create pods twice.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use serde_json::json;
use tokio::sync::watch;

use super::{Context, ReconcileError};
use crate::events::{reference, EventType};
use crate::limits::{CONTROLLER_BURST_REPLICAS, CONTROLLER_EXPECTATIONS_TIMEOUT_MS};

const NAME: &str = "replicaset";

/// Pods a controller has created or deleted but not yet seen in its cache.
#[derive(Default)]
pub struct Expectations {
    pending: Mutex<HashMap<String, Pending>>,
}

struct Pending {
    creations: HashSet<String>,
    deletions: HashSet<String>,
    since: Instant,
}

impl Expectations {
    /// Records pods `created` and `deleted` (by uid) for `owner`.
    pub fn expect(&self, owner: &str, created: Vec<String>, deleted: Vec<String>) {
        if created.is_empty() && deleted.is_empty() {
            return;
        }
        let mut pending = self.pending.lock().expect("expectations lock");
        let entry = pending.entry(owner.to_string()).or_insert_with(|| Pending {
            creations: HashSet::new(),
            deletions: HashSet::new(),
            since: Instant::now(),
        });
        entry.creations.extend(created);
        entry.deletions.extend(deleted);
        entry.since = Instant::now();
    }

    /// Whether `owner`'s expectations are met by `pods` (the cache's view): every created pod
    /// seen, every deleted one gone or terminating. Met or expired ones are forgotten.
    pub fn satisfied(&self, owner: &str, pods: &Store<Pod>) -> bool {
        let mut pending = self.pending.lock().expect("expectations lock");
        let Some(entry) = pending.get_mut(owner) else { return true };
        let present: HashMap<String, bool> = pods
            .state()
            .iter()
            .filter_map(|p| {
                let uid = p.metadata.uid.clone()?;
                let seen = entry.creations.contains(&uid) || entry.deletions.contains(&uid);
                seen.then(|| (uid, p.metadata.deletion_timestamp.is_some()))
            })
            .collect();
        entry.creations.retain(|uid| !present.contains_key(uid));
        entry.deletions.retain(|uid| present.get(uid) == Some(&false));
        let expired =
            entry.since.elapsed() > Duration::from_millis(CONTROLLER_EXPECTATIONS_TIMEOUT_MS);
        if entry.creations.is_empty() && entry.deletions.is_empty() || expired {
            pending.remove(owner);
            return true;
        }
        false
    }

    /// Forgets `owner` (deleted).
    pub fn forget(&self, owner: &str) {
        self.pending.lock().expect("expectations lock").remove(owner);
    }
}

struct State {
    context: Arc<Context>,
    pods: Store<Pod>,
    expectations: Expectations,
}

/// Runs the controller until `stop` turns true.
pub async fn run(context: Arc<Context>, stop: watch::Receiver<bool>) {
    let client = context.client.clone();
    let (pods, pod_events) = super::reflect(Api::<Pod>::all(client.clone()));
    let controller = Controller::new(Api::<ReplicaSet>::all(client), watcher::Config::default());
    let sets = controller.store();
    let concurrency = context.config.concurrency;
    let state = Arc::new(State { context, pods, expectations: Expectations::default() });
    controller
        .watches_stream(pod_events, move |pod: Pod| owners_of(&sets, &pod))
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(super::stopped(stop))
        .run(reconcile, error_policy, state)
        .for_each(|_| async {})
        .await;
}

/// The ReplicaSets a pod event concerns: its controller if that is a ReplicaSet, else (an
/// orphan) every ReplicaSet in its namespace whose selector matches it.
fn owners_of(sets: &Store<ReplicaSet>, pod: &Pod) -> Vec<ObjectRef<ReplicaSet>> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    if let Some(owner) = super::controller_ref(&pod.metadata) {
        if owner.kind == "ReplicaSet" {
            return vec![ObjectRef::new(&owner.name).within(&namespace)];
        }
        return Vec::new();
    }
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    sets.state()
        .iter()
        .filter(|rs| rs.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .filter(|rs| {
            let selector = &rs.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
            !super::selector_is_empty(selector) && super::selector_matches(selector, &labels)
        })
        .map(|rs| ObjectRef::from(rs.as_ref()))
        .collect()
}

fn error_policy(_rs: Arc<ReplicaSet>, error: &ReconcileError, _state: Arc<State>) -> Action {
    tracing::debug!(%error, "replicaset reconcile failed");
    Action::requeue(Duration::from_secs(2))
}

async fn reconcile(rs: Arc<ReplicaSet>, state: Arc<State>) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let result = sync(&rs, &state).await;
    state.context.metrics.observe(NAME, result.is_ok(), started.elapsed().as_secs_f64());
    if let Err(error) = &result {
        tracing::info!(replicaset = %super::key_of(&rs.metadata), %error, "sync failed");
    }
    result
}

/// Kubernetes' order for choosing pods to delete: those earlier in this order go first
/// (unassigned, then pending, not ready, ready for less time, more restarts, newer).
pub fn deletion_rank(pod: &Pod) -> impl Ord {
    let status = pod.status.as_ref();
    let assigned =
        pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty());
    let phase = match status.and_then(|s| s.phase.as_deref()) {
        Some("Pending") => 0,
        Some("Running") => 2,
        _ => 1,
    };
    let ready_since = super::pod_ready_since(pod);
    let ready = ready_since.is_some();
    // Ready longer = kept longer: the most recently ready go first.
    let ready_at = ready_since.flatten().map_or(0, |t| t.as_second());
    let restarts: i32 = status
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum());
    let created = pod.metadata.creation_timestamp.as_ref().map_or(0, |t| t.0.as_second());
    (
        assigned,
        phase,
        ready,
        std::cmp::Reverse(ready_at),
        std::cmp::Reverse(restarts),
        std::cmp::Reverse(created),
    )
}

async fn sync(rs: &ReplicaSet, state: &State) -> Result<Action, ReconcileError> {
    let context = &state.context;
    let namespace = rs.metadata.namespace.clone().unwrap_or_default();
    let name = rs.metadata.name.clone().unwrap_or_default();
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let Some(spec) = rs.spec.as_ref() else { return Ok(Action::await_change()) };
    if rs.metadata.deletion_timestamp.is_some() {
        // The garbage collector removes its pods; nothing to keep up.
        state.expectations.forget(&uid);
        return Ok(Action::await_change());
    }
    super::loaded(&state.pods, "pod").await?;
    let pods_api: Api<Pod> = Api::namespaced(context.client.clone(), &namespace);
    let in_namespace: Vec<Arc<Pod>> = state
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .collect();

    // Claim: adopt matching orphans, release owned pods the selector no longer matches.
    let selectable = !super::selector_is_empty(&spec.selector);
    let mut owned: Vec<Arc<Pod>> = Vec::new();
    for pod in in_namespace {
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let matches = selectable && super::selector_matches(&spec.selector, &labels);
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        match super::controller_ref(&pod.metadata) {
            Some(owner) if owner.uid == uid => {
                if matches {
                    owned.push(pod);
                } else {
                    release(&pods_api, &pod, &uid).await?;
                }
            }
            Some(_) => {}
            None if matches && pod.metadata.deletion_timestamp.is_none() => {
                adopt(&pods_api, &pod, super::owner_reference(rs)).await?;
                tracing::info!(pod = %pod_name, replicaset = %name, "adopted pod");
                owned.push(pod);
            }
            None => {}
        }
    }

    let active: Vec<&Arc<Pod>> = owned.iter().filter(|p| super::pod_is_active(p)).collect();
    let desired = spec.replicas.unwrap_or(1).max(0) as usize;
    let mut failure = None;
    if state.expectations.satisfied(&uid, &state.pods) {
        if active.len() < desired {
            let wanted = (desired - active.len()).min(CONTROLLER_BURST_REPLICAS);
            let (created, error) = create_pods(rs, state, wanted).await;
            state.expectations.expect(&uid, created, Vec::new());
            failure = error;
        } else if active.len() > desired {
            let mut victims = active.clone();
            victims.sort_by_key(|p| deletion_rank(p));
            victims.truncate(active.len() - desired);
            let mut deleted = Vec::new();
            for pod in victims {
                let pod_name = pod.metadata.name.clone().unwrap_or_default();
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: pod.metadata.uid.clone(),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                match pods_api.delete(&pod_name, &params).await {
                    Ok(_) => {
                        deleted.push(pod.metadata.uid.clone().unwrap_or_default());
                        context
                            .recorder
                            .record(
                                &reference(rs),
                                EventType::Normal,
                                "SuccessfulDelete",
                                &format!("Deleted pod: {pod_name}"),
                            )
                            .await;
                    }
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    Err(error) => {
                        context
                            .recorder
                            .record(
                                &reference(rs),
                                EventType::Warning,
                                "FailedDelete",
                                &format!("Error deleting: {error}"),
                            )
                            .await;
                        failure = Some(error.to_string());
                        break;
                    }
                }
            }
            state.expectations.expect(&uid, Vec::new(), deleted);
        }
    }

    // Status from what the cache shows now; the pods just created or deleted show up in a
    // later reconcile (their events trigger one).
    let now = k8s_openapi::jiff::Timestamp::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let fully_labeled = active
        .iter()
        .filter(|p| {
            let labels = p.metadata.labels.clone().unwrap_or_default();
            template_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
        .count();
    let ready = active.iter().filter(|p| super::pod_is_ready(p)).count();
    let available = active.iter().filter(|p| super::pod_is_available(p, min_ready, now)).count();
    let old = rs.status.clone().unwrap_or_default();
    let mut conditions: Vec<ReplicaSetCondition> = old.conditions.clone().unwrap_or_default();
    conditions.retain(|c| c.type_ != "ReplicaFailure");
    if let Some(message) = &failure {
        let previous = old.conditions.iter().flatten().find(|c| c.type_ == "ReplicaFailure");
        conditions.push(ReplicaSetCondition {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            reason: Some(
                if active.len() < desired { "FailedCreate" } else { "FailedDelete" }.into(),
            ),
            message: Some(message.clone()),
            last_transition_time: previous
                .and_then(|c| c.last_transition_time.clone())
                .or(Some(Time(now))),
        });
    }
    let status = ReplicaSetStatus {
        replicas: active.len() as i32,
        fully_labeled_replicas: Some(fully_labeled as i32),
        ready_replicas: Some(ready as i32),
        available_replicas: Some(available as i32),
        observed_generation: rs.metadata.generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
    };
    if !same_status(&old, &status) {
        let api: Api<ReplicaSet> = Api::namespaced(context.client.clone(), &namespace);
        let patch = json!({"status": status});
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }
    if let Some(message) = failure {
        return Err(ReconcileError::Invalid(message));
    }
    // Pods that are ready but not yet available become available by time alone.
    if min_ready > 0 && available < ready {
        return Ok(Action::requeue(Duration::from_secs(min_ready as u64 + 1)));
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

fn same_status(old: &ReplicaSetStatus, new: &ReplicaSetStatus) -> bool {
    let normalize = |s: &ReplicaSetStatus| {
        let mut s = s.clone();
        for field in
            [&mut s.fully_labeled_replicas, &mut s.ready_replicas, &mut s.available_replicas]
        {
            if *field == Some(0) {
                *field = None;
            }
        }
        s
    };
    normalize(old) == normalize(new)
}

/// Creates up to `count` pods in slow-start batches (1, 2, 4, ...), stopping at the first
/// failure; returns the created pods' uids and the failure.
async fn create_pods(
    rs: &ReplicaSet,
    state: &State,
    count: usize,
) -> (Vec<String>, Option<String>) {
    let context = &state.context;
    let namespace = rs.metadata.namespace.clone().unwrap_or_default();
    let name = rs.metadata.name.clone().unwrap_or_default();
    let Some(template) = rs.spec.as_ref().and_then(|s| s.template.clone()) else {
        return (Vec::new(), Some("the ReplicaSet has no pod template".into()));
    };
    let api: Api<Pod> = Api::namespaced(context.client.clone(), &namespace);
    let pod = super::pod_from_template(
        &template,
        &namespace,
        &format!("{name}-"),
        super::owner_reference(rs),
    );
    let params = PostParams::default();
    let mut created = Vec::new();
    let mut batch = 1;
    while created.len() < count {
        let size = batch.min(count - created.len());
        let results = futures::future::join_all((0..size).map(|_| api.create(&params, &pod))).await;
        let mut error = None;
        for result in results {
            match result {
                Ok(pod) => {
                    let pod_name = pod.metadata.name.clone().unwrap_or_default();
                    created.push(pod.metadata.uid.clone().unwrap_or_default());
                    context
                        .recorder
                        .record(
                            &reference(rs),
                            EventType::Normal,
                            "SuccessfulCreate",
                            &format!("Created pod: {pod_name}"),
                        )
                        .await;
                }
                Err(e) => error = Some(e),
            }
        }
        if let Some(error) = error {
            let message = match &error {
                kube::Error::Api(status) => status.message.clone(),
                other => other.to_string(),
            };
            context
                .recorder
                .record(
                    &reference(rs),
                    EventType::Warning,
                    "FailedCreate",
                    &format!("Error creating: {message}"),
                )
                .await;
            return (created, Some(message));
        }
        batch *= 2;
    }
    (created, None)
}

/// Adds `owner` to the pod's owner references.
async fn adopt(api: &Api<Pod>, pod: &Pod, owner: OwnerReference) -> Result<(), ReconcileError> {
    let mut references = pod.metadata.owner_references.clone().unwrap_or_default();
    references.push(owner);
    set_owners(api, pod, references).await
}

/// Removes the owner reference with `owner_uid` from the pod.
async fn release(api: &Api<Pod>, pod: &Pod, owner_uid: &str) -> Result<(), ReconcileError> {
    let references = pod.metadata.owner_references.iter().flatten();
    let kept: Vec<OwnerReference> = references.filter(|r| r.uid != owner_uid).cloned().collect();
    set_owners(api, pod, kept).await
}

/// Replaces the pod's owner references, conditional on the resourceVersion it was read at; a
/// pod changed or gone meanwhile is left to the next reconcile.
async fn set_owners(
    api: &Api<Pod>,
    pod: &Pod,
    references: Vec<OwnerReference>,
) -> Result<(), ReconcileError> {
    let patch = json!({"metadata": {
        "ownerReferences": references,
        "resourceVersion": pod.metadata.resource_version,
    }});
    let name = pod.metadata.name.clone().unwrap_or_default();
    match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodSpec, PodStatus};

    fn pod(
        node: Option<&str>,
        phase: &str,
        ready_at: Option<&str>,
        restarts: i32,
        created: &str,
    ) -> Pod {
        let mut conditions = Vec::new();
        if let Some(at) = ready_at {
            conditions.push(PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time(at.parse().expect("time"))),
                ..PodCondition::default()
            });
        }
        Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                creation_timestamp: Some(Time(created.parse().expect("time"))),
                ..Default::default()
            },
            spec: Some(PodSpec { node_name: node.map(str::to_string), ..PodSpec::default() }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: Some(conditions),
                container_statuses: Some(vec![ContainerStatus {
                    restart_count: restarts,
                    ..Default::default()
                }]),
                ..PodStatus::default()
            }),
        }
    }

    #[test]
    fn deletion_order_follows_kubernetes() {
        let t0 = "2026-01-01T00:00:00Z";
        let t1 = "2026-01-01T00:01:00Z";
        let unassigned = pod(None, "Pending", None, 0, t0);
        let pending = pod(Some("n"), "Pending", None, 0, t0);
        let running_not_ready = pod(Some("n"), "Running", None, 0, t0);
        let ready_recently = pod(Some("n"), "Running", Some(t1), 0, t0);
        let ready_long = pod(Some("n"), "Running", Some(t0), 0, t0);
        let mut pods = [&ready_long, &ready_recently, &running_not_ready, &pending, &unassigned];
        pods.sort_by_key(|p| deletion_rank(p));
        assert!(std::ptr::eq(pods[0], &unassigned));
        assert!(std::ptr::eq(pods[1], &pending));
        assert!(std::ptr::eq(pods[2], &running_not_ready));
        assert!(std::ptr::eq(pods[3], &ready_recently));
        assert!(std::ptr::eq(pods[4], &ready_long));
        // Same state: more restarts go first, then the newer pod.
        let restarted = pod(Some("n"), "Running", Some(t0), 5, t0);
        let newer = pod(Some("n"), "Running", Some(t0), 0, t1);
        let mut pods = [&ready_long, &newer, &restarted];
        pods.sort_by_key(|p| deletion_rank(p));
        assert!(std::ptr::eq(pods[0], &restarted));
        assert!(std::ptr::eq(pods[1], &newer));
        assert!(std::ptr::eq(pods[2], &ready_long));
    }
}
