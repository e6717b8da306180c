//! OpenAPI documents: `/openapi/v3` (an index) and one OpenAPI 3.0 document per served
//! group/version, built from k8s-openapi's `schemars` impls, plus the empty `/openapi/v2`.
//!
//! What clients read from them (observed with kubectl 1.32 and its sources):
//! - kubectl decides whether the server validates (`fieldValidation`) by finding a PATCH
//!   operation whose `x-kubernetes-group-version-kind` (one object) is the kind, and looking for
//!   a query parameter named `fieldValidation` on it. It looks at the first such operation it
//!   meets, in no set order, so every PATCH of a kind (object, `status`) carries the parameter.
//! - `kubectl explain` finds a kind's schema by `x-kubernetes-group-version-kind` (an array) on
//!   `components.schemas` and follows `$ref`/`allOf`, showing descriptions and `required`.
//! - PATCH operations deliberately do not list `application/strategic-merge-patch+json`: if they
//!   did, `kubectl apply` would compute patches from these schemas, which lack the
//!   `x-kubernetes-patch-merge-key`/`-patch-strategy` extensions, instead of from its compiled-in
//!   Go types as it does against kube-apiserver for built-in kinds.
//!
//! Documents are built once, on first use, and cached with their serialized bytes and hash.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use k8s_openapi::api::{apps::v1 as apps, coordination::v1 as coordination, core::v1 as core};
use k8s_openapi::api::{autoscaling::v1 as autoscaling, rbac::v1 as rbac};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};

use super::discovery::GIT_VERSION;
use crate::resources::{self, Resource, Subresource};

/// `/openapi/v2` is served with this content type: echoing kubectl's
/// `application/com.github.proto-openapi.spec.v2@v1.0+protobuf` makes client-go fail to parse
/// the media type.
pub const V2_CONTENT_TYPE: &str = "application/octet-stream";

/// The `/openapi/v2` body: empty.
///
/// kubectl fetches `/openapi/v2` (gnostic protobuf) for client-side validation of `kind: List`
/// manifests and for the patch metadata lookup of `apply`. A 0-byte body decodes as an empty
/// `openapi_v2.Document`: validation then finds no schema and skips, and `apply` computes
/// strategic merge patches from its compiled-in types, which is what it does against a real
/// cluster for built-in kinds. Answering 404 instead breaks `apply -f list.yaml`. We serve no v2
/// schemas because v3 (above) is what kubectl 1.32 uses for everything else.
pub fn v2_document() -> Vec<u8> {
    Vec::new()
}

/// The `/openapi/v3` index: one entry per served group/version, each URL carrying the hash of
/// its document so clients can cache it.
pub fn v3_index() -> Value {
    let paths: Map<String, Value> = DOCUMENTS
        .iter()
        .map(|(path, document)| {
            let url = format!("/openapi/v3/{path}?hash={}", document.hash);
            (path.clone(), json!({ "serverRelativeURL": url }))
        })
        .collect();
    json!({ "paths": paths })
}

/// The document of one group/version: `group_version_path` is `api/v1` or `apis/<g>/<v>`
/// (a leading `/` is ignored).
pub fn v3_document(group_version_path: &str) -> Option<Value> {
    document(group_version_path).map(|document| document.value.clone())
}

/// [`v3_document`] already serialized, for serving without re-encoding a large document.
pub fn v3_document_bytes(group_version_path: &str) -> Option<&'static [u8]> {
    document(group_version_path).map(|document| document.bytes.as_slice())
}

/// The hash in the index URL of a document (clients send it back as `?hash=`).
pub fn v3_document_hash(group_version_path: &str) -> Option<&'static str> {
    document(group_version_path).map(|document| document.hash.as_str())
}

struct Document {
    value: Value,
    bytes: Vec<u8>,
    hash: String,
}

fn document(group_version_path: &str) -> Option<&'static Document> {
    DOCUMENTS.get(group_version_path.trim_start_matches('/'))
}

/// Every served group/version's document, keyed by `api/v1` / `apis/<g>/<v>`.
static DOCUMENTS: LazyLock<BTreeMap<String, Document>> = LazyLock::new(|| {
    let mut documents = BTreeMap::new();
    for (group, version) in group_versions() {
        let value = build_document(group, version);
        let bytes = serde_json::to_vec(&value).expect("an OpenAPI document serializes");
        let hash = format!("{:016X}", fnv1a64(&bytes));
        documents.insert(group_version_path(group, version), Document { value, bytes, hash });
    }
    documents
});

fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut pairs: Vec<(&'static str, &'static str)> = Vec::new();
    for resource in resources::RESOURCES {
        if !pairs.contains(&(resource.group, resource.version)) {
            pairs.push((resource.group, resource.version));
        }
    }
    pairs
}

fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// A hash that stays the same across builds and Rust releases (unlike `DefaultHasher`), so
/// clients' cached documents stay valid while the document doesn't change.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

type AddSchema = fn(&mut SchemaGenerator);

/// Adds `T`'s schema and everything it references to the generator's definitions.
fn add<T: JsonSchema>(generator: &mut SchemaGenerator) {
    generator.subschema_for::<T>();
}

/// The k8s-openapi type of each served kind, by OpenAPI definition name.
const KIND_SCHEMAS: &[(&str, AddSchema)] = &[
    ("io.k8s.api.core.v1.Namespace", add::<core::Namespace>),
    ("io.k8s.api.core.v1.Pod", add::<core::Pod>),
    ("io.k8s.api.core.v1.Node", add::<core::Node>),
    ("io.k8s.api.core.v1.Service", add::<core::Service>),
    ("io.k8s.api.core.v1.Endpoints", add::<core::Endpoints>),
    ("io.k8s.api.core.v1.Event", add::<core::Event>),
    ("io.k8s.api.core.v1.ServiceAccount", add::<core::ServiceAccount>),
    ("io.k8s.api.core.v1.ConfigMap", add::<core::ConfigMap>),
    ("io.k8s.api.core.v1.Secret", add::<core::Secret>),
    ("io.k8s.api.core.v1.ResourceQuota", add::<core::ResourceQuota>),
    ("io.k8s.api.core.v1.LimitRange", add::<core::LimitRange>),
    ("io.k8s.api.apps.v1.Deployment", add::<apps::Deployment>),
    ("io.k8s.api.apps.v1.ReplicaSet", add::<apps::ReplicaSet>),
    ("io.k8s.api.apps.v1.DaemonSet", add::<apps::DaemonSet>),
    ("io.k8s.api.apps.v1.ControllerRevision", add::<apps::ControllerRevision>),
    ("io.k8s.api.coordination.v1.Lease", add::<coordination::Lease>),
    ("io.k8s.api.rbac.v1.Role", add::<rbac::Role>),
    ("io.k8s.api.rbac.v1.ClusterRole", add::<rbac::ClusterRole>),
    ("io.k8s.api.rbac.v1.RoleBinding", add::<rbac::RoleBinding>),
    ("io.k8s.api.rbac.v1.ClusterRoleBinding", add::<rbac::ClusterRoleBinding>),
];

const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";
const BINDING: &str = "io.k8s.api.core.v1.Binding";
const TOKEN_REQUEST: &str = "io.k8s.api.authentication.v1.TokenRequest";
const GVK: &str = "x-kubernetes-group-version-kind";

fn kind_schema(definition: &str) -> AddSchema {
    KIND_SCHEMAS
        .iter()
        .find(|(name, _)| *name == definition)
        .map(|(_, add)| *add)
        .unwrap_or_else(|| panic!("no schema registered for served kind {definition}"))
}

fn schema_ref(definition: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{definition}") })
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({ "group": group, "version": version, "kind": kind })
}

