//! `describe`: kubectl's describers for Pod, Deployment and Node (their sections, wording and
//! tab alignment), kubectl's generic describer (a `Key: value` dump of the object) for every
//! other kind, and the Events section from the events naming the object
//! (`involvedObject.name/namespace/uid` field selectors).

use std::collections::BTreeMap;

use http::Method;
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use super::apply::LAST_APPLIED;
use super::args::DescribeArgs;
use super::client::{self, Session};
use super::discovery::ResourceType;
use super::failure::Failure;
use super::output::TabWriter;
use super::targets::{self, Target};
use super::{emit, emit_error};
use control_plane::apiserver::table::human_duration;
use control_plane::quantity::Quantity;

/// Longest annotation shown on one line (kubectl's `maxAnnotationLen`).
const ANNOTATION_LEN_MAX: usize = 140;

pub async fn run(session: &mut Session, args: &DescribeArgs) -> Result<(), Failure> {
    let targets = targets::resolve(session, &args.resources).await?;
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for Target { resource, name } in targets {
        let namespace = if args.all_namespaces {
            None
        } else {
            session.namespace_for(&resource).map(str::to_string)
        };
        match name {
            Some(name) => match session.get_object(&resource, namespace.as_deref(), &name).await {
                Ok(object) => objects.push((resource, object)),
                Err(error) => errors.push(Failure::from_kube(error, "")),
            },
            None => {
                let path = client::with_query(
                    &resource.path(namespace.as_deref(), None),
                    &[("labelSelector", args.selector.as_deref().unwrap_or(""))],
                );
                let list = session
                    .send_json(Method::GET, &path, None, "application/json", Vec::new())
                    .await
                    .map_err(|e| Failure::from_kube(e, ""))?;
                for item in list["items"].as_array().into_iter().flatten() {
                    objects.push((resource.clone(), item.clone()));
                }
            }
        }
    }
    if objects.is_empty() && errors.is_empty() {
        emit_error(&format!("No resources found in {} namespace.", session.namespace));
    }
    let now = Timestamp::now().as_second();
    for (index, (resource, object)) in objects.iter().enumerate() {
        let context = Context::fetch(session, resource, object).await;
        let text = describe(resource, object, &context, now);
        emit(&if index == 0 { text } else { format!("\n\n{text}") });
    }
    if errors.is_empty() {
        return Ok(());
    }
    for error in &errors {
        emit_error(&error.to_string());
    }
    Err(Failure::reported())
}

/// What a describer shows besides the object itself. Missing pieces (a forbidden list, an
/// older server) leave sections out rather than failing the describe, as kubectl does.
#[derive(Debug, Default)]
pub struct Context {
    pub events: Option<Vec<Value>>,
    /// Pods on a node.
    pub pods: Vec<Value>,
    /// A node's Lease, or why it could not be read.
    pub lease: Option<Result<Value, String>>,
    /// A deployment's ReplicaSets.
    pub replica_sets: Option<Vec<Value>>,
}

impl Context {
    async fn fetch(session: &mut Session, resource: &ResourceType, object: &Value) -> Context {
        let metadata = &object["metadata"];
        let text = |key: &str| metadata[key].as_str().unwrap_or("").to_string();
        let mut selector = format!("involvedObject.name={}", text("name"));
        if !text("namespace").is_empty() {
            selector.push_str(&format!(",involvedObject.namespace={}", text("namespace")));
        }
        selector.push_str(&format!(",involvedObject.uid={}", text("uid")));
        let event_namespace = if resource.namespaced { text("namespace") } else { String::new() };
        let events_path = if event_namespace.is_empty() {
            "/api/v1/events".to_string()
        } else {
            format!("/api/v1/namespaces/{event_namespace}/events")
        };
        let events =
            list(session, &client::with_query(&events_path, &[("fieldSelector", &selector)])).await;
        let mut context = Context { events, ..Context::default() };
        match (resource.group.as_str(), resource.kind.as_str()) {
            ("", "Node") => {
                let selector = format!("spec.nodeName={}", text("name"));
                let path = client::with_query("/api/v1/pods", &[("fieldSelector", &selector)]);
                context.pods = list(session, &path).await.unwrap_or_default();
                let lease_path = format!(
                    "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{}",
                    text("name")
                );
                let lease = session
                    .send_json(Method::GET, &lease_path, None, "application/json", Vec::new())
                    .await;
                context.lease = Some(lease.map_err(|error| match error {
                    kube::Error::Api(status) => status.message,
                    other => other.to_string(),
                }));
            }
            ("apps", "Deployment") => {
                let selector = match_labels(&object["spec"]["selector"]);
                let path = client::with_query(
                    &format!("/apis/apps/v1/namespaces/{}/replicasets", text("namespace")),
                    &[("labelSelector", &selector)],
                );
                let uid = metadata["uid"].clone();
                context.replica_sets = list(session, &path).await.map(|sets| {
                    sets.into_iter()
                        .filter(|rs| {
                            rs["metadata"]["ownerReferences"]
                                .as_array()
                                .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
                        })
                        .collect()
                });
            }
            _ => {}
        }
        context
    }
}

async fn list(session: &Session, path: &str) -> Option<Vec<Value>> {
    let list =
        session.send_json(Method::GET, path, None, "application/json", Vec::new()).await.ok()?;
    Some(list["items"].as_array().cloned().unwrap_or_default())
}

/// Describes one object (pure).
pub fn describe(resource: &ResourceType, object: &Value, context: &Context, now: i64) -> String {
    let mut out = Describer::default();
    match (resource.group.as_str(), resource.kind.as_str()) {
        ("", "Pod") => pod(&mut out, object, now),
        ("apps", "Deployment") => deployment(&mut out, object, context),
        ("", "Node") => node(&mut out, object, context, now),
        _ => generic(&mut out, object),
    }
    if let Some(events) = &context.events {
        describe_events(&mut out, events, now);
    }
    out.finish()
}

