//! The DaemonSet and node lifecycle controllers against a real single master with hollow nodes
//! and the real scheduler. A DaemonSet follows nodes joining and being tainted (a NoSchedule
//! taint keeps its running pod, a NoExecute one removes it) and rolls a new template out one
//! node at a time, recording ControllerRevisions. A node whose agent stops turns Unknown, is
//! tainted unreachable and loses its ReplicaSet pods to the nodes that survive, while its
//! DaemonSet pod stays; when the agent comes back the taints go.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::TryStreamExt;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use tokio::sync::{oneshot, watch};

use control_plane::controllers::ControllerManagerConfig;
use control_plane::hollow::HollowConfig;

/// One hollow node's agent, stoppable on its own.
struct Agent {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

struct Running {
    cluster: common::Cluster,
    client: kube::Client,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    agents: BTreeMap<usize, Agent>,
}

/// A master on `ip` with `nodes` hollow nodes (`node-0`, ...), the scheduler and the
/// controller manager configured by `config`.
async fn start(ip: &str, nodes: usize, config: ControllerManagerConfig) -> Running {
    let cluster = common::start(ip).await;
    let client = cluster.client.clone();
    let (stop, stopped) = watch::channel(false);
    let registry = prometheus::Registry::new();
    let mut tasks = Vec::new();
    let (c, s, r) = (client.clone(), stopped.clone(), registry.clone());
    tasks.push(tokio::spawn(async move {
        let config = control_plane::scheduler::SchedulerConfig::default();
        control_plane::scheduler::run(c, config, &r, s).await;
    }));
    let context = control_plane::controllers::Context::new(client.clone(), config, &registry);
    tasks.push(tokio::spawn(control_plane::controllers::run(context, stopped)));
    let mut running = Running { cluster, client, stop, tasks, agents: BTreeMap::new() };
    for index in 0..nodes {
        running.start_agent(index);
    }
    running
}

impl Running {
    /// Starts `node-<index>`'s agent (registering the node, or marking it Ready again).
    fn start_agent(&mut self, index: usize) {
        let (stop, stopped) = watch::channel(false);
        let mut config = HollowConfig::new("node-", 1);
        config.first_index = index;
        config.lease_renew = Duration::from_secs(1);
        let client = self.client.clone();
        let task = tokio::spawn(async move {
            control_plane::hollow::run(client, config, stopped).await.expect("hollow node");
        });
        self.agents.insert(index, Agent { stop, task });
    }

    /// Stops `node-<index>`'s agent: its Lease is no longer renewed.
    async fn stop_agent(&mut self, index: usize) {
        let agent = self.agents.remove(&index).expect("agent running");
        let _ = agent.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), agent.task).await;
    }

    async fn stop(mut self) {
        let indexes: Vec<usize> = self.agents.keys().copied().collect();
        for index in indexes {
            self.stop_agent(index).await;
        }
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        self.cluster.stop().await;
    }
}

fn daemon_set(name: &str, image: &str) -> DaemonSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": image,
                    "resources": {"requests": {"cpu": "10m"}}}]}
            }
        }
    }))
    .expect("daemon set")
}

async fn pods_of(client: &kube::Client, app: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    api.list(&ListParams::default().labels(&format!("app={app}"))).await.expect("list").items
}

fn node_of(pod: &Pod) -> String {
    pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default()
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn image_of(pod: &Pod) -> String {
    pod.spec.as_ref().and_then(|s| s.containers[0].image.clone()).unwrap_or_default()
}

fn label<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> &'a str {
    meta.labels.as_ref().and_then(|l| l.get(key)).map_or("", String::as_str)
}

/// Live pods by node.
fn by_node(pods: &[Pod]) -> BTreeMap<String, Vec<&Pod>> {
    let mut nodes: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for pod in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        nodes.entry(node_of(pod)).or_default().push(pod);
    }
    nodes
}

/// What `kubectl rollout status daemonset/<name>` waits for: the generation observed, and
/// every desired pod updated and available.
fn rolled_out(ds: &DaemonSet, desired: i32) -> bool {
    let Some(status) = ds.status.as_ref() else { return false };
    status.observed_generation >= ds.metadata.generation
        && status.desired_number_scheduled == desired
        && status.updated_number_scheduled.unwrap_or(0) >= desired
        && status.number_available.unwrap_or(0) >= desired
}

