//! The scheduling algorithm as a pure core: one pod and the nodes (with what their pods use)
//! in, a node index or the reasons no node fits out. No I/O, no clock; randomness (breaking
//! ties between equally good nodes) comes from the caller's RNG.
//!
//! It follows kube-scheduler's default profile. Filters, in its plugin order, stop at the
//! first that fails for a node: NodeUnschedulable, NodeName, TaintToleration, NodeAffinity
//! (`nodeSelector` and required node affinity), NodeResourcesFit. Scores, each 0..=100 and
//! weighted as kube-scheduler weighs them: least allocated (1) and balanced allocation (1) on
//! CPU and memory, preferred node affinity (2), taint toleration (3), and spreading the
//! replicas of one controller across nodes (2, in place of PodTopologySpread's default
//! hostname constraint). Only a sample of the nodes is filtered in large clusters, starting
//! where the previous pod's search ended, so consecutive pods look at different nodes.

use std::collections::HashMap;
use std::fmt;

use rand::Rng;

use super::model::{
    tolerated, Node, NodeInfo, Pod, Taint, NO_EXECUTE, NO_SCHEDULE, PREFER_NO_SCHEDULE,
    TAINT_UNSCHEDULABLE,
};

pub const MAX_NODE_SCORE: i64 = 100;
/// Below this many nodes every node is filtered and scored (kube-scheduler's
/// `minFeasibleNodesToFind`); above it, never fewer feasible nodes are looked for.
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// The adaptive percentage never drops below this (`minFeasibleNodesPercentageToFind`).
pub const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;

pub const WEIGHT_LEAST_ALLOCATED: i64 = 1;
pub const WEIGHT_BALANCED_ALLOCATION: i64 = 1;
pub const WEIGHT_NODE_AFFINITY: i64 = 2;
pub const WEIGHT_TAINT_TOLERATION: i64 = 3;
pub const WEIGHT_SPREAD: i64 = 2;

/// Why a filter rejected a node, worded as kube-scheduler words it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason<'a> {
    Unschedulable,
    NodeName,
    UntoleratedTaint {
        key: &'a str,
        value: &'a str,
    },
    NodeAffinity,
    TooManyPods,
    /// A resource name: `cpu`, `memory`, `ephemeral-storage` or an extended resource.
    Insufficient(&'a str),
}

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Unschedulable => f.write_str("node(s) were unschedulable"),
            Reason::NodeName => f.write_str("node(s) didn't match the requested node name"),
            Reason::UntoleratedTaint { key, value } => {
                write!(f, "node(s) had untolerated taint {{{key}: {value}}}")
            }
            Reason::NodeAffinity => {
                f.write_str("node(s) didn't match Pod's node affinity/selector")
            }
            Reason::TooManyPods => f.write_str("Too many pods"),
            Reason::Insufficient(resource) => write!(f, "Insufficient {resource}"),
        }
    }
}

/// No node fits: how many nodes there were and how often each reason was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FitError {
    pub nodes_total: usize,
    /// Reason text and the number of nodes that gave it.
    pub reasons: Vec<(String, usize)>,
}

impl FitError {
    fn from_reasons(nodes_total: usize, reasons: &[Reason<'_>]) -> FitError {
        let mut counts: HashMap<Reason<'_>, usize> = HashMap::new();
        for reason in reasons {
            *counts.entry(*reason).or_insert(0) += 1;
        }
        let mut reasons: Vec<(String, usize)> =
            counts.into_iter().map(|(reason, count)| (reason.to_string(), count)).collect();
        reasons.sort();
        FitError { nodes_total, reasons }
    }
}

/// kube-scheduler's FitError message: "0/3 nodes are available: 1 node(s) had untolerated
/// taint {node.kubernetes.io/unreachable: }, 2 Insufficient cpu." (the "count reason" strings
/// sorted as strings), or its message for a cluster without nodes.
impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nodes_total == 0 {
            return f.write_str("no nodes available to schedule pods");
        }
        let mut parts: Vec<String> =
            self.reasons.iter().map(|(reason, count)| format!("{count} {reason}")).collect();
        parts.sort();
        write!(f, "0/{} nodes are available: {}.", self.nodes_total, parts.join(", "))
    }
}