/// kubectl's `PrefixWriter` over a tab writer that can be flushed mid-way.
#[derive(Default)]
struct Describer {
    pending: String,
    done: String,
}

impl Describer {
    fn write(&mut self, level: usize, text: &str) {
        self.pending.push_str(&"  ".repeat(level));
        self.pending.push_str(text);
    }

    fn flush(&mut self) {
        let text = TabWriter::describe().format(&self.pending);
        self.done.push_str(&text);
        self.pending.clear();
    }

    fn finish(mut self) -> String {
        self.flush();
        self.done
    }
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn items<'a>(value: &'a Value, pointer: &str) -> &'a [Value] {
    value.pointer(pointer).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// A scalar as Go's `%v` prints it.
fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "<nil>".into(),
        other => other.to_string(),
    }
}

fn or_none(text: &str) -> &str {
    if text.is_empty() {
        "<none>"
    } else {
        text
    }
}

/// RFC 1123 with a numeric zone, in UTC (`Tue, 24 Nov 2026 19:46:15 +0000`).
fn rfc1123(value: &str) -> String {
    match value.parse::<Timestamp>() {
        Ok(at) => at.strftime("%a, %d %b %Y %H:%M:%S +0000").to_string(),
        Err(_) => "<unset>".into(),
    }
}

fn since(value: &str, now: i64) -> String {
    match value.parse::<Timestamp>() {
        Ok(at) => human_duration(now - at.as_second()),
        Err(_) => "<unknown>".into(),
    }
}

/// `printLabelsMultiline`: sorted `k=v` lines, continuation lines start with a tab.
fn labels_multiline(out: &mut Describer, title: &str, labels: &Value) {
    out.write(0, &format!("{title}:\t"));
    let sorted: BTreeMap<&String, &Value> =
        labels.as_object().map(|m| m.iter().collect()).unwrap_or_default();
    if sorted.is_empty() {
        out.write(0, "<none>\n");
        return;
    }
    for (index, (key, value)) in sorted.iter().enumerate() {
        if index > 0 {
            out.write(0, "\t");
        }
        out.write(0, &format!("{key}={}\n", scalar(value)));
    }
}

/// `printAnnotationsMultiline`: the last-applied annotation skipped, long values on their own
/// lines.
fn annotations_multiline(out: &mut Describer, title: &str, annotations: &Value) {
    out.write(0, &format!("{title}:\t"));
    let sorted: BTreeMap<&String, &Value> = annotations
        .as_object()
        .map(|m| m.iter().filter(|(k, _)| k.as_str() != LAST_APPLIED).collect())
        .unwrap_or_default();
    if sorted.is_empty() {
        out.write(0, "<none>\n");
        return;
    }
    for (index, (key, value)) in sorted.iter().enumerate() {
        if index > 0 {
            out.write(0, "\t");
        }
        let value = scalar(value);
        let value = value.trim_end_matches('\n');
        if value.len() + key.len() + 2 > ANNOTATION_LEN_MAX || value.contains('\n') {
            out.write(0, &format!("{key}:\n"));
            for line in value.split('\n') {
                let shown: String = if line.chars().count() > ANNOTATION_LEN_MAX - 2 {
                    let cut: String = line.chars().take(ANNOTATION_LEN_MAX - 5).collect();
                    format!("{cut}...")
                } else {
                    line.to_string()
                };
                out.write(0, &format!("\t  {shown}\n"));
            }
        } else {
            out.write(0, &format!("{key}: {value}\n"));
        }
    }
}

fn tolerations_multiline(out: &mut Describer, title: &str, tolerations: &[Value]) {
    out.write(0, &format!("{title}:\t"));
    if tolerations.is_empty() {
        out.write(0, "<none>\n");
        return;
    }
    for (index, toleration) in tolerations.iter().enumerate() {
        if index > 0 {
            out.write(0, "\t");
        }
        let (key, value) = (text(toleration, "/key"), text(toleration, "/value"));
        let effect = text(toleration, "/effect");
        let mut line = key.to_string();
        if !value.is_empty() {
            line.push_str(&format!("={value}"));
        }
        if !effect.is_empty() {
            line.push_str(&format!(":{effect}"));
        }
        // `operator: Exists` without a value tolerates every value (or everything).
        if text(toleration, "/operator") == "Exists" && value.is_empty() {
            let separator = if key.is_empty() && effect.is_empty() { "" } else { " " };
            line.push_str(&format!("{separator}op=Exists"));
        }
        if let Some(seconds) = toleration["tolerationSeconds"].as_i64() {
            line.push_str(&format!(" for {seconds}s"));
        }
        out.write(0, &format!("{line}\n"));
    }
}