fn build_document(group: &str, version: &str) -> Value {
    let served = resources::in_group_version(group, version);
    let has = |subresource| served.iter().any(|r| r.has_subresource(subresource));
    let mut generator = SchemaSettings::openapi3().into_generator();
    for resource in &served {
        kind_schema(resource.definition)(&mut generator);
    }
    add::<meta::Status>(&mut generator);
    add::<meta::DeleteOptions>(&mut generator);
    add::<meta::Patch>(&mut generator);
    add::<meta::ListMeta>(&mut generator);
    if has(Subresource::Scale) {
        add::<autoscaling::Scale>(&mut generator);
    }
    if has(Subresource::Binding) {
        add::<core::Binding>(&mut generator);
    }
    if has(Subresource::Token) {
        add::<k8s_openapi::api::authentication::v1::TokenRequest>(&mut generator);
    }
    let mut schemas = generator.take_definitions(true);

    for resource in &served {
        let kind = gvk(resource.group, resource.version, resource.kind);
        mark_top_level(&mut schemas, resource.definition, vec![kind]);
        schemas.insert(list_definition(resource), list_schema(resource));
    }
    let core_and_own = |kind: &str| {
        let mut kinds = vec![gvk("", "v1", kind)];
        if !group.is_empty() {
            kinds.push(gvk(group, version, kind));
        }
        kinds
    };
    mark_top_level(&mut schemas, STATUS, vec![gvk("", "v1", "Status")]);
    mark_top_level(&mut schemas, DELETE_OPTIONS, core_and_own("DeleteOptions"));
    if has(Subresource::Scale) {
        mark_top_level(&mut schemas, SCALE, vec![gvk("autoscaling", "v1", "Scale")]);
    }
    if has(Subresource::Binding) {
        mark_top_level(&mut schemas, BINDING, vec![gvk("", "v1", "Binding")]);
    }
    if has(Subresource::Token) {
        let kind = gvk("authentication.k8s.io", "v1", "TokenRequest");
        mark_top_level(&mut schemas, TOKEN_REQUEST, vec![kind]);
    }

    let mut paths = Map::new();
    for resource in &served {
        add_paths(&mut paths, resource);
    }
    json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": GIT_VERSION },
        "paths": paths,
        "components": { "schemas": schemas },
    })
}

/// Tags a kind's schema with its group/version/kinds (the array form `kubectl explain` looks
/// for) and drops `metadata` from `required`: k8s-openapi requires it because its structs hold
/// a non-optional `ObjectMeta`, but the API does not.
fn mark_top_level(schemas: &mut Map<String, Value>, definition: &str, kinds: Vec<Value>) {
    let schema = schemas
        .get_mut(definition)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("schema {definition} was generated"));
    schema.insert(GVK.into(), Value::Array(kinds));
    if let Some(Value::Array(required)) = schema.get_mut("required") {
        required.retain(|field| field != "metadata");
        if required.is_empty() {
            schema.remove("required");
        }
    }
}

fn list_definition(resource: &Resource) -> String {
    format!("{}List", resource.definition)
}

/// k8s-openapi has no per-kind list types (it uses one generic `List<T>`), so list schemas are
/// written here, shaped as kube-apiserver's.
fn list_schema(resource: &Resource) -> Value {
    let kind = resource.kind;
    json!({
        "description": format!("{kind}List is a list of {kind} objects."),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation \
                    of an object.",
                "type": "string",
            },
            "items": {
                "description": format!("List of {}.", resource.plural),
                "type": "array",
                "items": schema_ref(resource.definition),
            },
            "kind": {
                "description": "Kind is a string value representing the REST resource this \
                    object represents.",
                "type": "string",
            },
            "metadata": {
                "description": "Standard list metadata.",
                "allOf": [schema_ref(LIST_META)],
            },
        },
        GVK: [gvk(resource.group, resource.version, &format!("{kind}List"))],
    })
}

/// `CoreV1`, `AppsV1`, `RbacAuthorizationV1`: the group/version part of operation ids.
fn operation_group(resource: &Resource) -> String {
    let group = if resource.group.is_empty() { "core" } else { resource.group };
    let group = group.strip_suffix(".k8s.io").unwrap_or(group);
    let mut name: String = group.split(['.', '-']).map(capitalize).collect();
    name.push_str(&capitalize(resource.version));
    name
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// The OpenAPI tag kube-apiserver uses (`core_v1`, `rbacAuthorization_v1`).
fn tag(resource: &Resource) -> String {
    let group = if resource.group.is_empty() { "core" } else { resource.group };
    let group = group.strip_suffix(".k8s.io").unwrap_or(group);
    let mut parts = group.split('.');
    let mut name = parts.next().unwrap_or_default().to_string();
    for part in parts {
        name.push_str(&capitalize(part));
    }
    format!("{name}_{}", resource.version)
}

fn path_parameter(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description,
        "schema": {"type": "string", "uniqueItems": true}})
}

fn query_parameter(name: &str, kind: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description,
        "schema": {"type": kind, "uniqueItems": true}})
}

