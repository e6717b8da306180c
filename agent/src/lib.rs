//! Node agent (Skiff's kubelet): registers its Node and renews its Lease, runs the pods bound to
//! it through a container [`runtime`], probes them, reports their status, and serves their
//! logs over HTTPS for the API server's `pods/log`. Pods get the node's address, loopback
//! addresses of their own, or network namespaces of their own on a node bridge
//! ([`network`]); the service [`proxy`] runs beside them.
//!
//! Entry point: [`run`], with a `kube::Client` the caller builds (the agent authenticates as
//! `system:node:<name>` in group `system:nodes`, so the API server's NodeRestriction limits it
//! to its own Node, Lease and pods).

pub mod backoff;
pub mod exec;
pub mod host;
pub mod limits;
pub mod logs;
pub mod metrics;
pub mod network;
pub mod node;
pub mod pod;
pub mod probe;
pub mod proxy;
pub mod runtime;
pub mod server;
pub mod services;

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use control_plane::apiserver::allocator::ServiceIpRange;
use tokio::sync::watch;

use crate::network::{bridge, BridgeNetwork, PodAddressing, PodCidr, PodIpam, PodNetwork};
use crate::proxy::{ProxyConfig, ProxyMode};
use crate::runtime::process::{ProcessRuntime, ProcessRuntimeConfig};
use crate::runtime::{ContainerState, Runtime, RuntimeKind};
pub use crate::server::ServingCertificate;

/// How an agent runs.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The Node's name (`--node-name`).
    pub node_name: String,
    /// The node's InternalIP, and the pods' IP on host networking (`--node-ip`).
    pub node_ip: String,
    /// Container state and logs (`--root-dir`).
    pub root_dir: PathBuf,
    pub runtime: RuntimeKind,
    /// The agent's HTTPS server (`--address`, `--port`); its port is published as the Node's
    /// `daemonEndpoints.kubeletEndpoint.Port`.
    pub listen: SocketAddr,
    /// Client certificates signed by this CA (the cluster CA, PEM) authenticate to the agent's
    /// server when their user is the API server's (see [`server`]).
    pub client_ca_pem: Option<String>,
    /// A bearer token that also authenticates to the agent's server.
    pub server_token: Option<String>,
    /// A serving certificate; `None` makes a self-signed one.
    pub serving_certificate: Option<ServingCertificate>,
    /// How the `process` runtime runs a container's shim: a program and its first arguments,
    /// to which the container's directory is appended (`skiff container-shim <dir>`).
    pub shim_command: Vec<OsString>,
    /// The node Lease's duration (renewed every quarter of it).
    pub node_lease_duration_seconds: i32,
    /// How pods are addressed (`--pod-network`, `--pod-cidr`, `--pod-bridge`).
    pub pod_network: PodNetwork,
    /// The service proxy's mode (`--proxy-mode`); `None` runs no proxy.
    pub proxy_mode: Option<ProxyMode>,
    /// The cluster's service range (`--service-cluster-ip-range`, the API server's): the proxy
    /// routes ClusterIPs inside it only.
    pub service_cluster_ip_range: Option<ServiceIpRange>,
}

