//! `skiff`: runs Skiff's servers. `skiff store` is one store member with etcd's flags;
//! `skiff master` is a control-plane node: a store member (or external store endpoints), the
//! API server, and the leader-elected scheduler and controller manager; `skiff hollow-nodes`
//! runs fake nodes for scale tests.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use control_plane::apiserver::allocator::{NodePortRange, ServiceIpRange};
use store::config::ClusterState;
use store::StoreConfig;

#[derive(Parser)]
/// Skiff: a small Kubernetes and its etcd-compatible store.
#[command(name = "skiff", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one store member (an etcd v3 API server).
    Store(StoreFlags),
    /// Run a control-plane node: an embedded store member, the Kubernetes API server, and the
    /// leader-elected scheduler and controller manager.
    Master(MasterFlags),
    /// Run a whole cluster in one process: a store member, the API server, the scheduler, the
    /// controllers and a node agent, data in ./skiff-data.
    Up(UpFlags),
    /// Run fake nodes for scale tests: they register, renew their Leases and report the pods
    /// bound to them Running, without running anything.
    HollowNodes(HollowFlags),
    /// Run a node agent: registers a Node, runs the pods bound to it, serves their logs.
    Agent(crate::node_agent::AgentFlags),
    /// Write a kubeconfig with a client certificate from a master's cluster CA (e.g. a node
    /// agent's: `--user system:node:<name> --group system:nodes`).
    Kubeconfig(crate::node_agent::KubeconfigFlags),
    /// The process runtime's per-container supervisor (started by the agent).
    #[command(hide = true)]
    ContainerShim(crate::node_agent::ShimFlags),
}

/// What `skiff hollow-nodes` simulates.
#[derive(Args)]
struct HollowFlags {
    /// How many nodes.
    #[arg(long, default_value_t = 10)]
    count: usize,
    /// Node names are `<prefix><index>`.
    #[arg(long, default_value = "hollow-")]
    name_prefix: String,
    /// First index (to run several processes with one prefix).
    #[arg(long, default_value_t = 0)]
    first_index: usize,
    /// Credentials and server (an admin kubeconfig, or one allowed to write nodes, leases
    /// and pod status).
    #[arg(long)]
    kubeconfig: PathBuf,
    /// CPU, memory and pods each node offers.
    #[arg(long, default_value = "4")]
    cpu: String,
    #[arg(long, default_value = "16Gi")]
    memory: String,
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
}

/// kube-apiserver's flags where they exist, plus the embedded member's store flags.
#[derive(Args)]
struct MasterFlags {
    #[command(flatten)]
    store: StoreFlags,
    /// Address the API server listens on.
    #[arg(long, default_value = "127.0.0.1")]
    bind_address: std::net::IpAddr,
    /// HTTPS port of the API server.
    #[arg(long, default_value_t = 6443)]
    secure_port: u16,
    /// Static bearer tokens: lines of `token,user,uid,"group1,group2"`.
    #[arg(long)]
    token_auth_file: Option<PathBuf>,
    /// Use these etcd v3 endpoints (a `skiff store` cluster or etcd) instead of an embedded
    /// member.
    #[arg(long, value_delimiter = ',')]
    store_endpoints: Vec<String>,
    /// Extra names and IPs for the API server's certificate.
    #[arg(long, value_delimiter = ',')]
    tls_san: Vec<String>,
    /// Recent changes each watch cache keeps for watchers resuming from a resourceVersion.
    #[arg(long, default_value_t = control_plane::limits::CACHE_HISTORY_EVENTS_MAX)]
    default_watch_cache_size: usize,
    /// The IPv4 CIDR Services get their ClusterIPs from (/12 to /30); every master of a
    /// cluster must be given the same.
    #[arg(long, default_value = "10.96.0.0/12", value_parser = ServiceIpRange::parse)]
    service_cluster_ip_range: ServiceIpRange,
    /// The ports NodePort Services get theirs from (`first-last` or `first+count`).
    #[arg(long, default_value = "30000-32767", value_parser = NodePortRange::parse)]
    service_node_port_range: NodePortRange,
    /// Elect one active scheduler and controller manager across masters on Leases in
    /// kube-system (off: this master's always act).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// How long a node's Lease may go unrenewed before the node is marked Unknown and tainted
    /// (e.g. `50s`, `2m`).
    #[arg(long, default_value = "50s", value_parser = parse_duration)]
    node_monitor_grace_period: std::time::Duration,
    /// Seconds pods tolerate the not-ready and unreachable taints when they say nothing else.
    #[arg(long, default_value_t = 300)]
    default_not_ready_toleration_seconds: u64,
}