/// A query parameter: name, schema type, description.
type QueryParameter = (&'static str, &'static str, &'static str);

const WRITE_PARAMETERS: &[QueryParameter] = &[
    ("dryRun", "string", "When present, modifications are not persisted. Valid values: All."),
    ("fieldManager", "string", "A name of the actor or entity making these changes."),
    // kubectl trusts the server to validate only when this parameter is listed.
    ("fieldValidation", "string", "Unknown or duplicate fields: Ignore, Warn or Strict."),
];
const FORCE_PARAMETER: QueryParameter =
    ("force", "boolean", "Force an apply: re-acquire fields owned by other managers.");
const LIST_PARAMETERS: &[QueryParameter] = &[
    ("allowWatchBookmarks", "boolean", "Requests watch events with type \"BOOKMARK\"."),
    ("continue", "string", "The token of the next page of a paged list."),
    ("fieldSelector", "string", "Restricts the returned objects by their fields."),
    ("labelSelector", "string", "Restricts the returned objects by their labels."),
    ("limit", "integer", "The maximum number of objects to return."),
    ("resourceVersion", "string", "Which resource versions the request may be served from."),
    ("resourceVersionMatch", "string", "How resourceVersion applies to a list."),
    ("sendInitialEvents", "boolean", "Start a watch with the current objects."),
    ("timeoutSeconds", "integer", "Timeout for the list/watch call."),
    ("watch", "boolean", "Stream changes as add, update and remove notifications."),
];
const DELETE_PARAMETERS: &[QueryParameter] = &[
    ("dryRun", "string", "When present, modifications are not persisted. Valid values: All."),
    ("gracePeriodSeconds", "integer", "The duration in seconds before the object is deleted."),
    ("propagationPolicy", "string", "Dependents: Orphan, Background or Foreground."),
];
const LOG_PARAMETERS: &[QueryParameter] = &[
    ("container", "string", "The container for which to stream logs."),
    ("follow", "boolean", "Follow the log stream of the pod."),
    ("limitBytes", "integer", "The number of bytes to read before ending the output."),
    ("previous", "boolean", "Return previous terminated container logs."),
    ("sinceSeconds", "integer", "Show logs from this many seconds before now."),
    ("tailLines", "integer", "The number of lines from the end of the logs to show."),
    ("timestamps", "boolean", "Prefix every line with an RFC3339 timestamp."),
];

fn query_parameters(parameters: &[QueryParameter]) -> Vec<Value> {
    parameters.iter().map(|&(name, kind, text)| query_parameter(name, kind, text)).collect()
}

fn write_parameters(patch: bool) -> Vec<Value> {
    let mut parameters = query_parameters(WRITE_PARAMETERS);
    if patch {
        parameters.extend(query_parameters(&[FORCE_PARAMETER]));
    }
    parameters
}

fn json_response(definition: &str) -> Value {
    json!({"description": "OK", "content": {
        "application/json": {"schema": schema_ref(definition)},
        "application/yaml": {"schema": schema_ref(definition)},
    }})
}

fn body(definition: &str) -> Value {
    json!({"content": {"*/*": {"schema": schema_ref(definition)}}, "required": true})
}

/// The PATCH body: every patch type we apply except strategic merge patch (see the module
/// documentation for why it is not listed).
fn patch_body() -> Value {
    let schema = json!({"schema": schema_ref(PATCH)});
    json!({"content": {
        "application/apply-patch+yaml": schema,
        "application/json-patch+json": schema,
        "application/merge-patch+json": schema,
    }, "required": true})
}

/// One REST operation, as kube-apiserver's OpenAPI names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    List,
    Create,
    DeleteCollection,
    Read,
    Replace,
    Patch,
    Delete,
}

impl Action {
    /// The HTTP method, `x-kubernetes-action` and operation-id verb.
    fn names(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Action::List => ("get", "list", "list"),
            Action::Create => ("post", "post", "create"),
            Action::DeleteCollection => ("delete", "deletecollection", "delete"),
            Action::Read => ("get", "get", "read"),
            Action::Replace => ("put", "put", "replace"),
            Action::Patch => ("patch", "patch", "patch"),
            Action::Delete => ("delete", "delete", "delete"),
        }
    }
}

/// What the operations of one path read and write.
#[derive(Clone)]
struct Target {
    /// The schema of the object the operations take and return.
    definition: String,
    /// `x-kubernetes-group-version-kind` of the operations (one object).
    kind: Value,
    /// The subresource's name (`status`), empty for the object itself.
    subresource: &'static str,
    /// `pods/log`: plain text with its own query parameters.
    log: bool,
}

