//! Client-side apply's three-way strategic merge patch, as kubectl's
//! `CreateThreeWayMergePatch` computes it: changes and additions from the live object to the
//! new manifest, plus deletions of what the last applied manifest had and the new one drops.
//! Lists of objects with a merge key (containers by `name`, ports by `containerPort`, ...)
//! are merged item by item, with `$patch: delete` and `$setElementOrder`; other lists are
//! replaced whole, as the strategic merge rules of the built-in kinds say.

use serde_json::{json, Map, Value};

/// The patch that turns `current` into `modified`, deleting what `original` (the last
/// applied manifest) had and `modified` no longer has. `{}` means nothing to do.
pub fn three_way(kind: &str, original: Option<&Value>, modified: &Value, current: &Value) -> Value {
    let empty = Map::new();
    let as_map = |v: Option<&Value>| v.and_then(Value::as_object).cloned().unwrap_or_default();
    let modified_map = as_map(Some(modified));
    let mut path = Vec::new();
    let delta = diff_maps(kind, &mut path, &as_map(Some(current)), &modified_map, Mode::Delta);
    let deletions = match original.and_then(Value::as_object) {
        Some(original) => diff_maps(kind, &mut path, original, &modified_map, Mode::Deletions),
        None => empty,
    };
    Value::Object(merge_patches(kind, &mut path, deletions, delta))
}

/// Which half of the three-way diff is being computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Additions and changes only (live object → new manifest).
    Delta,
    /// Deletions only (last applied → new manifest).
    Deletions,
}

/// The merge key of the list at `path` (field names from the object's root), from the
/// built-in types' `patchMergeKey` tags: the API server's own table, so the patches podctl
/// computes are the ones the server merges by.
fn merge_key(kind: &str, path: &[String]) -> Option<&'static str> {
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    control_plane::apiserver::patch::strategy_for(kind, &path)?.merge_key
}

/// Whether every item of the list is an object carrying the merge key.
fn keyed<'a>(items: &'a [Value], key: &str) -> Option<Vec<(&'a Value, &'a Map<String, Value>)>> {
    items
        .iter()
        .map(|item| {
            let object = item.as_object()?;
            Some((object.get(key)?, object))
        })
        .collect()
}

fn diff_maps(
    kind: &str,
    path: &mut Vec<String>,
    from: &Map<String, Value>,
    to: &Map<String, Value>,
    mode: Mode,
) -> Map<String, Value> {
    let mut patch = Map::new();
    if mode == Mode::Deletions {
        for key in from.keys().filter(|k| !to.contains_key(*k)) {
            patch.insert(key.clone(), Value::Null);
        }
    }
    for (key, to_value) in to {
        let Some(from_value) = from.get(key) else {
            if mode == Mode::Delta {
                patch.insert(key.clone(), to_value.clone());
            }
            continue;
        };
        if from_value == to_value {
            continue;
        }
        path.push(key.clone());
        match (from_value, to_value) {
            (Value::Object(from_map), Value::Object(to_map)) => {
                let sub = diff_maps(kind, path, from_map, to_map, mode);
                if !sub.is_empty() {
                    patch.insert(key.clone(), Value::Object(sub));
                }
            }
            (Value::Array(from_items), Value::Array(to_items)) => {
                let merged = merge_key(kind, path).and_then(|merge_key| {
                    let from_keyed = keyed(from_items, merge_key)?;
                    let to_keyed = keyed(to_items, merge_key)?;
                    Some(diff_keyed(kind, path, merge_key, &from_keyed, &to_keyed, mode))
                });
                match merged {
                    Some((items, order)) if !items.is_empty() => {
                        if let Some(order) = order {
                            patch.insert(format!("$setElementOrder/{key}"), order);
                        }
                        patch.insert(key.clone(), Value::Array(items));
                    }
                    Some(_) => {}
                    None if mode == Mode::Delta => {
                        patch.insert(key.clone(), to_value.clone());
                    }
                    None => {}
                }
            }
            _ if mode == Mode::Delta => {
                patch.insert(key.clone(), to_value.clone());
            }
            _ => {}
        }
        path.pop();
    }
    patch
}

type Keyed<'a> = [(&'a Value, &'a Map<String, Value>)];

fn find<'a>(list: &Keyed<'a>, wanted: &Value) -> Option<&'a Map<String, Value>> {
    list.iter().find(|(k, _)| *k == wanted).map(|(_, object)| *object)
}

/// Item-by-item diff of a keyed list; returns the patch items and, for the delta, the
/// `$setElementOrder` list (the new manifest's order).
fn diff_keyed(
    kind: &str,
    path: &mut Vec<String>,
    merge_key: &str,
    from: &Keyed<'_>,
    to: &Keyed<'_>,
    mode: Mode,
) -> (Vec<Value>, Option<Value>) {
    let mut items = Vec::new();
    match mode {
        Mode::Delta => {
            for (key_value, to_item) in to {
                match find(from, key_value) {
                    None => items.push(Value::Object((*to_item).clone())),
                    Some(from_item) if from_item == *to_item => {}
                    Some(from_item) => {
                        let mut sub = diff_maps(kind, path, from_item, to_item, mode);
                        if !sub.is_empty() {
                            sub.insert(merge_key.to_string(), (*key_value).clone());
                            items.push(Value::Object(sub));
                        }
                    }
                }
            }
            let order = to.iter().map(|(k, _)| json!({ merge_key: k })).collect();
            (items, Some(Value::Array(order)))
        }
        Mode::Deletions => {
            for (key_value, from_item) in from {
                match find(to, key_value) {
                    None => items.push(json!({ merge_key: key_value, "$patch": "delete" })),
                    Some(to_item) => {
                        let mut sub = diff_maps(kind, path, from_item, to_item, mode);
                        if !sub.is_empty() {
                            sub.insert(merge_key.to_string(), (*key_value).clone());
                            items.push(Value::Object(sub));
                        }
                    }
                }
            }
            (items, None)
        }
    }
}

