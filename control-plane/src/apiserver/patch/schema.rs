//! Strategic-merge metadata for the kinds Skiff serves: which lists merge, on which key, and
//! which fields carry `retainKeys`, copied from the `patchStrategy` / `patchMergeKey` struct
//! tags of the Kubernetes 1.32 Go types (k8s.io/api core/v1, apps/v1; apimachinery meta/v1).
//!
//! The table is a small type graph: a [`TypeNode`] names a Go struct, and [`TypeNode::field`]
//! gives a field's type and strategy. A list field's type is its item type, so a path through
//! a list names only fields (`spec.template.spec.containers.env`). A field that is not in the
//! table has no strategy: maps merge recursively and lists are replaced, which is what
//! Kubernetes does for every field without tags.

/// How a strategic merge patch treats one field, from its Go struct tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Strategy {
    /// `patchMergeKey`: the field identifying list items of objects.
    pub merge_key: Option<&'static str>,
    /// `patchStrategy` contains `merge`: lists merge instead of being replaced.
    pub merge: bool,
    /// `patchStrategy` contains `retainKeys` (clients send `$retainKeys` for it; the server
    /// honours the directive wherever it appears).
    pub retain_keys: bool,
}

/// A Go struct whose fields carry patch metadata, or `Opaque` for everything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeNode {
    /// A type without tagged fields below it (maps, scalars, untagged structs).
    Opaque,
    /// The top level of an object of one of the kinds that has tagged fields below `spec` or
    /// `status`; every kind has `metadata`.
    Object(RootKind),
    ObjectMeta,
    PodTemplateSpec,
    PodSpec,
    Container,
    PodStatus,
    /// `spec` of Deployment, ReplicaSet and DaemonSet (`template`, and `strategy` for
    /// Deployment).
    WorkloadSpec {
        retain_strategy_keys: bool,
    },
    /// `status` of Deployment, ReplicaSet and DaemonSet: only `conditions` is tagged.
    ConditionsStatus,
    NodeSpec,
    NodeStatus,
    ServiceSpec,
}

/// The kinds whose top-level fields differ in patch metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootKind {
    Pod,
    Deployment,
    ReplicaSet,
    DaemonSet,
    Node,
    Service,
    Namespace,
    ServiceAccount,
    /// Every other kind (Endpoints, Lease, Event, RBAC kinds, ControllerRevision, ...): only
    /// `metadata` is tagged.
    Other,
}

const fn merge_on(key: &'static str) -> Strategy {
    Strategy { merge_key: Some(key), merge: true, retain_keys: false }
}

const fn merge_retaining_on(key: &'static str) -> Strategy {
    Strategy { merge_key: Some(key), merge: true, retain_keys: true }
}

/// Lists of scalars that merge as sets (`finalizers`, `podCIDRs`).
const MERGE_PRIMITIVES: Strategy = Strategy { merge_key: None, merge: true, retain_keys: false };

const RETAIN_KEYS: Strategy = Strategy { merge_key: None, merge: false, retain_keys: true };

impl TypeNode {
    /// The root of an object of `kind` (the Kubernetes `Kind`, e.g. `"Deployment"`).
    pub fn for_kind(kind: &str) -> TypeNode {
        let root = match kind {
            "Pod" => RootKind::Pod,
            "Deployment" => RootKind::Deployment,
            "ReplicaSet" => RootKind::ReplicaSet,
            "DaemonSet" => RootKind::DaemonSet,
            "Node" => RootKind::Node,
            "Service" => RootKind::Service,
            "Namespace" => RootKind::Namespace,
            "ServiceAccount" => RootKind::ServiceAccount,
            _ => RootKind::Other,
        };
        TypeNode::Object(root)
    }

    /// The type of field `name` of this type and the field's strategy, if it has one.
    pub fn field(self, name: &str) -> (TypeNode, Option<Strategy>) {
        use TypeNode as T;
        match (self, name) {
            (T::Object(_), "metadata") => (T::ObjectMeta, None),
            (T::Object(root), _) => root_field(root, name),

            (T::ObjectMeta, "finalizers") => (T::Opaque, Some(MERGE_PRIMITIVES)),
            (T::ObjectMeta, "ownerReferences") => (T::Opaque, Some(merge_on("uid"))),

            (T::PodTemplateSpec, "metadata") => (T::ObjectMeta, None),
            (T::PodTemplateSpec, "spec") => (T::PodSpec, None),

            (T::PodSpec, "containers" | "initContainers" | "ephemeralContainers") => {
                (T::Container, Some(merge_on("name")))
            }
            (T::PodSpec, "volumes" | "resourceClaims") => {
                (T::Opaque, Some(merge_retaining_on("name")))
            }
            (T::PodSpec, "imagePullSecrets" | "schedulingGates") => {
                (T::Opaque, Some(merge_on("name")))
            }
            (T::PodSpec, "hostAliases") => (T::Opaque, Some(merge_on("ip"))),
            (T::PodSpec, "topologySpreadConstraints") => (T::Opaque, Some(merge_on("topologyKey"))),

            (T::Container, "ports") => (T::Opaque, Some(merge_on("containerPort"))),
            (T::Container, "env") => (T::Opaque, Some(merge_on("name"))),
            (T::Container, "volumeMounts") => (T::Opaque, Some(merge_on("mountPath"))),
            (T::Container, "volumeDevices") => (T::Opaque, Some(merge_on("devicePath"))),

            (T::PodStatus, "conditions") => (T::Opaque, Some(merge_on("type"))),
            (T::PodStatus, "podIPs" | "hostIPs") => (T::Opaque, Some(merge_on("ip"))),
            (T::PodStatus, "resourceClaimStatuses") => {
                (T::Opaque, Some(merge_retaining_on("name")))
            }

            (T::WorkloadSpec { .. }, "template") => (T::PodTemplateSpec, None),
            (T::WorkloadSpec { retain_strategy_keys: true }, "strategy") => {
                (T::Opaque, Some(RETAIN_KEYS))
            }
            (T::ConditionsStatus, "conditions") => (T::Opaque, Some(merge_on("type"))),

            (T::NodeSpec, "podCIDRs") => (T::Opaque, Some(MERGE_PRIMITIVES)),
            (T::NodeStatus, "conditions" | "addresses") => (T::Opaque, Some(merge_on("type"))),

            // Kubernetes lists ports by (port, protocol) for server-side apply, but the
            // strategic-merge tag names `port` alone.
            (T::ServiceSpec, "ports") => (T::Opaque, Some(merge_on("port"))),

            _ => (T::Opaque, None),
        }
    }
}