/// The words operation ids and descriptions of one kind are made of:
/// `{verb}{group}{Collection}{scope}{kind}{subresource}{suffix}` (`patchCoreV1NamespacedPod`).
struct Names {
    group: String,
    scope: &'static str,
    kind: &'static str,
    suffix: &'static str,
    tag: String,
    list: String,
}

fn operation(action: Action, names: &Names, target: &Target) -> Value {
    let (_, kubernetes_action, verb) = action.names();
    let collection = if action == Action::DeleteCollection { "Collection" } else { "" };
    let id = format!(
        "{verb}{}{collection}{}{}{}{}",
        names.group,
        names.scope,
        names.kind,
        capitalize(target.subresource),
        names.suffix
    );
    let kind = names.kind;
    let of = if target.subresource.is_empty() {
        String::new()
    } else {
        format!("{} of ", target.subresource)
    };
    let description = match action {
        Action::List => format!("list or watch objects of kind {kind}"),
        Action::Create => format!("create {of}a {kind}"),
        Action::DeleteCollection => format!("delete collection of {kind}"),
        Action::Read => format!("read {of}the specified {kind}"),
        Action::Replace => format!("replace {of}the specified {kind}"),
        Action::Patch => format!("partially update {of}the specified {kind}"),
        Action::Delete => format!("delete a {kind}"),
    };
    let definition = target.definition.as_str();
    let ok = |codes: &[&str], definition: &str| -> Value {
        codes.iter().map(|code| (code.to_string(), json_response(definition))).collect()
    };
    let (parameters, request, responses) = match action {
        Action::List => (query_parameters(LIST_PARAMETERS), None, ok(&["200"], &names.list)),
        Action::Create => (
            write_parameters(false),
            Some(body(definition)),
            ok(&["200", "201", "202"], definition),
        ),
        Action::DeleteCollection => {
            (query_parameters(DELETE_PARAMETERS), Some(body(DELETE_OPTIONS)), ok(&["200"], STATUS))
        }
        Action::Read if target.log => {
            let text = json!({"description": "OK", "content": {
                "text/plain": {"schema": {"type": "string"}}}});
            (query_parameters(LOG_PARAMETERS), None, json!({ "200": text }))
        }
        Action::Read => (Vec::new(), None, ok(&["200"], definition)),
        Action::Replace => {
            (write_parameters(false), Some(body(definition)), ok(&["200", "201"], definition))
        }
        Action::Patch => {
            (write_parameters(true), Some(patch_body()), ok(&["200", "201"], definition))
        }
        Action::Delete => (
            query_parameters(DELETE_PARAMETERS),
            Some(body(DELETE_OPTIONS)),
            ok(&["200", "202"], definition),
        ),
    };
    let mut operation = json!({
        "tags": [names.tag],
        "description": description,
        "operationId": id,
        "responses": responses,
        "x-kubernetes-action": kubernetes_action,
        GVK: target.kind,
    });
    if !parameters.is_empty() {
        operation["parameters"] = Value::Array(parameters);
    }
    if let Some(request) = request {
        operation["requestBody"] = request;
    }
    operation
}

/// A path item: its operations and the parameters they share.
fn path_item(actions: &[Action], names: &Names, target: &Target, shared: Vec<Value>) -> Value {
    let mut item = Map::new();
    for &action in actions {
        item.insert(action.names().0.into(), operation(action, names, target));
    }
    item.insert("parameters".into(), Value::Array(shared));
    Value::Object(item)
}

