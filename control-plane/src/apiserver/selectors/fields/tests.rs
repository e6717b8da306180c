//! Field selector parsing, the fields each kind supports, and matching with missing fields
//! read as "".

use serde_json::{json, Value};

use super::{field_value, FieldOperator, FieldSelector};
use crate::apiserver::selectors::SelectorError;

fn parse(kind: &str, selector: &str) -> FieldSelector {
    match FieldSelector::parse(kind, selector) {
        Ok(parsed) => parsed,
        Err(error) => panic!("{kind} {selector:?} failed: {error}"),
    }
}

fn error(kind: &str, selector: &str) -> SelectorError {
    FieldSelector::parse(kind, selector).expect_err("the selector must be refused")
}

fn pod(node: Option<&str>, phase: &str) -> Value {
    let mut pod = json!({
        "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "default"},
        "spec": {"restartPolicy": "Always", "schedulerName": "default-scheduler",
                 "serviceAccountName": "default"},
        "status": {"phase": phase}
    });
    if let Some(node) = node {
        pod["spec"]["nodeName"] = json!(node);
    }
    pod
}

#[test]
fn equality_and_inequality() {
    let running = pod(Some("n1"), "Running");
    let pending = pod(None, "Pending");
    let selector = parse("Pod", "spec.nodeName=n1");
    assert!(selector.matches(&running));
    assert!(!selector.matches(&pending));
    let selector = parse("Pod", "status.phase==Running");
    assert!(selector.matches(&running));
    assert!(!selector.matches(&pending));
    let selector = parse("Pod", "status.phase!=Running,spec.restartPolicy=Always");
    assert!(!selector.matches(&running));
    assert!(selector.matches(&pending));
}

#[test]
fn missing_fields_compare_as_empty() {
    // The scheduler watches unscheduled pods with `spec.nodeName=`.
    let unscheduled = parse("Pod", "spec.nodeName=");
    assert!(unscheduled.matches(&pod(None, "Pending")));
    assert!(!unscheduled.matches(&pod(Some("n1"), "Running")));
    let scheduled = parse("Pod", "spec.nodeName!=");
    assert!(scheduled.matches(&pod(Some("n1"), "Running")));
    assert!(!scheduled.matches(&pod(None, "Pending")));
    assert!(parse("Pod", "status.nominatedNodeName=").matches(&json!({})));
}

#[test]
fn metadata_fields_for_every_kind() {
    let lease = json!({"metadata": {"name": "n1", "namespace": "kube-node-lease"}});
    for kind in ["Lease", "Deployment", "ConfigMap", "Endpoints", "ClusterRole", "Widget"] {
        let selector = parse(kind, "metadata.name=n1,metadata.namespace=kube-node-lease");
        assert!(selector.matches(&lease), "{kind}");
        assert!(!parse(kind, "metadata.name=n2").matches(&lease), "{kind}");
    }
    // kubectl delete waits on `metadata.name`; cluster-scoped objects have namespace "".
    let node = json!({"metadata": {"name": "n1"}});
    assert!(parse("Node", "metadata.name=n1").matches(&node));
    assert!(parse("ClusterRole", "metadata.namespace=").matches(&node));
}

#[test]
fn pod_fields() {
    let pod = json!({
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"nodeName": "n1", "hostNetwork": true, "schedulerName": "s",
                 "serviceAccountName": "sa", "restartPolicy": "Never"},
        "status": {"phase": "Running", "podIP": "10.0.0.9", "podIPs": [{"ip": "10.0.0.9"}],
                   "nominatedNodeName": "n2"}
    });
    let cases = [
        ("spec.nodeName", "n1"),
        ("spec.restartPolicy", "Never"),
        ("spec.schedulerName", "s"),
        ("spec.serviceAccountName", "sa"),
        ("spec.hostNetwork", "true"),
        ("status.phase", "Running"),
        ("status.podIP", "10.0.0.9"),
        ("status.nominatedNodeName", "n2"),
        ("status.podIPs", ""),
        ("metadata.namespace", "ns"),
    ];
    for (field, value) in cases {
        assert_eq!(field_value("Pod", &pod, field), value, "{field}");
        assert!(parse("Pod", &format!("{field}={value}")).matches(&pod), "{field}");
    }
    assert_eq!(field_value("Pod", &json!({}), "spec.hostNetwork"), "false");
    assert_eq!(
        field_value("Pod", &json!({"status": {"podIP": "1.2.3.4"}}), "status.podIP"),
        "1.2.3.4"
    );
    // Old clients' `spec.host` is `spec.nodeName`.
    let selector = parse("Pod", "spec.host=n1");
    assert_eq!(selector.requirements()[0].field(), "spec.nodeName");
    assert!(selector.matches(&pod));
}

