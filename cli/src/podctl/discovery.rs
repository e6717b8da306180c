//! What the server serves, from aggregated discovery (`/api` and `/apis` with kubectl's Accept
//! header, through the kube client), and resolving the names users type (`po`, `pods`, `pod`,
//! `Pod`, `deploy`, `deployment.apps`, `deployments.v1.apps`, categories such as `all`) as
//! kubectl's RESTMapper and shortcut expander do.

use kube::core::discovery::v2::{APIGroupDiscoveryList, APIResourceDiscovery};
use kube::discovery::ApiResource;

use super::failure::Failure;

/// One served resource at its group's preferred version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub verbs: Vec<String>,
    pub subresources: Vec<String>,
}

impl ResourceType {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// What kubectl prints objects as: `pod`, `deployment.apps` (lower-cased `Kind.group`).
    pub fn kind_group(&self) -> String {
        let kind = self.kind.to_lowercase();
        if self.group.is_empty() {
            kind
        } else {
            format!("{kind}.{}", self.group)
        }
    }

    /// The kube dynamic-API description of this resource.
    pub fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.clone(),
            version: self.version.clone(),
            api_version: self.api_version(),
            kind: self.kind.clone(),
            plural: self.plural.clone(),
        }
    }

    /// The REST path of the collection or of one object (`namespace` is ignored for
    /// cluster-scoped resources; `None` on a namespaced one means all namespaces).
    pub fn path(&self, namespace: Option<&str>, name: Option<&str>) -> String {
        let mut path = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        if let (true, Some(namespace)) = (self.namespaced, namespace) {
            path.push_str("/namespaces/");
            path.push_str(namespace);
        }
        path.push('/');
        path.push_str(&self.plural);
        if let Some(name) = name {
            path.push('/');
            path.push_str(name);
        }
        path
    }
}

/// Every served resource, in discovery order (core group first).
#[derive(Clone, Debug)]
pub struct Catalog {
    pub types: Vec<ResourceType>,
}

impl Catalog {
    /// Asks the server (two requests, as kubectl 1.32 does with aggregated discovery).
    pub async fn load(client: &kube::Client) -> Result<Catalog, Failure> {
        let context = "unable to retrieve the complete list of server APIs: ";
        let core = client
            .list_core_api_versions_aggregated()
            .await
            .map_err(|e| Failure::from_kube(e, context))?;
        let groups = client
            .list_api_groups_aggregated()
            .await
            .map_err(|e| Failure::from_kube(e, context))?;
        Ok(Catalog::from_documents(&[core, groups]))
    }

    /// Builds the catalog from aggregated discovery documents: the first (preferred) version
    /// of each group, resources without a `responseKind` dropped as client-go drops them.
    pub fn from_documents(documents: &[APIGroupDiscoveryList]) -> Catalog {
        let mut types = Vec::new();
        for group in documents.iter().flat_map(|d| &d.items) {
            let name = group.metadata.as_ref().and_then(|m| m.name.clone()).unwrap_or_default();
            let Some(version) = group.versions.first() else { continue };
            let version_name = version.version.clone().unwrap_or_default();
            for resource in &version.resources {
                if let Some(resource_type) = convert(&name, &version_name, resource) {
                    types.push(resource_type);
                }
            }
        }
        Catalog { types }
    }

    /// Resolves one name typed by a user to the resources it means (several for a category).
    pub fn resolve(&self, typed: &str) -> Result<Vec<&ResourceType>, Failure> {
        let name = typed.to_lowercase();
        let matches = |t: &&ResourceType, resource: &str| {
            t.plural == resource || t.singular == resource || t.kind.to_lowercase() == resource
        };
        // The shortcut expander runs first: short names win over everything.
        if let Some(found) = self.types.iter().find(|t| t.short_names.contains(&name)) {
            return Ok(vec![found]);
        }
        // `resource.version.group`, then `resource.group`, then a bare resource name.
        let mut parts = name.splitn(3, '.');
        let (first, second, rest) = (parts.next(), parts.next(), parts.next());
        if let (Some(resource), Some(version), Some(group)) = (first, second, rest) {
            let found = self
                .types
                .iter()
                .find(|t| matches(t, resource) && t.version == version && t.group == group);
            if let Some(found) = found {
                return Ok(vec![found]);
            }
        }
        if let Some((resource, group)) = name.split_once('.') {
            let found = self.types.iter().find(|t| matches(t, resource) && t.group == group);
            if let Some(found) = found {
                return Ok(vec![found]);
            }
        }
        if let Some(found) = self.types.iter().find(|t| matches(t, &name)) {
            return Ok(vec![found]);
        }
        let in_category: Vec<&ResourceType> =
            self.types.iter().filter(|t| t.categories.contains(&name)).collect();
        if !in_category.is_empty() {
            return Ok(in_category);
        }
        Err(Failure::client(format!("the server doesn't have a resource type \"{typed}\"")))
    }

    /// The resource serving `apiVersion` + `kind` (for objects read from files).
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<&ResourceType> {
        self.types.iter().find(|t| t.kind == kind && t.api_version() == api_version)
    }
}

