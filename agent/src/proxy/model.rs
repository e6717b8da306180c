//! The proxy's pure core: which frontends route to which backends, from Services and their
//! Endpoints, as kube-proxy reads them.
//! - A Service port's frontends are `ClusterIP:port` (ClusterIP, NodePort and LoadBalancer
//!   Services with a ClusterIP; not headless or ExternalName ones) and, for NodePorts,
//!   `<node address>:nodePort` on every node address.
//! - Its backends are the ready `addresses` of the Endpoints subsets whose port has the
//!   Service port's name (`notReadyAddresses` never receive traffic), sorted, so every node
//!   and every sync agree on the order round robin walks.
//! - TCP only: UDP and SCTP ports are skipped.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Service};

/// Where one frontend's connections go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// `namespace/name:port-name`, for logs and rule comments.
    pub service: String,
    pub backends: Vec<SocketAddr>,
}

/// Every frontend's route.
pub type Routes = BTreeMap<SocketAddr, Route>;

/// The routes of `services` over `endpoints` on a node with `node_addresses`.
pub fn routes(
    services: &[Arc<Service>],
    endpoints: &[Arc<Endpoints>],
    node_addresses: &[IpAddr],
) -> Routes {
    let by_name: BTreeMap<(&str, &str), &Endpoints> = endpoints
        .iter()
        .filter_map(|e| {
            let namespace = e.metadata.namespace.as_deref()?;
            Some(((namespace, e.metadata.name.as_deref()?), e.as_ref()))
        })
        .collect();
    let mut routes = Routes::new();
    for service in services {
        let (Some(namespace), Some(name), Some(spec)) = (
            service.metadata.namespace.as_deref(),
            service.metadata.name.as_deref(),
            &service.spec,
        ) else {
            continue;
        };
        let cluster_ip: Option<IpAddr> = spec.cluster_ip.as_deref().and_then(|ip| ip.parse().ok());
        let external_name = spec.type_.as_deref() == Some("ExternalName");
        for port in spec.ports.iter().flatten() {
            if port.protocol.as_deref().unwrap_or("TCP") != "TCP" {
                continue;
            }
            let port_name = port.name.clone().unwrap_or_default();
            let route = Route {
                service: format!("{namespace}/{name}:{port_name}"),
                backends: backends(by_name.get(&(namespace, name)).copied(), &port_name),
            };
            let Ok(number) = u16::try_from(port.port) else { continue };
            if let (Some(ip), false) = (cluster_ip, external_name) {
                routes.insert(SocketAddr::new(ip, number), route.clone());
            }
            let node_port = port.node_port.and_then(|p| u16::try_from(p).ok()).unwrap_or(0);
            if node_port != 0 && !external_name {
                for address in node_addresses {
                    routes.insert(SocketAddr::new(*address, node_port), route.clone());
                }
            }
        }
    }
    routes
}

/// The ready addresses of the subsets serving the port named `port_name`.
fn backends(endpoints: Option<&Endpoints>, port_name: &str) -> Vec<SocketAddr> {
    let mut backends = Vec::new();
    for subset in endpoints.into_iter().flat_map(|e| e.subsets.iter().flatten()) {
        let port = subset.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == port_name
                && p.protocol.as_deref().unwrap_or("TCP") == "TCP"
        });
        let Some(number) = port.and_then(|p| u16::try_from(p.port).ok()) else { continue };
        for address in subset.addresses.iter().flatten() {
            if let Ok(ip) = address.ip.parse::<IpAddr>() {
                backends.push(SocketAddr::new(ip, number));
            }
        }
    }
    backends.sort();
    backends.dedup();
    backends
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(value: serde_json::Value) -> Arc<Service> {
        Arc::new(serde_json::from_value(value).unwrap())
    }

    fn endpoints(value: serde_json::Value) -> Arc<Endpoints> {
        Arc::new(serde_json::from_value(value).unwrap())
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn cluster_ips_and_node_ports_route_to_ready_addresses_of_the_named_port() {
        let web = service(json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "NodePort", "clusterIP": "127.95.0.20", "ports": [
                {"name": "http", "port": 80, "nodePort": 30080},
                {"name": "dns", "port": 53, "protocol": "UDP"}]}}));
        let web_endpoints = endpoints(json!({"metadata": {"name": "web", "namespace": "default"},
            "subsets": [
                {"addresses": [{"ip": "127.0.96.6"}, {"ip": "127.0.96.5"}],
                 "notReadyAddresses": [{"ip": "127.0.96.9"}],
                 "ports": [{"name": "http", "port": 8080}]},
                {"addresses": [{"ip": "127.0.96.7"}], "ports": [{"name": "other", "port": 1}]}]}));
        let node = "127.0.96.8".parse().unwrap();
        let routes = routes(&[web], &[web_endpoints], &[node]);
        let expected = Route {
            service: "default/web:http".into(),
            backends: vec![addr("127.0.96.5:8080"), addr("127.0.96.6:8080")],
        };
        assert_eq!(routes.len(), 2, "{routes:?}");
        assert_eq!(routes[&addr("127.95.0.20:80")], expected);
        assert_eq!(routes[&addr("127.0.96.8:30080")], expected);
    }

    #[test]
    fn headless_external_and_unmatched_services_get_nothing_or_no_backends() {
        let headless = service(json!({"metadata": {"name": "h", "namespace": "a"},
            "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}));
        let external = service(json!({"metadata": {"name": "e", "namespace": "a"},
            "spec": {"type": "ExternalName", "externalName": "example.com"}}));
        let lonely = service(json!({"metadata": {"name": "l", "namespace": "a"},
            "spec": {"clusterIP": "10.96.0.9", "ports": [{"port": 80}]}}));
        let elsewhere = endpoints(json!({"metadata": {"name": "l", "namespace": "b"},
            "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]}));
        let routes = routes(&[headless, external, lonely], &[elsewhere], &[]);
        assert_eq!(routes.len(), 1);
        assert!(routes[&addr("10.96.0.9:80")].backends.is_empty());
    }
}
