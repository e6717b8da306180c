//! The agent's cache of Services (a kube-runtime reflector over every namespace, the kubelet's
//! service lister), read when a container is created to give it the service environment
//! variables of [`crate::proxy::service_env`]: the Services that exist at that moment, in the
//! pod's namespace (unless the pod sets `enableServiceLinks: false`), plus `default/kubernetes`
//! always, as the kubelet does.
//!
//! The cache holds one copy of every Service in the cluster, as the kubelet's does; the proxy
//! keeps its own (it may be off, and it also needs Endpoints).

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use tokio::sync::watch;

use crate::limits::SERVICE_CACHE_WAIT_MS;

pub type ServiceCache = Store<Service>;

/// A cache and the task that fills it until `stop`.
pub fn start(
    client: kube::Client,
    stop: watch::Receiver<bool>,
) -> (ServiceCache, tokio::task::JoinHandle<()>) {
    let (cache, writer) = reflector::store::<Service>();
    let task = tokio::spawn(async move {
        let mut stop = stop;
        let events = reflector::reflector(
            writer,
            watcher(Api::<Service>::all(client), watcher::Config::default()),
        )
        .default_backoff();
        let mut events = std::pin::pin!(events);
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(Ok(_)) => {}
                    Some(Err(error)) => tracing::warn!(%error, "service watch failed; retrying"),
                    None => return,
                },
                _ = crate::stopped(&mut stop) => return,
            }
        }
    });
    (cache, task)
}

/// Whether `service` is `default/kubernetes`, which every pod hears about.
fn is_master_service(service: &Service) -> bool {
    service.metadata.namespace.as_deref() == Some("default")
        && service.metadata.name.as_deref() == Some("kubernetes")
}

/// The Services a pod in `namespace` gets variables for (pure).
pub fn visible(services: &[&Service], namespace: &str, service_links: bool) -> Vec<Service> {
    services
        .iter()
        .filter(|s| {
            is_master_service(s)
                || (service_links && s.metadata.namespace.as_deref() == Some(namespace))
        })
        .map(|s| (*s).clone())
        .collect()
}

/// The service environment variables of `pod`'s containers, from the cache as it is now. The
/// cache must have listed once (within [`SERVICE_CACHE_WAIT_MS`]), else the error is the
/// kubelet's, and the container is tried again on the next pass.
pub async fn pod_service_env(
    cache: &ServiceCache,
    pod: &Pod,
) -> Result<Vec<(String, String)>, String> {
    let wait = Duration::from_millis(SERVICE_CACHE_WAIT_MS);
    if tokio::time::timeout(wait, cache.wait_until_ready()).await.is_err() {
        return Err(
            "services have not yet been read at least once, cannot construct envvars".to_string()
        );
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let service_links = pod.spec.as_ref().and_then(|s| s.enable_service_links).unwrap_or(true);
    let all = cache.state();
    let all: Vec<&Service> = all.iter().map(|s| s.as_ref()).collect();
    Ok(crate::proxy::service_env(&visible(&all, namespace, service_links), namespace))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(namespace: &str, name: &str, ip: &str) -> Service {
        serde_json::from_value(json!({
            "metadata": {"namespace": namespace, "name": name},
            "spec": {"clusterIP": ip, "ports": [{"port": 80}]}
        }))
        .unwrap()
    }

    #[test]
    fn service_links_choose_the_namespace_and_always_the_master_service() {
        let all = [
            service("default", "kubernetes", "127.97.0.1"),
            service("dev", "web", "127.97.0.5"),
            service("prod", "db", "127.97.0.6"),
        ];
        let refs: Vec<&Service> = all.iter().collect();
        let names = |chosen: Vec<Service>| -> Vec<String> {
            chosen.into_iter().map(|s| s.metadata.name.unwrap()).collect()
        };
        assert_eq!(names(visible(&refs, "dev", true)), ["kubernetes", "web"]);
        assert_eq!(names(visible(&refs, "dev", false)), ["kubernetes"]);
        let env = crate::proxy::service_env(&visible(&refs, "dev", true), "dev");
        assert!(env.contains(&("WEB_SERVICE_HOST".into(), "127.97.0.5".into())), "{env:?}");
        assert!(!env.iter().any(|(name, _)| name.starts_with("DB_")), "{env:?}");
    }
}
