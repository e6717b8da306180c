//! What the API server does for pods beyond storing them:
//!
//! - **Graceful deletion.** Deleting a pod bound to a node marks it (`deletionTimestamp` is
//!   now plus the grace, `deletionGracePeriodSeconds` the grace) instead of removing it; the
//!   node's agent stops its containers and then deletes it with `gracePeriodSeconds=0`. The
//!   grace is the request's `gracePeriodSeconds`, else the pod's
//!   `terminationGracePeriodSeconds` (30 s); it is 0 for a pod not bound, or already Succeeded
//!   or Failed, and for a pod whose Node does not exist (nothing would ever finish it:
//!   Kubernetes' pod garbage collector force-deletes those, after a delay). A second delete
//!   may only shorten the grace; 0 removes the pod.
//! - **`pods/log`**, proxied to the agent of the pod's node (its InternalIP and
//!   `daemonEndpoints.kubeletEndpoint.Port`) over HTTPS with the API server's client
//!   certificate (user [`KUBELET_CLIENT_USER`]), streamed back as it comes (`follow`). The
//!   agent's serving certificate is not verified, as kube-apiserver does without
//!   `--kubelet-certificate-authority`.
//! - **`pods/exec`**, a WebSocket upgrade passed through to the same agent: once both the
//!   client and the agent switched protocols, the two connections are joined byte for byte.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use hyper::body::Incoming;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use super::server::{json_response, ApiServer};
use super::status::ApiError;
use crate::limits::{AGENT_CONNECT_TIMEOUT_MS, AGENT_ERROR_BYTES_MAX, AGENT_RESPONSE_TIMEOUT_MS};
use crate::pki::CertifiedKey;
use crate::storage::Swap;

/// The user of the API server's client certificate towards node agents (kubeadm's name).
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";
/// The grace a pod gets when it says nothing (`terminationGracePeriodSeconds`' default).
const TERMINATION_GRACE_SECONDS_DEFAULT: i64 = 30;
const AGENT_CONNECT_TIMEOUT: Duration = Duration::from_millis(AGENT_CONNECT_TIMEOUT_MS);
const AGENT_RESPONSE_TIMEOUT: Duration = Duration::from_millis(AGENT_RESPONSE_TIMEOUT_MS);

/// Accepts any server certificate (see the module docs); signatures are still checked.
#[derive(Debug)]
struct AnyServerCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS client config that does not verify the server, presenting `identity` if given
/// (agents' servers; HTTPS probes, as the kubelet's).
pub fn insecure_client_config(
    identity: Option<&CertifiedKey>,
) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCertificate(provider)));
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some(key) => {
            let certs = rustls_pemfile::certs(&mut key.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            let private = rustls_pemfile::private_key(&mut key.key_pem.as_bytes())
                .map_err(|e| e.to_string())?
                .ok_or("no private key")?;
            builder.with_client_auth_cert(certs, private).map_err(|e| e.to_string())
        }
    }
}

/// How the API server reaches node agents.
#[derive(Clone)]
pub struct KubeletClient {
    tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for KubeletClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeletClient")
    }
}

impl KubeletClient {
    pub fn new(identity: &CertifiedKey) -> Result<KubeletClient, String> {
        Ok(KubeletClient { tls: Arc::new(insecure_client_config(Some(identity))?) })
    }
}

/// What a pod deletion does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grace {
    /// Delete now (or mark for finalizers, as any object).
    Now,
    /// Mark with this deletion time and grace.
    Mark { deletion_timestamp: i64, grace_seconds: i64 },
    /// Already being deleted with no shorter grace asked: nothing changes.
    Pending,
}

fn seconds_of(text: &str) -> Option<i64> {
    text.parse::<k8s_openapi::jiff::Timestamp>().ok().map(|t| t.as_second())
}