/// Parses a Go-style duration of one unit: `500ms`, `50s`, `2m`, `1h`.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number.parse().map_err(|_| format!("invalid duration {text:?}"))?;
    let millis = match unit {
        "ms" => value,
        "s" | "" => value * 1_000,
        "m" => value * 60_000,
        "h" => value * 3_600_000,
        _ => return Err(format!("invalid duration {text:?}: use ms, s, m or h")),
    };
    Ok(std::time::Duration::from_millis(millis))
}

#[derive(Clone, Copy, ValueEnum)]
enum ClusterStateFlag {
    New,
    Existing,
}

/// Flags mirror etcd's so operators know them.
#[derive(Args)]
struct StoreFlags {
    /// Human-readable name of this member.
    #[arg(long, default_value = "default")]
    name: String,
    /// Directory for the Raft log, state machine and snapshots.
    #[arg(long, default_value = "default.skiff")]
    data_dir: PathBuf,
    #[arg(long, default_value = "http://127.0.0.1:2379", value_delimiter = ',')]
    listen_client_urls: Vec<String>,
    #[arg(long, default_value = "http://127.0.0.1:2379", value_delimiter = ',')]
    advertise_client_urls: Vec<String>,
    #[arg(long, default_value = "http://127.0.0.1:2380", value_delimiter = ',')]
    listen_peer_urls: Vec<String>,
    #[arg(long, default_value = "http://127.0.0.1:2380", value_delimiter = ',')]
    initial_advertise_peer_urls: Vec<String>,
    /// `name=peer-url,...` of every founding member (default: this member alone).
    #[arg(long)]
    initial_cluster: Option<String>,
    #[arg(long, value_enum, default_value = "new")]
    initial_cluster_state: ClusterStateFlag,
    #[arg(long, default_value = "etcd-cluster")]
    initial_cluster_token: String,
    /// Extra URLs serving only /metrics (the client URLs serve it too).
    #[arg(long, value_delimiter = ',')]
    listen_metrics_urls: Vec<String>,
    /// Applied entries between snapshots of the state machine.
    #[arg(long, default_value_t = store::limits::SNAPSHOT_LOGS_SINCE_LAST)]
    snapshot_count: u64,
    /// Milliseconds between leader heartbeats.
    #[arg(long, default_value_t = 100)]
    heartbeat_interval: u64,
    /// Milliseconds without a heartbeat before a follower campaigns.
    #[arg(long, default_value_t = 1000)]
    election_timeout: u64,
    /// Backend bytes past which the NOSPACE alarm is raised and writes are refused
    /// (0: the default, 2 GiB, as etcd).
    #[arg(long, default_value_t = 0)]
    quota_backend_bytes: u64,
    /// TLS is not implemented yet; these flags are refused rather than ignored.
    #[arg(long, hide = true)]
    cert_file: Option<String>,
    #[arg(long, hide = true)]
    key_file: Option<String>,
    #[arg(long, hide = true)]
    trusted_ca_file: Option<String>,
}

