//! What a fresh cluster has before anyone writes: the system namespaces and Kubernetes'
//! default roles (cluster-admin, admin, edit, view, system:node, and the scheduler's and
//! controller manager's) with their bindings, and the `kubernetes` Service in `default`
//! (the first ClusterIP of the range, port 443) with Endpoints naming this API server.

use std::time::Duration;

use serde_json::{json, Value};

use super::server::ApiServer;

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] =
    &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

fn cluster_role(name: &str, rules: Vec<Value>) -> (String, Value) {
    let object = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
        "rules": rules});
    (format!("/registry/clusterroles/{name}"), object)
}

fn binding(name: &str, role: &str, group: &str) -> (String, Value) {
    let object = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}]});
    (format!("/registry/clusterrolebindings/{name}"), object)
}

fn user_binding(name: &str, role: &str, user: &str) -> (String, Value) {
    let object = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]});
    (format!("/registry/clusterrolebindings/{name}"), object)
}

fn namespace(name: &str) -> (String, Value) {
    let object = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
        "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
    (format!("/registry/namespaces/{name}"), object)
}

fn defaults() -> Vec<(String, Value)> {
    let workloads = [
        "pods",
        "services",
        "endpoints",
        "configmaps",
        "secrets",
        "serviceaccounts",
        "events",
        "deployments",
        "replicasets",
        "daemonsets",
        "controllerrevisions",
        "deployments/scale",
        "replicasets/scale",
        "pods/log",
    ];
    vec![
        namespace("default"),
        namespace("kube-system"),
        namespace("kube-public"),
        namespace("kube-node-lease"),
        cluster_role(
            "cluster-admin",
            vec![rule(&["*"], &["*"], &["*"]), json!({"nonResourceURLs": ["*"], "verbs": ["*"]})],
        ),
        cluster_role(
            "admin",
            vec![
                rule(&["", "apps", "coordination.k8s.io"], &workloads, WRITE),
                rule(&["rbac.authorization.k8s.io"], &["roles", "rolebindings"], WRITE),
                rule(&[""], &["resourcequotas", "limitranges"], READ),
            ],
        ),
        cluster_role(
            "edit",
            vec![
                rule(&["", "apps", "coordination.k8s.io"], &workloads, WRITE),
                rule(&[""], &["resourcequotas", "limitranges"], READ),
            ],
        ),
        cluster_role(
            "view",
            vec![rule(
                &["", "apps"],
                &[
                    "pods",
                    "services",
                    "endpoints",
                    "configmaps",
                    "serviceaccounts",
                    "events",
                    "deployments",
                    "replicasets",
                    "daemonsets",
                    "resourcequotas",
                    "limitranges",
                    "namespaces",
                ],
                READ,
            )],
        ),
        // What a node agent needs (Kubernetes also limits it to its own objects by admission).
        cluster_role(
            "system:node",
            vec![
                rule(&[""], &["nodes"], &["create", "get", "list", "watch", "update", "patch"]),
                rule(&[""], &["nodes/status", "pods/status"], &["patch", "update"]),
                // Not secrets or configmaps: the node authorizer grants a node exactly those its
                // own pods reference (`node_authorizer.rs`).
                rule(&[""], &["pods", "services", "endpoints"], READ),
                // Finishing graceful deletions (NodeRestriction: only its own pods).
                rule(&[""], &["pods"], &["delete"]),
                rule(&[""], &["events"], &["create", "patch", "update"]),
                rule(&["coordination.k8s.io"], &["leases"], &["create", "get", "update", "patch"]),
            ],
        ),
        // The master's own components, each with its own client certificate.
        cluster_role(
            "system:kube-scheduler",
            vec![
                rule(&[""], &["pods", "nodes"], READ),
                rule(&[""], &["pods/binding"], &["create"]),
                rule(&[""], &["pods/status"], &["patch", "update"]),
                rule(&[""], &["events"], &["create", "patch", "update"]),
                rule(&["coordination.k8s.io"], &["leases"], &["create", "get", "update"]),
            ],
        ),
        // Like kube-controller-manager's garbage collector, it must reach every kind.
        cluster_role(
            "system:kube-controller-manager",
            vec![
                rule(&["", "apps", "coordination.k8s.io"], &["*"], &["*"]),
                // The garbage collector watches and deletes every kind, RBAC's too.
                rule(
                    &["rbac.authorization.k8s.io"],
                    &["*"],
                    &["get", "list", "watch", "patch", "update", "delete"],
                ),
            ],
        ),
        binding("cluster-admin", "cluster-admin", "system:masters"),
        user_binding("system:kube-scheduler", "system:kube-scheduler", "system:kube-scheduler"),
        user_binding(
            "system:kube-controller-manager",
            "system:kube-controller-manager",
            "system:kube-controller-manager",
        ),
        binding("system:node", "system:node", "system:nodes"),
    ]
}