/// Kubernetes' pod `CheckGracefulDelete` and `BeforeDelete` (pure).
pub fn decide(pod: &Value, requested: Option<i64>, node_exists: bool, now: i64) -> Grace {
    let meta = &pod["metadata"];
    if let Some(deleting) = meta["deletionTimestamp"].as_str() {
        let current = meta["deletionGracePeriodSeconds"].as_i64().unwrap_or(0);
        if current == 0 {
            return Grace::Now;
        }
        return match requested {
            Some(0) => Grace::Now,
            Some(shorter) if shorter < current => {
                let started = seconds_of(deleting).unwrap_or(now) - current;
                Grace::Mark { deletion_timestamp: started + shorter, grace_seconds: shorter }
            }
            _ => Grace::Pending,
        };
    }
    let bound = pod["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty());
    let finished = matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
    let grace = match requested {
        Some(grace) => grace.max(0),
        None => pod["spec"]["terminationGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(TERMINATION_GRACE_SECONDS_DEFAULT)
            .max(0),
    };
    if !bound || finished || !node_exists || grace == 0 {
        return Grace::Now;
    }
    Grace::Mark { deletion_timestamp: now + grace, grace_seconds: grace }
}

async fn node_object(server: &ApiServer, name: &str) -> Result<Option<Value>, ApiError> {
    let nodes = crate::resources::find("", "v1", "nodes").expect("nodes are served");
    let (found, _) = server.backend.get(nodes.key(None, name).as_bytes()).await?;
    Ok(found.and_then(|kv| serde_json::from_slice(&kv.value).ok()))
}

/// A pod's deletion, when it is graceful; `None` lets the caller delete as for any object.
pub async fn delete_gracefully(
    server: &ApiServer,
    key: &str,
    current: &Value,
    mod_revision: i64,
    options: &Value,
    requested_by_query: Option<&str>,
    finalizers: &[Value],
) -> Result<Option<Response<Body>>, ApiError> {
    let requested = options["gracePeriodSeconds"]
        .as_i64()
        .or_else(|| requested_by_query.and_then(|q| q.parse().ok()));
    let node = current["spec"]["nodeName"].as_str().unwrap_or("");
    let node_exists = !node.is_empty() && node_object(server, node).await?.is_some();
    let now = super::objects::now_seconds();
    let (deletion_timestamp, grace) = match decide(current, requested, node_exists, now) {
        Grace::Now => return Ok(None),
        Grace::Pending => return Ok(Some(json_response(StatusCode::OK, current))),
        Grace::Mark { deletion_timestamp, grace_seconds } => (deletion_timestamp, grace_seconds),
    };
    let mut marked = current.clone();
    let metadata = marked["metadata"].as_object_mut().expect("objects have metadata");
    metadata.remove("resourceVersion");
    metadata.insert(
        "deletionTimestamp".into(),
        json!(super::objects::format_timestamp(deletion_timestamp)),
    );
    metadata.insert("deletionGracePeriodSeconds".into(), json!(grace));
    if !finalizers.is_empty() {
        metadata.insert("finalizers".into(), json!(finalizers));
    }
    let generation = metadata.get("generation").and_then(Value::as_i64).unwrap_or(0);
    metadata.insert("generation".into(), json!(generation + 1));
    let bytes = serde_json::to_vec(&marked).expect("JSON");
    let name = current["metadata"]["name"].as_str().unwrap_or("");
    match server.backend.update(key.as_bytes(), mod_revision, bytes).await? {
        Swap::Done { revision, .. } => Ok(Some(json_response(
            StatusCode::OK,
            &crate::storage::cache::with_resource_version(&marked, revision),
        ))),
        Swap::Refused { current: None } => Err(ApiError::not_found("pods", name)),
        Swap::Refused { .. } => Err(ApiError::conflict("pods", name)),
    }
}

fn go_list(names: &[&str]) -> String {
    format!("[{}]", names.join(" "))
}

/// The container a log request is about (Kubernetes' defaulting and messages).
fn log_container(pod: &Value, requested: Option<&str>) -> Result<String, ApiError> {
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or("");
    let names = |field: &str| -> Vec<&str> {
        pod["spec"][field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect()
    };
    let (containers, init) = (names("containers"), names("initContainers"));
    if let Some(name) = requested.filter(|n| !n.is_empty()) {
        if containers.contains(&name) || init.contains(&name) {
            return Ok(name.to_string());
        }
        return Err(ApiError::bad_request(format!(
            "container {name} is not valid for pod {pod_name}"
        )));
    }
    let annotated = pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"]
        .as_str()
        .filter(|n| containers.contains(n));
    if let Some(name) = annotated {
        return Ok(name.to_string());
    }
    if containers.len() == 1 {
        return Ok(containers[0].to_string());
    }
    let mut message = format!(
        "a container name must be specified for pod {pod_name}, choose one of: {}",
        go_list(&containers)
    );
    if !init.is_empty() {
        message.push_str(&format!(" or one of the init containers: {}", go_list(&init)));
    }
    Err(ApiError::bad_request(message))
}

fn agent_error(code: u16, body: &[u8]) -> ApiError {
    let status: Value = serde_json::from_slice(body).unwrap_or_default();
    let message = status["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    let reason = match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        501 => "NotImplemented",
        _ => "InternalError",
    };
    ApiError { code, reason, message, name: None, kind: None }
}

/// Where the agent of a bound pod's node listens: (address, port).
async fn agent_endpoint(server: &ApiServer, pod: &Value) -> Result<(String, u16), ApiError> {
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or("");
    let node_name = pod["spec"]["nodeName"].as_str().unwrap_or("");
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!("pod {pod_name} does not have a host assigned")));
    }
    let node = node_object(server, node_name)
        .await?
        .ok_or_else(|| ApiError::not_found("nodes", node_name))?;
    let addresses = node["status"]["addresses"].as_array().cloned().unwrap_or_default();
    let address = ["InternalIP", "ExternalIP", "Hostname"].iter().find_map(|kind| {
        addresses.iter().find(|a| a["type"] == *kind).and_then(|a| a["address"].as_str())
    });
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_i64();
    match (address, port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0)) {
        (Some(address), Some(port)) => Ok((address.to_string(), port)),
        _ => Err(ApiError::bad_request(format!(
            "node {node_name} has no agent endpoint (address and daemonEndpoints port)"
        ))),
    }
}