async fn wait_rolled_out(client: &kube::Client, name: &str, desired: i32) -> DaemonSet {
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    common::eventually(60, &format!("daemon set {name} rolled out on {desired} nodes"), || {
        let api = api.clone();
        async move { api.get(name).await.ok().filter(|ds| rolled_out(ds, desired)) }
    })
    .await
}

/// Waits until the app has exactly one ready pod on each of `nodes` and none elsewhere.
async fn wait_one_per_node(client: &kube::Client, app: &str, nodes: &[&str]) -> Vec<Pod> {
    let expected: BTreeSet<String> = nodes.iter().map(|n| n.to_string()).collect();
    common::eventually(60, &format!("one ready {app} pod on each of {nodes:?}"), || {
        let (client, expected) = (client.clone(), expected.clone());
        async move {
            let pods = pods_of(&client, app).await;
            let placed = by_node(&pods);
            let keys: BTreeSet<String> = placed.keys().cloned().collect();
            let one_each = placed.values().all(|p| p.len() == 1 && is_ready(p[0]));
            (keys == expected && one_each && pods.len() == expected.len()).then_some(pods)
        }
    })
    .await
}

async fn set_taints(client: &kube::Client, node: &str, taints: serde_json::Value) {
    let api: Api<Node> = Api::all(client.clone());
    let patch = json!({"spec": {"taints": taints}});
    api.patch(node, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("taint node");
}

async fn revisions_of(client: &kube::Client, uid: &str) -> Vec<ControllerRevision> {
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), "default");
    let mut revisions: Vec<ControllerRevision> = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .filter(|r| r.metadata.owner_references.iter().flatten().any(|o| o.uid == uid))
        .collect();
    revisions.sort_by_key(|r| r.revision);
    revisions
}

