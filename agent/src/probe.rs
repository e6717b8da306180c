//! Liveness, readiness and startup probes, as the kubelet's prober workers run them: one task
//! per running container, each probe on its own period after its initial delay, liveness and
//! readiness held back until the startup probe has succeeded. A result changes only after
//! `successThreshold` consecutive successes or `failureThreshold` consecutive failures;
//! readiness starts as failure, liveness as success, startup as unknown. A liveness or startup
//! failure is handed to the pod worker, which kills the container; the task then ends (a new
//! container gets a new one).
//!
//! Handlers: `exec` (through the runtime, with the container's environment), `httpGet`
//! (HTTP/1.1; HTTPS without certificate verification, as the kubelet; 200–399 is success) and
//! `tcpSocket` (a connection is success). gRPC probes fail with a clear message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::limits::{
    PROBE_FAILURE_THRESHOLD_DEFAULT, PROBE_OUTPUT_BYTES_MAX, PROBE_PERIOD_SECONDS_DEFAULT,
    PROBE_SUCCESS_THRESHOLD_DEFAULT, PROBE_TIMEOUT_SECONDS_DEFAULT,
};
use crate::metrics::Metrics;
use crate::runtime::{ContainerId, Runtime, RuntimeError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }
}

/// What the probes of one container concluded so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeResults {
    /// The readiness probe's result (true when there is none).
    pub ready: bool,
    /// The startup probe succeeded (true when there is none).
    pub started: bool,
    /// Set once liveness failed `failureThreshold` times: the container must be killed.
    pub liveness_failure: Option<String>,
    pub startup_failure: Option<String>,
}

/// Probe results by container, shared between probe tasks and pod workers.
pub type SharedResults = Arc<Mutex<HashMap<ContainerId, ProbeResults>>>;

/// Consecutive-result thresholds of one probe (pure).
#[derive(Clone, Debug)]
pub struct Tracker {
    success_threshold: i32,
    failure_threshold: i32,
    result: Option<bool>,
    last_outcome: Option<bool>,
    run: i32,
}

impl Tracker {
    pub fn new(probe: &Probe, initial: Option<bool>) -> Tracker {
        Tracker {
            success_threshold: probe
                .success_threshold
                .unwrap_or(PROBE_SUCCESS_THRESHOLD_DEFAULT)
                .max(1),
            failure_threshold: probe
                .failure_threshold
                .unwrap_or(PROBE_FAILURE_THRESHOLD_DEFAULT)
                .max(1),
            result: initial,
            last_outcome: None,
            run: 0,
        }
    }

    /// Records one outcome; returns the (possibly new) result.
    pub fn observe(&mut self, ok: bool) -> Option<bool> {
        if self.last_outcome == Some(ok) {
            self.run += 1;
        } else {
            self.run = 1;
        }
        self.last_outcome = Some(ok);
        let threshold = if ok { self.success_threshold } else { self.failure_threshold };
        if self.run >= threshold {
            self.result = Some(ok);
        }
        self.result
    }
}

/// What a probe task needs.
#[derive(Clone)]
pub struct ProbeContext {
    pub runtime: Arc<dyn Runtime>,
    pub metrics: Metrics,
    pub results: SharedResults,
    /// Wakes the pod worker when a result changes.
    pub wake: Arc<Notify>,
    pub pod_ip: String,
    pub namespace: String,
    pub pod: String,
    /// Reports failures as `Unhealthy` events.
    pub events: Arc<crate::pod::PodEvents>,
}

fn seconds(value: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(value.unwrap_or(default).max(0) as u64)
}

struct Scheduled {
    kind: ProbeKind,
    probe: Probe,
    tracker: Tracker,
    due: Instant,
    period: Duration,
}

/// Starts the probes of a container that started at `started` (none: nothing to do, and
/// the container counts as ready and started at once).
pub fn spawn(
    container: &Container,
    id: ContainerId,
    started: Instant,
    context: ProbeContext,
) -> Option<tokio::task::JoinHandle<()>> {
    let mut probes = Vec::new();
    let mut add = |kind, probe: &Option<Probe>, initial| {
        if let Some(probe) = probe {
            probes.push(Scheduled {
                kind,
                tracker: Tracker::new(probe, initial),
                due: started + seconds(probe.initial_delay_seconds, 0),
                period: seconds(probe.period_seconds, PROBE_PERIOD_SECONDS_DEFAULT)
                    .max(Duration::from_secs(1)),
                probe: probe.clone(),
            });
        }
    };
    add(ProbeKind::Startup, &container.startup_probe, None);
    add(ProbeKind::Liveness, &container.liveness_probe, Some(true));
    add(ProbeKind::Readiness, &container.readiness_probe, Some(false));
    let initial = ProbeResults {
        ready: container.readiness_probe.is_none(),
        started: container.startup_probe.is_none(),
        liveness_failure: None,
        startup_failure: None,
    };
    context.results.lock().expect("probe results").insert(id.clone(), initial);
    if probes.is_empty() {
        return None;
    }
    let container = container.clone();
    Some(tokio::spawn(run(container, id, probes, context)))
}