impl StoreFlags {
    fn into_config(self) -> anyhow::Result<StoreConfig> {
        if self.cert_file.is_some() || self.key_file.is_some() || self.trusted_ca_file.is_some() {
            anyhow::bail!(
                "TLS (--cert-file, --key-file, --trusted-ca-file) is not implemented yet"
            );
        }
        let initial_cluster = self.initial_cluster.unwrap_or_else(|| {
            let urls = &self.initial_advertise_peer_urls;
            urls.iter().map(|u| format!("{}={u}", self.name)).collect::<Vec<_>>().join(",")
        });
        Ok(StoreConfig {
            name: self.name,
            data_dir: Some(self.data_dir),
            listen_client_urls: self.listen_client_urls,
            advertise_client_urls: self.advertise_client_urls,
            listen_peer_urls: self.listen_peer_urls,
            initial_advertise_peer_urls: self.initial_advertise_peer_urls,
            initial_cluster,
            initial_cluster_state: match self.initial_cluster_state {
                ClusterStateFlag::New => ClusterState::New,
                ClusterStateFlag::Existing => ClusterState::Existing,
            },
            initial_cluster_token: self.initial_cluster_token,
            listen_metrics_urls: self.listen_metrics_urls,
            snapshot_count: self.snapshot_count,
            heartbeat_interval_ms: self.heartbeat_interval,
            election_timeout_ms: self.election_timeout,
            quota_backend_bytes: self.quota_backend_bytes,
        })
    }
}

async fn run_store(flags: StoreFlags) -> anyhow::Result<()> {
    let config = flags.into_config()?;
    let running = store::start(config).await?;
    for address in &running.client_addresses {
        tracing::info!(%address, "serving etcd v3 gRPC and /metrics");
    }
    running.run_until_signal().await?;
    Ok(())
}

/// A running master: its embedded member (unless external), API server and components.
struct RunningMaster {
    embedded: Option<store::RunningStore>,
    api: control_plane::apiserver::server::RunningApiServer,
    components: control_plane::master::Components,
}

impl RunningMaster {
    /// Waits for ctrl-c, SIGTERM or the member's removal from the store cluster (an error, as
    /// etcd exits when removed), then stops everything in order.
    async fn run_until_signal(
        self,
        also_stop: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let removed = async {
            match &self.embedded {
                Some(running) => running.removed().await,
                None => std::future::pending().await,
            }
        };
        let outcome = tokio::select! {
            _ = tokio::signal::ctrl_c() => Ok(()),
            _ = terminate.recv() => Ok(()),
            reason = removed => Err(reason),
        };
        match &outcome {
            Ok(()) => tracing::info!("shutting down"),
            Err(reason) => tracing::error!(%reason, "shutting down"),
        }
        also_stop.await;
        self.components.shutdown().await;
        self.api.shutdown().await;
        if let Some(running) = self.embedded {
            running.shutdown().await;
        }
        outcome?;
        Ok(())
    }
}

async fn run_master(flags: MasterFlags) -> anyhow::Result<()> {
    start_master(flags).await?.run_until_signal(async {}).await
}

