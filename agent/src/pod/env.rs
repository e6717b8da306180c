//! A container's environment and command line as the kubelet makes them: `env` (values,
//! `fieldRef`, `resourceFieldRef`, `configMapKeyRef`, `secretKeyRef`) and `envFrom`, each value
//! expanded with the variables defined before it, then `$(VAR)` in `command` and `args`
//! expanded with the result (`$$` escapes, unknown references stay as written).
//!
//! Service environment variables (see [`crate::services`]) come first as the kubelet orders
//! them: `env` values may refer to them, the container's own variables of the same name win,
//! and the rest are added after the container's.
//!
//! ConfigMaps and Secrets are read through the API with the node's credentials; the API
//! server's node authorizer lets a node read exactly those its own pods reference. A missing
//! one fails the container with `CreateContainerConfigError`, as the kubelet reports.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, Pod, Secret};
use kube::api::Api;

/// The PATH a container gets when it sets none (Docker's default image PATH).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Kubernetes' `$(VAR)` expansion.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(reference) = after.strip_prefix('(') {
            match reference.find(')') {
                Some(close) => {
                    let name = &reference[..close];
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &reference[close + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = reference;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Addresses a pod's environment may name.
#[derive(Clone, Debug)]
pub struct PodAddresses {
    pub pod_ip: String,
    pub host_ip: String,
}

/// The value of a `fieldRef` (the fields Kubernetes allows in env).
pub fn field_value(pod: &Pod, path: &str, addresses: &PodAddresses) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let keyed = |prefix: &str, map: &Option<BTreeMap<String, String>>| -> Option<String> {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.as_ref().and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => {
            spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default()
        }
        "status.podIP" | "status.podIPs" => addresses.pod_ip.clone(),
        "status.hostIP" | "status.hostIPs" => addresses.host_ip.clone(),
        _ => {
            if let Some(value) = keyed("metadata.labels['", &meta.labels) {
                value
            } else if let Some(value) = keyed("metadata.annotations['", &meta.annotations) {
                value
            } else {
                return Err(format!("unsupported fieldRef fieldPath {path:?}"));
            }
        }
    };
    Ok(value)
}

/// The value of a `resourceFieldRef` (limits and requests; CPU rounded up to whole cores as
/// Kubernetes does with the default divisor).
fn resource_value(container: &Container, resource: &str, divisor: Option<&str>) -> String {
    use control_plane::quantity::Quantity;
    let resources = container.resources.as_ref();
    let (kind, name) = resource.split_once('.').unwrap_or(("", resource));
    let map = match kind {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        _ => resources.and_then(|r| r.requests.as_ref()),
    };
    let quantity = map.and_then(|m| m.get(name)).and_then(|q| Quantity::parse(&q.0).ok());
    let Some(quantity) = quantity else {
        // Unset limits default to the node's allocatable; report 0 rather than guess.
        return "0".into();
    };
    let divisor = divisor.and_then(|d| Quantity::parse(d).ok()).filter(|d| d.0 > 0);
    let divisor = divisor.map_or(1000, |d| d.0);
    ((quantity.0 + divisor - 1) / divisor).to_string()
}

/// ConfigMaps and Secrets read once per container start.
#[derive(Default)]
struct Sources {
    config_maps: HashMap<String, Option<BTreeMap<String, String>>>,
    secrets: HashMap<String, Option<BTreeMap<String, String>>>,
}

impl Sources {
    async fn config_map(
        &mut self,
        client: &kube::Client,
        namespace: &str,
        name: &str,
    ) -> Result<Option<&BTreeMap<String, String>>, String> {
        if !self.config_maps.contains_key(name) {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
            let data = match api.get_opt(name).await {
                Ok(found) => found.map(|cm| cm.data.unwrap_or_default()),
                Err(error) => return Err(format!("cannot read configmap \"{name}\": {error}")),
            };
            self.config_maps.insert(name.to_string(), data);
        }
        Ok(self.config_maps[name].as_ref())
    }

    async fn secret(
        &mut self,
        client: &kube::Client,
        namespace: &str,
        name: &str,
    ) -> Result<Option<&BTreeMap<String, String>>, String> {
        if !self.secrets.contains_key(name) {
            let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
            let data = match api.get_opt(name).await {
                Ok(found) => found.map(|secret| {
                    let mut data: BTreeMap<String, String> = secret
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                        .collect();
                    data.extend(secret.string_data.unwrap_or_default());
                    data
                }),
                Err(error) => return Err(format!("cannot read secret \"{name}\": {error}")),
            };
            self.secrets.insert(name.to_string(), data);
        }
        Ok(self.secrets[name].as_ref())
    }
}

/// Resolves a container's environment, with `services` the pod's service environment
/// variables; an error is the `CreateContainerConfigError` message.
pub async fn resolve(
    client: &kube::Client,
    pod: &Pod,
    container: &Container,
    addresses: &PodAddresses,
    services: &[(String, String)],
) -> Result<Vec<(String, String)>, String> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let mut sources = Sources::default();
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, name: String, value: String| match env
        .iter_mut()
        .find(|(n, _)| *n == name)
    {
        Some(entry) => entry.1 = value,
        None => env.push((name, value)),
    };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (data, optional, what) = if let Some(cm) = &from.config_map_ref {
            let data = sources.config_map(client, &namespace, &cm.name).await?.cloned();
            (data, cm.optional.unwrap_or(false), format!("configmap \"{}\"", cm.name))
        } else if let Some(secret) = &from.secret_ref {
            let data = sources.secret(client, &namespace, &secret.name).await?.cloned();
            (data, secret.optional.unwrap_or(false), format!("secret \"{}\"", secret.name))
        } else {
            continue;
        };
        match data {
            Some(data) => {
                for (key, value) in data {
                    set(&mut env, format!("{prefix}{key}"), value);
                }
            }
            None if optional => {}
            None => return Err(format!("{what} not found")),
        }
    }
    for var in container.env.iter().flatten() {
        let defined = Defined { own: &env, services };
        let Some(value) =
            env_value(client, pod, container, var, addresses, defined, &mut sources).await?
        else {
            continue;
        };
        set(&mut env, var.name.clone(), value);
    }
    for (name, value) in services {
        if !env.iter().any(|(n, _)| n == name) {
            env.push((name.clone(), value.clone()));
        }
    }
    if !env.iter().any(|(name, _)| name == "PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    Ok(env)
}

/// What a `$(VAR)` in an `env` value may name: the container's variables defined so far, then
/// the service variables (the kubelet's `MappingFuncFor(tmpEnv, serviceEnv)`).
#[derive(Clone, Copy)]
struct Defined<'a> {
    own: &'a [(String, String)],
    services: &'a [(String, String)],
}

