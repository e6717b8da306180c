//! Admission: defaulting and validation of what Kubernetes defaults and validates for the
//! served kinds, namespace lifecycle (no objects in a missing or terminating namespace), and
//! the deletion of a terminating namespace's contents.

use serde_json::{json, Value};

use super::auth::User;
use super::objects::Target;
use super::server::ApiServer;
use super::status::ApiError;
use crate::quantity::Quantity;
use crate::resources::{Resource, RESOURCES};
use crate::storage::Backend;
use crate::storage::Swap;

/// Checks and defaults a new object before it is stored.
pub async fn admit_create(
    server: &ApiServer,
    user: &User,
    resource: &Resource,
    target: &Target,
    object: &mut Value,
) -> Result<(), ApiError> {
    restrict_node(user, resource, object)?;
    prevent_escalation(server, user, resource, target.namespace.as_deref(), object)?;
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
    if resource.kind == "Pod" {
        let namespace = target.namespace.as_deref().unwrap_or("default");
        apply_limit_ranges(server, namespace, object)?;
        object["status"]["qosClass"] = json!(qos_class(&object["spec"]));
        validate(resource, object)?;
        charge_quotas(server, namespace, resource, object).await
    } else {
        validate(resource, object)?;
        if resource.namespaced {
            let namespace = target.namespace.as_deref().unwrap_or("default");
            charge_quotas(server, namespace, resource, object).await?;
        }
        Ok(())
    }
}

/// RBAC objects may only grant what their writer already holds (see `RbacView::may_grant`).
pub fn prevent_escalation(
    server: &ApiServer,
    user: &User,
    resource: &Resource,
    namespace: Option<&str>,
    object: &Value,
) -> Result<(), ApiError> {
    if resource.group != "rbac.authorization.k8s.io" {
        return Ok(());
    }
    let namespace = if resource.namespaced { namespace } else { None };
    server.rbac_view().may_grant(user, object, namespace).map_err(|why| {
        let name = object["metadata"]["name"].as_str().unwrap_or("");
        ApiError::forbidden_message(format!(
            "{}.rbac.authorization.k8s.io \"{name}\" is forbidden: {why}",
            resource.plural
        ))
    })
}

/// Kubernetes' NodeRestriction: a node's credentials (`system:node:<name>` in group
/// `system:nodes`) may only write its own Node, its own Lease, and pods bound to it.
pub fn restrict_node(user: &User, resource: &Resource, object: &Value) -> Result<(), ApiError> {
    if !user.is_in("system:nodes") {
        return Ok(());
    }
    let Some(node) = user.name.strip_prefix("system:node:") else {
        return Err(ApiError::forbidden_message(format!(
            "node credentials must be named system:node:<name>, not {:?}",
            user.name
        )));
    };
    let name = object["metadata"]["name"].as_str().unwrap_or("");
    let own = match resource.kind {
        "Node" | "Lease" => name == node,
        "Pod" => object["spec"]["nodeName"].as_str() == Some(node),
        _ => true,
    };
    if own {
        Ok(())
    } else {
        Err(ApiError::forbidden_message(format!(
            "{} \"{name}\" is forbidden: node \"{node}\" may only modify its own {} objects",
            resource.plural, resource.kind
        )))
    }
}

/// The containers of a pod (init containers included).
fn containers_mut(pod: &mut Value) -> Vec<&mut Value> {
    let spec = &mut pod["spec"];
    let mut all = Vec::new();
    if let Some(object) = spec.as_object_mut() {
        for (field, list) in object.iter_mut() {
            if field == "containers" || field == "initContainers" {
                if let Some(list) = list.as_array_mut() {
                    all.extend(list.iter_mut());
                }
            }
        }
    }
    all
}

fn quantity(value: &Value) -> Option<Quantity> {
    match value {
        Value::String(text) => Quantity::parse(text).ok(),
        Value::Number(n) => Quantity::parse(&n.to_string()).ok(),
        _ => None,
    }
}

fn pod_forbidden(pod: &str, why: &str) -> ApiError {
    ApiError::forbidden_message(format!("pods \"{pod}\" is forbidden: {why}"))
}

