//! The agent's HTTPS server (the kubelet's port 10250): `GET /containerLogs/{namespace}/{pod}/
//! {container}` with the kubelet's query parameters, `/metrics`, and `/healthz`.
//!
//! TLS: a serving certificate from the caller, or a self-signed one made at start (the API
//! server, as kube-apiserver without `--kubelet-certificate-authority`, does not verify it).
//! Authentication: a client certificate signed by the cluster CA the caller passes in, whose
//! user is `kube-apiserver-kubelet-client` or who is in group `system:masters` (what the API
//! server presents when it proxies `pods/log`), or the bearer token the caller configured.
//! Other users of the cluster CA (nodes, controllers) are refused. `/healthz` needs nothing.
//! `/exec/{namespace}/{pod}/{container}` upgrades to a WebSocket for `kubectl exec` (see
//! [`crate::exec`]); `attach` and `portForward` answer 501.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use futures::StreamExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use k8s_openapi::jiff::Timestamp;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::exec;
use crate::limits::{
    EXEC_SESSIONS_MAX, LOG_RESPONSE_CHUNKS_BUFFERED, SERVER_CONNECTIONS_MAX,
    SERVER_HANDSHAKE_TIMEOUT_MS, SERVER_HEADER_READ_TIMEOUT_MS,
};
use crate::logs::{self, LogQuery};
use crate::pod::NodeContext;
use crate::runtime::ContainerState;
use crate::AgentError;

/// The user the API server's client certificate names when it calls agents.
pub const API_SERVER_CLIENT_USER: &str = "kube-apiserver-kubelet-client";

/// A certificate and key, PEM encoded.
#[derive(Clone, Debug)]
pub struct ServingCertificate {
    pub cert_pem: String,
    pub key_pem: String,
}

/// What the server needs.
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Client certificates signed by this CA (PEM) may authenticate.
    pub client_ca_pem: Option<String>,
    /// A bearer token that may authenticate.
    pub token: Option<String>,
    pub certificate: Option<ServingCertificate>,
    /// Names and IPs of a self-signed serving certificate.
    pub hosts: Vec<String>,
}

struct Shared {
    node: Arc<NodeContext>,
    registry: prometheus::Registry,
    token: Option<String>,
    /// Exec sessions running (at most [`EXEC_SESSIONS_MAX`]).
    exec_sessions: Arc<tokio::sync::Semaphore>,
}

fn tls_config(config: &ServerConfig) -> Result<rustls::ServerConfig, AgentError> {
    let tls = |e: &dyn std::fmt::Display| AgentError::Tls(e.to_string());
    let certificate = match &config.certificate {
        Some(given) => given.clone(),
        None => {
            let made =
                rcgen::generate_simple_self_signed(config.hosts.clone()).map_err(|e| tls(&e))?;
            ServingCertificate {
                cert_pem: made.cert.pem(),
                key_pem: made.signing_key.serialize_pem(),
            }
        }
    };
    let certs: Vec<_> = rustls_pemfile::certs(&mut certificate.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| tls(&e))?;
    let key = rustls_pemfile::private_key(&mut certificate.key_pem.as_bytes())
        .map_err(|e| tls(&e))?
        .ok_or_else(|| AgentError::Tls("no private key in the serving certificate".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?;
    let builder = match &config.client_ca_pem {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut ca.as_bytes()) {
                roots.add(cert.map_err(|e| tls(&e))?).map_err(|e| tls(&e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| tls(&e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut server = builder.with_single_cert(certs, key).map_err(|e| tls(&e))?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(server)
}

/// Binds the listener (so a taken port fails the start) and returns the serving task.
pub async fn start(
    config: ServerConfig,
    node: Arc<NodeContext>,
    registry: prometheus::Registry,
    stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, AgentError> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(&config)?));
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| AgentError::Listen { address: config.listen, reason: e.to_string() })?;
    let shared = Arc::new(Shared {
        node,
        registry,
        token: config.token,
        exec_sessions: Arc::new(tokio::sync::Semaphore::new(EXEC_SESSIONS_MAX)),
    });
    tracing::info!(address = %config.listen, "agent server listening");
    Ok(tokio::spawn(accept_loop(listener, acceptor, shared, stop)))
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let connections = Arc::new(tokio::sync::Semaphore::new(SERVER_CONNECTIONS_MAX));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = crate::stopped(&mut stop) => return,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(permit) = connections.clone().acquire_owned().await else { return };
        let (acceptor, shared, stop) = (acceptor.clone(), shared.clone(), stop.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let timeout = Duration::from_millis(SERVER_HANDSHAKE_TIMEOUT_MS);
            let Ok(Ok(tls)) = tokio::time::timeout(timeout, acceptor.accept(stream)).await else {
                return;
            };
            let identity = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|der| control_plane::apiserver::auth::identity_from_certificate(der));
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let (shared, identity) = (shared.clone(), identity.clone());
                async move { Ok::<_, Infallible>(handle(&shared, identity, request).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_millis(SERVER_HEADER_READ_TIMEOUT_MS));
            let connection = builder
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .with_upgrades();
            let mut stop = stop;
            tokio::select! {
                _ = connection => {}
                _ = crate::stopped(&mut stop) => {}
            }
        });
    }
}

fn status_response(code: StatusCode, message: &str) -> Response<Body> {
    let reason = match code {
        StatusCode::BAD_REQUEST => "BadRequest",
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::UNAUTHORIZED => "Unauthorized",
        StatusCode::FORBIDDEN => "Forbidden",
        StatusCode::NOT_IMPLEMENTED => "NotImplemented",
        StatusCode::TOO_MANY_REQUESTS => "TooManyRequests",
        _ => "InternalError",
    };
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16()});
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("valid response")
}

