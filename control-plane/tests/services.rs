//! Service ClusterIP and NodePort allocation: two API servers over one embedded store hand out
//! distinct values from a loopback service range (127.95.0.0/24), honour and refuse requested
//! values with Kubernetes' messages, release values on delete and on type changes, and the
//! repair pass frees leaked keys. Loopback only: 127.0.96.1-3.

mod common;

use std::collections::BTreeSet;

use control_plane::apiserver::allocator::{
    NodePortRange, ServiceIpRange, ServiceRanges, CLUSTER_IP_PREFIX, NODE_PORT_PREFIX,
};
use control_plane::apiserver::server::{ApiServerConfig, RunningApiServer};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

const RANGE: &str = "127.95.0.0/24";

/// One store member and two API servers on it, each on its own loopback address.
struct Pair {
    _dir: tempfile::TempDir,
    store: store::RunningStore,
    apis: Vec<RunningApiServer>,
    clients: Vec<kube::Client>,
}

async fn start(store_ip: &str, api_ips: &[&str]) -> Pair {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = store::StoreConfig::single("svc", Some(dir.path().join("store")));
    config.listen_client_urls = vec![format!("http://{store_ip}:2379")];
    config.advertise_client_urls = config.listen_client_urls.clone();
    config.listen_peer_urls = vec![format!("http://{store_ip}:2380")];
    config.initial_advertise_peer_urls = config.listen_peer_urls.clone();
    config.initial_cluster = format!("svc=http://{store_ip}:2380");
    let store = store::start(config).await.expect("store");
    let mut apis = Vec::new();
    let mut clients = Vec::new();
    for ip in api_ips {
        let backend = control_plane::storage::Backend::Embedded(store.store.clone());
        let config = ApiServerConfig {
            listen: format!("{ip}:6443").parse().expect("address"),
            data_dir: dir.path().join(ip),
            hosts: vec![ip.to_string()],
            token_auth_file: None,
            watch_cache_size: control_plane::limits::CACHE_HISTORY_EVENTS_MAX,
            service_ranges: ServiceRanges {
                cluster_ips: ServiceIpRange::parse(RANGE).expect("range"),
                node_ports: NodePortRange::default(),
            },
        };
        let api = control_plane::apiserver::server::start(config, backend).await.expect("api");
        let client = control_plane::client::from_kubeconfig_file(&api.admin_kubeconfig)
            .await
            .expect("admin client");
        let services: Api<Service> = Api::namespaced(client.clone(), "default");
        common::eventually(20, "the kubernetes Service", || {
            let services = services.clone();
            async move { services.get_opt("kubernetes").await.ok().flatten() }
        })
        .await;
        apis.push(api);
        clients.push(client);
    }
    Pair { _dir: dir, store, apis, clients }
}

impl Pair {
    async fn stop(self) {
        for api in self.apis {
            api.shutdown().await;
        }
        self.store.shutdown().await;
    }

    fn services(&self, index: usize) -> Api<Service> {
        Api::namespaced(self.clients[index % self.clients.len()].clone(), "default")
    }

    /// The values recorded under a range prefix.
    async fn recorded(&self, prefix: &str) -> BTreeSet<String> {
        let backend = &self.apis[0].server.backend;
        let end = control_plane::storage::backend::prefix_end(prefix.as_bytes());
        let page = backend.list(prefix.as_bytes(), &end, 0, 0).await.expect("list");
        page.kvs
            .iter()
            .map(|kv| String::from_utf8_lossy(&kv.key[prefix.len()..]).to_string())
            .collect()
    }
}

fn service(name: &str, spec: serde_json::Value) -> Service {
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("Service")
}

async fn create(api: &Api<Service>, name: &str, spec: serde_json::Value) -> kube::Result<Service> {
    api.create(&PostParams::default(), &service(name, spec)).await
}

fn cluster_ip(service: &Service) -> String {
    service.spec.as_ref().and_then(|s| s.cluster_ip.clone()).unwrap_or_default()
}

fn node_ports(service: &Service) -> Vec<i32> {
    let ports = service.spec.as_ref().and_then(|s| s.ports.clone()).unwrap_or_default();
    ports.iter().filter_map(|p| p.node_port).collect()
}

