//! What a fresh cluster has before anyone writes: the system namespaces and Kubernetes'
//! default roles (cluster-admin, admin, edit, view, system:node, and the scheduler's and
//! controller manager's) with their bindings.

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
                // Not secrets or configmaps: without a node authorizer that limits a node to what
                // its own pods use, reading them cluster-wide would expose them all.
                rule(&[""], &["pods", "services", "endpoints"], READ),
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
            vec![rule(&["", "apps", "coordination.k8s.io"], &["*"], &["*"])],
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
}
