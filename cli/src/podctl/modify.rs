//! Commands that change existing objects: `delete` (waiting until they are gone), `patch`,
//! `label`, `annotate` and `scale`, with kubectl's requests, field managers and messages.

use std::collections::BTreeMap;

use futures::{AsyncBufReadExt, StreamExt};
use http::Method;
use kube::api::{DeleteParams, Patch, PatchParams, PropagationPolicy};
use serde_json::{json, Map, Value};

use super::args::{DeleteArgs, MetadataArgs, PatchArgs, ScaleArgs};
use super::client::{self, Session};
use super::discovery::ResourceType;
use super::failure::Failure;
use super::targets::{self, Target};
use super::{apply, emit, emit_error, manifest};

/// One object to act on.
struct Object {
    resource: ResourceType,
    namespace: Option<String>,
    name: String,
}

/// `delete`.
pub async fn delete(session: &mut Session, args: &DeleteArgs) -> Result<(), Failure> {
    let objects = delete_targets(session, args).await?;
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    let mut deleted = Vec::new();
    let mut failed = false;
    for object in objects {
        let api = session.api(&object.resource, object.namespace.as_deref());
        match api.delete(&object.name, &params).await {
            Ok(_) => {
                emit(&format!("{} \"{}\" deleted\n", object.resource.kind_group(), object.name));
                deleted.push(object);
            }
            Err(error) if args.ignore_not_found && Failure::is_not_found(&error) => {}
            Err(error) => {
                emit_error(&Failure::from_kube(error, "").to_string());
                failed = true;
            }
        }
    }
    if args.wait {
        for object in &deleted {
            wait_until_gone(session, object).await?;
        }
    }
    if failed {
        return Err(Failure::reported());
    }
    Ok(())
}

async fn delete_targets(session: &mut Session, args: &DeleteArgs) -> Result<Vec<Object>, Failure> {
    if !args.filenames.is_empty() {
        if !args.resources.is_empty() {
            return Err(Failure::client(
                "resource(s) were provided along with a filename; use one or the other",
            ));
        }
        let resolved = apply::resolve_all(session, manifest::read(&args.filenames)?).await?;
        return Ok(resolved
            .into_iter()
            .map(|r| Object { resource: r.resource, namespace: r.namespace, name: r.name })
            .collect());
    }
    if args.resources.is_empty() {
        return Err(Failure::client(
            "You must provide one or more resources by argument or filename.",
        ));
    }
    let targets = targets::resolve(session, &args.resources).await?;
    let mut objects = Vec::new();
    for Target { resource, name } in targets {
        let namespace = session.namespace_for(&resource).map(str::to_string);
        match name {
            Some(name) => objects.push(Object { resource, namespace, name }),
            None if args.selector.is_some() || args.all => {
                let path = client::with_query(
                    &resource.path(namespace.as_deref(), None),
                    &[("labelSelector", args.selector.as_deref().unwrap_or(""))],
                );
                let list = session
                    .send_json(Method::GET, &path, None, "application/json", Vec::new())
                    .await
                    .map_err(|e| Failure::from_kube(e, ""))?;
                for item in list["items"].as_array().into_iter().flatten() {
                    let name = item["metadata"]["name"].as_str().unwrap_or("").to_string();
                    let namespace = namespace.clone();
                    objects.push(Object { resource: resource.clone(), namespace, name });
                }
            }
            None => {
                return Err(Failure::client(format!(
                    "resource(s) were provided, but no name was specified ({})",
                    resource.plural
                )))
            }
        }
    }
    Ok(objects)
}

/// kubectl's wait after delete: a list and a watch on `metadata.name` until it is gone.
async fn wait_until_gone(session: &Session, object: &Object) -> Result<(), Failure> {
    let selector = format!("metadata.name={}", object.name);
    let path = object.resource.path(object.namespace.as_deref(), None);
    let list_path = client::with_query(&path, &[("fieldSelector", &selector)]);
    let list = session
        .send_json(Method::GET, &list_path, None, "application/json", Vec::new())
        .await
        .map_err(|e| Failure::from_kube(e, ""))?;
    if list["items"].as_array().is_none_or(Vec::is_empty) {
        return Ok(());
    }
    let revision = list["metadata"]["resourceVersion"].as_str().unwrap_or("");
    let watch_path = client::with_query(
        &path,
        &[("fieldSelector", &selector), ("resourceVersion", revision), ("watch", "true")],
    );
    let stream = session
        .stream(&watch_path, "application/json")
        .await
        .map_err(|e| Failure::from_kube(e, ""))?;
    let mut lines = stream.lines();
    while let Some(line) = lines.next().await {
        let line = line.map_err(|e| Failure::client(format!("waiting for deletion: {e}")))?;
        let event: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if event["type"] == "DELETED" {
            return Ok(());
        }
    }
    Err(Failure::client(format!("the watch ended before {} was deleted", object.name)))
}

