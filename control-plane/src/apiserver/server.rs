//! The API server process: HTTPS (rustls, client certificates optional) serving HTTP/1.1 and
//! HTTP/2, the request pipeline (authentication → authorization → the handlers in
//! [`super::objects`]), and the non-resource endpoints (discovery, OpenAPI, health, metrics).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::auth::{Attributes, RbacView, TokenFile, User};
use super::objects::{self, Target};
use super::status::ApiError;
use super::{discovery, openapi};
use crate::pki::{self, Credential, Pki};
use crate::resources::RESOURCES;
use crate::storage::{Backend, WatchCache};

/// How to run the API server.
#[derive(Clone, Debug)]
pub struct ApiServerConfig {
    /// Where to listen (`--bind-address` and `--secure-port`).
    pub listen: SocketAddr,
    /// Where the CA, the serving certificate and `admin.kubeconfig` live.
    pub data_dir: PathBuf,
    /// Host names and IPs the serving certificate names (the first is the kubeconfig's).
    pub hosts: Vec<String>,
    /// kube-apiserver's `--token-auth-file`.
    pub token_auth_file: Option<PathBuf>,
    /// Changes each watch cache keeps for resuming watchers (kube-apiserver's
    /// `--default-watch-cache-size`); older resourceVersions get 410 Gone.
    pub watch_cache_size: usize,
    /// `--service-cluster-ip-range` and `--service-node-port-range` (see `allocator`).
    pub service_ranges: super::allocator::ServiceRanges,
}

/// Request counts and latencies by verb, resource and code.
#[derive(Clone)]
pub struct ApiMetrics {
    registry: prometheus::Registry,
    requests: prometheus::IntCounterVec,
    latency: prometheus::HistogramVec,
    watchers: prometheus::IntGaugeVec,
    cache_objects: prometheus::IntGaugeVec,
    /// Lists served from a watch cache and from the store, by resource.
    pub cache_lists: prometheus::IntCounterVec,
    pub storage_lists: prometheus::IntCounterVec,
}

impl ApiMetrics {
    fn new() -> ApiMetrics {
        let registry = prometheus::Registry::new();
        let requests = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "apiserver_request_total",
                "API requests by verb, resource and code",
            ),
            &["verb", "resource", "code"],
        )
        .expect("valid metric");
        let latency = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new(
                "apiserver_request_duration_seconds",
                "API request latency by verb and resource (watches: until the stream starts)",
            )
            .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["verb", "resource"],
        )
        .expect("valid metric");
        let watchers = prometheus::IntGaugeVec::new(
            prometheus::Opts::new("apiserver_registered_watchers", "Open API watches by resource"),
            &["resource"],
        )
        .expect("valid metric");
        let cache_objects = prometheus::IntGaugeVec::new(
            prometheus::Opts::new("apiserver_watch_cache_objects", "Objects in each watch cache"),
            &["resource"],
        )
        .expect("valid metric");
        registry.register(Box::new(requests.clone())).expect("unique metric");
        registry.register(Box::new(latency.clone())).expect("unique metric");
        registry.register(Box::new(watchers.clone())).expect("unique metric");
        registry.register(Box::new(cache_objects.clone())).expect("unique metric");
        let cache_lists = prometheus::IntCounterVec::new(
            prometheus::Opts::new("apiserver_cache_list_total", "Lists served from a watch cache"),
            &["resource"],
        )
        .expect("valid metric");
        let storage_lists = prometheus::IntCounterVec::new(
            prometheus::Opts::new("apiserver_storage_list_total", "Lists read from the store"),
            &["resource"],
        )
        .expect("valid metric");
        registry.register(Box::new(cache_lists.clone())).expect("unique metric");
        registry.register(Box::new(storage_lists.clone())).expect("unique metric");
        ApiMetrics {
            registry,
            requests,
            latency,
            watchers,
            cache_objects,
            cache_lists,
            storage_lists,
        }
    }

    /// The registry `/metrics` renders; the scheduler and controllers of the same master
    /// register their metrics here too.
    pub fn registry(&self) -> &prometheus::Registry {
        &self.registry
    }

    pub fn watch_opened(&self, resource: &str) {
        self.watchers.with_label_values(&[resource]).inc();
    }

    pub fn watch_closed(&self, resource: &str) {
        self.watchers.with_label_values(&[resource]).dec();
    }

    fn render(&self, caches: &HashMap<&'static str, Arc<WatchCache>>) -> String {
        for (resource, cache) in caches {
            self.cache_objects.with_label_values(&[resource]).set(cache.len() as i64);
        }
        let mut text = String::new();
        let encoder = prometheus::TextEncoder::new();
        let _ = encoder.encode_utf8(&self.registry.gather(), &mut text);
        let _ = encoder.encode_utf8(&prometheus::gather(), &mut text);
        text
    }
}

