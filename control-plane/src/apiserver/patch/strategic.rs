//! Kubernetes strategic merge patch, applied the way kube-apiserver applies it
//! (`StrategicMergeMapPatch` in apimachinery's `strategicpatch`, server-side options).
//!
//! Maps merge recursively and `null` deletes a key. A list field tagged `merge` merges: lists
//! of objects by their merge key, lists of scalars as a union; every other list is replaced.
//! Directives:
//! - `$patch: replace` / `$patch: delete` in a map replaces it with the rest of the patch map
//!   or empties it; as a list item, `{"$patch": "replace"}` replaces the whole list and
//!   `{"<key>": v, "$patch": "delete"}` removes the items whose merge key is `v`.
//! - `$retainKeys: [..]` clears the map's keys not listed (the patch may only set listed keys).
//! - `$setElementOrder/<field>: [..]` orders the merged list: listed items in that order,
//!   items only the server has interleaved where they stood.
//! - `$deleteFromPrimitiveList/<field>: [..]` removes those scalars from the list.
//!
//! Where Go copies a patch value verbatim into a field the object lacks, this applies the
//! patch to an empty value instead, so no directive or `null` is ever stored (Go relies on
//! decoding into typed structs to drop them).
//!
//! Recursion follows the nesting of the patch, which serde_json bounds (128 levels) when it
//! parses the body; list merging and ordering hash item identities, so long lists cost
//! O(n log n), not Go's O(n²).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::schema::{Strategy, TypeNode};
use super::PatchError;

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

/// Merges `patch` into `original`, an object of type `node`.
pub fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    node: TypeNode,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.remove(DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => merge_map(Map::new(), patch, node),
            Some("delete") => Ok(Map::new()),
            _ => Err(unknown_patch_type(&directive, &patch)),
        };
    }
    apply_retain_keys(&mut original, &mut patch)?;
    apply_element_orders(&mut original, &mut patch, node)?;

    // Deletions from primitive lists run after the merges: both come from one patch and
    // commute unless a client adds and deletes the same item, which kubectl never does.
    let mut deletions = Vec::new();
    for (key, patch_value) in patch {
        if let Some(rest) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            let field = rest.strip_prefix('/').ok_or_else(|| bad_primitive_list(&key))?;
            deletions.push((field.to_owned(), patch_value));
            continue;
        }
        if patch_value.is_null() {
            original.remove(&key);
            continue;
        }
        let (field_node, strategy) = node.field(&key);
        let merged = match original.remove(&key) {
            Some(current) => merge_value(current, patch_value, field_node, strategy)?,
            None => materialize(patch_value, field_node, strategy)?,
        };
        original.insert(key, merged);
    }
    for (field, to_delete) in deletions {
        let Value::Array(to_delete) = to_delete else {
            return Err(bad_primitive_list(&format!("{DELETE_FROM_PRIMITIVE_LIST}/{field}")));
        };
        if let Some(Value::Array(items)) = original.get_mut(&field) {
            let doomed: HashSet<String> = to_delete.iter().map(Value::to_string).collect();
            items.retain(|item| !doomed.contains(&item.to_string()));
        }
    }
    Ok(original)
}

fn merge_value(
    current: Value,
    patch: Value,
    node: TypeNode,
    strategy: Option<Strategy>,
) -> Result<Value, PatchError> {
    match (current, patch) {
        (Value::Object(current), Value::Object(patch)) => {
            merge_map(current, patch, node).map(Value::Object)
        }
        (Value::Array(current), Value::Array(patch)) => match strategy {
            Some(Strategy { merge: true, merge_key, .. }) => {
                merge_list(current, patch, node, merge_key).map(Value::Array)
            }
            _ => materialize_list(patch, node, strategy).map(Value::Array),
        },
        // A scalar, or a value whose JSON type changed: the patch value wins.
        (_, patch) => materialize(patch, node, strategy),
    }
}

/// A patch value for a field the object lacks: the patch applied to nothing.
fn materialize(
    value: Value,
    node: TypeNode,
    strategy: Option<Strategy>,
) -> Result<Value, PatchError> {
    match value {
        Value::Object(patch) => merge_map(Map::new(), patch, node).map(Value::Object),
        Value::Array(items) => materialize_list(items, node, strategy).map(Value::Array),
        scalar => Ok(scalar),
    }
}