fn pod(out: &mut Describer, pod: &Value, now: i64) {
    out.write(0, &format!("Name:\t{}\n", text(pod, "/metadata/name")));
    out.write(0, &format!("Namespace:\t{}\n", text(pod, "/metadata/namespace")));
    if let Some(priority) = pod.pointer("/spec/priority").and_then(Value::as_i64) {
        out.write(0, &format!("Priority:\t{priority}\n"));
    }
    let class = text(pod, "/spec/priorityClassName");
    if !class.is_empty() {
        out.write(0, &format!("Priority Class Name:\t{class}\n"));
    }
    let account = text(pod, "/spec/serviceAccountName");
    if !account.is_empty() {
        out.write(0, &format!("Service Account:\t{account}\n"));
    }
    let node = text(pod, "/spec/nodeName");
    if node.is_empty() {
        out.write(0, "Node:\t<none>\n");
    } else {
        out.write(0, &format!("Node:\t{node}/{}\n", text(pod, "/status/hostIP")));
    }
    let started = text(pod, "/status/startTime");
    if !started.is_empty() {
        out.write(0, &format!("Start Time:\t{}\n", rfc1123(started)));
    }
    labels_multiline(out, "Labels", &pod["metadata"]["labels"]);
    annotations_multiline(out, "Annotations", &pod["metadata"]["annotations"]);
    pod_status(out, pod, now);
    let init = items(pod, "/spec/initContainers");
    if !init.is_empty() {
        containers(out, "Init Containers", init, items(pod, "/status/initContainerStatuses"), "");
    }
    containers(
        out,
        "Containers",
        items(pod, "/spec/containers"),
        items(pod, "/status/containerStatuses"),
        "",
    );
    let conditions = items(pod, "/status/conditions");
    if !conditions.is_empty() {
        out.write(0, "Conditions:\n  Type\tStatus\n");
        for condition in conditions {
            let (kind, status) = (text(condition, "/type"), text(condition, "/status"));
            out.write(1, &format!("{kind} \t{status} \n"));
        }
    }
    volumes(out, items(pod, "/spec/volumes"), "");
    let qos = text(pod, "/status/qosClass");
    let qos =
        if qos.is_empty() { qos_class(items(pod, "/spec/containers")) } else { qos.to_string() };
    out.write(0, &format!("QoS Class:\t{qos}\n"));
    labels_multiline(out, "Node-Selectors", &pod["spec"]["nodeSelector"]);
    tolerations_multiline(out, "Tolerations", items(pod, "/spec/tolerations"));
}

/// Status, reason, message, IPs and the controller.
fn pod_status(out: &mut Describer, pod: &Value, now: i64) {
    let phase = text(pod, "/status/phase");
    let deleted = text(pod, "/metadata/deletionTimestamp");
    if !deleted.is_empty() && phase != "Failed" && phase != "Succeeded" {
        out.write(0, &format!("Status:\tTerminating (lasts {})\n", since(deleted, now)));
        if let Some(grace) = pod.pointer("/metadata/deletionGracePeriodSeconds") {
            out.write(0, &format!("Termination Grace Period:\t{}s\n", scalar(grace)));
        }
    } else {
        out.write(0, &format!("Status:\t{phase}\n"));
    }
    for (field, title) in [("reason", "Reason"), ("message", "Message")] {
        let value = text(pod, &format!("/status/{field}"));
        if !value.is_empty() {
            out.write(0, &format!("{title}:\t{value}\n"));
        }
    }
    out.write(0, &format!("IP:\t{}\n", text(pod, "/status/podIP")));
    let ips = items(pod, "/status/podIPs");
    if ips.is_empty() {
        out.write(0, "IPs:\t<none>\n");
    } else {
        out.write(0, "IPs:\n");
        for ip in ips {
            out.write(1, &format!("IP:\t{}\n", text(ip, "/ip")));
        }
    }
    if let Some(owner) =
        items(pod, "/metadata/ownerReferences").iter().find(|o| o["controller"] == true)
    {
        out.write(
            0,
            &format!("Controlled By:\t{}/{}\n", text(owner, "/kind"), text(owner, "/name")),
        );
    }
}

