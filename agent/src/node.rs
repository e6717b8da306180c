//! The agent's Node: registration (capacity and allocatable from the host, addresses, labels,
//! the agent's port as `daemonEndpoints.kubeletEndpoint`, `nodeInfo`), the node Lease in
//! `kube-node-lease` renewed every quarter of its duration, and the status heartbeat: the
//! conditions Ready, MemoryPressure, DiskPressure and PIDPressure, computed every
//! [`NODE_STATUS_UPDATE_PERIOD_MS`] and posted when they changed or every
//! [`NODE_STATUS_REPORT_PERIOD_MS`], as the kubelet does.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::watch;

use crate::host::{self, HostFacts};
use crate::limits::{
    API_RETRY_MS, MEMORY_AVAILABLE_BYTES_MIN, NODE_LEASE_RENEW_DIVISOR,
    NODE_STATUS_REPORT_PERIOD_MS, NODE_STATUS_UPDATE_PERIOD_MS, PODS_MAX,
};

const LEASE_NAMESPACE: &str = "kube-node-lease";

/// What the Node says about itself.
#[derive(Clone, Debug)]
pub struct NodeIdentity {
    pub name: String,
    pub ip: String,
    pub port: u16,
    pub runtime_version: String,
    pub root_dir: std::path::PathBuf,
    pub lease_duration_seconds: i32,
}

fn resources(facts: &HostFacts, allocatable: bool) -> BTreeMap<String, Quantity> {
    let mut memory = facts.memory_bytes;
    if allocatable {
        // The hard eviction threshold is not allocatable (kubelet: capacity - reserved -
        // eviction threshold).
        memory = memory.saturating_sub(MEMORY_AVAILABLE_BYTES_MIN);
    }
    [
        ("cpu", facts.cpus.to_string()),
        ("memory", format!("{}Ki", memory / 1024)),
        ("ephemeral-storage", format!("{}Ki", facts.disk_bytes / 1024)),
        ("pods", PODS_MAX.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Quantity(v)))
    .collect()
}

/// The node's conditions from host facts, keeping transition times from `previous`.
pub fn conditions(
    facts: &HostFacts,
    previous: &[NodeCondition],
    now: Timestamp,
) -> Vec<NodeCondition> {
    let make = |kind: &str, status: bool, reason: &str, message: &str| {
        let status = if status { "True" } else { "False" };
        let transition = previous
            .iter()
            .find(|c| c.type_ == kind && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        NodeCondition {
            type_: kind.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_heartbeat_time: Some(Time(now)),
            last_transition_time: Some(transition),
        }
    };
    let memory = facts.memory_pressure();
    let disk = facts.disk_pressure();
    let pid = facts.pid_pressure();
    vec![
        if memory {
            make(
                "MemoryPressure",
                true,
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            )
        } else {
            make(
                "MemoryPressure",
                false,
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            )
        },
        if disk {
            make("DiskPressure", true, "KubeletHasDiskPressure", "kubelet has disk pressure")
        } else {
            make("DiskPressure", false, "KubeletHasNoDiskPressure", "kubelet has no disk pressure")
        },
        if pid {
            make(
                "PIDPressure",
                true,
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
            )
        } else {
            make(
                "PIDPressure",
                false,
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            )
        },
        make("Ready", true, "KubeletReady", "kubelet is posting ready status"),
    ]
}

fn node_status(
    identity: &NodeIdentity,
    facts: &HostFacts,
    previous: &[NodeCondition],
) -> NodeStatus {
    NodeStatus {
        capacity: Some(resources(facts, false)),
        allocatable: Some(resources(facts, true)),
        conditions: Some(conditions(facts, previous, Timestamp::now())),
        addresses: Some(vec![
            NodeAddress { type_: "InternalIP".into(), address: identity.ip.clone() },
            NodeAddress { type_: "Hostname".into(), address: identity.name.clone() },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: identity.port.into() }),
        }),
        node_info: Some(host::node_info(&identity.runtime_version)),
        ..NodeStatus::default()
    }
}

