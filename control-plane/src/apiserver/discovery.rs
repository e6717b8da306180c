//! Discovery documents: `/version`, the legacy `/api`, `/apis`, `/api/v1` and `/apis/<g>/<v>`
//! documents, and aggregated discovery (`apidiscovery.k8s.io` v2 and v2beta1), all derived from
//! `resources::RESOURCES`. Pure: the HTTP layer picks a document with [`wants_aggregated`] and
//! serves it with the matching content type.
//!
//! kubectl 1.32 asks `/api` and `/apis` for aggregated discovery first and decides which format it
//! got only by the response `Content-Type`, so an aggregated body must never be sent as plain
//! `application/json` (client-go would read it as an empty `APIGroupList` and cache that).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroup, APIGroupList, APIResource, APIResourceList, APIVersions, GroupVersionForDiscovery,
    ServerAddressByClientCIDR,
};
use k8s_openapi::apimachinery::pkg::version::Info;
use serde_json::{json, Value};

use crate::resources::{self, Resource, Subresource, RESOURCES};

/// The Kubernetes release whose API we serve. `minor` must stay "32": the gcloud kubectl
/// dispatcher picks the kubectl binary by the `major`/`minor` of `/version`.
pub const KUBERNETES_MAJOR: &str = "1";
pub const KUBERNETES_MINOR: &str = "32";
/// Semver build metadata (`+skiff`) marks the implementation without changing the ordering
/// kubectl's version-skew check uses.
pub const GIT_VERSION: &str = "v1.32.0+skiff";

/// Content type of an aggregated discovery v2 document.
pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
/// Content type of an aggregated discovery v2beta1 document (kubectl 1.26..1.29 ask for it).
pub const AGGREGATED_V2BETA1_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";
/// Content type of the legacy documents.
pub const LEGACY_CONTENT_TYPE: &str = "application/json";

/// Which discovery document a client asked for at `/api` or `/apis`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiscoveryFormat {
    /// `APIVersions` / `APIGroupList`.
    Legacy,
    /// `apidiscovery.k8s.io/v2` `APIGroupDiscoveryList`.
    AggregatedV2,
    /// `apidiscovery.k8s.io/v2beta1` `APIGroupDiscoveryList` (same shape as v2).
    AggregatedV2Beta1,
}

impl DiscoveryFormat {
    /// The `Content-Type` the answer must carry; clients choose the parser by it.
    pub fn content_type(self) -> &'static str {
        match self {
            DiscoveryFormat::Legacy => LEGACY_CONTENT_TYPE,
            DiscoveryFormat::AggregatedV2 => AGGREGATED_CONTENT_TYPE,
            DiscoveryFormat::AggregatedV2Beta1 => AGGREGATED_V2BETA1_CONTENT_TYPE,
        }
    }

    pub fn is_aggregated(self) -> bool {
        self != DiscoveryFormat::Legacy
    }

    fn api_version(self) -> &'static str {
        match self {
            DiscoveryFormat::AggregatedV2Beta1 => "apidiscovery.k8s.io/v2beta1",
            _ => "apidiscovery.k8s.io/v2",
        }
    }
}

/// One media range of an `Accept` header: lower-cased `type/subtype`, its parameters (names
/// lower-cased, values unquoted) and its `q` weight.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct MediaRange {
    pub essence: String,
    pub params: Vec<(String, String)>,
    pub q: f32,
}

impl MediaRange {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// Whether plain JSON satisfies this range (`application/json` without a `g`/`v`/`as`
    /// conversion request, `application/*`, `*/*`).
    pub fn accepts_plain_json(&self) -> bool {
        match self.essence.as_str() {
            "application/json" => self.param("as").is_none(),
            "application/*" | "*/*" => true,
            _ => false,
        }
    }
}

/// The media ranges of an `Accept` header in order of preference: by `q`, highest first, and
/// in the order the client listed them among equal weights. An empty header yields `*/*`.
pub(crate) fn media_ranges(accept: &str) -> Vec<MediaRange> {
    let mut ranges: Vec<MediaRange> = accept.split(',').filter_map(parse_media_range).collect();
    if ranges.is_empty() {
        ranges.push(MediaRange { essence: "*/*".into(), params: Vec::new(), q: 1.0 });
    }
    // A stable sort keeps the client's order among equal weights.
    ranges.sort_by(|a, b| b.q.partial_cmp(&a.q).unwrap_or(std::cmp::Ordering::Equal));
    ranges.retain(|range| range.q > 0.0);
    ranges
}

