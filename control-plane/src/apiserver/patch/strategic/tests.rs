//! Directive-level cases of the strategic merge: each `$` directive, list ordering with
//! server-only items, and the malformed patches Kubernetes refuses.

use serde_json::{json, Value};

use super::merge_map;
use crate::apiserver::patch::schema::TypeNode;
use crate::apiserver::patch::PatchError;

fn merge(kind: &str, original: Value, patch: Value) -> Result<Value, PatchError> {
    let (Value::Object(original), Value::Object(patch)) = (original, patch) else {
        panic!("test objects must be JSON objects");
    };
    merge_map(original, patch, TypeNode::for_kind(kind)).map(Value::Object)
}

/// Merges into a Pod (whose `metadata.finalizers` merges as a set and whose
/// `spec.containers` merges on `name`) and compares with `expected`.
fn check(original: Value, patch: Value, expected: Value) {
    let result = merge("Pod", original.clone(), patch.clone());
    assert_eq!(result, Ok(expected), "{original} + {patch}");
}

fn check_error(original: Value, patch: Value, expected: &str) -> PatchError {
    let error = merge("Pod", original, patch).expect_err("the patch must be refused");
    assert_eq!(error.to_string(), expected);
    error
}

fn finalizers(items: Value) -> Value {
    json!({"metadata": {"finalizers": items}})
}

fn containers(items: Value) -> Value {
    json!({"spec": {"containers": items}})
}

#[test]
fn maps_merge_recursively_and_null_deletes() {
    check(
        json!({"a": {"b": 1, "c": 2}, "d": 3}),
        json!({"a": {"b": null, "e": 4}, "f": 5, "d": null}),
        json!({"a": {"c": 2, "e": 4}, "f": 5}),
    );
    check(json!({"a": 1}), json!({"a": {"b": 2}}), json!({"a": {"b": 2}}));
    check(json!({"a": {"b": 2}}), json!({"a": [1]}), json!({"a": [1]}));
    check(json!({}), json!({"a": {"b": null, "c": {"d": null}}}), json!({"a": {"c": {}}}));
}

#[test]
fn patch_replace_in_a_map_replaces_it() {
    check(
        json!({"spec": {"nodeSelector": {"a": "1", "b": "2"}}}),
        json!({"spec": {"nodeSelector": {"$patch": "replace", "c": "3"}}}),
        json!({"spec": {"nodeSelector": {"c": "3"}}}),
    );
    // At the top the whole object is replaced.
    check(json!({"a": 1, "b": 2}), json!({"$patch": "replace", "c": 3}), json!({"c": 3}));
}

#[test]
fn patch_delete_in_a_map_empties_it() {
    check(
        json!({"metadata": {"labels": {"a": "1"}, "name": "x"}}),
        json!({"metadata": {"labels": {"$patch": "delete"}}}),
        json!({"metadata": {"labels": {}, "name": "x"}}),
    );
    check(
        json!({}),
        json!({"spec": {"affinity": {"$patch": "delete"}}}),
        json!({"spec": {"affinity": {}}}),
    );
}

#[test]
fn patch_replace_as_a_list_item_replaces_the_list() {
    check(
        containers(json!([{"name": "a", "image": "a"}, {"name": "b"}])),
        containers(json!([{"name": "c", "image": "c"}, {"$patch": "replace"}])),
        containers(json!([{"name": "c", "image": "c"}])),
    );
    // On a list the object lacks, directive items vanish.
    check(
        json!({}),
        containers(
            json!([{"$patch": "replace"}, {"name": "c"}, {"name": "d", "$patch": "delete"}]),
        ),
        containers(json!([{"name": "c"}])),
    );
}

#[test]
fn patch_delete_as_a_list_item_removes_by_merge_key() {
    check(
        containers(json!([{"name": "a"}, {"name": "b"}, {"name": "c"}])),
        containers(json!([{"name": "b", "$patch": "delete"}, {"name": "zz", "$patch": "delete"}])),
        containers(json!([{"name": "a"}, {"name": "c"}])),
    );
}

#[test]
fn an_empty_patch_list_leaves_a_merging_list_alone() {
    check(
        containers(json!([{"name": "a"}])),
        containers(json!([])),
        containers(json!([{"name": "a"}])),
    );
    check(finalizers(json!(["a"])), finalizers(json!([])), finalizers(json!(["a"])));
    // ...and null deletes it.
    check(
        containers(json!([{"name": "a"}])),
        json!({"spec": {"containers": null}}),
        json!({"spec": {}}),
    );
}