/// Sends one request to a pod's agent on a new connection (which allows upgrades) and
/// returns the response head and body; `path` includes the query.
async fn agent_request(
    server: &ApiServer,
    pod: &Value,
    path: &str,
    headers: &[(&str, String)],
) -> Result<hyper::Response<Incoming>, ApiError> {
    let (address, port) = agent_endpoint(server, pod).await?;
    let host = if address.contains(':') { format!("[{address}]") } else { address.clone() };
    let url = format!("https://{host}:{port}{path}");
    let failed = |error: &dyn std::fmt::Display| ApiError {
        code: 500,
        reason: "InternalError",
        message: format!("Get \"{url}\": {error}"),
        name: None,
        kind: None,
    };
    let connect = tokio::net::TcpStream::connect((address.as_str(), port));
    let stream = match tokio::time::timeout(AGENT_CONNECT_TIMEOUT, connect).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(failed(&format!("dial tcp {address}:{port}: {error}"))),
        Err(_) => return Err(failed(&format!("dial tcp {address}:{port}: i/o timeout"))),
    };
    let server_name =
        rustls::pki_types::ServerName::try_from(address.clone()).map_err(|e| failed(&e))?;
    let connector = tokio_rustls::TlsConnector::from(server.kubelet_client.tls.clone());
    let tls = connector.connect(server_name, stream).await.map_err(|e| failed(&e))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| failed(&e))?;
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    let mut request = hyper::Request::get(path).header("host", format!("{host}:{port}"));
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let request = request.body(Body::empty()).expect("valid request");
    tokio::time::timeout(AGENT_RESPONSE_TIMEOUT, sender.send_request(request))
        .await
        .map_err(|_| failed(&"timeout awaiting response headers"))?
        .map_err(|e| failed(&e))
}

/// An agent's refusal, read from its response.
async fn refused(response: hyper::Response<Incoming>) -> ApiError {
    let code = response.status().as_u16();
    let body = Body::new(response.into_body());
    let bytes = axum::body::to_bytes(body, AGENT_ERROR_BYTES_MAX).await.unwrap_or_default();
    agent_error(code, &bytes)
}

/// `GET pods/<name>/log`: streams the container's log from its node's agent.
pub async fn log(
    server: &ApiServer,
    pod: &Value,
    pairs: &[(String, String)],
) -> Result<Response<Body>, ApiError> {
    let query = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let container = log_container(pod, query("container"))?;
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or("");
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let forwarded = {
        let mut forwarded = url::form_urlencoded::Serializer::new(String::new());
        let keys = ["follow", "previous", "timestamps", "tailLines", "sinceSeconds"];
        for key in keys.iter().chain(&["sinceTime", "limitBytes"]) {
            if let Some(value) = query(key) {
                forwarded.append_pair(key, value);
            }
        }
        forwarded.finish()
    };
    let path = format!("/containerLogs/{namespace}/{pod_name}/{container}?{forwarded}");
    let response = agent_request(server, pod, &path, &[]).await?;
    if response.status() != StatusCode::OK {
        return Err(refused(response).await);
    }
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/plain")
        .body(Body::new(response.into_body()))
        .expect("valid response"))
}

/// The headers of a WebSocket upgrade passed between client and agent.
const UPGRADE_REQUEST_HEADERS: [&str; 5] = [
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
];
const UPGRADE_RESPONSE_HEADERS: [&str; 4] =
    ["connection", "upgrade", "sec-websocket-accept", "sec-websocket-protocol"];

