//! JSON patch (RFC 6902): `add`, `remove`, `replace`, `move`, `copy` and `test` over JSON
//! pointers (RFC 6901). Operations apply in order to one document; the first failure fails
//! the whole patch, as the patch is atomic.
//!
//! Where RFC 6902 and kube-apiserver (evanphx/json-patch v4) differ, Kubernetes wins: a
//! `test` of a missing path against `null` passes. Negative array indices, an evanphx
//! extension, are not accepted.

use serde_json::{Map, Value};

use super::{PatchError, JSON_PATCH_OPERATIONS_MAX};

/// Applies the JSON patch `operations` (the parsed body) to `document`.
pub fn apply(mut document: Value, operations: Value) -> Result<Value, PatchError> {
    let Value::Array(operations) = operations else {
        return Err(PatchError::InvalidBody(
            "a JSON patch must be a JSON array of operations".to_owned(),
        ));
    };
    if operations.len() > JSON_PATCH_OPERATIONS_MAX {
        return Err(PatchError::TooManyOperations {
            count: operations.len(),
            max: JSON_PATCH_OPERATIONS_MAX,
        });
    }
    for (index, operation) in operations.into_iter().enumerate() {
        let Value::Object(operation) = operation else {
            return Err(failed(format!("operation {index} is not a JSON object")));
        };
        apply_operation(&mut document, operation)?;
    }
    Ok(document)
}

fn apply_operation(
    document: &mut Value,
    mut operation: Map<String, Value>,
) -> Result<(), PatchError> {
    let op = match operation.get("op") {
        Some(Value::String(op)) => op.clone(),
        Some(other) => return Err(failed(format!("operation has a non-string op: {other}"))),
        None => return Err(failed("operation is missing \"op\"".to_owned())),
    };
    let path = string_member(&operation, &op, "path")?;
    let tokens = parse_pointer(&path)?;
    match op.as_str() {
        "add" => {
            let value = value_member(&mut operation, &op)?;
            add(document, &tokens, value, &path)
        }
        "remove" => remove(document, &tokens, &path).map(drop),
        "replace" => {
            let value = value_member(&mut operation, &op)?;
            let target = lookup_mut(document, &tokens).ok_or_else(|| {
                failed(format!("replace operation does not apply: doc is missing path: {path:?}"))
            })?;
            *target = value;
            Ok(())
        }
        "move" => {
            let from = string_member(&operation, &op, "from")?;
            let from_tokens = parse_pointer(&from)?;
            if from_tokens == tokens {
                return lookup(document, &tokens).map(drop).ok_or_else(|| missing("move", &from));
            }
            if tokens.starts_with(&from_tokens) {
                return Err(failed(format!(
                    "move operation does not apply: {path:?} is inside {from:?}"
                )));
            }
            let value = remove(document, &from_tokens, &from)?;
            add(document, &tokens, value, &path)
        }
        "copy" => {
            let from = string_member(&operation, &op, "from")?;
            let from_tokens = parse_pointer(&from)?;
            let value =
                lookup(document, &from_tokens).cloned().ok_or_else(|| missing("copy", &from))?;
            add(document, &tokens, value, &path)
        }
        "test" => {
            let expected = value_member(&mut operation, &op)?;
            let passed = match lookup(document, &tokens) {
                Some(actual) => json_equal(actual, &expected),
                None => expected.is_null(),
            };
            if passed {
                Ok(())
            } else {
                Err(PatchError::TestFailed { path })
            }
        }
        other => Err(failed(format!("unknown JSON patch operation {other:?}"))),
    }
}

fn failed(message: String) -> PatchError {
    PatchError::OperationFailed(message)
}

fn missing(op: &str, path: &str) -> PatchError {
    failed(format!("{op} operation does not apply: doc is missing path: {path:?}"))
}

fn string_member(
    operation: &Map<String, Value>,
    op: &str,
    name: &str,
) -> Result<String, PatchError> {
    match operation.get(name) {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(_) => Err(failed(format!("{op} operation has a non-string {name:?}"))),
        None => Err(failed(format!("{op} operation is missing {name:?}"))),
    }
}

/// The operation's `value`, which must be present (`null` is a value).
fn value_member(operation: &mut Map<String, Value>, op: &str) -> Result<Value, PatchError> {
    operation.remove("value").ok_or_else(|| failed(format!("{op} operation is missing \"value\"")))
}

