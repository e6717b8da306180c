//! Patches as real clients send them (kubectl 1.32 `apply`, `label`, `annotate`, `scale`,
//! `patch`, and kubelet-style status patches), applied through [`apply_patch`].

use serde_json::{json, Value};

use super::{apply_patch, PatchError, PatchType};

fn patched(kind: &str, original: &Value, patch_type: PatchType, patch: &Value) -> Value {
    let body = patch.to_string();
    match apply_patch(kind, original, patch_type, body.as_bytes()) {
        Ok(result) => result,
        Err(error) => panic!("{kind} {patch_type:?} patch {patch} failed: {error}"),
    }
}

fn strategic(kind: &str, original: &Value, patch: &Value) -> Value {
    patched(kind, original, PatchType::Strategic, patch)
}

fn deployment(containers: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": containers}
            }
        }
    })
}

fn containers_of(object: &Value) -> &Value {
    &object["spec"]["template"]["spec"]["containers"]
}

#[test]
fn content_types_name_patch_types() {
    let cases = [
        ("application/merge-patch+json", Some(PatchType::Merge)),
        ("application/json-patch+json", Some(PatchType::Json)),
        ("application/strategic-merge-patch+json", Some(PatchType::Strategic)),
        ("application/apply-patch+yaml", Some(PatchType::Apply)),
        ("Application/Merge-Patch+JSON; charset=utf-8", Some(PatchType::Merge)),
        (" application/json-patch+json ;charset=UTF-8", Some(PatchType::Json)),
        ("application/json", None),
        ("text/plain", None),
        ("", None),
    ];
    for (content_type, expected) in cases {
        assert_eq!(PatchType::from_content_type(content_type), expected, "{content_type:?}");
    }
    for patch_type in PatchType::ALL {
        assert_eq!(PatchType::from_content_type(patch_type.content_type()), Some(patch_type));
    }
}

#[test]
fn apply_changes_a_container_image() {
    let original = deployment(json!([
        {"name": "app", "image": "nginx:1.26", "ports": [{"containerPort": 80}]},
        {"name": "sidecar", "image": "envoy:1"}
    ]));
    // kubectl apply after editing one image: the last-applied annotation plus the change,
    // with the order of the containers kubectl knows about.
    let patch = json!({
        "metadata": {"annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": "{\"kind\":\"Deployment\"}\n"
        }},
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
            "containers": [{"image": "nginx:1.27", "name": "app"}]
        }}}
    });
    let result = strategic("Deployment", &original, &patch);
    assert_eq!(
        containers_of(&result),
        &json!([
            {"name": "app", "image": "nginx:1.27", "ports": [{"containerPort": 80}]},
            {"name": "sidecar", "image": "envoy:1"}
        ])
    );
    assert_eq!(
        result["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
        json!("{\"kind\":\"Deployment\"}\n")
    );
    assert_eq!(result["spec"]["replicas"], json!(2));
    assert_eq!(result["metadata"]["labels"], json!({"app": "web"}));
}

#[test]
fn apply_keeps_a_container_the_server_added() {
    // An injected sidecar is not in the user's configuration, so not in $setElementOrder.
    let original = deployment(json!([
        {"name": "injected", "image": "proxy:1"},
        {"name": "app", "image": "nginx:1.26"}
    ]));
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "app"}],
        "containers": [{"image": "nginx:1.27", "name": "app"}]
    }}}});
    let result = strategic("Deployment", &original, &patch);
    assert_eq!(
        containers_of(&result),
        &json!([{"name": "injected", "image": "proxy:1"}, {"name": "app", "image": "nginx:1.27"}])
    );
}

#[test]
fn apply_adds_and_removes_containers_in_order() {
    let original = deployment(json!([
        {"name": "a", "image": "a:1"},
        {"name": "b", "image": "b:1"}
    ]));
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "new"}, {"name": "a"}],
        "containers": [{"image": "new:1", "name": "new"}, {"$patch": "delete", "name": "b"}]
    }}}});
    let result = strategic("Deployment", &original, &patch);
    assert_eq!(
        containers_of(&result),
        &json!([{"name": "new", "image": "new:1"}, {"name": "a", "image": "a:1"}])
    );
}

