//! Admission: defaulting and validation of what Kubernetes defaults and validates for the
//! served kinds, namespace lifecycle (no objects in a missing or terminating namespace), and
//! the deletion of a terminating namespace's contents.

use serde_json::{json, Value};

use super::objects::Target;
use super::server::ApiServer;
use super::status::ApiError;
use crate::resources::{Resource, RESOURCES};
use crate::storage::Backend;

/// Checks and defaults a new object before it is stored.
pub async fn admit_create(
    server: &ApiServer,
    resource: &Resource,
    target: &Target,
    object: &mut Value,
) -> Result<(), ApiError> {
    if resource.namespaced {
        let namespace = target.namespace.as_deref().unwrap_or("default");
        let key = format!("/registry/namespaces/{namespace}");
        let (found, _) = server.backend.get(key.as_bytes()).await?;
        let Some(found) = found else {
            return Err(ApiError::not_found("namespaces", namespace));
        };
        let found: Value = serde_json::from_slice(&found.value).unwrap_or_default();
        if found["status"]["phase"] == "Terminating"
            || found["metadata"]["deletionTimestamp"].is_string()
        {
            return Err(ApiError::forbidden_message(format!(
                "{} \"{}\" is forbidden: unable to create new content in namespace {namespace} \
                 because it is being terminated",
                resource.plural,
                target.name.as_deref().unwrap_or("")
            )));
        }
    }
    default(resource, object);
    validate(resource, object)
}

/// Kubernetes' refusal of a pod update that changes more than it allows.
const POD_UPDATE_FORBIDDEN: &str = "spec: Forbidden: pod updates may not change fields other \
    than `spec.containers[*].image`, `spec.initContainers[*].image`, \
    `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations), \
    `spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Checks an update against what Kubernetes treats as immutable.
pub fn admit_update(resource: &Resource, current: &Value, desired: &Value) -> Result<(), ApiError> {
    let name = current["metadata"]["name"].as_str().unwrap_or("");
    let immutable: &[&str] = match resource.kind {
        "Deployment" | "ReplicaSet" | "DaemonSet" => &["selector"],
        "Service" => &["clusterIP"],
        _ => &[],
    };
    for field in immutable {
        let before = &current["spec"][field];
        if !before.is_null() && &desired["spec"][field] != before {
            return Err(ApiError::invalid(
                resource.kind,
                name,
                &[format!(
                    "spec.{field}: Invalid value: {}: field is immutable",
                    desired["spec"][field]
                )],
            ));
        }
    }
    if resource.kind == "Pod" {
        let node = &current["spec"]["nodeName"];
        if node.as_str().is_some_and(|n| !n.is_empty()) && &desired["spec"]["nodeName"] != node {
            return Err(ApiError::invalid("Pod", name, &[POD_UPDATE_FORBIDDEN.into()]));
        }
    }
    validate(resource, desired)
}

fn set_default(object: &mut Value, pointer: &[&str], value: Value) {
    let mut here = object;
    for (i, field) in pointer.iter().enumerate() {
        if !here.is_object() {
            return;
        }
        if i + 1 == pointer.len() {
            if here[*field].is_null() {
                here[*field] = value;
            }
            return;
        }
        if here[*field].is_null() {
            here[*field] = json!({});
        }
        here = &mut here[*field];
    }
}

fn default_pod_spec(spec: &mut Value) {
    set_default(spec, &["restartPolicy"], json!("Always"));
    set_default(spec, &["dnsPolicy"], json!("ClusterFirst"));
    set_default(spec, &["schedulerName"], json!("default-scheduler"));
    set_default(spec, &["terminationGracePeriodSeconds"], json!(30));
    set_default(spec, &["securityContext"], json!({}));
    for list in ["containers", "initContainers"] {
        if let Some(containers) = spec[list].as_array_mut() {
            for container in containers {
                let image = container["image"].as_str().unwrap_or("").to_string();
                let latest = !image.contains(':') || image.ends_with(":latest");
                set_default(
                    container,
                    &["imagePullPolicy"],
                    json!(if latest { "Always" } else { "IfNotPresent" }),
                );
                set_default(container, &["terminationMessagePath"], json!("/dev/termination-log"));
                set_default(container, &["terminationMessagePolicy"], json!("File"));
                if let Some(ports) = container["ports"].as_array_mut() {
                    for port in ports {
                        set_default(port, &["protocol"], json!("TCP"));
                    }
                }
            }
        }
    }
}

