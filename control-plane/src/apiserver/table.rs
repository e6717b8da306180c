//! Server-side printing: the `meta.k8s.io/v1` `Table` that `kubectl get` asks for with
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`, with the columns and cell rules of
//! kube-apiserver's printers (`pkg/printers/internalversion/printers.go`, 1.32) for the kinds we
//! serve, and its default convertor (Name, Created At) for kinds without a printer.
//!
//! Like kube-apiserver, every cell is always sent, wide (`priority: 1`) ones included; kubectl
//! shows those only with `-o wide`. Pure: objects and the current time come in, JSON goes out.

use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Map, Value};

use super::discovery::media_ranges;
use crate::resources::Resource;

/// What each row's `object` carries (the `includeObject` query parameter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// No object (`"object": null`).
    None,
    /// A `PartialObjectMetadata` with the object's metadata: the default, and what kubectl
    /// needs for `-A` (namespace) and `--show-labels`.
    #[default]
    Metadata,
    /// The whole object (`kubectl get --sort-by` asks for this).
    Object,
}

impl IncludeObject {
    /// Parses the `includeObject` query parameter; absent or empty means `Metadata`. The error
    /// is kube-apiserver's BadRequest message.
    pub fn parse(value: Option<&str>) -> Result<IncludeObject, String> {
        match value.unwrap_or("") {
            "" | "Metadata" => Ok(IncludeObject::Metadata),
            "None" => Ok(IncludeObject::None),
            "Object" => Ok(IncludeObject::Object),
            other => Err(format!("unrecognized includeObject value: \"{other}\"")),
        }
    }
}

/// Whether the client prefers a `Table` (`as=Table;g=meta.k8s.io;v=v1|v1beta1`) to plain
/// JSON. The answer is always a `meta.k8s.io/v1` Table, which both versions' clients read.
pub fn wants_table(accept: &str) -> bool {
    for range in media_ranges(accept) {
        if range.essence == "application/json"
            && range.param("as") == Some("Table")
            && range.param("g") == Some("meta.k8s.io")
            && matches!(range.param("v"), Some("v1" | "v1beta1"))
        {
            return true;
        }
        if range.accepts_plain_json() {
            return false;
        }
    }
    false
}

/// The `Table` for `objects` of one kind. `with_headers` is false for the second and later
/// events of a watch (kube-apiserver sends column definitions once). `resource_version` goes
/// to `metadata.resourceVersion` (where `kubectl get -w` starts watching); the caller may add
/// `metadata.continue`. Ages are measured to `now_unix_seconds`.
pub fn table(
    resource: &Resource,
    objects: &[&Value],
    include_object: IncludeObject,
    with_headers: bool,
    resource_version: &str,
    now_unix_seconds: i64,
) -> Value {
    let printer = printer(resource.kind);
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let (cells, conditions) = (printer.cells)(object, now_unix_seconds);
            debug_assert_eq!(cells.len(), printer.columns.len(), "{}", resource.kind);
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array(cells));
            if let Some(conditions) = conditions {
                row.insert("conditions".into(), conditions);
            }
            row.insert("object".into(), row_object(resource, object, include_object));
            Value::Object(row)
        })
        .collect();
    let columns: Vec<Value> = if with_headers {
        printer.columns.iter().map(Column::to_json).collect()
    } else {
        Vec::new()
    };
    let mut metadata = Map::new();
    if !resource_version.is_empty() {
        metadata.insert("resourceVersion".into(), json!(resource_version));
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

fn row_object(resource: &Resource, object: &Value, include_object: IncludeObject) -> Value {
    match include_object {
        IncludeObject::None => Value::Null,
        IncludeObject::Metadata => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
        }),
        IncludeObject::Object => {
            let mut object = object.clone();
            if let Some(fields) = object.as_object_mut() {
                fields.entry("apiVersion").or_insert_with(|| json!(resource.api_version()));
                fields.entry("kind").or_insert_with(|| json!(resource.kind));
            }
            object
        }
    }
}

/// kubectl's `HumanDuration` (k8s.io/apimachinery/pkg/util/duration): about two significant
/// figures, e.g. `59s`, `119s`, `5m30s`, `3h10m`, `2d5h`, `400d`, `2y30d`.
pub fn human_duration(seconds: i64) -> String {
    // Up to one second in the future counts as now, to tolerate clock skew.
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{}d", hours / 24) } else { format!("{}d{h}h", hours / 24) };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return if days == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{days}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// One column definition.
struct Column {
    name: &'static str,
    kind: &'static str,
    format: &'static str,
    description: &'static str,
    priority: u8,
}

impl Column {
    fn to_json(&self) -> Value {
        json!({"name": self.name, "type": self.kind, "format": self.format,
            "description": self.description, "priority": self.priority})
    }
}

const fn column(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column { name, kind, format: "", description, priority: 0 }
}

const fn wide(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column { name, kind, format: "", description, priority: 1 }
}

const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when \
    creating resources, although some resources may allow a client to request the generation \
    of an appropriate name automatically. Name is primarily intended for creation idempotence \
    and configuration definition. Cannot be updated. More info: \
    https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time \
    when this object was created. It is not guaranteed to be set in happens-before order \
    across separate operations. Clients may not set this value. It is represented in RFC3339 \
    form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: \
    https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const NAME: Column = Column {
    name: "Name",
    kind: "string",
    format: "name",
    description: NAME_DESCRIPTION,
    priority: 0,
};
const AGE: Column = column("Age", "string", AGE_DESCRIPTION);
const CONTAINERS: Column = wide("Containers", "string", "Names of each container in the template.");
const IMAGES: Column =
    wide("Images", "string", "Images referenced by each container in the template.");
const SELECTOR: Column = wide(
    "Selector",
    "string",
    "A label query over pods that should match \
    the replica count.",
);

type Cells = fn(&Value, i64) -> (Vec<Value>, Option<Value>);

/// A kind's columns and how to fill a row.
struct Printer {
    columns: &'static [Column],
    cells: Cells,
}

fn printer(kind: &str) -> Printer {
    let (columns, cells): (&'static [Column], Cells) = match kind {
        "Pod" => (POD_COLUMNS, pod_cells),
        "Namespace" => (NAMESPACE_COLUMNS, |o, now| plain(namespace_cells(o, now))),
        "Node" => (NODE_COLUMNS, |o, now| plain(node_cells(o, now))),
        "Service" => (SERVICE_COLUMNS, |o, now| plain(service_cells(o, now))),
        "Endpoints" => (ENDPOINTS_COLUMNS, |o, now| plain(endpoints_cells(o, now))),
        "Event" => (EVENT_COLUMNS, |o, now| plain(event_cells(o, now))),
        "ServiceAccount" => (SERVICE_ACCOUNT_COLUMNS, |o, now| {
            plain(vec![name(o), json!(array(o, "/secrets").len()), age(o, now)])
        }),
        "ConfigMap" => (CONFIG_MAP_COLUMNS, |o, now| {
            let count = entries(o, "/data") + entries(o, "/binaryData");
            plain(vec![name(o), json!(count), age(o, now)])
        }),
        "Secret" => (SECRET_COLUMNS, |o, now| plain(secret_cells(o, now))),
        "ResourceQuota" => (RESOURCE_QUOTA_COLUMNS, |o, now| plain(resource_quota_cells(o, now))),
        "Deployment" => (DEPLOYMENT_COLUMNS, |o, now| plain(deployment_cells(o, now))),
        "ReplicaSet" => (REPLICA_SET_COLUMNS, |o, now| plain(replica_set_cells(o, now))),
        "DaemonSet" => (DAEMON_SET_COLUMNS, |o, now| plain(daemon_set_cells(o, now))),
        "ControllerRevision" => {
            (CONTROLLER_REVISION_COLUMNS, |o, now| plain(controller_revision_cells(o, now)))
        }
        "Lease" => (LEASE_COLUMNS, |o, now| {
            plain(vec![name(o), json!(text(o, "/spec/holderIdentity")), age(o, now)])
        }),
        "RoleBinding" | "ClusterRoleBinding" => {
            (ROLE_BINDING_COLUMNS, |o, now| plain(role_binding_cells(o, now)))
        }
        // Role, ClusterRole, LimitRange: kube-apiserver's default table convertor.
        _ => (DEFAULT_COLUMNS, |o, _| plain(vec![name(o), json!(created_at(o))])),
    };
    Printer { columns, cells }
}

fn plain(cells: Vec<Value>) -> (Vec<Value>, Option<Value>) {
    (cells, None)
}

// ---- JSON access: absent fields read as Go's zero values, as the Go printers see them. ----

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn int(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn array<'a>(object: &'a Value, pointer: &str) -> &'a [Value] {
    object.pointer(pointer).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

fn entries(object: &Value, pointer: &str) -> usize {
    object.pointer(pointer).and_then(Value::as_object).map_or(0, Map::len)
}

fn or_none(value: &str) -> String {
    if value.is_empty() {
        "<none>".into()
    } else {
        value.into()
    }
}

fn name(object: &Value) -> Value {
    json!(text(object, "/metadata/name"))
}

fn timestamp(object: &Value, pointer: &str) -> Option<Timestamp> {
    text(object, pointer).parse::<Timestamp>().ok()
}

/// `translateTimestampSince`: the age of a timestamp, `<unknown>` when unset.
fn since(object: &Value, pointer: &str, now: i64) -> String {
    match timestamp(object, pointer) {
        Some(at) => human_duration(now - at.as_second()),
        None => "<unknown>".into(),
    }
}

fn age(object: &Value, now: i64) -> Value {
    json!(since(object, "/metadata/creationTimestamp", now))
}

/// The default convertor's `Created At` cell: RFC 3339 in UTC, Go's zero time when unset.
fn created_at(object: &Value) -> String {
    match timestamp(object, "/metadata/creationTimestamp") {
        Some(at) => at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => "0001-01-01T00:00:00Z".into(),
    }
}

/// `labels.FormatLabels`: `k=v` sorted by key, comma separated, `<none>` when empty.
fn format_labels(object: &Value, pointer: &str) -> String {
    let Some(labels) = object.pointer(pointer).and_then(Value::as_object) else {
        return "<none>".into();
    };
    let mut pairs: Vec<String> =
        labels.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect();
    pairs.sort();
    if pairs.is_empty() {
        "<none>".into()
    } else {
        pairs.join(",")
    }
}

/// `metav1.LabelSelectorAsSelector(..).String()`: requirements sorted by key; empty or absent
/// selects everything and prints as "".
fn format_selector(selector: Option<&Value>) -> String {
    let Some(selector) = selector else { return String::new() };
    let mut requirements: Vec<(String, String)> = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        for (key, value) in labels {
            requirements.push((key.clone(), format!("{key}={}", value.as_str().unwrap_or(""))));
        }
    }
    for expression in array(selector, "/matchExpressions") {
        let key = text(expression, "/key");
        let mut values: Vec<&str> =
            array(expression, "/values").iter().filter_map(Value::as_str).collect();
        values.sort_unstable();
        let values = values.join(",");
        let requirement = match text(expression, "/operator") {
            "In" => format!("{key} in ({values})"),
            "NotIn" => format!("{key} notin ({values})"),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return "<invalid>".into(),
        };
        requirements.push((key.to_string(), requirement));
    }
    requirements.sort_by(|a, b| a.0.cmp(&b.0));
    let parts: Vec<String> = requirements.into_iter().map(|(_, text)| text).collect();
    parts.join(",")
}

/// `layoutContainerCells`: container names and images, comma separated.
fn container_cells(object: &Value, pointer: &str) -> (Value, Value) {
    let containers = array(object, pointer);
    let names: Vec<&str> = containers.iter().map(|c| text(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(c, "/image")).collect();
    (json!(names.join(",")), json!(images.join(",")))
}

// ---- Pod ----

const POD_COLUMNS: &[Column] = &[
    NAME,
    column("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
    column("Status", "string", "The aggregate status of the containers in this pod."),
    column(
        "Restarts",
        "string",
        "The number of times the containers in this pod have been \
        restarted and when the last container in this pod has restarted.",
    ),
    AGE,
    wide(
        "IP",
        "string",
        "podIP address allocated to the pod. Routable at least within the \
        cluster. Empty if not yet allocated.",
    ),
    wide("Node", "string", "NodeName indicates in which node this pod is scheduled."),
    wide(
        "Nominated Node",
        "string",
        "nominatedNodeName is set only when this pod preempts \
        other pods on the node.",
    ),
    wide(
        "Readiness Gates",
        "string",
        "If specified, all readiness gates will be evaluated for \
        pod readiness.",
    ),
];

/// Restart count and the latest `lastState.terminated.finishedAt` of a set of containers.
#[derive(Default)]
struct Restarts {
    count: i64,
    last: Option<Timestamp>,
}

impl Restarts {
    fn add(&mut self, status: &Value) {
        self.count += int(status, "/restartCount");
        if let Some(finished) = timestamp(status, "/lastState/terminated/finishedAt") {
            if self.last.is_none_or(|last| last < finished) {
                self.last = Some(finished);
            }
        }
    }
}

/// A terminated container's reason, or `{prefix}Signal:N` / `{prefix}ExitCode:N`.
fn terminated_reason(terminated: &Value, prefix: &str) -> String {
    let reason = text(terminated, "/reason");
    if !reason.is_empty() {
        return format!("{prefix}{reason}");
    }
    let signal = int(terminated, "/signal");
    if signal != 0 {
        format!("{prefix}Signal:{signal}")
    } else {
        format!("{prefix}ExitCode:{}", int(terminated, "/exitCode"))
    }
}

fn has_condition(pod: &Value, kind: &str) -> bool {
    array(pod, "/status/conditions")
        .iter()
        .any(|c| text(c, "/type") == kind && text(c, "/status") == "True")
}

/// What `printPod` (1.32) derives from a pod for its READY, STATUS and RESTARTS cells,
/// sidecar (restartable init) containers included.
struct PodSummary {
    ready: usize,
    total: usize,
    reason: String,
    restarts: Restarts,
}

fn summarize_pod(pod: &Value) -> PodSummary {
    let phase = pod_phase(pod);
    let mut reason = match text(pod, "/status/reason") {
        "" => phase.to_string(),
        reason => reason.to_string(),
    };
    let scheduling_gated = array(pod, "/status/conditions")
        .iter()
        .any(|c| text(c, "/type") == "PodScheduled" && text(c, "/reason") == "SchedulingGated");
    if scheduling_gated {
        reason = "SchedulingGated".into();
    }
    let sidecars = array(pod, "/spec/initContainers").iter().filter(|c| is_sidecar(c)).count();
    let mut summary = PodSummary {
        ready: 0,
        total: array(pod, "/spec/containers").len() + sidecars,
        reason,
        restarts: Restarts::default(),
    };
    let (initializing, sidecar_restarts) = summary.add_init_containers(pod);
    if !initializing || has_condition(pod, "Initialized") {
        summary.restarts = sidecar_restarts;
        summary.add_containers(pod);
    }
    if pod.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()) {
        if text(pod, "/status/reason") == "NodeLost" {
            summary.reason = "Unknown".into();
        } else if phase != "Succeeded" && phase != "Failed" {
            summary.reason = "Terminating".into();
        }
    }
    summary
}

/// `status.phase`, which kube-apiserver sets to `Pending` on create.
fn pod_phase(pod: &Value) -> &str {
    match text(pod, "/status/phase") {
        "" => "Pending",
        phase => phase,
    }
}

fn is_sidecar(container: &Value) -> bool {
    text(container, "/restartPolicy") == "Always"
}

fn is_true(status: &Value, field: &str) -> bool {
    status.get(field).and_then(Value::as_bool) == Some(true)
}

impl PodSummary {
    /// Walks init containers until the first one still initializing; returns whether one is,
    /// and the restarts of sidecars seen.
    fn add_init_containers(&mut self, pod: &Value) -> (bool, Restarts) {
        let specs = array(pod, "/spec/initContainers");
        let sidecar = |name: &str| specs.iter().any(|c| text(c, "/name") == name && is_sidecar(c));
        let mut sidecar_restarts = Restarts::default();
        for (index, status) in array(pod, "/status/initContainerStatuses").iter().enumerate() {
            self.restarts.add(status);
            let sidecar = sidecar(text(status, "/name"));
            if sidecar {
                sidecar_restarts.add(status);
            }
            let terminated = status.pointer("/state/terminated");
            if terminated.is_some_and(|t| int(t, "/exitCode") == 0) {
                continue;
            }
            if sidecar && is_true(status, "started") {
                self.ready += usize::from(is_true(status, "ready"));
                continue;
            }
            let waiting = text(status, "/state/waiting/reason");
            self.reason = match terminated {
                Some(terminated) => terminated_reason(terminated, "Init:"),
                None if !waiting.is_empty() && waiting != "PodInitializing" => {
                    format!("Init:{waiting}")
                }
                None => format!("Init:{index}/{}", specs.len()),
            };
            return (true, sidecar_restarts);
        }
        (false, sidecar_restarts)
    }

    /// Walks app containers from the last: the first listed container with a reason wins.
    fn add_containers(&mut self, pod: &Value) {
        let mut has_running = false;
        for status in array(pod, "/status/containerStatuses").iter().rev() {
            self.restarts.add(status);
            let waiting = text(status, "/state/waiting/reason");
            if !waiting.is_empty() {
                self.reason = waiting.to_string();
            } else if let Some(terminated) = status.pointer("/state/terminated") {
                self.reason = terminated_reason(terminated, "");
            } else if is_true(status, "ready") && status.pointer("/state/running").is_some() {
                has_running = true;
                self.ready += 1;
            }
        }
        if self.reason == "Completed" && has_running {
            let ready = has_condition(pod, "Ready");
            self.reason = if ready { "Running" } else { "NotReady" }.into();
        }
    }

    /// `2` or, after a container restarted, `2 (5m ago)`.
    fn restarts_cell(&self, now: i64) -> String {
        match self.restarts.last {
            Some(last) if self.restarts.count != 0 => {
                let ago = human_duration(now - last.as_second());
                format!("{} ({ago} ago)", self.restarts.count)
            }
            _ => self.restarts.count.to_string(),
        }
    }
}

fn pod_cells(pod: &Value, now: i64) -> (Vec<Value>, Option<Value>) {
    let summary = summarize_pod(pod);
    let ip = array(pod, "/status/podIPs")
        .first()
        .map(|ip| text(ip, "/ip"))
        .unwrap_or_else(|| text(pod, "/status/podIP"));
    let gates = array(pod, "/spec/readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let met = gates.iter().filter(|g| has_condition(pod, text(g, "/conditionType"))).count();
        format!("{met}/{}", gates.len())
    };
    let cells = vec![
        name(pod),
        json!(format!("{}/{}", summary.ready, summary.total)),
        json!(summary.reason),
        json!(summary.restarts_cell(now)),
        age(pod, now),
        json!(or_none(ip)),
        json!(or_none(text(pod, "/spec/nodeName"))),
        json!(or_none(text(pod, "/status/nominatedNodeName"))),
        json!(readiness_gates),
    ];
    // Rows of finished pods carry kube-apiserver's `Completed` row condition.
    let conditions = match pod_phase(pod) {
        "Succeeded" => Some(json!([{"type": "Completed", "status": "True",
            "reason": "Succeeded", "message": "The pod has completed successfully."}])),
        "Failed" => Some(json!([{"type": "Completed", "status": "True", "reason": "Failed",
            "message": "The pod failed."}])),
        _ => None,
    };
    (cells, conditions)
}

// ---- Namespace, Node ----

const NAMESPACE_COLUMNS: &[Column] =
    &[NAME, column("Status", "string", "The status of the namespace"), AGE];

fn namespace_cells(namespace: &Value, now: i64) -> Vec<Value> {
    // kube-apiserver sets `Active` on create; an object stored without it is active too.
    let phase = match text(namespace, "/status/phase") {
        "" => "Active",
        phase => phase,
    };
    vec![name(namespace), json!(phase), age(namespace, now)]
}

const NODE_COLUMNS: &[Column] = &[
    NAME,
    column("Status", "string", "The status of the node"),
    column("Roles", "string", "The roles of the node"),
    AGE,
    column("Version", "string", "Kubelet Version reported by the node."),
    wide("Internal-IP", "string", "List of addresses reachable to the node."),
    wide("External-IP", "string", "List of addresses reachable to the node."),
    wide("OS-Image", "string", "OS Image reported by the node from /etc/os-release."),
    wide("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r'."),
    wide(
        "Container-Runtime",
        "string",
        "ContainerRuntime Version reported by the node \
        through runtime remote API.",
    ),
];

fn node_cells(node: &Value, now: i64) -> Vec<Value> {
    let ready = array(node, "/status/conditions").iter().find(|c| text(c, "/type") == "Ready");
    let mut status: Vec<&str> = vec![match ready {
        Some(condition) if text(condition, "/status") == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled");
    }
    let mut roles: Vec<&str> = Vec::new();
    if let Some(labels) = node.pointer("/metadata/labels").and_then(Value::as_object) {
        for (key, value) in labels {
            let value = value.as_str().unwrap_or("");
            match key.strip_prefix("node-role.kubernetes.io/") {
                Some(role) if !role.is_empty() => roles.push(role),
                Some(_) => {}
                None if key == "kubernetes.io/role" && !value.is_empty() => roles.push(value),
                None => {}
            }
        }
    }
    roles.sort_unstable();
    roles.dedup();
    let address = |kind: &str| {
        let found = array(node, "/status/addresses").iter().find(|a| text(a, "/type") == kind);
        or_none(found.map_or("", |a| text(a, "/address")))
    };
    let unknown = |pointer: &str| match text(node, pointer) {
        "" => "<unknown>",
        value => value,
    };
    vec![
        name(node),
        json!(status.join(",")),
        json!(or_none(&roles.join(","))),
        age(node, now),
        json!(text(node, "/status/nodeInfo/kubeletVersion")),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(unknown("/status/nodeInfo/osImage")),
        json!(unknown("/status/nodeInfo/kernelVersion")),
        json!(unknown("/status/nodeInfo/containerRuntimeVersion")),
    ]
}

// ---- Service, Endpoints ----

const SERVICE_COLUMNS: &[Column] = &[
    NAME,
    column("Type", "string", "type determines how the Service is exposed."),
    column("Cluster-IP", "string", "clusterIP is the IP address of the service."),
    column(
        "External-IP",
        "string",
        "externalIPs is a list of IP addresses for which nodes in \
        the cluster will also accept traffic for this service.",
    ),
    column("Port(s)", "string", "The list of ports that are exposed by this service."),
    AGE,
    wide(
        "Selector",
        "string",
        "Route service traffic to pods with label keys and values \
        matching this selector.",
    ),
];

fn service_cells(service: &Value, now: i64) -> Vec<Value> {
    let kind = match text(service, "/spec/type") {
        "" => "ClusterIP",
        kind => kind,
    };
    let cluster_ip = array(service, "/spec/clusterIPs")
        .first()
        .and_then(Value::as_str)
        .unwrap_or_else(|| text(service, "/spec/clusterIP"));
    let ports: Vec<String> = array(service, "/spec/ports")
        .iter()
        .map(|port| {
            let protocol = match text(port, "/protocol") {
                "" => "TCP",
                protocol => protocol,
            };
            let node_port = int(port, "/nodePort");
            if node_port > 0 {
                format!("{}:{node_port}/{protocol}", int(port, "/port"))
            } else {
                format!("{}/{protocol}", int(port, "/port"))
            }
        })
        .collect();
    vec![
        name(service),
        json!(kind),
        json!(or_none(cluster_ip)),
        json!(external_ip(service, kind)),
        json!(or_none(&ports.join(","))),
        age(service, now),
        json!(format_labels(service, "/spec/selector")),
    ]
}

/// `getServiceExternalIP` with kube-apiserver's wide output (no truncation).
fn external_ip(service: &Value, kind: &str) -> String {
    let external: Vec<&str> =
        array(service, "/spec/externalIPs").iter().filter_map(Value::as_str).collect();
    match kind {
        "ClusterIP" | "NodePort" => or_none(&external.join(",")),
        "LoadBalancer" => {
            let mut all: Vec<&str> = array(service, "/status/loadBalancer/ingress")
                .iter()
                .map(|i| match text(i, "/ip") {
                    "" => text(i, "/hostname"),
                    ip => ip,
                })
                .filter(|address| !address.is_empty())
                .collect();
            all.extend(external);
            if all.is_empty() {
                "<pending>".into()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => text(service, "/spec/externalName").into(),
        _ => "<unknown>".into(),
    }
}

const ENDPOINTS_COLUMNS: &[Column] = &[
    NAME,
    column("Endpoints", "string", "The set of all endpoints is the union of all subsets."),
    AGE,
];

fn endpoints_cells(endpoints: &Value, now: i64) -> Vec<Value> {
    vec![name(endpoints), json!(format_endpoints(endpoints)), age(endpoints, now)]
}

/// `formatEndpoints`: `ip:port` for every port and address, at most three, then `+ N more...`.
fn format_endpoints(endpoints: &Value) -> String {
    const SHOWN_MAX: usize = 3;
    let subsets = array(endpoints, "/subsets");
    if subsets.is_empty() {
        return "<none>".into();
    }
    let mut shown: Vec<String> = Vec::new();
    let mut count = 0;
    for subset in subsets {
        let addresses = array(subset, "/addresses");
        let ports = array(subset, "/ports");
        let mut push = |entry: String| {
            if shown.len() < SHOWN_MAX {
                shown.push(entry);
            }
            count += 1;
        };
        if ports.is_empty() {
            // Headless services may have no ports.
            for address in addresses {
                push(text(address, "/ip").to_string());
            }
        } else {
            for port in ports {
                for address in addresses {
                    push(join_host_port(text(address, "/ip"), int(port, "/port")));
                }
            }
        }
    }
    let list = shown.join(",");
    if count > SHOWN_MAX {
        format!("{list} + {} more...", count - SHOWN_MAX)
    } else {
        list
    }
}

/// Go's `net.JoinHostPort`: IPv6 addresses in brackets.
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

// ---- Event ----

const EVENT_COLUMNS: &[Column] = &[
    column(
        "Last Seen",
        "string",
        "The time at which the most recent occurrence of this event \
        was recorded.",
    ),
    column(
        "Type",
        "string",
        "Type of this event (Normal, Warning), new types could be added \
        in the future",
    ),
    column(
        "Reason",
        "string",
        "This should be a short, machine understandable string that \
        gives the reason for the transition into the object's current status.",
    ),
    column("Object", "string", "The object that this event is about."),
    wide(
        "Subobject",
        "string",
        "If referring to a piece of an object instead of an entire \
        object, this string should contain a valid JSON/Go field access statement.",
    ),
    wide("Source", "string", "The component reporting this event."),
    column(
        "Message",
        "string",
        "A human-readable description of the status of this \
        operation.",
    ),
    wide("First Seen", "string", "The time at which the event was first recorded."),
    wide("Count", "string", "The number of times this event has occurred."),
    Column {
        name: "Name",
        kind: "string",
        format: "name",
        description: NAME_DESCRIPTION,
        priority: 1,
    },
];

fn event_cells(event: &Value, now: i64) -> Vec<Value> {
    let first_seen = if timestamp(event, "/firstTimestamp").is_some() {
        since(event, "/firstTimestamp", now)
    } else {
        since(event, "/eventTime", now)
    };
    let mut last_seen = if timestamp(event, "/lastTimestamp").is_some() {
        since(event, "/lastTimestamp", now)
    } else {
        first_seen.clone()
    };
    let mut count = int(event, "/count");
    if event.get("series").is_some_and(|series| !series.is_null()) {
        last_seen = since(event, "/series/lastObservedTime", now);
        count = int(event, "/series/count");
    } else if count == 0 {
        // Singleton events of the events.k8s.io API carry no count.
        count = 1;
    }
    let kind = text(event, "/involvedObject/kind").to_lowercase();
    let target = match text(event, "/involvedObject/name") {
        "" => kind,
        involved => format!("{kind}/{involved}"),
    };
    let first_non_empty = |a: &'static str, b: &'static str| match text(event, a) {
        "" => text(event, b),
        value => value,
    };
    let component = first_non_empty("/source/component", "/reportingComponent");
    let instance = first_non_empty("/source/host", "/reportingInstance");
    let source = if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };
    vec![
        json!(last_seen),
        json!(text(event, "/type")),
        json!(text(event, "/reason")),
        json!(target),
        json!(text(event, "/involvedObject/fieldPath")),
        json!(source),
        json!(text(event, "/message").trim()),
        json!(first_seen),
        json!(count),
        name(event),
    ]
}

// ---- ServiceAccount, ConfigMap, Secret, ResourceQuota ----

const SERVICE_ACCOUNT_COLUMNS: &[Column] = &[
    NAME,
    column(
        "Secrets",
        "string",
        "Secrets is a list of the secrets in the same namespace that \
        pods running using this ServiceAccount are allowed to use.",
    ),
    AGE,
];

const CONFIG_MAP_COLUMNS: &[Column] =
    &[NAME, column("Data", "string", "Data contains the configuration data."), AGE];

const SECRET_COLUMNS: &[Column] = &[
    NAME,
    column("Type", "string", "Used to facilitate programmatic handling of secret data."),
    column("Data", "string", "Data contains the secret data."),
    AGE,
];

fn secret_cells(secret: &Value, now: i64) -> Vec<Value> {
    let kind = match text(secret, "/type") {
        "" => "Opaque",
        kind => kind,
    };
    // `stringData` is merged into `data` on write; count a key present in both once.
    let mut keys: Vec<&String> = Vec::new();
    for pointer in ["/data", "/stringData"] {
        if let Some(map) = secret.pointer(pointer).and_then(Value::as_object) {
            keys.extend(map.keys());
        }
    }
    keys.sort_unstable();
    keys.dedup();
    vec![name(secret), json!(kind), json!(keys.len()), age(secret, now)]
}

const RESOURCE_QUOTA_COLUMNS: &[Column] = &[
    NAME,
    AGE,
    column(
        "Request",
        "string",
        "Request represents a minimum amount of cpu/memory that a \
        container may consume.",
    ),
    column(
        "Limit",
        "string",
        "Limits control the maximum amount of cpu/memory that a \
        container may use independent of contention on the node.",
    ),
];

/// `printResourceQuota`: `used/hard` per resource in `status.hard`, `limits.*` apart.
fn resource_quota_cells(quota: &Value, now: i64) -> Vec<Value> {
    let mut requests: Vec<String> = Vec::new();
    let mut limits: Vec<String> = Vec::new();
    if let Some(hard) = quota.pointer("/status/hard").and_then(Value::as_object) {
        let mut resources: Vec<&String> = hard.keys().collect();
        resources.sort();
        for resource in resources {
            let used = quota
                .pointer("/status/used")
                .and_then(|used| used.get(resource.as_str()))
                .and_then(Value::as_str)
                .unwrap_or("0");
            let hard = hard[resource.as_str()].as_str().unwrap_or("0");
            let entry = format!("{resource}: {used}/{hard}");
            if resource.starts_with("limits.") {
                limits.push(entry);
            } else {
                requests.push(entry);
            }
        }
    }
    vec![name(quota), age(quota, now), json!(requests.join(", ")), json!(limits.join(", "))]
}

// ---- Deployment, ReplicaSet, DaemonSet, ControllerRevision ----

const DEPLOYMENT_COLUMNS: &[Column] = &[
    NAME,
    column("Ready", "string", "Number of the pod with ready state"),
    column(
        "Up-to-date",
        "string",
        "Total number of non-terminated pods targeted by this \
        deployment that have the desired template spec.",
    ),
    column(
        "Available",
        "string",
        "Total number of available pods (ready for at least \
        minReadySeconds) targeted by this deployment.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

/// `spec.replicas`, which defaults to 1.
fn desired_replicas(object: &Value) -> i64 {
    object.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)
}

fn deployment_cells(deployment: &Value, now: i64) -> Vec<Value> {
    let (containers, images) = container_cells(deployment, "/spec/template/spec/containers");
    vec![
        name(deployment),
        json!(format!(
            "{}/{}",
            int(deployment, "/status/readyReplicas"),
            desired_replicas(deployment)
        )),
        json!(int(deployment, "/status/updatedReplicas")),
        json!(int(deployment, "/status/availableReplicas")),
        age(deployment, now),
        containers,
        images,
        json!(format_selector(deployment.pointer("/spec/selector"))),
    ]
}

const REPLICA_SET_COLUMNS: &[Column] = &[
    NAME,
    column("Desired", "integer", "Replicas is the number of desired pods."),
    column("Current", "integer", "Replicas is the most recently observed number of replicas."),
    column("Ready", "integer", "The number of ready replicas for this replica set."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

fn replica_set_cells(replica_set: &Value, now: i64) -> Vec<Value> {
    let (containers, images) = container_cells(replica_set, "/spec/template/spec/containers");
    vec![
        name(replica_set),
        json!(desired_replicas(replica_set)),
        json!(int(replica_set, "/status/replicas")),
        json!(int(replica_set, "/status/readyReplicas")),
        age(replica_set, now),
        containers,
        images,
        json!(format_selector(replica_set.pointer("/spec/selector"))),
    ]
}

const DAEMON_SET_COLUMNS: &[Column] = &[
    NAME,
    column(
        "Desired",
        "integer",
        "The total number of nodes that should be running the daemon \
        pod.",
    ),
    column(
        "Current",
        "integer",
        "The number of nodes that are running at least 1 daemon pod \
        and are supposed to run the daemon pod.",
    ),
    column(
        "Ready",
        "integer",
        "The number of nodes that should be running the daemon pod and \
        have one or more of the daemon pod running and ready.",
    ),
    column(
        "Up-to-date",
        "integer",
        "The total number of nodes that are running updated daemon \
        pod",
    ),
    column(
        "Available",
        "integer",
        "The number of nodes that should be running the daemon pod \
        and have one or more of the daemon pod running and available.",
    ),
    column(
        "Node Selector",
        "string",
        "NodeSelector is a selector which must be true for the \
        pod to fit on a node.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

fn daemon_set_cells(daemon_set: &Value, now: i64) -> Vec<Value> {
    let (containers, images) = container_cells(daemon_set, "/spec/template/spec/containers");
    vec![
        name(daemon_set),
        json!(int(daemon_set, "/status/desiredNumberScheduled")),
        json!(int(daemon_set, "/status/currentNumberScheduled")),
        json!(int(daemon_set, "/status/numberReady")),
        json!(int(daemon_set, "/status/updatedNumberScheduled")),
        json!(int(daemon_set, "/status/numberAvailable")),
        json!(format_labels(daemon_set, "/spec/template/spec/nodeSelector")),
        age(daemon_set, now),
        containers,
        images,
        json!(format_selector(daemon_set.pointer("/spec/selector"))),
    ]
}

const CONTROLLER_REVISION_COLUMNS: &[Column] = &[
    NAME,
    column("Controller", "string", "Controller of the object"),
    column(
        "Revision",
        "string",
        "Revision indicates the revision of the state represented by \
        Data.",
    ),
    AGE,
];

fn controller_revision_cells(revision: &Value, now: i64) -> Vec<Value> {
    let controller = array(revision, "/metadata/ownerReferences")
        .iter()
        .find(|owner| owner.get("controller").and_then(Value::as_bool) == Some(true));
    let controller = match controller {
        Some(owner) => {
            // `kind.group/name` in lower case, as `formatResourceName` prints a GroupKind.
            let group = text(owner, "/apiVersion").rsplit_once('/').map_or("", |(g, _)| g);
            let kind = text(owner, "/kind");
            let group_kind = if group.is_empty() { kind.into() } else { format!("{kind}.{group}") };
            format!("{}/{}", group_kind.to_lowercase(), text(owner, "/name"))
        }
        None => "<none>".into(),
    };
    vec![name(revision), json!(controller), json!(int(revision, "/revision")), age(revision, now)]
}

// ---- Lease, RoleBinding, ClusterRoleBinding, default ----

const LEASE_COLUMNS: &[Column] = &[
    NAME,
    column(
        "Holder",
        "string",
        "holderIdentity contains the identity of the holder of a \
        current lease.",
    ),
    AGE,
];

const ROLE_BINDING_COLUMNS: &[Column] = &[
    NAME,
    column(
        "Role",
        "string",
        "RoleRef can reference a Role in the current namespace or a \
        ClusterRole in the global namespace.",
    ),
    AGE,
    wide("Users", "string", "Users in the roleBinding"),
    wide("Groups", "string", "Groups in the roleBinding"),
    wide("ServiceAccounts", "string", "ServiceAccounts in the roleBinding"),
];

fn role_binding_cells(binding: &Value, now: i64) -> Vec<Value> {
    let role = format!("{}/{}", text(binding, "/roleRef/kind"), text(binding, "/roleRef/name"));
    let (mut users, mut groups, mut accounts) = (Vec::new(), Vec::new(), Vec::new());
    for subject in array(binding, "/subjects") {
        let subject_name = text(subject, "/name");
        match text(subject, "/kind") {
            "User" => users.push(subject_name.to_string()),
            "Group" => groups.push(subject_name.to_string()),
            "ServiceAccount" => {
                accounts.push(format!("{}/{subject_name}", text(subject, "/namespace")))
            }
            _ => {}
        }
    }
    vec![
        name(binding),
        json!(role),
        age(binding, now),
        json!(users.join(", ")),
        json!(groups.join(", ")),
        json!(accounts.join(", ")),
    ]
}

const DEFAULT_COLUMNS: &[Column] = &[
    NAME,
    Column {
        name: "Created At",
        kind: "date",
        format: "",
        description: AGE_DESCRIPTION,
        priority: 0,
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;

    const NOW: i64 = 1_700_000_000;

    fn at(seconds_ago: i64) -> String {
        Timestamp::from_second(NOW - seconds_ago).unwrap().to_string()
    }

    fn row(kind_plural: (&str, &str), object: Value) -> Vec<Value> {
        let resource = find(kind_plural.0, "v1", kind_plural.1).unwrap();
        let table = table(resource, &[&object], IncludeObject::Metadata, true, "7", NOW);
        table["rows"][0]["cells"].as_array().unwrap().clone()
    }

    fn pod(status: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                "creationTimestamp": at(300)},
            "spec": {"nodeName": "n1", "containers": [{"name": "a", "image": "i"},
                {"name": "b", "image": "i"}]},
            "status": status})
    }

    #[test]
    fn human_duration_matches_apimachinery() {
        let check = |seconds: i64, expected: &str| {
            assert_eq!(human_duration(seconds), expected, "{seconds}s");
        };
        check(-2, "<invalid>");
        check(-1, "0s");
        check(0, "0s");
        check(59, "59s");
        check(119, "119s");
        check(120, "2m");
        check(330, "5m30s");
        check(599, "9m59s");
        check(600, "10m");
        check(179 * 60 + 59, "179m");
        check(3 * 3600, "3h");
        check(3 * 3600 + 10 * 60, "3h10m");
        check(8 * 3600, "8h");
        check(47 * 3600 + 59 * 60, "47h");
        check(48 * 3600, "2d");
        check(2 * 86400 + 5 * 3600, "2d5h");
        check(8 * 86400 + 5 * 3600, "8d");
        check(400 * 86400, "400d");
        check(2 * 365 * 86400, "2y");
        check((2 * 365 + 30) * 86400, "2y30d");
        check(8 * 365 * 86400 + 86400 * 100, "8y");
    }

    #[test]
    fn include_object_and_accept_parsing() {
        assert_eq!(IncludeObject::parse(None), Ok(IncludeObject::Metadata));
        assert_eq!(IncludeObject::parse(Some("Object")), Ok(IncludeObject::Object));
        assert_eq!(IncludeObject::parse(Some("None")), Ok(IncludeObject::None));
        assert!(IncludeObject::parse(Some("All")).unwrap_err().contains("\"All\""));
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;\
            as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        ));
        assert!(wants_table("application/json;as=Table;v=v1beta1;g=meta.k8s.io"));
        assert!(!wants_table("application/json"));
        assert!(!wants_table("application/json, application/json;as=Table;v=v1;g=meta.k8s.io"));
        assert!(!wants_table("application/json;as=Table;v=v2;g=meta.k8s.io"));
        assert!(!wants_table(""));
    }

    #[test]
    fn pod_table_has_kubectl_columns_and_partial_metadata_rows() {
        let resource = find("", "v1", "pods").unwrap();
        let running = pod(json!({"phase": "Running", "podIP": "10.0.0.5",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}},
                {"name": "b", "ready": true, "restartCount": 2, "state": {"running": {}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": at(90)}}}]}));
        let table = table(resource, &[&running], IncludeObject::Metadata, true, "42", NOW);
        assert_eq!(table["kind"], "Table");
        assert_eq!(table["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(table["metadata"]["resourceVersion"], "42");
        let columns: Vec<&str> = table["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            columns,
            [
                "Name",
                "Ready",
                "Status",
                "Restarts",
                "Age",
                "IP",
                "Node",
                "Nominated Node",
                "Readiness Gates"
            ]
        );
        assert_eq!(table["columnDefinitions"][0]["format"], "name");
        assert_eq!(table["columnDefinitions"][5]["priority"], 1);
        let row = &table["rows"][0];
        assert_eq!(
            row["cells"],
            json!([
                "web",
                "2/2",
                "Running",
                "2 (90s ago)",
                "5m",
                "10.0.0.5",
                "n1",
                "<none>",
                "<none>"
            ])
        );
        assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(row["object"]["metadata"]["namespace"], "default");
        assert_eq!(row["object"]["metadata"]["labels"]["app"], "web");
        assert!(row.get("conditions").is_none());

        let full = table_for(resource, &running, IncludeObject::Object);
        assert_eq!(full["rows"][0]["object"]["spec"]["nodeName"], "n1");
        let none = table_for(resource, &running, IncludeObject::None);
        assert!(none["rows"][0]["object"].is_null());
        let empty = super::table(resource, &[], IncludeObject::Metadata, false, "1", NOW);
        assert_eq!(empty["rows"], json!([]));
        assert_eq!(empty["columnDefinitions"], json!([]));
    }

    fn table_for(resource: &Resource, object: &Value, include: IncludeObject) -> Value {
        table(resource, &[object], include, true, "1", NOW)
    }

    #[test]
    fn pod_status_reasons() {
        let status = |status: Value| row(("", "pods"), pod(status))[2].clone();
        assert_eq!(status(json!({})), "Pending");
        assert_eq!(
            status(json!({"phase": "Pending", "containerStatuses": [
            {"name": "a", "state": {"waiting": {"reason": "ContainerCreating"}}}]})),
            "ContainerCreating"
        );
        assert_eq!(
            status(json!({"phase": "Running", "containerStatuses": [
            {"name": "a", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]})),
            "CrashLoopBackOff"
        );
        assert_eq!(
            status(json!({"phase": "Succeeded", "containerStatuses": [
            {"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]})),
            "Completed"
        );
        assert_eq!(
            status(json!({"phase": "Running", "containerStatuses": [
            {"name": "a", "state": {"terminated": {"exitCode": 137, "signal": 9}}}]})),
            "Signal:9"
        );
        assert_eq!(
            status(json!({"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]})),
            "SchedulingGated"
        );

        let mut deleting = pod(json!({"phase": "Running"}));
        deleting["metadata"]["deletionTimestamp"] = json!(at(1));
        assert_eq!(row(("", "pods"), deleting.clone())[2], "Terminating");
        deleting["status"]["phase"] = json!("Succeeded");
        assert_eq!(row(("", "pods"), deleting)[2], "Succeeded");

        let mut initializing = pod(json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "init", "state": {"waiting": {"reason": "PodInitializing"}}}]}));
        initializing["spec"]["initContainers"] = json!([{"name": "init", "image": "i"}]);
        assert_eq!(row(("", "pods"), initializing)[2], "Init:0/1");

        let running = json!({"name": "a", "ready": true, "state": {"running": {}}});
        let mut with_sidecar = pod(json!({"phase": "Running",
            "initContainerStatuses": [{"name": "proxy", "started": true, "ready": true,
                "restartCount": 1, "state": {"running": {}}}],
            "containerStatuses": [running.clone(), running]}));
        with_sidecar["spec"]["initContainers"] =
            json!([{"name": "proxy", "image": "i", "restartPolicy": "Always"}]);
        let cells = row(("", "pods"), with_sidecar);
        assert_eq!(cells[1..4], json!(["3/3", "Running", "1"]).as_array().unwrap()[..]);

        let resource = find("", "v1", "pods").unwrap();
        let done = pod(json!({"phase": "Succeeded"}));
        let table = table_for(resource, &done, IncludeObject::Metadata);
        assert_eq!(table["rows"][0]["conditions"][0]["reason"], "Succeeded");
    }

    #[test]
    fn workload_tables() {
        let deployment = json!({"metadata": {"name": "web", "creationTimestamp": at(7200)},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        assert_eq!(
            row(("apps", "deployments"), deployment),
            json!(["web", "2/3", 3, 2, "120m", "c", "nginx", "app=web"])
                .as_array()
                .unwrap()
                .clone()
        );
        let replica_set = json!({"metadata": {"name": "web-1"},
            "spec": {"selector": {"matchLabels": {"app": "web"}, "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["fe", "be"]}]}},
            "status": {"replicas": 1, "readyReplicas": 1}});
        let cells = row(("apps", "replicasets"), replica_set);
        assert_eq!(cells[..5], json!(["web-1", 1, 1, 1, "<unknown>"]).as_array().unwrap()[..]);
        assert_eq!(cells[7], "app=web,tier in (be,fe)");
        let daemon_set = json!({"metadata": {"name": "agent"},
            "spec": {"template": {"spec": {"nodeSelector": {"os": "linux"}, "containers": []}}},
            "status": {"desiredNumberScheduled": 2, "numberReady": 1}});
        let cells = row(("apps", "daemonsets"), daemon_set);
        assert_eq!(cells[..7], json!(["agent", 2, 0, 1, 0, 0, "os=linux"]).as_array().unwrap()[..]);
        let revision = json!({"metadata": {"name": "agent-1", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "controller": true}]},
            "revision": 4});
        let cells = row(("apps", "controllerrevisions"), revision);
        assert_eq!(cells[1], "daemonset.apps/agent");
        assert_eq!(cells[2], 4);
    }

    #[test]
    fn service_and_endpoints_tables() {
        let service = json!({"metadata": {"name": "web"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.10",
                "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53,
                    "protocol": "UDP"}], "selector": {"app": "web"}}});
        assert_eq!(
            row(("", "services"), service)[1..5],
            json!(["NodePort", "10.96.0.10", "<none>", "80:30080/TCP,53/UDP"]).as_array().unwrap()
                [..]
        );
        let plain = json!({"metadata": {"name": "api"}, "spec": {"clusterIPs": ["10.96.0.1"],
            "ports": [{"port": 443}]}});
        let cells = row(("", "services"), plain);
        assert_eq!(
            cells[1..5],
            json!(["ClusterIP", "10.96.0.1", "<none>", "443/TCP"]).as_array().unwrap()[..]
        );
        assert_eq!(cells[6], "<none>");
        let balancer = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer"}});
        assert_eq!(row(("", "services"), balancer)[3], "<pending>");

        let addresses: Vec<Value> = (1..=5).map(|i| json!({"ip": format!("10.0.0.{i}")})).collect();
        let endpoints = json!({"metadata": {"name": "web"},
            "subsets": [{"addresses": addresses, "ports": [{"port": 80}]}]});
        assert_eq!(
            row(("", "endpoints"), endpoints)[1],
            "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 2 more..."
        );
        let one = json!({"metadata": {"name": "web"},
            "subsets": [{"addresses": [{"ip": "10.0.0.5"}], "ports": [{"port": 80}]}]});
        assert_eq!(row(("", "endpoints"), one)[1], "10.0.0.5:80");
        assert_eq!(row(("", "endpoints"), json!({"metadata": {"name": "x"}}))[1], "<none>");
    }

    #[test]
    fn node_and_namespace_tables() {
        let node = json!({"metadata": {"name": "n1", "creationTimestamp": at(59),
                "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/os": "l"}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "192.168.1.2"}],
                "nodeInfo": {"kubeletVersion": "v1.32.0+skiff"}}});
        assert_eq!(
            row(("", "nodes"), node)[..7],
            json!([
                "n1",
                "Ready,SchedulingDisabled",
                "control-plane",
                "59s",
                "v1.32.0+skiff",
                "192.168.1.2",
                "<none>"
            ])
            .as_array()
            .unwrap()[..]
        );
        let lost = json!({"metadata": {"name": "n2"},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        let cells = row(("", "nodes"), lost);
        assert_eq!((&cells[1], &cells[2]), (&json!("NotReady"), &json!("<none>")));
        assert_eq!(row(("", "nodes"), json!({"metadata": {"name": "n3"}}))[1], "Unknown");
        let namespace = json!({"metadata": {"name": "default"}, "status": {"phase": "Active"}});
        assert_eq!(row(("", "namespaces"), namespace)[1], "Active");
    }

    #[test]
    fn small_kinds() {
        let config_map = json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"},
            "binaryData": {"c": ""}});
        assert_eq!(row(("", "configmaps"), config_map)[1], 3);
        let secret = json!({"metadata": {"name": "s"}, "data": {"a": "MQ=="}});
        assert_eq!(
            row(("", "secrets"), secret)[1..3],
            json!(["Opaque", 1]).as_array().unwrap()[..]
        );
        let account = json!({"metadata": {"name": "default"}, "secrets": [{"name": "t"}]});
        assert_eq!(row(("", "serviceaccounts"), account)[1], 1);
        let event = json!({"metadata": {"name": "web.1"}, "type": "Normal",
            "reason": "Scheduled", "message": "assigned\n", "count": 2,
            "involvedObject": {"kind": "Pod", "name": "web"},
            "source": {"component": "scheduler"},
            "firstTimestamp": at(600), "lastTimestamp": at(30)});
        assert_eq!(
            row(("", "events"), event),
            json!([
                "30s",
                "Normal",
                "Scheduled",
                "pod/web",
                "",
                "scheduler",
                "assigned",
                "10m",
                2,
                "web.1"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
        let quota = json!({"metadata": {"name": "q"}, "status": {
            "hard": {"pods": "10", "limits.cpu": "2"}, "used": {"pods": "3"}}});
        assert_eq!(
            row(("", "resourcequotas"), quota)[2..4],
            json!(["pods: 3/10", "limits.cpu: 0/2"]).as_array().unwrap()[..]
        );

        let lease = json!({"metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1"}});
        assert_eq!(row(("coordination.k8s.io", "leases"), lease)[1], "n1");
        let binding = json!({"metadata": {"name": "b"},
            "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": "alice"},
                {"kind": "ServiceAccount", "name": "sa", "namespace": "ns"}]});
        let cells = row(("rbac.authorization.k8s.io", "rolebindings"), binding);
        assert_eq!(cells[1], "ClusterRole/view");
        assert_eq!((&cells[3], &cells[5]), (&json!("alice"), &json!("ns/sa")));
    }

    #[test]
    fn kinds_without_a_printer_get_name_and_created_at() {
        let resource = find("rbac.authorization.k8s.io", "v1", "roles").unwrap();
        let role = json!({"metadata": {"name": "reader",
            "creationTimestamp": "2024-05-01T10:00:00Z"}});
        let table = table_for(resource, &role, IncludeObject::Metadata);
        assert_eq!(table["columnDefinitions"][1]["name"], "Created At");
        assert_eq!(table["columnDefinitions"][1]["type"], "date");
        assert_eq!(table["rows"][0]["cells"], json!(["reader", "2024-05-01T10:00:00Z"]));
    }

    #[test]
    fn every_served_kind_fills_every_column() {
        for resource in crate::resources::RESOURCES {
            let object = json!({"metadata": {"name": "x"}});
            let table = table_for(resource, &object, IncludeObject::Metadata);
            let columns = table["columnDefinitions"].as_array().unwrap().len();
            let cells = table["rows"][0]["cells"].as_array().unwrap().len();
            assert_eq!(columns, cells, "{}", resource.kind);
            let cells = table["rows"][0]["cells"].as_array().unwrap();
            assert!(cells.contains(&json!("x")), "{}", resource.kind);
        }
    }
}