#[test]
fn event_fields() {
    let event = json!({
        "metadata": {"name": "web.17", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web", "uid": "u1",
                           "apiVersion": "v1", "resourceVersion": "42",
                           "fieldPath": "spec.containers{app}"},
        "reason": "Pulled",
        "source": {"component": "kubelet", "host": "n1"},
        "reportingComponent": "kubelet",
        "type": "Normal"
    });
    // What `kubectl describe pod web` asks for.
    let describe = parse(
        "Event",
        "involvedObject.name=web,involvedObject.namespace=default,involvedObject.kind=Pod,\
         involvedObject.uid=u1",
    );
    assert!(describe.matches(&event));
    for (field, value) in [
        ("involvedObject.apiVersion", "v1"),
        ("involvedObject.resourceVersion", "42"),
        ("involvedObject.fieldPath", "spec.containers{app}"),
        ("reason", "Pulled"),
        ("reportingComponent", "kubelet"),
        ("source", "kubelet"),
        ("type", "Normal"),
    ] {
        assert_eq!(field_value("Event", &event, field), value, "{field}");
    }
    assert!(!parse("Event", "type=Warning").matches(&event));
}

#[test]
fn node_namespace_and_service_fields() {
    let node = json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true}});
    assert!(parse("Node", "spec.unschedulable=true").matches(&node));
    let schedulable = json!({"metadata": {"name": "n2"}});
    assert!(parse("Node", "spec.unschedulable=false").matches(&schedulable));
    let namespace = json!({"metadata": {"name": "ns"}, "status": {"phase": "Terminating"}});
    assert!(parse("Namespace", "status.phase=Terminating").matches(&namespace));
    let service = json!({"metadata": {"name": "s", "namespace": "d"},
                         "spec": {"type": "ClusterIP", "clusterIP": "None"}});
    assert!(parse("Service", "spec.clusterIP=None,spec.type=ClusterIP").matches(&service));
    assert!(
        parse("Secret", "type=kubernetes.io/tls").matches(&json!({"type": "kubernetes.io/tls"}))
    );
}

#[test]
fn unsupported_fields_use_kubernetes_messages() {
    let refused = error("Pod", "spec.containers=x");
    assert_eq!(refused, SelectorError::FieldNotSupported("spec.containers".to_owned()));
    assert_eq!(refused.to_string(), "field label not supported: spec.containers");
    assert_eq!(
        error("Node", "metadata.namespace=x").to_string(),
        "field label not supported: metadata.namespace"
    );
    assert_eq!(
        error("Namespace", "metadata.namespace=x").to_string(),
        "field label not supported: metadata.namespace"
    );
    assert_eq!(
        error("Event", "involvedObject.foo=x").to_string(),
        "field label not supported: involvedObject.foo"
    );
    assert_eq!(
        error("Deployment", "spec.replicas=1").to_string(),
        "\"spec.replicas\" is not a known field selector: only \"metadata.name\", \
         \"metadata.namespace\""
    );
    assert_eq!(
        error("Lease", "=x").to_string(),
        "\"\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
    );
    // Field names are not trimmed, as in Kubernetes.
    assert_eq!(
        error("Pod", " spec.nodeName=n1").to_string(),
        "field label not supported:  spec.nodeName"
    );
}

#[test]
fn syntax_errors() {
    assert_eq!(
        error("Pod", "spec.nodeName=n1,status.phase").to_string(),
        "invalid selector: 'spec.nodeName=n1,status.phase'; can't understand 'status.phase'"
    );
    assert_eq!(
        error("Pod", "spec.nodeName=a\\b").to_string(),
        "invalid field selector: invalid escape sequence: \\b"
    );
    assert_eq!(
        error("Pod", "spec.nodeName=a\\").to_string(),
        "invalid field selector: invalid escape sequence: \\"
    );
    assert_eq!(
        error("Pod", "spec.nodeName=a=b").to_string(),
        "invalid field selector: unescaped character in value: '='"
    );
}

#[test]
fn escapes_and_operators() {
    let selector = parse("Pod", "metadata.name=a\\,b\\=c\\\\d");
    assert_eq!(selector.requirements()[0].value(), "a,b=c\\d");
    assert!(selector.matches(&json!({"metadata": {"name": "a,b=c\\d"}})));
    assert_eq!(selector.to_string(), "metadata.name=a\\,b\\=c\\\\d");
    // `a!=b` splits at `!=`, `a=!b` at `=` (the first operator from the left wins).
    let selector = parse("Pod", "metadata.name=!x");
    assert_eq!(selector.requirements()[0].operator(), FieldOperator::Equals);
    assert_eq!(selector.requirements()[0].value(), "!x");
    let selector = parse("Pod", "metadata.name==x");
    assert_eq!(selector.requirements()[0].value(), "x");
    assert_eq!(selector.to_string(), "metadata.name=x");
}

#[test]
fn empty_terms_and_narrowing() {
    for empty in ["", ",", ",,"] {
        let selector = parse("Pod", empty);
        assert!(selector.is_empty(), "{empty:?}");
        assert!(selector.matches(&json!({})));
    }
    assert_eq!(FieldSelector::everything("Pod"), parse("Pod", ""));
    let selector =
        parse("Pod", "metadata.namespace=kube-system,,metadata.name=dns,spec.nodeName!=");
    assert_eq!(selector.requirements().len(), 3);
    assert_eq!(selector.requires_exact_match("metadata.name"), Some("dns"));
    assert_eq!(selector.requires_exact_match("metadata.namespace"), Some("kube-system"));
    assert_eq!(selector.requires_exact_match("spec.nodeName"), None);
    assert!(!selector.is_empty());
}