impl Defined<'_> {
    fn lookup(&self, name: &str) -> Option<String> {
        let find = |list: &[(String, String)]| {
            list.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
        };
        find(self.own).or_else(|| find(self.services))
    }
}

async fn env_value(
    client: &kube::Client,
    pod: &Pod,
    container: &Container,
    var: &EnvVar,
    addresses: &PodAddresses,
    defined: Defined<'_>,
    sources: &mut Sources,
) -> Result<Option<String>, String> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let Some(from) = &var.value_from else {
        let lookup = |name: &str| defined.lookup(name);
        return Ok(Some(expand(var.value.as_deref().unwrap_or(""), &lookup)));
    };
    if let Some(field) = &from.field_ref {
        return field_value(pod, &field.field_path, addresses).map(Some);
    }
    if let Some(resource) = &from.resource_field_ref {
        let divisor = resource.divisor.as_ref().map(|d| d.0.as_str());
        return Ok(Some(resource_value(container, &resource.resource, divisor)));
    }
    let (found, optional, missing) = if let Some(key) = &from.config_map_key_ref {
        let data = sources.config_map(client, &namespace, &key.name).await?;
        let what = format!("couldn't find key {} in ConfigMap {namespace}/{}", key.key, key.name);
        let missing =
            if data.is_none() { format!("configmap \"{}\" not found", key.name) } else { what };
        (data.and_then(|d| d.get(&key.key).cloned()), key.optional.unwrap_or(false), missing)
    } else if let Some(key) = &from.secret_key_ref {
        let data = sources.secret(client, &namespace, &key.name).await?;
        let what = format!("couldn't find key {} in Secret {namespace}/{}", key.key, key.name);
        let missing =
            if data.is_none() { format!("secret \"{}\" not found", key.name) } else { what };
        (data.and_then(|d| d.get(&key.key).cloned()), key.optional.unwrap_or(false), missing)
    } else {
        return Ok(None);
    };
    match found {
        Some(value) => Ok(Some(value)),
        None if optional => Ok(None),
        None => Err(missing),
    }
}