/// LimitRange admission: defaults each container's requests and limits from the
/// namespace's `Container` limit ranges, then enforces their min and max.
fn apply_limit_ranges(
    server: &ApiServer,
    namespace: &str,
    pod: &mut Value,
) -> Result<(), ApiError> {
    let ranges: Vec<_> = server
        .cache("limitranges")
        .all_objects()
        .into_iter()
        .filter(|r| r["metadata"]["namespace"] == namespace)
        .collect();
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    for range in &ranges {
        for limit in range["spec"]["limits"].as_array().into_iter().flatten() {
            if limit["type"] != "Container" {
                continue;
            }
            for container in containers_mut(pod) {
                for (field, defaults) in [("limits", "default"), ("requests", "defaultRequest")] {
                    if let Some(defaults) = limit[defaults].as_object() {
                        for (name, value) in defaults {
                            if container["resources"][field][name].is_null() {
                                container["resources"][field][name] = value.clone();
                            }
                        }
                    }
                }
                requests_from_limits(container);
                for (name, max) in limit["max"].as_object().into_iter().flatten() {
                    let (Some(max), Some(used)) =
                        (quantity(max), quantity(&container["resources"]["limits"][name]))
                    else {
                        if quantity(max).is_some() {
                            let max = max.as_str().unwrap_or("");
                            let why = format!(
                                "maximum {name} usage per Container is {max}.  No limit is \
                                 specified"
                            );
                            return Err(pod_forbidden(&pod_name, &why));
                        }
                        continue;
                    };
                    if used > max {
                        let (max, used) = (max.render(), used.render());
                        let why = format!(
                            "maximum {name} usage per Container is {max}, but limit is {used}"
                        );
                        return Err(pod_forbidden(&pod_name, &why));
                    }
                }
                for (name, min) in limit["min"].as_object().into_iter().flatten() {
                    let (Some(min), Some(used)) =
                        (quantity(min), quantity(&container["resources"]["requests"][name]))
                    else {
                        continue;
                    };
                    if used < min {
                        let (min, used) = (min.render(), used.render());
                        let why = format!(
                            "minimum {name} usage per Container is {min}, but request is {used}"
                        );
                        return Err(pod_forbidden(&pod_name, &why));
                    }
                }
            }
        }
    }
    Ok(())
}

/// What one pod counts against a quota for `resource` (`requests.cpu`, `pods`, ...).
fn pod_usage(pod: &Value, resource: &str) -> Quantity {
    let sum = |field: &str, name: &str| {
        let containers = pod["spec"]["containers"].as_array().into_iter().flatten();
        Quantity(
            containers.filter_map(|c| quantity(&c["resources"][field][name])).map(|q| q.0).sum(),
        )
    };
    match resource {
        "pods" | "count/pods" => Quantity(1000),
        "cpu" | "requests.cpu" => sum("requests", "cpu"),
        "memory" | "requests.memory" => sum("requests", "memory"),
        "limits.cpu" => sum("limits", "cpu"),
        "limits.memory" => sum("limits", "memory"),
        _ => Quantity(0),
    }
}

/// The object-count quota name of a kind (`count/deployments.apps`, `services`, ...).
fn counts_against(resource: &Resource, quota_resource: &str) -> bool {
    let group =
        if resource.group.is_empty() { String::new() } else { format!(".{}", resource.group) };
    quota_resource == format!("count/{}{group}", resource.plural)
        || resource.group.is_empty()
            && matches!(
                resource.plural,
                "services" | "configmaps" | "secrets" | "resourcequotas" | "pods"
            )
            && quota_resource == resource.plural
}

/// One quota resource an admission would exceed.
struct Exceeded {
    resource: String,
    requested: Quantity,
    used: Quantity,
    limit: Quantity,
}

