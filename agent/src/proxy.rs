//! The service proxy (kube-proxy's job): every node routes `ClusterIP:port` and
//! `<node address>:NodePort` of each Service to the ready addresses of its Endpoints, round
//! robin, TCP only.
//!
//! [`run`] watches Services and Endpoints (kube-runtime reflectors), turns them into
//! [`model::Routes`] (pure), and programs them in one of three modes ([`ProxyMode`]):
//! - `userspace` (the default): a TCP listener per frontend that accepts, picks the next
//!   endpoint, connects (trying the others when one refuses) and splices both ways
//!   ([`userspace`]). It serves ClusterIPs that are local addresses (a loopback service range
//!   such as 127.95.0.0/24, where Linux routes all of 127/8 to `lo`) and NodePorts on the
//!   configured node addresses. Non-local ClusterIPs cannot be bound; they are reported once
//!   and need a rules mode, or the service interface below.
//! - `nftables` / `iptables`: DNAT rules in Skiff's own table (`ip skiff-proxy`) or chains
//!   (`SKIFF-*` in the nat table), installed only for ClusterIPs inside the configured range
//!   and for the node addresses, and removed on stop ([`rules`]). They need root and the
//!   binary; when programming fails at start the proxy falls back to userspace.
//! - `auto`: nftables, else iptables, where permitted; userspace otherwise.
//!
//! With the bridge pod network, every mode also puts the ClusterIPs (inside the service
//! range) as /32s on a dummy interface, `skiff-svc0` (kube-proxy IPVS's `kube-ipvs0`; a
//! bridge without ports where the kernel lacks the dummy driver): the userspace proxy can
//! listen on them, and the node reaches them without a route to the service range. Pods
//! reach them through their default gateway, the node. Addresses go with their Services,
//! the interface when the proxy stops.
//!
//! [`service_env`] is the pure function behind pods' service environment variables.
//!
//! **Architecture invariant:** `model`, `env` and the rule renderers are pure; only `run`,
//! `userspace::Userspace` and `rules::RulesProxy` do I/O (and the service interface, through
//! `network::iproute::ServiceAddresses`).

pub mod env;
pub mod model;
pub mod rules;
pub mod userspace;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use control_plane::apiserver::allocator::ServiceIpRange;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use tokio::sync::watch;

pub use env::service_env;

use crate::network::iproute::ServiceAddresses;

/// Connections one frontend (service port) proxies at once in userspace mode; more wait in
/// the listen backlog until one ends.
pub const PROXY_CONNECTIONS_PER_PORT_MAX: usize = 1_024;
/// How long userspace mode waits for an endpoint to accept before trying the next one.
pub const PROXY_CONNECT_TIMEOUT_MS: u64 = 2_000;
/// Endpoints tried for one connection before it is closed.
pub const PROXY_CONNECT_ATTEMPTS_MAX: usize = 3;
/// Bytes buffered per direction of a proxied connection.
pub const PROXY_COPY_BUFFER_BYTES: usize = 16 * 1024;
/// The shortest spacing of two syncs: changes arriving closer together are programmed at
/// once (kube-proxy's `--iptables-min-sync-period`, 1 s there; userspace is cheap).
pub const PROXY_SYNC_PERIOD_MIN_MS: u64 = 100;
/// A full sync runs at least this often even without changes, repairing rules someone
/// else removed (kube-proxy's `--iptables-sync-period`, 30 s).
pub const PROXY_SYNC_PERIOD_MAX_MS: u64 = 30_000;
/// Longest a rules command (`nft`, `iptables-restore`) may run.
pub const PROXY_RULES_COMMAND_TIMEOUT_MS: u64 = 10_000;
/// ClusterIPs put on the service interface (a /24 service range holds 254; the default /12
/// more than a node should carry as addresses).
pub const SERVICE_ADDRESSES_MAX: usize = 4_096;
const _: () = assert!(PROXY_SYNC_PERIOD_MIN_MS < PROXY_SYNC_PERIOD_MAX_MS);
const _: () = assert!(PROXY_CONNECTIONS_PER_PORT_MAX >= 1 && PROXY_CONNECT_ATTEMPTS_MAX >= 1);

/// How Services are routed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProxyMode {
    /// TCP listeners in the agent.
    #[default]
    Userspace,
    /// DNAT rules in the `ip skiff-proxy` nftables table.
    Nftables,
    /// DNAT rules in `SKIFF-*` chains of iptables' nat table.
    Iptables,
    /// nftables, else iptables, where the agent is root and the binary exists; else userspace.
    Auto,
}