/// The reference tokens of a JSON pointer, unescaped (`~1` is `/`, `~0` is `~`).
fn parse_pointer(pointer: &str) -> Result<Vec<String>, PatchError> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(failed(format!("JSON pointer {pointer:?} must be empty or start with '/'")));
    };
    rest.split('/').map(|token| unescape_token(token, pointer)).collect()
}

fn unescape_token(token: &str, pointer: &str) -> Result<String, PatchError> {
    let mut unescaped = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        if c != '~' {
            unescaped.push(c);
            continue;
        }
        match chars.next() {
            Some('0') => unescaped.push('~'),
            Some('1') => unescaped.push('/'),
            _ => {
                return Err(failed(format!(
                    "JSON pointer {pointer:?} has an invalid escape: '~' must be followed by \
                     '0' or '1'"
                )))
            }
        }
    }
    Ok(unescaped)
}

/// An array index token: decimal digits without leading zeros.
fn parse_index(token: &str) -> Option<usize> {
    let digits_only = !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    token.parse().ok()
}

fn lookup<'a>(document: &'a Value, tokens: &[String]) -> Option<&'a Value> {
    tokens.iter().try_fold(document, |node, token| match node {
        Value::Object(map) => map.get(token),
        Value::Array(items) => items.get(parse_index(token)?),
        _ => None,
    })
}

fn lookup_mut<'a>(document: &'a mut Value, tokens: &[String]) -> Option<&'a mut Value> {
    tokens.iter().try_fold(document, |node, token| match node {
        Value::Object(map) => map.get_mut(token),
        Value::Array(items) => items.get_mut(parse_index(token)?),
        _ => None,
    })
}