fn parse_media_range(text: &str) -> Option<MediaRange> {
    let mut parts = text.split(';');
    let essence = parts.next()?.trim().to_ascii_lowercase();
    if essence.is_empty() {
        return None;
    }
    let mut params = Vec::new();
    let mut q = 1.0;
    for part in parts {
        let Some((key, value)) = part.split_once('=') else { continue };
        let key = key.trim().to_ascii_lowercase();
        let value = value.trim().trim_matches('"').to_string();
        if key == "q" {
            q = value.parse::<f32>().unwrap_or(1.0).clamp(0.0, 1.0);
        } else {
            params.push((key, value));
        }
    }
    Some(MediaRange { essence, params, q })
}

/// Which discovery format to answer `/api` or `/apis` with: the first acceptable range wins,
/// so aggregated discovery only when the client prefers it to plain JSON. Unknown or
/// unacceptable headers get the legacy document, which every client can read.
pub fn wants_aggregated(accept: &str) -> DiscoveryFormat {
    for range in media_ranges(accept) {
        if range.essence == "application/json"
            && range.param("g") == Some("apidiscovery.k8s.io")
            && range.param("as") == Some("APIGroupDiscoveryList")
        {
            match range.param("v") {
                Some("v2") => return DiscoveryFormat::AggregatedV2,
                Some("v2beta1") => return DiscoveryFormat::AggregatedV2Beta1,
                _ => continue,
            }
        }
        if range.accepts_plain_json() {
            return DiscoveryFormat::Legacy;
        }
    }
    DiscoveryFormat::Legacy
}

/// The `/version` document.
pub fn version_info() -> Value {
    let info = Info {
        major: KUBERNETES_MAJOR.into(),
        minor: KUBERNETES_MINOR.into(),
        git_version: GIT_VERSION.into(),
        git_commit: "0000000000000000000000000000000000000000".into(),
        git_tree_state: "clean".into(),
        build_date: "2025-01-01T00:00:00Z".into(),
        go_version: "go1.23.0".into(),
        compiler: "gc".into(),
        platform: platform(),
    };
    to_value(&info)
}

/// `linux/amd64` and friends, in Go's `GOOS/GOARCH` words.
fn platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    format!("{}/{arch}", std::env::consts::OS)
}

/// The legacy `/api` document (`APIVersions`).
pub fn api_versions(server_address: &str) -> Value {
    let versions = APIVersions {
        versions: vec!["v1".into()],
        server_address_by_client_cidrs: vec![ServerAddressByClientCIDR {
            client_cidr: "0.0.0.0/0".into(),
            server_address: server_address.into(),
        }],
    };
    to_value(&versions)
}

/// The legacy `/apis` document (`APIGroupList`): every served group but the core one.
pub fn api_group_list() -> Value {
    let groups = resources::groups().into_iter().filter_map(group_document).collect();
    to_value(&APIGroupList { groups })
}

/// The `/apis/<group>` document (`APIGroup`), or `None` for a group we don't serve.
pub fn api_group(group: &str) -> Option<Value> {
    if group.is_empty() {
        return None;
    }
    group_document(group).map(|document| to_value(&document))
}

fn group_document(group: &str) -> Option<APIGroup> {
    let versions: Vec<GroupVersionForDiscovery> = versions_of(group)
        .into_iter()
        .map(|version| GroupVersionForDiscovery {
            group_version: format!("{group}/{version}"),
            version: version.into(),
        })
        .collect();
    let preferred_version = versions.first().cloned()?;
    Some(APIGroup {
        name: group.into(),
        preferred_version: Some(preferred_version),
        server_address_by_client_cidrs: None,
        versions,
    })
}

/// The versions served for a group, in order of preference, without repeats.
fn versions_of(group: &str) -> Vec<&'static str> {
    let mut versions: Vec<&'static str> = Vec::new();
    for resource in RESOURCES.iter().filter(|r| r.group == group) {
        if !versions.contains(&resource.version) {
            versions.push(resource.version);
        }
    }
    versions
}