/// Resolves `TYPE NAME` / `TYPE/NAME` arguments naming exactly one object.
async fn one_object(
    session: &mut Session,
    arguments: &[String],
) -> Result<(Object, Vec<String>), Failure> {
    let (targets, rest) = targets::resolve_named(session, arguments).await?;
    let [Target { resource, name: Some(name) }] = targets.as_slice() else {
        return Err(Failure::client("exactly one object must be named"));
    };
    let namespace = session.namespace_for(resource).map(str::to_string);
    let object = Object { resource: resource.clone(), namespace, name: name.clone() };
    Ok((object, rest.to_vec()))
}

/// `patch --type strategic|merge|json -p PATCH`.
pub async fn patch(session: &mut Session, args: &PatchArgs) -> Result<(), Failure> {
    let (object, rest) = one_object(session, &args.resources).await?;
    if !rest.is_empty() {
        return Err(Failure::client(format!("unexpected arguments: {}", rest.join(" "))));
    }
    let content_type = match args.patch_type.as_str() {
        "strategic" => "application/strategic-merge-patch+json",
        "merge" => "application/merge-patch+json",
        "json" => "application/json-patch+json",
        other => {
            return Err(Failure::client(format!(
                "--type must be one of [json merge strategic], not \"{other}\""
            )))
        }
    };
    // kubectl accepts YAML patches too and sends JSON.
    let patch: Value = serde_yaml::from_str(&args.patch)
        .map_err(|e| Failure::client(format!("unable to parse \"{}\": {e}", args.patch)))?;
    let before = session
        .get_object(&object.resource, object.namespace.as_deref(), &object.name)
        .await
        .map_err(|e| Failure::from_kube(e, ""))?;
    let path = client::with_query(
        &object.resource.path(object.namespace.as_deref(), Some(&object.name)),
        &[("fieldManager", "kubectl-patch")],
    );
    let body = serde_json::to_vec(&patch).expect("JSON values serialize");
    let after = session
        .send_json(Method::PATCH, &path, Some(content_type), "application/json", body)
        .await
        .map_err(|e| Failure::from_kube(e, ""))?;
    let name = format!("{}/{}", object.resource.kind_group(), object.name);
    if before == after {
        emit(&format!("{name} patched (no change)\n"));
    } else {
        emit(&format!("{name} patched\n"));
    }
    Ok(())
}

/// Which metadata map `label` and `annotate` change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetadataField {
    Labels,
    Annotations,
}

/// Parsed `KEY=VALUE` and `KEY-` arguments.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub set: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

/// Parses `KEY=VALUE` / `KEY-` (pure).
pub fn parse_changes(arguments: &[String], field: MetadataField) -> Result<Changes, Failure> {
    let mut changes = Changes::default();
    let noun = match field {
        MetadataField::Labels => "label",
        MetadataField::Annotations => "annotation",
    };
    for argument in arguments {
        if let Some((key, value)) = argument.split_once('=') {
            if key.is_empty() || (field == MetadataField::Labels && value.len() > 63) {
                return Err(Failure::client(format!("invalid {noun} spec: {argument}")));
            }
            changes.set.insert(key.to_string(), value.to_string());
        } else if let Some(key) = argument.strip_suffix('-').filter(|k| !k.is_empty()) {
            changes.remove.push(key.to_string());
        } else {
            return Err(Failure::client(format!("invalid {noun} spec: {argument}")));
        }
    }
    if changes.set.is_empty() && changes.remove.is_empty() {
        return Err(Failure::client(format!("at least one {noun} update is required")));
    }
    for key in &changes.remove {
        if changes.set.contains_key(key) {
            return Err(Failure::client(format!(
                "can not both modify and remove the following {noun}(s) in the same command: \
                 {key}"
            )));
        }
    }
    Ok(changes)
}

