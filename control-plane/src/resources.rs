//! The kinds the API server serves: their REST names, scope, discovery facts and the
//! k8s-openapi type each is decoded through. One table drives routing, storage keys,
//! discovery, OpenAPI and validation.

use serde_json::Value;

/// A subresource the API server serves for a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    Status,
    Scale,
    Binding,
    Log,
    /// `pods/<name>/exec`: a WebSocket to a command in a container.
    Exec,
    /// `serviceaccounts/<name>/token`: TokenRequest.
    Token,
}

impl Subresource {
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Log => "log",
            Subresource::Exec => "exec",
            Subresource::Token => "token",
        }
    }
}

/// Decodes JSON through the kind's typed struct and back: checks field types, drops unknown
/// fields (as Kubernetes does when decoding) and reports them for strict validation.
pub type Normalize = fn(&Value) -> Result<Value, String>;

/// One served kind.
#[derive(Clone, Copy, Debug)]
pub struct Resource {
    /// API group ("" for the core group).
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The REST and storage name (`pods`).
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// The OpenAPI definition name (`io.k8s.api.core.v1.Pod`).
    pub definition: &'static str,
    /// Whether a spec change bumps `metadata.generation` (kinds with spec/status).
    pub has_status: bool,
    pub normalize: Normalize,
}

impl Resource {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The storage key prefix of all objects of this kind (`/registry/pods/`).
    pub fn key_prefix(&self) -> String {
        format!("/registry/{}/", self.plural)
    }

    /// The storage key of one object (`/registry/pods/default/web`, `/registry/nodes/n1`).
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(namespace) if self.namespaced => {
                format!("/registry/{}/{namespace}/{name}", self.plural)
            }
            _ => format!("/registry/{}/{name}", self.plural),
        }
    }

    /// The key prefix of a namespace's objects, or of all (`None`).
    pub fn namespace_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(namespace) if self.namespaced => format!("/registry/{}/{namespace}/", self.plural),
            _ => self.key_prefix(),
        }
    }

    pub fn has_subresource(&self, subresource: Subresource) -> bool {
        self.subresources.contains(&subresource)
    }

    /// The REST verbs on the collection and its objects.
    pub fn verbs(&self) -> &'static [&'static str] {
        &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
    }
}

/// Decodes through `T` and back; unknown fields are named in the error for strict mode by
/// comparing the input with the round trip.
fn through<T>(value: &Value) -> Result<Value, String>
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let typed: T = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

macro_rules! resource {
    (
        $group:expr, $version:expr, $kind:ident, $plural:expr, $singular:expr, $namespaced:expr,
        $ty:ty, $definition:expr, short: [$($short:expr),*], categories: [$($cat:expr),*],
        sub: [$($sub:ident),*], status: $status:expr
    ) => {
        Resource {
            group: $group,
            version: $version,
            kind: stringify!($kind),
            plural: $plural,
            singular: $singular,
            namespaced: $namespaced,
            short_names: &[$($short),*],
            categories: &[$($cat),*],
            subresources: &[$(Subresource::$sub),*],
            definition: $definition,
            has_status: $status,
            normalize: through::<$ty>,
        }
    };
}

use k8s_openapi::api::rbac::v1 as rbac;
use k8s_openapi::api::{apps::v1 as apps, coordination::v1 as coordination, core::v1 as core};