async fn run(
    container: Container,
    id: ContainerId,
    mut probes: Vec<Scheduled>,
    context: ProbeContext,
) {
    loop {
        let Some(next) = probes.iter().map(|p| p.due).min() else { return };
        tokio::time::sleep_until(next).await;
        let now = Instant::now();
        let started = context.results.lock().expect("probe results").get(&id).map(|r| r.started);
        let Some(started) = started else { return };
        for scheduled in probes.iter_mut() {
            if scheduled.due > now {
                continue;
            }
            scheduled.due = now + scheduled.period;
            let kind = scheduled.kind;
            let waiting_for_startup = kind != ProbeKind::Startup && !started;
            if waiting_for_startup || (kind == ProbeKind::Startup && started) {
                continue;
            }
            let (ok, message) = execute(&scheduled.probe, &container, &id, &context).await;
            let result = if ok { "successful" } else { "failed" };
            context
                .metrics
                .probes
                .with_label_values(&[
                    &kind.as_str().to_lowercase(),
                    result,
                    &container.name,
                    &context.pod,
                    &context.namespace,
                ])
                .inc();
            if !ok {
                let text = format!("{} probe failed: {message}", kind.as_str());
                context.events.warning("Unhealthy", &text).await;
            }
            let outcome = scheduled.tracker.observe(ok);
            if apply(&context, &id, kind, outcome, &message) {
                context.wake.notify_one();
            }
            if matches!(kind, ProbeKind::Liveness | ProbeKind::Startup) && outcome == Some(false) {
                // The worker kills the container; a new one gets new probes.
                return;
            }
        }
    }
}

/// Records a probe's result; returns whether anything changed.
fn apply(
    context: &ProbeContext,
    id: &ContainerId,
    kind: ProbeKind,
    outcome: Option<bool>,
    message: &str,
) -> bool {
    let mut all = context.results.lock().expect("probe results");
    let Some(results) = all.get_mut(id) else { return false };
    let before = results.clone();
    match (kind, outcome) {
        (ProbeKind::Readiness, Some(ok)) => results.ready = ok,
        (ProbeKind::Startup, Some(true)) => results.started = true,
        (ProbeKind::Startup, Some(false)) => {
            results.startup_failure = Some(message.to_string());
        }
        (ProbeKind::Liveness, Some(false)) => {
            results.liveness_failure = Some(message.to_string());
        }
        _ => {}
    }
    *results != before
}

/// Runs one probe once: (success, message).
async fn execute(
    probe: &Probe,
    container: &Container,
    id: &ContainerId,
    context: &ProbeContext,
) -> (bool, String) {
    let timeout =
        seconds(probe.timeout_seconds, PROBE_TIMEOUT_SECONDS_DEFAULT).max(Duration::from_secs(1));
    if let Some(exec) = &probe.exec {
        let command = exec.command.clone().unwrap_or_default();
        return match context.runtime.exec_sync(id, &command, timeout).await {
            Ok(result) if result.exit_code == 0 => (true, result.output),
            Ok(result) => (
                false,
                format!("command {command:?} exited with {}: {}", result.exit_code, result.output),
            ),
            Err(RuntimeError::Timeout { .. }) => {
                (false, format!("command {command:?} timed out after {timeout:?}"))
            }
            Err(error) => (false, error.to_string()),
        };
    }
    if let Some(http) = &probe.http_get {
        let host = http.host.clone().filter(|h| !h.is_empty()).unwrap_or(context.pod_ip.clone());
        let port = match resolve_port(&http.port, container) {
            Ok(port) => port,
            Err(message) => return (false, message),
        };
        let path = http.path.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "/".into());
        let https = http.scheme.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"));
        let headers: Vec<(String, String)> =
            http.http_headers.iter().flatten().map(|h| (h.name.clone(), h.value.clone())).collect();
        let request = http_get(&host, port, &path, https, &headers);
        return match tokio::time::timeout(timeout, request).await {
            Ok(Ok(code)) if (200..400).contains(&code) => (true, String::new()),
            Ok(Ok(code)) => (false, format!("HTTP probe failed with statuscode: {code}")),
            Ok(Err(error)) => (false, format!("Get \"http://{host}:{port}{path}\": {error}")),
            Err(_) => (
                false,
                format!(
                    "Get \"http://{host}:{port}{path}\": context deadline exceeded (Client.Timeout \
                     exceeded while awaiting headers)"
                ),
            ),
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        let host = tcp.host.clone().filter(|h| !h.is_empty()).unwrap_or(context.pod_ip.clone());
        let port = match resolve_port(&tcp.port, container) {
            Ok(port) => port,
            Err(message) => return (false, message),
        };
        let connect = tokio::net::TcpStream::connect((host.as_str(), port));
        return match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(_)) => (true, String::new()),
            Ok(Err(error)) => (false, format!("dial tcp {host}:{port}: {error}")),
            Err(_) => (false, format!("dial tcp {host}:{port}: i/o timeout")),
        };
    }
    if probe.grpc.is_some() {
        return (false, "gRPC probes are not supported by this agent yet".into());
    }
    (false, "the probe names no handler (exec, httpGet or tcpSocket)".into())
}