/// Reads every object under `prefix` from the store (a consistent read).
async fn store_objects(server: &ApiServer, prefix: &str) -> Result<Vec<(Value, i64)>, ApiError> {
    let end = crate::storage::backend::prefix_end(prefix.as_bytes());
    let mut start = prefix.as_bytes().to_vec();
    let mut revision = 0;
    let mut out = Vec::new();
    loop {
        let page =
            server.backend.list(&start, &end, revision, crate::limits::STORE_PAGE_LEN).await?;
        revision = page.revision;
        for kv in &page.kvs {
            if let Ok(object) = serde_json::from_slice::<Value>(&kv.value) {
                out.push((object, kv.mod_revision));
            }
        }
        match (page.more, page.kvs.last()) {
            (true, Some(last)) => {
                start = last.key.clone();
                start.push(0);
            }
            _ => return Ok(out),
        }
    }
}

/// Compare-and-swap attempts of the quota admission when quotas change under it.
const QUOTA_RETRIES_MAX: usize = 5;

/// ResourceQuota admission: refuses an object that would take its namespace past a quota's
/// hard limits; otherwise records the new usage in each quota's status. Quotas and usage are
/// read from the store (not the caches, which may lag), and the status is written by
/// compare-and-swap on the revision the decision was made from, retried if a quota changed.
/// Two admissions racing between one's quota write and its object write can still both pass,
/// until a quota controller reconciles usage (as Kubernetes' does).
async fn charge_quotas(
    server: &ApiServer,
    namespace: &str,
    resource: &Resource,
    object: &Value,
) -> Result<(), ApiError> {
    for _ in 0..QUOTA_RETRIES_MAX {
        let quotas =
            store_objects(server, &format!("/registry/resourcequotas/{namespace}/")).await?;
        if quotas.is_empty() {
            return Ok(());
        }
        // The namespace's running pods, read once for every quota of this attempt.
        let pods = store_objects(server, &format!("/registry/pods/{namespace}/")).await?;
        let live_pods: Vec<&Value> = pods
            .iter()
            .map(|(p, _)| p)
            .filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
            .collect();
        let mut decisions = Vec::new();
        for (quota, mod_revision) in &quotas {
            let used = quota_usage(server, namespace, resource, object, quota, &live_pods).await?;
            decisions.push((quota, *mod_revision, used));
        }
        let mut lost_race = false;
        for (quota, mod_revision, used) in decisions {
            let name = quota["metadata"]["name"].as_str().unwrap_or("");
            let key = format!("/registry/resourcequotas/{namespace}/{name}");
            let mut updated = quota.clone();
            updated["status"] = json!({"hard": quota["spec"]["hard"], "used": used});
            let bytes = serde_json::to_vec(&updated).expect("JSON");
            if let Swap::Refused { .. } =
                server.backend.update(key.as_bytes(), mod_revision, bytes).await?
            {
                lost_race = true;
                break;
            }
        }
        if !lost_race {
            return Ok(());
        }
    }
    let name = object["metadata"]["name"].as_str().unwrap_or("");
    Err(ApiError::conflict_message(
        resource.plural,
        name,
        "resource quotas kept changing while this request was admitted; try again",
    ))
}

/// The usage a quota would have with `object` admitted; an error if that passes its limits.
async fn quota_usage(
    server: &ApiServer,
    namespace: &str,
    resource: &Resource,
    object: &Value,
    quota: &Value,
    live_pods: &[&Value],
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let quota_name = quota["metadata"]["name"].as_str().unwrap_or("").to_string();
    let hard = quota["spec"]["hard"].as_object().cloned().unwrap_or_default();
    let mut used = serde_json::Map::new();
    let mut exceeded = Vec::new();
    for (quota_resource, limit) in &hard {
        let Some(limit) = quantity(limit) else { continue };
        let counts_pods = resource.kind == "Pod" && !quota_resource.starts_with("count/")
            || quota_resource == "count/pods";
        let (current, requested) = if counts_pods {
            let current: i128 = live_pods.iter().map(|p| pod_usage(p, quota_resource).0).sum();
            let requested = if resource.kind == "Pod" {
                pod_usage(object, quota_resource)
            } else {
                Quantity(0)
            };
            (Quantity(current), requested)
        } else {
            let counted = RESOURCES.iter().find(|r| counts_against(r, quota_resource));
            let current = match counted {
                Some(r) => store_objects(server, &r.namespace_prefix(Some(namespace))).await?.len(),
                None => 0,
            };
            let requested = if counts_against(resource, quota_resource) { 1000 } else { 0 };
            (Quantity(current as i128 * 1000), Quantity(requested))
        };
        if requested.0 > 0 && current.0 + requested.0 > limit.0 {
            exceeded.push(Exceeded {
                resource: quota_resource.clone(),
                requested,
                used: current,
                limit,
            });
        }
        used.insert(quota_resource.clone(), json!(Quantity(current.0 + requested.0).render()));
    }
    if exceeded.is_empty() {
        return Ok(used);
    }
    let part = |pick: fn(&Exceeded) -> Quantity| {
        let each = exceeded.iter().map(|e| format!("{}={}", e.resource, pick(e).render()));
        each.collect::<Vec<_>>().join(",")
    };
    let name = object["metadata"]["name"].as_str().unwrap_or("");
    Err(ApiError::forbidden_message(format!(
        "{} \"{name}\" is forbidden: exceeded quota: {quota_name}, requested: {}, used: {}, \
         limited: {}",
        resource.plural,
        part(|e| e.requested),
        part(|e| e.used),
        part(|e| e.limit),
    )))
}