/// What every request handler shares.
pub struct ApiServer {
    pub backend: Backend,
    pub caches: HashMap<&'static str, Arc<WatchCache>>,
    pub tokens: TokenFile,
    /// Signs and verifies service-account tokens.
    pub signer: super::tokens::TokenSigner,
    pub metrics: ApiMetrics,
    /// `host:port` clients reach this server at (discovery's serverAddressByClientCIDRs).
    pub address: String,
    /// Set once the defaults exist and every watch cache has loaded (`/readyz`).
    pub ready: std::sync::atomic::AtomicBool,
    /// Becomes true when the server shuts down: open watches end.
    pub stopping: watch::Receiver<bool>,
    /// Where Services' ClusterIPs and NodePorts come from.
    pub service_ranges: super::allocator::ServiceRanges,
    /// How `pods/log` reaches node agents.
    pub kubelet_client: super::pods::KubeletClient,
}

impl ApiServer {
    pub fn cache(&self, plural: &str) -> &Arc<WatchCache> {
        self.caches.get(plural).expect("every served resource has a cache")
    }

    pub(crate) fn rbac_view(&self) -> RbacView {
        let all = |plural: &str| -> Vec<Arc<Value>> { self.cache(plural).all_objects() };
        RbacView {
            roles: all("roles"),
            cluster_roles: all("clusterroles"),
            role_bindings: all("rolebindings"),
            cluster_role_bindings: all("clusterrolebindings"),
        }
    }
}

/// A running API server; stop it with [`RunningApiServer::shutdown`].
pub struct RunningApiServer {
    pub address: SocketAddr,
    pub admin_kubeconfig: PathBuf,
    pub server: Arc<ApiServer>,
    /// The URL kubeconfigs name (`https://<first host>:<port>`).
    pub url: String,
    pki: Pki,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningApiServer {
    /// The cluster CA certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.pki.ca.cert_pem
    }

    /// A kubeconfig for one of the master's own components (`user` in `groups`), with a
    /// fresh client certificate from the cluster CA; it lives only in memory.
    pub fn component_kubeconfig(
        &self,
        user: &str,
        groups: &[&str],
    ) -> Result<String, pki::PkiError> {
        let key = self.pki.client_certificate(user, groups)?;
        Ok(pki::kubeconfig(&self.url, &self.pki.ca.cert_pem, user, &Credential::Certificate(key)))
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            task.abort();
            let _ = task.await;
        }
    }
}

/// Why the API server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiStartError {
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error("cannot listen on {address}: {reason}")]
    Listen { address: SocketAddr, reason: String },
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Shared(#[from] super::shared::SharedError),
}