/// A patch list for a list the object lacks (or a list that is replaced): against nothing,
/// the `$patch` items of a merging list (`delete`, `replace`) leave only the plain items, and
/// every item is materialized.
fn materialize_list(
    items: Vec<Value>,
    node: TypeNode,
    strategy: Option<Strategy>,
) -> Result<Vec<Value>, PatchError> {
    let merging = strategy.is_some_and(|strategy| strategy.merge);
    let mut kept = Vec::with_capacity(items.len());
    for item in items {
        let directive = if merging { item.get(DIRECTIVE) } else { None };
        match directive {
            None => kept.push(materialize(item, node, None)?),
            Some(directive) if matches!(directive.as_str(), Some("delete" | "replace")) => {}
            Some(directive) => return Err(list_directive_error(directive, &item)),
        }
    }
    Ok(kept)
}

/// Merges two lists of a field tagged `merge` (Go's `mergeSlice`).
fn merge_list(
    current: Vec<Value>,
    patch: Vec<Value>,
    node: TypeNode,
    merge_key: Option<&'static str>,
) -> Result<Vec<Value>, PatchError> {
    if current.is_empty() && patch.is_empty() {
        return Ok(current);
    }
    if !items_are_objects(&current, &patch)? {
        let patch_order = Order::of(&patch, None);
        let server_order = Order::of(&current, None);
        let mut seen = HashSet::with_capacity(current.len() + patch.len());
        let merged = current.into_iter().chain(patch).filter(|item| seen.insert(item.to_string()));
        return normalize_order(merged.collect(), &patch_order, &server_order, None);
    }
    let Some(key) = merge_key else {
        return Err(PatchError::MergeFailed(
            "cannot merge lists of objects without a merge key".to_owned(),
        ));
    };
    let (current, patch) = split_special_items(current, patch, node, key)?;
    let server_order = Order::of(&current, Some(key));
    let patch_order = Order::of(&patch, Some(key));
    let merged = merge_by_key(current, patch, node, key)?;
    normalize_order(merged, &patch_order, &server_order, Some(key))
}

/// Applies the `$patch` items of a merging list of objects: `delete` removes the current items
/// with that merge key, `replace` makes the plain patch items the whole list. Returns the
/// current items left and the plain patch items still to merge.
fn split_special_items(
    mut current: Vec<Value>,
    patch: Vec<Value>,
    node: TypeNode,
    key: &str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    let mut doomed = HashSet::new();
    for item in patch {
        let Some(directive) = item.get(DIRECTIVE) else {
            plain.push(item);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let value = item.get(key).ok_or_else(|| no_merge_key(&item, key))?;
                doomed.insert(value.to_string());
            }
            Some("replace") => replace = true,
            _ => return Err(list_directive_error(directive, &item)),
        }
    }
    if replace {
        let replacement = materialize_list(plain, node, None)?;
        return Ok((replacement, Vec::new()));
    }
    if !doomed.is_empty() {
        current
            .retain(|item| item.get(key).is_none_or(|value| !doomed.contains(&value.to_string())));
    }
    Ok((current, plain))
}

/// Merges each patch item into the current item with the same merge key value, or appends
/// it.
fn merge_by_key(
    mut current: Vec<Value>,
    patch: Vec<Value>,
    node: TypeNode,
    key: &str,
) -> Result<Vec<Value>, PatchError> {
    // The first current item with each merge key value, as Go's linear search finds it.
    let mut positions: HashMap<String, usize> = HashMap::with_capacity(current.len());
    for (index, existing) in current.iter().enumerate() {
        if let Some(value) = existing.get(key) {
            positions.entry(value.to_string()).or_insert(index);
        }
    }
    for item in patch {
        let Value::Object(item) = item else {
            return Err(PatchError::MergeFailed(format!("list item {item} is not an object")));
        };
        let Some(value) = item.get(key) else {
            return Err(no_merge_key(&Value::Object(item), key));
        };
        match positions.get(&value.to_string()).copied() {
            Some(index) => {
                let existing = match std::mem::take(&mut current[index]) {
                    Value::Object(existing) => existing,
                    _ => Map::new(),
                };
                current[index] = Value::Object(merge_map(existing, item, node)?);
            }
            None => {
                positions.insert(value.to_string(), current.len());
                current.push(Value::Object(merge_map(Map::new(), item, node)?));
            }
        }
    }
    Ok(current)
}

