//! Userspace mode: one TCP listener per frontend. Each accepted connection goes to the next
//! backend in round-robin order (the next ones are tried when it does not accept within the
//! connect timeout, up to `PROXY_CONNECT_ATTEMPTS_MAX`), and bytes are copied both ways until
//! either side closes. A frontend without backends accepts and closes at once (the client sees
//! the connection end, as kube-proxy's REJECT). At most `connections_per_port_max`
//! connections per frontend are proxied at once; further ones wait in the listen backlog.
//!
//! A sync keeps listeners whose frontend still exists (swapping their backend list in
//! place), closes the listeners of removed frontends (their established connections run to
//! their end, as conntrack keeps them in the rule modes), and binds new ones. A frontend that
//! cannot be bound (a ClusterIP that is not a local address, a port in use) is logged once and
//! tried again on every sync.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use super::model::Routes;
use super::{ProxyConfig, ProxyMetrics, PROXY_CONNECT_ATTEMPTS_MAX, PROXY_COPY_BUFFER_BYTES};

/// A frontend's backends, shared with its listener task.
#[derive(Default)]
struct Backends {
    list: RwLock<Vec<SocketAddr>>,
    next: AtomicUsize,
}

impl Backends {
    /// The backends to try for one connection: the next in turn first, then the ones after.
    fn order(&self) -> Vec<SocketAddr> {
        let list = self.list.read().expect("backends lock");
        if list.is_empty() {
            return Vec::new();
        }
        let first = self.next.fetch_add(1, Ordering::Relaxed) % list.len();
        let attempts = list.len().min(PROXY_CONNECT_ATTEMPTS_MAX);
        (0..attempts).map(|i| list[(first + i) % list.len()]).collect()
    }
}

struct Listener {
    backends: Arc<Backends>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The userspace proxy's listeners.
pub struct Userspace {
    listeners: BTreeMap<SocketAddr, Listener>,
    /// Frontends whose bind failed (reported once).
    failed: BTreeSet<SocketAddr>,
    metrics: ProxyMetrics,
    connections_max: usize,
    connect_timeout: Duration,
    stop: watch::Receiver<bool>,
}

impl Userspace {
    pub fn new(
        config: &ProxyConfig,
        metrics: ProxyMetrics,
        stop: &watch::Receiver<bool>,
    ) -> Userspace {
        Userspace {
            listeners: BTreeMap::new(),
            failed: BTreeSet::new(),
            metrics,
            connections_max: config.connections_per_port_max.max(1),
            connect_timeout: config.connect_timeout,
            stop: stop.clone(),
        }
    }

    /// Makes the listeners match `routes`; returns (frontends listening, frontends failed).
    pub async fn sync(&mut self, routes: &Routes) -> (usize, usize) {
        self.listeners.retain(|frontend, _| routes.contains_key(frontend));
        self.failed.retain(|frontend| routes.contains_key(frontend));
        let mut failed = 0;
        for (frontend, route) in routes {
            if let Some(listener) = self.listeners.get(frontend) {
                *listener.backends.list.write().expect("backends lock") = route.backends.clone();
                continue;
            }
            let socket = match TcpListener::bind(frontend).await {
                Ok(socket) => socket,
                Err(error) => {
                    failed += 1;
                    if self.failed.insert(*frontend) {
                        tracing::warn!(%frontend, service = %route.service, %error,
                            "cannot listen for a service (not a local address? use a rules \
                             mode)");
                    }
                    continue;
                }
            };
            self.failed.remove(frontend);
            let backends = Arc::new(Backends::default());
            *backends.list.write().expect("backends lock") = route.backends.clone();
            let task = tokio::spawn(serve(
                socket,
                backends.clone(),
                Arc::new(Semaphore::new(self.connections_max)),
                self.metrics.clone(),
                self.connect_timeout,
                self.stop.clone(),
            ));
            tracing::debug!(%frontend, service = %route.service, "listening");
            self.listeners.insert(*frontend, Listener { backends, task });
        }
        (self.listeners.len(), failed)
    }

    /// Closes every listener (connections end when `stop` turns true).
    pub fn shutdown(&mut self) {
        self.listeners.clear();
    }
}

async fn serve(
    socket: TcpListener,
    backends: Arc<Backends>,
    connections: Arc<Semaphore>,
    metrics: ProxyMetrics,
    connect_timeout: Duration,
    stop: watch::Receiver<bool>,
) {
    loop {
        // A permit first: over the limit, clients wait in the backlog instead of being refused.
        let Ok(permit) = connections.clone().acquire_owned().await else { return };
        let client = match socket.accept().await {
            Ok((client, _)) => client,
            Err(error) => {
                // Out of descriptors, typically: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let order = backends.order();
        let metrics = metrics.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let result = proxy(client, &order, connect_timeout, stop).await;
            metrics.connections.with_label_values(&[result]).inc();
        });
    }
}

/// Proxies one connection; returns its outcome for the metrics.
async fn proxy(
    mut client: TcpStream,
    order: &[SocketAddr],
    connect_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) -> &'static str {
    if order.is_empty() {
        let _ = client.shutdown().await;
        return "no_endpoints";
    }
    let mut server = None;
    for backend in order {
        match tokio::time::timeout(connect_timeout, TcpStream::connect(backend)).await {
            Ok(Ok(stream)) => {
                server = Some(stream);
                break;
            }
            Ok(Err(error)) => tracing::debug!(%backend, %error, "endpoint refused"),
            Err(_) => tracing::debug!(%backend, "endpoint did not answer in time"),
        }
    }
    let Some(mut server) = server else {
        let _ = client.shutdown().await;
        return "unreachable";
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let copy = tokio::io::copy_bidirectional_with_sizes(
        &mut client,
        &mut server,
        PROXY_COPY_BUFFER_BYTES,
        PROXY_COPY_BUFFER_BYTES,
    );
    tokio::select! {
        _ = copy => {}
        _ = super::until_stopped(&mut stop) => {}
    }
    "proxied"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_are_taken_in_turn_with_the_next_ones_as_fallbacks() {
        let backends = Backends::default();
        assert!(backends.order().is_empty());
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        *backends.list.write().unwrap() = vec![a, b];
        assert_eq!(backends.order(), vec![a, b]);
        assert_eq!(backends.order(), vec![b, a]);
        assert_eq!(backends.order(), vec![a, b]);
    }
}