fn authenticated(
    shared: &Shared,
    identity: &Option<(String, Vec<String>)>,
    request: &Request<Incoming>,
) -> bool {
    if let Some((user, groups)) = identity {
        if user == API_SERVER_CLIENT_USER || groups.iter().any(|g| g == "system:masters") {
            return true;
        }
    }
    let bearer = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    matches!((&shared.token, bearer), (Some(token), Some(given)) if token == given.trim())
}

async fn handle(
    shared: &Shared,
    identity: Option<(String, Vec<String>)>,
    request: Request<Incoming>,
) -> Response<Body> {
    let path = request.uri().path().to_string();
    if path == "/healthz" {
        return Response::new(Body::from("ok"));
    }
    if !authenticated(shared, &identity, &request) {
        return match identity {
            Some((user, _)) => status_response(
                StatusCode::FORBIDDEN,
                &format!("user \"{user}\" may not use the node agent's API"),
            ),
            None => status_response(StatusCode::UNAUTHORIZED, "Unauthorized"),
        };
    }
    if request.method() != hyper::Method::GET
        && !path.starts_with("/exec/")
        && !path.starts_with("/run/")
    {
        return status_response(StatusCode::METHOD_NOT_ALLOWED, "only GET is served");
    }
    let path_copy = path.clone();
    let segments: Vec<&str> = path_copy.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["metrics"] => {
            let mut text = String::new();
            let encoder = prometheus::TextEncoder::new();
            let _ = encoder.encode_utf8(&shared.registry.gather(), &mut text);
            Response::builder()
                .header("content-type", "text/plain; version=0.0.4")
                .body(Body::from(text))
                .expect("valid response")
        }
        ["containerLogs", namespace, pod, container] => {
            let query = request.uri().query().unwrap_or("");
            container_logs(shared, namespace, pod, container, query).await
        }
        ["exec", namespace, pod, container] => {
            let (namespace, pod, container) =
                (namespace.to_string(), pod.to_string(), container.to_string());
            exec(shared, &namespace, &pod, &container, request).await
        }
        ["exec" | "attach" | "portForward" | "run", ..] => status_response(
            StatusCode::NOT_IMPLEMENTED,
            "attach and port-forward are not supported by this node agent yet",
        ),
        _ => status_response(StatusCode::NOT_FOUND, &format!("no handler for {path}")),
    }
}

/// The pod's uid, if it runs on this node.
fn pod_uid(shared: &Shared, namespace: &str, pod: &str) -> Option<String> {
    let pods = shared.node.pods.read().expect("pod index");
    pods.get(&(namespace.to_string(), pod.to_string())).cloned()
}

fn header<'a>(request: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    request.headers().get(name).and_then(|v| v.to_str().ok())
}

