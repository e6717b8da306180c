//! Hollow nodes, for scale tests and benchmarks (Kubernetes' kubemark): each registers a Node,
//! renews its Lease in `kube-node-lease` every 10 s and reports the pods bound to it Running
//! and Ready, without running anything. Hundreds or thousands fit in one process: they share
//! one client, one pod watch and one renewal loop.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;
use tokio::sync::{watch, Semaphore};

use crate::limits::HOLLOW_STATUS_WRITES_IN_FLIGHT;

/// What the hollow nodes look like.
#[derive(Clone, Debug)]
pub struct HollowConfig {
    /// Node names are `<prefix><index>`.
    pub name_prefix: String,
    pub count: usize,
    /// First index (so several processes can share a prefix).
    pub first_index: usize,
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
    /// Lease renewal period (Kubernetes' kubelet: 10 s).
    pub lease_renew: Duration,
}

impl HollowConfig {
    /// `count` nodes named `<prefix>0`…, each 4 CPUs, 16 GiB and 110 pods, as a typical kubelet.
    pub fn new(name_prefix: &str, count: usize) -> HollowConfig {
        HollowConfig {
            name_prefix: name_prefix.to_string(),
            count,
            first_index: 0,
            cpu: "4".into(),
            memory: "16Gi".into(),
            pods: 110,
            lease_renew: Duration::from_secs(10),
        }
    }

    /// The nodes' names.
    pub fn names(&self) -> Vec<String> {
        (self.first_index..self.first_index + self.count)
            .map(|i| format!("{}{i}", self.name_prefix))
            .collect()
    }
}

fn ready_condition(now: &Time) -> NodeCondition {
    NodeCondition {
        type_: "Ready".into(),
        status: "True".into(),
        reason: Some("KubeletReady".into()),
        message: Some("hollow node is posting ready status".into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    }
}

fn node_object(config: &HollowConfig, index: usize, name: &str) -> Node {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let resources: BTreeMap<String, Quantity> = [
        ("cpu", config.cpu.clone()),
        ("memory", config.memory.clone()),
        ("pods", config.pods.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Quantity(v)))
    .collect();
    let labels = [
        ("kubernetes.io/hostname", name.to_string()),
        ("kubernetes.io/os", "linux".to_string()),
        ("skiff.dev/hollow", "true".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec { pod_cidr: Some(pod_cidr(index)), ..NodeSpec::default() }),
        status: Some(NodeStatus {
            capacity: Some(resources.clone()),
            allocatable: Some(resources),
            conditions: Some(vec![ready_condition(&now)]),
            addresses: Some(vec![
                NodeAddress { type_: "InternalIP".into(), address: node_ip(index) },
                NodeAddress { type_: "Hostname".into(), address: name.to_string() },
            ]),
            ..NodeStatus::default()
        }),
    }
}

/// Hollow addresses are data only: nothing is ever sent to them (no agent routes to them).
fn node_ip(index: usize) -> String {
    format!("10.{}.{}.{}", 200 + index / 65_536 % 50, index / 256 % 256, index % 256)
}

fn pod_cidr(index: usize) -> String {
    format!("10.{}.{}.0/24", 100 + index / 256 % 100, index % 256)
}

/// Registers the nodes (creating them, or marking existing ones Ready again).
async fn register(client: &kube::Client, config: &HollowConfig) -> Result<(), kube::Error> {
    let api: Api<Node> = Api::all(client.clone());
    let names = config.names();
    let writes = Arc::new(Semaphore::new(HOLLOW_STATUS_WRITES_IN_FLIGHT));
    let results = futures::future::join_all(names.iter().enumerate().map(|(offset, name)| {
        let api = api.clone();
        let writes = writes.clone();
        let node = node_object(config, config.first_index + offset, name);
        async move {
            let _permit = writes.acquire().await.expect("semaphore open");
            match api.create(&PostParams::default(), &node).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(error) => return Err(error),
            }
            // Status is not taken from a create: set it through the subresource.
            let patch = json!({"status": node.status});
            api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            Ok(())
        }
    }))
    .await;
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    Ok(())
}