#[test]
fn apply_adds_and_removes_env_vars() {
    let original = deployment(json!([{
        "name": "app",
        "image": "nginx",
        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    }]));
    let add = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "app"}],
        "containers": [{
            "$setElementOrder/env": [{"name": "A"}, {"name": "B"}, {"name": "C"}],
            "env": [{"name": "C", "value": "3"}],
            "name": "app"
        }]
    }}}});
    let added = strategic("Deployment", &original, &add);
    assert_eq!(
        containers_of(&added)[0]["env"],
        json!([
            {"name": "A", "value": "1"},
            {"name": "B", "value": "2"},
            {"name": "C", "value": "3"}
        ])
    );

    let remove = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "app"}],
        "containers": [{
            "$setElementOrder/env": [{"name": "A"}, {"name": "C"}],
            "env": [{"$patch": "delete", "name": "B"}],
            "name": "app"
        }]
    }}}});
    let removed = strategic("Deployment", &added, &remove);
    assert_eq!(
        containers_of(&removed),
        &json!([{
            "name": "app",
            "image": "nginx",
            "env": [{"name": "A", "value": "1"}, {"name": "C", "value": "3"}]
        }])
    );

    // Changing a value and dropping its now-unset sibling field inside one env item.
    let change = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "app"}],
        "containers": [{
            "$setElementOrder/env": [{"name": "A"}, {"name": "C"}],
            "env": [{"name": "A", "value": null, "valueFrom": {"fieldRef": {"fieldPath": "x"}}}],
            "name": "app"
        }]
    }}}});
    let changed = strategic("Deployment", &removed, &change);
    assert_eq!(
        containers_of(&changed)[0]["env"],
        json!([
            {"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "x"}}},
            {"name": "C", "value": "3"}
        ])
    );
}

#[test]
fn apply_reorders_a_list_without_changing_it() {
    let original = deployment(json!([{"name": "a"}, {"name": "b"}, {"name": "c"}]));
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}]
    }}}});
    let result = strategic("Deployment", &original, &patch);
    assert_eq!(containers_of(&result), &json!([{"name": "c"}, {"name": "a"}, {"name": "b"}]));
}

#[test]
fn apply_removes_a_label_with_null() {
    let original = deployment(json!([{"name": "app"}]));
    let mut labelled = original.clone();
    labelled["metadata"]["labels"] = json!({"app": "web", "tier": "front"});
    let patch = json!({"metadata": {"labels": {"tier": null}}});
    let result = strategic("Deployment", &labelled, &patch);
    assert_eq!(result["metadata"]["labels"], json!({"app": "web"}));
    // Deleting a label that is already gone is not an error and stores no null.
    let again = strategic("Deployment", &result, &patch);
    assert_eq!(again, result);
    // On an object without labels the patch applies to an empty map: no null is stored.
    let no_labels = json!({"metadata": {"name": "x"}});
    assert_eq!(
        strategic("Pod", &no_labels, &patch),
        json!({"metadata": {"name": "x", "labels": {}}})
    );
}

#[test]
fn apply_adds_and_removes_finalizers() {
    let original = json!({"metadata": {"name": "x", "finalizers": ["a/one", "b/two"]}});
    let add = json!({"metadata": {
        "$setElementOrder/finalizers": ["a/one", "b/two", "c/three"],
        "finalizers": ["c/three"]
    }});
    let added = strategic("ConfigMap", &original, &add);
    assert_eq!(added["metadata"]["finalizers"], json!(["a/one", "b/two", "c/three"]));

    let remove = json!({"metadata": {
        "$deleteFromPrimitiveList/finalizers": ["a/one"],
        "$setElementOrder/finalizers": ["b/two", "c/three"]
    }});
    let removed = strategic("ConfigMap", &added, &remove);
    assert_eq!(removed["metadata"]["finalizers"], json!(["b/two", "c/three"]));
}

#[test]
fn a_plain_finalizer_patch_unions_and_puts_new_items_first() {
    // Without $setElementOrder, Kubernetes places patch items not on the server before the
    // server's remaining items.
    let original = json!({"metadata": {"finalizers": ["a", "b"]}});
    let patch = json!({"metadata": {"finalizers": ["b", "c"]}});
    let result = strategic("Namespace", &original, &patch);
    assert_eq!(result["metadata"]["finalizers"], json!(["a", "b", "c"]));
    let patch = json!({"metadata": {"finalizers": ["z"]}});
    let result = strategic("Namespace", &original, &patch);
    assert_eq!(result["metadata"]["finalizers"], json!(["z", "a", "b"]));
}