/// The pod's QoS class from its containers' requests and limits.
fn qos_class(containers: &[Value]) -> String {
    let mut any = false;
    let mut guaranteed = true;
    for container in containers {
        let requests = container["resources"]["requests"].as_object();
        let limits = container["resources"]["limits"].as_object();
        if requests.is_some_and(|r| !r.is_empty()) || limits.is_some_and(|l| !l.is_empty()) {
            any = true;
        }
        for resource in ["cpu", "memory"] {
            let limit = limits.and_then(|l| l.get(resource));
            let request = requests.and_then(|r| r.get(resource)).or(limit);
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
    .to_string()
}

/// `describeContainers`; `space` is `"  "` inside a pod template.
fn containers(out: &mut Describer, label: &str, list: &[Value], statuses: &[Value], space: &str) {
    if list.is_empty() {
        out.write(0, &format!("{space}{label}: <none>\n"));
        return;
    }
    out.write(0, &format!("{space}{label}:\n"));
    let name_indent = if space.is_empty() { "" } else { " " };
    for container in list {
        let name = text(container, "/name");
        let status = statuses.iter().find(|s| text(s, "/name") == name);
        out.write(1, &format!("{name_indent}{name}:\n"));
        if let Some(status) = status {
            out.write(2, &format!("Container ID:\t{}\n", text(status, "/containerID")));
        }
        out.write(2, &format!("Image:\t{}\n", text(container, "/image")));
        if let Some(status) = status {
            out.write(2, &format!("Image ID:\t{}\n", text(status, "/imageID")));
        }
        container_ports(out, items(container, "/ports"));
        for (field, title) in [("command", "Command"), ("args", "Args")] {
            let values = items(container, &format!("/{field}"));
            if !values.is_empty() {
                out.write(2, &format!("{title}:\n"));
                for value in values {
                    out.write(3, &format!("{}\n", scalar(value)));
                }
            }
        }
        if let Some(status) = status {
            container_status(out, status);
        }
        for (field, title) in [("limits", "Limits"), ("requests", "Requests")] {
            let sorted: BTreeMap<&String, &Value> = container["resources"][field]
                .as_object()
                .map(|m| m.iter().collect())
                .unwrap_or_default();
            if !sorted.is_empty() {
                out.write(2, &format!("{title}:\n"));
                for (name, quantity) in sorted {
                    out.write(3, &format!("{name}:\t{}\n", scalar(quantity)));
                }
            }
        }
        container_env(out, items(container, "/env"));
        container_mounts(out, items(container, "/volumeMounts"));
    }
}

/// `Port:`/`Ports:` and `Host Port:`/`Host Ports:` (`80/TCP, 443/TCP`).
fn container_ports(out: &mut Describer, ports: &[Value]) {
    let joined = |field: &str| -> String {
        ports
            .iter()
            .map(|p| format!("{}/{}", p[field].as_i64().unwrap_or(0), text(p, "/protocol")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (field, one, many) in
        [("containerPort", "Port", "Ports"), ("hostPort", "Host Port", "Host Ports")]
    {
        let value = joined(field);
        if value.contains(',') {
            out.write(2, &format!("{many}:\t{value}\n"));
        } else {
            out.write(2, &format!("{one}:\t{}\n", or_none(&value)));
        }
    }
}

fn container_status(out: &mut Describer, status: &Value) {
    container_state(out, "State", &status["state"]);
    if status["lastState"].as_object().is_some_and(|s| !s.is_empty()) {
        container_state(out, "Last State", &status["lastState"]);
    }
    out.write(2, &format!("Ready:\t{}\n", status["ready"].as_bool().unwrap_or(false)));
    let restarts = status["restartCount"].as_i64().unwrap_or(0);
    out.write(2, &format!("Restart Count:\t{restarts}\n"));
}

/// `Environment:`: one `NAME:\tvalue` line each, continuation lines for multi-line values.
fn container_env(out: &mut Describer, env: &[Value]) {
    out.write(2, &format!("Environment:{}\n", if env.is_empty() { "\t<none>" } else { "" }));
    for variable in env {
        let name = text(variable, "/name");
        if variable.get("valueFrom").is_some() {
            out.write(3, &format!("{name}:\t<set from valueFrom>\n"));
            continue;
        }
        for (index, line) in text(variable, "/value").split('\n').enumerate() {
            if index == 0 {
                out.write(3, &format!("{name}:\t{line}\n"));
            } else {
                out.write(3, &format!("\t{line}\n"));
            }
        }
    }
}

/// `Mounts:`: `PATH from VOLUME (rw|ro[,path="SUB"])`.
fn container_mounts(out: &mut Describer, mounts: &[Value]) {
    out.write(2, &format!("Mounts:{}\n", if mounts.is_empty() { "\t<none>" } else { "" }));
    for mount in mounts {
        let mut flags = vec![if mount["readOnly"] == true { "ro" } else { "rw" }.to_string()];
        let sub_path = text(mount, "/subPath");
        if !sub_path.is_empty() {
            flags.push(format!("path={sub_path:?}"));
        }
        let (path, volume) = (text(mount, "/mountPath"), text(mount, "/name"));
        out.write(3, &format!("{path} from {volume} ({})\n", flags.join(",")));
    }
}

fn container_state(out: &mut Describer, title: &str, state: &Value) {
    if let Some(running) = state.get("running") {
        out.write(2, &format!("{title}:\tRunning\n"));
        out.write(3, &format!("Started:\t{}\n", rfc1123(text(running, "/startedAt"))));
    } else if let Some(waiting) = state.get("waiting") {
        out.write(2, &format!("{title}:\tWaiting\n"));
        out.write(3, &format!("Reason:\t{}\n", text(waiting, "/reason")));
    } else if let Some(terminated) = state.get("terminated") {
        out.write(2, &format!("{title}:\tTerminated\n"));
        out.write(3, &format!("Reason:\t{}\n", text(terminated, "/reason")));
        out.write(3, &format!("Exit Code:\t{}\n", terminated["exitCode"].as_i64().unwrap_or(0)));
        out.write(3, &format!("Started:\t{}\n", rfc1123(text(terminated, "/startedAt"))));
        out.write(3, &format!("Finished:\t{}\n", rfc1123(text(terminated, "/finishedAt"))));
    } else {
        out.write(2, &format!("{title}:\tWaiting\n"));
    }
}

fn volumes(out: &mut Describer, list: &[Value], space: &str) {
    if list.is_empty() {
        out.write(0, &format!("{space}Volumes:\t<none>\n"));
        return;
    }
    out.write(0, &format!("{space}Volumes:\n"));
    let name_indent = if space.is_empty() { "" } else { " " };
    for volume in list {
        out.write(1, &format!("{name_indent}{}:\n", text(volume, "/name")));
        let source = volume
            .as_object()
            .and_then(|m| m.iter().find(|(k, _)| k.as_str() != "name"))
            .map(|(k, v)| (k.clone(), v.clone()));
        match source {
            Some((kind, details)) => {
                let mut kind_title = kind.clone();
                if let Some(first) = kind_title.get_mut(..1) {
                    first.make_ascii_uppercase();
                }
                out.write(2, &format!("Type:\t{kind_title}\n"));
                for (key, value) in details.as_object().into_iter().flatten() {
                    out.write(2, &format!("{}:\t{}\n", smart_label(key), scalar(value)));
                }
            }
            None => out.write(1, "<unknown>\n"),
        }
    }
}

fn deployment(out: &mut Describer, deployment: &Value, context: &Context) {
    out.write(0, &format!("Name:\t{}\n", text(deployment, "/metadata/name")));
    out.write(0, &format!("Namespace:\t{}\n", text(deployment, "/metadata/namespace")));
    let created = rfc1123(text(deployment, "/metadata/creationTimestamp"));
    out.write(0, &format!("CreationTimestamp:\t{created}\n"));
    labels_multiline(out, "Labels", &deployment["metadata"]["labels"]);
    annotations_multiline(out, "Annotations", &deployment["metadata"]["annotations"]);
    out.write(0, &format!("Selector:\t{}\n", match_labels(&deployment["spec"]["selector"])));
    let count = |pointer: &str| deployment.pointer(pointer).and_then(Value::as_i64).unwrap_or(0);
    out.write(
        0,
        &format!(
            "Replicas:\t{} desired | {} updated | {} total | {} available | {} unavailable\n",
            deployment.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1),
            count("/status/updatedReplicas"),
            count("/status/replicas"),
            count("/status/availableReplicas"),
            count("/status/unavailableReplicas"),
        ),
    );
    out.write(0, &format!("StrategyType:\t{}\n", text(deployment, "/spec/strategy/type")));
    out.write(0, &format!("MinReadySeconds:\t{}\n", count("/spec/minReadySeconds")));
    if let Some(rolling) = deployment.pointer("/spec/strategy/rollingUpdate") {
        out.write(
            0,
            &format!(
                "RollingUpdateStrategy:\t{} max unavailable, {} max surge\n",
                scalar(&rolling["maxUnavailable"]),
                scalar(&rolling["maxSurge"])
            ),
        );
    }
    pod_template(out, &deployment["spec"]["template"]);
    let conditions = items(deployment, "/status/conditions");
    if !conditions.is_empty() {
        out.write(0, "Conditions:\n  Type\tStatus\tReason\n");
        out.write(1, "----\t------\t------\n");
        for condition in conditions {
            let cells = [text(condition, "/type"), text(condition, "/status")];
            out.write(1, &format!("{} \t{}\t{}\n", cells[0], cells[1], text(condition, "/reason")));
        }
    }
    // kubectl 1.32 leaves both lines out while the deployment has no ReplicaSets.
    if let Some(sets) = context.replica_sets.as_ref().filter(|s| !s.is_empty()) {
        let revision = |rs: &Value| {
            text(rs, "/metadata/annotations/deployment.kubernetes.io~1revision")
                .parse::<i64>()
                .unwrap_or(0)
        };
        let newest = sets.iter().max_by_key(|rs| revision(rs));
        let describe = |list: Vec<&Value>| -> String {
            if list.is_empty() {
                return "<none>".into();
            }
            list.iter()
                .map(|rs| {
                    format!(
                        "{} ({}/{} replicas created)",
                        text(rs, "/metadata/name"),
                        rs.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
                        rs.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        // kubectl sorts them oldest first (ties by name) before picking the old ones.
        let mut old: Vec<&Value> = sets.iter().filter(|rs| Some(*rs) != newest).collect();
        old.sort_by_key(|rs| (text(rs, "/metadata/creationTimestamp"), text(rs, "/metadata/name")));
        out.write(0, &format!("OldReplicaSets:\t{}\n", describe(old)));
        out.write(0, &format!("NewReplicaSet:\t{}\n", describe(newest.into_iter().collect())));
    }
}

fn pod_template(out: &mut Describer, template: &Value) {
    out.write(0, "Pod Template:\n");
    labels_multiline(out, "  Labels", &template["metadata"]["labels"]);
    if template["metadata"]["annotations"].as_object().is_some_and(|a| !a.is_empty()) {
        annotations_multiline(out, "  Annotations", &template["metadata"]["annotations"]);
    }
    let account = text(template, "/spec/serviceAccountName");
    if !account.is_empty() {
        out.write(1, &format!("Service Account:\t{account}\n"));
    }
    let init = items(template, "/spec/initContainers");
    if !init.is_empty() {
        containers(out, "Init Containers", init, &[], "  ");
    }
    containers(out, "Containers", items(template, "/spec/containers"), &[], "  ");
    volumes(out, items(template, "/spec/volumes"), "  ");
    let class = text(template, "/spec/priorityClassName");
    if !class.is_empty() {
        out.write(1, &format!("Priority Class Name:\t{class}\n"));
    }
    labels_multiline(out, "  Node-Selectors", &template["spec"]["nodeSelector"]);
    tolerations_multiline(out, "  Tolerations", items(template, "/spec/tolerations"));
}

/// A label selector's `matchLabels` as `k=v,...` (kubectl's `LabelSelectorAsSelector`).
fn match_labels(selector: &Value) -> String {
    let mut parts: Vec<String> = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", scalar(v)))
        .collect();
    for expression in selector["matchExpressions"].as_array().into_iter().flatten() {
        let key = text(expression, "/key");
        let values: Vec<String> = items(expression, "/values").iter().map(scalar).collect();
        parts.push(match text(expression, "/operator") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            _ => format!("!{key}"),
        });
    }
    parts.sort();
    parts.join(",")
}

fn node(out: &mut Describer, node: &Value, context: &Context, now: i64) {
    let name = text(node, "/metadata/name");
    out.write(0, &format!("Name:\t{name}\n"));
    let labels = node["metadata"]["labels"].as_object();
    let mut roles: Vec<String> = labels
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/").map(str::to_string))
        .collect();
    roles.sort();
    out.write(0, &format!("Roles:\t{}\n", or_none(&roles.join(","))));
    labels_multiline(out, "Labels", &node["metadata"]["labels"]);
    annotations_multiline(out, "Annotations", &node["metadata"]["annotations"]);
    out.write(
        0,
        &format!("CreationTimestamp:\t{}\n", rfc1123(text(node, "/metadata/creationTimestamp"))),
    );
    node_taints(out, items(node, "/spec/taints"));
    out.write(0, &format!("Unschedulable:\t{}\n", node["spec"]["unschedulable"] == true));
    node_lease(out, context.lease.as_ref());
    node_conditions(out, items(node, "/status/conditions"));
    node_status(out, node);
    let cidr = text(node, "/spec/podCIDR");
    if !cidr.is_empty() {
        out.write(0, &format!("PodCIDR:\t{cidr}\n"));
    }
    let pods: Vec<&Value> = context
        .pods
        .iter()
        .filter(|p| !matches!(text(p, "/status/phase"), "Succeeded" | "Failed"))
        .collect();
    node_resources(out, node, &pods, now);
}

fn node_taints(out: &mut Describer, taints: &[Value]) {
    out.write(0, "Taints:\t");
    if taints.is_empty() {
        out.write(0, "<none>\n");
    }
    for (index, taint) in taints.iter().enumerate() {
        if index > 0 {
            out.write(0, "\t");
        }
        let value = text(taint, "/value");
        let key = if value.is_empty() {
            text(taint, "/key").to_string()
        } else {
            format!("{}={value}", text(taint, "/key"))
        };
        out.write(0, &format!("{key}:{}\n", text(taint, "/effect")));
    }
}

fn node_lease(out: &mut Describer, lease: Option<&Result<Value, String>>) {
    if let Some(Err(message)) = lease {
        out.write(0, &format!("Lease:\tFailed to get lease: {message}\n"));
    }
    if let Some(Ok(lease)) = lease {
        out.write(0, "Lease:\n");
        let holder = or_none(text(lease, "/spec/holderIdentity")).replace("<none>", "<unset>");
        out.write(1, &format!("HolderIdentity:\t{holder}\n"));
        for (field, title) in [("acquireTime", "AcquireTime"), ("renewTime", "RenewTime")] {
            out.write(
                1,
                &format!("{title}:\t{}\n", rfc1123(text(lease, &format!("/spec/{field}")))),
            );
        }
    }
}

fn node_conditions(out: &mut Describer, conditions: &[Value]) {
    if !conditions.is_empty() {
        out.write(
            0,
            "Conditions:\n  Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage\n",
        );
        out.write(1, "----\t------\t-----------------\t------------------\t------\t-------\n");
        for condition in conditions {
            let cells = [
                text(condition, "/type").to_string(),
                text(condition, "/status").to_string(),
                rfc1123(text(condition, "/lastHeartbeatTime")),
                rfc1123(text(condition, "/lastTransitionTime")),
                text(condition, "/reason").to_string(),
                text(condition, "/message").to_string(),
            ];
            out.write(
                1,
                &format!(
                    "{} \t{} \t{} \t{} \t{} \t{}\n",
                    cells[0], cells[1], cells[2], cells[3], cells[4], cells[5]
                ),
            );
        }
    }
}

/// Addresses, capacity, allocatable and system info.
fn node_status(out: &mut Describer, node: &Value) {
    let addresses = items(node, "/status/addresses");
    if !addresses.is_empty() {
        out.write(0, "Addresses:\n");
        for address in addresses {
            out.write(1, &format!("{}:\t{}\n", text(address, "/type"), text(address, "/address")));
        }
    }
    for (field, title) in [("capacity", "Capacity"), ("allocatable", "Allocatable")] {
        let sorted: BTreeMap<&String, &Value> =
            node["status"][field].as_object().map(|m| m.iter().collect()).unwrap_or_default();
        if !sorted.is_empty() {
            out.write(0, &format!("{title}:\n"));
            for (name, quantity) in sorted {
                out.write(1, &format!("{name}:\t{}\n", scalar(quantity)));
            }
        }
    }
    if let Some(info) = node["status"]["nodeInfo"].as_object() {
        out.write(0, "System Info:\n");
        for (key, title) in [
            ("machineID", "Machine ID"),
            ("systemUUID", "System UUID"),
            ("bootID", "Boot ID"),
            ("kernelVersion", "Kernel Version"),
            ("osImage", "OS Image"),
            ("operatingSystem", "Operating System"),
            ("architecture", "Architecture"),
            ("containerRuntimeVersion", "Container Runtime Version"),
            ("kubeletVersion", "Kubelet Version"),
            ("kubeProxyVersion", "Kube-Proxy Version"),
        ] {
            let value = info.get(key).map(scalar).unwrap_or_default();
            out.write(1, &format!("{title}:\t{value}\n"));
        }
    }
}

/// Requests and limits of a pod's containers, summed per resource (first text kept to
/// render sums in the same units kubectl would).
fn pod_resources(pod: &Value) -> [BTreeMap<String, (i128, String)>; 2] {
    let mut totals = [BTreeMap::new(), BTreeMap::new()];
    for container in items(pod, "/spec/containers") {
        for (index, field) in ["requests", "limits"].iter().enumerate() {
            let quantities = container["resources"][field].as_object().into_iter().flatten();
            for (name, quantity) in quantities {
                let text = scalar(quantity);
                let Ok(parsed) = Quantity::parse(&text) else { continue };
                let entry = totals[index].entry(name.clone()).or_insert((0, text));
                entry.0 += parsed.0;
            }
        }
    }
    // A limit without a request requests the limit.
    let limits = totals[1].clone();
    for (name, limit) in limits {
        totals[0].entry(name).or_insert(limit);
    }
    totals
}

/// A summed quantity in the units of the first one summed (`100m`, `128Mi`, `2`).
fn render_quantity(total: Option<&(i128, String)>) -> String {
    let Some((milli, first)) = total else { return "0".into() };
    if milli % 1000 != 0 {
        return format!("{milli}m");
    }
    let units = milli / 1000;
    let (suffixes, base): (&[&str], i128) = if first.contains('i') {
        (&["Ki", "Mi", "Gi", "Ti", "Pi"], 1024)
    } else if first.ends_with(['k', 'M', 'G', 'T', 'P']) {
        (&["k", "M", "G", "T", "P"], 1000)
    } else {
        (&[], 1000)
    };
    let mut best = units.to_string();
    let mut scale = base;
    for suffix in suffixes {
        if units == 0 || units % scale != 0 {
            break;
        }
        best = format!("{}{suffix}", units / scale);
        scale *= base;
    }
    best
}

/// `total (percent%)` of what the node can allocate.
fn fraction(total: Option<&(i128, String)>, allocatable: &Value, name: &str) -> String {
    let capacity = allocatable.get(name).map(scalar).and_then(|t| Quantity::parse(&t).ok());
    let used = total.map_or(0, |t| t.0);
    let percent = match capacity {
        Some(capacity) if capacity.0 != 0 => used * 100 / capacity.0,
        _ => 0,
    };
    format!("{} ({percent}%)", render_quantity(total))
}

/// kubectl's `describeNodeResource`: the node's pods and what they request.
fn node_resources(out: &mut Describer, node: &Value, pods: &[&Value], now: i64) {
    let allocatable = match node["status"]["allocatable"].as_object() {
        Some(map) if !map.is_empty() => &node["status"]["allocatable"],
        _ => &node["status"]["capacity"],
    };
    out.write(0, &format!("Non-terminated Pods:\t({} in total)\n", pods.len()));
    out.write(
        1,
        "Namespace\tName\t\tCPU Requests\tCPU Limits\tMemory Requests\tMemory Limits\tAge\n",
    );
    out.write(
        1,
        "---------\t----\t\t------------\t----------\t---------------\t-------------\t---\n",
    );
    let mut sums = [BTreeMap::new(), BTreeMap::new()];
    for pod in pods {
        let totals = pod_resources(pod);
        let cell = |index: usize, name: &str| fraction(totals[index].get(name), allocatable, name);
        out.write(
            1,
            &format!(
                "{}\t{}\t\t{}\t{}\t{}\t{}\t{}\n",
                text(pod, "/metadata/namespace"),
                text(pod, "/metadata/name"),
                cell(0, "cpu"),
                cell(1, "cpu"),
                cell(0, "memory"),
                cell(1, "memory"),
                since(text(pod, "/metadata/creationTimestamp"), now)
            ),
        );
        for (index, map) in totals.into_iter().enumerate() {
            for (name, (value, first)) in map {
                sums[index].entry(name).or_insert((0, first)).0 += value;
            }
        }
    }
    out.write(
        0,
        "Allocated resources:\n  (Total limits may be over 100 percent, i.e., overcommitted.)\n",
    );
    out.write(1, "Resource\tRequests\tLimits\n");
    out.write(1, "--------\t--------\t------\n");
    for name in ["cpu", "memory", "ephemeral-storage"] {
        let requests = fraction(sums[0].get(name), allocatable, name);
        let limits = fraction(sums[1].get(name), allocatable, name);
        out.write(1, &format!("{name}\t{requests}\t{limits}\n"));
    }
}

/// kubectl's generic describer: every field but metadata's usual ones, `Smart Labels`.
fn generic(out: &mut Describer, object: &Value) {
    out.write(0, &format!("Name:\t{}\n", text(object, "/metadata/name")));
    out.write(0, &format!("Namespace:\t{}\n", text(object, "/metadata/namespace")));
    labels_multiline(out, "Labels", &object["metadata"]["labels"]);
    annotations_multiline(out, "Annotations", &object["metadata"]["annotations"]);
    let skip = [
        ".metadata.managedFields",
        ".metadata.name",
        ".metadata.namespace",
        ".metadata.labels",
        ".metadata.annotations",
    ];
    unstructured(out, 0, object, "", &skip);
}

fn unstructured(out: &mut Describer, level: usize, content: &Value, prefix: &str, skip: &[&str]) {
    let Some(map) = content.as_object() else { return };
    let sorted: BTreeMap<&String, &Value> = map.iter().collect();
    for (field, value) in sorted {
        let path = format!("{prefix}.{field}");
        if skip.contains(&path.as_str()) {
            continue;
        }
        match value {
            Value::Object(_) => {
                out.write(level, &format!("{}:\n", smart_label(field)));
                unstructured(out, level + 1, value, &path, skip);
            }
            Value::Array(children) => {
                out.write(level, &format!("{}:\n", smart_label(field)));
                for child in children {
                    if child.is_object() {
                        unstructured(out, level + 1, child, &path, skip);
                    } else {
                        out.write(level + 1, &format!("{}\n", scalar(child)));
                    }
                }
            }
            other => out.write(level, &format!("{}:\t{}\n", smart_label(field), scalar(other))),
        }
    }
}

/// kubectl's `smartLabelFor`: `creationTimestamp` → `Creation Timestamp`, `apiVersion` →
/// `API Version`; names with other characters than letters and `-` are kept.
fn smart_label(field: &str) -> String {
    if field.chars().any(|c| !c.is_alphabetic() && c != '-') {
        return field.to_string();
    }
    let mut parts: Vec<String> = Vec::new();
    let chars: Vec<char> = field.chars().collect();
    let mut start = 0;
    for index in 1..=chars.len() {
        let boundary = index == chars.len()
            || (chars[index].is_uppercase() && !chars[index - 1].is_uppercase())
            || (chars[index].is_uppercase()
                && chars[index - 1].is_uppercase()
                && chars.get(index + 1).is_some_and(|c| c.is_lowercase()));
        if boundary {
            parts.push(chars[start..index].iter().collect());
            start = index;
        }
    }
    parts
        .into_iter()
        .map(|part| {
            if ["API", "URL", "UID", "OSB", "GUID"].contains(&part.to_uppercase().as_str()) {
                part.to_uppercase()
            } else {
                let mut title = part;
                if let Some(first) = title.get_mut(..1) {
                    first.make_ascii_uppercase();
                }
                title
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `DescribeEvents`: oldest first, in their own aligned block.
fn describe_events(out: &mut Describer, events: &[Value], now: i64) {
    if events.is_empty() {
        out.write(0, "Events:\t<none>\n");
        return;
    }
    out.flush();
    let mut sorted: Vec<&Value> = events.iter().collect();
    let when = |e: &Value| {
        let last = text(e, "/lastTimestamp");
        let at = if last.is_empty() { text(e, "/eventTime") } else { last };
        at.parse::<Timestamp>().map(|t| t.as_second()).unwrap_or(0)
    };
    sorted.sort_by_key(|e| when(e));
    out.write(0, "Events:\n  Type\tReason\tAge\tFrom\tMessage\n");
    out.write(1, "----\t------\t----\t----\t-------\n");
    for event in sorted {
        let first = {
            let event_time = text(event, "/eventTime");
            if event_time.is_empty() {
                since(text(event, "/firstTimestamp"), now)
            } else {
                since(event_time, now)
            }
        };
        let count = event["count"].as_i64().unwrap_or(0);
        let interval = if let Some(series) = event.get("series").filter(|s| s.is_object()) {
            format!(
                "{} (x{} over {first})",
                since(text(series, "/lastObservedTime"), now),
                series["count"].as_i64().unwrap_or(0)
            )
        } else if count > 1 {
            format!("{} (x{count} over {first})", since(text(event, "/lastTimestamp"), now))
        } else {
            first
        };
        let mut source = text(event, "/source/component");
        if source.is_empty() {
            source = text(event, "/reportingComponent");
        }
        out.write(
            1,
            &format!(
                "{}\t{}\t{interval}\t{source}\t{}\n",
                text(event, "/type"),
                text(event, "/reason"),
                text(event, "/message").trim()
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resource(group: &str, kind: &str) -> ResourceType {
        ResourceType {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            plural: format!("{}s", kind.to_lowercase()),
            singular: kind.to_lowercase(),
            namespaced: true,
            short_names: vec![],
            categories: vec![],
            verbs: vec![],
            subresources: vec![],
        }
    }

    #[test]
    fn pod_describe_matches_kubectl_for_a_pending_pod() {
        let pod = json!({"metadata": {"name": "p1", "namespace": "default",
            "labels": {"app": "db"}, "annotations": {LAST_APPLIED: "{}"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Pending"}});
        let context = Context { events: Some(vec![]), ..Context::default() };
        let text = describe(&resource("", "Pod"), &pod, &context, 0);
        // kubectl 1.32's output for the same pod on a Skiff server.
        assert_eq!(
            text,
            "Name:         p1\nNamespace:    default\nNode:         <none>\nLabels:       app=db\n\
             Annotations:  <none>\nStatus:       Pending\nIP:           \nIPs:          <none>\n\
             Containers:\n  c:\n    Image:        busybox\n    Port:         <none>\n    \
             Host Port:    <none>\n    Environment:  <none>\n    Mounts:       <none>\n\
             Volumes:          <none>\nQoS Class:        BestEffort\nNode-Selectors:   <none>\n\
             Tolerations:      <none>\nEvents:           <none>\n"
        );
    }

    #[test]
    fn deployment_describe_matches_kubectl() {
        let deployment = json!({"metadata": {"name": "web", "namespace": "default",
            "creationTimestamp": "2026-11-24T19:46:15Z", "labels": {"app": "web"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                    {"name": "nginx", "image": "nginx:1.25",
                     "ports": [{"containerPort": 80, "protocol": "TCP"}],
                     "env": [{"name": "A", "value": "1"}]}]}}},
            "status": {}});
        let context = Context { events: Some(vec![]), ..Context::default() };
        let text = describe(&resource("apps", "Deployment"), &deployment, &context, 0);
        assert_eq!(
            text,
            "Name:                   web\nNamespace:              default\n\
             CreationTimestamp:      Tue, 24 Nov 2026 19:46:15 +0000\n\
             Labels:                 app=web\nAnnotations:            <none>\n\
             Selector:               app=web\n\
             Replicas:               2 desired | 0 updated | 0 total | 0 available | 0 \
             unavailable\n\
             StrategyType:           RollingUpdate\nMinReadySeconds:        0\n\
             RollingUpdateStrategy:  25% max unavailable, 25% max surge\nPod Template:\n  \
             Labels:  app=web\n  Containers:\n   nginx:\n    Image:      nginx:1.25\n    \
             Port:       80/TCP\n    Host Port:  0/TCP\n    Environment:\n      \
             A:           1\n    Mounts:        <none>\n  Volumes:         <none>\n  \
             Node-Selectors:  <none>\n  Tolerations:     <none>\nEvents:            <none>\n"
        );
    }

    #[test]
    fn generic_describe_and_events() {
        let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "r", "namespace": "default", "uid": "u1"},
            "rules": [{"verbs": ["get"], "resources": ["pods"]}]});
        let events = vec![json!({"type": "Normal", "reason": "Created", "message": "made it ",
            "source": {"component": "tester"}, "count": 1,
            "firstTimestamp": "1970-01-01T00:00:00Z", "lastTimestamp": "1970-01-01T00:00:00Z"})];
        let context = Context { events: Some(events), ..Context::default() };
        let text = describe(&resource("rbac.authorization.k8s.io", "Role"), &role, &context, 90);
        assert_eq!(
            text,
            "Name:         r\nNamespace:    default\nLabels:       <none>\nAnnotations:  <none>\n\
             API Version:  rbac.authorization.k8s.io/v1\nKind:         Role\nMetadata:\n  \
             UID:  u1\nRules:\n  Resources:\n    pods\n  Verbs:\n    get\nEvents:\n  \
             Type    Reason   Age   From    Message\n  ----    ------   ----  ----    -------\n  \
             Normal  Created  90s   tester  made it\n"
        );
        assert_eq!(smart_label("creationTimestamp"), "Creation Timestamp");
        assert_eq!(smart_label("apiVersion"), "API Version");
        assert_eq!(smart_label("podCIDR"), "Pod CIDR");
    }
}