/// How many feasible nodes to look for before scoring, out of `nodes`
/// (kube-scheduler's `numFeasibleNodesToFind`); `percentage` 0 means adaptive.
pub fn feasible_nodes_to_find(nodes: usize, percentage: u32) -> usize {
    if nodes < MIN_FEASIBLE_NODES_TO_FIND {
        return nodes;
    }
    let percentage = match percentage.min(100) as usize {
        0 => 50usize.saturating_sub(nodes / 125).max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND),
        given => given,
    };
    (nodes * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// NodeUnschedulable: a cordoned node takes only pods tolerating its unschedulable taint.
pub fn passes_unschedulable(pod: &Pod, node: &Node) -> bool {
    !node.unschedulable
        || tolerated(&pod.tolerations, &Taint::new(TAINT_UNSCHEDULABLE, "", NO_SCHEDULE))
}

/// NodeName: a pod naming a node fits no other.
pub fn passes_node_name(pod: &Pod, node: &Node) -> bool {
    pod.node_name.as_deref().is_none_or(|name| name == node.name)
}

/// TaintToleration's filter: the first NoSchedule or NoExecute taint the pod does not
/// tolerate, if any.
pub fn untolerated_taint<'a>(pod: &Pod, node: &'a Node) -> Option<&'a Taint> {
    node.taints.iter().find(|taint| {
        (taint.effect == NO_SCHEDULE || taint.effect == NO_EXECUTE)
            && !tolerated(&pod.tolerations, taint)
    })
}

/// NodeAffinity's filter: every `nodeSelector` label, and one of the required terms.
pub fn passes_node_affinity(pod: &Pod, node: &Node) -> bool {
    pod.node_selector.iter().all(|(key, value)| node.labels.get(key) == Some(value))
        && pod
            .required_terms
            .as_ref()
            .is_none_or(|terms| terms.iter().any(|t| t.matches(&node.name, &node.labels)))
}

/// NodeResourcesFit's filter: appends every resource the node lacks for the pod.
pub fn insufficient_resources<'a>(pod: &'a Pod, info: &NodeInfo, out: &mut Vec<Reason<'a>>) {
    let (node, usage, wanted) = (&info.node, &info.usage, &pod.requests);
    if usage.pods + 1 > node.allowed_pods {
        out.push(Reason::TooManyPods);
    }
    let free = |allocatable: i64, requested: i64| allocatable.saturating_sub(requested);
    let (allocatable, requested) = (&node.allocatable, &usage.requested);
    if wanted.milli_cpu > 0 && wanted.milli_cpu > free(allocatable.milli_cpu, requested.milli_cpu) {
        out.push(Reason::Insufficient("cpu"));
    }
    if wanted.memory > 0 && wanted.memory > free(allocatable.memory, requested.memory) {
        out.push(Reason::Insufficient("memory"));
    }
    if wanted.ephemeral_storage > 0
        && wanted.ephemeral_storage
            > free(allocatable.ephemeral_storage, requested.ephemeral_storage)
    {
        out.push(Reason::Insufficient("ephemeral-storage"));
    }
    for (name, amount) in &wanted.scalars {
        if *amount > 0 && *amount > free(allocatable.scalar(name), requested.scalar(name)) {
            out.push(Reason::Insufficient(name));
        }
    }
}

/// Runs the filters in kube-scheduler's order; on the first failure, appends its reasons to
/// `out` and returns false.
pub fn filter<'a>(pod: &'a Pod, info: &'a NodeInfo, out: &mut Vec<Reason<'a>>) -> bool {
    let node = &info.node;
    let failed = if !passes_unschedulable(pod, node) {
        Some(Reason::Unschedulable)
    } else if !passes_node_name(pod, node) {
        Some(Reason::NodeName)
    } else if let Some(taint) = untolerated_taint(pod, node) {
        Some(Reason::UntoleratedTaint { key: &taint.key, value: &taint.value })
    } else if !passes_node_affinity(pod, node) {
        Some(Reason::NodeAffinity)
    } else {
        None
    };
    if let Some(reason) = failed {
        out.push(reason);
        return false;
    }
    let before = out.len();
    insufficient_resources(pod, info, out);
    out.len() == before
}

