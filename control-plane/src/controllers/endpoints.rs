//! The endpoints controller: keeps an Endpoints object, named like its Service, listing the
//! IPs and ports of the pods the Service selects.
//! - Ready pods go in `addresses`, the others in `notReadyAddresses`; with
//!   `publishNotReadyAddresses` all count as ready.
//! - Named target ports are resolved per pod from its containers' ports. Pods whose port
//!   numbers differ land in different subsets, as Kubernetes packs them.
//! - Services without a selector are left alone: their Endpoints are the user's.
//!
//! Skiff's Endpoints carry an owner reference to their Service, so the garbage collector
//! removes them with it. Kubernetes' own endpoints controller deletes them itself instead.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use tokio::sync::watch;

use super::{Context, ReconcileError};

const NAME: &str = "endpoints";

/// A pod's resolved ports: (name, number, protocol) per Service port.
type PortList = Vec<(String, i32, String)>;

struct State {
    context: Arc<Context>,
    pods: Store<Pod>,
}

/// Runs the controller until `stop` turns true.
pub async fn run(context: Arc<Context>, stop: watch::Receiver<bool>) {
    let client = context.client.clone();
    let (pods, pod_events) = super::reflect(Api::<Pod>::all(client.clone()));
    let controller =
        Controller::new(Api::<Service>::all(client.clone()), watcher::Config::default());
    let services = controller.store();
    let concurrency = context.config.concurrency;
    let state = Arc::new(State { context, pods });
    controller
        .owns(Api::<Endpoints>::all(client), watcher::Config::default())
        .watches_stream(pod_events, move |pod: Pod| selecting(&services, &pod))
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(super::stopped(stop))
        .run(reconcile, error_policy, state)
        .for_each(|_| async {})
        .await;
}

/// The Services in the pod's namespace whose selector matches it.
fn selecting(services: &Store<Service>, pod: &Pod) -> Vec<ObjectRef<Service>> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    services
        .state()
        .iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .filter(|s| {
            let selector = s.spec.as_ref().and_then(|spec| spec.selector.clone());
            selector.is_some_and(|sel| {
                !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
        })
        .map(|s| ObjectRef::from(s.as_ref()))
        .collect()
}

fn error_policy(_s: Arc<Service>, error: &ReconcileError, _state: Arc<State>) -> Action {
    tracing::debug!(%error, "endpoints reconcile failed");
    Action::requeue(Duration::from_secs(2))
}

async fn reconcile(service: Arc<Service>, state: Arc<State>) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let result = sync(&service, &state).await;
    state.context.metrics.observe(NAME, result.is_ok(), started.elapsed().as_secs_f64());
    result
}

/// The port a Service port reaches on `pod`: a number, or a named container port.
fn target_port(port: &k8s_openapi::api::core::v1::ServicePort, pod: &Pod) -> Option<i32> {
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => match name.parse::<i32>() {
            Ok(n) => Some(n),
            Err(_) => pod.spec.as_ref()?.containers.iter().find_map(|c| {
                c.ports.iter().flatten().find_map(|p| {
                    let protocol = p.protocol.as_deref().unwrap_or("TCP");
                    let wanted = port.protocol.as_deref().unwrap_or("TCP");
                    (p.name.as_deref() == Some(name.as_str()) && protocol == wanted)
                        .then_some(p.container_port)
                })
            }),
        },
    }
}

/// The subsets for `service` over `pods` (already in its namespace and selected).
pub fn subsets(service: &Service, pods: &[&Pod]) -> Vec<EndpointSubset> {
    let Some(spec) = service.spec.as_ref() else { return Vec::new() };
    let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
    // Pods grouped by their resolved port list.
    let mut groups: BTreeMap<PortList, (Vec<EndpointAddress>, Vec<EndpointAddress>)> =
        BTreeMap::new();
    for pod in pods {
        let status = pod.status.as_ref();
        let Some(ip) = status.and_then(|s| s.pod_ip.clone()).filter(|ip| !ip.is_empty()) else {
            continue;
        };
        if pod.metadata.deletion_timestamp.is_some() && !publish_not_ready {
            continue;
        }
        if matches!(status.and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")) {
            continue;
        }
        let ports: Option<PortList> = spec
            .ports
            .iter()
            .flatten()
            .map(|p| {
                target_port(p, pod).map(|n| {
                    (
                        p.name.clone().unwrap_or_default(),
                        n,
                        p.protocol.clone().unwrap_or("TCP".into()),
                    )
                })
            })
            .collect();
        // A pod lacking a named port is left out, as Kubernetes does.
        let Some(ports) = ports else { continue };
        let address = EndpointAddress {
            ip,
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            hostname: None,
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                namespace: pod.metadata.namespace.clone(),
                uid: pod.metadata.uid.clone(),
                ..ObjectReference::default()
            }),
        };
        let group = groups.entry(ports).or_default();
        if publish_not_ready || super::pod_is_ready(pod) {
            group.0.push(address);
        } else {
            group.1.push(address);
        }
    }
    groups
        .into_iter()
        .map(|(ports, (mut ready, mut not_ready))| {
            ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            not_ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then(|| {
                    ports
                        .into_iter()
                        .map(|(name, port, protocol)| EndpointPort {
                            name: (!name.is_empty()).then_some(name),
                            port,
                            protocol: Some(protocol),
                            app_protocol: None,
                        })
                        .collect()
                }),
            }
        })
        .collect()
}