/// `command` and `args` with `$(VAR)` expanded from the container's environment.
pub fn expand_command(
    container: &Container,
    env: &[(String, String)],
) -> (Vec<String>, Vec<String>) {
    let lookup = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let expand_all = |items: &Option<Vec<String>>| -> Vec<String> {
        items.iter().flatten().map(|item| expand(item, &lookup)).collect()
    };
    (expand_all(&container.command), expand_all(&container.args))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        let lookup = |name: &str| match name {
            "A" => Some("alpha".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        assert_eq!(expand(input, &lookup), expected, "expanding {input:?}");
    }

    #[test]
    fn references_expand_as_kubernetes_expands_them() {
        check("$(A)", "alpha");
        check("x-$(A)-y", "x-alpha-y");
        check("$(MISSING)", "$(MISSING)");
        check("$$(A)", "$(A)");
        check("$$$(A)", "$alpha");
        check("$(EMPTY)z", "z");
        check("cost: $5", "cost: $5");
        check("open $(A", "open $(A");
        check("$", "$");
        check("é$(A)é", "éalphaé");
    }

    #[tokio::test]
    async fn service_variables_yield_to_the_containers_own_and_expand_in_values() {
        // No ConfigMap or Secret is referenced, so the client never connects.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "dev"},
            "spec": {"containers": [{"name": "c", "env": [
                {"name": "WEB_SERVICE_PORT", "value": "9999"},
                {"name": "URL", "value": "http://$(WEB_SERVICE_HOST):$(WEB_SERVICE_PORT)"}
            ]}]}
        }))
        .unwrap();
        let container = pod.spec.as_ref().unwrap().containers[0].clone();
        let addresses = PodAddresses { pod_ip: "127.98.0.2".into(), host_ip: "127.0.97.2".into() };
        let services = [
            ("WEB_SERVICE_HOST".to_string(), "127.97.0.9".to_string()),
            ("WEB_SERVICE_PORT".to_string(), "80".to_string()),
        ];
        let env = resolve(&client, &pod, &container, &addresses, &services).await.unwrap();
        let get = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("WEB_SERVICE_PORT"), Some("9999"), "the container's own wins");
        assert_eq!(get("URL"), Some("http://127.97.0.9:9999"));
        assert_eq!(get("WEB_SERVICE_HOST"), Some("127.97.0.9"));
        assert_eq!(env.iter().filter(|(n, _)| n == "WEB_SERVICE_PORT").count(), 1);
    }

    #[test]
    fn field_refs_name_the_pod() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "dev", "uid": "u1",
                "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": []}
        }))
        .unwrap();
        let addresses = PodAddresses { pod_ip: "10.0.0.5".into(), host_ip: "10.0.0.1".into() };
        let value = |path: &str| field_value(&pod, path, &addresses);
        assert_eq!(value("metadata.name").unwrap(), "web");
        assert_eq!(value("metadata.namespace").unwrap(), "dev");
        assert_eq!(value("metadata.uid").unwrap(), "u1");
        assert_eq!(value("spec.nodeName").unwrap(), "n1");
        assert_eq!(value("status.podIP").unwrap(), "10.0.0.5");
        assert_eq!(value("metadata.labels['app']").unwrap(), "web");
        assert!(value("spec.nope").is_err());
    }
}
