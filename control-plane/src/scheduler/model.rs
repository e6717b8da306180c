//! What the scheduling core knows about pods and nodes, converted once from the API's wire
//! types at the edge: requests as integers (Kubernetes' arithmetic over init containers,
//! sidecars and overhead), node selectors and tolerations parsed, and a node's Ready condition
//! turned into the taint Kubernetes' node lifecycle controller would put on it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1 as wire;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as WireQuantity;

use crate::quantity::Quantity;

/// CPU counted for scoring when a container requests none (kube-scheduler's
/// `DefaultMilliCPURequest`), so empty pods still spread.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory counted for scoring when a container requests none (`DefaultMemoryRequest`).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const NO_SCHEDULE: &str = "NoSchedule";
pub const PREFER_NO_SCHEDULE: &str = "PreferNoSchedule";
pub const NO_EXECUTE: &str = "NoExecute";

/// Amounts of resources: CPU in millicores, memory and ephemeral storage in bytes, extended
/// resources (`nvidia.com/gpu`, `hugepages-2Mi`) by name in whole units.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Sorted by name, no zero entries.
    pub scalars: Vec<(String, i64)>,
}

/// A quantity's value in whole units, rounded up as Kubernetes' `Quantity.Value()`.
fn whole_units(quantity: Quantity) -> i64 {
    let thousandths = quantity.0.max(0);
    i64::try_from((thousandths + 999) / 1000).unwrap_or(i64::MAX)
}

fn parse_quantity(quantity: &WireQuantity) -> Quantity {
    // The API server validated every quantity it stored; anything else counts as nothing.
    Quantity::parse(&quantity.0).unwrap_or_default()
}

impl Resources {
    /// A resource list (`requests`, `allocatable`, `overhead`); `pods` is not a resource a pod
    /// requests and is left out (see [`Node::allowed_pods`]).
    pub fn from_list(list: Option<&BTreeMap<String, WireQuantity>>) -> Resources {
        let mut resources = Resources::default();
        for (name, quantity) in list.into_iter().flatten() {
            let quantity = parse_quantity(quantity);
            match name.as_str() {
                "cpu" => resources.milli_cpu = i64::try_from(quantity.0.max(0)).unwrap_or(i64::MAX),
                "memory" => resources.memory = whole_units(quantity),
                "ephemeral-storage" => resources.ephemeral_storage = whole_units(quantity),
                "pods" => {}
                other => resources.add_scalar(other, whole_units(quantity)),
            }
        }
        resources
    }

    /// The amount of extended resource `name`.
    pub fn scalar(&self, name: &str) -> i64 {
        self.scalars.iter().find(|(n, _)| n == name).map_or(0, |(_, v)| *v)
    }

    fn add_scalar(&mut self, name: &str, amount: i64) {
        match self.scalars.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(at) => self.scalars[at].1 = self.scalars[at].1.saturating_add(amount),
            Err(at) => self.scalars.insert(at, (name.to_string(), amount)),
        }
        self.scalars.retain(|(_, v)| *v != 0);
    }

    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.saturating_add(other.ephemeral_storage);
        for (name, amount) in &other.scalars {
            self.add_scalar(name, *amount);
        }
    }

    pub fn subtract(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_sub(other.milli_cpu);
        self.memory = self.memory.saturating_sub(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.saturating_sub(other.ephemeral_storage);
        for (name, amount) in &other.scalars {
            self.add_scalar(name, amount.saturating_neg());
        }
    }

    /// Each resource becomes the larger of the two.
    pub fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (name, amount) in &other.scalars {
            let mine = self.scalar(name);
            if *amount > mine {
                self.add_scalar(name, amount - mine);
            }
        }
    }
}