/// The legacy `/api/v1` or `/apis/<group>/<version>` document (`APIResourceList`), with the
/// subresources listed as kube-apiserver lists them (`pods/status`, `deployments/scale`, ...).
pub fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    let served = resources::in_group_version(group, version);
    if served.is_empty() {
        return None;
    }
    let mut list = Vec::new();
    for resource in served {
        list.push(legacy_resource(resource));
        for &subresource in resource.subresources {
            list.push(legacy_subresource(resource, subresource));
        }
    }
    let group_version =
        if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(to_value(&APIResourceList { group_version, resources: list }))
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| value.to_string()).collect()
}

fn non_empty(values: &[&str]) -> Option<Vec<String>> {
    (!values.is_empty()).then(|| strings(values))
}

fn legacy_resource(resource: &Resource) -> APIResource {
    APIResource {
        name: resource.plural.into(),
        singular_name: resource.singular.into(),
        namespaced: resource.namespaced,
        kind: resource.kind.into(),
        verbs: strings(resource.verbs()),
        short_names: non_empty(resource.short_names),
        categories: non_empty(resource.categories),
        group: None,
        version: None,
        storage_version_hash: None,
    }
}

/// What a subresource answers with and which verbs it takes.
struct SubresourceFacts {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    verbs: &'static [&'static str],
}

fn subresource_facts(resource: &Resource, subresource: Subresource) -> SubresourceFacts {
    const READ_WRITE: &[&str] = &["get", "patch", "update"];
    let own = |verbs| SubresourceFacts {
        group: resource.group,
        version: resource.version,
        kind: resource.kind,
        verbs,
    };
    match subresource {
        Subresource::Status => own(READ_WRITE),
        Subresource::Log => own(&["get"]),
        Subresource::Exec => SubresourceFacts {
            group: resource.group,
            version: resource.version,
            kind: "PodExecOptions",
            verbs: &["create", "get"],
        },
        Subresource::Binding => SubresourceFacts {
            group: resource.group,
            version: resource.version,
            kind: "Binding",
            verbs: &["create"],
        },
        Subresource::Scale => SubresourceFacts {
            group: "autoscaling",
            version: "v1",
            kind: "Scale",
            verbs: READ_WRITE,
        },
        Subresource::Token => SubresourceFacts {
            group: "authentication.k8s.io",
            version: "v1",
            kind: "TokenRequest",
            verbs: &["create"],
        },
    }
}

fn legacy_subresource(resource: &Resource, subresource: Subresource) -> APIResource {
    let facts = subresource_facts(resource, subresource);
    // kube-apiserver names the group/version only when it differs from the list's own.
    let foreign = facts.group != resource.group || facts.version != resource.version;
    APIResource {
        name: format!("{}/{}", resource.plural, subresource.name()),
        singular_name: String::new(),
        namespaced: resource.namespaced,
        kind: facts.kind.into(),
        verbs: strings(facts.verbs),
        short_names: None,
        categories: None,
        group: foreign.then(|| facts.group.to_string()),
        version: foreign.then(|| facts.version.to_string()),
        storage_version_hash: None,
    }
}

/// The aggregated discovery v2 document for `/api` (the core group only).
pub fn aggregated_core() -> Value {
    aggregated(DiscoveryFormat::AggregatedV2, true)
}

/// The aggregated discovery v2 document for `/apis` (every group but the core one).
pub fn aggregated_groups() -> Value {
    aggregated(DiscoveryFormat::AggregatedV2, false)
}

/// The aggregated document in either version: `core` picks `/api` over `/apis`.
pub fn aggregated(format: DiscoveryFormat, core: bool) -> Value {
    let groups: Vec<&str> = if core { vec![""] } else { resources::groups() };
    let items: Vec<Value> = groups.into_iter().map(aggregated_group).collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format.api_version(),
        "metadata": {},
        "items": items,
    })
}