/// `kubectl exec`: checks the request, answers 101 and runs the exec over the WebSocket.
async fn exec(
    shared: &Shared,
    namespace: &str,
    pod: &str,
    container: &str,
    mut request: Request<Incoming>,
) -> Response<Body> {
    let bad = |message: &str| status_response(StatusCode::BAD_REQUEST, message);
    let exec_request = match exec::parse_request(request.uri().query().unwrap_or("")) {
        Ok(parsed) => parsed,
        Err(message) => return bad(&message),
    };
    let websocket =
        header(&request, "upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let key = header(&request, "sec-websocket-key").map(str::to_string);
    let (true, Some(key)) = (websocket, key) else {
        return bad(
            "exec needs a WebSocket upgrade (v5.channel.k8s.io or v4.channel.k8s.io); SPDY is \
             not supported",
        );
    };
    let Some(protocol) = header(&request, "sec-websocket-protocol").and_then(exec::choose_protocol)
    else {
        return bad(&format!(
            "no supported WebSocket subprotocol offered; this agent speaks {}",
            exec::PROTOCOLS.join(" and ")
        ));
    };
    let Some(uid) = pod_uid(shared, namespace, pod) else {
        return status_response(
            StatusCode::NOT_FOUND,
            &format!("pod \"{pod}\" in namespace \"{namespace}\" is not running on this node"),
        );
    };
    let runtime = shared.node.runtime.clone();
    let running = match runtime.list_containers(Some(&uid)).await {
        Ok(all) => all
            .into_iter()
            .filter(|c| c.name == container && c.is_running())
            .max_by_key(|c| c.attempt),
        Err(error) => {
            return status_response(StatusCode::INTERNAL_SERVER_ERROR, &error.to_string())
        }
    };
    let Some(target) = running else {
        return bad(&format!("container \"{container}\" in pod \"{pod}\" is not running"));
    };
    let Ok(permit) = shared.exec_sessions.clone().try_acquire_owned() else {
        return status_response(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("this node already runs {EXEC_SESSIONS_MAX} exec sessions"),
        );
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let upgrade = hyper::upgrade::on(&mut request);
    let (pod, container) = (pod.to_string(), container.to_string());
    tokio::spawn(async move {
        let _permit = permit;
        let upgraded = match upgrade.await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::debug!(%pod, %error, "exec upgrade failed");
                return;
            }
        };
        tracing::info!(%pod, %container, command = ?exec_request.command, "exec");
        let started = runtime.exec_stream(&target.id, &exec_request).await;
        exec::pump(hyper_util::rt::TokioIo::new(upgraded), protocol, started).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", accept)
        .header("sec-websocket-protocol", protocol)
        .body(Body::empty())
        .expect("valid response")
}

/// The attempts (`<n>.log`) a container's log directory holds, ascending.
fn attempts(dir: &std::path::Path) -> Vec<u32> {
    let mut found: Vec<u32> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
        .collect();
    found.sort_unstable();
    found
}

async fn container_logs(
    shared: &Shared,
    namespace: &str,
    pod: &str,
    container: &str,
    query: &str,
) -> Response<Body> {
    let query = match LogQuery::parse(query, Timestamp::now()) {
        Ok(query) => query,
        Err(message) => return status_response(StatusCode::BAD_REQUEST, &message),
    };
    let node = &shared.node;
    let uid = node
        .pods
        .read()
        .expect("pod index")
        .get(&(namespace.to_string(), pod.to_string()))
        .cloned();
    let Some(uid) = uid else {
        return status_response(
            StatusCode::NOT_FOUND,
            &format!("pod \"{pod}\" in namespace \"{namespace}\" is not running on this node"),
        );
    };
    let dir = node.pod_log_dir(namespace, pod, &uid).join(container);
    let found = attempts(&dir);
    let attempt = if query.previous {
        match found.len().checked_sub(2).map(|i| found[i]) {
            Some(attempt) => attempt,
            None => {
                return status_response(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "previous terminated container \"{container}\" in pod \"{pod}\" not found"
                    ),
                )
            }
        }
    } else {
        match found.last() {
            Some(attempt) => *attempt,
            None => {
                let message = format!(
                    "container \"{container}\" in pod \"{pod}\" is waiting to start: \
                     ContainerCreating"
                );
                return status_response(StatusCode::BAD_REQUEST, &message);
            }
        }
    };
    let path = dir.join(format!("{attempt}.log"));
    let (sender, receiver) = mpsc::channel::<Vec<u8>>(LOG_RESPONSE_CHUNKS_BUFFERED);
    let runtime = node.runtime.clone();
    let (container, pod) = (container.to_string(), pod.to_string());
    tokio::spawn(async move {
        // The follow ends when this attempt is no longer running.
        let ended = || {
            let (runtime, uid, container) = (runtime.clone(), uid.clone(), container.clone());
            async move {
                let Ok(all) = runtime.list_containers(Some(&uid)).await else { return true };
                !all.iter().any(|c| {
                    c.name == container
                        && c.attempt == attempt
                        && !matches!(c.state, ContainerState::Exited { .. })
                })
            }
        };
        if let Err(error) = logs::stream(&path, query, ended, sender).await {
            tracing::debug!(%pod, %error, "log stream ended");
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(receiver).map(Ok::<_, Infallible>);
    Response::builder()
        .header("content-type", "text/plain")
        .body(Body::from_stream(stream))
        .expect("valid response")
}
