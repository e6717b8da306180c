//! Unit tests of the scheduling core: each filter, each score, the weighted total, the
//! sampling counts and rotation, tie breaking, and the unschedulable message.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;
use crate::scheduler::model::{
    NodeSelectorTerm, NodeUsage, Operator, Requirement, Resources, Toleration, TolerationOperator,
    TAINT_NOT_READY, TAINT_UNREACHABLE,
};

const GI: i64 = 1 << 30;

/// A Ready node with `milli_cpu` CPU, `memory_gi` GiB and room for 110 pods.
fn node(name: &str, milli_cpu: i64, memory_gi: i64) -> NodeInfo {
    NodeInfo {
        node: Node {
            name: name.into(),
            labels: BTreeMap::new(),
            allocatable: Resources {
                milli_cpu,
                memory: memory_gi * GI,
                ephemeral_storage: 100 * GI,
                scalars: Vec::new(),
            },
            allowed_pods: 110,
            taints: Vec::new(),
            unschedulable: false,
        },
        usage: NodeUsage::default(),
    }
}

fn labelled(mut info: NodeInfo, pairs: &[(&str, &str)]) -> NodeInfo {
    for (k, v) in pairs {
        info.node.labels.insert(k.to_string(), v.to_string());
    }
    info
}

fn tainted(mut info: NodeInfo, key: &str, value: &str, effect: &str) -> NodeInfo {
    info.node.taints.push(Taint::new(key, value, effect));
    info
}

/// A pod requesting `milli_cpu` and `memory_mi` MiB (scoring sees the same values).
fn pod(milli_cpu: i64, memory_mi: i64) -> Pod {
    Pod {
        requests: Resources { milli_cpu, memory: memory_mi << 20, ..Resources::default() },
        non_zero_milli_cpu: milli_cpu,
        non_zero_memory: memory_mi << 20,
        ..Pod::default()
    }
}

fn toleration(key: &str, operator: TolerationOperator, value: &str, effect: &str) -> Toleration {
    Toleration { key: key.into(), operator, value: value.into(), effect: effect.into() }
}

fn term(key: &str, operator: Operator) -> NodeSelectorTerm {
    NodeSelectorTerm {
        expressions: vec![Requirement { key: key.into(), operator }],
        fields: Vec::new(),
        valid: true,
    }
}

fn name_term(name: &str) -> NodeSelectorTerm {
    NodeSelectorTerm {
        expressions: Vec::new(),
        fields: vec![Requirement {
            key: "metadata.name".into(),
            operator: Operator::In(vec![name.into()]),
        }],
        valid: true,
    }
}

/// Places `pod` on `info` as if it ran there.
fn run_on(info: &mut NodeInfo, pod: &Pod) {
    info.usage.add(pod);
}