fn labels(identity: &NodeIdentity) -> BTreeMap<String, String> {
    [
        ("kubernetes.io/hostname", identity.name.clone()),
        ("kubernetes.io/os", "linux".into()),
        ("kubernetes.io/arch", host::architecture().into()),
        ("beta.kubernetes.io/os", "linux".into()),
        ("beta.kubernetes.io/arch", host::architecture().into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Creates the Node (or updates its labels) and posts its status; returns the Node's uid.
pub async fn register(
    client: &kube::Client,
    identity: &NodeIdentity,
) -> Result<String, kube::Error> {
    let api: Api<Node> = Api::all(client.clone());
    let node = Node {
        metadata: ObjectMeta {
            name: Some(identity.name.clone()),
            labels: Some(labels(identity)),
            ..ObjectMeta::default()
        },
        ..Node::default()
    };
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => tracing::info!(node = %identity.name, "node registered"),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let patch = json!({"metadata": {"labels": labels(identity)}});
            api.patch(&identity.name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            tracing::info!(node = %identity.name, "node exists; updated");
        }
        Err(error) => return Err(error),
    }
    let facts = HostFacts::read(&identity.root_dir);
    let patch = json!({"status": node_status(identity, &facts, &[])});
    let node =
        api.patch_status(&identity.name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(node.metadata.uid.unwrap_or_default())
}

async fn renew_lease(
    client: &kube::Client,
    identity: &NodeIdentity,
    node_uid: &str,
) -> Result<(), kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let now = MicroTime(Timestamp::now());
    let patch = json!({"spec": {"holderIdentity": identity.name,
        "leaseDurationSeconds": identity.lease_duration_seconds, "renewTime": now}});
    match api.patch(&identity.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(identity.name.clone()),
                    namespace: Some(LEASE_NAMESPACE.into()),
                    // The Lease goes when its Node goes.
                    owner_references: Some(vec![OwnerReference {
                        api_version: "v1".into(),
                        kind: "Node".into(),
                        name: identity.name.clone(),
                        uid: node_uid.to_string(),
                        ..OwnerReference::default()
                    }]),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(identity.name.clone()),
                    lease_duration_seconds: Some(identity.lease_duration_seconds),
                    renew_time: Some(now),
                    ..LeaseSpec::default()
                }),
            };
            api.create(&PostParams::default(), &lease).await.map(|_| ())
        }
        Err(error) => Err(error),
    }
}

/// Registers the node, then renews its Lease and posts its status until `stop`.
pub async fn run(client: kube::Client, identity: NodeIdentity, mut stop: watch::Receiver<bool>) {
    let node_uid = loop {
        match register(&client, &identity).await {
            Ok(uid) => break uid,
            Err(error) => {
                tracing::warn!(%error, node = %identity.name, "cannot register the node; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(API_RETRY_MS)) => {}
                    _ = crate::stopped(&mut stop) => return,
                }
            }
        }
    };
    let renew_every = Duration::from_secs(identity.lease_duration_seconds.max(1) as u64)
        / NODE_LEASE_RENEW_DIVISOR;
    let mut renew = tokio::time::interval(renew_every);
    let mut update = tokio::time::interval(Duration::from_millis(NODE_STATUS_UPDATE_PERIOD_MS));
    let api: Api<Node> = Api::all(client.clone());
    let mut posted: Option<(Vec<(String, String)>, tokio::time::Instant)> = None;
    loop {
        tokio::select! {
            _ = renew.tick() => {
                if let Err(error) = renew_lease(&client, &identity, &node_uid).await {
                    tracing::warn!(%error, "cannot renew the node lease");
                }
            }
            _ = update.tick() => {
                let previous = match api.get(&identity.name).await {
                    Ok(node) => node.status.and_then(|s| s.conditions).unwrap_or_default(),
                    Err(error) => {
                        tracing::warn!(%error, "cannot read the node");
                        continue;
                    }
                };
                let facts = HostFacts::read(&identity.root_dir);
                let status = node_status(&identity, &facts, &previous);
                let summary: Vec<(String, String)> = status.conditions.iter().flatten()
                    .map(|c| (c.type_.clone(), c.status.clone())).collect();
                let theirs: Vec<(String, String)> = previous.iter()
                    .map(|c| (c.type_.clone(), c.status.clone())).collect();
                let due = posted.as_ref().is_none_or(|(last, at)| {
                    *last != summary || theirs != summary
                        || at.elapsed() >= Duration::from_millis(NODE_STATUS_REPORT_PERIOD_MS)
                });
                if !due {
                    continue;
                }
                let patch = json!({"status": status});
                let params = PatchParams::default();
                match api.patch_status(&identity.name, &params, &Patch::Merge(&patch)).await {
                    Ok(_) => posted = Some((summary, tokio::time::Instant::now())),
                    Err(error) => tracing::warn!(%error, "cannot post node status"),
                }
            }
            _ = crate::stopped(&mut stop) => return,
        }
    }
}