impl std::str::FromStr for ProxyMode {
    type Err = String;

    fn from_str(text: &str) -> Result<ProxyMode, String> {
        match text {
            "userspace" => Ok(ProxyMode::Userspace),
            "nftables" => Ok(ProxyMode::Nftables),
            "iptables" => Ok(ProxyMode::Iptables),
            "auto" => Ok(ProxyMode::Auto),
            other => Err(format!(
                "unknown proxy mode {other:?}: use userspace, nftables, iptables or auto"
            )),
        }
    }
}

/// How to run the proxy.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub mode: ProxyMode,
    /// This node's addresses: NodePorts are served on each (never on the wildcard address).
    pub node_addresses: Vec<IpAddr>,
    /// The cluster's service range (the API server's `--service-cluster-ip-range`). ClusterIPs
    /// outside it are not routed; the rule modes install no ClusterIP rules without it.
    pub cluster_ip_range: Option<ServiceIpRange>,
    pub connections_per_port_max: usize,
    pub connect_timeout: Duration,
    pub sync_period_min: Duration,
    /// Words put before `nft` / `iptables-restore` / `iptables` (e.g. `ip netns exec NAME`
    /// to program another network namespace); empty: run them directly.
    pub rules_command_prefix: Vec<String>,
    /// The dummy interface to hold ClusterIPs on (bridge pod network); `None`: none.
    pub service_interface: Option<String>,
    /// The bridge pods hang from (bridge pod network): nftables masquerades service traffic
    /// arriving from it, so replies come back through the node.
    pub pod_bridge: Option<String>,
}

impl Default for ProxyConfig {
    fn default() -> ProxyConfig {
        ProxyConfig {
            mode: ProxyMode::Userspace,
            node_addresses: Vec::new(),
            cluster_ip_range: None,
            connections_per_port_max: PROXY_CONNECTIONS_PER_PORT_MAX,
            connect_timeout: Duration::from_millis(PROXY_CONNECT_TIMEOUT_MS),
            sync_period_min: Duration::from_millis(PROXY_SYNC_PERIOD_MIN_MS),
            rules_command_prefix: Vec::new(),
            service_interface: None,
            pod_bridge: None,
        }
    }
}

/// The proxy's metrics, registered in the agent's registry.
#[derive(Clone)]
pub struct ProxyMetrics {
    /// Frontends programmed (listeners or rules), by mode.
    pub programmed: prometheus::IntGaugeVec,
    /// Connections by outcome: proxied, no_endpoints, unreachable (no endpoint accepted).
    pub connections: prometheus::IntCounterVec,
    /// Frontends that could not be programmed (e.g. a non-local ClusterIP in userspace).
    pub failures: prometheus::IntGauge,
    pub sync_seconds: prometheus::Histogram,
}

impl ProxyMetrics {
    fn new(registry: &prometheus::Registry) -> ProxyMetrics {
        let programmed = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "skiff_proxy_programmed_frontends",
                "Service frontends (ClusterIP:port, node address:NodePort) programmed, by mode",
            ),
            &["mode"],
        )
        .expect("valid metric");
        let connections = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "skiff_proxy_connections_total",
                "Connections the userspace proxy handled, by result",
            ),
            &["result"],
        )
        .expect("valid metric");
        let failures = prometheus::IntGauge::new(
            "skiff_proxy_frontend_failures",
            "Frontends the last sync could not program",
        )
        .expect("valid metric");
        let sync_seconds = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new(
                "skiff_proxy_sync_proxy_rules_duration_seconds",
                "Time one sync of listeners or rules took",
            )
            .buckets(vec![0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
        )
        .expect("valid metric");
        let metrics = ProxyMetrics { programmed, connections, failures, sync_seconds };
        let collectors: [Box<dyn prometheus::core::Collector>; 4] = [
            Box::new(metrics.programmed.clone()),
            Box::new(metrics.connections.clone()),
            Box::new(metrics.failures.clone()),
            Box::new(metrics.sync_seconds.clone()),
        ];
        for collector in collectors {
            if let Err(error) = registry.register(collector) {
                tracing::warn!(%error, "proxy metric not registered");
            }
        }
        metrics
    }
}