/// A probe's port: a number, or the name of one of the container's ports.
pub fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(number) => u16::try_from(*number)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("invalid port number: {number}")),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("couldn't find port: {name} in the container")),
    }
}

/// One GET; returns the status code.
async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    https: bool,
    headers: &[(String, String)],
) -> std::io::Result<u16> {
    let stream = tokio::net::TcpStream::connect((host, port)).await?;
    let mut request = format!("GET {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: {host}:{port}\r\n"));
    }
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("user-agent")) {
        request.push_str("User-Agent: kube-probe/1.32\r\n");
    }
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("accept")) {
        request.push_str("Accept: */*\r\n");
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    if https {
        let config = control_plane::apiserver::pods::insecure_client_config(None)
            .map_err(std::io::Error::other)?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(std::io::Error::other)?;
        let tls = connector.connect(name, stream).await?;
        exchange(tls, request.as_bytes()).await
    } else {
        exchange(stream, request.as_bytes()).await
    }
}

async fn exchange(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    request: &[u8],
) -> std::io::Result<u16> {
    stream.write_all(request).await?;
    let mut response = Vec::new();
    let mut buffer = [0u8; 1024];
    while !response.windows(2).any(|w| w == b"\r\n") && response.len() < PROBE_OUTPUT_BYTES_MAX {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        response.extend_from_slice(&buffer[..read]);
    }
    let text = String::from_utf8_lossy(&response);
    let status_line = text.lines().next().unwrap_or("");
    status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("malformed HTTP response {status_line:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(success: i32, failure: i32) -> Probe {
        Probe {
            success_threshold: Some(success),
            failure_threshold: Some(failure),
            ..Probe::default()
        }
    }

    #[test]
    fn results_change_only_after_consecutive_thresholds() {
        let mut readiness = Tracker::new(&probe(2, 3), Some(false));
        assert_eq!(readiness.observe(true), Some(false), "one success is not two");
        assert_eq!(readiness.observe(true), Some(true));
        assert_eq!(readiness.observe(false), Some(true));
        assert_eq!(readiness.observe(true), Some(true), "the failure run was broken");
        assert_eq!(readiness.observe(false), Some(true));
        assert_eq!(readiness.observe(false), Some(true));
        assert_eq!(readiness.observe(false), Some(false), "three in a row");
        let mut startup = Tracker::new(&probe(1, 3), None);
        assert_eq!(startup.observe(false), None);
        assert_eq!(startup.observe(true), Some(true));
    }

    #[test]
    fn ports_are_numbers_or_named_container_ports() {
        let container: Container = serde_json::from_value(serde_json::json!({
            "name": "web", "ports": [{"name": "http", "containerPort": 8080}]
        }))
        .unwrap();
        assert_eq!(resolve_port(&IntOrString::Int(80), &container), Ok(80));
        assert_eq!(resolve_port(&IntOrString::String("http".into()), &container), Ok(8080));
        assert!(resolve_port(&IntOrString::String("nope".into()), &container).is_err());
        assert!(resolve_port(&IntOrString::Int(0), &container).is_err());
    }
}