/// Renews every node's Lease once (creating missing ones).
async fn renew_leases(client: &kube::Client, config: &HollowConfig) {
    let api: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let writes = Arc::new(Semaphore::new(HOLLOW_STATUS_WRITES_IN_FLIGHT));
    futures::future::join_all(config.names().into_iter().map(|name| {
        let api = api.clone();
        let writes = writes.clone();
        async move {
            let _permit = writes.acquire().await.expect("semaphore open");
            let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
            let patch = json!({"spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                "renewTime": now}});
            let result =
                match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                    Err(kube::Error::Api(status)) if status.code == 404 => {
                        let lease = Lease {
                            metadata: ObjectMeta {
                                name: Some(name.clone()),
                                namespace: Some("kube-node-lease".into()),
                                ..ObjectMeta::default()
                            },
                            spec: Some(LeaseSpec {
                                holder_identity: Some(name.clone()),
                                lease_duration_seconds: Some(40),
                                renew_time: Some(now),
                                ..LeaseSpec::default()
                            }),
                        };
                        api.create(&PostParams::default(), &lease).await.map(|_| ())
                    }
                    other => other.map(|_| ()),
                };
            if let Err(error) = result {
                tracing::warn!(node = %name, %error, "cannot renew hollow node lease");
            }
        }
    }))
    .await;
}

/// The status a kubelet would report for a pod whose containers all started and are ready.
fn running_status(pod: &Pod, node_ip: &str, pod_ip: &str) -> serde_json::Value {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let containers: Vec<serde_json::Value> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| {
            json!({"name": c.name, "image": c.image.clone().unwrap_or_default(),
                "imageID": "", "ready": true, "started": true, "restartCount": 0,
                "state": {"running": {"startedAt": now}}})
        })
        .collect();
    let condition = |kind: &str| json!({"type": kind, "status": "True", "lastTransitionTime": now});
    json!({"status": {
        "phase": "Running",
        "hostIP": node_ip,
        "hostIPs": [{"ip": node_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": now,
        "conditions": [condition("PodScheduled"), condition("Initialized"),
            condition("ContainersReady"), condition("Ready")],
        "containerStatuses": containers,
    }})
}

/// Running and Ready, as reported. A pod the node lifecycle controller marked not Ready while
/// the node was silent is reported again when the node's agent starts again, as a kubelet
/// resyncing its pods' status would.
fn is_reported_running(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    status.and_then(|s| s.phase.as_deref()) == Some("Running") && ready
}

/// Runs the hollow nodes until `stop` turns true: registers them, then renews Leases and
/// reports bound pods Running.
pub async fn run(
    client: kube::Client,
    config: HollowConfig,
    stop: watch::Receiver<bool>,
) -> Result<(), kube::Error> {
    // The API server may still be starting: retry for a while before giving up.
    let mut attempts = 0;
    while let Err(error) = register(&client, &config).await {
        attempts += 1;
        if attempts >= 60 || *stop.borrow() {
            return Err(error);
        }
        tracing::info!(%error, "cannot register hollow nodes yet; retrying");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tracing::info!(count = config.count, prefix = %config.name_prefix, "hollow nodes registered");
    let renewer = {
        let client = client.clone();
        let config = config.clone();
        let mut stop = stop.clone();
        async move {
            loop {
                renew_leases(&client, &config).await;
                tokio::select! {
                    _ = tokio::time::sleep(config.lease_renew) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
    };
    let indexes: HashMap<String, usize> = config
        .names()
        .into_iter()
        .enumerate()
        .map(|(offset, name)| (name, config.first_index + offset))
        .collect();
    let pods = report_pods(client, indexes, stop.clone());
    tokio::join!(renewer, pods);
    Ok(())
}

async fn report_pods(
    client: kube::Client,
    nodes: HashMap<String, usize>,
    mut stop: watch::Receiver<bool>,
) {
    let api: Api<Pod> = Api::all(client.clone());
    let writes = Arc::new(Semaphore::new(HOLLOW_STATUS_WRITES_IN_FLIGHT));
    // Pod IPs handed out per node (the last octet of the node's pod CIDR).
    let mut next_ip: HashMap<String, u32> = HashMap::new();
    let mut reported: HashSet<String> = HashSet::new();
    let mut events = watcher(api, watcher::Config::default()).default_backoff().boxed();
    loop {
        let event = tokio::select! {
            next = events.try_next() => match next {
                Ok(Some(event)) => event,
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(%error, "hollow nodes' pod watch failed");
                    continue;
                }
            },
            _ = stop.wait_for(|s| *s) => return,
        };
        let pod = match event {
            watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => pod,
            watcher::Event::Delete(pod) => {
                reported.remove(pod.metadata.uid.as_deref().unwrap_or_default());
                continue;
            }
            watcher::Event::Init | watcher::Event::InitDone => continue,
        };
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else { continue };
        let Some(&index) = nodes.get(&node) else { continue };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if pod.metadata.deletion_timestamp.is_some() {
            // A hollow kubelet has nothing to stop: it completes a graceful deletion at once,
            // as a kubelet does once its containers are gone.
            finish_deletion(&client, &pod, writes.clone()).await;
            continue;
        }
        if is_reported_running(&pod) {
            reported.insert(uid);
            continue;
        }
        if !reported.insert(uid) {
            continue;
        }
        let counter = next_ip.entry(node.clone()).or_insert(1);
        let pod_ip =
            format!("{}.{}", pod_cidr(index).trim_end_matches(".0/24"), *counter % 254 + 1);
        *counter += 1;
        let status = running_status(&pod, &node_ip(index), &pod_ip);
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let permit = writes.clone().acquire_owned().await.expect("semaphore open");
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(error) =
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await
            {
                tracing::debug!(pod = %name, %error, "cannot report hollow pod running");
            }
        });
    }
}

/// Deletes a gracefully deleted pod for good (`gracePeriodSeconds=0`, uid precondition).
async fn finish_deletion(client: &kube::Client, pod: &Pod, writes: Arc<Semaphore>) {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let params = kube::api::DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(kube::api::Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..kube::api::DeleteParams::default()
    };
    let permit = writes.acquire_owned().await.expect("semaphore open");
    tokio::spawn(async move {
        let _permit = permit;
        if let Err(error) = api.delete(&name, &params).await {
            tracing::debug!(pod = %name, %error, "cannot finish a hollow pod's deletion");
        }
    });
}