async fn event_messages(client: &kube::Client, name: &str, reason: &str) -> Vec<String> {
    let api: Api<Event> = Api::namespaced(client.clone(), "default");
    api.list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.message)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daemon_set_follows_nodes_and_taints_and_rolls_one_node_at_a_time() {
    let mut running = start("127.0.88.1", 3, ControllerManagerConfig::default()).await;
    let client = running.client.clone();
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    let created =
        sets.create(&PostParams::default(), &daemon_set("agent", "agent:1")).await.expect("create");
    let uid = created.metadata.uid.clone().expect("uid");
    let pods = wait_one_per_node(&client, "agent", &["node-0", "node-1", "node-2"]).await;
    wait_rolled_out(&client, "agent", 3).await;

    // Pods are pinned to their node by a node affinity on its name, carry the automatic
    // tolerations and the revision's hash; the revision records the template.
    let revisions = revisions_of(&client, &uid).await;
    assert_eq!(revisions.len(), 1);
    let hash = label(&revisions[0].metadata, "controller-revision-hash").to_string();
    assert_eq!(revisions[0].metadata.name.as_deref(), Some(format!("agent-{hash}").as_str()));
    assert_eq!(revisions[0].revision, 1);
    for pod in &pods {
        let spec = pod.spec.as_ref().expect("spec");
        let terms = &spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
            .expect("required node affinity")
            .node_selector_terms;
        let field = &terms[0].match_fields.as_ref().expect("match fields")[0];
        assert_eq!((field.key.as_str(), field.operator.as_str()), ("metadata.name", "In"));
        assert_eq!(field.values, Some(vec![node_of(pod)]));
        let tolerated: BTreeSet<(String, String)> = spec
            .tolerations
            .iter()
            .flatten()
            .map(|t| (t.key.clone().unwrap_or_default(), t.effect.clone().unwrap_or_default()))
            .collect();
        let tolerates = |key: &str, effect: &str| {
            tolerated.contains(&(format!("node.kubernetes.io/{key}"), effect.to_string()))
        };
        assert!(["not-ready", "unreachable"].iter().all(|k| tolerates(k, "NoExecute")));
        let pressures = ["disk-pressure", "memory-pressure", "pid-pressure", "unschedulable"];
        assert!(pressures.iter().all(|k| tolerates(k, "NoSchedule")));
        assert_eq!(label(&pod.metadata, "controller-revision-hash"), hash);
    }
    let created_events = event_messages(&client, "agent", "SuccessfulCreate").await;
    assert!(
        created_events.iter().any(|m| m.starts_with("Created pod: agent-")),
        "{created_events:?}"
    );

    // A new node gets a pod.
    running.start_agent(3);
    wait_one_per_node(&client, "agent", &["node-0", "node-1", "node-2", "node-3"]).await;
    wait_rolled_out(&client, "agent", 4).await;

    // A NoSchedule taint the pod does not tolerate keeps new pods away but not the one running:
    // it counts as misscheduled.
    let before = by_node(&pods_of(&client, "agent").await)["node-1"][0].metadata.uid.clone();
    set_taints(
        &client,
        "node-1",
        json!([{"key": "dedicated", "value": "infra",
        "effect": "NoSchedule"}]),
    )
    .await;
    common::eventually(30, "node-1 counted as misscheduled", || {
        let sets = sets.clone();
        async move {
            let status = sets.get("agent").await.ok()?.status?;
            (status.desired_number_scheduled == 3 && status.number_misscheduled == 1).then_some(())
        }
    })
    .await;
    let after = by_node(&pods_of(&client, "agent").await)["node-1"][0].metadata.uid.clone();
    assert_eq!(before, after, "the pod on the NoSchedule node kept running");

    // A NoExecute taint removes it.
    set_taints(
        &client,
        "node-1",
        json!([{"key": "dedicated", "value": "infra",
        "effect": "NoExecute"}]),
    )
    .await;
    wait_one_per_node(&client, "agent", &["node-0", "node-2", "node-3"]).await;
    common::eventually(30, "status without node-1", || {
        let sets = sets.clone();
        async move {
            let status = sets.get("agent").await.ok()?.status?;
            let settled = status.desired_number_scheduled == 3
                && status.number_misscheduled == 0
                && status.current_number_scheduled == 3;
            settled.then_some(())
        }
    })
    .await;

    // A new template rolls out with at most one eligible node (maxUnavailable) lacking a
    // ready pod and never two pods on one node (no surge), checked in every state the pods go
    // through: a watch sees each change.
    let eligible = ["node-0", "node-2", "node-3"];
    let (listed, checker) = check_rollout(&client, &eligible, "agent:2");
    listed.await.expect("checker listed the pods");
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "main", "image": "agent:2"}]}}}});
    sets.patch("agent", &PatchParams::default(), &Patch::Strategic(&patch)).await.expect("update");
    let updated = wait_rolled_out(&client, "agent", 3).await;
    let checked = tokio::time::timeout(Duration::from_secs(60), checker).await;
    let (changes, violations) = checked.expect("rollout seen to its end").expect("checker");
    assert!(changes >= 6, "the checker saw the pods replaced ({changes} changes)");
    assert!(violations.is_empty(), "rollout broke its bounds: {violations:?}");
    let pods = wait_one_per_node(&client, "agent", &eligible).await;
    assert!(pods.iter().all(|p| image_of(p) == "agent:2"));
    assert_eq!(updated.status.as_ref().and_then(|s| s.number_unavailable), Some(0));

    // Two revisions; the new one is current and the pods carry its hash.
    let revisions = revisions_of(&client, &uid).await;
    assert_eq!(revisions.iter().map(|r| r.revision).collect::<Vec<_>>(), [1, 2]);
    let new_hash = label(&revisions[1].metadata, "controller-revision-hash").to_string();
    assert_ne!(new_hash, hash);
    assert_eq!(revisions[1].metadata.name.as_deref(), Some(format!("agent-{new_hash}").as_str()));
    let data = &revisions[1].data.as_ref().expect("data").0;
    assert_eq!(data["spec"]["template"]["spec"]["containers"][0]["image"], "agent:2");
    assert_eq!(data["spec"]["template"]["$patch"], "replace");
    assert!(pods.iter().all(|p| label(&p.metadata, "controller-revision-hash") == new_hash));
    let deleted_events = event_messages(&client, "agent", "SuccessfulDelete").await;
    assert!(
        deleted_events.iter().any(|m| m.starts_with("Deleted pod: agent-")),
        "{deleted_events:?}"
    );
    running.stop().await;
}