fn add_paths(paths: &mut Map<String, Value>, resource: &Resource) {
    let prefix = if resource.group.is_empty() {
        format!("/api/{}", resource.version)
    } else {
        format!("/apis/{}/{}", resource.group, resource.version)
    };
    let pretty =
        query_parameter("pretty", "string", "If 'true', then the output is pretty printed.");
    let mut names = Names {
        group: operation_group(resource),
        scope: "",
        kind: resource.kind,
        suffix: "",
        tag: tag(resource),
        list: list_definition(resource),
    };
    let own = Target {
        definition: resource.definition.into(),
        kind: gvk(resource.group, resource.version, resource.kind),
        subresource: "",
        log: false,
    };
    let (collection, mut shared) = if resource.namespaced {
        names.scope = "Namespaced";
        let namespace = path_parameter(
            "namespace",
            "object name and auth scope, such as for teams and projects",
        );
        (format!("{prefix}/namespaces/{{namespace}}/{}", resource.plural), vec![namespace])
    } else {
        (format!("{prefix}/{}", resource.plural), Vec::new())
    };
    shared.push(pretty.clone());
    use Action::*;
    let item = format!("{collection}/{{name}}");
    paths.insert(
        collection,
        path_item(&[List, Create, DeleteCollection], &names, &own, shared.clone()),
    );
    shared.insert(0, path_parameter("name", &format!("name of the {}", resource.kind)));
    paths.insert(
        item.clone(),
        path_item(&[Read, Replace, Patch, Delete], &names, &own, shared.clone()),
    );

    for &subresource in resource.subresources {
        let (target, actions) = subresource_target(&own, subresource);
        let path = format!("{item}/{}", subresource.name());
        paths.insert(path, path_item(actions, &names, &target, shared.clone()));
    }

    if resource.namespaced {
        names.scope = "";
        names.suffix = "ForAllNamespaces";
        let all = format!("{prefix}/{}", resource.plural);
        paths.insert(all, path_item(&[List], &names, &own, vec![pretty]));
    }
}