/// The document for `/api` (`core`) or `/apis` as the `Accept` header asks, with its
/// `Content-Type`.
pub fn root_document(core: bool, accept: &str, server_address: &str) -> (&'static str, Value) {
    let format = wants_aggregated(accept);
    let document = match (format.is_aggregated(), core) {
        (true, _) => aggregated(format, core),
        (false, true) => api_versions(server_address),
        (false, false) => api_group_list(),
    };
    (format.content_type(), document)
}

fn aggregated_group(group: &str) -> Value {
    let versions: Vec<Value> = versions_of(group)
        .into_iter()
        .map(|version| {
            let resources: Vec<Value> = resources::in_group_version(group, version)
                .into_iter()
                .map(aggregated_resource)
                .collect();
            json!({"version": version, "resources": resources, "freshness": "Current"})
        })
        .collect();
    json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
}

fn aggregated_resource(resource: &Resource) -> Value {
    let mut entry = json!({
        "resource": resource.plural,
        "responseKind": {"group": resource.group, "version": resource.version,
            "kind": resource.kind},
        "scope": if resource.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": resource.singular,
        "verbs": resource.verbs(),
    });
    if !resource.short_names.is_empty() {
        entry["shortNames"] = json!(resource.short_names);
    }
    if !resource.categories.is_empty() {
        entry["categories"] = json!(resource.categories);
    }
    if !resource.subresources.is_empty() {
        let subresources: Vec<Value> = resource
            .subresources
            .iter()
            .map(|&subresource| {
                let facts = subresource_facts(resource, subresource);
                json!({
                    "subresource": subresource.name(),
                    "responseKind": {"group": facts.group, "version": facts.version,
                        "kind": facts.kind},
                    "verbs": facts.verbs,
                })
            })
            .collect();
        entry["subresources"] = json!(subresources);
    }
    entry
}

