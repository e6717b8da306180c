//! The scheduler against an in-process master: Node objects made through the API, pods bound
//! to nodes they fit, replicas of one owner spread, a pod that fits nowhere reported as
//! kube-scheduler reports it (FailedScheduling event, PodScheduled=False) until a node that
//! fits appears, nodeSelector, taints and cordons respected, and a clean stop and restart.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use tokio::sync::watch;

use control_plane::scheduler::{self, SchedulerConfig};

/// A scheduler run in a task, and how to stop it.
struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// A client with the scheduler's own identity, so its RBAC role is exercised too.
async fn scheduler_client(cluster: &common::Cluster) -> kube::Client {
    let text = cluster.api.component_kubeconfig("system:kube-scheduler", &[]).expect("kubeconfig");
    control_plane::client::from_kubeconfig_text(&text).await.expect("scheduler client")
}

fn start_scheduler(client: &kube::Client, registry: &prometheus::Registry) -> Running {
    let (stop, stopped) = watch::channel(false);
    let (client, registry) = (client.clone(), registry.clone());
    let task = tokio::spawn(async move {
        let config = SchedulerConfig { host: "test-master".into(), ..SchedulerConfig::default() };
        scheduler::run(client, config, &registry, stopped).await;
    });
    Running { stop, task }
}

impl Running {
    async fn stop(self) {
        self.stop.send(true).expect("scheduler still listening");
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the scheduler returns soon after being told to stop")
            .expect("the scheduler task did not panic");
    }
}

/// Creates a node with `cpu` CPUs, 8 GiB, 110 pods and a Ready condition of `ready`.
async fn create_node(client: &kube::Client, name: &str, cpu: &str, ready: &str, extra: Value) {
    let nodes: Api<Node> = Api::all(client.clone());
    let resources = json!({"cpu": cpu, "memory": "8Gi", "pods": "110"});
    let status = json!({"capacity": resources, "allocatable": resources,
        "conditions": [{"type": "Ready", "status": ready, "reason": "Test"}]});
    let mut node = json!({"metadata": {"name": name}, "spec": {}});
    merge(&mut node, &extra);
    node["status"] = status.clone();
    let node: Node = serde_json::from_value(node).expect("node");
    let created = nodes.create(&PostParams::default(), &node).await.expect("create node");
    // Our API server keeps a Node's status on create, as Kubernetes does; should that change,
    // the status subresource still sets it.
    if created.status.as_ref().and_then(|s| s.allocatable.as_ref()).is_none() {
        let patch = Patch::Merge(json!({"status": status}));
        nodes.patch_status(name, &PatchParams::default(), &patch).await.expect("node status");
    }
}

fn merge(target: &mut Value, extra: &Value) {
    match (target, extra) {
        (Value::Object(target), Value::Object(extra)) => {
            for (key, value) in extra {
                merge(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (target, extra) => *target = extra.clone(),
    }
}

/// Creates pod `name` requesting `cpu`, with `extra` merged into the object.
async fn create_pod(client: &kube::Client, name: &str, cpu: &str, extra: Value) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut pod = json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": "host",
            "resources": {"requests": {"cpu": cpu}}}]},
    });
    merge(&mut pod, &extra);
    let pod: Pod = serde_json::from_value(pod).expect("pod");
    pods.create(&PostParams::default(), &pod).await.expect("create pod");
}

fn owned_by(uid: &str) -> Value {
    json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "name": "web", "uid": uid, "controller": true}]}})
}

async fn node_of(client: &kube::Client, pod: &str) -> Option<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod = pods.get(pod).await.ok()?;
    pod.spec?.node_name.filter(|n| !n.is_empty())
}

async fn wait_bound(client: &kube::Client, pod: &str) -> String {
    common::eventually(30, &format!("pod {pod} to be bound"), || node_of(client, pod)).await
}

/// The message of the newest event with `reason` about pod `pod`, once there is one.
async fn event_message(client: &kube::Client, pod: &str, reason: &str) -> String {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let what = format!("a {reason} event for {pod}");
    common::eventually(30, &what, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        let event = list.items.into_iter().rev().find(|e| {
            e.involved_object.name.as_deref() == Some(pod) && e.reason.as_deref() == Some(reason)
        })?;
        assert_eq!(event.involved_object.kind.as_deref(), Some("Pod"));
        let source = event.source.as_ref().and_then(|s| s.component.as_deref());
        assert_eq!(source, Some("default-scheduler"));
        event.message
    })
    .await
}