fn refusal(error: kube::Error) -> (u16, String) {
    match error {
        kube::Error::Api(status) => (status.code, status.message),
        other => panic!("expected a Status, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ips_are_distinct_across_api_servers_and_released_on_delete() {
    let pair = start("127.0.96.1", &["127.0.96.1", "127.0.96.2"]).await;
    let range = ServiceIpRange::parse(RANGE).unwrap();

    // The bootstrap Service: the first IP, port 443 to the API servers.
    let kubernetes = pair.services(0).get("kubernetes").await.expect("kubernetes Service");
    assert_eq!(cluster_ip(&kubernetes), "127.95.0.1");
    let endpoints: Api<Endpoints> = Api::namespaced(pair.clients[0].clone(), "default");
    let addresses = common::eventually(20, "both API servers in the endpoints", || {
        let endpoints = endpoints.clone();
        async move {
            let found = endpoints.get_opt("kubernetes").await.ok().flatten()?;
            let ips: BTreeSet<String> = found
                .subsets
                .unwrap_or_default()
                .iter()
                .flat_map(|s| s.addresses.clone().unwrap_or_default())
                .map(|a| a.ip)
                .collect();
            (ips.len() == 2).then_some(ips)
        }
    })
    .await;
    assert_eq!(addresses, BTreeSet::from(["127.0.96.1".into(), "127.0.96.2".into()]));

    // Concurrent creates through both API servers: all distinct, all in the range.
    let spec = json!({"ports": [{"port": 80}]});
    let creates = (0..24).map(|i| {
        let services = pair.services(i);
        let spec = spec.clone();
        async move { create(&services, &format!("s{i}"), spec).await }
    });
    let created = futures::future::join_all(creates).await;
    let ips: Vec<String> = created.into_iter().map(|s| cluster_ip(&s.expect("created"))).collect();
    let distinct: BTreeSet<&String> = ips.iter().collect();
    assert_eq!(distinct.len(), ips.len(), "duplicate ClusterIPs: {ips:?}");
    for ip in &ips {
        let offset = range.offset(ip.parse().unwrap()).expect("in range");
        assert!(offset >= 16, "dynamic picks come from above the static band: {ip}");
    }
    let mut expected: BTreeSet<String> = ips.iter().cloned().collect();
    expected.insert("127.95.0.1".into());
    assert_eq!(pair.recorded(CLUSTER_IP_PREFIX).await, expected);
    let one = pair.services(1).get("s0").await.unwrap();
    let spec = one.spec.unwrap();
    assert_eq!(spec.cluster_ips, Some(vec![ips[0].clone()]));
    assert_eq!(spec.ip_families, Some(vec!["IPv4".into()]));
    assert_eq!(spec.ip_family_policy.as_deref(), Some("SingleStack"));

    // A requested IP is honoured once, then refused through either server.
    let wanted = json!({"clusterIP": "127.95.0.5", "ports": [{"port": 80}]});
    let first = create(&pair.services(0), "fixed", wanted.clone()).await;
    assert_eq!(cluster_ip(&first.expect("requested IP")), "127.95.0.5");
    let again = create(&pair.services(1), "fixed2", wanted.clone()).await;
    let (code, message) = refusal(again.unwrap_err());
    assert_eq!(code, 422);
    assert_eq!(
        message,
        "Service \"fixed2\" is invalid: spec.clusterIP: Invalid value: \"127.95.0.5\": provided \
         IP is already allocated"
    );
    let outside = json!({"clusterIP": "10.96.0.5", "ports": [{"port": 80}]});
    let (code, message) = refusal(create(&pair.services(0), "out", outside).await.unwrap_err());
    assert_eq!(code, 422);
    assert!(message.ends_with("The range of valid IPs is 127.95.0.0/24"), "{message}");
    let taken = create(&pair.services(0), "fixed", wanted.clone()).await;
    assert_eq!(refusal(taken.unwrap_err()).0, 409, "same name: AlreadyExists");

    // The ClusterIP is immutable.
    let patch = Patch::Merge(json!({"spec": {"clusterIP": "127.95.0.6"}}));
    let changed = pair.services(1).patch("fixed", &PatchParams::default(), &patch).await;
    let (code, message) = refusal(changed.unwrap_err());
    assert_eq!(code, 422);
    assert!(message.contains("field is immutable"), "{message}");

    // Deleting releases: the IP can be requested again, through the other server.
    pair.services(1).delete("fixed", &DeleteParams::default()).await.expect("deleted");
    assert!(!pair.recorded(CLUSTER_IP_PREFIX).await.contains("127.95.0.5"));
    let reused = create(&pair.services(0), "fixed2", wanted).await;
    assert_eq!(cluster_ip(&reused.expect("released IP reused")), "127.95.0.5");

    // Headless Services hold nothing.
    let headless = json!({"clusterIP": "None", "selector": {"app": "x"}, "ports": [{"port": 80}]});
    let created = create(&pair.services(0), "headless", headless).await;
    assert_eq!(cluster_ip(&created.expect("headless")), "None");
    assert!(!pair.recorded(CLUSTER_IP_PREFIX).await.contains("None"));

    // A leak (the Service removed behind the API's back) is repaired.
    let key = "/registry/services/default/s1";
    let backend = &pair.apis[0].server.backend;
    let (kv, _) = backend.get(key.as_bytes()).await.unwrap();
    backend.delete(key.as_bytes(), kv.unwrap().mod_revision).await.unwrap();
    assert!(pair.recorded(CLUSTER_IP_PREFIX).await.contains(&ips[1]));
    let (freed, recorded) =
        control_plane::apiserver::allocator::repair(&pair.apis[1].server).await.unwrap();
    assert_eq!((freed, recorded), (1, 0));
    assert!(!pair.recorded(CLUSTER_IP_PREFIX).await.contains(&ips[1]));
    pair.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ports_are_allocated_checked_and_released() {
    let pair = start("127.0.96.3", &["127.0.96.3"]).await;
    let services = pair.services(0);
    let spec = json!({"type": "NodePort", "ports": [
        {"name": "http", "port": 80}, {"name": "admin", "port": 81}]});
    let web = create(&services, "web", spec).await.unwrap();
    let ports = node_ports(&web);
    assert_eq!(ports.len(), 2);
    assert_ne!(ports[0], ports[1]);
    assert!(ports.iter().all(|p| (30000..=32767).contains(p)), "{ports:?}");
    let web_spec = web.spec.clone().unwrap();
    assert_eq!(web_spec.external_traffic_policy.as_deref(), Some("Cluster"));
    let recorded = pair.recorded(NODE_PORT_PREFIX).await;
    assert_eq!(recorded, ports.iter().map(|p| p.to_string()).collect());

    // A requested port: honoured, then refused; out of range refused.
    let fixed = json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]});
    let created = create(&services, "fixed", fixed.clone()).await;
    assert_eq!(node_ports(&created.unwrap()), vec![30080]);
    let (code, message) = refusal(create(&services, "fixed2", fixed).await.unwrap_err());
    assert_eq!(code, 422);
    assert_eq!(
        message,
        "Service \"fixed2\" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided \
         port is already allocated"
    );
    let outside = json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 40000}]});
    let (code, message) = refusal(create(&services, "out", outside).await.unwrap_err());
    assert_eq!(code, 422);
    assert!(message.contains("The range of valid ports is 30000-32767"), "{message}");

    // A replace that leaves the NodePorts out keeps them.
    let mut replaced = web.clone();
    for port in replaced.spec.as_mut().unwrap().ports.as_mut().unwrap() {
        port.node_port = None;
    }
    let kept = services.replace("web", &PostParams::default(), &replaced).await.unwrap();
    assert_eq!(node_ports(&kept), ports);
    assert_eq!(kept.metadata.resource_version, web.metadata.resource_version, "no change");

    // NodePort -> ClusterIP releases them; back to NodePort allocates again.
    let to_cluster_ip = Patch::Merge(json!({"spec": {"type": "ClusterIP"}}));
    let plain = services.patch("web", &PatchParams::default(), &to_cluster_ip).await.unwrap();
    assert!(node_ports(&plain).is_empty());
    assert_eq!(cluster_ip(&plain), cluster_ip(&web), "the ClusterIP stays");
    assert_eq!(pair.recorded(NODE_PORT_PREFIX).await, BTreeSet::from(["30080".to_string()]));
    let to_node_port = Patch::Merge(json!({"spec": {"type": "NodePort"}}));
    let again = services.patch("web", &PatchParams::default(), &to_node_port).await.unwrap();
    assert_eq!(node_ports(&again).len(), 2);
    assert_eq!(pair.recorded(NODE_PORT_PREFIX).await.len(), 3);

    // Deleting releases the ClusterIP and the NodePorts.
    services.delete("web", &DeleteParams::default()).await.unwrap();
    assert_eq!(pair.recorded(NODE_PORT_PREFIX).await, BTreeSet::from(["30080".to_string()]));
    assert!(!pair.recorded(CLUSTER_IP_PREFIX).await.contains(&cluster_ip(&web)));
    pair.stop().await;
}