/// Watches the agent pods from before a rollout until every one of `eligible` runs one ready
/// pod of `image`, checking each state on the way: at most one of `eligible` without a ready
/// pod, never two pods on a node. Resolves `listed` once it has its starting point; the task
/// returns how many changes it saw and the violations.
fn check_rollout(
    client: &kube::Client,
    eligible: &[&'static str],
    image: &'static str,
) -> (oneshot::Receiver<()>, tokio::task::JoinHandle<(usize, Vec<String>)>) {
    let (listed_tx, listed) = oneshot::channel();
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let eligible = eligible.to_vec();
    let task = tokio::spawn(async move {
        let events = watcher(api, watcher::Config::default().labels("app=agent"));
        futures::pin_mut!(events);
        let (mut pods, mut listing) = (BTreeMap::<String, Pod>::new(), BTreeMap::new());
        let (mut listed_tx, mut changes, mut violations) = (Some(listed_tx), 0, Vec::new());
        while let Some(event) = events.try_next().await.expect("pod watch") {
            let uid = |pod: &Pod| pod.metadata.uid.clone().unwrap_or_default();
            match event {
                watcher::Event::Init => {
                    listing.clear();
                    continue;
                }
                watcher::Event::InitApply(pod) => {
                    listing.insert(uid(&pod), pod);
                    continue;
                }
                watcher::Event::InitDone => {
                    pods = std::mem::take(&mut listing);
                    if let Some(tx) = listed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                watcher::Event::Apply(pod) => {
                    changes += 1;
                    pods.insert(uid(&pod), pod);
                }
                watcher::Event::Delete(pod) => {
                    changes += 1;
                    pods.remove(&uid(&pod));
                }
            }
            let live: Vec<Pod> = pods.values().cloned().collect();
            let placed = by_node(&live);
            let ready_on =
                |node: &str| placed.get(node).is_some_and(|p| p.iter().any(|p| is_ready(p)));
            let missing = eligible.iter().filter(|n| !ready_on(n)).count();
            if missing > 1 {
                violations.push(format!("{missing} nodes without a ready pod"));
            }
            if let Some((node, _)) = placed.iter().find(|(n, p)| !n.is_empty() && p.len() > 1) {
                violations.push(format!("two pods on {node}"));
            }
            let done = eligible.iter().all(|n| {
                placed
                    .get(*n)
                    .is_some_and(|p| p.len() == 1 && is_ready(p[0]) && image_of(p[0]) == image)
            });
            if done && live.len() == eligible.len() {
                return (changes, violations);
            }
        }
        panic!("the pod watch ended");
    });
    (listed, task)
}

fn replica_set(name: &str, replicas: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": "web:1",
                    "resources": {"requests": {"cpu": "10m"}}}]}}}
    }))
    .expect("replica set")
}