/// A pod's requests as Kubernetes computes them (`resourcehelper.PodRequests`): the sum of its
/// containers plus its restartable init containers (sidecars), or the most any init container
/// needs while it runs (with the sidecars started before it), whichever is larger, plus the
/// pod's overhead. `per_container` gives one container's requests.
pub fn pod_requests(
    spec: &wire::PodSpec,
    per_container: impl Fn(&wire::Container) -> Resources,
) -> Resources {
    let mut total = Resources::default();
    for container in &spec.containers {
        total.add(&per_container(container));
    }
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for container in spec.init_containers.iter().flatten() {
        let own = per_container(container);
        let while_running = if container.restart_policy.as_deref() == Some("Always") {
            total.add(&own);
            sidecars.add(&own);
            sidecars.clone()
        } else {
            let mut with_sidecars = own;
            with_sidecars.add(&sidecars);
            with_sidecars
        };
        init_peak.max_with(&while_running);
    }
    total.max_with(&init_peak);
    total.add(&Resources::from_list(spec.overhead.as_ref()));
    total
}

fn container_requests(container: &wire::Container) -> Resources {
    Resources::from_list(container.resources.as_ref().and_then(|r| r.requests.as_ref()))
}

/// A container's CPU and memory for scoring: its requests, with kube-scheduler's defaults for
/// a request that is missing (an explicit zero stays zero).
fn container_requests_non_zero(container: &wire::Container) -> Resources {
    let requests = container.resources.as_ref().and_then(|r| r.requests.as_ref());
    let has = |name: &str| requests.is_some_and(|r| r.contains_key(name));
    let given = Resources::from_list(requests);
    Resources {
        milli_cpu: if has("cpu") { given.milli_cpu } else { DEFAULT_MILLI_CPU_REQUEST },
        memory: if has("memory") { given.memory } else { DEFAULT_MEMORY_REQUEST },
        ..Resources::default()
    }
}

/// One requirement of a node selector term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operator {
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

impl Requirement {
    /// Whether a node whose value for the key is `value` (absent: `None`) satisfies it.
    pub fn matches(&self, value: Option<&str>) -> bool {
        match &self.operator {
            Operator::In(values) => value.is_some_and(|v| values.iter().any(|x| x == v)),
            Operator::NotIn(values) => value.is_none_or(|v| values.iter().all(|x| x != v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::Gt(bound) => {
                value.and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v > *bound)
            }
            Operator::Lt(bound) => {
                value.and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v < *bound)
            }
        }
    }
}

/// A label requirement as Kubernetes' label selector accepts it, or `None` when invalid.
fn label_requirement(requirement: &wire::NodeSelectorRequirement) -> Option<Requirement> {
    let values = requirement.values.clone().unwrap_or_default();
    let integer = |values: &[String]| match values {
        [one] => one.parse::<i64>().ok(),
        _ => None,
    };
    let operator = match requirement.operator.as_str() {
        "In" if !values.is_empty() => Operator::In(values),
        "NotIn" if !values.is_empty() => Operator::NotIn(values),
        "Exists" if values.is_empty() => Operator::Exists,
        "DoesNotExist" if values.is_empty() => Operator::DoesNotExist,
        "Gt" => Operator::Gt(integer(&values)?),
        "Lt" => Operator::Lt(integer(&values)?),
        _ => return None,
    };
    Some(Requirement { key: requirement.key.clone(), operator })
}

/// A field requirement: `In` or `NotIn` with exactly one value, or `None` when invalid.
fn field_requirement(requirement: &wire::NodeSelectorRequirement) -> Option<Requirement> {
    let values = requirement.values.clone().unwrap_or_default();
    if values.len() != 1 {
        return None;
    }
    let operator = match requirement.operator.as_str() {
        "In" => Operator::In(values),
        "NotIn" => Operator::NotIn(values),
        _ => return None,
    };
    Some(Requirement { key: requirement.key.clone(), operator })
}

/// A node selector term: label expressions and field expressions, all ANDed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSelectorTerm {
    pub expressions: Vec<Requirement>,
    pub fields: Vec<Requirement>,
    /// False when a requirement did not parse; such a term matches no node, as in Kubernetes.
    pub valid: bool,
}