fn tls_config(pki: &Pki) -> Result<rustls::ServerConfig, ApiStartError> {
    let tls = |e: &dyn std::fmt::Display| ApiStartError::Tls(e.to_string());
    let certs: Vec<_> = rustls_pemfile::certs(&mut pki.server.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| tls(&e))?;
    let key = rustls_pemfile::private_key(&mut pki.server.key_pem.as_bytes())
        .map_err(|e| tls(&e))?
        .ok_or_else(|| ApiStartError::Tls("no private key in apiserver.key".into()))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls_pemfile::certs(&mut pki.ca.cert_pem.as_bytes()) {
        roots.add(ca.map_err(|e| tls(&e))?).map_err(|e| tls(&e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // Client certificates are optional: requests without one authenticate by token or not at
    // all (401).
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| tls(&e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| tls(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Starts the API server over `backend`: certificates and the admin kubeconfig on first start,
/// one watch cache per resource, then HTTPS.
pub async fn start(
    config: ApiServerConfig,
    backend: Backend,
) -> Result<RunningApiServer, ApiStartError> {
    super::shared::ensure(&backend, &config.data_dir.join("pki")).await?;
    let pki = Pki::load_or_create(&config.data_dir.join("pki"), &config.hosts)?;
    let tokens = match &config.token_auth_file {
        Some(path) => TokenFile::load(path).map_err(ApiStartError::Config)?,
        None => TokenFile::default(),
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| ApiStartError::Listen { address: config.listen, reason: e.to_string() })?;
    let address = listener
        .local_addr()
        .map_err(|e| ApiStartError::Listen { address: config.listen, reason: e.to_string() })?;
    let host = config.hosts.first().cloned().unwrap_or_else(|| "127.0.0.1".into());
    let server_url = if host.contains(':') {
        format!("https://[{host}]:{}", address.port())
    } else {
        format!("https://{host}:{}", address.port())
    };
    let admin = pki.client_certificate("kubernetes-admin", &["system:masters"])?;
    let admin_kubeconfig = config.data_dir.join("admin.kubeconfig");
    let text = pki::kubeconfig(
        &server_url,
        &pki.ca.cert_pem,
        "kubernetes-admin",
        &Credential::Certificate(admin),
    );
    pki::write_private(&admin_kubeconfig, &text)?;

    let mut tasks = Vec::new();
    let mut caches = HashMap::new();
    for resource in RESOURCES {
        let prefix = resource.key_prefix().into_bytes();
        let cache = WatchCache::new(resource.plural, prefix, config.watch_cache_size);
        tasks.push(tokio::spawn(cache.clone().run(backend.clone())));
        caches.insert(resource.plural, cache);
    }
    let signer = super::tokens::TokenSigner::load_or_create(&config.data_dir.join("pki"))?;
    let kubelet_identity = pki.client_certificate(super::pods::KUBELET_CLIENT_USER, &[])?;
    let kubelet_client =
        super::pods::KubeletClient::new(&kubelet_identity).map_err(ApiStartError::Tls)?;
    let (stop, stopped) = watch::channel(false);
    let server = Arc::new(ApiServer {
        backend,
        caches,
        tokens,
        signer,
        metrics: ApiMetrics::new(),
        address: format!("{host}:{}", address.port()),
        ready: std::sync::atomic::AtomicBool::new(false),
        stopping: stopped.clone(),
        service_ranges: config.service_ranges,
        kubelet_client,
    });
    tasks.push(tokio::spawn(become_ready(server.clone())));
    tasks.push(tokio::spawn(super::allocator::repair_loop(server.clone())));
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(&pki)?));
    tasks.push(tokio::spawn(accept_loop(listener, acceptor, server.clone(), stopped)));
    tracing::info!(%address, kubeconfig = %admin_kubeconfig.display(), "API server started");
    Ok(RunningApiServer { address, admin_kubeconfig, server, url: server_url, pki, stop, tasks })
}

/// Bootstraps the defaults and waits for every watch cache, then reports ready.
async fn become_ready(server: Arc<ApiServer>) {
    super::bootstrap::ensure_defaults(&server).await;
    for cache in server.caches.values() {
        while cache.wait_ready().await.is_err() {
            tracing::warn!(resource = cache.resource(), "watch cache not loaded yet");
        }
    }
    server.ready.store(true, std::sync::atomic::Ordering::Release);
    tracing::info!("API server ready");
}

/// Resolves once `stopping` turns true (or its sender is gone).
pub(crate) async fn until_stopped(mut stopping: watch::Receiver<bool>) {
    let _ = stopping.wait_for(|s| *s).await;
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    server: Arc<ApiServer>,
    mut stopped: watch::Receiver<bool>,
) {
    let connections = Arc::new(tokio::sync::Semaphore::new(crate::limits::CONNECTIONS_MAX));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.wait_for(|s| *s) => return,
        };
        let (stream, _) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, typically: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        // A bounded number of connections; one over the limit waits to be accepted.
        let Ok(permit) = connections.clone().acquire_owned().await else { return };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let server = server.clone();
        let stopping = stopped.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let handshake =
                tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(stream));
            let Ok(Ok(tls)) = handshake.await else { return };
            let certificate_user = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|der| super::auth::identity_from_certificate(der))
                .map(|(name, groups)| User { name, groups });
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let server = server.clone();
                let user = certificate_user.clone();
                async move {
                    let response = handle(server, user, request).await;
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let io = hyper_util::rt::TokioIo::new(tls);
            let mut builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            // Headers must arrive in time: an idle client cannot hold a connection forever.
            builder.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(
                std::time::Duration::from_millis(crate::limits::HEADER_READ_TIMEOUT_MS),
            );
            // Upgrades pass `pods/exec` WebSockets through to node agents.
            let connection = builder.serve_connection_with_upgrades(io, service);
            tokio::pin!(connection);
            // On shutdown, connections finish their requests and close (watches end), so
            // nothing keeps the server, and through it the store, alive.
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = until_stopped(stopping) => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(
                        std::time::Duration::from_secs(5),
                        connection.as_mut(),
                    )
                    .await;
                }
            }
        });
    }
}