/// The pod's PodScheduled condition as (status, reason, message).
async fn scheduled_condition(client: &kube::Client, pod: &str) -> Option<(String, String, String)> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod = pods.get(pod).await.ok()?;
    let condition = pod.status?.conditions?.into_iter().find(|c| c.type_ == "PodScheduled")?;
    Some((
        condition.status,
        condition.reason.unwrap_or_default(),
        condition.message.unwrap_or_default(),
    ))
}

/// Waits until the pod's PodScheduled condition has `status`, and returns it.
async fn wait_condition(
    client: &kube::Client,
    pod: &str,
    status: &str,
) -> (String, String, String) {
    let what = format!("PodScheduled={status} on {pod}");
    common::eventually(30, &what, || async {
        scheduled_condition(client, pod).await.filter(|c| c.0 == status)
    })
    .await
}

/// The value of counter `name` with label `result`, summed over other labels.
fn counter(registry: &prometheus::Registry, name: &str, result: &str) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|family| family.name() == name)
        .flat_map(|family| family.get_metric().iter())
        .filter(|m| m.get_label().iter().any(|l| l.name() == "result" && l.value() == result))
        .map(|m| m.get_counter().get_value())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binds_pods_to_fitting_nodes_spreads_replicas_and_waits_for_room() {
    let cluster = common::start("127.0.86.1").await;
    let client = &cluster.client;
    for name in ["n1", "n2", "n3"] {
        create_node(client, name, "4", "True", json!({})).await;
    }
    let registry = prometheus::Registry::new();
    let scheduler = scheduler_client(&cluster).await;
    let running = start_scheduler(&scheduler, &registry);

    // Six replicas of one ReplicaSet over three equal nodes: two on each.
    for i in 0..6 {
        create_pod(client, &format!("web-{i}"), "100m", owned_by("rs-web-uid")).await;
    }
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..6 {
        *per_node.entry(wait_bound(client, &format!("web-{i}")).await).or_default() += 1;
    }
    let expected: BTreeMap<String, usize> =
        [("n1".to_string(), 2), ("n2".to_string(), 2), ("n3".to_string(), 2)].into();
    assert_eq!(per_node, expected);
    let node = node_of(client, "web-0").await.expect("bound");
    assert_eq!(
        event_message(client, "web-0", "Scheduled").await,
        format!("Successfully assigned default/web-0 to {node}")
    );

    // Three pods of 3 CPUs: each needs a node of its own (3.8 CPUs free on each).
    for i in 0..3 {
        create_pod(client, &format!("large-{i}"), "3", json!({})).await;
    }
    let mut large_nodes = Vec::new();
    for i in 0..3 {
        large_nodes.push(wait_bound(client, &format!("large-{i}")).await);
    }
    large_nodes.sort();
    assert_eq!(large_nodes, ["n1", "n2", "n3"]);

    // A fourth fits nowhere: it waits, and says why as kube-scheduler would.
    create_pod(client, "large-3", "3", json!({})).await;
    let reason = "0/3 nodes are available: 3 Insufficient cpu.";
    assert_eq!(event_message(client, "large-3", "FailedScheduling").await, reason);
    let condition = wait_condition(client, "large-3", "False").await;
    assert_eq!(condition, ("False".into(), "Unschedulable".into(), reason.into()));
    assert_eq!(node_of(client, "large-3").await, None);

    // A node with room appears: the waiting pod goes there, and is marked scheduled.
    create_node(client, "n4", "4", "True", json!({})).await;
    assert_eq!(wait_bound(client, "large-3").await, "n4");
    let condition = wait_condition(client, "large-3", "True").await;
    assert_eq!(condition.0, "True");

    assert!(counter(&registry, "scheduler_schedule_attempts_total", "scheduled") >= 10.0);
    assert!(counter(&registry, "scheduler_schedule_attempts_total", "unschedulable") >= 1.0);

    // Stopping leaves nothing registered; running again starts from scratch and schedules.
    running.stop().await;
    let names: Vec<String> = registry.gather().iter().map(|f| f.name().to_string()).collect();
    assert!(!names.iter().any(|n| n.starts_with("scheduler_")), "{names:?}");
    let running = start_scheduler(&scheduler, &registry);
    // n1..n3 have 800m left, n4 1 CPU.
    create_pod(client, "after-restart", "900m", json!({})).await;
    assert_eq!(wait_bound(client, "after-restart").await, "n4");
    // The scheduler counts an attempt after its binding call returns, so a watcher may see the
    // pod bound a moment before the count moves.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while counter(&registry, "scheduler_schedule_attempts_total", "scheduled") < 1.0
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(counter(&registry, "scheduler_schedule_attempts_total", "scheduled"), 1.0);
    running.stop().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfit_pod_reports_every_reason_and_binds_when_a_node_becomes_ready() {
    let cluster = common::start("127.0.86.2").await;
    let client = &cluster.client;
    create_node(client, "small-a", "1", "True", json!({})).await;
    create_node(client, "small-b", "1", "True", json!({})).await;
    create_node(client, "big", "8", "Unknown", json!({})).await;
    let registry = prometheus::Registry::new();
    let scheduler = scheduler_client(&cluster).await;
    let running = start_scheduler(&scheduler, &registry);

    create_pod(client, "wide", "2", json!({})).await;
    let reason = "0/3 nodes are available: 1 node(s) had untolerated taint \
                  {node.kubernetes.io/unreachable: }, 2 Insufficient cpu.";
    assert_eq!(event_message(client, "wide", "FailedScheduling").await, reason);
    let condition = wait_condition(client, "wide", "False").await;
    assert_eq!(condition, ("False".into(), "Unschedulable".into(), reason.into()));

    // The big node reports Ready: the pod goes there.
    let nodes: Api<Node> = Api::all(client.clone());
    let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    nodes
        .patch_status("big", &PatchParams::default(), &Patch::Strategic(ready))
        .await
        .expect("mark ready");
    assert_eq!(wait_bound(client, "wide").await, "big");
    running.stop().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_selectors_taints_tolerations_and_cordons_are_respected() {
    let cluster = common::start("127.0.86.3").await;
    let client = &cluster.client;
    create_node(client, "ssd", "4", "True", json!({"metadata": {"labels": {"disk": "ssd"}}})).await;
    let taint = json!({"spec": {"taints": [{"key": "dedicated", "value": "db",
        "effect": "NoSchedule"}]}});
    create_node(client, "db", "4", "True", taint).await;
    create_node(client, "cordoned", "4", "True", json!({"spec": {"unschedulable": true}})).await;
    let registry = prometheus::Registry::new();
    let scheduler = scheduler_client(&cluster).await;
    let running = start_scheduler(&scheduler, &registry);

    // Someone else's pod is left alone.
    create_pod(client, "other", "100m", json!({"spec": {"schedulerName": "other-scheduler"}}))
        .await;
    create_pod(client, "wants-ssd", "100m", json!({"spec": {"nodeSelector": {"disk": "ssd"}}}))
        .await;
    let database = json!({"spec": {
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db",
            "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchFields":
                [{"key": "metadata.name", "operator": "In", "values": ["db"]}]}]}}},
    }});
    create_pod(client, "database", "100m", database).await;
    for i in 0..3 {
        create_pod(client, &format!("plain-{i}"), "100m", json!({})).await;
    }
    assert_eq!(wait_bound(client, "wants-ssd").await, "ssd");
    assert_eq!(wait_bound(client, "database").await, "db");
    for i in 0..3 {
        // Not the tainted node, not the cordoned one.
        assert_eq!(wait_bound(client, &format!("plain-{i}")).await, "ssd");
    }

    create_pod(client, "wants-hdd", "100m", json!({"spec": {"nodeSelector": {"disk": "hdd"}}}))
        .await;
    assert_eq!(
        event_message(client, "wants-hdd", "FailedScheduling").await,
        "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
         1 node(s) had untolerated taint {dedicated: db}, 1 node(s) were unschedulable."
    );
    assert_eq!(node_of(client, "other").await, None, "pods of other schedulers stay unbound");
    assert_eq!(scheduled_condition(client, "other").await, None);

    // A pod tolerating the cordon may use the cordoned node; too big for the ssd node's
    // remaining 3.6 CPUs and not tolerating the db taint, it must.
    let tolerant = json!({"spec": {
        "tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists",
            "effect": "NoSchedule"}],
    }});
    create_pod(client, "tolerant", "3700m", tolerant).await;
    assert_eq!(wait_bound(client, "tolerant").await, "cordoned");
    running.stop().await;
    cluster.stop().await;
}
