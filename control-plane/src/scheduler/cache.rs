//! The scheduler's view of the cluster: every node with what its pods use, kept up to date
//! incrementally from the node and pod watches, plus the pods the scheduler has placed but the
//! API has not yet shown bound ("assumed", as kube-scheduler's cache calls them). Pure: the
//! driver feeds it events and reads `nodes()` for each scheduling decision, so no snapshot is
//! copied per pod.
//!
//! Nodes live in one `Vec` (the order the core's rotating search walks), with an index by
//! name. Pods bound to a node the cache does not know yet (their Node event comes later) are
//! accounted in a side table and join the node when it appears, as kube-scheduler keeps
//! placeholder node entries.

use std::collections::HashMap;
use std::sync::Arc;

use super::model::{Node, NodeInfo, NodeUsage, Pod};

/// What applying a Node event changed, for deciding whether waiting pods should retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeChange {
    Added,
    /// Something scheduling reads changed (allocatable, labels, taints, readiness, cordon).
    Changed,
    Unchanged,
}

#[derive(Clone, Debug)]
struct Accounted {
    node: String,
    pod: Arc<Pod>,
    /// Placed by this scheduler and not yet seen bound in the API.
    assumed: bool,
}

/// Nodes and the pods accounted on them.
#[derive(Debug, Default)]
pub struct Cache {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    /// Usage of pods on nodes not (or no longer) known, by node name.
    detached: HashMap<String, NodeUsage>,
    /// Accounted pods by `namespace/name`.
    pods: HashMap<String, Accounted>,
    /// How many of `pods` are assumed.
    assumed: usize,
}

impl Cache {
    pub fn new() -> Cache {
        Cache::default()
    }