/// Creates what is missing (never overwrites what an operator changed), retrying while the
/// store is unreachable; the server reports ready (`/readyz`) only after this.
pub async fn ensure_defaults(server: &ApiServer) {
    for (key, mut object) in defaults() {
        object["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
        object["metadata"]["creationTimestamp"] = json!(super::objects::timestamp());
        let bytes = serde_json::to_vec(&object).expect("JSON");
        let mut pause = Duration::from_millis(100);
        while let Err(error) = server.backend.create(key.as_bytes(), bytes.clone(), 0).await {
            tracing::warn!(%key, %error, "cannot create a default object yet; retrying");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }
    let mut pause = Duration::from_millis(100);
    while let Err(error) = ensure_kubernetes_service(server).await {
        if error.code != 503 && error.code != 500 {
            tracing::warn!(%error.message, "cannot create the kubernetes Service");
            break;
        }
        tracing::warn!(%error.message, "cannot create the kubernetes Service yet; retrying");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// The `kubernetes` Service as kube-apiserver's bootstrap controller keeps it: the first IP
/// of the service range, port 443 (`https`) to the API servers' secure port, no selector;
/// and its Endpoints, to which every API server adds its own address (stale masters are not
/// removed: Kubernetes' lease-based endpoint reconciler is not implemented).
async fn ensure_kubernetes_service(server: &ApiServer) -> Result<(), super::status::ApiError> {
    let Some((host, port)) = server.address.rsplit_once(':') else { return Ok(()) };
    let port: u16 = port.parse().unwrap_or(6443);
    let cluster_ip = server.service_ranges.cluster_ips.address(0).to_string();
    let key = "/registry/services/default/kubernetes";
    if server.backend.get(key.as_bytes()).await?.0.is_none() {
        let service = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default",
                "uid": uuid::Uuid::new_v4().to_string(),
                "creationTimestamp": super::objects::timestamp(),
                "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "sessionAffinity": "None",
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
            "status": {"loadBalancer": {}}});
        match super::allocator::create(server, service, false).await {
            Err(error) if error.code != 409 => return Err(error),
            _ => {}
        }
    }
    let Ok(ip) = host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() else { return Ok(()) };
    add_endpoint_address(server, &ip.to_string(), port).await
}

/// Adds `ip` (serving on `port`) to the `kubernetes` Endpoints, by compare-and-swap.
async fn add_endpoint_address(
    server: &ApiServer,
    ip: &str,
    port: u16,
) -> Result<(), super::status::ApiError> {
    let key = "/registry/endpoints/default/kubernetes";
    let ports = json!([{"name": "https", "port": port, "protocol": "TCP"}]);
    loop {
        let (found, _) = server.backend.get(key.as_bytes()).await?;
        let mut endpoints = match &found {
            Some(kv) => serde_json::from_slice(&kv.value).unwrap_or_else(|_| json!({})),
            None => json!({"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": "kubernetes", "namespace": "default",
                    "uid": uuid::Uuid::new_v4().to_string(),
                    "creationTimestamp": super::objects::timestamp(),
                    "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                "subsets": []}),
        };
        if !endpoints["subsets"].is_array() {
            endpoints["subsets"] = json!([]);
        }
        let subsets = endpoints["subsets"].as_array_mut().expect("made an array");
        let subset = match subsets.iter().position(|s| s["ports"] == ports) {
            Some(index) => &mut subsets[index],
            None => {
                subsets.push(json!({"addresses": [], "ports": ports}));
                subsets.last_mut().expect("just pushed")
            }
        };
        let addresses = subset["addresses"].as_array().cloned().unwrap_or_default();
        if addresses.iter().any(|a| a["ip"] == ip) {
            return Ok(());
        }
        let mut addresses = addresses;
        addresses.push(json!({"ip": ip}));
        subset["addresses"] = json!(addresses);
        let bytes = serde_json::to_vec(&endpoints).expect("JSON");
        let swap = match &found {
            Some(kv) => server.backend.update(key.as_bytes(), kv.mod_revision, bytes).await?,
            None => server.backend.create(key.as_bytes(), bytes, 0).await?,
        };
        if let crate::storage::Swap::Done { .. } = swap {
            return Ok(());
        }
    }
}