#[test]
fn lists_of_objects_merge_and_keep_server_order() {
    // Patch items the server lacks come before the server's remaining items, matched items
    // keep the server's relative order (Go's mergeSortedSlice).
    check(
        containers(json!([{"name": "a"}, {"name": "b", "image": "1"}, {"name": "c"}])),
        containers(json!([{"name": "b", "image": "2"}, {"name": "d"}])),
        containers(
            json!([{"name": "a"}, {"name": "b", "image": "2"}, {"name": "d"}, {"name": "c"}]),
        ),
    );
}

#[test]
fn set_element_order_with_server_only_items() {
    let cases = [
        (
            json!(["1", "2", "9", "3", "4"]),
            json!(["2", "1", "4", "3"]),
            json!(["2", "1", "9", "4", "3"]),
        ),
        (
            json!(["1", "2", "7", "9", "8", "3", "4"]),
            json!(["2", "1", "4", "3"]),
            json!(["2", "1", "7", "9", "8", "4", "3"]),
        ),
        (
            json!(["1", "3", "4", "2", "9"]),
            json!(["4", "2", "3", "1"]),
            json!(["4", "2", "3", "1", "9"]),
        ),
    ];
    for (current, order, expected) in cases {
        check(
            finalizers(current),
            json!({"metadata": {"$setElementOrder/finalizers": order}}),
            finalizers(expected),
        );
    }
}

#[test]
fn set_element_order_with_additions_and_deletions() {
    check(
        finalizers(json!(["1", "2", "3"])),
        json!({"metadata": {
            "$setElementOrder/finalizers": ["4", "2", "1"],
            "finalizers": ["4"],
            "$deleteFromPrimitiveList/finalizers": ["3"]
        }}),
        finalizers(json!(["4", "2", "1"])),
    );
    check(
        finalizers(json!(["1", "2", "4"])),
        json!({"metadata": {"$setElementOrder/finalizers": ["1", "2", "3"], "finalizers": ["3"]}}),
        finalizers(json!(["1", "2", "3", "4"])),
    );
}

#[test]
fn set_element_order_keeps_duplicates_together() {
    check(
        containers(json!([
            {"name": "1"}, {"name": "2", "v": "a"}, {"name": "3"},
            {"name": "2", "v": "b"}, {"name": "4"}
        ])),
        json!({"spec": {"$setElementOrder/containers": [
            {"name": "2"}, {"name": "1"}, {"name": "4"}, {"name": "3"}, {"name": "2"}
        ]}}),
        containers(json!([
            {"name": "2", "v": "a"}, {"name": "2", "v": "b"},
            {"name": "1"}, {"name": "4"}, {"name": "3"}
        ])),
    );
}

#[test]
fn set_element_order_for_a_list_the_object_lacks() {
    check(
        json!({"spec": {}}),
        json!({"spec": {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
            "containers": [{"name": "b"}, {"name": "a"}, {"name": "x", "$patch": "delete"}]
        }}),
        containers(json!([{"name": "b"}, {"name": "a"}])),
    );
}

#[test]
fn delete_from_primitive_list() {
    check(
        finalizers(json!(["a", "b", "c", "b"])),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "zz"]}}),
        finalizers(json!(["a", "c"])),
    );
    // Deleting from a list the object lacks changes nothing.
    check(
        json!({"metadata": {"name": "x"}}),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}),
        json!({"metadata": {"name": "x"}}),
    );
}

#[test]
fn retain_keys_clears_unlisted_fields() {
    check(
        json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
        json!({"spec": {"strategy": {"type": "Recreate"}}}),
    );
    check(
        json!({"m": {"name": "foo", "value": "bar", "other": "a"}}),
        json!({"m": {"$retainKeys": ["name", "value"]}}),
        json!({"m": {"name": "foo", "value": "bar"}}),
    );
    check(
        json!({"m": {"name": "foo", "value": "bar"}}),
        json!({"m": {"$retainKeys": ["name"], "value": null}}),
        json!({"m": {"name": "foo"}}),
    );
}

