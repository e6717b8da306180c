//! The service proxy in userspace mode against an in-process master whose service range is
//! loopback (127.95.0.0/24): a selector-less NodePort Service with hand-written Endpoints
//! naming two small TCP servers answers on its ClusterIP and on the node address's NodePort,
//! round robin; a removed endpoint stops receiving connections; a deleted Service's listener
//! closes; stopping the proxy closes the rest. Loopback only: 127.0.96.4-7.

use std::net::SocketAddr;
use std::time::Duration;

use agent::proxy::{ProxyConfig, ProxyMode};
use control_plane::apiserver::allocator::{ServiceIpRange, ServiceRanges};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MASTER: &str = "127.0.96.4";
const BACKENDS: [&str; 2] = ["127.0.96.5", "127.0.96.6"];
const NODE: &str = "127.0.96.7";
const RANGE: &str = "127.95.0.0/24";

struct Master {
    _dir: tempfile::TempDir,
    store: store::RunningStore,
    api: control_plane::apiserver::server::RunningApiServer,
    client: kube::Client,
}

async fn start_master() -> Master {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = store::StoreConfig::single("proxy", Some(dir.path().join("store")));
    config.listen_client_urls = vec![format!("http://{MASTER}:2379")];
    config.advertise_client_urls = config.listen_client_urls.clone();
    config.listen_peer_urls = vec![format!("http://{MASTER}:2380")];
    config.initial_advertise_peer_urls = config.listen_peer_urls.clone();
    config.initial_cluster = format!("proxy=http://{MASTER}:2380");
    let store = store::start(config).await.expect("store");
    let backend = control_plane::storage::Backend::Embedded(store.store.clone());
    let config = control_plane::apiserver::server::ApiServerConfig {
        listen: format!("{MASTER}:6443").parse().expect("address"),
        data_dir: dir.path().to_path_buf(),
        hosts: vec![MASTER.to_string()],
        token_auth_file: None,
        watch_cache_size: control_plane::limits::CACHE_HISTORY_EVENTS_MAX,
        service_ranges: ServiceRanges {
            cluster_ips: ServiceIpRange::parse(RANGE).expect("range"),
            ..Default::default()
        },
    };
    let api = control_plane::apiserver::server::start(config, backend).await.expect("api");
    let client = control_plane::client::from_kubeconfig_file(&api.admin_kubeconfig)
        .await
        .expect("admin client");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    eventually("the kubernetes Service", || {
        let services = services.clone();
        async move { services.get_opt("kubernetes").await.ok().flatten() }
    })
    .await;
    Master { _dir: dir, store, api, client }
}

/// A TCP server answering every connection with its name, then closing.
async fn start_backend(ip: &str, name: &'static str) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind((ip, 8080)).await.expect("backend listens");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream.write_all(name.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    })
}

/// What a connection to `address` answers; `None` if it is refused, closed without an
/// answer, or slow.
async fn fetch(address: SocketAddr) -> Option<String> {
    let limit = Duration::from_secs(2);
    let mut stream =
        tokio::time::timeout(limit, tokio::net::TcpStream::connect(address)).await.ok()?.ok()?;
    let mut answer = String::new();
    tokio::time::timeout(limit, stream.read_to_string(&mut answer)).await.ok()?.ok()?;
    (!answer.is_empty()).then_some(answer)
}

/// Polls `check` every 50 ms until it returns `Some`, failing after 20 s.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn endpoints(ips: &[&str]) -> Endpoints {
    let addresses: Vec<_> = ips.iter().map(|ip| json!({"ip": ip})).collect();
    serde_json::from_value(json!({"metadata": {"name": "echo"},
        "subsets": [{"addresses": addresses, "ports": [{"name": "tcp", "port": 8080}]}]}))
    .expect("Endpoints")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userspace_proxy_routes_cluster_ips_and_node_ports_round_robin() {
    let master = start_master().await;
    let _a = start_backend(BACKENDS[0], "a").await;
    let _b = start_backend(BACKENDS[1], "b").await;
    let services: Api<Service> = Api::namespaced(master.client.clone(), "default");
    let endpoint_api: Api<Endpoints> = Api::namespaced(master.client.clone(), "default");
    let service: Service = serde_json::from_value(json!({"metadata": {"name": "echo"},
        "spec": {"type": "NodePort", "ports": [{"name": "tcp", "port": 7000,
            "targetPort": 8080}]}}))
    .unwrap();
    let service = services.create(&PostParams::default(), &service).await.expect("Service");
    let spec = service.spec.unwrap();
    let cluster_ip: SocketAddr = format!("{}:7000", spec.cluster_ip.unwrap()).parse().unwrap();
    let node_port = spec.ports.unwrap()[0].node_port.unwrap();
    let node_port: SocketAddr = format!("{NODE}:{node_port}").parse().unwrap();
    endpoint_api.create(&PostParams::default(), &endpoints(&BACKENDS)).await.expect("Endpoints");

    let registry = prometheus::Registry::new();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let config = ProxyConfig {
        mode: ProxyMode::Userspace,
        node_addresses: vec![NODE.parse().unwrap()],
        cluster_ip_range: Some(ServiceIpRange::parse(RANGE).unwrap()),
        ..ProxyConfig::default()
    };
    let client = master.client.clone();
    let proxy_registry = registry.clone();
    let proxy = tokio::spawn(async move {
        agent::proxy::run(client, config, &proxy_registry, stopped).await;
    });

    // Both frontends answer, alternating between the two endpoints.
    eventually("the ClusterIP to answer", || fetch(cluster_ip)).await;
    eventually("the NodePort to answer", || fetch(node_port)).await;
    for frontend in [cluster_ip, node_port] {
        let mut answers = Vec::new();
        for _ in 0..6 {
            answers.push(fetch(frontend).await.expect("an answer"));
        }
        assert!(answers.windows(2).all(|w| w[0] != w[1]), "round robin: {answers:?}");
    }

    // A removed endpoint stops receiving connections.
    let mut current = endpoint_api.get("echo").await.unwrap();
    current.subsets = endpoints(&BACKENDS[..1]).subsets;
    endpoint_api.replace("echo", &PostParams::default(), &current).await.expect("replaced");
    eventually("only endpoint a", || async {
        for _ in 0..4 {
            if fetch(cluster_ip).await.as_deref() != Some("a") {
                return None;
            }
        }
        Some(())
    })
    .await;

    // A deleted Service's listeners close.
    services.delete("echo", &DeleteParams::default()).await.expect("deleted");
    eventually("the ClusterIP listener to close", || async {
        tokio::net::TcpStream::connect(cluster_ip).await.is_err().then_some(())
    })
    .await;
    assert!(tokio::net::TcpStream::connect(node_port).await.is_err(), "NodePort closed too");

    let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap();
    let proxied = text
        .lines()
        .find(|l| l.starts_with("skiff_proxy_connections_total{result=\"proxied\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(proxied >= 12, "{text}");
    assert!(text.contains("skiff_proxy_sync_proxy_rules_duration_seconds_count"), "{text}");

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), proxy).await.expect("proxy stops").unwrap();
    master.api.shutdown().await;
    master.store.shutdown().await;
}