impl NodeSelectorTerm {
    pub fn from_wire(term: &wire::NodeSelectorTerm) -> NodeSelectorTerm {
        let expressions: Option<Vec<_>> =
            term.match_expressions.iter().flatten().map(label_requirement).collect();
        let fields: Option<Vec<_>> =
            term.match_fields.iter().flatten().map(field_requirement).collect();
        let valid = expressions.is_some() && fields.is_some();
        NodeSelectorTerm {
            expressions: expressions.unwrap_or_default(),
            fields: fields.unwrap_or_default(),
            valid,
        }
    }

    /// Whether node `name` with `labels` satisfies every requirement; an empty term matches
    /// nothing. The only node field is `metadata.name`.
    pub fn matches(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        if !self.valid || (self.expressions.is_empty() && self.fields.is_empty()) {
            return false;
        }
        self.expressions.iter().all(|r| r.matches(labels.get(&r.key).map(String::as_str)))
            && self.fields.iter().all(|r| r.matches((r.key == "metadata.name").then_some(name)))
    }
}

/// A node taint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: String,
}

impl Taint {
    pub fn new(key: &str, value: &str, effect: &str) -> Taint {
        Taint { key: key.into(), value: value.into(), effect: effect.into() }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TolerationOperator {
    Equal,
    Exists,
    /// Not a valid operator: tolerates nothing.
    Invalid,
}

/// A pod toleration; empty key or effect means any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Toleration {
    pub key: String,
    pub operator: TolerationOperator,
    pub value: String,
    pub effect: String,
}

impl Toleration {
    pub fn from_wire(toleration: &wire::Toleration) -> Toleration {
        Toleration {
            key: toleration.key.clone().unwrap_or_default(),
            operator: match toleration.operator.as_deref() {
                None | Some("" | "Equal") => TolerationOperator::Equal,
                Some("Exists") => TolerationOperator::Exists,
                Some(_) => TolerationOperator::Invalid,
            },
            value: toleration.value.clone().unwrap_or_default(),
            effect: toleration.effect.clone().unwrap_or_default(),
        }
    }

    /// Kubernetes' `Toleration.ToleratesTaint`.
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if !self.effect.is_empty() && self.effect != taint.effect {
            return false;
        }
        if !self.key.is_empty() && self.key != taint.key {
            return false;
        }
        match self.operator {
            TolerationOperator::Equal => self.value == taint.value,
            TolerationOperator::Exists => true,
            TolerationOperator::Invalid => false,
        }
    }
}

/// Whether any of `tolerations` tolerates `taint`.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| t.tolerates(taint))
}

/// What scheduling reads of a pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pod {
    pub priority: i32,
    /// What the pod reserves on its node (fit).
    pub requests: Resources,
    /// CPU and memory with defaults for missing requests (scoring).
    pub non_zero_milli_cpu: i64,
    pub non_zero_memory: i64,
    pub node_name: Option<String>,
    pub node_selector: Vec<(String, String)>,
    /// `requiredDuringSchedulingIgnoredDuringExecution`'s terms, ORed; `None` when absent.
    pub required_terms: Option<Vec<NodeSelectorTerm>>,
    /// `preferredDuringSchedulingIgnoredDuringExecution`: weight and term.
    pub preferred_terms: Vec<(i64, NodeSelectorTerm)>,
    pub tolerations: Vec<Toleration>,
    /// The uid of the controller owning the pod (its ReplicaSet, DaemonSet, ...).
    pub owner: Option<Arc<str>>,
}

impl Pod {
    pub fn from_wire(pod: &wire::Pod) -> Pod {
        let empty = wire::PodSpec::default();
        let spec = pod.spec.as_ref().unwrap_or(&empty);
        let requests = pod_requests(spec, container_requests);
        let non_zero = pod_requests(spec, container_requests_non_zero);
        let affinity = spec.affinity.as_ref().and_then(|a| a.node_affinity.as_ref());
        let required_terms = affinity
            .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
            .map(|selector| {
                selector.node_selector_terms.iter().map(NodeSelectorTerm::from_wire).collect()
            });
        let preferred_terms = affinity
            .and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref())
            .into_iter()
            .flatten()
            .filter(|p| p.weight != 0)
            .map(|p| (i64::from(p.weight), NodeSelectorTerm::from_wire(&p.preference)))
            .collect();
        let owner = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|r| r.controller == Some(true))
            .map(|r| Arc::from(r.uid.as_str()));
        Pod {
            priority: spec.priority.unwrap_or(0),
            requests,
            non_zero_milli_cpu: non_zero.milli_cpu,
            non_zero_memory: non_zero.memory,
            node_name: spec.node_name.clone().filter(|n| !n.is_empty()),
            node_selector: spec.node_selector.clone().unwrap_or_default().into_iter().collect(),
            required_terms,
            preferred_terms,
            tolerations: spec.tolerations.iter().flatten().map(Toleration::from_wire).collect(),
            owner,
        }
    }
}

