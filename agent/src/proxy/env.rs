//! Pods' service environment variables, as the kubelet sets them (`pkg/kubelet/envvars`):
//! for each Service with a ClusterIP in the pod's namespace, plus the `kubernetes` Service of
//! `default` (unless the namespace has its own Service of that name),
//! `{SVC}_SERVICE_HOST`, `{SVC}_SERVICE_PORT` (first port), `{SVC}_SERVICE_PORT_{NAME}` (each
//! named port), and Docker link variables: `{SVC}_PORT=tcp://ip:port` (first port) and
//! `{SVC}_PORT_{PORT}_{PROTO}` with `_PROTO`, `_PORT` and `_ADDR` for each port. `{SVC}` is
//! the Service name upper-cased with `-` as `_`.
//!
//! The kubelet gives a pod the Services that exist when its containers are created; the
//! caller passes those (the agent's Service cache at that moment).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;

/// The namespace and name of the Service every pod hears about.
const MASTER_SERVICE: (&str, &str) = ("default", "kubernetes");

fn variable_name(text: &str) -> String {
    text.replace('-', "_").to_uppercase()
}

/// The service environment variables of a pod in `namespace`, sorted by Service name and in
/// the kubelet's order within one Service.
pub fn service_env(services: &[Service], namespace: &str) -> Vec<(String, String)> {
    let mut chosen: BTreeMap<&str, &Service> = BTreeMap::new();
    for service in services {
        let cluster_ip = service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref());
        if cluster_ip.is_none_or(|ip| ip.is_empty() || ip == "None") {
            continue;
        }
        let Some(name) = service.metadata.name.as_deref() else { continue };
        let own_namespace = service.metadata.namespace.as_deref();
        if own_namespace == Some(namespace) {
            chosen.insert(name, service);
        } else if (own_namespace.unwrap_or(""), name) == MASTER_SERVICE {
            chosen.entry(name).or_insert(service);
        }
    }
    let mut env = Vec::new();
    for (name, service) in chosen {
        variables(name, service, &mut env);
    }
    env
}

fn variables(name: &str, service: &Service, env: &mut Vec<(String, String)>) {
    let Some(spec) = &service.spec else { return };
    let ip = spec.cluster_ip.clone().unwrap_or_default();
    let ports = spec.ports.as_deref().unwrap_or_default();
    let Some(first) = ports.first() else { return };
    let prefix = variable_name(name);
    env.push((format!("{prefix}_SERVICE_HOST"), ip.clone()));
    env.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
    for port in ports {
        if let Some(port_name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            let key = format!("{prefix}_SERVICE_PORT_{}", variable_name(port_name));
            env.push((key, port.port.to_string()));
        }
    }
    let host = if ip.contains(':') { format!("[{ip}]") } else { ip.clone() };
    for (index, port) in ports.iter().enumerate() {
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        let url = format!("{}://{host}:{}", protocol.to_lowercase(), port.port);
        if index == 0 {
            env.push((format!("{prefix}_PORT"), url.clone()));
        }
        let port_prefix = format!("{prefix}_PORT_{}_{}", port.port, protocol.to_uppercase());
        env.push((port_prefix.clone(), url));
        env.push((format!("{port_prefix}_PROTO"), protocol.to_lowercase()));
        env.push((format!("{port_prefix}_PORT"), port.port.to_string()));
        env.push((format!("{port_prefix}_ADDR"), ip.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(namespace: &str, name: &str, spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": namespace},
            "spec": spec}))
        .unwrap()
    }

    fn check(services: &[Service], namespace: &str, expected: &[(&str, &str)]) {
        let env = service_env(services, namespace);
        let got: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn variables_follow_the_kubelet() {
        let redis = service(
            "prod",
            "redis-primary",
            json!({"clusterIP": "10.0.0.11", "ports": [
            {"name": "redis", "port": 6379, "protocol": "TCP"},
            {"name": "metrics", "port": 9121, "protocol": "UDP"}]}),
        );
        check(
            &[redis],
            "prod",
            &[
                ("REDIS_PRIMARY_SERVICE_HOST", "10.0.0.11"),
                ("REDIS_PRIMARY_SERVICE_PORT", "6379"),
                ("REDIS_PRIMARY_SERVICE_PORT_REDIS", "6379"),
                ("REDIS_PRIMARY_SERVICE_PORT_METRICS", "9121"),
                ("REDIS_PRIMARY_PORT", "tcp://10.0.0.11:6379"),
                ("REDIS_PRIMARY_PORT_6379_TCP", "tcp://10.0.0.11:6379"),
                ("REDIS_PRIMARY_PORT_6379_TCP_PROTO", "tcp"),
                ("REDIS_PRIMARY_PORT_6379_TCP_PORT", "6379"),
                ("REDIS_PRIMARY_PORT_6379_TCP_ADDR", "10.0.0.11"),
                ("REDIS_PRIMARY_PORT_9121_UDP", "udp://10.0.0.11:9121"),
                ("REDIS_PRIMARY_PORT_9121_UDP_PROTO", "udp"),
                ("REDIS_PRIMARY_PORT_9121_UDP_PORT", "9121"),
                ("REDIS_PRIMARY_PORT_9121_UDP_ADDR", "10.0.0.11"),
            ],
        );
    }

    #[test]
    fn only_the_namespace_and_the_master_service_without_headless_ones() {
        let ports = json!([{"port": 443}]);
        let kubernetes =
            service("default", "kubernetes", json!({"clusterIP": "10.96.0.1", "ports": ports}));
        let other = service("other", "web", json!({"clusterIP": "10.96.0.2", "ports": ports}));
        let headless = service("app", "db", json!({"clusterIP": "None", "ports": ports}));
        let external = service("app", "ext", json!({"type": "ExternalName"}));
        let all = [kubernetes.clone(), other, headless, external];
        check(
            &all,
            "app",
            &[
                ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
                ("KUBERNETES_SERVICE_PORT", "443"),
                ("KUBERNETES_PORT", "tcp://10.96.0.1:443"),
                ("KUBERNETES_PORT_443_TCP", "tcp://10.96.0.1:443"),
                ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
                ("KUBERNETES_PORT_443_TCP_PORT", "443"),
                ("KUBERNETES_PORT_443_TCP_ADDR", "10.96.0.1"),
            ],
        );
        let own = service("app", "kubernetes", json!({"clusterIP": "10.96.0.3", "ports": ports}));
        let env = service_env(&[kubernetes, own], "app");
        assert_eq!(env[0], ("KUBERNETES_SERVICE_HOST".into(), "10.96.0.3".into()));
        assert_eq!(env.len(), 7);
    }
}