/// Kubernetes' refusal of a pod update that changes more than it allows.
const POD_UPDATE_FORBIDDEN: &str = "spec: Forbidden: pod updates may not change fields other \
    than `spec.containers[*].image`, `spec.initContainers[*].image`, \
    `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations), \
    `spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Checks an update against what Kubernetes treats as immutable.
pub fn admit_update(
    server: &ApiServer,
    user: &User,
    resource: &Resource,
    current: &Value,
    desired: &Value,
) -> Result<(), ApiError> {
    restrict_node(user, resource, current)?;
    let namespace = current["metadata"]["namespace"].as_str();
    prevent_escalation(server, user, resource, namespace, desired)?;
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

/// Kubernetes' QoS class: Guaranteed when every container's cpu and memory limits equal
/// its requests, BestEffort when no container asks for anything, Burstable otherwise.
fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .flat_map(|list| spec[*list].as_array().into_iter().flatten())
        .collect();
    let set =
        |c: &Value, field: &str| c["resources"][field].as_object().is_some_and(|m| !m.is_empty());
    if containers.iter().all(|c| !set(c, "requests") && !set(c, "limits")) {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        ["cpu", "memory"].iter().all(|name| {
            let limit = quantity(&c["resources"]["limits"][*name]);
            limit.is_some() && limit == quantity(&c["resources"]["requests"][*name])
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// A limit without a request makes the request equal to it, as Kubernetes defaults it.
fn requests_from_limits(container: &mut Value) {
    let limits = container["resources"]["limits"].as_object().cloned();
    for (name, limit) in limits.into_iter().flatten() {
        if container["resources"]["requests"][&name].is_null() {
            container["resources"]["requests"][&name] = limit;
        }
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
                requests_from_limits(container);
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
    default_spec(resource, object);
    match resource.kind {
        "Namespace" => object["status"] = json!({"phase": "Active"}),
        "Pod" => {
            let qos = qos_class(&object["spec"]);
            object["status"] = json!({"phase": "Pending", "qosClass": qos});
        }
        "Deployment" | "ReplicaSet" | "DaemonSet" => object["status"] = json!({}),
        "Service" => object["status"] = json!({"loadBalancer": {}}),
        _ => {}
    }
}

/// The spec defaults, applied on create and on every update (so a replace that leaves out a
/// defaulted field neither loses it nor looks like a spec change).
pub fn default_spec(resource: &Resource, object: &mut Value) {
    match resource.kind {
        "Namespace" => set_default(object, &["spec", "finalizers"], json!(["kubernetes"])),
        "Pod" => default_pod_spec(&mut object["spec"]),
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
        }
        "Secret" => set_default(object, &["type"], json!("Opaque")),
        _ => {}
    }
}

/// Fields a client may leave out of a replace that the server keeps from the current object
/// (Kubernetes keeps an allocated Service clusterIP).
pub fn carry_over(resource: &Resource, current: &Value, desired: &mut Value) {
    if resource.kind == "Service" {
        for field in ["clusterIP", "clusterIPs"] {
            if desired["spec"][field].is_null() && !current["spec"][field].is_null() {
                desired["spec"][field] = current["spec"][field].clone();
            }
        }
        super::allocator::carry_over(current, desired);
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
    let pod_spec = match resource.kind {
        "Pod" => Some(&object["spec"]),
        "Deployment" | "ReplicaSet" | "DaemonSet" => Some(&object["spec"]["template"]["spec"]),
        _ => None,
    };
    for container in pod_spec.and_then(|s| s["containers"].as_array()).into_iter().flatten() {
        for field in ["requests", "limits"] {
            for (name, value) in container["resources"][field].as_object().into_iter().flatten() {
                if quantity(value).is_none() {
                    causes.push(format!(
                        "resources.{field}[{name}]: Invalid value: {value}: quantities must match \
                         the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
                    ));
                }
            }
        }
    }
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
pub fn finish_namespace_deletion(server: &ApiServer, namespace: &str, uid: &str) {
    let backend = server.backend.clone();
    let namespace = namespace.to_string();
    let uid = uid.to_string();
    tokio::spawn(async move {
        if let Err(error) = delete_namespace_contents(&backend, &namespace, &uid).await {
            tracing::warn!(%namespace, %error, "namespace deletion stopped; it stays Terminating");
        }
    });
}

/// Deletes what is in the namespace until a whole pass finds nothing (a create admitted just
/// before termination may land late), then the namespace itself, if it is still the one
/// being terminated (same uid).
async fn delete_namespace_contents(
    backend: &Backend,
    namespace: &str,
    uid: &str,
) -> Result<(), String> {
    let key = format!("/registry/namespaces/{namespace}");
    let still_ours = |kv: &Option<crate::storage::StoredKv>| {
        kv.as_ref().and_then(|kv| serde_json::from_slice::<Value>(&kv.value).ok()).is_some_and(
            |o| o["metadata"]["uid"] == uid && o["metadata"]["deletionTimestamp"].is_string(),
        )
    };
    for _ in 0..NAMESPACE_SWEEPS_MAX {
        if !still_ours(&backend.get(key.as_bytes()).await.map_err(|e| e.to_string())?.0) {
            return Ok(());
        }
        if delete_namespace_objects(backend, namespace).await? == 0 {
            let (kv, _) = backend.get(key.as_bytes()).await.map_err(|e| e.to_string())?;
            if let Some(found) = kv.as_ref().filter(|_| still_ours(&kv)) {
                backend
                    .delete(key.as_bytes(), found.mod_revision)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            return Ok(());
        }
    }
    Err(format!("objects kept appearing in namespace {namespace}"))
}

/// Passes over a terminating namespace's contents before giving up.
const NAMESPACE_SWEEPS_MAX: usize = 10;

/// Deletes every object in the namespace; returns how many it deleted.
async fn delete_namespace_objects(backend: &Backend, namespace: &str) -> Result<usize, String> {
    let mut deleted = 0;
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
                deleted += 1;
            }
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(containers: Value) -> Value {
        let mut spec = json!({"containers": containers});
        default_pod_spec(&mut spec);
        spec
    }

    #[test]
    fn pods_get_kubernetes_qos_classes_and_requests_from_limits() {
        let none = spec(json!([{"name": "a", "image": "i"}]));
        assert_eq!(qos_class(&none), "BestEffort");
        let limits = json!({"cpu": "1", "memory": "1Gi"});
        let only_limits =
            spec(json!([{"name": "a", "image": "i", "resources": {"limits": limits}}]));
        assert_eq!(only_limits["containers"][0]["resources"]["requests"], limits);
        assert_eq!(qos_class(&only_limits), "Guaranteed");
        let mixed = spec(json!([
            {"name": "a", "image": "i", "resources": {
                "requests": {"cpu": "100m", "memory": "64Mi"},
                "limits": {"cpu": "500m", "memory": "128Mi"}}},
            {"name": "b", "image": "i", "resources": {"limits": limits}},
        ]));
        assert_eq!(qos_class(&mixed), "Burstable");
    }
}