/// Where `mode` resolves to on this host.
fn resolve_mode(config: &ProxyConfig) -> ProxyMode {
    if config.mode != ProxyMode::Auto {
        return config.mode;
    }
    let root = rustix::process::geteuid().is_root();
    let prefixed = !config.rules_command_prefix.is_empty();
    if (root || prefixed) && rules::binary_exists("nft") {
        ProxyMode::Nftables
    } else if (root || prefixed) && rules::binary_exists("iptables-restore") {
        ProxyMode::Iptables
    } else {
        ProxyMode::Userspace
    }
}

/// What programs the routes.
enum Programmer {
    Userspace(userspace::Userspace),
    Rules(rules::RulesProxy),
}

impl Programmer {
    fn mode_name(&self) -> &'static str {
        match self {
            Programmer::Userspace(_) => "userspace",
            Programmer::Rules(rules) => rules.mode_name(),
        }
    }
}

/// Runs the proxy until `stop` turns true, then removes what it programmed (listeners,
/// rules).
pub async fn run(
    client: kube::Client,
    config: ProxyConfig,
    registry: &prometheus::Registry,
    stop: watch::Receiver<bool>,
) {
    let metrics = ProxyMetrics::new(registry);
    let (services, service_writer) = reflector::store::<Service>();
    let (endpoints, endpoint_writer) = reflector::store::<Endpoints>();
    let service_events = reflector::reflector(
        service_writer,
        watcher(Api::<Service>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .map(|_| ());
    let endpoint_events = reflector::reflector(
        endpoint_writer,
        watcher(Api::<Endpoints>::all(client), watcher::Config::default()),
    )
    .default_backoff()
    .map(|_| ());
    let mut events = std::pin::pin!(futures::stream::select(service_events, endpoint_events));
    let mode = resolve_mode(&config);
    let mut programmer = match mode {
        ProxyMode::Nftables | ProxyMode::Iptables => Programmer::Rules(rules::RulesProxy::new(
            mode,
            config.rules_command_prefix.clone(),
            config.pod_bridge.clone(),
        )),
        _ => Programmer::Userspace(userspace::Userspace::new(&config, metrics.clone(), &stop)),
    };
    tracing::info!(mode = programmer.mode_name(), "service proxy starting");
    let mut dirty = false;
    let mut last_sync = Instant::now() - config.sync_period_min;
    let full_sync = Duration::from_millis(PROXY_SYNC_PERIOD_MAX_MS);
    let mut stopping = stop.clone();
    loop {
        let ready = stores_ready(&services, &endpoints);
        let next_sync =
            if dirty && ready { last_sync + config.sync_period_min } else { last_sync + full_sync };
        tokio::select! {
            _ = until_stopped(&mut stopping) => break,
            event = events.next() => match event {
                Some(()) => dirty = true,
                None => break,
            },
            _ = tokio::time::sleep_until(next_sync.into()) => {
                if !ready {
                    last_sync = Instant::now();
                    continue;
                }
                sync_service_addresses(&config, &services).await;
                sync(&mut programmer, &config, &services, &endpoints, &metrics, &stop).await;
                dirty = false;
                last_sync = Instant::now();
            }
        }
    }
    match &mut programmer {
        Programmer::Userspace(userspace) => userspace.shutdown(),
        Programmer::Rules(rules) => rules.cleanup().await,
    }
    if let Some(interface) = config.service_interface.clone() {
        let remove = move || ServiceAddresses::new(&interface).remove();
        let _ = tokio::task::spawn_blocking(remove).await;
    }
    metrics.programmed.reset();
    tracing::info!("service proxy stopped");
}

/// Resolves once `stop` turns true (or its sender is gone).
pub(crate) async fn until_stopped(stop: &mut watch::Receiver<bool>) {
    // The borrow `wait_for` returns is dropped here: it must not live across an await.
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

/// Both reflectors have listed once (no partial first sync that would drop routes).
fn stores_ready(services: &Store<Service>, endpoints: &Store<Endpoints>) -> bool {
    use futures::FutureExt;
    services.wait_until_ready().now_or_never().is_some()
        && endpoints.wait_until_ready().now_or_never().is_some()
}

/// The ClusterIPs the service interface holds: IPv4, inside the service range (none without
/// one), not loopback (127/8 is local already).
pub fn service_addresses(
    services: &[std::sync::Arc<Service>],
    config: &ProxyConfig,
) -> Vec<Ipv4Addr> {
    let Some(range) = &config.cluster_ip_range else { return Vec::new() };
    let mut addresses: Vec<Ipv4Addr> = services
        .iter()
        .filter_map(|s| s.spec.as_ref()?.cluster_ip.as_deref()?.parse::<Ipv4Addr>().ok())
        .filter(|ip| !ip.is_loopback() && range.offset(*ip).is_some())
        .collect();
    addresses.sort();
    addresses.dedup();
    addresses.truncate(SERVICE_ADDRESSES_MAX);
    addresses
}

/// Puts the ClusterIPs on the service interface, when there is one (before the listeners
/// that bind them).
async fn sync_service_addresses(config: &ProxyConfig, services: &Store<Service>) {
    let Some(interface) = config.service_interface.clone() else { return };
    let wanted = service_addresses(&services.state(), config);
    let sync = move || ServiceAddresses::new(&interface).sync(&wanted);
    match tokio::task::spawn_blocking(sync).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "cannot put ClusterIPs on the service interface"),
        Err(error) => tracing::warn!(%error, "service interface sync failed"),
    }
}

/// One sync: the routes from the stores, programmed. A rules mode that fails on its first
/// sync (no permission, no binary) is replaced by userspace.
async fn sync(
    programmer: &mut Programmer,
    config: &ProxyConfig,
    services: &Store<Service>,
    endpoints: &Store<Endpoints>,
    metrics: &ProxyMetrics,
    stop: &watch::Receiver<bool>,
) {
    let started = Instant::now();
    let all_services = services.state();
    let all_endpoints = endpoints.state();
    let mut routes = model::routes(&all_services, &all_endpoints, &config.node_addresses);
    if let Some(range) = &config.cluster_ip_range {
        routes.retain(|frontend, _| {
            config.node_addresses.contains(&frontend.ip())
                || matches!(frontend.ip(), IpAddr::V4(ip) if range.offset(ip).is_some())
        });
    }
    let outcome = match programmer {
        Programmer::Userspace(userspace) => Ok(userspace.sync(&routes).await),
        Programmer::Rules(rules) => {
            let filtered = rules::restrict(&routes, config);
            rules.apply(&filtered).await.map(|count| (count, routes.len() - filtered.len()))
        }
    };
    match outcome {
        Ok((programmed, failed)) => {
            metrics.programmed.with_label_values(&[programmer.mode_name()]).set(programmed as i64);
            metrics.failures.set(failed as i64);
        }
        Err(error) => {
            let fresh = matches!(programmer, Programmer::Rules(rules) if !rules.ever_applied());
            tracing::warn!(%error, mode = programmer.mode_name(), "programming services failed");
            if fresh {
                tracing::warn!("falling back to the userspace proxy");
                metrics.programmed.reset();
                let mut userspace = userspace::Userspace::new(config, metrics.clone(), stop);
                let (programmed, failed) = userspace.sync(&routes).await;
                metrics.programmed.with_label_values(&["userspace"]).set(programmed as i64);
                metrics.failures.set(failed as i64);
                *programmer = Programmer::Userspace(userspace);
            }
        }
    }
    metrics.sync_seconds.observe(started.elapsed().as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_interface_holds_cluster_ips_inside_the_range_only() {
        let service = |cluster_ip: &str| {
            let value = serde_json::json!({"metadata": {"name": "s", "namespace": "a"},
                "spec": {"clusterIP": cluster_ip, "ports": [{"port": 80}]}});
            std::sync::Arc::new(serde_json::from_value::<Service>(value).unwrap())
        };
        let services: Vec<_> = ["10.96.0.20", "None", "10.97.0.1", "10.96.0.3", "10.96.0.20"]
            .into_iter()
            .map(service)
            .collect();
        let config = ProxyConfig {
            cluster_ip_range: Some(ServiceIpRange::parse("10.96.0.0/24").unwrap()),
            ..ProxyConfig::default()
        };
        let expected: Vec<Ipv4Addr> =
            vec!["10.96.0.3".parse().unwrap(), "10.96.0.20".parse().unwrap()];
        assert_eq!(service_addresses(&services, &config), expected);
        let loopback = ProxyConfig {
            cluster_ip_range: Some(ServiceIpRange::parse("127.96.0.0/24").unwrap()),
            ..ProxyConfig::default()
        };
        assert!(service_addresses(&[service("127.96.0.9")], &loopback).is_empty());
        assert!(service_addresses(&services, &ProxyConfig::default()).is_empty(), "no range");
    }
}