#[test]
fn malformed_directives_are_bad_requests() {
    let error = check_error(
        json!({"m": {"a": 1}}),
        json!({"m": {"$patch": "frob"}}),
        "unknown patch type: \"frob\" in map: {}",
    );
    assert_eq!(error.status_code(), 400);
    check_error(
        json!({"m": {}}),
        json!({"m": {"$retainKeys": ["a"], "b": 1}}),
        "invalid patch format of retainKeys: \"b\" is set but not in $retainKeys",
    );
    check_error(
        json!({"m": {}}),
        json!({"m": {"$retainKeys": "a"}}),
        "invalid patch format of retainKeys: $retainKeys must be a list",
    );
    check_error(
        finalizers(json!(["a"])),
        json!({"metadata": {"$setElementOrder/finalizers": "a"}}),
        "invalid patch format of setElementOrder list: \"$setElementOrder/finalizers\" is not \
         a list",
    );
    check_error(
        finalizers(json!(["a"])),
        json!({"metadata": {"$setElementOrderfinalizers": ["a"]}}),
        "invalid patch format of setElementOrder list: \"$setElementOrderfinalizers\" has no \
         field name",
    );
    check_error(
        finalizers(json!(["a"])),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}),
        "invalid patch format of primitive list: \"$deleteFromPrimitiveList/finalizers\" must \
         be $deleteFromPrimitiveList/<field> with a list value",
    );
    check_error(
        containers(json!([{"name": "a"}])),
        containers(json!([{"name": "a", "$patch": "merge"}])),
        "merging lists cannot yet be specified in the patch",
    );
    check_error(
        finalizers(json!(["a", "b"])),
        json!({"metadata": {"$setElementOrder/finalizers": ["a"], "finalizers": ["b"]}}),
        "the order in patch list [\"b\"] doesn't match $setElementOrder list [\"a\"]",
    );
}

#[test]
fn lists_that_cannot_merge_are_unprocessable() {
    let error = check_error(
        containers(json!([{"name": "a"}])),
        containers(json!([{"image": "x"}])),
        "map: {\"image\":\"x\"} does not contain declared merge key: name",
    );
    assert_eq!(error.status_code(), 422);
    check_error(
        containers(json!([{"name": "a"}])),
        containers(json!([{"$patch": "delete"}])),
        "map: {\"$patch\":\"delete\"} does not contain declared merge key: name",
    );
    check_error(
        finalizers(json!([["a"]])),
        finalizers(json!([["b"]])),
        "lists of lists are not supported",
    );
    check_error(
        finalizers(json!(["a"])),
        finalizers(json!([1])),
        "list element types are not identical: [\"a\"] and [1]",
    );
    // A server item without the merge key cannot be ordered.
    check_error(
        containers(json!([{"image": "a"}])),
        containers(json!([{"name": "b"}])),
        "map: {\"image\":\"a\"} does not contain declared merge key: name",
    );
}

#[test]
fn untagged_lists_are_replaced_and_unknown_kinds_only_know_metadata() {
    check(
        json!({"spec": {"containers": [{"name": "a", "args": ["1", "2"]}]}}),
        json!({"spec": {"containers": [{"name": "a", "args": ["3"]}]}}),
        json!({"spec": {"containers": [{"name": "a", "args": ["3"]}]}}),
    );
    let result = merge(
        "Widget",
        json!({"metadata": {"finalizers": ["a"]}, "spec": {"containers": [{"name": "a"}]}}),
        json!({"metadata": {"finalizers": ["b"]}, "spec": {"containers": [{"name": "b"}]}}),
    );
    assert_eq!(
        result,
        Ok(
            json!({"metadata": {"finalizers": ["b", "a"]}, "spec": {"containers": [{"name": "b"}]}})
        )
    );
}

#[test]
fn nulls_inside_new_values_are_not_stored() {
    check(
        json!({}),
        json!({"spec": {"containers": [
            {"name": "a", "image": null, "env": [{"name": "E", "value": null}]}
        ]}}),
        json!({"spec": {"containers": [{"name": "a", "env": [{"name": "E"}]}]}}),
    );
    // Null items of a replaced list stay: they are list items, not deletions.
    check(
        json!({}),
        json!({"spec": {"tolerations": [null]}}),
        json!({"spec": {"tolerations": [null]}}),
    );
}

#[test]
fn duplicate_merge_keys_merge_into_the_first_match() {
    check(
        containers(json!([{"name": "a", "v": "1"}, {"name": "a", "v": "2"}])),
        containers(json!([{"name": "a", "v": "3"}])),
        containers(json!([{"name": "a", "v": "3"}, {"name": "a", "v": "2"}])),
    );
}

#[test]
fn long_lists_merge_order_and_delete() {
    let count = 2_000;
    let names: Vec<Value> = (0..count).map(|i| json!(format!("f{i}"))).collect();
    let mut order = vec![json!("new")];
    order.extend(names.iter().rev().cloned());
    let evens: Vec<Value> = names.iter().step_by(2).cloned().collect();
    let result = merge(
        "Pod",
        finalizers(Value::Array(names.clone())),
        json!({"metadata": {
            "$setElementOrder/finalizers": order,
            "$deleteFromPrimitiveList/finalizers": evens,
            "finalizers": ["new", names[count - 1]]
        }}),
    )
    .expect("merges");
    let mut expected = vec![json!("new")];
    expected.extend(names.iter().rev().step_by(2).cloned());
    assert_eq!(expected.len(), 1 + count / 2);
    assert_eq!(result, finalizers(Value::Array(expected)));
}