/// Processes every `$setElementOrder/<field>` of `patch` (Go's `mergePatchIntoOriginal`):
/// merges `<field>` of the patch into the object's list, then orders the result.
fn apply_element_orders(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    node: TypeNode,
) -> Result<(), PatchError> {
    let directives: Vec<String> =
        patch.keys().filter(|key| key.starts_with(SET_ELEMENT_ORDER)).cloned().collect();
    for directive in directives {
        let Some(order) = patch.remove(&directive) else { continue };
        let field = directive
            .strip_prefix(SET_ELEMENT_ORDER)
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or_else(|| bad_element_order(&directive, "has no field name"))?;
        let Value::Array(order) = order else {
            return Err(bad_element_order(&directive, "is not a list"));
        };
        let (field_node, strategy) = node.field(field);
        let merge_key = strategy.and_then(|strategy| strategy.merge_key);
        let current = take_list(original, field, "the object's")?;
        let patch_list = take_list(patch, field, "the patch's")?;
        validate_patch_order(patch_list.as_deref().unwrap_or_default(), &order, merge_key)?;
        let server_order = Order::of(current.as_deref().unwrap_or_default(), merge_key);
        let merged = match (current, patch_list) {
            (None, None) => continue,
            (Some(current), None) => current,
            (None, Some(patch_list)) => materialize_list(patch_list, field_node, strategy)?,
            (Some(current), Some(patch_list)) => match strategy {
                Some(Strategy { merge: true, .. }) => {
                    merge_list(current, patch_list, field_node, merge_key)?
                }
                _ => materialize_list(patch_list, field_node, strategy)?,
            },
        };
        let order = Order::of(&order, merge_key);
        let ordered = normalize_order(merged, &order, &server_order, merge_key)?;
        original.insert(field.to_owned(), Value::Array(ordered));
    }
    Ok(())
}

fn take_list(
    map: &mut Map<String, Value>,
    field: &str,
    whose: &str,
) -> Result<Option<Vec<Value>>, PatchError> {
    match map.remove(field) {
        None => Ok(None),
        Some(Value::Array(items)) => Ok(Some(items)),
        Some(other) => Err(PatchError::MergeFailed(format!(
            "{SET_ELEMENT_ORDER}/{field} needs a list, but {whose} {field:?} is {other}"
        ))),
    }
}

/// Checks that the patch list's items appear in the `$setElementOrder` list, in the same
/// relative order (deleted items and directive items aside).
fn validate_patch_order(
    patch_list: &[Value],
    order: &[Value],
    merge_key: Option<&str>,
) -> Result<(), PatchError> {
    if patch_list.is_empty() || order.is_empty() {
        return Ok(());
    }
    let items: Vec<&Value> = patch_list
        .iter()
        .filter(|item| {
            merge_key.is_none() || item.get(DIRECTIVE).and_then(Value::as_str) != Some("delete")
        })
        .collect();
    let (mut item_index, mut order_index) = (0, 0);
    while item_index < items.len() && order_index < order.len() {
        let item = items[item_index];
        if item.get(DIRECTIVE).is_some() {
            item_index += 1;
            continue;
        }
        if same_identity(item, &order[order_index], merge_key)? {
            item_index += 1;
        }
        order_index += 1;
    }
    if item_index < items.len() {
        return Err(PatchError::InvalidDirective(format!(
            "the order in patch list {} doesn't match {SET_ELEMENT_ORDER} list {}",
            Value::Array(patch_list.to_vec()),
            Value::Array(order.to_vec()),
        )));
    }
    Ok(())
}

fn same_identity(left: &Value, right: &Value, merge_key: Option<&str>) -> Result<bool, PatchError> {
    let Some(key) = merge_key else {
        return Ok(left == right);
    };
    let left_value = left.get(key).ok_or_else(|| no_merge_key(left, key))?;
    let right_value = right.get(key).ok_or_else(|| no_merge_key(right, key))?;
    Ok(left_value == right_value)
}

/// What identifies a list item, as text for hashing: its merge key value for objects of a
/// list with a merge key (a marker no JSON text starts with if it lacks one), the item itself
/// otherwise. Equal values give equal text: serde_json writes object keys sorted.
fn identity(item: &Value, merge_key: Option<&str>) -> String {
    match (item, merge_key) {
        (Value::Object(map), Some(key)) => {
            map.get(key).map_or_else(|| "\0missing".to_owned(), Value::to_string)
        }
        _ => item.to_string(),
    }
}

/// Where each identity first appears in a list.
struct Order {
    first_positions: HashMap<String, usize>,
}

impl Order {
    fn of(items: &[Value], merge_key: Option<&str>) -> Order {
        let mut first_positions = HashMap::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            first_positions.entry(identity(item, merge_key)).or_insert(index);
        }
        Order { first_positions }
    }

    fn position(&self, identity: &str) -> Option<usize> {
        self.first_positions.get(identity).copied()
    }
}

/// A merged item with its positions in the patch order and the server order.
struct Ranked {
    patch_position: Option<usize>,
    server_position: Option<usize>,
    item: Value,
}

