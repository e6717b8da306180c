//! The node authorizer, as Kubernetes' (narrowed to reads): a node agent (user
//! `system:node:<name>` in group `system:nodes`) may get the ConfigMaps and Secrets that pods
//! bound to its own node reference, and nothing more of them. RBAC's `system:node` role grants
//! no ConfigMap or Secret access at all, so this is the only way a node reads them.
//!
//! A pod references a ConfigMap or Secret through `env[].valueFrom`, `envFrom[]`, volumes
//! (`configMap`, `secret`, `projected` sources) and, for Secrets, `imagePullSecrets`, in its
//! containers, init containers and ephemeral containers alike.

use serde_json::Value;

use super::auth::User;
use super::server::ApiServer;

/// Which kind of object a pod refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Referenced {
    ConfigMap,
    Secret,
}

/// The node a user speaks for, if it is a node agent's identity.
pub fn node_of(user: &User) -> Option<&str> {
    user.is_in("system:nodes").then_some(())?;
    user.name.strip_prefix("system:node:").filter(|n| !n.is_empty())
}

/// The names of `kind` objects `pod` references.
pub fn references(pod: &Value, kind: Referenced) -> Vec<String> {
    let spec = &pod["spec"];
    let (key_ref, env_from, volume, volume_field) = match kind {
        Referenced::ConfigMap => ("configMapKeyRef", "configMapRef", "configMap", "name"),
        Referenced::Secret => ("secretKeyRef", "secretRef", "secret", "secretName"),
    };
    let mut names = Vec::new();
    let mut push = |value: &Value| {
        if let Some(name) = value.as_str().filter(|n| !n.is_empty()) {
            names.push(name.to_string());
        }
    };
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for container in spec[list].as_array().into_iter().flatten() {
            for env in container["env"].as_array().into_iter().flatten() {
                push(&env["valueFrom"][key_ref]["name"]);
            }
            for source in container["envFrom"].as_array().into_iter().flatten() {
                push(&source[env_from]["name"]);
            }
        }
    }
    for volume_spec in spec["volumes"].as_array().into_iter().flatten() {
        push(&volume_spec[volume][volume_field]);
        for source in volume_spec["projected"]["sources"].as_array().into_iter().flatten() {
            // Projected sources name both kinds by `name`.
            push(&source[volume]["name"]);
        }
    }
    if kind == Referenced::Secret {
        for secret in spec["imagePullSecrets"].as_array().into_iter().flatten() {
            push(&secret["name"]);
        }
    }
    names
}

/// Whether node agent `user` may `verb` the object: only `get` of a ConfigMap or Secret that a
/// pod bound to its node, in the same namespace, references.
pub fn allows(
    server: &ApiServer,
    user: &User,
    verb: &str,
    plural: &str,
    namespace: Option<&str>,
    name: Option<&str>,
) -> bool {
    let Some(node) = node_of(user) else { return false };
    let kind = match plural {
        "configmaps" => Referenced::ConfigMap,
        "secrets" => Referenced::Secret,
        _ => return false,
    };
    let (Some(namespace), Some(name), "get") = (namespace, name, verb) else { return false };
    server.cache("pods").all_objects().iter().any(|pod| {
        pod["spec"]["nodeName"].as_str() == Some(node)
            && pod["metadata"]["namespace"].as_str() == Some(namespace)
            && references(pod, kind).iter().any(|n| n == name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_every_kind_of_reference() {
        let pod = json!({"spec": {
            "containers": [{"env": [
                {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm-env", "key": "a"}}},
                {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s-env", "key": "b"}}},
                {"name": "C", "value": "plain"}],
                "envFrom": [{"configMapRef": {"name": "cm-from"}},
                    {"secretRef": {"name": "s-from"}}]}],
            "initContainers": [{"env": [
                {"name": "D", "valueFrom": {"configMapKeyRef": {"name": "cm-init", "key": "d"}}}]}],
            "volumes": [{"name": "v1", "configMap": {"name": "cm-vol"}},
                {"name": "v2", "secret": {"secretName": "s-vol"}},
                {"name": "v3", "projected": {"sources": [{"configMap": {"name": "cm-proj"}},
                    {"secret": {"name": "s-proj"}}]}}],
            "imagePullSecrets": [{"name": "s-pull"}]
        }});
        let mut maps = references(&pod, Referenced::ConfigMap);
        maps.sort();
        assert_eq!(maps, ["cm-env", "cm-from", "cm-init", "cm-proj", "cm-vol"]);
        let mut secrets = references(&pod, Referenced::Secret);
        secrets.sort();
        assert_eq!(secrets, ["s-env", "s-from", "s-proj", "s-pull", "s-vol"]);
    }

    #[test]
    fn only_node_identities_count() {
        let node = |name: &str, groups: &[&str]| User {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        };
        assert_eq!(node_of(&node("system:node:n1", &["system:nodes"])), Some("n1"));
        assert_eq!(node_of(&node("system:node:n1", &[])), None);
        assert_eq!(node_of(&node("alice", &["system:nodes"])), None);
        assert_eq!(node_of(&node("system:node:", &["system:nodes"])), None);
    }
}