/// A JSON response.
pub fn json_response(code: StatusCode, body: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(body).expect("JSON values serialize");
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(bytes))
        .expect("valid response")
}

pub fn error_response(error: &ApiError) -> Response<Body> {
    json_response(
        StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &error.to_status(),
    )
}

fn authenticate(
    server: &ApiServer,
    certificate_user: Option<User>,
    request: &Request<Incoming>,
) -> Option<User> {
    let bearer = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    // As kube-apiserver's union authenticator: a client certificate first, then a token.
    let mut user = match (certificate_user, bearer) {
        (Some(user), _) => user,
        (None, Some(token)) => match server.tokens.user(token) {
            Some(user) => user.clone(),
            None => service_account_user(server, token)?,
        },
        (None, None) => return None,
    };
    if !user.is_in("system:authenticated") {
        user.groups.push("system:authenticated".into());
    }
    Some(user)
}

/// The user of a valid service-account token whose account still exists (same uid).
fn service_account_user(server: &ApiServer, token: &str) -> Option<User> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?;
    let claims = server.signer.verify(token, now.as_secs() as i64)?;
    let exists = server.cache("serviceaccounts").all_objects().iter().any(|sa| {
        sa["metadata"]["namespace"] == claims.namespace.as_str()
            && sa["metadata"]["name"] == claims.name.as_str()
            && sa["metadata"]["uid"] == claims.uid.as_str()
    });
    exists.then(|| claims.user())
}

/// Paths any authenticated user may read (kube-apiserver's `system:discovery` and
/// `system:public-info-viewer` roles).
fn is_public_path(path: &str) -> bool {
    matches!(
        path,
        "/healthz"
            | "/livez"
            | "/readyz"
            | "/version"
            | "/version/"
            | "/api"
            | "/api/"
            | "/apis"
            | "/apis/"
    ) || path.starts_with("/api/v1")
        && !path["/api/v1".len()..].trim_start_matches('/').contains('/')
        && path["/api/v1".len()..].trim_matches('/').is_empty()
        || path.starts_with("/apis/") && path.trim_end_matches('/').split('/').count() <= 4
        || path.starts_with("/openapi/")
}

async fn handle(
    server: Arc<ApiServer>,
    certificate_user: Option<User>,
    request: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let path = request.uri().path().to_string();
    // Health checks answer anyone (load balancers probe without credentials), as
    // kube-apiserver's `system:public-info-viewer` allows.
    if request.method() == hyper::Method::GET
        && matches!(path.as_str(), "/healthz" | "/livez" | "/readyz")
    {
        let segments = [path.trim_start_matches('/')];
        return non_resource_response(&server, &segments, "");
    }
    let Some(user) = authenticate(&server, certificate_user, &request) else {
        server.metrics.requests.with_label_values(&["", "", "401"]).inc();
        return error_response(&ApiError::unauthorized());
    };
    let (verb, resource, response) = route(&server, &user, request).await;
    let code = response.status().as_u16().to_string();
    server.metrics.requests.with_label_values(&[&verb, &resource, &code]).inc();
    server
        .metrics
        .latency
        .with_label_values(&[&verb, &resource])
        .observe(started.elapsed().as_secs_f64());
    tracing::debug!(%path, %verb, %code, user = %user.name, "request");
    response
}

