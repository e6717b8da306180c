//! `skiff agent` (a node agent: flags → [`agent::run`]), `skiff kubeconfig` (node
//! credentials from a master's cluster CA) and the hidden `skiff container-shim`.
//!
//! Credentials: an agent authenticates as `system:node:<name>` in group `system:nodes`, so
//! NodeRestriction limits it to its own Node, Lease and pods. On a master's machine:
//! `skiff kubeconfig --data-dir <master data dir> --user system:node:n1 --group system:nodes
//! -o n1.kubeconfig`, then `skiff agent --kubeconfig n1.kubeconfig --node-name n1`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use agent::proxy::ProxyMode;
use anyhow::Context as _;
use clap::{Args, ValueEnum};
use control_plane::apiserver::allocator::ServiceIpRange;

#[derive(Clone, Copy, ValueEnum)]
pub enum RuntimeFlag {
    Process,
    Docker,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum PodNetworkFlag {
    Host,
    Loopback,
    Bridge,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ProxyModeFlag {
    Userspace,
    Nftables,
    Iptables,
    Auto,
    Off,
}

/// `skiff agent`'s flags (the kubelet's names where they exist).
#[derive(Args)]
pub struct AgentFlags {
    /// Credentials and server: a kubeconfig for `system:node:<name>` (see `skiff kubeconfig`).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// API server URL, with `--token` and `--certificate-authority`, instead of a kubeconfig.
    #[arg(long)]
    server: Option<String>,
    #[arg(long)]
    token: Option<String>,
    /// The cluster CA (PEM): verifies the API server, and signs the client certificate the API
    /// server presents to this agent. Default: the kubeconfig's.
    #[arg(long)]
    certificate_authority: Option<PathBuf>,
    /// The Node's name (default: this host's name).
    #[arg(long)]
    node_name: Option<String>,
    /// `process` (containers are host processes) or `docker` (Docker Engine on its unix
    /// socket).
    #[arg(long, value_enum, default_value = "process")]
    runtime: RuntimeFlag,
    /// Where container state and logs live; a restarted agent adopts what runs there.
    #[arg(long, default_value = "skiff-agent")]
    root_dir: PathBuf,
    /// The node's InternalIP (also the pods' IP on the host pod network).
    #[arg(long, default_value = "127.0.0.1")]
    node_ip: IpAddr,
    /// `host`: pods use the node's IP. `loopback`: each pod gets its own IP from `--pod-cidr`
    /// (or the Node's spec.podCIDR), isolated only for programs that bind it ($(POD_IP)).
    /// `bridge`: each pod gets a network namespace of its own on a node bridge, with an IP
    /// from `--pod-cidr` (needs CAP_NET_ADMIN and `ip`; else host networking, with a warning).
    #[arg(long, value_enum, default_value = "host")]
    pod_network: PodNetworkFlag,
    /// The range pods get their IPs from: inside 127.0.0.0/8 for `loopback` (default
    /// 127.244.0.0/16; agents sharing a machine need disjoint ranges), outside it for
    /// `bridge` (default 10.244.0.0/24; the bridge holds its first address).
    #[arg(long, value_parser = agent::network::PodCidr::parse)]
    pod_cidr: Option<agent::network::PodCidr>,
    /// The node bridge of the `bridge` pod network.
    #[arg(long, default_value = agent::network::bridge::BRIDGE_NAME_DEFAULT)]
    pod_bridge: String,
    /// How the service proxy routes Services: `userspace` (listeners in the agent), `nftables`
    /// or `iptables` (DNAT rules; root), `auto` (rules where permitted), `off` (no proxy).
    #[arg(long, value_enum, default_value = "userspace")]
    proxy_mode: ProxyModeFlag,
    /// The cluster's service range, as given to the masters: the proxy routes ClusterIPs
    /// inside it only.
    #[arg(long, default_value = "10.96.0.0/12", value_parser = ServiceIpRange::parse)]
    service_cluster_ip_range: ServiceIpRange,
    /// Address of the agent's HTTPS server (logs, metrics).
    #[arg(long, default_value = "0.0.0.0")]
    address: IpAddr,
    /// Port of the agent's HTTPS server, published on the Node.
    #[arg(long, default_value_t = 10250)]
    port: u16,
    /// A bearer token that may also read this agent's logs and metrics.
    #[arg(long)]
    server_token: Option<String>,
    /// The node Lease's duration; it is renewed every quarter of it.
    #[arg(long, default_value_t = agent::limits::NODE_LEASE_DURATION_SECONDS_DEFAULT)]
    node_lease_duration_seconds: i32,
}

/// The pod network `--pod-network`, `--pod-cidr` and `--pod-bridge` describe.
pub fn pod_network(
    flag: PodNetworkFlag,
    cidr: Option<agent::network::PodCidr>,
    bridge: String,
) -> agent::network::PodNetwork {
    use agent::network::{PodCidr, PodNetwork, POD_CIDR_BRIDGE_DEFAULT, POD_CIDR_LOOPBACK_DEFAULT};
    let default = |text: &str| PodCidr::parse(text).expect("default pod CIDR");
    match flag {
        PodNetworkFlag::Host => PodNetwork::Host,
        PodNetworkFlag::Loopback => PodNetwork::Loopback {
            cidr: cidr.unwrap_or_else(|| default(POD_CIDR_LOOPBACK_DEFAULT)),
        },
        PodNetworkFlag::Bridge => PodNetwork::Bridge {
            cidr: cidr.unwrap_or_else(|| default(POD_CIDR_BRIDGE_DEFAULT)),
            bridge,
        },
    }
}

/// The proxy mode `--proxy-mode` names (`None`: no proxy).
pub fn proxy_mode(flag: ProxyModeFlag) -> Option<ProxyMode> {
    match flag {
        ProxyModeFlag::Userspace => Some(ProxyMode::Userspace),
        ProxyModeFlag::Nftables => Some(ProxyMode::Nftables),
        ProxyModeFlag::Iptables => Some(ProxyMode::Iptables),
        ProxyModeFlag::Auto => Some(ProxyMode::Auto),
        ProxyModeFlag::Off => None,
    }
}

#[derive(Args)]
pub struct ShimFlags {
    /// The container's state directory.
    pub dir: PathBuf,
}

/// `skiff kubeconfig`'s flags.
#[derive(Args)]
pub struct KubeconfigFlags {
    /// The master's data directory: its `pki/ca.crt` and `pki/ca.key` sign the certificate.
    #[arg(long)]
    data_dir: PathBuf,
    /// The certificate's user (CN), e.g. `system:node:n1`.
    #[arg(long)]
    user: String,
    /// Groups (O), e.g. `system:nodes`; repeatable.
    #[arg(long = "group")]
    groups: Vec<String>,
    /// The API server URL (default: the one in `<data-dir>/admin.kubeconfig`).
    #[arg(long)]
    server: Option<String>,
    /// Where to write it (default: standard output).
    #[arg(long, short)]
    output: Option<PathBuf>,
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .unwrap_or_else(|_| "localhost".into())
}

/// The server URL a kubeconfig names.
fn kubeconfig_server(text: &str) -> Option<String> {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(text).ok()?;
    kubeconfig.clusters.first()?.cluster.as_ref()?.server.clone()
}

/// The CA (PEM) a kubeconfig's first cluster names.
fn kubeconfig_ca(text: &str) -> Option<String> {
    use base64::Engine as _;
    let kubeconfig = kube::config::Kubeconfig::from_yaml(text).ok()?;
    let cluster = kubeconfig.clusters.first()?.cluster.clone()?;
    if let Some(data) = cluster.certificate_authority_data {
        let bytes = base64::engine::general_purpose::STANDARD.decode(data.trim()).ok()?;
        return String::from_utf8(bytes).ok();
    }
    std::fs::read_to_string(cluster.certificate_authority?).ok()
}

pub fn write_kubeconfig(flags: KubeconfigFlags) -> anyhow::Result<()> {
    let pki = flags.data_dir.join("pki");
    let read = |name: &str| {
        std::fs::read_to_string(pki.join(name))
            .with_context(|| format!("cannot read {}", pki.join(name).display()))
    };
    let ca =
        control_plane::pki::CertifiedKey { cert_pem: read("ca.crt")?, key_pem: read("ca.key")? };
    let server = match flags.server {
        Some(server) => server,
        None => {
            let admin = flags.data_dir.join("admin.kubeconfig");
            let text = std::fs::read_to_string(&admin)
                .with_context(|| format!("cannot read {}", admin.display()))?;
            kubeconfig_server(&text).context("admin.kubeconfig names no server; pass --server")?
        }
    };
    let groups: Vec<&str> = flags.groups.iter().map(String::as_str).collect();
    let key = control_plane::pki::issue_client_certificate(&ca, &flags.user, &groups)?;
    let credential = control_plane::pki::Credential::Certificate(key);
    let text = control_plane::pki::kubeconfig(&server, &ca.cert_pem, &flags.user, &credential);
    match flags.output {
        Some(path) => control_plane::pki::write_private(&path, &text)?,
        None => print!("{text}"),
    }
    Ok(())
}

pub async fn run_agent(flags: AgentFlags) -> anyhow::Result<()> {
    let node_name = flags.node_name.clone().unwrap_or_else(hostname);
    let given_ca = match &flags.certificate_authority {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        ),
        None => None,
    };
    let (client, ca) = match (&flags.kubeconfig, &flags.server) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let client = control_plane::client::from_kubeconfig_text(&text).await?;
            (client, given_ca.or_else(|| kubeconfig_ca(&text)))
        }
        (None, Some(server)) => {
            let token = flags.token.clone().context("--server needs --token")?;
            let ca = given_ca.context("--server needs --certificate-authority")?;
            let credential = control_plane::pki::Credential::Token(token);
            let user = format!("system:node:{node_name}");
            let text = control_plane::pki::kubeconfig(server, &ca, &user, &credential);
            (control_plane::client::from_kubeconfig_text(&text).await?, Some(ca))
        }
        (None, None) => anyhow::bail!("pass --kubeconfig, or --server with --token"),
    };
    let mut config = agent::AgentConfig::new(&node_name, &flags.node_ip.to_string());
    config.root_dir = flags.root_dir;
    config.runtime = match flags.runtime {
        RuntimeFlag::Process => agent::runtime::RuntimeKind::Process,
        RuntimeFlag::Docker => agent::runtime::RuntimeKind::Docker,
    };
    config.listen = SocketAddr::new(flags.address, flags.port);
    config.client_ca_pem = ca;
    config.server_token = flags.server_token;
    config.node_lease_duration_seconds = flags.node_lease_duration_seconds;
    config.pod_network = pod_network(flags.pod_network, flags.pod_cidr, flags.pod_bridge);
    config.proxy_mode = proxy_mode(flags.proxy_mode);
    config.service_cluster_ip_range = Some(flags.service_cluster_ip_range);
    let registry = prometheus::Registry::new();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let running = agent::run(client, config, &registry, stopped);
    tokio::pin!(running);
    tokio::select! {
        result = &mut running => return Ok(result?),
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("stopping the agent (containers keep running)");
    let _ = stop.send(true);
    running.await?;
    Ok(())
}
