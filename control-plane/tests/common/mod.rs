//! An in-process single master for the control-plane tests: an embedded store member and the
//! API server on one loopback address, and an admin `kube::Client` for it.

#![allow(dead_code)]

use std::time::Duration;

use kube::api::Api;

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub store: store::RunningStore,
    pub api: control_plane::apiserver::server::RunningApiServer,
    pub client: kube::Client,
}

/// Starts a master on `ip` (store on 2379/2380, API on 6443) and waits for its defaults.
pub async fn start(ip: &str) -> Cluster {
    start_with_cache(ip, control_plane::limits::CACHE_HISTORY_EVENTS_MAX).await
}

/// [`start`] with watch caches keeping `watch_cache_size` changes.
pub async fn start_with_cache(ip: &str, watch_cache_size: usize) -> Cluster {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = store::StoreConfig::single("m1", Some(dir.path().join("store")));
    config.listen_client_urls = vec![format!("http://{ip}:2379")];
    config.advertise_client_urls = config.listen_client_urls.clone();
    config.listen_peer_urls = vec![format!("http://{ip}:2380")];
    config.initial_advertise_peer_urls = config.listen_peer_urls.clone();
    config.initial_cluster = format!("m1=http://{ip}:2380");
    let store = store::start(config).await.expect("store");
    let backend = control_plane::storage::Backend::Embedded(store.store.clone());
    let api_config = control_plane::apiserver::server::ApiServerConfig {
        listen: format!("{ip}:6443").parse().expect("address"),
        data_dir: dir.path().to_path_buf(),
        hosts: vec![ip.to_string()],
        token_auth_file: None,
        watch_cache_size,
        service_ranges: Default::default(),
    };
    let api = control_plane::apiserver::server::start(api_config, backend).await.expect("api");
    let client = control_plane::client::from_kubeconfig_file(&api.admin_kubeconfig)
        .await
        .expect("admin client");
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    for _ in 0..200 {
        if namespaces.get_opt("default").await.ok().flatten().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Cluster { dir, store, api, client }
}

impl Cluster {
    pub async fn stop(self) {
        self.api.shutdown().await;
        self.store.shutdown().await;
    }
}

/// Polls `check` every 100 ms until it returns `Some`, failing after `seconds` with `what`.
pub async fn eventually<T, F, Fut>(seconds: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {seconds} s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