fn add(
    document: &mut Value,
    tokens: &[String],
    value: Value,
    path: &str,
) -> Result<(), PatchError> {
    let Some((last, parent_tokens)) = tokens.split_last() else {
        *document = value;
        return Ok(());
    };
    let parent = lookup_mut(document, parent_tokens).ok_or_else(|| missing("add", path))?;
    match parent {
        Value::Object(map) => {
            map.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(items) => {
            let index = if last == "-" { Some(items.len()) } else { parse_index(last) };
            match index {
                Some(index) if index <= items.len() => {
                    items.insert(index, value);
                    Ok(())
                }
                _ => Err(failed(format!(
                    "add operation does not apply: {path:?}: index {last:?} is out of range for \
                     an array of {} items",
                    items.len()
                ))),
            }
        }
        _ => Err(failed(format!(
            "add operation does not apply: the parent of {path:?} is not an object or array"
        ))),
    }
}

fn remove(document: &mut Value, tokens: &[String], path: &str) -> Result<Value, PatchError> {
    let Some((last, parent_tokens)) = tokens.split_last() else {
        return Err(failed(
            "remove operation does not apply: cannot remove the whole document".to_owned(),
        ));
    };
    let parent = lookup_mut(document, parent_tokens).ok_or_else(|| missing("remove", path))?;
    let removed = match parent {
        Value::Object(map) => map.remove(last),
        Value::Array(items) => match parse_index(last) {
            Some(index) if index < items.len() => Some(items.remove(index)),
            _ => None,
        },
        _ => None,
    };
    removed.ok_or_else(|| missing("remove", path))
}

/// JSON equality where numbers compare by value (`1` equals `1.0`), as RFC 6902 `test` asks.
fn json_equal(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(l), Value::Number(r)) => {
            if l.is_f64() || r.is_f64() {
                l.as_f64() == r.as_f64()
            } else {
                l == r
            }
        }
        (Value::Array(l), Value::Array(r)) => {
            l.len() == r.len() && l.iter().zip(r).all(|(l, r)| json_equal(l, r))
        }
        (Value::Object(l), Value::Object(r)) => {
            l.len() == r.len()
                && l.iter().all(|(key, l)| r.get(key).is_some_and(|r| json_equal(l, r)))
        }
        _ => left == right,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::apply;
    use crate::apiserver::patch::PatchError;

    fn check(document: Value, operations: Value, expected: Value) {
        let patched = apply(document.clone(), operations.clone());
        assert_eq!(patched, Ok(expected), "{document} with {operations}");
    }

    fn check_error(document: Value, operations: Value, expected: &str) {
        let error = apply(document, operations).expect_err("the patch must fail");
        assert_eq!(error.to_string(), expected);
    }

    #[test]
    fn add_inserts_into_objects_and_arrays() {
        check(
            json!({"a": 1}),
            json!([{"op": "add", "path": "/b", "value": 2}]),
            json!({"a": 1, "b": 2}),
        );
        check(json!({"a": 1}), json!([{"op": "add", "path": "/a", "value": 5}]), json!({"a": 5}));
        check(
            json!({"l": [1, 3]}),
            json!([
                {"op": "add", "path": "/l/1", "value": 2},
                {"op": "add", "path": "/l/-", "value": 4}
            ]),
            json!({"l": [1, 2, 3, 4]}),
        );
        check(
            json!({"l": []}),
            json!([{"op": "add", "path": "/l/0", "value": "x"}]),
            json!({"l": ["x"]}),
        );
        check(
            json!({"a": 1}),
            json!([{"op": "add", "path": "", "value": {"b": 2}}]),
            json!({"b": 2}),
        );
        check(json!({}), json!([{"op": "add", "path": "/n", "value": null}]), json!({"n": null}));
    }

    #[test]
    fn pointer_escapes_name_slashes_and_tildes() {
        // The annotation `example.com/owner` is addressed as `example.com~1owner`.
        check(
            json!({"metadata": {"annotations": {}}}),
            json!([{"op": "add", "path": "/metadata/annotations/example.com~1owner", "value": "me"},
                   {"op": "add", "path": "/metadata/annotations/a~0b", "value": "t"}]),
            json!({"metadata": {"annotations": {"example.com/owner": "me", "a~b": "t"}}}),
        );
        check(
            json!({"metadata": {"labels": {"app.kubernetes.io/name": "web", "x": "y"}}}),
            json!([{"op": "remove", "path": "/metadata/labels/app.kubernetes.io~1name"}]),
            json!({"metadata": {"labels": {"x": "y"}}}),
        );
    }

    #[test]
    fn remove_replace_move_copy() {
        check(json!({"a": 1, "b": 2}), json!([{"op": "remove", "path": "/a"}]), json!({"b": 2}));
        check(
            json!({"l": [1, 2, 3]}),
            json!([{"op": "remove", "path": "/l/1"}]),
            json!({"l": [1, 3]}),
        );
        check(
            json!({"spec": {"replicas": 1}}),
            json!([{"op": "replace", "path": "/spec/replicas", "value": 3}]),
            json!({"spec": {"replicas": 3}}),
        );
        check(
            json!({"a": {"x": 1}, "b": {}}),
            json!([{"op": "move", "from": "/a/x", "path": "/b/y"}]),
            json!({"a": {}, "b": {"y": 1}}),
        );
        check(
            json!({"l": ["a", "b", "c"]}),
            json!([{"op": "move", "from": "/l/0", "path": "/l/2"}]),
            json!({"l": ["b", "c", "a"]}),
        );
        check(
            json!({"a": {"x": [1]}}),
            json!([{"op": "copy", "from": "/a/x", "path": "/b"}]),
            json!({"a": {"x": [1]}, "b": [1]}),
        );
        check(
            json!({"a": 1}),
            json!([{"op": "move", "from": "/a", "path": "/a"}]),
            json!({"a": 1}),
        );
    }

    #[test]
    fn kubectl_patch_type_json_on_a_deployment() {
        let deployment = json!({
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "app", "image": "nginx:1.26", "args": ["-v"]}
            ]}}}
        });
        check(
            deployment,
            json!([
                {"op": "test", "path": "/spec/replicas", "value": 2},
                {"op": "replace", "path": "/spec/template/spec/containers/0/image",
                 "value": "nginx:1.27"},
                {"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "-q"},
                {"op": "remove", "path": "/spec/replicas"}
            ]),
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "app", "image": "nginx:1.27", "args": ["-v", "-q"]}
            ]}}}}),
        );
    }

    #[test]
    fn test_compares_numbers_by_value_and_passes_null_for_missing_paths() {
        check(
            json!({"a": 1}),
            json!([{"op": "test", "path": "/a", "value": 1.0}]),
            json!({"a": 1}),
        );
        check(
            json!({"a": {"b": [1, "x"]}}),
            json!([{"op": "test", "path": "/a", "value": {"b": [1, "x"]}}]),
            json!({"a": {"b": [1, "x"]}}),
        );
        check(json!({}), json!([{"op": "test", "path": "/gone", "value": null}]), json!({}));
    }

    #[test]
    fn a_failing_test_fails_the_whole_patch() {
        let error = apply(
            json!({"spec": {"replicas": 2}}),
            json!([{"op": "replace", "path": "/spec/replicas", "value": 5},
                   {"op": "test", "path": "/spec/replicas", "value": 2}]),
        );
        assert_eq!(error, Err(PatchError::TestFailed { path: "/spec/replicas".to_owned() }));
        assert_eq!(
            error.expect_err("failed").to_string(),
            "test operation failed: the value at \"/spec/replicas\" is not the expected value"
        );
    }

    #[test]
    fn operations_on_missing_paths_fail() {
        check_error(
            json!({"a": 1}),
            json!([{"op": "remove", "path": "/b"}]),
            "remove operation does not apply: doc is missing path: \"/b\"",
        );
        check_error(
            json!({"a": 1}),
            json!([{"op": "replace", "path": "/b", "value": 1}]),
            "replace operation does not apply: doc is missing path: \"/b\"",
        );
        check_error(
            json!({"a": 1}),
            json!([{"op": "add", "path": "/x/y", "value": 1}]),
            "add operation does not apply: doc is missing path: \"/x/y\"",
        );
        check_error(
            json!({"l": [1]}),
            json!([{"op": "add", "path": "/l/3", "value": 1}]),
            "add operation does not apply: \"/l/3\": index \"3\" is out of range for an array \
             of 1 items",
        );
        check_error(
            json!({"l": [1]}),
            json!([{"op": "remove", "path": "/l/-"}]),
            "remove operation does not apply: doc is missing path: \"/l/-\"",
        );
        check_error(
            json!({"l": [1, 2]}),
            json!([{"op": "replace", "path": "/l/01", "value": 0}]),
            "replace operation does not apply: doc is missing path: \"/l/01\"",
        );
        check_error(
            json!({"a": {}}),
            json!([{"op": "move", "from": "/a", "path": "/a/b"}]),
            "move operation does not apply: \"/a/b\" is inside \"/a\"",
        );
        check_error(
            json!({}),
            json!([{"op": "copy", "from": "/nope", "path": "/b"}]),
            "copy operation does not apply: doc is missing path: \"/nope\"",
        );
    }

    #[test]
    fn malformed_operations_are_rejected() {
        check_error(
            json!({}),
            json!({"op": "add"}),
            "a JSON patch must be a JSON array of operations",
        );
        check_error(
            json!({}),
            json!([{"op": "frob", "path": "/a"}]),
            "unknown JSON patch operation \"frob\"",
        );
        check_error(json!({}), json!([{"path": "/a"}]), "operation is missing \"op\"");
        check_error(
            json!({}),
            json!([{"op": "add", "value": 1}]),
            "add operation is missing \"path\"",
        );
        check_error(
            json!({}),
            json!([{"op": "add", "path": "/a"}]),
            "add operation is missing \"value\"",
        );
        check_error(
            json!({}),
            json!([{"op": "move", "path": "/a"}]),
            "move operation is missing \"from\"",
        );
        check_error(json!({}), json!(["add"]), "operation 0 is not a JSON object");
        check_error(
            json!({}),
            json!([{"op": "add", "path": "a", "value": 1}]),
            "JSON pointer \"a\" must be empty or start with '/'",
        );
        check_error(
            json!({}),
            json!([{"op": "add", "path": "/a~2", "value": 1}]),
            "JSON pointer \"/a~2\" has an invalid escape: '~' must be followed by '0' or '1'",
        );
    }

    #[test]
    fn too_many_operations_are_refused() {
        let operations: Vec<Value> = (0..=super::JSON_PATCH_OPERATIONS_MAX)
            .map(|_| json!({"op": "test", "path": "", "value": {}}))
            .collect();
        let error = apply(json!({}), Value::Array(operations)).expect_err("too many");
        assert_eq!(error.status_code(), 413);
    }
}