async fn start_master(flags: MasterFlags) -> anyhow::Result<RunningMaster> {
    let data_dir = flags.store.data_dir.clone();
    let name = flags.store.name.clone();
    let (backend, embedded) = if flags.store_endpoints.is_empty() {
        let running = store::start(flags.store.into_config()?).await?;
        (control_plane::storage::Backend::Embedded(running.store.clone()), Some(running))
    } else {
        (control_plane::storage::Backend::remote(&flags.store_endpoints)?, None)
    };
    let mut hosts = Vec::new();
    if flags.bind_address.is_unspecified() {
        hosts.push("127.0.0.1".to_string());
    } else {
        hosts.push(flags.bind_address.to_string());
    }
    hosts.push("localhost".to_string());
    hosts.extend(flags.tls_san);
    let config = control_plane::apiserver::server::ApiServerConfig {
        listen: std::net::SocketAddr::new(flags.bind_address, flags.secure_port),
        data_dir,
        hosts,
        token_auth_file: flags.token_auth_file,
        watch_cache_size: flags.default_watch_cache_size,
        service_ranges: control_plane::apiserver::allocator::ServiceRanges {
            cluster_ips: flags.service_cluster_ip_range,
            node_ports: flags.service_node_port_range,
        },
    };
    let api = control_plane::apiserver::server::start(config, backend).await?;
    let components = control_plane::master::start(
        &api,
        control_plane::master::ComponentsConfig {
            name: name.clone(),
            leader_elect: flags.leader_elect,
            scheduler: control_plane::scheduler::SchedulerConfig::default(),
            controllers: control_plane::controllers::ControllerManagerConfig {
                host: name,
                node_monitor_grace_period: flags.node_monitor_grace_period,
                default_not_ready_toleration: std::time::Duration::from_secs(
                    flags.default_not_ready_toleration_seconds,
                ),
                ..Default::default()
            },
        },
    )
    .await?;
    let kubeconfig = api.admin_kubeconfig.display().to_string();
    tracing::info!(address = %api.address, %kubeconfig, "master ready");
    Ok(RunningMaster { embedded, api, components })
}

/// `skiff up`: a whole cluster in one process.
#[derive(Args)]
struct UpFlags {
    /// Where the store, the CA, `admin.kubeconfig` and the agent's containers live.
    #[arg(long, default_value = "skiff-data")]
    data_dir: PathBuf,
    /// The address everything listens on: the store (2379, peers 2380), the API server
    /// (6443), the agent (10250); it is also the node's IP.
    #[arg(long, default_value = "127.0.0.1")]
    address: std::net::IpAddr,
    /// The node's name (default: this host's name).
    #[arg(long)]
    node_name: Option<String>,
    /// Where Services get their ClusterIPs. The default is loopback, so the agent's userspace
    /// proxy can serve them without root.
    #[arg(long, default_value = "127.96.0.0/16")]
    service_cluster_ip_range: String,
    /// `loopback`: pods get their own loopback addresses from `--pod-cidr` (programs bind
    /// `$POD_IP`; no root needed). `bridge`: each pod gets a network namespace of its own on
    /// a node bridge (needs CAP_NET_ADMIN and `ip`; else host networking, with a warning).
    /// `host`: pods use the node's address.
    #[arg(long, value_enum, default_value = "loopback")]
    pod_network: crate::node_agent::PodNetworkFlag,
    /// The range pods get their addresses from: inside 127.0.0.0/8 for `loopback` (default
    /// 127.244.0.0/16), outside it for `bridge` (default 10.244.0.0/24).
    #[arg(long, value_parser = agent::network::PodCidr::parse)]
    pod_cidr: Option<agent::network::PodCidr>,
    /// The node bridge of the `bridge` pod network.
    #[arg(long, default_value = agent::network::bridge::BRIDGE_NAME_DEFAULT)]
    pod_bridge: String,
    /// How the agent's service proxy routes Services: `userspace`, `nftables`, `iptables`,
    /// `auto` or `off` (as `skiff agent --proxy-mode`).
    #[arg(long, value_enum, default_value = "userspace")]
    proxy_mode: crate::node_agent::ProxyModeFlag,
}

/// The master flags `skiff up` runs with, parsed as if typed (so defaults stay in one place).
#[derive(Parser)]
struct MasterOnly {
    #[command(flatten)]
    master: MasterFlags,
}

