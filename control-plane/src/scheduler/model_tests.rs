//! Unit tests of the conversions into the scheduling model: requests arithmetic, selector
//! terms, tolerations and the taints implied by a node's Ready condition.

use serde_json::json;

use super::*;

fn pod(spec: serde_json::Value) -> wire::Pod {
    serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec}))
        .expect("pod")
}

fn container(name: &str, requests: serde_json::Value) -> serde_json::Value {
    json!({"name": name, "image": "host", "resources": {"requests": requests}})
}

fn requests_of(spec: serde_json::Value) -> (i64, i64) {
    let p = Pod::from_wire(&pod(spec));
    (p.requests.milli_cpu, p.requests.memory)
}

#[test]
fn requests_sum_containers() {
    let spec = json!({"containers": [
        container("a", json!({"cpu": "250m", "memory": "64Mi"})),
        container("b", json!({"cpu": "1", "memory": "1Gi"})),
    ]});
    assert_eq!(requests_of(spec), (1250, (64 << 20) + (1 << 30)));
}

#[test]
fn requests_take_the_largest_init_container_when_it_exceeds_the_sum() {
    let spec = json!({
        "containers": [container("a", json!({"cpu": "100m", "memory": "10Mi"}))],
        "initContainers": [
            container("i1", json!({"cpu": "2", "memory": "1Mi"})),
            container("i2", json!({"cpu": "50m", "memory": "5Mi"})),
        ],
    });
    // CPU from the first init container, memory from the regular container: per resource.
    assert_eq!(requests_of(spec), (2000, 10 << 20));
}

#[test]
fn requests_keep_the_sum_when_init_containers_are_smaller() {
    let spec = json!({
        "containers": [
            container("a", json!({"cpu": "300m"})),
            container("b", json!({"cpu": "300m"})),
        ],
        "initContainers": [container("i", json!({"cpu": "500m"}))],
    });
    assert_eq!(requests_of(spec), (600, 0));
}

#[test]
fn sidecar_init_containers_add_to_the_sum_and_to_later_init_containers() {
    let sidecar = json!({"name": "s", "image": "host", "restartPolicy": "Always",
        "resources": {"requests": {"cpu": "200m"}}});
    let spec = json!({
        "containers": [container("a", json!({"cpu": "100m"}))],
        "initContainers": [sidecar, container("i", json!({"cpu": "1"}))],
    });
    // Sum: 100m + 200m sidecar = 300m; init "i" runs beside the sidecar: 1 + 200m = 1200m.
    assert_eq!(requests_of(spec), (1200, 0));
    let sidecar = json!({"name": "s", "image": "host", "restartPolicy": "Always",
        "resources": {"requests": {"cpu": "700m"}}});
    let spec = json!({
        "containers": [container("a", json!({"cpu": "500m"}))],
        "initContainers": [container("i", json!({"cpu": "1"})), sidecar],
    });
    // "i" runs before the sidecar starts: max(1000, 500 + 700) = 1200.
    assert_eq!(requests_of(spec), (1200, 0));
}

#[test]
fn requests_add_overhead() {
    let spec = json!({
        "containers": [container("a", json!({"cpu": "100m", "memory": "1Mi"}))],
        "overhead": {"cpu": "250m", "memory": "1Mi"},
    });
    assert_eq!(requests_of(spec), (350, 2 << 20));
}

#[test]
fn requests_count_ephemeral_storage_and_extended_resources() {
    let spec = json!({"containers": [
        container("a", json!({"ephemeral-storage": "1Gi", "nvidia.com/gpu": "1"})),
        container("b", json!({"nvidia.com/gpu": "2", "example.com/foo": "3"})),
    ]});
    let p = Pod::from_wire(&pod(spec));
    assert_eq!(p.requests.ephemeral_storage, 1 << 30);
    assert_eq!(
        p.requests.scalars,
        vec![("example.com/foo".to_string(), 3), ("nvidia.com/gpu".to_string(), 3)]
    );
}

#[test]
fn memory_rounds_up_to_whole_bytes() {
    assert_eq!(
        requests_of(json!({"containers": [container("a", json!({"memory": "1500m"}))]})).1,
        2
    );
}