impl AgentConfig {
    /// Defaults for node `node_name` at `node_ip`: state under `./skiff-agent`, the process
    /// runtime with this executable as the shim (`<current exe> container-shim`), port 10250,
    /// host pod networking, the userspace proxy for the default service range 10.96.0.0/12.
    pub fn new(node_name: &str, node_ip: &str) -> AgentConfig {
        let exe = std::env::current_exe().map(OsString::from).unwrap_or_else(|_| "skiff".into());
        AgentConfig {
            node_name: node_name.to_string(),
            node_ip: node_ip.to_string(),
            root_dir: PathBuf::from("skiff-agent"),
            runtime: RuntimeKind::Process,
            listen: SocketAddr::from(([0, 0, 0, 0], 10250)),
            client_ca_pem: None,
            server_token: None,
            serving_certificate: None,
            shim_command: vec![exe, "container-shim".into()],
            node_lease_duration_seconds: limits::NODE_LEASE_DURATION_SECONDS_DEFAULT,
            pod_network: PodNetwork::Host,
            proxy_mode: Some(ProxyMode::Userspace),
            service_cluster_ip_range: Some(ServiceIpRange::default()),
        }
    }
}

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Config(String),
    #[error("the {0} runtime is not implemented yet; run the agent with --runtime process")]
    RuntimeNotImplemented(&'static str),
    #[error("container runtime: {0}")]
    Runtime(#[from] runtime::RuntimeError),
    #[error("cannot listen on {address}: {reason}")]
    Listen { address: SocketAddr, reason: String },
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("pod network: {0}")]
    Network(#[from] network::NetworkError),
}

fn check(config: &AgentConfig) -> Result<(), AgentError> {
    if config.node_name.is_empty() {
        return Err(AgentError::Config("the node name is empty".into()));
    }
    if config.node_ip.parse::<std::net::IpAddr>().is_err() {
        return Err(AgentError::Config(format!("--node-ip {:?} is not an IP", config.node_ip)));
    }
    match &config.pod_network {
        PodNetwork::Loopback { cidr } if !cidr.is_loopback() => {
            return Err(AgentError::Config(format!(
                "--pod-cidr {cidr} is not inside 127.0.0.0/8, which the loopback pod network needs"
            )));
        }
        PodNetwork::Bridge { cidr, bridge: name } => {
            if cidr.is_loopback() {
                return Err(AgentError::Config(format!(
                    "--pod-cidr {cidr} is a loopback range; the bridge pod network needs \
                     another (e.g. 10.244.0.0/24)"
                )));
            }
            bridge::check_interface_name(name)
                .map_err(|e| AgentError::Config(format!("--pod-bridge: {e}")))?;
        }
        _ => {}
    }
    if config.node_lease_duration_seconds < 1 {
        return Err(AgentError::Config("the node lease duration must be at least 1 s".into()));
    }
    std::fs::create_dir_all(config.root_dir.join("pods")).map_err(|e| {
        AgentError::Config(format!("cannot create {}: {e}", config.root_dir.display()))
    })
}

/// Runs the agent until `stop` turns true. Containers keep running when it stops; the next
/// agent on the same `root_dir` adopts them.
pub async fn run(
    client: kube::Client,
    config: AgentConfig,
    registry: &prometheus::Registry,
    stop: watch::Receiver<bool>,
) -> Result<(), AgentError> {
    check(&config)?;
    let runtime: Arc<dyn Runtime> = match config.runtime {
        RuntimeKind::Process => Arc::new(ProcessRuntime::new(ProcessRuntimeConfig {
            root_dir: config.root_dir.clone(),
            shim_command: config.shim_command.clone(),
        })?),
        RuntimeKind::Docker => Arc::new(
            runtime::docker::DockerRuntime::connect(runtime::docker::DockerRuntimeConfig::new(
                &config.node_name,
            ))
            .await?,
        ),
    };
    let network = pod_addressing(&client, &config).await?;
    let (services, services_task) = services::start(client.clone(), stop.clone());
    let metrics = metrics::Metrics::new(registry);
    let recorder = Arc::new(control_plane::events::Recorder::new(
        client.clone(),
        "kubelet",
        &config.node_name,
        registry,
    ));
    let context = Arc::new(pod::NodeContext::new(
        client.clone(),
        config.node_name.clone(),
        config.node_ip.clone(),
        config.root_dir.clone(),
        runtime.clone(),
        metrics.clone(),
        recorder,
        network,
        services,
    ));
    let server_config = server::ServerConfig {
        listen: config.listen,
        client_ca_pem: config.client_ca_pem.clone(),
        token: config.server_token.clone(),
        certificate: config.serving_certificate.clone(),
        hosts: vec![config.node_name.clone(), config.node_ip.clone()],
    };
    let server =
        server::start(server_config, context.clone(), registry.clone(), stop.clone()).await?;
    let identity = node::NodeIdentity {
        name: config.node_name.clone(),
        ip: config.node_ip.clone(),
        port: config.listen.port(),
        runtime_version: runtime.version(),
        root_dir: config.root_dir.clone(),
        lease_duration_seconds: config.node_lease_duration_seconds,
    };
    tracing::info!(node = %config.node_name, runtime = runtime.name(), "agent starting");
    let pod_bridge = context.network.bridge().map(str::to_string);
    let proxy = config.proxy_mode.map(|mode| {
        let proxy_config = ProxyConfig {
            mode,
            node_addresses: config.node_ip.parse::<IpAddr>().into_iter().collect(),
            cluster_ip_range: config.service_cluster_ip_range,
            service_interface: pod_bridge.as_ref().map(|_| bridge::SERVICE_INTERFACE.into()),
            pod_bridge,
            ..ProxyConfig::default()
        };
        let (client, registry, stop) = (client.clone(), registry.clone(), stop.clone());
        tokio::spawn(async move { proxy::run(client, proxy_config, &registry, stop).await })
    });
    let node = tokio::spawn(node::run(client, identity, stop.clone()));
    let pods = tokio::spawn(pod::run(context.clone(), stop.clone()));
    let gauges = tokio::spawn(update_gauges(context, stop.clone()));
    let proxy = async move {
        if let Some(proxy) = proxy {
            let _ = proxy.await;
        }
    };
    let _ = tokio::join!(node, pods, gauges, services_task, proxy);
    server.abort();
    let _ = server.await;
    tracing::info!(node = %config.node_name, "agent stopped; containers keep running");
    Ok(())
}

/// The pod network as it runs. Loopback: the Node's `spec.podCIDR` when it is a loopback
/// range (read once at start; a Node not yet registered has none), else the configured
/// range. Bridge: likewise with a range that is not loopback, after the capability check.
async fn pod_addressing(
    client: &kube::Client,
    config: &AgentConfig,
) -> Result<PodAddressing, AgentError> {
    let (configured, bridge_name) = match &config.pod_network {
        PodNetwork::Host => return Ok(host_network(config)),
        PodNetwork::Loopback { cidr } => (*cidr, None),
        PodNetwork::Bridge { cidr, bridge } => match bridge_unavailable() {
            Some(reason) => {
                tracing::warn!(
                    "bridge pod network unavailable ({reason}); FALLING BACK TO HOST NETWORKING: \
                     pods share the node's address and port space"
                );
                return Ok(host_network(config));
            }
            None => (*cidr, Some(bridge.clone())),
        },
    };
    let bridged = bridge_name.is_some();
    let cidr = assigned_cidr(client, config, bridged).await.unwrap_or(configured);
    let mut reserved: Vec<std::net::Ipv4Addr> = config.node_ip.parse().into_iter().collect();
    let Some(bridge_name) = bridge_name else {
        let ipam = PodIpam::open(&config.root_dir, cidr, reserved)?;
        tracing::info!(%cidr, "loopback pod network: each pod gets its own address");
        return Ok(PodAddressing::Loopback(ipam));
    };
    reserved.push(bridge::gateway(&cidr));
    let ipam = PodIpam::open(&config.root_dir, cidr, reserved)?;
    // DNAT'd pod-to-Service-to-pod traffic is routed by this node; userspace ends it here.
    let forwarding = matches!(
        config.proxy_mode,
        Some(ProxyMode::Nftables | ProxyMode::Iptables | ProxyMode::Auto)
    );
    let bridge = network::blocking(|| BridgeNetwork::start(ipam, &bridge_name, forwarding))?;
    tracing::info!(
        %cidr, bridge = %bridge_name, gateway = %bridge::gateway(&cidr),
        "bridge pod network: each pod gets a network namespace of its own"
    );
    Ok(PodAddressing::Bridge(bridge))
}

fn host_network(config: &AgentConfig) -> PodAddressing {
    tracing::warn!(
        node_ip = %config.node_ip,
        "host pod network: pods use the node's address and are not isolated; two pods on one \
         port collide (--pod-network bridge gives each its own namespace)"
    );
    PodAddressing::Host
}

/// Why this agent cannot run the bridge pod network, if it cannot.
fn bridge_unavailable() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let capabilities = bridge::effective_capabilities(&status).unwrap_or(0);
    for (number, name) in
        [(bridge::CAP_NET_ADMIN, "CAP_NET_ADMIN"), (bridge::CAP_SYS_ADMIN, "CAP_SYS_ADMIN")]
    {
        if !bridge::has_capability(capabilities, number) {
            return Some(format!("the agent lacks {name}; run it as root"));
        }
    }
    if !network::iproute::ip_available() {
        return Some("iproute2's `ip` is not installed".into());
    }
    None
}

