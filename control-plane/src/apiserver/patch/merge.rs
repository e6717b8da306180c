//! JSON merge patch (RFC 7386): objects merge key by key, `null` deletes a key, anything else
//! (arrays included) replaces the target value.

use serde_json::{Map, Value};

/// Applies merge patch `patch` to `target` and returns the result.
pub fn merge_patch(target: Value, patch: Value) -> Value {
    let Value::Object(patch) = patch else {
        return patch;
    };
    let mut target = match target {
        Value::Object(target) => target,
        _ => Map::new(),
    };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(&key);
            continue;
        }
        let current = target.remove(&key).unwrap_or(Value::Null);
        target.insert(key, merge_patch(current, value));
    }
    Value::Object(target)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::merge_patch;

    fn check(target: serde_json::Value, patch: serde_json::Value, expected: serde_json::Value) {
        assert_eq!(merge_patch(target.clone(), patch.clone()), expected, "{target} + {patch}");
    }

    /// The examples of RFC 7386 appendix A.
    #[test]
    fn rfc_7386_examples() {
        check(json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"}));
        check(json!({"a": "b"}), json!({"b": "c"}), json!({"a": "b", "b": "c"}));
        check(json!({"a": "b"}), json!({"a": null}), json!({}));
        check(json!({"a": "b", "b": "c"}), json!({"a": null}), json!({"b": "c"}));
        check(json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"}));
        check(json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]}));
        check(
            json!({"a": {"b": "c"}}),
            json!({"a": {"b": "d", "c": null}}),
            json!({"a": {"b": "d"}}),
        );
        check(json!({"a": [{"b": "c"}]}), json!({"a": [1]}), json!({"a": [1]}));
        check(json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"]));
        check(json!({"a": "b"}), json!(["c"]), json!(["c"]));
        check(json!({"a": "foo"}), json!(null), json!(null));
        check(json!({"a": "foo"}), json!("bar"), json!("bar"));
        check(json!({"e": null}), json!({"a": 1}), json!({"e": null, "a": 1}));
        check(json!([1, 2]), json!({"a": "b", "c": null}), json!({"a": "b"}));
        check(json!({}), json!({"a": {"bb": {"ccc": null}}}), json!({"a": {"bb": {}}}));
    }

    #[test]
    fn kubectl_scale_and_label() {
        check(
            json!({"spec": {"replicas": 1, "paused": false}}),
            json!({"spec": {"replicas": 3}}),
            json!({"spec": {"replicas": 3, "paused": false}}),
        );
        // `kubectl label app=web tier-` sends one merge patch adding and removing labels.
        check(
            json!({"metadata": {"name": "x", "labels": {"tier": "db", "keep": "1"}}}),
            json!({"metadata": {"labels": {"app": "web", "tier": null}}}),
            json!({"metadata": {"name": "x", "labels": {"keep": "1", "app": "web"}}}),
        );
        check(
            json!({"metadata": {"name": "x"}}),
            json!({"metadata": {"annotations": {"note": "hi", "gone": null}}}),
            json!({"metadata": {"name": "x", "annotations": {"note": "hi"}}}),
        );
    }
}