async fn run_up(flags: UpFlags) -> anyhow::Result<()> {
    let ip = flags.address.to_string();
    let url = |port: u16| format!("http://{ip}:{port}");
    let data_dir = flags.data_dir.display().to_string();
    let args = [
        "skiff".to_string(),
        "--name".into(),
        "skiff".into(),
        "--data-dir".into(),
        data_dir.clone(),
        "--listen-client-urls".into(),
        url(2379),
        "--advertise-client-urls".into(),
        url(2379),
        "--listen-peer-urls".into(),
        url(2380),
        "--initial-advertise-peer-urls".into(),
        url(2380),
        "--initial-cluster".into(),
        format!("skiff={}", url(2380)),
        "--bind-address".into(),
        ip.clone(),
        "--service-cluster-ip-range".into(),
        flags.service_cluster_ip_range.clone(),
        "--leader-elect=false".into(),
    ];
    let master = MasterOnly::try_parse_from(args)?.master;
    let running = start_master(master).await?;
    let node_name = flags.node_name.clone().unwrap_or_else(crate::node_agent::hostname);
    let text =
        running.api.component_kubeconfig(&format!("system:node:{node_name}"), &["system:nodes"])?;
    let client = control_plane::client::from_kubeconfig_text(&text).await?;
    let mut config = agent::AgentConfig::new(&node_name, &ip);
    config.root_dir = flags.data_dir.join("agent");
    config.listen = std::net::SocketAddr::new(flags.address, 10250);
    config.client_ca_pem = Some(running.api.ca_pem().to_string());
    config.pod_network =
        crate::node_agent::pod_network(flags.pod_network, flags.pod_cidr, flags.pod_bridge.clone());
    config.proxy_mode = crate::node_agent::proxy_mode(flags.proxy_mode);
    config.service_cluster_ip_range = Some(
        control_plane::apiserver::allocator::ServiceIpRange::parse(&flags.service_cluster_ip_range)
            .map_err(anyhow::Error::msg)?,
    );
    let registry = running.api.server.metrics.registry().clone();
    let (stop_agent, agent_stopped) = tokio::sync::watch::channel(false);
    let agent =
        tokio::spawn(async move { agent::run(client, config, &registry, agent_stopped).await });
    let kubeconfig = running.api.admin_kubeconfig.display().to_string();
    eprintln!(
        "\nskiff is up: store on {ip}:2379, API server on https://{ip}:6443, node {node_name}.\n\
         Try:\n  export KUBECONFIG={kubeconfig}\n  kubectl get nodes\n  \
         kubectl apply -f examples/web.yaml\n  kubectl get pods,services -o wide\n\
         ctrl-c stops skiff; running pods' processes stay and are adopted by the next `skiff up`.\n"
    );
    running
        .run_until_signal(async move {
            let _ = stop_agent.send(true);
            match agent.await {
                Ok(Err(error)) => tracing::error!(%error, "agent failed"),
                Err(error) => tracing::error!(%error, "agent task failed"),
                Ok(Ok(())) => {}
            }
        })
        .await
}

async fn run_hollow_nodes(flags: HollowFlags) -> anyhow::Result<()> {
    let client = control_plane::client::from_kubeconfig_file(&flags.kubeconfig).await?;
    let mut config = control_plane::hollow::HollowConfig::new(&flags.name_prefix, flags.count);
    config.first_index = flags.first_index;
    config.cpu = flags.cpu;
    config.memory = flags.memory;
    config.pods = flags.max_pods;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let nodes = tokio::spawn(control_plane::hollow::run(client, config, stopped));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    let _ = stop.send(true);
    nodes.await??;
    Ok(())
}

/// The `skiff` binary's entry point.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The shim runs for the container's whole life: no runtime, no log setup.
    if let Command::ContainerShim(flags) = &cli.command {
        return agent::runtime::shim::main(&flags.dir);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Store(flags) => run_store(flags).await,
            Command::Master(flags) => run_master(flags).await,
            Command::Up(flags) => run_up(flags).await,
            Command::HollowNodes(flags) => run_hollow_nodes(flags).await,
            Command::Agent(flags) => crate::node_agent::run_agent(flags).await,
            Command::Kubeconfig(flags) => crate::node_agent::write_kubeconfig(flags),
            Command::ContainerShim(_) => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("skiff: {error:#}");
            ExitCode::FAILURE
        }
    }
}