/// The Node's `spec.podCIDR`, when it suits the pod network (loopback or not, as `bridged`
/// says).
async fn assigned_cidr(
    client: &kube::Client,
    config: &AgentConfig,
    bridged: bool,
) -> Option<PodCidr> {
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    let assigned = match nodes.get_opt(&config.node_name).await {
        Ok(node) => node.and_then(|n| n.spec?.pod_cidr)?,
        Err(error) => {
            tracing::warn!(%error, "cannot read the Node's podCIDR; using --pod-cidr");
            return None;
        }
    };
    match PodCidr::parse(&assigned) {
        Ok(cidr) if cidr.is_loopback() != bridged => Some(cidr),
        _ => {
            let wanted = if bridged { "a non-loopback" } else { "a loopback" };
            tracing::warn!(
                pod_cidr = %assigned,
                "the Node's podCIDR is not {wanted} IPv4 range; using --pod-cidr"
            );
            None
        }
    }
}

/// Resolves once `stop` turns true (or its sender is gone); holds no borrow of the value, so
/// it may sit in a `select!` whose other branches await.
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Keeps the pod and container gauges current.
async fn update_gauges(context: Arc<pod::NodeContext>, mut stop: watch::Receiver<bool>) {
    let metrics = &context.metrics;
    loop {
        if let Ok(all) = context.runtime.list_containers(None).await {
            let mut by_state: HashMap<&str, i64> =
                [("created", 0), ("running", 0), ("exited", 0)].into_iter().collect();
            let mut running_pods = HashSet::new();
            for container in &all {
                let state = match container.state {
                    ContainerState::Created => "created",
                    ContainerState::Running { .. } => {
                        running_pods.insert(container.pod_uid.clone());
                        "running"
                    }
                    ContainerState::Exited { .. } => "exited",
                };
                *by_state.entry(state).or_default() += 1;
            }
            for (state, count) in by_state {
                metrics.containers.with_label_values(&[state]).set(count);
            }
            metrics.running_pods.set(running_pods.len() as i64);
        }
        let phases = context.phases.lock().expect("phases").clone();
        let mut by_phase: HashMap<String, i64> = ["Pending", "Running", "Succeeded", "Failed"]
            .iter()
            .map(|p| (p.to_string(), 0))
            .collect();
        for phase in phases.values() {
            *by_phase.entry(phase.clone()).or_default() += 1;
        }
        for (phase, count) in by_phase {
            metrics.pods_by_phase.with_label_values(&[&phase]).set(count);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(limits::POD_SYNC_PERIOD_MS * 5)) => {}
            _ = crate::stopped(&mut stop) => return,
        }
    }
}