/// The reasons `filter` gives for `pod` on `info`, as text; empty when it fits.
fn reasons(pod: &Pod, info: &NodeInfo) -> Vec<String> {
    let mut out = Vec::new();
    let fits = filter(pod, info, &mut out);
    assert_eq!(fits, out.is_empty(), "fits exactly when no reason is given");
    out.iter().map(ToString::to_string).collect()
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

#[test]
fn fits_when_resources_are_free() {
    assert!(reasons(&pod(1000, 1024), &node("n", 2000, 4)).is_empty());
    // Exactly full is still a fit.
    assert!(reasons(&pod(2000, 4096), &node("n", 2000, 4)).is_empty());
}

#[test]
fn insufficient_cpu_and_memory_are_both_reported() {
    assert_eq!(reasons(&pod(3000, 1024), &node("n", 2000, 4)), ["Insufficient cpu"]);
    assert_eq!(reasons(&pod(100, 5 * 1024), &node("n", 2000, 4)), ["Insufficient memory"]);
    assert_eq!(
        reasons(&pod(3000, 5 * 1024), &node("n", 2000, 4)),
        ["Insufficient cpu", "Insufficient memory"]
    );
}

#[test]
fn requests_of_pods_already_on_the_node_count() {
    let mut info = node("n", 2000, 4);
    run_on(&mut info, &pod(1500, 1024));
    assert_eq!(reasons(&pod(600, 0), &info), ["Insufficient cpu"]);
    assert!(reasons(&pod(500, 0), &info).is_empty());
}

#[test]
fn ephemeral_storage_and_extended_resources_fit_only_when_requested() {
    let mut big = pod(0, 0);
    big.requests.ephemeral_storage = 200 * GI;
    assert_eq!(reasons(&big, &node("n", 1000, 1)), ["Insufficient ephemeral-storage"]);
    let mut gpu = pod(0, 0);
    gpu.requests.scalars = vec![("nvidia.com/gpu".into(), 1)];
    assert_eq!(reasons(&gpu, &node("n", 1000, 1)), ["Insufficient nvidia.com/gpu"]);
    let mut with_gpu = node("n", 1000, 1);
    with_gpu.node.allocatable.scalars = vec![("nvidia.com/gpu".into(), 1)];
    assert!(reasons(&gpu, &with_gpu).is_empty());
    run_on(&mut with_gpu, &gpu);
    assert_eq!(reasons(&gpu, &with_gpu), ["Insufficient nvidia.com/gpu"]);
    // A node with no ephemeral storage still takes pods that ask for none.
    let mut bare = node("n", 1000, 1);
    bare.node.allocatable.ephemeral_storage = 0;
    assert!(reasons(&pod(10, 1), &bare).is_empty());
}

#[test]
fn pod_count_is_checked_against_allocatable_pods() {
    let mut info = node("n", 10_000, 10);
    info.node.allowed_pods = 2;
    run_on(&mut info, &pod(0, 0));
    assert!(reasons(&pod(0, 0), &info).is_empty());
    run_on(&mut info, &pod(0, 0));
    assert_eq!(reasons(&pod(0, 0), &info), ["Too many pods"]);
    // Too many pods does not hide a lack of resources.
    assert_eq!(reasons(&pod(20_000, 0), &info), ["Too many pods", "Insufficient cpu"]);
    info.node.allowed_pods = 0;
    info.usage = NodeUsage::default();
    assert_eq!(reasons(&pod(0, 0), &info), ["Too many pods"]);
}

#[test]
fn cordoned_nodes_take_only_pods_tolerating_unschedulable() {
    let mut info = node("n", 2000, 4);
    info.node.unschedulable = true;
    assert_eq!(reasons(&pod(1, 1), &info), ["node(s) were unschedulable"]);
    let mut tolerant = pod(1, 1);
    tolerant.tolerations =
        vec![toleration(TAINT_UNSCHEDULABLE, TolerationOperator::Exists, "", NO_SCHEDULE)];
    assert!(reasons(&tolerant, &info).is_empty());
    let mut tolerates_all = pod(1, 1);
    tolerates_all.tolerations = vec![toleration("", TolerationOperator::Exists, "", "")];
    assert!(reasons(&tolerates_all, &info).is_empty());
    let mut wrong_effect = pod(1, 1);
    wrong_effect.tolerations =
        vec![toleration(TAINT_UNSCHEDULABLE, TolerationOperator::Exists, "", NO_EXECUTE)];
    assert_eq!(reasons(&wrong_effect, &info), ["node(s) were unschedulable"]);
}

#[test]
fn node_name_restricts_the_pod_to_that_node() {
    let mut named = pod(1, 1);
    named.node_name = Some("a".into());
    assert!(reasons(&named, &node("a", 1000, 1)).is_empty());
    assert_eq!(
        reasons(&named, &node("b", 1000, 1)),
        ["node(s) didn't match the requested node name"]
    );
}

#[test]
fn no_schedule_and_no_execute_taints_block_unless_tolerated() {
    let db = tainted(node("n", 1000, 1), "dedicated", "db", NO_SCHEDULE);
    assert_eq!(reasons(&pod(1, 1), &db), ["node(s) had untolerated taint {dedicated: db}"]);
    let evicting = tainted(node("n", 1000, 1), "k", "", NO_EXECUTE);
    assert_eq!(reasons(&pod(1, 1), &evicting), ["node(s) had untolerated taint {k: }"]);
    let mut equal = pod(1, 1);
    equal.tolerations = vec![toleration("dedicated", TolerationOperator::Equal, "db", "")];
    assert!(reasons(&equal, &db).is_empty());
    let mut wrong_value = pod(1, 1);
    wrong_value.tolerations = vec![toleration("dedicated", TolerationOperator::Equal, "web", "")];
    assert_eq!(reasons(&wrong_value, &db).len(), 1);
    let mut exists = pod(1, 1);
    exists.tolerations = vec![toleration("dedicated", TolerationOperator::Exists, "", NO_SCHEDULE)];
    assert!(reasons(&exists, &db).is_empty());
    let mut all = pod(1, 1);
    all.tolerations = vec![toleration("", TolerationOperator::Exists, "", "")];
    assert!(reasons(&all, &evicting).is_empty());
}

#[test]
fn prefer_no_schedule_taints_never_filter() {
    let soft = tainted(node("n", 1000, 1), "soft", "x", PREFER_NO_SCHEDULE);
    assert!(reasons(&pod(1, 1), &soft).is_empty());
}

#[test]
fn the_first_untolerated_taint_is_the_reason() {
    let info = tainted(
        tainted(tainted(node("n", 1000, 1), "a", "1", PREFER_NO_SCHEDULE), "b", "2", NO_SCHEDULE),
        "c",
        "3",
        NO_EXECUTE,
    );
    assert_eq!(reasons(&pod(1, 1), &info), ["node(s) had untolerated taint {b: 2}"]);
    let mut tolerates_b = pod(1, 1);
    tolerates_b.tolerations = vec![toleration("b", TolerationOperator::Exists, "", "")];
    assert_eq!(reasons(&tolerates_b, &info), ["node(s) had untolerated taint {c: 3}"]);
}

#[test]
fn not_ready_and_unreachable_nodes_are_filtered_through_their_taints() {
    // `Node::from_wire` turns the Ready condition into these taints.
    let not_ready = tainted(node("n", 1000, 1), TAINT_NOT_READY, "", NO_SCHEDULE);
    assert_eq!(
        reasons(&pod(1, 1), &not_ready),
        ["node(s) had untolerated taint {node.kubernetes.io/not-ready: }"]
    );
    let unreachable = tainted(node("n", 1000, 1), TAINT_UNREACHABLE, "", NO_SCHEDULE);
    let mut tolerant = pod(1, 1);
    tolerant.tolerations =
        vec![toleration(TAINT_UNREACHABLE, TolerationOperator::Exists, "", NO_SCHEDULE)];
    assert!(reasons(&tolerant, &unreachable).is_empty());
}

#[test]
fn node_selector_needs_every_label() {
    let info = labelled(node("n", 1000, 1), &[("disk", "ssd"), ("zone", "a")]);
    let mut selecting = pod(1, 1);
    selecting.node_selector = vec![("disk".into(), "ssd".into())];
    assert!(reasons(&selecting, &info).is_empty());
    selecting.node_selector.push(("zone".into(), "b".into()));
    assert_eq!(reasons(&selecting, &info), ["node(s) didn't match Pod's node affinity/selector"]);
    selecting.node_selector = vec![("gpu".into(), "yes".into())];
    assert_eq!(reasons(&selecting, &info).len(), 1);
}

#[test]
fn required_affinity_terms_are_ored() {
    let info = labelled(node("n", 1000, 1), &[("zone", "a")]);
    let mut affine = pod(1, 1);
    affine.required_terms = Some(vec![term("zone", Operator::In(vec!["b".into()]))]);
    assert_eq!(reasons(&affine, &info), ["node(s) didn't match Pod's node affinity/selector"]);
    affine.required_terms =
        Some(vec![term("zone", Operator::In(vec!["b".into()])), term("zone", Operator::Exists)]);
    assert!(reasons(&affine, &info).is_empty());
    affine.required_terms = Some(vec![name_term("n")]);
    assert!(reasons(&affine, &info).is_empty());
    affine.required_terms = Some(vec![name_term("m")]);
    assert_eq!(reasons(&affine, &info).len(), 1);
    affine.required_terms = Some(Vec::new());
    assert_eq!(reasons(&affine, &info).len(), 1, "no terms match no node");
    // nodeSelector and affinity must both hold.
    affine.required_terms = Some(vec![term("zone", Operator::Exists)]);
    affine.node_selector = vec![("zone".into(), "b".into())];
    assert_eq!(reasons(&affine, &info).len(), 1);
}

#[test]
fn filters_run_in_kube_scheduler_order_and_stop_at_the_first_failure() {
    let mut info = tainted(labelled(node("n", 100, 1), &[]), "k", "v", NO_SCHEDULE);
    info.node.unschedulable = true;
    let mut p = pod(1000, 1);
    p.node_name = Some("other".into());
    p.node_selector = vec![("x".into(), "y".into())];
    assert_eq!(reasons(&p, &info), ["node(s) were unschedulable"]);
    info.node.unschedulable = false;
    assert_eq!(reasons(&p, &info), ["node(s) didn't match the requested node name"]);
    p.node_name = None;
    assert_eq!(reasons(&p, &info), ["node(s) had untolerated taint {k: v}"]);
    info.node.taints.clear();
    assert_eq!(reasons(&p, &info), ["node(s) didn't match Pod's node affinity/selector"]);
    p.node_selector.clear();
    assert_eq!(reasons(&p, &info), ["Insufficient cpu"]);
}

#[test]
fn least_allocated_scores_free_share_after_placement() {
    let empty = node("n", 4000, 4);
    // CPU (4000 - 1000) / 4000 = 75, memory (4 GiB - 1 GiB) / 4 GiB = 75.
    assert_eq!(least_allocated(&pod(1000, 1024), &empty), 75);
    let mut half = node("n", 4000, 4);
    run_on(&mut half, &pod(2000, 0));
    // CPU 25, memory 75: mean 50.
    assert_eq!(least_allocated(&pod(1000, 1024), &half), 50);
    // Over-committed resources score 0.
    assert_eq!(least_allocated(&pod(8000, 8 * 1024), &empty), 0);
    // A resource the node lacks entirely is left out of the mean.
    let mut no_memory = node("n", 4000, 0);
    no_memory.node.allocatable.memory = 0;
    assert_eq!(least_allocated(&pod(1000, 1024), &no_memory), 75);
}

#[test]
fn balanced_allocation_prefers_even_fractions() {
    let empty = node("n", 4000, 4);
    // 25% CPU and 25% memory: std 0.
    assert_eq!(balanced_allocation(&pod(1000, 1024), &empty), 100);
    // 50% CPU, 0% memory: std 0.25.
    assert_eq!(balanced_allocation(&pod(2000, 0), &empty), 75);
    // Fractions are capped at 1: 100% vs 0%.
    assert_eq!(balanced_allocation(&pod(9000, 0), &empty), 50);
}

#[test]
fn taint_toleration_score_counts_untolerated_prefer_no_schedule() {
    let info = tainted(
        tainted(
            tainted(node("n", 1000, 1), "a", "", PREFER_NO_SCHEDULE),
            "b",
            "",
            PREFER_NO_SCHEDULE,
        ),
        "c",
        "",
        NO_SCHEDULE,
    );
    assert_eq!(untolerated_prefer_no_schedule(&pod(1, 1), &info.node), 2);
    let mut tolerant = pod(1, 1);
    tolerant.tolerations =
        vec![toleration("a", TolerationOperator::Exists, "", PREFER_NO_SCHEDULE)];
    assert_eq!(untolerated_prefer_no_schedule(&tolerant, &info.node), 1);
    tolerant.tolerations = vec![toleration("a", TolerationOperator::Exists, "", NO_SCHEDULE)];
    assert_eq!(untolerated_prefer_no_schedule(&tolerant, &info.node), 2, "effect must match");
}

#[test]
fn preferred_affinity_sums_matching_weights() {
    let info = labelled(node("n", 1000, 1), &[("zone", "a"), ("disk", "ssd")]);
    let mut p = pod(1, 1);
    p.preferred_terms = vec![
        (10, term("zone", Operator::In(vec!["a".into()]))),
        (5, term("disk", Operator::Exists)),
        (50, term("zone", Operator::In(vec!["b".into()]))),
        (7, name_term("n")),
    ];
    assert_eq!(preferred_affinity(&p, &info.node), 22);
}

#[test]
fn owner_pods_counts_only_the_same_controller() {
    let mut info = node("n", 10_000, 10);
    let mut replica = pod(1, 1);
    replica.owner = Some(Arc::from("rs-1"));
    let mut other = pod(1, 1);
    other.owner = Some(Arc::from("rs-2"));
    run_on(&mut info, &replica);
    run_on(&mut info, &replica);
    run_on(&mut info, &other);
    assert_eq!(owner_pods(&replica, &info), 2);
    assert_eq!(owner_pods(&other, &info), 1);
    assert_eq!(owner_pods(&pod(1, 1), &info), 0);
}

#[test]
fn normalization_matches_default_normalize_score() {
    assert_eq!(normalized(5, 10, false), 50);
    assert_eq!(normalized(10, 10, false), 100);
    assert_eq!(normalized(0, 0, false), 0);
    assert_eq!(normalized(5, 10, true), 50);
    assert_eq!(normalized(1, 3, true), 67);
    assert_eq!(normalized(0, 0, true), 100);
    assert_eq!(normalized(0, 4, true), 100);
}

#[test]
fn total_score_weighs_each_plugin() {
    let nodes = vec![
        node("plain", 4000, 4),
        tainted(node("soft", 4000, 4), "k", "", PREFER_NO_SCHEDULE),
        labelled(node("preferred", 4000, 4), &[("fast", "yes")]),
    ];
    let mut p = pod(1000, 1024);
    p.preferred_terms = vec![(3, term("fast", Operator::Exists))];
    let mut scores = Vec::new();
    score_nodes(&p, &nodes, &[0, 1, 2], &mut scores);
    // Resources: least 75 + balanced 100 on every node. Taints (weight 3): 100, 0, 100.
    // Affinity (weight 2): 0, 0, 100. Spread (weight 2, no owner): 100 everywhere.
    assert_eq!(scores, [175 + 300 + 200, 175 + 200, 175 + 300 + 200 + 200]);
}

#[test]
fn spreading_prefers_nodes_with_fewer_replicas() {
    let mut replica = pod(100, 100);
    replica.owner = Some(Arc::from("rs"));
    let mut nodes = vec![node("a", 4000, 4), node("b", 4000, 4)];
    run_on(&mut nodes[0], &replica);
    let mut scores = Vec::new();
    score_nodes(&replica, &nodes, &[0, 1], &mut scores);
    // Spread: a has the most (1) → 0; b → 100, weighted 2. Resources favour b as well.
    assert!(scores[1] - scores[0] >= 200, "{scores:?}");
    let mut algorithm = Algorithm::new(0);
    assert_eq!(algorithm.schedule(&replica, &nodes, &mut rng()), Ok(1));
}

#[test]
fn replicas_of_one_owner_spread_evenly_when_placed_one_by_one() {
    let mut nodes = vec![node("a", 8000, 8), node("b", 8000, 8), node("c", 8000, 8)];
    let mut replica = pod(100, 64);
    replica.owner = Some(Arc::from("rs"));
    let mut algorithm = Algorithm::new(0);
    let mut rng = rng();
    for _ in 0..9 {
        let chosen = algorithm.schedule(&replica, &nodes, &mut rng).expect("fits");
        run_on(&mut nodes[chosen], &replica);
    }
    let counts: Vec<u32> = nodes.iter().map(|n| n.usage.owner_count("rs")).collect();
    assert_eq!(counts, [3, 3, 3]);
}

#[test]
fn the_least_loaded_node_wins() {
    let mut nodes = vec![node("busy", 4000, 4), node("idle", 4000, 4), node("small", 1000, 1)];
    run_on(&mut nodes[0], &pod(3000, 3 * 1024));
    let mut algorithm = Algorithm::new(0);
    assert_eq!(algorithm.schedule(&pod(500, 512), &nodes, &mut rng()), Ok(1));
}

#[test]
fn a_single_feasible_node_is_chosen_without_scoring() {
    let nodes = vec![node("small", 100, 1), node("big", 4000, 4)];
    let mut algorithm = Algorithm::new(0);
    assert_eq!(algorithm.schedule(&pod(2000, 0), &nodes, &mut rng()), Ok(1));
}

#[test]
fn ties_are_broken_at_random_across_equal_nodes() {
    let nodes: Vec<NodeInfo> = (0..4).map(|i| node(&format!("n{i}"), 4000, 4)).collect();
    let mut algorithm = Algorithm::new(0);
    let mut rng = rng();
    let mut seen = [0; 4];
    for _ in 0..200 {
        seen[algorithm.schedule(&pod(100, 100), &nodes, &mut rng).expect("fits")] += 1;
    }
    assert!(seen.iter().all(|&count| count > 20), "{seen:?}");
}

#[test]
fn the_message_aggregates_and_sorts_reasons() {
    let nodes = vec![
        tainted(node("gone", 8000, 8), TAINT_UNREACHABLE, "", NO_SCHEDULE),
        node("a", 1000, 4),
        node("b", 1000, 4),
    ];
    let mut algorithm = Algorithm::new(0);
    let error = algorithm.schedule(&pod(2000, 0), &nodes, &mut rng()).expect_err("too big");
    assert_eq!(
        error.to_string(),
        "0/3 nodes are available: 1 node(s) had untolerated taint \
         {node.kubernetes.io/unreachable: }, 2 Insufficient cpu."
    );
    assert_eq!(error.nodes_total, 3);
}

#[test]
fn the_message_counts_every_reason_of_every_node() {
    let mut cordoned = node("c", 1000, 1);
    cordoned.node.unschedulable = true;
    let mut nodes = vec![
        cordoned,
        labelled(node("d", 1000, 1), &[("disk", "ssd")]),
        node("e", 1000, 1),
        tainted(node("f", 1000, 1), "dedicated", "db", NO_SCHEDULE),
    ];
    for _ in 0..10 {
        nodes.push(labelled(node("small", 100, 1), &[("disk", "ssd")]));
    }
    let mut p = pod(500, 2048);
    p.node_selector = vec![("disk".into(), "ssd".into())];
    let error = Algorithm::new(0).schedule(&p, &nodes, &mut rng()).expect_err("nothing fits");
    // "10 ..." sorts before "11 ..." and "1 node(s)" strings, as Go's sort.Strings does.
    assert_eq!(
        error.to_string(),
        "0/14 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
         1 node(s) had untolerated taint {dedicated: db}, 1 node(s) were unschedulable, \
         10 Insufficient cpu, 11 Insufficient memory."
    );
}

#[test]
fn no_nodes_is_its_own_message() {
    let error = Algorithm::new(0).schedule(&pod(1, 1), &[], &mut rng()).expect_err("no nodes");
    assert_eq!(error.to_string(), "no nodes available to schedule pods");
}

#[test]
fn feasible_node_counts_follow_kube_scheduler() {
    // Adaptive: every node below 100.
    assert_eq!(feasible_nodes_to_find(0, 0), 0);
    assert_eq!(feasible_nodes_to_find(5, 0), 5);
    assert_eq!(feasible_nodes_to_find(99, 0), 99);
    // 100 nodes: 50% would be 50, but never fewer than 100.
    assert_eq!(feasible_nodes_to_find(100, 0), 100);
    assert_eq!(feasible_nodes_to_find(250, 0), 120);
    // 1000 nodes: 50 - 8 = 42%.
    assert_eq!(feasible_nodes_to_find(1000, 0), 420);
    assert_eq!(feasible_nodes_to_find(5000, 0), 500);
    // 6000 nodes: 50 - 48 = 2%, raised to the 5% floor.
    assert_eq!(feasible_nodes_to_find(6000, 0), 300);
    assert_eq!(feasible_nodes_to_find(100_000, 0), 5000);
    // Configured percentages, still at least 100.
    assert_eq!(feasible_nodes_to_find(1000, 10), 100);
    assert_eq!(feasible_nodes_to_find(1000, 30), 300);
    assert_eq!(feasible_nodes_to_find(1000, 100), 1000);
    assert_eq!(feasible_nodes_to_find(1000, 250), 1000);
    assert_eq!(feasible_nodes_to_find(50, 10), 50);
}

#[test]
fn the_search_stops_at_enough_feasible_nodes_and_rotates() {
    let nodes: Vec<NodeInfo> = (0..1000).map(|i| node(&format!("n{i}"), 4000, 4)).collect();
    let mut algorithm = Algorithm::new(0);
    let mut rng = rng();
    let first = algorithm.schedule(&pod(1, 1), &nodes, &mut rng).expect("fits");
    assert!(first < 420, "only the first 420 nodes were considered: {first}");
    assert_eq!(algorithm.next_start_index(), 420);
    let second = algorithm.schedule(&pod(1, 1), &nodes, &mut rng).expect("fits");
    assert!((420..840).contains(&second), "{second}");
    assert_eq!(algorithm.next_start_index(), 840);
    // Wraps around the end.
    let third = algorithm.schedule(&pod(1, 1), &nodes, &mut rng).expect("fits");
    assert!(!(260..840).contains(&third), "{third}");
    assert_eq!(algorithm.next_start_index(), 260);
}

#[test]
fn infeasible_nodes_count_as_processed() {
    let mut nodes: Vec<NodeInfo> = (0..200).map(|i| node(&format!("n{i}"), 4000, 4)).collect();
    for info in nodes.iter_mut().take(50) {
        info.node.unschedulable = true;
    }
    let mut algorithm = Algorithm::new(0);
    // 200 nodes: 100 feasible wanted; 50 rejected first, so 150 processed.
    algorithm.schedule(&pod(1, 1), &nodes, &mut rng()).expect("fits");
    assert_eq!(algorithm.next_start_index(), 150);
}

#[test]
fn an_unschedulable_pod_looks_at_every_node() {
    let nodes: Vec<NodeInfo> = (0..500).map(|i| node(&format!("n{i}"), 1000, 1)).collect();
    let mut algorithm = Algorithm::new(0);
    let error = algorithm.schedule(&pod(2000, 0), &nodes, &mut rng()).expect_err("too big");
    assert_eq!(error.to_string(), "0/500 nodes are available: 500 Insufficient cpu.");
    assert_eq!(algorithm.next_start_index(), 0, "a full circle");
}

#[test]
fn sampling_only_scores_the_nodes_it_found() {
    // 300 nodes at 10%: 100 wanted, so the better nodes beyond them are not seen.
    let mut nodes: Vec<NodeInfo> = (0..300).map(|i| node(&format!("n{i}"), 4000, 4)).collect();
    for info in nodes.iter_mut().take(100) {
        run_on(info, &pod(2000, 2048));
    }
    let mut algorithm = Algorithm::new(10);
    let chosen = algorithm.schedule(&pod(1, 1), &nodes, &mut rng()).expect("fits");
    assert!(chosen < 100, "{chosen}");
    let mut everything = Algorithm::new(100);
    let chosen = everything.schedule(&pod(1, 1), &nodes, &mut rng()).expect("fits");
    assert!(chosen >= 100, "{chosen}");
}