#[test]
fn non_zero_requests_default_only_missing_values() {
    let spec = json!({"containers": [
        {"name": "a", "image": "host"},
        container("b", json!({"cpu": "0"})),
        container("c", json!({"memory": "1Gi"})),
    ]});
    let p = Pod::from_wire(&pod(spec));
    assert_eq!(p.requests.milli_cpu, 0);
    // a: 100m (default); b: 0 (explicit); c: 100m (default).
    assert_eq!(p.non_zero_milli_cpu, 200);
    assert_eq!(p.non_zero_memory, 2 * DEFAULT_MEMORY_REQUEST + (1 << 30));
}

#[test]
fn pod_conversion_reads_selector_affinity_tolerations_owner_priority() {
    let p: wire::Pod = serde_json::from_value(json!({
        "metadata": {"name": "p", "ownerReferences": [
            {"apiVersion": "v1", "kind": "X", "name": "x", "uid": "not-controller"},
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs-uid",
             "controller": true},
        ]},
        "spec": {
            "containers": [{"name": "a", "image": "host"}],
            "priority": 7,
            "nodeName": "",
            "nodeSelector": {"disk": "ssd"},
            "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                ]},
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 5, "preference": {"matchExpressions":
                        [{"key": "fast", "operator": "Exists"}]}},
                    {"weight": 0, "preference": {"matchExpressions":
                        [{"key": "slow", "operator": "Exists"}]}},
                ],
            }},
        },
    }))
    .expect("pod");
    let p = Pod::from_wire(&p);
    assert_eq!(p.priority, 7);
    assert_eq!(p.node_name, None, "an empty nodeName is no nodeName");
    assert_eq!(p.node_selector, vec![("disk".to_string(), "ssd".to_string())]);
    assert_eq!(p.owner.as_deref(), Some("rs-uid"));
    assert_eq!(p.tolerations.len(), 1);
    assert_eq!(p.tolerations[0].operator, TolerationOperator::Exists);
    let required = p.required_terms.expect("required terms");
    assert_eq!(required.len(), 1);
    assert_eq!(required[0].expressions[0].operator, Operator::In(vec!["a".into()]));
    assert_eq!(p.preferred_terms.len(), 1, "zero weights are dropped");
    assert_eq!(p.preferred_terms[0].0, 5);
}

fn requirement(key: &str, operator: &str, values: &[&str]) -> wire::NodeSelectorRequirement {
    wire::NodeSelectorRequirement {
        key: key.into(),
        operator: operator.into(),
        values: if values.is_empty() {
            None
        } else {
            Some(values.iter().map(|v| v.to_string()).collect())
        },
    }
}