/// `label` and `annotate`: a merge patch of the metadata map, kubectl's checks and wording.
pub async fn metadata(
    session: &mut Session,
    args: &MetadataArgs,
    field: MetadataField,
) -> Result<(), Failure> {
    let (object, rest) = one_object(session, &args.arguments).await?;
    let changes = parse_changes(&rest, field)?;
    let (key, manager) = match field {
        MetadataField::Labels => ("labels", "kubectl-label"),
        MetadataField::Annotations => ("annotations", "kubectl-annotate"),
    };
    let current = session
        .get_object(&object.resource, object.namespace.as_deref(), &object.name)
        .await
        .map_err(|e| Failure::from_kube(e, ""))?;
    let existing = current["metadata"][key].as_object().cloned().unwrap_or_default();
    if !args.overwrite {
        let clashes: Vec<String> = changes
            .set
            .iter()
            .filter_map(|(k, v)| {
                let old = existing.get(k)?.as_str()?;
                (old != v).then(|| format!("'{k}' already has a value ({old})"))
            })
            .collect();
        if !clashes.is_empty() {
            return Err(match field {
                MetadataField::Labels => {
                    Failure::client(format!("{}, and --overwrite is false", clashes.join(", ")))
                }
                MetadataField::Annotations => Failure::client(format!(
                    "--overwrite is false but found the following declared annotation(s): {}",
                    clashes.join(", ")
                )),
            });
        }
    }
    let mut patch_map = Map::new();
    for removed in &changes.remove {
        if existing.contains_key(removed) {
            patch_map.insert(removed.clone(), Value::Null);
        } else if field == MetadataField::Labels {
            emit(&format!("label \"{removed}\" not found.\n"));
        }
    }
    for (k, v) in &changes.set {
        if existing.get(k).and_then(Value::as_str) != Some(v.as_str()) {
            patch_map.insert(k.clone(), json!(v));
        }
    }
    let patch =
        if patch_map.is_empty() { json!({}) } else { json!({"metadata": {key: patch_map}}) };
    let params = PatchParams { field_manager: Some(manager.into()), ..PatchParams::default() };
    session
        .api(&object.resource, object.namespace.as_deref())
        .patch(&object.name, &params, &Patch::Merge(&patch))
        .await
        .map_err(|e| Failure::from_kube(e, ""))?;
    let word = match field {
        MetadataField::Annotations => "annotated",
        MetadataField::Labels if patch_map.is_empty() => "not labeled",
        MetadataField::Labels if !args.overwrite && patch_map.values().all(Value::is_null) => {
            "unlabeled"
        }
        MetadataField::Labels => "labeled",
    };
    emit(&format!("{}/{} {word}\n", object.resource.kind_group(), object.name));
    Ok(())
}

/// `scale --replicas=N`: a merge patch on the `scale` subresource.
pub async fn scale(session: &mut Session, args: &ScaleArgs) -> Result<(), Failure> {
    let targets = targets::resolve(session, &args.resources).await?;
    for Target { resource, name } in targets {
        let Some(name) = name else {
            return Err(Failure::client(format!(
                "resource(s) were provided, but no name was specified ({})",
                resource.plural
            )));
        };
        let namespace = session.namespace_for(&resource).map(str::to_string);
        let api = session.api(&resource, namespace.as_deref());
        // kubectl reads the object first and words a missing one its own way.
        api.get(&name).await.map_err(|error| match error {
            kube::Error::Api(status) if status.code == 404 => {
                Failure::client(format!("no objects passed to scale {}", status.message))
            }
            other => Failure::from_kube(other, ""),
        })?;
        let patch = json!({"spec": {"replicas": args.replicas}});
        api.patch_subresource("scale", &name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| Failure::from_kube(e, ""))?;
        emit(&format!("{}/{name} scaled\n", resource.kind_group()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn label_arguments_parse_like_kubectl() {
        let changes =
            parse_changes(&strings(&["tier=backend", "old-", "empty="]), MetadataField::Labels)
                .unwrap();
        assert_eq!(changes.set.get("tier").map(String::as_str), Some("backend"));
        assert_eq!(changes.set.get("empty").map(String::as_str), Some(""));
        assert_eq!(changes.remove, ["old"]);
        for bad in [&["tier"][..], &["=x"], &["a=1", "a-"], &[]] {
            assert!(parse_changes(&strings(bad), MetadataField::Labels).is_err(), "{bad:?}");
        }
    }
}