fn to_value<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("k8s-openapi discovery types serialize to JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECTL_ACCEPT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;\
        as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;\
        as=APIGroupDiscoveryList,application/json";

    #[test]
    fn version_advertises_1_32_for_the_kubectl_dispatcher() {
        let version = version_info();
        assert_eq!(version["major"], "1");
        assert_eq!(version["minor"], "32");
        assert!(version["gitVersion"].as_str().unwrap().starts_with("v1.32."));
        assert!(version["platform"].as_str().unwrap().contains('/'));
        let info: Info = serde_json::from_value(version).unwrap();
        assert_eq!(info.compiler, "gc");
    }

    #[test]
    fn accept_negotiation_follows_the_clients_order() {
        let check = |accept: &str, expected: DiscoveryFormat| {
            assert_eq!(wants_aggregated(accept), expected, "{accept}");
        };
        check(KUBECTL_ACCEPT, DiscoveryFormat::AggregatedV2);
        check("application/json, */*", DiscoveryFormat::Legacy);
        check("", DiscoveryFormat::Legacy);
        check(
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList",
            DiscoveryFormat::AggregatedV2Beta1,
        );
        check(
            "application/json,application/json;g=apidiscovery.k8s.io;v=v2;\
            as=APIGroupDiscoveryList",
            DiscoveryFormat::Legacy,
        );
        // Parameter order, spacing and quoting don't matter; q-values do.
        check(
            "application/json; as=\"APIGroupDiscoveryList\"; v=v2; g=apidiscovery.k8s.io",
            DiscoveryFormat::AggregatedV2,
        );
        check(
            "application/json;q=0.5,application/json;g=apidiscovery.k8s.io;v=v2;\
            as=APIGroupDiscoveryList",
            DiscoveryFormat::AggregatedV2,
        );
        check(
            "application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList",
            DiscoveryFormat::Legacy,
        );
        check("application/vnd.kubernetes.protobuf", DiscoveryFormat::Legacy);
        assert_eq!(DiscoveryFormat::AggregatedV2.content_type(), AGGREGATED_CONTENT_TYPE);
    }

    #[test]
    fn legacy_root_documents() {
        let api = api_versions("10.0.0.1:6443");
        assert_eq!(api["kind"], "APIVersions");
        assert_eq!(api["versions"], json!(["v1"]));
        assert_eq!(api["serverAddressByClientCIDRs"][0]["serverAddress"], "10.0.0.1:6443");

        let apis = api_group_list();
        assert_eq!(apis["kind"], "APIGroupList");
        let names: Vec<&str> = apis["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, vec!["apps", "coordination.k8s.io", "rbac.authorization.k8s.io"]);
        assert_eq!(apis["groups"][0]["preferredVersion"]["groupVersion"], "apps/v1");
        assert_eq!(api_group("apps").unwrap()["kind"], "APIGroup");
        assert!(api_group("batch").is_none());
    }

    fn find<'a>(list: &'a Value, name: &str) -> &'a Value {
        list["resources"].as_array().unwrap().iter().find(|r| r["name"] == name).unwrap()
    }

    #[test]
    fn legacy_resource_lists_carry_subresources() {
        let core = api_resource_list("", "v1").unwrap();
        assert_eq!(core["kind"], "APIResourceList");
        assert_eq!(core["groupVersion"], "v1");
        let pods = find(&core, "pods");
        assert_eq!(pods["namespaced"], true);
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        assert_eq!(pods["singularName"], "pod");
        assert_eq!(find(&core, "pods/status")["verbs"], json!(["get", "patch", "update"]));
        let binding = find(&core, "pods/binding");
        assert_eq!((&binding["kind"], &binding["verbs"]), (&json!("Binding"), &json!(["create"])));
        let log = find(&core, "pods/log");
        assert_eq!((&log["kind"], &log["verbs"]), (&json!("Pod"), &json!(["get"])));
        assert_eq!(find(&core, "nodes")["namespaced"], false);
        assert!(find(&core, "secrets").get("shortNames").is_none());

        let apps = api_resource_list("apps", "v1").unwrap();
        assert_eq!(apps["groupVersion"], "apps/v1");
        let scale = find(&apps, "deployments/scale");
        assert_eq!(scale["group"], "autoscaling");
        assert_eq!(scale["version"], "v1");
        assert_eq!(scale["kind"], "Scale");
        assert!(api_resource_list("apps", "v2").is_none());
        assert!(api_resource_list("batch", "v1").is_none());
    }

    #[test]
    fn aggregated_documents_list_every_resource_with_its_response_kind() {
        let core = aggregated_core();
        assert_eq!(core["kind"], "APIGroupDiscoveryList");
        assert_eq!(core["apiVersion"], "apidiscovery.k8s.io/v2");
        assert_eq!(core["items"].as_array().unwrap().len(), 1);
        assert_eq!(core["items"][0]["metadata"]["name"], "");
        let version = &core["items"][0]["versions"][0];
        assert_eq!(version["version"], "v1");
        let resources = version["resources"].as_array().unwrap();
        let pods = resources.iter().find(|r| r["resource"] == "pods").unwrap();
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(pods["responseKind"], json!({"group": "", "version": "v1", "kind": "Pod"}));
        assert_eq!(pods["subresources"][0]["subresource"], "status");
        let nodes = resources.iter().find(|r| r["resource"] == "nodes").unwrap();
        assert_eq!(nodes["scope"], "Cluster");
        assert_eq!(resources.len(), resources::in_group_version("", "v1").len());

        let groups = aggregated_groups();
        let apps = &groups["items"][0];
        assert_eq!(apps["metadata"]["name"], "apps");
        let deployments = apps["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "deployments")
            .unwrap();
        let scale = deployments["subresources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["subresource"] == "scale")
            .unwrap();
        assert_eq!(
            scale["responseKind"],
            json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
        );
        assert_eq!(groups["items"].as_array().unwrap().len(), resources::groups().len());
    }

    #[test]
    fn root_document_pairs_body_and_content_type() {
        let (content_type, body) = root_document(true, KUBECTL_ACCEPT, "127.0.0.1:6443");
        assert_eq!(content_type, AGGREGATED_CONTENT_TYPE);
        assert_eq!(body["kind"], "APIGroupDiscoveryList");
        let accept = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";
        let (content_type, body) = root_document(false, accept, "127.0.0.1:6443");
        assert_eq!(content_type, AGGREGATED_V2BETA1_CONTENT_TYPE);
        assert_eq!(body["apiVersion"], "apidiscovery.k8s.io/v2beta1");
        let (content_type, body) = root_document(false, "application/json, */*", "");
        assert_eq!(content_type, "application/json");
        assert_eq!(body["kind"], "APIGroupList");
    }
}