/// Orders a merged list (Go's `normalizeElementOrder`): the items named by `patch_order` in
/// that order, the other ("server-only") items in their `server_order` order, and the two
/// interleaved so a server-only item stays before the patch items that followed it on the
/// server.
fn normalize_order(
    merged: Vec<Value>,
    patch_order: &Order,
    server_order: &Order,
    merge_key: Option<&str>,
) -> Result<Vec<Value>, PatchError> {
    let mut patch_items = Vec::new();
    let mut server_items = Vec::new();
    for item in merged {
        if let (Value::Object(map), Some(key)) = (&item, merge_key) {
            if !map.contains_key(key) {
                return Err(no_merge_key(&item, key));
            }
        }
        let identity = identity(&item, merge_key);
        let patch_position = patch_order.position(&identity);
        let server_position = server_order.position(&identity);
        let ranked = Ranked { patch_position, server_position, item };
        match patch_position {
            Some(_) => patch_items.push(ranked),
            None => server_items.push(ranked),
        }
    }
    // Stable sorts: items with equal identities keep their merged order.
    patch_items.sort_by_key(|ranked| ranked.patch_position);
    server_items.sort_by_key(|ranked| ranked.server_position.unwrap_or(usize::MAX));

    let mut ordered = Vec::with_capacity(patch_items.len() + server_items.len());
    let mut patch_items = patch_items.into_iter().peekable();
    let mut server_items = server_items.into_iter().peekable();
    loop {
        let take_server = match (server_items.peek(), patch_items.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(server_item), Some(patch_item)) => matches!(
                (server_item.server_position, patch_item.server_position),
                (Some(server), Some(patch)) if server < patch
            ),
        };
        let next = if take_server { server_items.next() } else { patch_items.next() };
        ordered.extend(next.map(|ranked| ranked.item));
    }
    Ok(ordered)
}

/// Whether the items of both lists are objects; an error if they mix JSON types or are
/// lists themselves.
fn items_are_objects(current: &[Value], patch: &[Value]) -> Result<bool, PatchError> {
    let mut items = current.iter().chain(patch);
    let Some(first) = items.next() else {
        return Ok(false);
    };
    if first.is_array() {
        return Err(PatchError::MergeFailed("lists of lists are not supported".to_owned()));
    }
    let kind = std::mem::discriminant(first);
    if items.any(|item| std::mem::discriminant(item) != kind) {
        return Err(PatchError::MergeFailed(format!(
            "list element types are not identical: {} and {}",
            Value::Array(current.to_vec()),
            Value::Array(patch.to_vec()),
        )));
    }
    Ok(first.is_object())
}

fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), PatchError> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(PatchError::InvalidDirective(format!(
            "invalid patch format of retainKeys: {RETAIN_KEYS} must be a list"
        )));
    };
    let retained = |key: &str| retain.iter().any(|kept| kept.as_str() == Some(key));
    for (key, value) in patch.iter() {
        let directive =
            key.starts_with(DELETE_FROM_PRIMITIVE_LIST) || key.starts_with(SET_ELEMENT_ORDER);
        if !value.is_null() && !directive && !retained(key) {
            return Err(PatchError::InvalidDirective(format!(
                "invalid patch format of retainKeys: {key:?} is set but not in {RETAIN_KEYS}"
            )));
        }
    }
    original.retain(|key, _| retained(key));
    Ok(())
}

fn unknown_patch_type(directive: &Value, map: &Map<String, Value>) -> PatchError {
    PatchError::InvalidDirective(format!(
        "unknown patch type: {directive} in map: {}",
        Value::Object(map.clone())
    ))
}

fn list_directive_error(directive: &Value, item: &Value) -> PatchError {
    match directive.as_str() {
        Some("merge") => PatchError::InvalidDirective(
            "merging lists cannot yet be specified in the patch".to_owned(),
        ),
        _ => {
            PatchError::InvalidDirective(format!("unknown patch type: {directive} in map: {item}"))
        }
    }
}

fn no_merge_key(item: &Value, key: &str) -> PatchError {
    PatchError::MergeFailed(format!("map: {item} does not contain declared merge key: {key}"))
}

fn bad_primitive_list(key: &str) -> PatchError {
    PatchError::InvalidDirective(format!(
        "invalid patch format of primitive list: {key:?} must be \
         {DELETE_FROM_PRIMITIVE_LIST}/<field> with a list value"
    ))
}

fn bad_element_order(key: &str, problem: &str) -> PatchError {
    PatchError::InvalidDirective(format!(
        "invalid patch format of setElementOrder list: {key:?} {problem}"
    ))
}

#[cfg(test)]
mod tests;