fn accept_header(request: &Request<Incoming>) -> String {
    request.headers().get("accept").and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

/// Routes one authenticated request; returns (verb, resource) for metrics with the response.
async fn route(
    server: &Arc<ApiServer>,
    user: &User,
    request: Request<Incoming>,
) -> (String, String, Response<Body>) {
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let plain = |verb: &str, response| (verb.to_string(), String::new(), response);
    // Non-resource endpoints.
    let non_resource = matches!(
        segments.as_slice(),
        ["api" | "apis" | "version" | "healthz" | "livez" | "readyz" | "metrics"]
            | ["api", _]
            | ["apis", _]
            | ["apis", _, _]
            | ["openapi", ..]
    );
    if non_resource {
        if method != hyper::Method::GET {
            return plain("", error_response(&ApiError::method_not_allowed(method.as_str())));
        }
        let view = server.rbac_view();
        if !is_public_path(&path)
            && !view.allows(user, &Attributes::NonResource { verb: "get", path: &path })
        {
            let message = format!("forbidden: User \"{}\" cannot get path \"{path}\"", user.name);
            return plain("get", error_response(&ApiError::forbidden_message(message)));
        }
        let accept = accept_header(&request);
        return plain("get", non_resource_response(server, &segments, &accept));
    }
    match objects::parse_target(&segments) {
        Some(target) => {
            let verb = objects::verb_of(&method, &target, request.uri().query().unwrap_or(""));
            let resource = target.resource.plural.to_string();
            let response = match authorize(server, user, &verb, &target) {
                Ok(()) => objects::serve(server.clone(), user.clone(), target, request).await,
                Err(error) => error_response(&error),
            };
            (verb, resource, response)
        }
        None => plain("", error_response(&ApiError::path_not_found())),
    }
}

fn authorize(server: &ApiServer, user: &User, verb: &str, target: &Target) -> Result<(), ApiError> {
    let resource = match target.subresource {
        Some(sub) => format!("{}/{sub}", target.resource.plural),
        None => target.resource.plural.to_string(),
    };
    let attributes = Attributes::Resource {
        verb,
        group: target.resource.group,
        resource: resource.clone(),
        namespace: target.namespace.as_deref(),
        name: target.name.as_deref(),
    };
    if server.rbac_view().allows(user, &attributes) {
        return Ok(());
    }
    // A node agent may read the ConfigMaps and Secrets its own pods use.
    if target.subresource.is_none()
        && super::node_authorizer::allows(
            server,
            user,
            verb,
            target.resource.plural,
            target.namespace.as_deref(),
            target.name.as_deref(),
        )
    {
        return Ok(());
    }
    let scope = match (&target.namespace, target.resource.namespaced) {
        (Some(namespace), true) => format!("in the namespace \"{namespace}\""),
        _ => "at the cluster scope".to_string(),
    };
    Err(ApiError::forbidden(&user.name, verb, &resource, target.resource.group, &scope))
}

fn non_resource_response(server: &ApiServer, segments: &[&str], accept: &str) -> Response<Body> {
    match segments {
        ["version"] => json_response(StatusCode::OK, &discovery::version_info()),
        ["healthz"] | ["livez"] => Response::builder()
            .header("content-type", "text/plain; charset=utf-8")
            .body(Body::from("ok"))
            .expect("valid response"),
        ["readyz"] if server.ready.load(std::sync::atomic::Ordering::Acquire) => {
            Response::builder()
                .header("content-type", "text/plain; charset=utf-8")
                .body(Body::from("ok"))
                .expect("valid response")
        }
        ["readyz"] => Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .header("content-type", "text/plain; charset=utf-8")
            .body(Body::from(
                "[-]bootstrap: not finished (store unreachable?)\nreadyz check failed",
            ))
            .expect("valid response"),
        ["metrics"] => Response::builder()
            .header("content-type", "text/plain; version=0.0.4")
            .body(Body::from(server.metrics.render(&server.caches)))
            .expect("valid response"),
        ["api"] | ["apis"] => {
            let (content_type, document) =
                discovery::root_document(segments[0] == "api", accept, &server.address);
            let mut response = json_response(StatusCode::OK, &document);
            response
                .headers_mut()
                .insert("content-type", content_type.parse().expect("valid header"));
            response
        }
        ["api", version] => match discovery::api_resource_list("", version) {
            Some(list) => json_response(StatusCode::OK, &list),
            None => error_response(&ApiError::path_not_found()),
        },
        ["apis", group] => match discovery::api_group(group) {
            Some(document) => json_response(StatusCode::OK, &document),
            None => error_response(&ApiError::path_not_found()),
        },
        ["apis", group, version] => match discovery::api_resource_list(group, version) {
            Some(list) => json_response(StatusCode::OK, &list),
            None => error_response(&ApiError::path_not_found()),
        },
        ["openapi", "v2"] => Response::builder()
            .header("content-type", "application/octet-stream")
            .body(Body::from(openapi::v2_document()))
            .expect("valid response"),
        ["openapi", "v3"] => json_response(StatusCode::OK, &openapi::v3_index()),
        ["openapi", "v3", rest @ ..] => match openapi::v3_document(&rest.join("/")) {
            Some(document) => json_response(StatusCode::OK, &document),
            None => error_response(&ApiError::path_not_found()),
        },
        _ => error_response(&ApiError::path_not_found()),
    }
}