async fn sync(service: &Service, state: &State) -> Result<Action, ReconcileError> {
    let selector = service.spec.as_ref().and_then(|s| s.selector.clone()).unwrap_or_default();
    if selector.is_empty() || service.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    super::loaded(&state.pods, "pod").await?;
    let namespace = service.metadata.namespace.clone().unwrap_or_default();
    let name = service.metadata.name.clone().unwrap_or_default();
    let all = state.pods.state();
    let selected: Vec<&Pod> = all
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .filter(|p| {
            let labels = p.metadata.labels.clone().unwrap_or_default();
            selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
        .collect();
    let subsets = subsets(service, &selected);
    let api: Api<Endpoints> = Api::namespaced(state.context.client.clone(), &namespace);
    let owner = OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: name.clone(),
        uid: service.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    };
    let labels = service.metadata.labels.clone();
    let current = api.get_opt(&name).await?;
    let wanted_subsets = (!subsets.is_empty()).then_some(subsets);
    match current {
        Some(mut endpoints) => {
            let same = endpoints.subsets == wanted_subsets
                && endpoints.metadata.labels == labels
                && endpoints.metadata.owner_references.as_ref() == Some(&vec![owner.clone()]);
            if same {
                return Ok(Action::requeue(Duration::from_secs(300)));
            }
            endpoints.subsets = wanted_subsets;
            endpoints.metadata.labels = labels;
            endpoints.metadata.owner_references = Some(vec![owner]);
            // A replace carries the resourceVersion read: a concurrent change conflicts and
            // the reconcile runs again on fresh data.
            api.replace(&name, &PostParams::default(), &endpoints).await?;
        }
        None => {
            let endpoints = Endpoints {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(namespace.clone()),
                    labels,
                    owner_references: Some(vec![owner]),
                    ..ObjectMeta::default()
                },
                subsets: wanted_subsets,
            };
            api.create(&PostParams::default(), &endpoints).await?;
        }
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ip: &str, ready: bool, port_name: &str, port: i32) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i",
                "ports": [{"name": port_name, "containerPort": port}]}]},
            "status": {"phase": "Running", "podIP": ip, "conditions": [
                {"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        }))
        .expect("pod")
    }

    #[test]
    fn ready_and_not_ready_pods_and_named_ports() {
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"}, "ports": [
                {"name": "http", "port": 80, "targetPort": "web"}]}
        }))
        .expect("service");
        let a = pod("a", "10.0.0.2", true, "web", 8080);
        let b = pod("b", "10.0.0.1", false, "web", 8080);
        let c = pod("c", "10.0.0.3", true, "web", 9090);
        let d = pod("d", "10.0.0.4", true, "other", 7000);
        let subsets = subsets(&service, &[&a, &b, &c, &d]);
        assert_eq!(subsets.len(), 2, "pods with different ports form different subsets");
        let first = &subsets[0];
        let ips = |list: &Option<Vec<EndpointAddress>>| -> Vec<String> {
            list.iter().flatten().map(|a| a.ip.clone()).collect()
        };
        assert_eq!(ips(&first.addresses), vec!["10.0.0.2"]);
        assert_eq!(ips(&first.not_ready_addresses), vec!["10.0.0.1"]);
        assert_eq!(first.ports.as_ref().expect("ports")[0].port, 8080);
        assert_eq!(ips(&subsets[1].addresses), vec!["10.0.0.3"]);
        assert_eq!(subsets[1].ports.as_ref().expect("ports")[0].port, 9090);
        assert_eq!(
            first.addresses.as_ref().expect("ready")[0]
                .target_ref
                .as_ref()
                .and_then(|r| r.name.clone()),
            Some("a".to_string())
        );
    }
}