    /// The known nodes, in the order the core searches them.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.node.name.clone()).collect()
    }

    /// Adds or updates a node.
    pub fn apply_node(&mut self, node: Node) -> NodeChange {
        if let Some(&i) = self.index.get(&node.name) {
            if self.nodes[i].node == node {
                return NodeChange::Unchanged;
            }
            self.nodes[i].node = node;
            return NodeChange::Changed;
        }
        let usage = self.detached.remove(&node.name).unwrap_or_default();
        self.index.insert(node.name.clone(), self.nodes.len());
        self.nodes.push(NodeInfo { node, usage });
        NodeChange::Added
    }

    /// Removes a node; its pods stay accounted under its name in case it comes back before
    /// they are deleted. Returns whether the node was known.
    pub fn delete_node(&mut self, name: &str) -> bool {
        let Some(i) = self.index.remove(name) else {
            return false;
        };
        let removed = self.nodes.swap_remove(i);
        if let Some(moved) = self.nodes.get(i) {
            self.index.insert(moved.node.name.clone(), i);
        }
        if !removed.usage.is_empty() {
            self.detached.insert(removed.node.name, removed.usage);
        }
        true
    }

    fn usage_mut(&mut self, node: &str) -> &mut NodeUsage {
        match self.index.get(node) {
            Some(&i) => &mut self.nodes[i].usage,
            None => self.detached.entry(node.to_string()).or_default(),
        }
    }

    fn unaccount(&mut self, accounted: &Accounted) {
        if accounted.assumed {
            self.assumed -= 1;
        }
        let usage = self.usage_mut(&accounted.node);
        usage.remove(&accounted.pod);
        if usage.is_empty() && !self.index.contains_key(&accounted.node) {
            self.detached.remove(&accounted.node);
        }
    }

    fn account(&mut self, key: &str, node: &str, pod: Arc<Pod>, assumed: bool) {
        if assumed {
            self.assumed += 1;
        }
        self.usage_mut(node).add(&pod);
        self.pods.insert(key.to_string(), Accounted { node: node.to_string(), pod, assumed });
    }

    /// Accounts a pod the API shows bound to `node` (confirming an assumption, or a pod bound
    /// by someone else, or an update of one already accounted). Returns true when capacity
    /// was freed somewhere (it moved, or its requests changed), so waiting pods may now fit.
    pub fn apply_bound_pod(&mut self, key: &str, node: &str, pod: Arc<Pod>) -> bool {
        let freed = match self.pods.remove(key) {
            Some(old) if old.node == node && *old.pod == *pod => {
                if old.assumed {
                    self.assumed -= 1;
                }
                self.pods.insert(key.to_string(), Accounted { assumed: false, ..old });
                return false;
            }
            Some(old) => {
                self.unaccount(&old);
                old.node != node || old.pod.requests != pod.requests
            }
            None => false,
        };
        self.account(key, node, pod, false);
        freed
    }

    /// Accounts a pod this scheduler just placed on `node`, before its binding is written.
    pub fn assume(&mut self, key: &str, node: &str, pod: Arc<Pod>) {
        assert!(!self.pods.contains_key(key), "assuming pod {key}, which is already accounted");
        self.account(key, node, pod, true);
    }

    /// Drops an assumption whose binding failed; a pod the API has meanwhile shown bound is
    /// kept. Returns whether anything was dropped.
    pub fn forget(&mut self, key: &str) -> bool {
        match self.pods.get(key) {
            Some(accounted) if accounted.assumed => {
                let accounted = self.pods.remove(key).expect("just looked up");
                self.unaccount(&accounted);
                true
            }
            _ => false,
        }
    }

    /// Removes a deleted (or finished) pod. Returns whether it was accounted.
    pub fn remove_pod(&mut self, key: &str) -> bool {
        match self.pods.remove(key) {
            Some(accounted) => {
                self.unaccount(&accounted);
                true
            }
            None => false,
        }
    }

    pub fn is_assumed(&self, key: &str) -> bool {
        self.pods.get(key).is_some_and(|a| a.assumed)
    }

    /// The node a pod is accounted on, if it is.
    pub fn node_of(&self, key: &str) -> Option<&str> {
        self.pods.get(key).map(|a| a.node.as_str())
    }

    /// Keys of every accounted pod.
    pub fn pod_keys(&self) -> Vec<String> {
        self.pods.keys().cloned().collect()
    }

    pub fn pods_len(&self) -> usize {
        self.pods.len()
    }

    pub fn assumed_len(&self) -> usize {
        self.assumed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::model::Resources;

    fn node(name: &str, milli_cpu: i64) -> Node {
        Node {
            name: name.into(),
            allocatable: Resources { milli_cpu, ..Resources::default() },
            allowed_pods: 10,
            ..Node::default()
        }
    }

    fn pod(milli_cpu: i64, owner: Option<&str>) -> Arc<Pod> {
        Arc::new(Pod {
            requests: Resources { milli_cpu, ..Resources::default() },
            non_zero_milli_cpu: milli_cpu,
            owner: owner.map(Arc::from),
            ..Pod::default()
        })
    }

    fn used(cache: &Cache, node: &str) -> (i64, i64) {
        let usage = &cache.node(node).expect("node").usage;
        (usage.requested.milli_cpu, usage.pods)
    }

    #[test]
    fn nodes_are_added_changed_and_left_alone() {
        let mut cache = Cache::new();
        assert_eq!(cache.apply_node(node("a", 1000)), NodeChange::Added);
        assert_eq!(cache.apply_node(node("a", 1000)), NodeChange::Unchanged);
        assert_eq!(cache.apply_node(node("a", 2000)), NodeChange::Changed);
        assert_eq!(cache.node("a").expect("a").node.allocatable.milli_cpu, 2000);
        assert_eq!(cache.nodes().len(), 1);
    }

    #[test]
    fn deleting_a_node_keeps_the_index_consistent() {
        let mut cache = Cache::new();
        for name in ["a", "b", "c"] {
            cache.apply_node(node(name, 1000));
        }
        assert!(cache.delete_node("a"));
        assert!(!cache.delete_node("a"));
        assert_eq!(cache.nodes().len(), 2);
        for name in ["b", "c"] {
            assert_eq!(cache.node(name).expect("still there").node.name, name);
        }
        cache.apply_bound_pod("ns/p", "c", pod(100, None));
        assert_eq!(used(&cache, "c"), (100, 1));
    }

    #[test]
    fn bound_pods_are_accounted_once_and_updates_replace() {
        let mut cache = Cache::new();
        cache.apply_node(node("a", 1000));
        cache.apply_node(node("b", 1000));
        assert!(!cache.apply_bound_pod("ns/p", "a", pod(300, Some("rs"))));
        assert!(!cache.apply_bound_pod("ns/p", "a", pod(300, Some("rs"))), "same again");
        assert_eq!(used(&cache, "a"), (300, 1));
        assert_eq!(cache.node("a").expect("a").usage.owner_count("rs"), 1);
        // Requests changed (an in-place resize): re-accounted, capacity may have been freed.
        assert!(cache.apply_bound_pod("ns/p", "a", pod(200, Some("rs"))));
        assert_eq!(used(&cache, "a"), (200, 1));
        assert!(cache.remove_pod("ns/p"));
        assert!(!cache.remove_pod("ns/p"));
        assert_eq!(used(&cache, "a"), (0, 0));
        assert_eq!(cache.node("a").expect("a").usage, NodeUsage::default());
    }

    #[test]
    fn assumptions_count_at_once_and_are_confirmed_or_forgotten() {
        let mut cache = Cache::new();
        cache.apply_node(node("a", 1000));
        cache.apply_node(node("b", 1000));
        cache.assume("ns/p", "a", pod(400, None));
        assert!(cache.is_assumed("ns/p"));
        assert_eq!(cache.assumed_len(), 1);
        assert_eq!(used(&cache, "a"), (400, 1));
        // The API shows the binding: confirmed, not counted twice.
        assert!(!cache.apply_bound_pod("ns/p", "a", pod(400, None)));
        assert!(!cache.is_assumed("ns/p"));
        assert_eq!(cache.assumed_len(), 0);
        assert_eq!(used(&cache, "a"), (400, 1));
        // A late binding failure does not forget a confirmed pod.
        assert!(!cache.forget("ns/p"));
        assert_eq!(used(&cache, "a"), (400, 1));

        cache.assume("ns/q", "b", pod(100, None));
        assert_eq!(cache.assumed_len(), 1);
        assert!(cache.forget("ns/q"));
        assert_eq!(cache.assumed_len(), 0);
        assert_eq!(used(&cache, "b"), (0, 0));
        assert_eq!(cache.node_of("ns/q"), None);
    }

    #[test]
    fn a_pod_bound_elsewhere_than_assumed_moves_and_frees_capacity() {
        let mut cache = Cache::new();
        cache.apply_node(node("a", 1000));
        cache.apply_node(node("b", 1000));
        cache.assume("ns/p", "a", pod(400, None));
        assert!(cache.apply_bound_pod("ns/p", "b", pod(400, None)));
        assert_eq!(cache.assumed_len(), 0);
        assert_eq!(used(&cache, "a"), (0, 0));
        assert_eq!(used(&cache, "b"), (400, 1));
        assert_eq!(cache.node_of("ns/p"), Some("b"));
    }

    #[test]
    fn pods_on_unknown_nodes_join_the_node_when_it_appears() {
        let mut cache = Cache::new();
        cache.apply_bound_pod("ns/p", "late", pod(250, None));
        assert!(cache.nodes().is_empty());
        cache.apply_node(node("late", 1000));
        assert_eq!(used(&cache, "late"), (250, 1));
        // And survive the node going away and coming back.
        cache.delete_node("late");
        cache.apply_node(node("late", 1000));
        assert_eq!(used(&cache, "late"), (250, 1));
        // Removing a pod of an absent node leaves nothing behind.
        cache.delete_node("late");
        assert!(cache.remove_pod("ns/p"));
        assert!(cache.detached.is_empty());
        cache.apply_node(node("late", 1000));
        assert_eq!(used(&cache, "late"), (0, 0));
    }
}