#[test]
fn apply_switches_the_deployment_strategy_with_retain_keys() {
    let mut original = deployment(json!([{"name": "app"}]));
    original["spec"]["strategy"] =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}});
    let patch = json!({"spec": {"strategy": {
        "$retainKeys": ["type"],
        "rollingUpdate": null,
        "type": "Recreate"
    }}});
    let result = strategic("Deployment", &original, &patch);
    assert_eq!(result["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn apply_changes_a_volume_source_with_retain_keys() {
    let pod = json!({"kind": "Pod", "spec": {
        "containers": [{"name": "app"}],
        "volumes": [
            {"name": "data", "emptyDir": {}},
            {"name": "logs", "hostPath": {"path": "/var/log"}}
        ]
    }});
    let patch = json!({"spec": {
        "$setElementOrder/volumes": [{"name": "data"}, {"name": "logs"}],
        "volumes": [{"$retainKeys": ["configMap", "name"], "configMap": {"name": "cm"},
                     "name": "data"}]
    }});
    let result = strategic("Pod", &pod, &patch);
    assert_eq!(
        result["spec"]["volumes"],
        json!([
            {"name": "data", "configMap": {"name": "cm"}},
            {"name": "logs", "hostPath": {"path": "/var/log"}}
        ])
    );
}

#[test]
fn merge_keys_follow_the_kubernetes_tags() {
    let pod = json!({"spec": {
        "containers": [{
            "name": "app",
            "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443}],
            "volumeMounts": [{"mountPath": "/data", "name": "data"}]
        }],
        "tolerations": [{"key": "a", "operator": "Exists"}],
        "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["a"]}]
    }});
    let patch = json!({"spec": {
        "containers": [{
            "name": "app",
            "ports": [{"containerPort": 80, "protocol": "TCP"}],
            "volumeMounts": [{"mountPath": "/data", "readOnly": true}]
        }],
        "tolerations": [{"key": "b", "operator": "Exists"}],
        "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["b"]}]
    }});
    let result = strategic("Pod", &pod, &patch);
    assert_eq!(
        result["spec"]["containers"][0]["ports"],
        json!([{"containerPort": 80, "name": "http", "protocol": "TCP"}, {"containerPort": 443}])
    );
    assert_eq!(
        result["spec"]["containers"][0]["volumeMounts"],
        json!([{"mountPath": "/data", "name": "data", "readOnly": true}])
    );
    // Tolerations have no patch strategy: the list is replaced.
    assert_eq!(result["spec"]["tolerations"], json!([{"key": "b", "operator": "Exists"}]));
    // hostnames inside a host alias is untagged: replaced within the merged item.
    assert_eq!(result["spec"]["hostAliases"], json!([{"ip": "10.0.0.1", "hostnames": ["b"]}]));
}

#[test]
fn service_ports_merge_on_port() {
    let service = json!({"kind": "Service", "spec": {
        "type": "ClusterIP",
        "ports": [{"port": 80, "targetPort": 8080, "name": "http"}, {"port": 443}]
    }});
    let patch = json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 53}]}});
    let result = strategic("Service", &service, &patch);
    assert_eq!(
        result["spec"]["ports"],
        json!([
            {"port": 80, "targetPort": 9090, "name": "http"},
            {"port": 53},
            {"port": 443}
        ])
    );
}

#[test]
fn status_conditions_merge_on_type() {
    let pod = json!({"status": {
        "phase": "Pending",
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "False", "reason": "ContainersNotReady"}
        ],
        "podIPs": [{"ip": "10.1.0.5"}]
    }});
    let patch = json!({"status": {
        "$setElementOrder/conditions": [
            {"type": "PodScheduled"}, {"type": "Initialized"}, {"type": "Ready"}
        ],
        "conditions": [
            {"type": "Initialized", "status": "True"},
            {"type": "Ready", "status": "True", "reason": null}
        ],
        "phase": "Running"
    }});
    let result = strategic("Pod", &pod, &patch);
    assert_eq!(
        result["status"],
        json!({
            "phase": "Running",
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Initialized", "status": "True"},
                {"type": "Ready", "status": "True"}
            ],
            "podIPs": [{"ip": "10.1.0.5"}]
        })
    );
    let node = json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}});
    let patch = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}]}});
    assert_eq!(
        strategic("Node", &node, &patch)["status"]["addresses"],
        json!([
            {"type": "Hostname", "address": "n1"},
            {"type": "InternalIP", "address": "10.0.0.1"}
        ])
    );
}

#[test]
fn owner_references_merge_on_uid() {
    let original = json!({"metadata": {"ownerReferences": [
        {"uid": "1", "kind": "ReplicaSet", "name": "a", "controller": true}
    ]}});
    let patch = json!({"metadata": {"ownerReferences": [
        {"uid": "1", "controller": null},
        {"uid": "2", "kind": "Node", "name": "n"}
    ]}});
    let result = strategic("Pod", &original, &patch);
    assert_eq!(
        result["metadata"]["ownerReferences"],
        json!([
            {"uid": "1", "kind": "ReplicaSet", "name": "a"},
            {"uid": "2", "kind": "Node", "name": "n"}
        ])
    );
}