/// Every served kind, in discovery order.
pub static RESOURCES: &[Resource] = &[
    resource!("", "v1", Namespace, "namespaces", "namespace", false, core::Namespace,
        "io.k8s.api.core.v1.Namespace", short: ["ns"], categories: [], sub: [Status],
        status: true),
    resource!("", "v1", Pod, "pods", "pod", true, core::Pod, "io.k8s.api.core.v1.Pod",
        short: ["po"], categories: ["all"], sub: [Status, Binding, Log, Exec], status: true),
    resource!("", "v1", Node, "nodes", "node", false, core::Node, "io.k8s.api.core.v1.Node",
        short: ["no"], categories: [], sub: [Status], status: true),
    resource!("", "v1", Service, "services", "service", true, core::Service,
        "io.k8s.api.core.v1.Service", short: ["svc"], categories: ["all"], sub: [Status],
        status: true),
    resource!("", "v1", Endpoints, "endpoints", "endpoints", true, core::Endpoints,
        "io.k8s.api.core.v1.Endpoints", short: ["ep"], categories: [], sub: [], status: false),
    resource!("", "v1", Event, "events", "event", true, core::Event,
        "io.k8s.api.core.v1.Event", short: ["ev"], categories: [], sub: [], status: false),
    resource!("", "v1", ServiceAccount, "serviceaccounts", "serviceaccount", true,
        core::ServiceAccount, "io.k8s.api.core.v1.ServiceAccount", short: ["sa"],
        categories: [], sub: [Token], status: false),
    resource!("", "v1", ConfigMap, "configmaps", "configmap", true, core::ConfigMap,
        "io.k8s.api.core.v1.ConfigMap", short: ["cm"], categories: [], sub: [], status: false),
    resource!("", "v1", Secret, "secrets", "secret", true, core::Secret,
        "io.k8s.api.core.v1.Secret", short: [], categories: [], sub: [], status: false),
    resource!("", "v1", ResourceQuota, "resourcequotas", "resourcequota", true,
        core::ResourceQuota, "io.k8s.api.core.v1.ResourceQuota", short: ["quota"],
        categories: [], sub: [Status], status: true),
    resource!("", "v1", LimitRange, "limitranges", "limitrange", true, core::LimitRange,
        "io.k8s.api.core.v1.LimitRange", short: ["limits"], categories: [], sub: [],
        status: false),
    resource!("apps", "v1", Deployment, "deployments", "deployment", true, apps::Deployment,
        "io.k8s.api.apps.v1.Deployment", short: ["deploy"], categories: ["all"],
        sub: [Status, Scale], status: true),
    resource!("apps", "v1", ReplicaSet, "replicasets", "replicaset", true, apps::ReplicaSet,
        "io.k8s.api.apps.v1.ReplicaSet", short: ["rs"], categories: ["all"],
        sub: [Status, Scale], status: true),
    resource!("apps", "v1", DaemonSet, "daemonsets", "daemonset", true, apps::DaemonSet,
        "io.k8s.api.apps.v1.DaemonSet", short: ["ds"], categories: ["all"], sub: [Status],
        status: true),
    resource!("apps", "v1", ControllerRevision, "controllerrevisions", "controllerrevision",
        true, apps::ControllerRevision, "io.k8s.api.apps.v1.ControllerRevision", short: [],
        categories: [], sub: [], status: false),
    resource!("coordination.k8s.io", "v1", Lease, "leases", "lease", true, coordination::Lease,
        "io.k8s.api.coordination.v1.Lease", short: [], categories: [], sub: [],
        status: false),
    resource!("rbac.authorization.k8s.io", "v1", Role, "roles", "role", true, rbac::Role,
        "io.k8s.api.rbac.v1.Role", short: [], categories: [], sub: [], status: false),
    resource!("rbac.authorization.k8s.io", "v1", ClusterRole, "clusterroles", "clusterrole",
        false, rbac::ClusterRole, "io.k8s.api.rbac.v1.ClusterRole", short: [], categories: [],
        sub: [], status: false),
    resource!("rbac.authorization.k8s.io", "v1", RoleBinding, "rolebindings", "rolebinding",
        true, rbac::RoleBinding, "io.k8s.api.rbac.v1.RoleBinding", short: [], categories: [],
        sub: [], status: false),
    resource!("rbac.authorization.k8s.io", "v1", ClusterRoleBinding, "clusterrolebindings",
        "clusterrolebinding", false, rbac::ClusterRoleBinding,
        "io.k8s.api.rbac.v1.ClusterRoleBinding", short: [], categories: [], sub: [],
        status: false),
];

/// The kind served at `group`/`version`/`plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The kind with this `apiVersion` and `kind`.
pub fn find_kind(api_version: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.kind == kind && r.api_version() == api_version)
}

/// Served groups other than the core group, in discovery order, without repeats.
pub fn groups() -> Vec<&'static str> {
    let mut groups: Vec<&'static str> = Vec::new();
    for r in RESOURCES {
        if !r.group.is_empty() && !groups.contains(&r.group) {
            groups.push(r.group);
        }
    }
    groups
}

/// The kinds served at one group/version.
pub fn in_group_version(group: &str, version: &str) -> Vec<&'static Resource> {
    RESOURCES.iter().filter(|r| r.group == group && r.version == version).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_follow_kubernetes_registry_layout() {
        let pods = find("", "v1", "pods").unwrap();
        assert_eq!(pods.key(Some("default"), "web"), "/registry/pods/default/web");
        assert_eq!(pods.namespace_prefix(None), "/registry/pods/");
        let nodes = find("", "v1", "nodes").unwrap();
        assert_eq!(nodes.key(Some("ignored"), "n1"), "/registry/nodes/n1");
        assert_eq!(find_kind("apps/v1", "Deployment").unwrap().plural, "deployments");
        assert_eq!(groups(), vec!["apps", "coordination.k8s.io", "rbac.authorization.k8s.io"]);
    }

    #[test]
    fn normalize_checks_types_and_drops_unknown_fields() {
        let pods = find("", "v1", "pods").unwrap();
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"},
            "spec": {"containers": [{"name": "c", "image": "i"}], "bogus": 1}});
        let normalized = (pods.normalize)(&pod).unwrap();
        assert!(normalized["spec"].get("bogus").is_none());
        let wrong = json!({"metadata": {"name": 7}});
        assert!((pods.normalize)(&wrong).is_err());
    }
}