fn convert(group: &str, version: &str, resource: &APIResourceDiscovery) -> Option<ResourceType> {
    let response_kind = resource.response_kind.as_ref()?;
    let kind = response_kind.kind.clone().filter(|k| !k.is_empty())?;
    let plural = resource.resource.clone()?;
    let singular = resource
        .singular_resource
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| kind.to_lowercase());
    Some(ResourceType {
        group: group.to_string(),
        version: version.to_string(),
        kind,
        plural,
        singular,
        namespaced: resource.scope.as_deref() == Some("Namespaced"),
        short_names: resource.short_names.clone(),
        categories: resource.categories.clone(),
        verbs: resource.verbs.clone(),
        subresources: resource.subresources.iter().filter_map(|s| s.subresource.clone()).collect(),
    })
}

/// `kubectl api-resources`: sorted by group (core first), then by name.
pub fn api_resources(
    catalog: &Catalog,
    args: &super::args::ApiResourcesArgs,
) -> Result<String, Failure> {
    let wide = match args.output.as_deref() {
        None => false,
        Some("wide") => true,
        Some("name") => false,
        Some(other) => {
            return Err(Failure::client(format!(
                "--output {other} is not available, use one of: wide, name"
            )))
        }
    };
    let mut types: Vec<&ResourceType> = catalog
        .types
        .iter()
        .filter(|t| args.namespaced.is_none_or(|n| n == t.namespaced))
        .filter(|t| args.api_group.as_deref().is_none_or(|g| g == t.group))
        .collect();
    types.sort_by(|a, b| (&a.group, &a.plural).cmp(&(&b.group, &b.plural)));
    if args.output.as_deref() == Some("name") {
        return Ok(types
            .iter()
            .map(|t| {
                if t.group.is_empty() {
                    format!("{}\n", t.plural)
                } else {
                    format!("{}.{}\n", t.plural, t.group)
                }
            })
            .collect());
    }
    let mut text = String::new();
    if !args.no_headers {
        text.push_str("NAME\tSHORTNAMES\tAPIVERSION\tNAMESPACED\tKIND");
        text.push_str(if wide { "\tVERBS\tCATEGORIES\n" } else { "\n" });
    }
    for t in types {
        let cells = [
            t.plural.clone(),
            t.short_names.join(","),
            t.api_version(),
            t.namespaced.to_string(),
            t.kind.clone(),
        ];
        text.push_str(&cells.join("\t"));
        if wide {
            let verbs = format!("[{}]", t.verbs.join(" "));
            text.push_str(&format!("\t{verbs}\t{}", t.categories.join(",")));
        }
        text.push('\n');
    }
    if text.is_empty() {
        return Ok(text);
    }
    Ok(super::output::TabWriter::kubectl().format(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(group: &str, kind: &str, plural: &str, short: &[&str]) -> ResourceType {
        ResourceType {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            namespaced: true,
            short_names: short.iter().map(|s| s.to_string()).collect(),
            categories: if kind == "Pod" || kind == "Deployment" {
                vec!["all".into()]
            } else {
                vec![]
            },
            verbs: vec!["get".into(), "list".into()],
            subresources: vec![],
        }
    }

    fn catalog() -> Catalog {
        Catalog {
            types: vec![
                resource("", "Pod", "pods", &["po"]),
                resource("", "Event", "events", &["ev"]),
                resource("apps", "Deployment", "deployments", &["deploy"]),
                resource("events.k8s.io", "Event", "events", &[]),
            ],
        }
    }

    #[test]
    fn names_resolve_as_kubectl_resolves_them() {
        let catalog = catalog();
        let plural_of = |typed: &str| -> Vec<String> {
            catalog.resolve(typed).unwrap().iter().map(|t| t.kind_group()).collect()
        };
        for typed in ["po", "pods", "pod", "Pod", "PODS"] {
            assert_eq!(plural_of(typed), ["pod"], "{typed}");
        }
        for typed in ["deploy", "deployment", "deployments.apps", "deployment.v1.apps"] {
            assert_eq!(plural_of(typed), ["deployment.apps"], "{typed}");
        }
        assert_eq!(plural_of("events"), ["event"]);
        assert_eq!(plural_of("events.events.k8s.io"), ["event.events.k8s.io"]);
        assert_eq!(plural_of("all"), ["pod", "deployment.apps"]);
        let error = catalog.resolve("foo").unwrap_err().to_string();
        assert_eq!(error, "error: the server doesn't have a resource type \"foo\"");
    }

    #[test]
    fn paths_follow_the_rest_layout() {
        let catalog = catalog();
        let pods = catalog.resolve("po").unwrap()[0];
        assert_eq!(pods.path(Some("default"), Some("p1")), "/api/v1/namespaces/default/pods/p1");
        assert_eq!(pods.path(None, None), "/api/v1/pods");
        let deployments = catalog.resolve("deploy").unwrap()[0];
        assert_eq!(deployments.path(Some("ns"), None), "/apis/apps/v1/namespaces/ns/deployments");
    }

    #[test]
    fn api_resources_table() {
        let args = super::super::args::ApiResourcesArgs {
            output: None,
            no_headers: false,
            namespaced: None,
            api_group: None,
        };
        let text = api_resources(&catalog(), &args).unwrap();
        let first_lines: Vec<&str> = text.lines().take(3).collect();
        assert_eq!(
            first_lines,
            [
                "NAME          SHORTNAMES   APIVERSION         NAMESPACED   KIND",
                "events        ev           v1                 true         Event",
                "pods          po           v1                 true         Pod",
            ]
        );
    }
}