#[test]
fn label_annotate_and_scale_send_merge_patches() {
    let original = deployment(json!([{"name": "app"}]));
    let labelled = patched(
        "Deployment",
        &original,
        PatchType::Merge,
        &json!({"metadata": {"labels": {"tier": "front", "app": null}}}),
    );
    assert_eq!(labelled["metadata"]["labels"], json!({"tier": "front"}));
    let annotated = patched(
        "Deployment",
        &labelled,
        PatchType::Merge,
        &json!({"metadata": {"annotations": {"owner": "team-a"}}}),
    );
    assert_eq!(annotated["metadata"]["annotations"], json!({"owner": "team-a"}));
    let scaled =
        patched("Deployment", &annotated, PatchType::Merge, &json!({"spec": {"replicas": 3}}));
    assert_eq!(scaled["spec"]["replicas"], json!(3));
    assert_eq!(containers_of(&scaled), &json!([{"name": "app"}]));
    // A merge patch replaces lists: containers are not merged by name.
    let replaced = patched(
        "Deployment",
        &scaled,
        PatchType::Merge,
        &json!({"spec": {"template": {"spec": {"containers": [{"name": "other"}]}}}}),
    );
    assert_eq!(containers_of(&replaced), &json!([{"name": "other"}]));
}

#[test]
fn json_patch_through_the_dispatcher() {
    let original = deployment(json!([{"name": "app", "image": "nginx:1.26"}]));
    let result = patched(
        "Deployment",
        &original,
        PatchType::Json,
        &json!([
            {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "x:2"},
            {"op": "add", "path": "/metadata/labels/tier", "value": "front"}
        ]),
    );
    assert_eq!(containers_of(&result), &json!([{"name": "app", "image": "x:2"}]));
    assert_eq!(result["metadata"]["labels"], json!({"app": "web", "tier": "front"}));
}

fn error_of(patch_type: PatchType, body: &str) -> PatchError {
    let original = json!({"metadata": {"name": "x"}, "spec": {"replicas": 1}});
    apply_patch("Deployment", &original, patch_type, body.as_bytes())
        .expect_err("the patch must be refused")
}

#[test]
fn invalid_bodies_are_bad_requests() {
    for patch_type in [PatchType::Merge, PatchType::Json, PatchType::Strategic] {
        let error = error_of(patch_type, "{\"spec\": ");
        assert!(matches!(error, PatchError::InvalidJson(_)), "{error:?}");
        assert!(error.to_string().starts_with("invalid JSON in patch body: "), "{error}");
        assert_eq!(error.status_code(), 400);
    }
    let error = error_of(PatchType::Merge, "[1]");
    assert_eq!(error.to_string(), "a merge patch must be a JSON object");
    assert_eq!(error.status_code(), 400);
    let error = error_of(PatchType::Strategic, "\"x\"");
    assert_eq!(error.to_string(), "a strategic merge patch must be a JSON object");
    let error = error_of(PatchType::Json, "{\"op\": \"add\"}");
    assert_eq!(error.to_string(), "a JSON patch must be a JSON array of operations");
}

#[test]
fn failing_json_patches_are_unprocessable() {
    let error = error_of(PatchType::Json, r#"[{"op": "remove", "path": "/spec/nope"}]"#);
    assert_eq!(error.status_code(), 422);
    let error =
        error_of(PatchType::Json, r#"[{"op": "test", "path": "/spec/replicas", "value": 2}]"#);
    assert_eq!(error, PatchError::TestFailed { path: "/spec/replicas".to_owned() });
    assert_eq!(error.status_code(), 422);
    let error = error_of(PatchType::Json, r#"[{"op": "replace", "path": "spec", "value": 2}]"#);
    assert_eq!(error.status_code(), 422);
    let error = error_of(PatchType::Json, r#"[{"op": "replace", "path": "", "value": [1]}]"#);
    assert_eq!(error, PatchError::ResultNotAnObject);
}

#[test]
fn server_side_apply_is_refused() {
    let error = error_of(PatchType::Apply, "apiVersion: v1\nkind: Pod\n");
    assert_eq!(error, PatchError::ApplyUnsupported);
    assert_eq!(error.status_code(), 415);
}

#[test]
fn the_original_is_left_untouched() {
    let original = deployment(json!([{"name": "app", "image": "a"}]));
    let copy = original.clone();
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "b"}]}}}});
    let _ = strategic("Deployment", &original, &patch);
    let _ = patched("Deployment", &original, PatchType::Merge, &patch);
    assert_eq!(original, copy);
}