/// `(allocatable - requested) * 100 / allocatable`, 0 when full or nothing is allocatable.
fn least_requested(requested: i64, allocatable: i64) -> i64 {
    if allocatable <= 0 || requested > allocatable {
        return 0;
    }
    ((i128::from(allocatable - requested) * i128::from(MAX_NODE_SCORE)) / i128::from(allocatable))
        as i64
}

/// What the node's CPU and memory requests (with scoring defaults) would be with the pod.
fn requested_with(pod: &Pod, info: &NodeInfo) -> [(i64, i64); 2] {
    let usage = &info.usage;
    let allocatable = &info.node.allocatable;
    [
        (usage.non_zero_milli_cpu + pod.non_zero_milli_cpu, allocatable.milli_cpu),
        (usage.non_zero_memory + pod.non_zero_memory, allocatable.memory),
    ]
}

/// NodeResourcesFit's LeastAllocated score: the mean free share of CPU and memory after
/// placing the pod.
pub fn least_allocated(pod: &Pod, info: &NodeInfo) -> i64 {
    let (mut total, mut weights) = (0, 0);
    for (requested, allocatable) in requested_with(pod, info) {
        if allocatable > 0 {
            total += least_requested(requested, allocatable);
            weights += 1;
        }
    }
    if weights == 0 {
        0
    } else {
        total / weights
    }
}