/// Combines the deletions and the delta into one patch.
fn merge_patches(
    kind: &str,
    path: &mut Vec<String>,
    deletions: Map<String, Value>,
    delta: Map<String, Value>,
) -> Map<String, Value> {
    let mut result = deletions;
    for (key, delta_value) in delta {
        let Some(existing) = result.remove(&key) else {
            result.insert(key, delta_value);
            continue;
        };
        path.push(key.clone());
        let combined = match (existing, delta_value) {
            (Value::Object(a), Value::Object(b)) => Value::Object(merge_patches(kind, path, a, b)),
            (Value::Array(mut a), Value::Array(b)) => {
                match merge_key(kind, path) {
                    Some(merge_key) => {
                        for item in b {
                            let position = a.iter().position(|x| {
                                x.get(merge_key).is_some()
                                    && x.get(merge_key) == item.get(merge_key)
                                    && x.get("$patch").is_none()
                            });
                            match (position, item) {
                                (Some(i), Value::Object(item)) => {
                                    let Value::Object(old) = a.remove(i) else {
                                        unreachable!("positions are found among objects")
                                    };
                                    let merged = merge_patches(kind, path, old, item);
                                    a.insert(i, Value::Object(merged));
                                }
                                (_, item) => a.push(item),
                            }
                        }
                    }
                    None => a.extend(b),
                }
                Value::Array(a)
            }
            (_, delta_value) => delta_value,
        };
        path.pop();
        result.insert(key, combined);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(image: &str, env: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "annotations": {"last": image}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "nginx", "image": image, "env": env}]}}}})
    }

    #[test]
    fn unchanged_manifest_gives_an_empty_patch() {
        let applied = deployment("nginx:1.25", json!([{"name": "A", "value": "1"}]));
        let mut live = applied.clone();
        // Server defaults and status are not the manifest's business.
        live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = json!("Always");
        live["status"] = json!({"replicas": 2});
        assert_eq!(three_way("Deployment", Some(&applied), &applied, &live), json!({}));
    }

    #[test]
    fn changed_container_is_merged_by_name_like_kubectl() {
        let original = deployment("nginx:1.25", json!([{"name": "A", "value": "1"}]));
        let modified = deployment("nginx:1.26", json!([{"name": "A", "value": "2"}]));
        let patch = three_way("Deployment", Some(&original), &modified, &original);
        assert_eq!(
            patch,
            json!({"metadata": {"annotations": {"last": "nginx:1.26"}},
                "spec": {"template": {"spec": {
                    "$setElementOrder/containers": [{"name": "nginx"}],
                    "containers": [{"name": "nginx", "image": "nginx:1.26",
                        "$setElementOrder/env": [{"name": "A"}],
                        "env": [{"name": "A", "value": "2"}]}]}}}})
        );
    }

    #[test]
    fn fields_and_items_dropped_from_the_manifest_are_deleted() {
        let original = json!({"kind": "Pod", "metadata": {"labels": {"a": "1", "b": "2"}},
            "spec": {"containers": [{"name": "x", "image": "i"}, {"name": "y", "image": "i",
                "args": ["1"]}]}});
        let modified = json!({"kind": "Pod", "metadata": {"labels": {"a": "1"}},
            "spec": {"containers": [{"name": "x", "image": "i"}]}});
        let mut current = original.clone();
        current["metadata"]["labels"]["added-by-someone"] = json!("kept");
        let patch = three_way("Pod", Some(&original), &modified, &current);
        assert_eq!(
            patch,
            json!({"metadata": {"labels": {"b": null}},
                "spec": {"containers": [{"name": "y", "$patch": "delete"}]}})
        );
    }

    #[test]
    fn lists_without_merge_keys_are_replaced() {
        let original = json!({"spec": {"containers": [{"name": "x", "args": ["a", "b"]}]}});
        let modified = json!({"spec": {"containers": [{"name": "x", "args": ["b"]}]}});
        let patch = three_way("Pod", Some(&original), &modified, &original);
        assert_eq!(patch["spec"]["containers"], json!([{"name": "x", "args": ["b"]}]), "{patch}");
        let service = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}]}});
        let changed = json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}});
        let patch = three_way("Service", Some(&service), &changed, &service);
        assert_eq!(patch["spec"]["ports"], json!([{"port": 80, "targetPort": 9090}]));
        assert_eq!(patch["spec"]["$setElementOrder/ports"], json!([{"port": 80}]));
    }
}