/// What scheduling reads of a node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub allocatable: Resources,
    /// Allocatable `pods`: how many pods the node takes (0 when the node does not say).
    pub allowed_pods: i64,
    /// The node's taints, plus `not-ready` or `unreachable` (NoSchedule) when its Ready
    /// condition is False or Unknown/missing, as the node lifecycle controller would add.
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
}

impl Node {
    pub fn from_wire(node: &wire::Node) -> Node {
        let status = node.status.as_ref();
        // Kubernetes reads allocatable only; a node reporting capacity alone (some fakes do)
        // is taken at its capacity rather than treated as empty.
        let allocatable = status
            .and_then(|s| s.allocatable.as_ref())
            .or_else(|| status.and_then(|s| s.capacity.as_ref()));
        let allowed_pods =
            allocatable.and_then(|a| a.get("pods")).map_or(0, |q| whole_units(parse_quantity(q)));
        let spec = node.spec.as_ref();
        let mut taints: Vec<Taint> = spec
            .and_then(|s| s.taints.as_ref())
            .into_iter()
            .flatten()
            .map(|t| Taint::new(&t.key, t.value.as_deref().unwrap_or(""), &t.effect))
            .collect();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.status.as_str());
        let implied = match ready {
            Some("True") => None,
            Some("False") => Some(TAINT_NOT_READY),
            _ => Some(TAINT_UNREACHABLE),
        };
        if let Some(key) = implied {
            if !taints.iter().any(|t| t.key == key && t.effect == NO_SCHEDULE) {
                taints.push(Taint::new(key, "", NO_SCHEDULE));
            }
        }
        Node {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            allocatable: Resources::from_list(allocatable),
            allowed_pods,
            taints,
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
        }
    }
}

/// What the pods on a node take from it, kept up to date as pods come and go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeUsage {
    pub requested: Resources,
    pub non_zero_milli_cpu: i64,
    pub non_zero_memory: i64,
    pub pods: i64,
    /// Pods per controller uid, for spreading replicas.
    pub owners: HashMap<Arc<str>, u32>,
}

impl NodeUsage {
    pub fn add(&mut self, pod: &Pod) {
        self.requested.add(&pod.requests);
        self.non_zero_milli_cpu += pod.non_zero_milli_cpu;
        self.non_zero_memory += pod.non_zero_memory;
        self.pods += 1;
        if let Some(owner) = &pod.owner {
            *self.owners.entry(owner.clone()).or_insert(0) += 1;
        }
    }

    /// Takes back what [`NodeUsage::add`] added for the same pod.
    pub fn remove(&mut self, pod: &Pod) {
        assert!(self.pods > 0, "removing a pod from a node that has none");
        self.requested.subtract(&pod.requests);
        self.non_zero_milli_cpu -= pod.non_zero_milli_cpu;
        self.non_zero_memory -= pod.non_zero_memory;
        self.pods -= 1;
        if let Some(owner) = &pod.owner {
            let count = self.owners.get_mut(owner).expect("owner counted when the pod was added");
            *count -= 1;
            if *count == 0 {
                self.owners.remove(owner);
            }
        }
    }

    pub fn owner_count(&self, owner: &str) -> u32 {
        self.owners.get(owner).copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.pods == 0
    }
}

/// A node and what its pods use: the unit the filters and scores look at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    pub node: Node,
    pub usage: NodeUsage,
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