/// `pods/<name>/exec`: the client's WebSocket upgrade is passed to the pod's agent, and once
/// both sides switched protocols the two connections are joined (as kube-apiserver's
/// upgrade-aware proxy does). The agent speaks the channel protocol itself.
pub async fn exec(
    server: &ApiServer,
    pod: &Value,
    mut request: hyper::Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let pairs = super::objects::query_pairs(request.uri().query().unwrap_or(""));
    let query = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let container = log_container(pod, query("container"))?;
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or("");
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let phase = pod["status"]["phase"].as_str().unwrap_or("");
    if matches!(phase, "Succeeded" | "Failed") {
        return Err(ApiError::bad_request(format!(
            "cannot exec into a container in a completed pod; current phase is {phase}"
        )));
    }
    let forwarded = {
        let mut forwarded = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in &pairs {
            if matches!(key.as_str(), "command" | "stdin" | "stdout" | "stderr" | "tty") {
                forwarded.append_pair(key, value);
            }
        }
        forwarded.finish()
    };
    let headers: Vec<(&str, String)> = UPGRADE_REQUEST_HEADERS
        .iter()
        .filter_map(|name| {
            let value = request.headers().get(*name)?.to_str().ok()?;
            Some((*name, value.to_string()))
        })
        .collect();
    if !headers.iter().any(|(n, v)| *n == "upgrade" && v.eq_ignore_ascii_case("websocket")) {
        return Err(ApiError::bad_request(
            "exec needs a WebSocket upgrade (v5.channel.k8s.io or v4.channel.k8s.io); SPDY is \
             not supported"
                .to_string(),
        ));
    }
    let path = format!("/exec/{namespace}/{pod_name}/{container}?{forwarded}");
    let mut response = agent_request(server, pod, &path, &headers).await?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(refused(response).await);
    }
    let mut switched = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for name in UPGRADE_RESPONSE_HEADERS {
        if let Some(value) = response.headers().get(name) {
            switched = switched.header(name, value);
        }
    }
    let client_side = hyper::upgrade::on(&mut request);
    let agent_side = hyper::upgrade::on(&mut response);
    let pod_name = pod_name.to_string();
    tokio::spawn(async move {
        let (client, agent) = match tokio::join!(client_side, agent_side) {
            (Ok(client), Ok(agent)) => (client, agent),
            (client, agent) => {
                tracing::debug!(pod = %pod_name, client = ?client.err(), agent = ?agent.err(),
                    "exec upgrade failed");
                return;
            }
        };
        let mut client = hyper_util::rt::TokioIo::new(client);
        let mut agent = hyper_util::rt::TokioIo::new(agent);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut agent).await;
    });
    Ok(switched.body(Body::empty()).expect("valid response"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_pods_are_deleted_gracefully_and_may_only_be_hurried() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"},
            "status": {"phase": "Running"}});
        let marked = Grace::Mark { deletion_timestamp: 130, grace_seconds: 30 };
        assert_eq!(decide(&pod, None, true, 100), marked);
        assert_eq!(decide(&pod, Some(0), true, 100), Grace::Now);
        assert_eq!(decide(&pod, None, false, 100), Grace::Now, "no node to finish it");
        let unbound = json!({"metadata": {"name": "p"}, "spec": {}});
        assert_eq!(decide(&unbound, None, true, 100), Grace::Now);
        let done = json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Succeeded"}});
        assert_eq!(decide(&done, None, true, 100), Grace::Now);
        let custom = json!({"spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 5}});
        assert_eq!(
            decide(&custom, None, true, 100),
            Grace::Mark { deletion_timestamp: 105, grace_seconds: 5 }
        );
        let deleting = json!({"metadata": {"deletionTimestamp": "1970-01-01T00:02:10Z",
            "deletionGracePeriodSeconds": 30}, "spec": {"nodeName": "n1"}});
        assert_eq!(decide(&deleting, None, true, 110), Grace::Pending);
        assert_eq!(decide(&deleting, Some(60), true, 110), Grace::Pending);
        assert_eq!(
            decide(&deleting, Some(10), true, 110),
            Grace::Mark { deletion_timestamp: 110, grace_seconds: 10 }
        );
        assert_eq!(decide(&deleting, Some(0), true, 110), Grace::Now);
    }

    #[test]
    fn log_requests_name_a_container_as_kubernetes_asks() {
        let pod = json!({"metadata": {"name": "web"}, "spec": {
            "initContainers": [{"name": "setup"}],
            "containers": [{"name": "a"}, {"name": "b"}]}});
        let error = log_container(&pod, None).unwrap_err();
        assert_eq!(
            error.message,
            "a container name must be specified for pod web, choose one of: [a b] or one of \
             the init containers: [setup]"
        );
        assert_eq!(log_container(&pod, Some("setup")).unwrap(), "setup");
        assert_eq!(
            log_container(&pod, Some("c")).unwrap_err().message,
            "container c is not valid for pod web"
        );
        let single = json!({"metadata": {"name": "one"}, "spec": {"containers": [{"name": "x"}]}});
        assert_eq!(log_container(&single, None).unwrap(), "x");
    }
}