/// NodeResourcesBalancedAllocation: `(1 - std) * 100` of the CPU and memory fractions after
/// placing the pod, so nodes whose resources fill evenly score higher.
pub fn balanced_allocation(pod: &Pod, info: &NodeInfo) -> i64 {
    let mut fractions = [0.0; 2];
    let mut counted = 0;
    for (requested, allocatable) in requested_with(pod, info) {
        if allocatable > 0 {
            fractions[counted] = (requested as f64 / allocatable as f64).min(1.0);
            counted += 1;
        }
    }
    // With fewer than two resources there is nothing to balance.
    let std = if counted == 2 { ((fractions[0] - fractions[1]) / 2.0).abs() } else { 0.0 };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

/// TaintToleration's raw score: PreferNoSchedule taints the pod does not tolerate.
pub fn untolerated_prefer_no_schedule(pod: &Pod, node: &Node) -> i64 {
    node.taints
        .iter()
        .filter(|t| t.effect == PREFER_NO_SCHEDULE && !tolerated(&pod.tolerations, t))
        .count() as i64
}

/// NodeAffinity's raw score: the weights of the preferred terms the node matches.
pub fn preferred_affinity(pod: &Pod, node: &Node) -> i64 {
    pod.preferred_terms
        .iter()
        .filter(|(_, term)| term.matches(&node.name, &node.labels))
        .map(|(weight, _)| weight)
        .sum()
}

/// Spreading's raw score: pods of the same controller already on the node.
pub fn owner_pods(pod: &Pod, info: &NodeInfo) -> i64 {
    pod.owner.as_deref().map_or(0, |owner| i64::from(info.usage.owner_count(owner)))
}

/// kube-scheduler's `DefaultNormalizeScore`: scales to 0..=100 by the largest raw score;
/// `reverse` makes fewer better. All zero: 0, or 100 when reversed.
pub fn normalized(raw: i64, max: i64, reverse: bool) -> i64 {
    if max <= 0 {
        return if reverse { MAX_NODE_SCORE } else { 0 };
    }
    let scaled = MAX_NODE_SCORE * raw / max;
    if reverse {
        MAX_NODE_SCORE - scaled
    } else {
        scaled
    }
}

/// Raw per-node scores before normalization.
#[derive(Clone, Copy, Debug, Default)]
struct Raw {
    resources: i64,
    taints: i64,
    affinity: i64,
    owners: i64,
}

/// The weighted total score of each of `feasible` (indices into `nodes`), into `out`.
pub fn score_nodes(pod: &Pod, nodes: &[NodeInfo], feasible: &[usize], out: &mut Vec<i64>) {
    out.clear();
    let raws: Vec<Raw> = feasible
        .iter()
        .map(|&index| {
            let info = &nodes[index];
            Raw {
                resources: WEIGHT_LEAST_ALLOCATED * least_allocated(pod, info)
                    + WEIGHT_BALANCED_ALLOCATION * balanced_allocation(pod, info),
                taints: untolerated_prefer_no_schedule(pod, &info.node),
                affinity: preferred_affinity(pod, &info.node),
                owners: owner_pods(pod, info),
            }
        })
        .collect();
    let max = |field: fn(&Raw) -> i64| raws.iter().map(field).max().unwrap_or(0);
    let (max_taints, max_affinity, max_owners) =
        (max(|r| r.taints), max(|r| r.affinity), max(|r| r.owners));
    out.extend(raws.iter().map(|raw| {
        raw.resources
            + WEIGHT_TAINT_TOLERATION * normalized(raw.taints, max_taints, true)
            + WEIGHT_NODE_AFFINITY * normalized(raw.affinity, max_affinity, false)
            + WEIGHT_SPREAD * normalized(raw.owners, max_owners, true)
    }));
}

/// The scheduling algorithm with its state between pods: where the next search starts, and
/// scratch buffers reused across pods.
#[derive(Debug)]
pub struct Algorithm {
    percentage_of_nodes_to_score: u32,
    next_start_index: usize,
    feasible: Vec<usize>,
    scores: Vec<i64>,
}

impl Algorithm {
    /// `percentage_of_nodes_to_score` 0 is kube-scheduler's adaptive default.
    pub fn new(percentage_of_nodes_to_score: u32) -> Algorithm {
        Algorithm {
            percentage_of_nodes_to_score,
            next_start_index: 0,
            feasible: Vec::new(),
            scores: Vec::new(),
        }
    }

    /// Where the next pod's search through the nodes starts.
    pub fn next_start_index(&self) -> usize {
        self.next_start_index
    }

    /// Picks a node for `pod` among `nodes` and returns its index, or why none fits. Ties
    /// between the best scores are broken uniformly at random with `rng`.
    pub fn schedule(
        &mut self,
        pod: &Pod,
        nodes: &[NodeInfo],
        rng: &mut impl Rng,
    ) -> Result<usize, FitError> {
        if nodes.is_empty() {
            return Err(FitError { nodes_total: 0, reasons: Vec::new() });
        }
        let wanted = feasible_nodes_to_find(nodes.len(), self.percentage_of_nodes_to_score);
        let start = self.next_start_index % nodes.len();
        self.feasible.clear();
        let mut reasons = Vec::new();
        let mut processed = 0;
        for offset in 0..nodes.len() {
            let index = (start + offset) % nodes.len();
            processed += 1;
            if filter(pod, &nodes[index], &mut reasons) {
                self.feasible.push(index);
                if self.feasible.len() >= wanted {
                    break;
                }
            }
        }
        self.next_start_index = (start + processed) % nodes.len();
        match self.feasible.as_slice() {
            [] => Err(FitError::from_reasons(nodes.len(), &reasons)),
            [only] => Ok(*only),
            feasible => {
                score_nodes(pod, nodes, feasible, &mut self.scores);
                Ok(feasible[best(&self.scores, rng)])
            }
        }
    }
}

/// The position of the highest score, a uniformly random one among equals (reservoir
/// sampling, as kube-scheduler's `selectHost`).
fn best(scores: &[i64], rng: &mut impl Rng) -> usize {
    let mut chosen = 0;
    let mut ties = 0u32;
    for (position, &score) in scores.iter().enumerate() {
        if score > scores[chosen] {
            chosen = position;
            ties = 1;
        } else if score == scores[chosen] {
            ties += 1;
            if rng.gen_range(0..ties) == 0 {
                chosen = position;
            }
        }
    }
    chosen
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