/// What a subresource's operations take and return, and which operations it has.
fn subresource_target(own: &Target, subresource: Subresource) -> (Target, &'static [Action]) {
    use Action::*;
    let other = |definition: &str, kind: Value| Target {
        definition: definition.into(),
        kind,
        subresource: subresource.name(),
        log: false,
    };
    match subresource {
        Subresource::Status => {
            (Target { subresource: "status", ..own.clone() }, &[Read, Replace, Patch])
        }
        Subresource::Scale => {
            (other(SCALE, gvk("autoscaling", "v1", "Scale")), &[Read, Replace, Patch])
        }
        Subresource::Binding => (other(BINDING, gvk("", "v1", "Binding")), &[Create]),
        Subresource::Log => (Target { subresource: "log", log: true, ..own.clone() }, &[Read]),
        // A connect operation answering a stream, described as the log's plain text is.
        Subresource::Exec => (Target { subresource: "exec", log: true, ..own.clone() }, &[Read]),
        Subresource::Token => {
            (other(TOKEN_REQUEST, gvk("authentication.k8s.io", "v1", "TokenRequest")), &[Create])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
        let reference =
            schema.get("$ref").or_else(|| schema.pointer("/allOf/0/$ref")).and_then(Value::as_str);
        match reference {
            Some(reference) => {
                let name = reference.strip_prefix("#/components/schemas/").unwrap();
                &document["components"]["schemas"][name]
            }
            None => schema,
        }
    }

    #[test]
    fn every_served_kind_has_a_schema_named_by_its_definition() {
        for resource in resources::RESOURCES {
            let mut generator = SchemaSettings::openapi3().into_generator();
            kind_schema(resource.definition)(&mut generator);
            assert!(generator.definitions().contains_key(resource.definition), "{resource:?}");
        }
    }

    #[test]
    fn index_lists_every_group_version_with_a_stable_hash() {
        let index = v3_index();
        let url = index["paths"]["api/v1"]["serverRelativeURL"].as_str().unwrap();
        assert!(url.starts_with("/openapi/v3/api/v1?hash="), "{url}");
        for path in
            ["apis/apps/v1", "apis/coordination.k8s.io/v1", "apis/rbac.authorization.k8s.io/v1"]
        {
            assert!(index["paths"].get(path).is_some(), "{path}");
            assert!(v3_document(path).is_some());
        }
        assert_eq!(index["paths"].as_object().unwrap().len(), 4);
        let hash = v3_document_hash("api/v1").unwrap();
        assert!(url.ends_with(hash));
        let rebuilt = serde_json::to_vec(&build_document("", "v1")).unwrap();
        assert_eq!(format!("{:016X}", fnv1a64(&rebuilt)), hash);
        assert_eq!(v3_document_bytes("/api/v1").unwrap(), rebuilt.as_slice());
        assert!(v3_document("apis/batch/v1").is_none());
    }

    #[test]
    fn core_document_carries_pod_schema_and_patch_with_field_validation() {
        let document = v3_document("api/v1").unwrap();
        assert_eq!(document["openapi"], "3.0.0");
        let pod = &document["components"]["schemas"]["io.k8s.api.core.v1.Pod"];
        assert_eq!(pod[GVK], json!([{"group": "", "version": "v1", "kind": "Pod"}]));
        assert!(pod.get("required").is_none(), "metadata is not required by the API");
        assert!(pod["description"].as_str().unwrap().contains("containers"));

        let item = &document["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"];
        for verb in ["get", "put", "patch", "delete"] {
            assert!(item.get(verb).is_some(), "{verb}");
        }
        let patch = &item["patch"];
        assert_eq!(patch[GVK], json!({"group": "", "version": "v1", "kind": "Pod"}));
        assert_eq!(patch["operationId"], "patchCoreV1NamespacedPod");
        let has_field_validation = |operation: &Value| {
            operation["parameters"].as_array().unwrap().iter().any(|parameter| {
                parameter["name"] == "fieldValidation" && parameter["in"] == "query"
            })
        };
        assert!(has_field_validation(patch));
        assert!(has_field_validation(&item["put"]));
        let collection = &document["paths"]["/api/v1/namespaces/{namespace}/pods"];
        assert!(has_field_validation(&collection["post"]));
        assert_eq!(collection["post"][GVK]["kind"], "Pod");
        assert!(collection.get("get").is_some());
        // Every PATCH of a kind, status included, must pass kubectl's check.
        let status = &document["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/status"];
        assert!(has_field_validation(&status["patch"]));
        assert!(document["paths"]["/api/v1/nodes/{name}"]["patch"].is_object());
        assert!(document["paths"]["/api/v1/pods"]["get"].is_object());
        assert_eq!(
            document["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/binding"]["post"][GVK],
            json!({"group": "", "version": "v1", "kind": "Binding"})
        );
    }

    #[test]
    fn no_operation_offers_strategic_merge_patch() {
        for path in ["api/v1", "apis/apps/v1"] {
            let bytes = v3_document_bytes(path).unwrap();
            let text = std::str::from_utf8(bytes).unwrap();
            assert!(!text.contains("application/strategic-merge-patch+json"), "{path}");
        }
    }

    #[test]
    fn explain_can_walk_pod_spec_containers() {
        let document = v3_document("api/v1").unwrap();
        let schemas = &document["components"]["schemas"];
        let pod = &schemas["io.k8s.api.core.v1.Pod"];
        let spec = resolve(&document, &pod["properties"]["spec"]);
        assert!(spec["required"].as_array().unwrap().contains(&json!("containers")));
        let containers = &spec["properties"]["containers"];
        assert_eq!(containers["type"], "array");
        assert!(containers["description"].as_str().unwrap().contains("containers"));
        let container = resolve(&document, &containers["items"]);
        assert_eq!(container["required"], json!(["name"]));
        assert!(container["properties"]["image"]["description"].is_string());
        // Every reference resolves inside the document.
        let text = serde_json::to_string(&document).unwrap();
        for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &piece[..piece.find('"').unwrap()];
            assert!(schemas.get(name).is_some(), "dangling reference {name}");
        }
    }

    #[test]
    fn apps_document_has_scale_for_the_scale_subresource() {
        let document = v3_document("apis/apps/v1").unwrap();
        let schemas = &document["components"]["schemas"];
        assert_eq!(
            schemas[SCALE][GVK],
            json!([{"group": "autoscaling", "version": "v1",
            "kind": "Scale"}])
        );
        assert_eq!(schemas["io.k8s.api.apps.v1.Deployment"][GVK][0]["kind"], "Deployment");
        assert_eq!(schemas["io.k8s.api.apps.v1.DeploymentList"][GVK][0]["kind"], "DeploymentList");
        let scale = &document["paths"]
            ["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"];
        assert_eq!(scale[GVK], json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}));
        assert_eq!(scale["operationId"], "patchAppsV1NamespacedDeploymentScale");
        let rbac = v3_document("apis/rbac.authorization.k8s.io/v1").unwrap();
        let patch =
            &rbac["paths"]["/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}"]["patch"];
        assert_eq!(patch["operationId"], "patchRbacAuthorizationV1ClusterRole");
        assert_eq!(patch["tags"], json!(["rbacAuthorization_v1"]));
    }

    #[test]
    fn v2_is_empty() {
        assert!(v2_document().is_empty());
        assert_eq!(V2_CONTENT_TYPE, "application/octet-stream");
    }
}
