//! `create -f` and `apply -f`. Apply is kubectl's client-side apply: GET the object; if it is
//! absent, POST it carrying the `kubectl.kubernetes.io/last-applied-configuration`
//! annotation; otherwise PATCH a three-way strategic merge patch (last applied vs. new vs.
//! live), retried on conflicts, and print `created`, `configured` or `unchanged`.

use http::Method;
use kube::api::{Patch, PatchParams, ValidationDirective};
use serde_json::{json, Value};

use super::client::{self, Session};
use super::discovery::ResourceType;
use super::failure::Failure;
use super::manifest::{self, Manifest};
use super::merge;
use super::output;
use super::{emit, emit_error};

/// The annotation client-side apply keeps the applied manifest in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// Patch attempts when the object changes under us (kubectl's `maxPatchRetry`).
const CONFLICT_RETRIES_MAX: usize = 5;

/// An object from a manifest, resolved against discovery and placed in a namespace.
pub struct Resolved {
    pub source: String,
    pub resource: ResourceType,
    pub namespace: Option<String>,
    pub name: String,
    pub object: Value,
}

impl Resolved {
    /// kubectl's words before a failed GET during apply.
    fn retrieval_context(&self) -> String {
        format!(
            "error when retrieving current configuration of:\nResource: \"{}\", \
             GroupVersionKind: \"{}, Kind={}\"\nName: \"{}\", Namespace: \"{}\"\nfrom server \
             for: \"{}\": ",
            self.resource.plural,
            self.resource.api_version(),
            self.resource.kind,
            self.name,
            self.namespace.as_deref().unwrap_or(""),
            self.source
        )
    }

    /// kubectl's words before a failed apply PATCH.
    fn patch_context(&self, patch: &Value) -> String {
        format!(
            "error when applying patch:\n{}\nto:\nResource: \"{}\", Name: \"{}\", Namespace: \
             \"{}\"\nfor: \"{}\": ",
            output::go_json_compact(patch),
            self.resource.plural,
            self.name,
            self.namespace.as_deref().unwrap_or(""),
            self.source
        )
    }
}

/// Resolves every manifest (all of them before any request changes anything).
pub async fn resolve_all(
    session: &mut Session,
    manifests: Vec<Manifest>,
) -> Result<Vec<Resolved>, Failure> {
    let mut resolved = Vec::new();
    for manifest in manifests {
        resolved.push(resolve(session, manifest).await?);
    }
    Ok(resolved)
}

async fn resolve(session: &mut Session, manifest: Manifest) -> Result<Resolved, Failure> {
    let Manifest { source, mut object } = manifest;
    let api_version = object["apiVersion"].as_str().unwrap_or("").to_string();
    let kind = object["kind"].as_str().unwrap_or("").to_string();
    let name = object["metadata"]["name"].as_str().unwrap_or("").to_string();
    let declared = object["metadata"]["namespace"].as_str().unwrap_or("").to_string();
    let resource = match session.catalog().await?.by_kind(&api_version, &kind) {
        Some(resource) => resource.clone(),
        None => {
            return Err(Failure::client(format!(
                "resource mapping not found for name: \"{name}\" namespace: \"{declared}\" from \
                 \"{source}\": no matches for kind \"{kind}\" in version \"{api_version}\"\n\
                 ensure CRDs are installed first"
            )))
        }
    };
    if name.is_empty() {
        return Err(Failure::client(format!(
            "error when retrieving current configuration of:\nResource: \"{}\", GroupVersionKind: \
             \"{api_version}, Kind={kind}\"\nfrom server for: \"{source}\": resource name may not \
             be empty",
            resource.plural
        )));
    }
    let namespace = if resource.namespaced {
        if session.namespace_explicit && !declared.is_empty() && declared != session.namespace {
            return Err(Failure::client(format!(
                "the namespace from the provided object \"{declared}\" does not match the \
                 namespace \"{}\". You must pass '--namespace={declared}' to perform this \
                 operation.",
                session.namespace
            )));
        }
        let namespace = if declared.is_empty() { session.namespace.clone() } else { declared };
        object["metadata"]["namespace"] = json!(namespace);
        Some(namespace)
    } else {
        None
    };
    Ok(Resolved { source, resource, namespace, name, object })
}

/// `create -f`.
pub async fn create(session: &mut Session, sources: &[String]) -> Result<(), Failure> {
    let objects = resolve_all(session, manifest::read(sources)?).await?;
    let mut failed = false;
    for item in objects {
        match post(session, &item, &item.object, "kubectl-create").await {
            Ok(_) => emit(&format!("{}/{} created\n", item.resource.kind_group(), item.name)),
            Err(error) => {
                let context = format!("error when creating \"{}\": ", item.source);
                emit_error(&Failure::from_kube(error, &context).to_string());
                failed = true;
            }
        }
    }
    if failed {
        return Err(Failure::reported());
    }
    Ok(())
}