fn taint_keys(node: &Node) -> BTreeSet<(String, String)> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .map(|t| (t.key.clone(), t.effect.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn silent_node_is_tainted_its_pods_evicted_and_untainted_when_back() {
    let config = ControllerManagerConfig {
        node_monitor_grace_period: Duration::from_secs(3),
        default_not_ready_toleration: Duration::from_secs(2),
        ..ControllerManagerConfig::default()
    };
    let mut running = start("127.0.88.2", 3, config).await;
    let client = running.client.clone();
    let all = ["node-0", "node-1", "node-2"];
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    sets.create(&PostParams::default(), &replica_set("web", 6)).await.expect("replica set");
    let daemons: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    daemons.create(&PostParams::default(), &daemon_set("logs", "logs:1")).await.expect("ds");
    wait_one_per_node(&client, "logs", &all).await;
    let pods = common::eventually(60, "6 ready web pods", || {
        let client = client.clone();
        async move {
            let pods = pods_of(&client, "web").await;
            (pods.len() == 6 && pods.iter().all(is_ready)).then_some(pods)
        }
    })
    .await;
    // The node with the most web pods goes silent.
    let placed = by_node(&pods);
    let (victim, doomed) = placed.iter().max_by_key(|(_, p)| p.len()).expect("a node");
    let victim = victim.clone();
    let doomed: BTreeSet<String> = doomed.iter().filter_map(|p| p.metadata.name.clone()).collect();
    let index: usize = victim.trim_start_matches("node-").parse().expect("index");
    running.stop_agent(index).await;

    let nodes: Api<Node> = Api::all(client.clone());
    let node = common::eventually(30, "the silent node Unknown and tainted unreachable", || {
        let (nodes, victim) = (nodes.clone(), victim.clone());
        async move {
            let node = nodes.get(&victim).await.ok()?;
            let tainted = node.spec.as_ref()?.taints.as_ref()?.iter().any(|t| {
                t.key == "node.kubernetes.io/unreachable"
                    && t.effect == "NoExecute"
                    && t.time_added.is_some()
            });
            tainted.then_some(node)
        }
    })
    .await;
    let conditions = node.status.and_then(|s| s.conditions).unwrap_or_default();
    let ready = conditions.iter().find(|c| c.type_ == "Ready").expect("ready condition");
    assert_eq!(ready.status, "Unknown");
    assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
    assert_eq!(ready.message.as_deref(), Some("Kubelet stopped posting node status."));
    for kind in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
        let condition = conditions.iter().find(|c| c.type_ == kind).expect(kind);
        assert_eq!(condition.status, "Unknown", "{kind}");
    }

    // Its web pods are evicted once their default toleration runs out, and the ReplicaSet's
    // replacements land on the nodes that survive.
    // Evicted pods of a silent node stay Terminating until its agent (or a forced delete)
    // finishes their graceful deletion, as in Kubernetes: count only live pods.
    let pods = common::eventually(60, "6 ready web pods off the silent node", || {
        let (client, victim) = (client.clone(), victim.clone());
        async move {
            let pods: Vec<Pod> = pods_of(&client, "web")
                .await
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            let moved = pods.len() == 6
                && pods
                    .iter()
                    .all(|p| is_ready(p) && node_of(p) != victim && !node_of(p).is_empty());
            moved.then_some(pods)
        }
    })
    .await;
    assert!(pods.iter().all(|p| !doomed.contains(p.metadata.name.as_deref().unwrap_or(""))));
    for name in &doomed {
        let marked = event_messages(&client, name, "TaintManagerEviction").await;
        assert_eq!(marked, [format!("Marking for deletion Pod default/{name}")]);
    }
    // The DaemonSet pod tolerates unreachable for good: it stays, marked not ready.
    let logs = pods_of(&client, "logs").await;
    let stayed = by_node(&logs).get(&victim).map(|p| p[0].clone()).expect("daemon pod stays");
    assert!(!is_ready(&stayed), "pods of an Unknown node are marked not ready");
    let node = nodes.get(&victim).await.expect("node");
    assert!(
        taint_keys(&node).contains(&("node.kubernetes.io/unreachable".into(), "NoSchedule".into()))
    );

    // The agent comes back: Ready again, taints gone, its daemon pod ready again.
    running.start_agent(index);
    common::eventually(30, "the node Ready and untainted", || {
        let (nodes, victim) = (nodes.clone(), victim.clone());
        async move {
            let node = nodes.get(&victim).await.ok()?;
            let conditions = node.status.as_ref()?.conditions.clone()?;
            let ready = conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True");
            (ready && taint_keys(&node).is_empty()).then_some(())
        }
    })
    .await;
    wait_one_per_node(&client, "logs", &all).await;
    wait_rolled_out(&client, "logs", 3).await;
    // Back, its agent finishes the evicted pods' graceful deletion.
    common::eventually(30, "the evicted pods gone", || {
        let (client, doomed) = (client.clone(), doomed.clone());
        async move {
            let names: BTreeSet<String> =
                pods_of(&client, "web").await.into_iter().filter_map(|p| p.metadata.name).collect();
            names.is_disjoint(&doomed).then_some(())
        }
    })
    .await;
    running.stop().await;
}