fn root_field(root: RootKind, name: &str) -> (TypeNode, Option<Strategy>) {
    use RootKind as K;
    use TypeNode as T;
    match (root, name) {
        (K::Pod, "spec") => (T::PodSpec, None),
        (K::Pod, "status") => (T::PodStatus, None),
        (K::Deployment, "spec") => (T::WorkloadSpec { retain_strategy_keys: true }, None),
        (K::ReplicaSet | K::DaemonSet, "spec") => {
            (T::WorkloadSpec { retain_strategy_keys: false }, None)
        }
        (K::Deployment | K::ReplicaSet | K::DaemonSet, "status") => (T::ConditionsStatus, None),
        (K::Node, "spec") => (T::NodeSpec, None),
        (K::Node, "status") => (T::NodeStatus, None),
        (K::Service, "spec") => (T::ServiceSpec, None),
        // ServiceStatus and NamespaceStatus tag only `conditions`, like workload statuses.
        (K::Service | K::Namespace, "status") => (T::ConditionsStatus, None),
        (K::ServiceAccount, "secrets") => (T::Opaque, Some(merge_on("name"))),
        _ => (T::Opaque, None),
    }
}

/// The strategy of the field at `path` (field names from the object's top, list items
/// descending into their item type) in an object of `kind`, or `None` for an untagged field.
pub fn strategy_for(kind: &str, path: &[&str]) -> Option<Strategy> {
    let mut node = TypeNode::for_kind(kind);
    let mut strategy = None;
    for name in path {
        (node, strategy) = node.field(name);
    }
    strategy
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: &str, path: &str, expected: Option<Strategy>) {
        let parts: Vec<&str> = path.split('.').collect();
        assert_eq!(strategy_for(kind, &parts), expected, "{kind} {path}");
    }

    #[test]
    fn pod_spec_lists_merge_on_their_go_tags() {
        check("Pod", "spec.containers", Some(merge_on("name")));
        check("Pod", "spec.initContainers", Some(merge_on("name")));
        check("Pod", "spec.ephemeralContainers", Some(merge_on("name")));
        check("Pod", "spec.containers.env", Some(merge_on("name")));
        check("Pod", "spec.containers.ports", Some(merge_on("containerPort")));
        check("Pod", "spec.containers.volumeMounts", Some(merge_on("mountPath")));
        check("Pod", "spec.initContainers.volumeDevices", Some(merge_on("devicePath")));
        check("Pod", "spec.volumes", Some(merge_retaining_on("name")));
        check("Pod", "spec.imagePullSecrets", Some(merge_on("name")));
        check("Pod", "spec.hostAliases", Some(merge_on("ip")));
        check("Pod", "spec.topologySpreadConstraints", Some(merge_on("topologyKey")));
        check("Pod", "spec.tolerations", None);
        check("Pod", "spec.containers.args", None);
        check("Pod", "spec.containers.envFrom", None);
    }

    #[test]
    fn pod_templates_use_pod_spec_rules() {
        for kind in ["Deployment", "ReplicaSet", "DaemonSet"] {
            check(kind, "spec.template.spec.containers", Some(merge_on("name")));
            check(kind, "spec.template.spec.containers.env", Some(merge_on("name")));
            check(kind, "spec.template.metadata.finalizers", Some(MERGE_PRIMITIVES));
            check(kind, "status.conditions", Some(merge_on("type")));
        }
        check("Deployment", "spec.strategy", Some(RETAIN_KEYS));
        check("DaemonSet", "spec.updateStrategy", None);
        check("ReplicaSet", "spec.strategy", None);
    }

    #[test]
    fn metadata_is_tagged_for_every_kind() {
        for kind in ["Namespace", "Lease", "Event", "ClusterRole", "ControllerRevision", "X"] {
            check(kind, "metadata.finalizers", Some(MERGE_PRIMITIVES));
            check(kind, "metadata.ownerReferences", Some(merge_on("uid")));
            check(kind, "metadata.labels", None);
        }
    }

    #[test]
    fn status_and_node_fields() {
        check("Pod", "status.conditions", Some(merge_on("type")));
        check("Pod", "status.podIPs", Some(merge_on("ip")));
        check("Pod", "status.containerStatuses", None);
        check("Node", "status.addresses", Some(merge_on("type")));
        check("Node", "status.conditions", Some(merge_on("type")));
        check("Node", "spec.podCIDRs", Some(MERGE_PRIMITIVES));
        check("Node", "spec.taints", None);
        check("Service", "spec.ports", Some(merge_on("port")));
        check("Service", "status.conditions", Some(merge_on("type")));
        check("Namespace", "status.conditions", Some(merge_on("type")));
        check("ServiceAccount", "secrets", Some(merge_on("name")));
        check("ServiceAccount", "imagePullSecrets", None);
        check("Endpoints", "subsets", None);
        check("Role", "rules", None);
    }
}