fn term(
    expressions: Vec<wire::NodeSelectorRequirement>,
    fields: Vec<wire::NodeSelectorRequirement>,
) -> NodeSelectorTerm {
    NodeSelectorTerm::from_wire(&wire::NodeSelectorTerm {
        match_expressions: Some(expressions),
        match_fields: Some(fields),
    })
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn label_operators_match_as_kubernetes_label_selectors() {
    let node = labels(&[("zone", "a"), ("cores", "8")]);
    let check = |operator: &str, key: &str, values: &[&str], expected: bool| {
        let t = term(vec![requirement(key, operator, values)], vec![]);
        assert_eq!(t.matches("n", &node), expected, "{key} {operator} {values:?}");
    };
    check("In", "zone", &["a", "b"], true);
    check("In", "zone", &["b"], false);
    check("In", "missing", &["a"], false);
    check("NotIn", "zone", &["b"], true);
    check("NotIn", "zone", &["a"], false);
    check("NotIn", "missing", &["a"], true);
    check("Exists", "zone", &[], true);
    check("Exists", "missing", &[], false);
    check("DoesNotExist", "missing", &[], true);
    check("DoesNotExist", "zone", &[], false);
    check("Gt", "cores", &["4"], true);
    check("Gt", "cores", &["8"], false);
    check("Lt", "cores", &["16"], true);
    check("Lt", "cores", &["8"], false);
    check("Gt", "zone", &["1"], false);
    check("Gt", "missing", &["1"], false);
    // Invalid requirements make the whole term match nothing.
    check("Gt", "cores", &["x"], false);
    check("Gt", "cores", &["1", "2"], false);
    check("In", "zone", &[], false);
    check("Exists", "zone", &["a"], false);
    check("Near", "zone", &["a"], false);
}

#[test]
fn terms_and_their_requirements_and_fields() {
    let node = labels(&[("zone", "a"), ("disk", "ssd")]);
    let both =
        term(vec![requirement("zone", "In", &["a"]), requirement("disk", "In", &["ssd"])], vec![]);
    assert!(both.matches("n", &node));
    let one_fails =
        term(vec![requirement("zone", "In", &["a"]), requirement("disk", "In", &["hdd"])], vec![]);
    assert!(!one_fails.matches("n", &node));
    let by_name = term(vec![], vec![requirement("metadata.name", "In", &["n"])]);
    assert!(by_name.matches("n", &node));
    assert!(!by_name.matches("m", &node));
    let not_name = term(vec![], vec![requirement("metadata.name", "NotIn", &["n"])]);
    assert!(!not_name.matches("n", &node));
    assert!(not_name.matches("m", &node));
    let labels_and_name = term(
        vec![requirement("zone", "In", &["a"])],
        vec![requirement("metadata.name", "In", &["m"])],
    );
    assert!(!labels_and_name.matches("n", &node));
    // Fields take exactly one value and only In/NotIn.
    assert!(
        !term(vec![], vec![requirement("metadata.name", "In", &["n", "m"])]).matches("n", &node)
    );
    assert!(!term(vec![], vec![requirement("metadata.name", "Exists", &[])]).matches("n", &node));
    assert!(!term(vec![], vec![]).matches("n", &node), "an empty term matches nothing");
}

fn toleration(key: &str, operator: &str, value: &str, effect: &str) -> Toleration {
    Toleration::from_wire(&wire::Toleration {
        key: Some(key.into()).filter(|k: &String| !k.is_empty()),
        operator: Some(operator.into()).filter(|o: &String| !o.is_empty()),
        value: Some(value.into()).filter(|v: &String| !v.is_empty()),
        effect: Some(effect.into()).filter(|e: &String| !e.is_empty()),
        toleration_seconds: None,
    })
}

#[test]
fn tolerations_match_taints_as_kubernetes() {
    let taint = Taint::new("dedicated", "db", NO_SCHEDULE);
    let check = |t: Toleration, expected: bool| {
        assert_eq!(t.tolerates(&taint), expected, "{t:?}");
    };
    check(toleration("dedicated", "Equal", "db", "NoSchedule"), true);
    check(toleration("dedicated", "", "db", ""), true);
    check(toleration("dedicated", "Equal", "web", "NoSchedule"), false);
    check(toleration("dedicated", "Equal", "db", "NoExecute"), false);
    check(toleration("dedicated", "Exists", "", ""), true);
    check(toleration("other", "Exists", "", ""), false);
    check(toleration("", "Exists", "", ""), true);
    check(toleration("", "Exists", "", "PreferNoSchedule"), false);
    check(toleration("dedicated", "Equal", "", "NoSchedule"), false);
    check(toleration("dedicated", "Maybe", "db", "NoSchedule"), false);
    let empty_value = Taint::new("k", "", NO_EXECUTE);
    assert!(toleration("k", "Equal", "", "").tolerates(&empty_value));
    assert!(tolerated(
        &[toleration("x", "Exists", "", ""), toleration("k", "Exists", "", "")],
        &empty_value
    ));
    assert!(!tolerated(&[], &empty_value));
}

fn node(status: serde_json::Value, spec: serde_json::Value) -> Node {
    Node::from_wire(
        &serde_json::from_value(json!({"metadata": {"name": "n1", "labels": {"a": "b"}},
            "spec": spec, "status": status}))
        .expect("node"),
    )
}

fn ready(status: &str) -> serde_json::Value {
    json!([{"type": "Ready", "status": status}])
}

#[test]
fn node_conversion_reads_allocatable_pods_and_spec() {
    let n = node(
        json!({"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110",
            "ephemeral-storage": "10Gi", "nvidia.com/gpu": "2"},
            "capacity": {"cpu": "8"}, "conditions": ready("True")}),
        json!({"unschedulable": true,
            "taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]}),
    );
    assert_eq!(n.name, "n1");
    assert_eq!(n.labels, labels(&[("a", "b")]));
    assert_eq!(n.allocatable.milli_cpu, 4000, "allocatable wins over capacity");
    assert_eq!(n.allocatable.memory, 8 << 30);
    assert_eq!(n.allocatable.ephemeral_storage, 10 << 30);
    assert_eq!(n.allocatable.scalar("nvidia.com/gpu"), 2);
    assert_eq!(n.allowed_pods, 110);
    assert!(n.unschedulable);
    assert_eq!(n.taints, vec![Taint::new("k", "v", NO_SCHEDULE)]);
}

#[test]
fn node_without_allocatable_is_taken_at_capacity() {
    let n = node(
        json!({"capacity": {"cpu": "2", "pods": "10"}, "conditions": ready("True")}),
        json!({}),
    );
    assert_eq!((n.allocatable.milli_cpu, n.allowed_pods), (2000, 10));
}

#[test]
fn ready_condition_implies_taints() {
    let taints = |status: serde_json::Value| node(status, json!({})).taints;
    assert_eq!(taints(json!({"conditions": ready("True")})), vec![]);
    assert_eq!(
        taints(json!({"conditions": ready("False")})),
        vec![Taint::new(TAINT_NOT_READY, "", NO_SCHEDULE)]
    );
    assert_eq!(
        taints(json!({"conditions": ready("Unknown")})),
        vec![Taint::new(TAINT_UNREACHABLE, "", NO_SCHEDULE)]
    );
    assert_eq!(taints(json!({})), vec![Taint::new(TAINT_UNREACHABLE, "", NO_SCHEDULE)]);
    // Not added twice when the lifecycle controller already put it there.
    let n = node(
        json!({"conditions": ready("False")}),
        json!({"taints": [{"key": TAINT_NOT_READY, "effect": "NoSchedule"},
            {"key": TAINT_NOT_READY, "effect": "NoExecute"}]}),
    );
    assert_eq!(
        n.taints,
        vec![
            Taint::new(TAINT_NOT_READY, "", NO_SCHEDULE),
            Taint::new(TAINT_NOT_READY, "", NO_EXECUTE)
        ]
    );
}

#[test]
fn usage_adds_and_removes_exactly() {
    let mut a = Pod::from_wire(&pod(json!({"containers": [
        container("a", json!({"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "1"}))]})));
    a.owner = Some(Arc::from("rs"));
    let b = Pod::from_wire(&pod(json!({"containers": [container("b", json!({"cpu": "500m"}))]})));
    let mut usage = NodeUsage::default();
    usage.add(&a);
    usage.add(&b);
    assert_eq!(usage.pods, 2);
    assert_eq!(usage.requested.milli_cpu, 1500);
    assert_eq!(usage.requested.scalar("nvidia.com/gpu"), 1);
    assert_eq!(usage.non_zero_memory, (1 << 30) + DEFAULT_MEMORY_REQUEST);
    assert_eq!(usage.owner_count("rs"), 1);
    usage.remove(&a);
    assert_eq!(usage.owner_count("rs"), 0);
    assert!(usage.owners.is_empty());
    assert!(usage.requested.scalars.is_empty(), "zero scalars are dropped");
    usage.remove(&b);
    assert_eq!(usage, NodeUsage::default());
}

#[test]
fn resources_max_is_per_resource() {
    let mut a =
        Resources { milli_cpu: 5, memory: 1, scalars: vec![("g".into(), 1)], ..Default::default() };
    let b = Resources {
        milli_cpu: 2,
        memory: 9,
        scalars: vec![("g".into(), 3), ("h".into(), 1)],
        ..Default::default()
    };
    a.max_with(&b);
    assert_eq!((a.milli_cpu, a.memory), (5, 9));
    assert_eq!(a.scalars, vec![("g".to_string(), 3), ("h".to_string(), 1)]);
}