/// Kubernetes' defaults for the fields clients leave out.
fn default(resource: &Resource, object: &mut Value) {
    match resource.kind {
        "Namespace" => {
            set_default(object, &["spec", "finalizers"], json!(["kubernetes"]));
            object["status"] = json!({"phase": "Active"});
        }
        "Pod" => {
            default_pod_spec(&mut object["spec"]);
            let mut status = json!({"phase": "Pending"});
            status["qosClass"] = json!("BestEffort");
            object["status"] = status;
        }
        "Deployment" | "ReplicaSet" | "DaemonSet" => {
            if resource.kind != "DaemonSet" {
                set_default(object, &["spec", "replicas"], json!(1));
            }
            if resource.kind == "Deployment" {
                set_default(object, &["spec", "revisionHistoryLimit"], json!(10));
                set_default(object, &["spec", "progressDeadlineSeconds"], json!(600));
                set_default(
                    object,
                    &["spec", "strategy"],
                    json!({"type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
                );
            }
            if resource.kind == "DaemonSet" {
                set_default(object, &["spec", "revisionHistoryLimit"], json!(10));
                set_default(
                    object,
                    &["spec", "updateStrategy"],
                    json!({"type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
                );
            }
            default_pod_spec(&mut object["spec"]["template"]["spec"]);
            object["status"] = json!({});
        }
        "Service" => {
            set_default(object, &["spec", "type"], json!("ClusterIP"));
            set_default(object, &["spec", "sessionAffinity"], json!("None"));
            if let Some(ports) = object["spec"]["ports"].as_array_mut() {
                for port in ports {
                    set_default(port, &["protocol"], json!("TCP"));
                    let number = port["port"].clone();
                    set_default(port, &["targetPort"], number);
                }
            }
            object["status"] = json!({"loadBalancer": {}});
        }
        _ => {}
    }
}

/// Required fields Kubernetes checks, with its wording.
fn validate(resource: &Resource, object: &Value) -> Result<(), ApiError> {
    let name = object["metadata"]["name"].as_str().unwrap_or("");
    let mut causes = Vec::new();
    let check_containers =
        |spec: &Value, at: &str, causes: &mut Vec<String>| match spec["containers"].as_array() {
            Some(containers) if !containers.is_empty() => {
                for (i, c) in containers.iter().enumerate() {
                    if c["name"].as_str().is_none_or(str::is_empty) {
                        causes.push(format!("{at}.containers[{i}].name: Required value"));
                    }
                    if c["image"].as_str().is_none_or(str::is_empty) {
                        causes.push(format!("{at}.containers[{i}].image: Required value"));
                    }
                }
            }
            _ => causes.push(format!("{at}.containers: Required value")),
        };
    match resource.kind {
        "Pod" => check_containers(&object["spec"], "spec", &mut causes),
        "Deployment" | "ReplicaSet" | "DaemonSet" => {
            let selector = &object["spec"]["selector"];
            if selector.is_null() {
                causes.push("spec.selector: Required value".into());
            } else if let Ok(selector) = super::selectors::LabelSelector::from_json(selector) {
                let labels = &object["spec"]["template"]["metadata"]["labels"];
                let template = json!({"metadata": {"labels": labels}});
                if !selector.matches(&template) {
                    causes.push(
                        "spec.template.metadata.labels: Invalid value: `selector` does not match \
                         template `labels`"
                            .into(),
                    );
                }
            }
            check_containers(
                &object["spec"]["template"]["spec"],
                "spec.template.spec",
                &mut causes,
            );
            if object["spec"]["replicas"].as_i64().is_some_and(|r| r < 0) {
                causes.push(
                    "spec.replicas: Invalid value: must be greater than or equal to 0".into(),
                );
            }
        }
        _ => {}
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(resource.kind, name, &causes))
    }
}

/// The namespace lifecycle's last step: deletes every object in a terminating namespace, then
/// the namespace.
pub fn finish_namespace_deletion(server: &ApiServer, namespace: &str) {
    let backend = server.backend.clone();
    let namespace = namespace.to_string();
    tokio::spawn(async move {
        if let Err(error) = delete_namespace_contents(&backend, &namespace).await {
            tracing::warn!(%namespace, %error, "namespace deletion stopped; it stays Terminating");
        }
    });
}

async fn delete_namespace_contents(backend: &Backend, namespace: &str) -> Result<(), String> {
    for resource in RESOURCES.iter().filter(|r| r.namespaced) {
        let prefix = resource.namespace_prefix(Some(namespace));
        let end = crate::storage::backend::prefix_end(prefix.as_bytes());
        loop {
            let page = backend
                .list(prefix.as_bytes(), &end, 0, crate::limits::STORE_PAGE_LEN)
                .await
                .map_err(|e| e.to_string())?;
            if page.kvs.is_empty() {
                break;
            }
            for kv in page.kvs {
                backend.delete(&kv.key, kv.mod_revision).await.map_err(|e| e.to_string())?;
            }
        }
    }
    let key = format!("/registry/namespaces/{namespace}");
    if let (Some(kv), _) = backend.get(key.as_bytes()).await.map_err(|e| e.to_string())? {
        backend.delete(key.as_bytes(), kv.mod_revision).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}