async fn post(
    session: &Session,
    item: &Resolved,
    object: &Value,
    manager: &str,
) -> Result<Value, kube::Error> {
    let path = item.resource.path(item.namespace.as_deref(), None);
    let path =
        client::with_query(&path, &[("fieldManager", manager), ("fieldValidation", "Strict")]);
    let body = serde_json::to_vec(object).expect("JSON values serialize");
    session.send_json(Method::POST, &path, Some("application/json"), "application/json", body).await
}

/// The outcome of applying one object.
#[derive(Debug, PartialEq, Eq)]
enum Applied {
    Created,
    Configured,
    Unchanged,
}

/// `apply -f`.
pub async fn apply(session: &mut Session, sources: &[String]) -> Result<(), Failure> {
    let objects = resolve_all(session, manifest::read(sources)?).await?;
    let mut failed = false;
    for item in objects {
        match apply_one(session, &item).await {
            Ok(outcome) => {
                let word = match outcome {
                    Applied::Created => "created",
                    Applied::Configured => "configured",
                    Applied::Unchanged => "unchanged",
                };
                emit(&format!("{}/{} {word}\n", item.resource.kind_group(), item.name));
            }
            Err(error) => {
                emit_error(&error.to_string());
                failed = true;
            }
        }
    }
    if failed {
        return Err(Failure::reported());
    }
    Ok(())
}

/// The manifest as kubectl's `GetModifiedConfiguration` makes it: the annotation holds the
/// manifest itself (without the annotation, with an `annotations` map even if empty) as Go
/// writes JSON, plus a newline.
pub fn with_last_applied(object: &Value) -> Value {
    let mut bare = object.clone();
    if !bare["metadata"].is_object() {
        bare["metadata"] = json!({});
    }
    if !bare["metadata"]["annotations"].is_object() {
        bare["metadata"]["annotations"] = json!({});
    }
    if let Some(annotations) = bare["metadata"]["annotations"].as_object_mut() {
        annotations.remove(LAST_APPLIED);
    }
    let applied = format!("{}\n", output::go_json_compact(&bare));
    let mut modified = bare;
    modified["metadata"]["annotations"][LAST_APPLIED] = json!(applied);
    modified
}

async fn apply_one(session: &Session, item: &Resolved) -> Result<Applied, Failure> {
    let modified = with_last_applied(&item.object);
    let api = session.api(&item.resource, item.namespace.as_deref());
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = match api.get(&item.name).await {
            Ok(current) => client::object_json(&current),
            Err(error) if Failure::is_not_found(&error) => {
                let context = format!("error when creating \"{}\": ", item.source);
                post(session, item, &modified, "kubectl-client-side-apply")
                    .await
                    .map_err(|e| Failure::from_kube(e, &context))?;
                return Ok(Applied::Created);
            }
            Err(error) => return Err(Failure::from_kube(error, &item.retrieval_context())),
        };
        let original: Option<Value> = current["metadata"]["annotations"][LAST_APPLIED]
            .as_str()
            .and_then(|text| serde_json::from_str(text).ok());
        if original.is_none() && attempt == 1 {
            emit_error(&format!(
                "Warning: resource {}/{} is missing the {LAST_APPLIED} annotation which is \
                 required by podctl apply. podctl apply should only be used on resources created \
                 declaratively by either podctl create --save-config or podctl apply. The \
                 missing annotation will be patched automatically.",
                item.resource.plural, item.name
            ));
        }
        let patch = merge::three_way(&item.resource.kind, original.as_ref(), &modified, &current);
        if patch.as_object().is_some_and(|p| p.is_empty()) {
            return Ok(Applied::Unchanged);
        }
        let params = PatchParams {
            field_manager: Some("kubectl-client-side-apply".into()),
            field_validation: Some(ValidationDirective::Strict),
            ..PatchParams::default()
        };
        match api.patch(&item.name, &params, &Patch::Strategic(&patch)).await {
            Ok(_) => return Ok(Applied::Configured),
            Err(kube::Error::Api(status))
                if status.code == 409 && attempt < CONFLICT_RETRIES_MAX => {}
            Err(error) => return Err(Failure::from_kube(error, &item.patch_context(&patch))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_applied_is_the_manifest_as_go_writes_it() {
        let object = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p1", "namespace": "default", "labels": {"app": "db"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        let modified = with_last_applied(&object);
        // The exact bytes kubectl 1.32 stored for the same manifest.
        assert_eq!(
            modified["metadata"]["annotations"][LAST_APPLIED],
            "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"annotations\":{},\"labels\":\
             {\"app\":\"db\"},\"name\":\"p1\",\"namespace\":\"default\"},\"spec\":{\"containers\":\
             [{\"image\":\"busybox\",\"name\":\"c\"}]}}\n"
        );
        // Applying the result again gives the same annotation.
        assert_eq!(with_last_applied(&modified), modified);
    }
}
