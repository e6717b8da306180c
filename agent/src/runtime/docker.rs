//! The `docker` runtime: pods as Docker containers through the Docker Engine API on its unix
//! socket, laid out as the kubelet's dockershim (and cri-dockerd) lays them out.
//!
//! - A pod's sandbox is a small "pause" container (`skiff_POD_<pod>_<ns>_<uid>_0`) that holds
//!   the pod's network and IPC namespaces and does nothing else; the pod IP is its address on
//!   Docker's network. App containers (`skiff_<container>_<pod>_<ns>_<uid>_<attempt>`) join
//!   those namespaces (`network_mode: container:<sandbox>`), so a pod's containers reach each
//!   other on `localhost`. No registry is needed for the sandbox: on x86_64 the runtime
//!   imports [`SANDBOX_IMAGE`] at start-up when the daemon lacks it, from a tarball it makes
//!   itself holding a 129-byte static executable that sleeps forever (the pause container's
//!   whole job); elsewhere it uses `registry.k8s.io/pause`, pulled once.
//! - Every container carries labels (pod uid, namespace and name, container name, attempt,
//!   spec hash, log path, the node's name), so a restarted agent finds and adopts what runs,
//!   and agents of several nodes can share one daemon: each sees only its own node's
//!   containers.
//! - Images: `imagePullPolicy` is honoured (defaulted as the API server does: `Always` for
//!   `:latest` or no tag, else `IfNotPresent`); a missing image under `Never` is
//!   `ErrImageNeverPull`; a failed pull is `ErrImagePull` with the daemon's message, then
//!   `ImagePullBackOff` until a back-off (10 s doubling to 5 min, per pod and image) has
//!   passed. Pulls are bounded in time and must show progress.
//! - Output: Docker keeps it in its `json-file` log (bounded); a copier task per container
//!   follows it through the API and writes it, with Docker's own timestamps, into the agent's
//!   CRI-format log file ([`super::ContainerConfig::log_path`]). After an agent restart the
//!   copier resumes after the last record in the file, so nothing is written twice.
//! - `stop_container` is `docker stop` with the grace period (SIGTERM or the image's stop
//!   signal, SIGKILL after it); exits, `OOMKilled` and start failures come from inspect.
//! - Exec (probes) is Docker's exec API. An exec that outlives its timeout is abandoned, not
//!   killed: Docker's API has no way to kill an exec (dockershim had the same limit).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::exec::{CreateExecOptions, ResizeExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, HostConfig,
    HostConfigLogConfig,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, StopContainerOptions,
};
use bollard::Docker;
use futures::{FutureExt, StreamExt};
use k8s_openapi::jiff::Timestamp;
use tokio::sync::watch;

use super::{
    ContainerConfig, ContainerId, ContainerState, ContainerStatus, ExecRequest, ExecResult,
    ExecSession, ImageAction, Runtime, RuntimeError, RuntimeFuture, Sandbox, SandboxConfig,
    TerminalSize,
};
use crate::limits::{
    EXEC_CHUNK_BYTES_MAX, EXEC_OUTPUT_BYTES_MAX, EXEC_RESIZES_BUFFERED, LOG_FILE_BYTES_MAX,
    LOG_LINE_BYTES_MAX, PODS_MAX, RESTART_BACKOFF_INITIAL_MS, RESTART_BACKOFF_MAX_MS,
};

/// The daemon's socket when the agent is told nothing else.
pub const DOCKER_SOCKET_DEFAULT: &str = "/var/run/docker.sock";
/// The sandbox image the runtime imports itself (x86_64).
pub const SANDBOX_IMAGE: &str = "skiff-pause:1";
/// The sandbox image elsewhere: Kubernetes' own, pulled.
pub const SANDBOX_IMAGE_PULLED: &str = "registry.k8s.io/pause:3.10";

/// How long one API call may take to answer (the kubelet's `runtimeRequestTimeout`, 2 min);
/// a stop gets its grace period on top.
pub const DOCKER_REQUEST_TIMEOUT_MS: u64 = 120_000;
/// How long a pull may take in all, and how long it may go without progress (dockershim's
/// `imagePullProgressDeadline`, 1 min).
pub const IMAGE_PULL_TIMEOUT_MS: u64 = 300_000;
pub const IMAGE_PULL_PROGRESS_DEADLINE_MS: u64 = 60_000;
/// Pod-and-image pairs whose failed pulls are remembered for the back-off.
pub const IMAGE_PULL_BACKOFF_ENTRIES_MAX: usize = 4_096;
/// Containers whose output is copied at once (several per pod).
pub const LOG_COPIERS_MAX: usize = PODS_MAX * 16;
/// How long a status of an exited container waits for the last of its output to be copied.
pub const LOG_DRAIN_TIMEOUT_MS: u64 = 500;
/// Statuses of exited containers kept (they never change, so they are inspected once).
pub const EXITED_STATUS_CACHE_MAX: usize = LOG_COPIERS_MAX;
/// Docker's own json-file log of a container: its size before rotation, and files kept.
pub const DOCKER_LOG_FILE_BYTES_MAX: u64 = LOG_FILE_BYTES_MAX;
pub const DOCKER_LOG_FILES_MAX: u32 = 2;
/// `cpu.cfs_period_us` for CPU limits (the kernel's and the kubelet's default).
const CPU_PERIOD_MICROS: i64 = 100_000;

const _: () = assert!(IMAGE_PULL_PROGRESS_DEADLINE_MS <= IMAGE_PULL_TIMEOUT_MS);
const _: () = assert!(LOG_DRAIN_TIMEOUT_MS < DOCKER_REQUEST_TIMEOUT_MS);
const _: () = assert!(DOCKER_LOG_FILES_MAX >= 1);

/// Labels every container of this runtime carries. The pod and container ones are the names
/// dockershim used; the rest are Skiff's.
pub mod labels {
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
    /// `podsandbox` or `container`.
    pub const TYPE: &str = "io.kubernetes.docker.type";
    pub const TYPE_SANDBOX: &str = "podsandbox";
    pub const TYPE_CONTAINER: &str = "container";
    pub const NODE: &str = "io.skiff.node";
    pub const ATTEMPT: &str = "io.skiff.attempt";
    pub const SPEC_HASH: &str = "io.skiff.spec-hash";
    pub const LOG_PATH: &str = "io.skiff.log-path";
    /// The image as the pod spec names it (Docker reports it resolved).
    pub const IMAGE: &str = "io.skiff.image";
}

/// How the `docker` runtime is set up.
#[derive(Clone, Debug)]
pub struct DockerRuntimeConfig {
    /// The daemon's unix socket.
    pub socket: PathBuf,
    /// The node whose containers these are (the `io.skiff.node` label).
    pub node_name: String,
    /// The sandbox image; `None` for [`SANDBOX_IMAGE`], imported when absent.
    pub sandbox_image: Option<String>,
}

impl DockerRuntimeConfig {
    pub fn new(node_name: &str) -> DockerRuntimeConfig {
        DockerRuntimeConfig {
            socket: PathBuf::from(DOCKER_SOCKET_DEFAULT),
            node_name: node_name.to_string(),
            sandbox_image: None,
        }
    }
}

/// A container's output copier.
struct Copier {
    task: tokio::task::JoinHandle<()>,
    /// Turns true once everything Docker had was copied (the container ended).
    done: watch::Receiver<bool>,
}

pub struct DockerRuntime {
    docker: Docker,
    node_name: String,
    server_version: String,
    sandbox_image: String,
    pull_backoff: Mutex<PullBackoff>,
    copiers: Mutex<HashMap<String, Copier>>,
    exited: Mutex<HashMap<String, ContainerStatus>>,
}

impl std::fmt::Debug for DockerRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerRuntime").field("node", &self.node_name).finish()
    }
}

impl Drop for DockerRuntime {
    fn drop(&mut self) {
        // Copiers write into the agent's files: none outlives its runtime (the next one
        // resumes them).
        for copier in self.copiers.lock().expect("copiers").values() {
            copier.task.abort();
        }
    }
}

fn docker_error(operation: &'static str) -> impl Fn(DockerError) -> RuntimeError {
    move |error| match error {
        DockerError::DockerResponseServerError { status_code: 404, message } => {
            RuntimeError::NotFound(message)
        }
        DockerError::DockerResponseServerError { message, .. } => {
            RuntimeError::Failed { operation, reason: message }
        }
        other => RuntimeError::failed(operation, other),
    }
}

fn request_timeout() -> Duration {
    Duration::from_millis(DOCKER_REQUEST_TIMEOUT_MS)
}

impl DockerRuntime {
    /// Connects to the daemon (agreeing on an API version both speak) and makes sure the
    /// sandbox image is there.
    pub async fn connect(config: DockerRuntimeConfig) -> Result<DockerRuntime, RuntimeError> {
        let socket = config.socket.to_str().ok_or_else(|| {
            RuntimeError::failed("connect", "the docker socket path is not UTF-8")
        })?;
        let docker = Docker::connect_with_unix(
            socket,
            request_timeout().as_secs(),
            bollard::API_DEFAULT_VERSION,
        )
        .map_err(docker_error("connect"))?;
        let unreachable = |error: DockerError| {
            RuntimeError::failed(
                "connect",
                format!("cannot reach the Docker daemon at {socket}: {error}"),
            )
        };
        let docker = docker.negotiate_version().await.map_err(unreachable)?;
        let version = docker.version().await.map_err(unreachable)?;
        let mut runtime = DockerRuntime {
            docker,
            node_name: config.node_name,
            server_version: version.version.unwrap_or_else(|| "unknown".into()),
            sandbox_image: String::new(),
            pull_backoff: Mutex::new(PullBackoff::default()),
            copiers: Mutex::new(HashMap::new()),
            exited: Mutex::new(HashMap::new()),
        };
        runtime.sandbox_image = match config.sandbox_image {
            Some(image) => image,
            None if cfg!(target_arch = "x86_64") => {
                runtime.import_sandbox_image().await?;
                SANDBOX_IMAGE.to_string()
            }
            None => SANDBOX_IMAGE_PULLED.to_string(),
        };
        Ok(runtime)
    }

    /// The Docker client, for callers that look at what the runtime made.
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    async fn import_sandbox_image(&self) -> Result<(), RuntimeError> {
        if self.docker.inspect_image(SANDBOX_IMAGE).await.is_ok() {
            return Ok(());
        }
        let (repo, tag) = SANDBOX_IMAGE.split_once(':').expect("the sandbox image has a tag");
        let options = CreateImageOptions {
            from_src: Some("-".into()),
            repo: Some(repo.into()),
            tag: Some(tag.into()),
            changes: vec!["CMD [\"/pause\"]".into()],
            ..Default::default()
        };
        let body = bollard::body_full(pause_tarball().into());
        let mut progress = self.docker.create_image(Some(options), Some(body), None);
        while let Some(item) = progress.next().await {
            item.map_err(|e| {
                RuntimeError::failed("import the sandbox image", format!("{SANDBOX_IMAGE}: {e}"))
            })?;
        }
        tracing::info!(image = SANDBOX_IMAGE, "imported the pod sandbox image");
        Ok(())
    }

    fn filters(&self, kind: &str, pod_uid: Option<&str>) -> HashMap<String, Vec<String>> {
        let mut wanted = vec![
            format!("{}={}", labels::NODE, self.node_name),
            format!("{}={kind}", labels::TYPE),
        ];
        if let Some(uid) = pod_uid {
            wanted.push(format!("{}={uid}", labels::POD_UID));
        }
        HashMap::from([("label".to_string(), wanted)])
    }

    async fn list_ids(
        &self,
        kind: &str,
        pod_uid: Option<&str>,
    ) -> Result<Vec<(String, bool)>, RuntimeError> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(self.filters(kind, pod_uid)),
            ..Default::default()
        };
        let found =
            self.docker.list_containers(Some(options)).await.map_err(docker_error("list"))?;
        Ok(found
            .into_iter()
            .filter_map(|c| {
                let running = c.state == Some(bollard::models::ContainerSummaryStateEnum::RUNNING);
                c.id.map(|id| (id, running))
            })
            .collect())
    }

    /// The pod's running sandbox container, if any.
    async fn sandbox_id(&self, pod_uid: &str) -> Result<Option<String>, RuntimeError> {
        let found = self.list_ids(labels::TYPE_SANDBOX, Some(pod_uid)).await?;
        Ok(found.into_iter().find(|(_, running)| *running).map(|(id, _)| id))
    }

    async fn sandbox(&self, config: &SandboxConfig) -> Result<Sandbox, RuntimeError> {
        let id = match self.sandbox_id(&config.pod_uid).await? {
            Some(id) => id,
            None => self.start_sandbox(config).await?,
        };
        let inspect = self.docker.inspect_container(&id, None).await;
        let inspect = inspect.map_err(docker_error("inspect the sandbox"))?;
        let networks = inspect.network_settings.and_then(|n| n.networks).unwrap_or_default();
        let mut addresses: Vec<(String, String)> = networks
            .into_iter()
            .filter_map(|(name, endpoint)| Some((name, endpoint.ip_address?)))
            .filter(|(_, ip)| !ip.is_empty())
            .collect();
        addresses.sort();
        let pod_ip = addresses.into_iter().next().map(|(_, ip)| ip).ok_or_else(|| {
            RuntimeError::failed("run the sandbox", "the sandbox has no IP address")
        })?;
        Ok(Sandbox { pod_ip, host_network: false })
    }

    async fn start_sandbox(&self, config: &SandboxConfig) -> Result<String, RuntimeError> {
        // A stopped sandbox (the daemon restarted) is replaced, not restarted: its network
        // namespace is gone either way.
        for (id, _) in self.list_ids(labels::TYPE_SANDBOX, Some(&config.pod_uid)).await? {
            self.force_remove(&id).await?;
        }
        if self.sandbox_image == SANDBOX_IMAGE_PULLED {
            self.ensure_image(&config.pod_uid, SANDBOX_IMAGE_PULLED, Some("IfNotPresent")).await?;
        }
        let labels = HashMap::from([
            (labels::POD_UID.to_string(), config.pod_uid.clone()),
            (labels::POD_NAMESPACE.to_string(), config.namespace.clone()),
            (labels::POD_NAME.to_string(), config.name.clone()),
            (labels::TYPE.to_string(), labels::TYPE_SANDBOX.to_string()),
            (labels::NODE.to_string(), self.node_name.clone()),
        ]);
        let body = ContainerCreateBody {
            image: Some(self.sandbox_image.clone()),
            hostname: Some(config.name.chars().take(63).collect()),
            labels: Some(labels),
            host_config: Some(HostConfig {
                ipc_mode: Some("shareable".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let name = format!("skiff_POD_{}_{}_{}_0", config.name, config.namespace, config.pod_uid);
        let options = CreateContainerOptions { name: Some(name), ..Default::default() };
        let created = self.docker.create_container(Some(options), body).await;
        let id = created.map_err(docker_error("create the sandbox"))?.id;
        if let Err(error) = self.docker.start_container(&id, None).await {
            let _ = self.force_remove(&id).await;
            return Err(docker_error("start the sandbox")(error));
        }
        Ok(id)
    }

    async fn force_remove(&self, id: &str) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) | Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(error) => Err(docker_error("remove")(error)),
        }
    }

    /// Makes sure `image` is present, pulling it as `policy` says.
    async fn ensure_image(
        &self,
        pod_uid: &str,
        image: &str,
        policy: Option<&str>,
    ) -> Result<(), RuntimeError> {
        match self.image_decision(pod_uid, image, policy).await? {
            ImageAction::Present => Ok(()),
            ImageAction::Pull => self.pull_recorded(pod_uid, image).await.map(|_| ()),
        }
    }

    /// Whether `image` must be pulled under `policy`, or why it cannot be had.
    async fn image_decision(
        &self,
        pod_uid: &str,
        image: &str,
        policy: Option<&str>,
    ) -> Result<ImageAction, RuntimeError> {
        let reference = parse_image(image)?;
        let policy = policy.filter(|p| !p.is_empty()).unwrap_or(reference.default_policy());
        let present = || async { self.docker.inspect_image(image).await.is_ok() };
        match policy {
            "Never" if present().await => return Ok(ImageAction::Present),
            "Never" => {
                return Err(RuntimeError::ImageRefused {
                    reason: "ErrImageNeverPull",
                    message: format!(
                        "Container image \"{image}\" is not present with pull policy of Never"
                    ),
                })
            }
            "IfNotPresent" if present().await => return Ok(ImageAction::Present),
            _ => {}
        }
        let key = format!("{pod_uid}_{image}");
        if self.pull_backoff.lock().expect("pull back-off").in_backoff(&key, Instant::now()) {
            return Err(RuntimeError::ImageRefused {
                reason: "ImagePullBackOff",
                message: format!("Back-off pulling image \"{image}\""),
            });
        }
        Ok(ImageAction::Pull)
    }

    /// Pulls `image` for pod `pod_uid`, keeping the pod-and-image back-off; the image's size.
    async fn pull_recorded(&self, pod_uid: &str, image: &str) -> Result<Option<u64>, RuntimeError> {
        let reference = parse_image(image)?;
        let key = format!("{pod_uid}_{image}");
        tracing::info!(image, "pulling image");
        match self.pull(&reference).await {
            Ok(()) => {
                self.pull_backoff.lock().expect("pull back-off").forget(&key);
                let inspect = self.docker.inspect_image(image).await;
                Ok(inspect.ok().and_then(|i| i.size).map(|size| size.max(0) as u64))
            }
            Err(reason) => {
                self.pull_backoff.lock().expect("pull back-off").failed(&key, Instant::now());
                Err(RuntimeError::ImageRefused {
                    reason: "ErrImagePull",
                    message: format!("Failed to pull image \"{image}\": {reason}"),
                })
            }
        }
    }

    async fn pull(&self, reference: &ImageReference) -> Result<(), String> {
        let options = CreateImageOptions {
            from_image: Some(reference.repository.clone()),
            tag: Some(reference.tag_or_digest.clone()),
            ..Default::default()
        };
        let mut progress = self.docker.create_image(Some(options), None, None);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(IMAGE_PULL_TIMEOUT_MS);
        let stalled = Duration::from_millis(IMAGE_PULL_PROGRESS_DEADLINE_MS);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(stalled.min(left), progress.next()).await {
                Ok(None) => return Ok(()),
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(DockerError::DockerStreamError { error }))) => return Err(error),
                Ok(Some(Err(DockerError::DockerResponseServerError { message, .. }))) => {
                    return Err(message)
                }
                Ok(Some(Err(error))) => return Err(error.to_string()),
                Err(_) if left <= stalled => {
                    return Err(format!("pull timed out after {IMAGE_PULL_TIMEOUT_MS} ms"))
                }
                Err(_) => {
                    return Err(format!(
                        "pull made no progress for {IMAGE_PULL_PROGRESS_DEADLINE_MS} ms"
                    ))
                }
            }
        }
    }

    async fn create(&self, config: &ContainerConfig) -> Result<ContainerId, RuntimeError> {
        // The pod worker pulls first (`image_action`, `pull_image`); a caller that did not
        // gets the same policy applied here.
        if self.docker.inspect_image(&config.image).await.is_err() {
            let policy = config.image_pull_policy.as_deref();
            self.ensure_image(&config.pod_uid, &config.image, policy).await?;
        }
        let Some(sandbox) = self.sandbox_id(&config.pod_uid).await? else {
            return Err(RuntimeError::failed("create", "the pod's sandbox is not running"));
        };
        if let Some(parent) = config.log_path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| RuntimeError::failed("create the log dir", e))?;
        }
        let body = container_body(config, &self.node_name, &sandbox);
        let name = format!(
            "skiff_{}_{}_{}_{}_{}",
            config.name, config.pod_name, config.pod_namespace, config.pod_uid, config.attempt
        );
        let options = CreateContainerOptions { name: Some(name), ..Default::default() };
        let created = self.docker.create_container(Some(options), body).await;
        let created = created.map_err(docker_error("create"))?;
        for warning in created.warnings.iter().filter(|w| !w.is_empty()) {
            tracing::debug!(id = %created.id, warning, "docker create");
        }
        Ok(ContainerId(created.id))
    }

    async fn start(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        let started = self.docker.start_container(&id.0, None).await;
        // Output is copied even from a container that could not start (Docker may have
        // logged why).
        if let Ok(inspect) = self.docker.inspect_container(&id.0, None).await {
            if let Some(path) = label(&inspect, labels::LOG_PATH) {
                self.ensure_copier(&id.0, PathBuf::from(path));
            }
        }
        started.map_err(docker_error("start"))
    }

    async fn stop(&self, id: &ContainerId, grace: Duration) -> Result<(), RuntimeError> {
        let seconds = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
        let options = StopContainerOptions {
            t: Some(seconds.min(i32::MAX as u64) as i32),
            ..Default::default()
        };
        // Docker answers once the container is gone: the request may take the whole grace.
        let docker = self.docker.clone().with_timeout(grace + request_timeout());
        docker.stop_container(&id.0, Some(options)).await.map_err(docker_error("stop"))
    }

    async fn remove(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        let log_path = match self.docker.inspect_container(&id.0, None).await {
            Ok(inspect) => label(&inspect, labels::LOG_PATH).map(PathBuf::from),
            Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => None,
            Err(error) => return Err(docker_error("remove")(error)),
        };
        self.force_remove(&id.0).await?;
        if let Some(copier) = self.copiers.lock().expect("copiers").remove(&id.0) {
            copier.task.abort();
        }
        self.exited.lock().expect("exited").remove(&id.0);
        if let Some(log) = log_path {
            let _ = std::fs::remove_file(&log);
            let _ = std::fs::remove_file(log.with_extension("log.1"));
        }
        Ok(())
    }

    /// Starts copying a container's output into its log file, unless that already happens
    /// (or happened) in this agent.
    fn ensure_copier(&self, id: &str, log_path: PathBuf) {
        let mut copiers = self.copiers.lock().expect("copiers");
        if copiers.contains_key(id) {
            return;
        }
        if copiers.len() >= LOG_COPIERS_MAX {
            tracing::warn!(id, "too many containers to copy the output of; this one is not");
            return;
        }
        let (sender, done) = watch::channel(false);
        let (docker, container) = (self.docker.clone(), id.to_string());
        let task = tokio::spawn(async move {
            if let Err(error) = copy_output(&docker, &container, &log_path).await {
                tracing::warn!(id = %container, %error, "cannot copy the container's output");
            }
            let _ = sender.send(true);
        });
        copiers.insert(id.to_string(), Copier { task, done });
    }

    /// Waits (briefly) for an ended container's output to be in its log file.
    async fn drain_output(&self, id: &str) {
        let done = self.copiers.lock().expect("copiers").get(id).map(|c| c.done.clone());
        if let Some(mut done) = done {
            let drained = done.wait_for(|d| *d);
            let _ =
                tokio::time::timeout(Duration::from_millis(LOG_DRAIN_TIMEOUT_MS), drained).await;
        }
    }

    async fn status(&self, id: &str) -> Result<ContainerStatus, RuntimeError> {
        if let Some(status) = self.exited.lock().expect("exited").get(id) {
            return Ok(status.clone());
        }
        let inspect = self.docker.inspect_container(id, None).await;
        let inspect = inspect.map_err(docker_error("inspect"))?;
        let status = status_of(id, &inspect, Timestamp::now())
            .ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        if !matches!(status.state, ContainerState::Created) {
            // After an agent restart: resume copying; for an exited container, once.
            self.ensure_copier(id, status.log_path.clone());
        }
        if matches!(status.state, ContainerState::Exited { .. }) {
            self.drain_output(id).await;
            let mut exited = self.exited.lock().expect("exited");
            if exited.len() < EXITED_STATUS_CACHE_MAX {
                exited.insert(id.to_string(), status.clone());
            }
        }
        Ok(status)
    }

    async fn list(&self, pod_uid: Option<&str>) -> Result<Vec<ContainerStatus>, RuntimeError> {
        let ids = self.list_ids(labels::TYPE_CONTAINER, pod_uid).await?;
        if pod_uid.is_none() {
            // Forget what was removed behind the agent's back.
            let live: std::collections::HashSet<&str> =
                ids.iter().map(|(id, _)| id.as_str()).collect();
            self.exited.lock().expect("exited").retain(|id, _| live.contains(id.as_str()));
            self.copiers.lock().expect("copiers").retain(|id, copier| {
                let keep = live.contains(id.as_str());
                if !keep {
                    copier.task.abort();
                }
                keep
            });
        }
        let mut found = Vec::with_capacity(ids.len());
        for (id, _) in ids {
            match self.status(&id).await {
                Ok(status) => found.push(status),
                // Removed between the list and the inspect.
                Err(RuntimeError::NotFound(_)) => {}
                Err(error) => return Err(error),
            }
        }
        found.sort_by(|a, b| (&a.name, a.attempt).cmp(&(&b.name, b.attempt)));
        Ok(found)
    }

    async fn exec(
        &self,
        id: &ContainerId,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecResult, RuntimeError> {
        if command.is_empty() {
            return Err(RuntimeError::failed("exec", "empty command"));
        }
        let options = CreateExecOptions {
            cmd: Some(command.to_vec()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let run = async {
            let exec = self.docker.create_exec(&id.0, options).await;
            let exec = exec.map_err(docker_error("exec"))?;
            let mut output = Vec::new();
            let started = self.docker.start_exec(&exec.id, None).await;
            if let StartExecResults::Attached { output: mut stream, .. } =
                started.map_err(docker_error("exec"))?
            {
                while let Some(Ok(chunk)) = stream.next().await {
                    let bytes = chunk.into_bytes();
                    let room = EXEC_OUTPUT_BYTES_MAX.saturating_sub(output.len());
                    output.extend_from_slice(&bytes[..bytes.len().min(room)]);
                }
            }
            let inspect = self.docker.inspect_exec(&exec.id).await;
            let exit_code = inspect.map_err(docker_error("exec"))?.exit_code.unwrap_or(-1);
            let mut text = String::from_utf8_lossy(&output).into_owned();
            super::process::truncate(&mut text, EXEC_OUTPUT_BYTES_MAX);
            Ok(ExecResult { exit_code: exit_code as i32, output: text })
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(result) => result,
            Err(_) => Err(RuntimeError::Timeout { operation: "exec", timeout }),
        }
    }
}

/// Streaming exec (`kubectl exec`) through Docker's exec API: Docker's multiplexed output is
/// split back into stdout and stderr pipes; the exit code is read once the output ends.
impl DockerRuntime {
    async fn exec_streaming(
        &self,
        id: &ContainerId,
        request: &ExecRequest,
    ) -> Result<ExecSession, RuntimeError> {
        if request.command.is_empty() {
            return Err(RuntimeError::failed("exec", "empty command"));
        }
        let options = CreateExecOptions {
            cmd: Some(request.command.clone()),
            attach_stdin: Some(request.stdin),
            attach_stdout: Some(request.stdout),
            attach_stderr: Some(request.stderr && !request.tty),
            tty: Some(request.tty),
            ..Default::default()
        };
        let exec = self.docker.create_exec(&id.0, options).await.map_err(docker_error("exec"))?;
        let start = StartExecOptions { detach: false, tty: request.tty, output_capacity: None };
        let started = self.docker.start_exec(&exec.id, Some(start)).await;
        let StartExecResults::Attached { mut output, input } =
            started.map_err(docker_error("exec"))?
        else {
            return Err(RuntimeError::failed("exec", "Docker did not attach the exec's streams"));
        };
        let (stdout_writer, stdout) = tokio::io::duplex(EXEC_CHUNK_BYTES_MAX);
        let (stderr_writer, stderr) = tokio::io::duplex(EXEC_CHUNK_BYTES_MAX);
        let (ended, output_done) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let (mut out, mut err) = (stdout_writer, stderr_writer);
            while let Some(Ok(chunk)) = output.next().await {
                let written = match chunk {
                    LogOutput::StdErr { message } => err.write_all(&message).await,
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        out.write_all(&message).await
                    }
                    LogOutput::StdIn { .. } => Ok(()),
                };
                if written.is_err() {
                    break;
                }
            }
            let _ = ended.send(());
        });
        let mut session = ExecSession {
            stdin: request.stdin.then_some(input),
            stdout: request.stdout.then(|| Box::pin(stdout) as _),
            stderr: (request.stderr && !request.tty).then(|| Box::pin(stderr) as _),
            resize: None,
            exit: futures::future::pending().boxed(),
        };
        if request.tty {
            let (sender, mut sizes) =
                tokio::sync::mpsc::channel::<TerminalSize>(EXEC_RESIZES_BUFFERED);
            let (docker, exec_id) = (self.docker.clone(), exec.id.clone());
            tokio::spawn(async move {
                while let Some(size) = sizes.recv().await {
                    let options = ResizeExecOptions { height: size.height, width: size.width };
                    if let Err(error) = docker.resize_exec(&exec_id, options).await {
                        tracing::debug!(%error, "exec resize failed");
                    }
                }
            });
            session.resize = Some(sender);
        }
        let docker = self.docker.clone();
        session.exit = async move {
            let _ = output_done.await;
            let inspect = docker.inspect_exec(&exec.id).await.map_err(docker_error("exec"))?;
            Ok(inspect.exit_code.unwrap_or(-1) as i32)
        }
        .boxed();
        Ok(session)
    }
}

/// An image name as a pull wants it, or Kubernetes' refusal of it.
fn parse_image(image: &str) -> Result<ImageReference, RuntimeError> {
    ImageReference::parse(image).ok_or_else(|| RuntimeError::ImageRefused {
        reason: "InvalidImageName",
        message: format!("Failed to apply default image tag \"{image}\": invalid name"),
    })
}

fn label<'a>(inspect: &'a ContainerInspectResponse, key: &str) -> Option<&'a str> {
    inspect.config.as_ref()?.labels.as_ref()?.get(key).map(String::as_str)
}

/// What Docker is asked to create for one container.
fn container_body(config: &ContainerConfig, node: &str, sandbox: &str) -> ContainerCreateBody {
    let labels = HashMap::from([
        (labels::POD_UID.to_string(), config.pod_uid.clone()),
        (labels::POD_NAMESPACE.to_string(), config.pod_namespace.clone()),
        (labels::POD_NAME.to_string(), config.pod_name.clone()),
        (labels::CONTAINER_NAME.to_string(), config.name.clone()),
        (labels::TYPE.to_string(), labels::TYPE_CONTAINER.to_string()),
        (labels::NODE.to_string(), node.to_string()),
        (labels::ATTEMPT.to_string(), config.attempt.to_string()),
        (labels::SPEC_HASH.to_string(), config.spec_hash.clone()),
        (labels::LOG_PATH.to_string(), config.log_path.to_string_lossy().into_owned()),
        (labels::IMAGE.to_string(), config.image.clone()),
    ]);
    let mut host = HostConfig {
        network_mode: Some(format!("container:{sandbox}")),
        ipc_mode: Some(format!("container:{sandbox}")),
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(HashMap::from([
                ("max-size".to_string(), DOCKER_LOG_FILE_BYTES_MAX.to_string()),
                ("max-file".to_string(), DOCKER_LOG_FILES_MAX.to_string()),
            ])),
        }),
        ..Default::default()
    };
    if let Some(bytes) = config.limits.memory_bytes {
        let bytes = bytes.min(i64::MAX as u64) as i64;
        // Swap equal to memory: no swap, as the kubelet sets it.
        (host.memory, host.memory_swap) = (Some(bytes), Some(bytes));
    }
    if let Some(millis) = config.limits.cpu_millis {
        let (quota, shares) = cpu_quota_and_shares(millis);
        (host.cpu_period, host.cpu_quota, host.cpu_shares) =
            (Some(CPU_PERIOD_MICROS), Some(quota), Some(shares));
    }
    ContainerCreateBody {
        image: Some(config.image.clone()),
        // Kubernetes' command replaces the entrypoint and its args the image's CMD; Docker
        // drops the image's CMD when the entrypoint is given, as Kubernetes does.
        entrypoint: (!config.command.is_empty()).then(|| config.command.clone()),
        cmd: (!config.args.is_empty()).then(|| config.args.clone()),
        env: Some(config.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        working_dir: config.working_dir.clone(),
        labels: Some(labels),
        host_config: Some(host),
        ..Default::default()
    }
}

/// `cpu.cfs_quota_us` for a CPU limit in millicores (at least the kernel's 1 ms), and CPU
/// shares for it as the request (a request defaults to the limit; the kubelet's
/// `MilliCPUToShares`: 1024 per core, at least 2).
pub fn cpu_quota_and_shares(cpu_millis: u64) -> (i64, i64) {
    let millis = cpu_millis.min(i64::MAX as u64 / 1024) as i64;
    ((millis * CPU_PERIOD_MICROS / 1000).max(1000), (millis * 1024 / 1000).max(2))
}

fn parse_time(text: Option<&str>) -> Option<Timestamp> {
    let time: Timestamp = text?.parse().ok()?;
    // Docker's zero time ("0001-01-01T00:00:00Z") means "never".
    (time.as_second() > 0).then_some(time)
}

/// A container's status from Docker's inspect, `None` when it is not one of ours.
pub fn status_of(
    id: &str,
    inspect: &ContainerInspectResponse,
    now: Timestamp,
) -> Option<ContainerStatus> {
    let state = inspect.state.clone().unwrap_or_default();
    let started_at = parse_time(state.started_at.as_deref());
    let finished_at = parse_time(state.finished_at.as_deref());
    let error = state.error.clone().filter(|e| !e.is_empty());
    let exit_code = state.exit_code.unwrap_or(0) as i32;
    use ContainerStateStatusEnum as Docker;
    let exited = |reason: &str, message: Option<String>| ContainerState::Exited {
        started_at,
        finished_at: finished_at.unwrap_or(now),
        exit_code,
        reason: reason.to_string(),
        message,
        signal: None,
    };
    let state = match state.status {
        // A container whose start failed stays "created", with the error.
        Some(Docker::CREATED) if error.is_some() => exited("StartError", error),
        Some(Docker::CREATED) | None | Some(Docker::EMPTY) => ContainerState::Created,
        Some(Docker::RUNNING | Docker::PAUSED | Docker::RESTARTING | Docker::STOPPING) => {
            ContainerState::Running { started_at: started_at.unwrap_or(now) }
        }
        Some(Docker::EXITED | Docker::DEAD | Docker::REMOVING) => {
            if state.oom_killed == Some(true) {
                exited("OOMKilled", None)
            } else if error.is_some() && started_at.is_none() {
                exited("StartError", error)
            } else if exit_code == 0 {
                exited("Completed", None)
            } else {
                exited("Error", error)
            }
        }
    };
    Some(ContainerStatus {
        id: ContainerId(id.to_string()),
        pod_uid: label(inspect, labels::POD_UID)?.to_string(),
        name: label(inspect, labels::CONTAINER_NAME)?.to_string(),
        attempt: label(inspect, labels::ATTEMPT)?.parse().ok()?,
        image: label(inspect, labels::IMAGE).unwrap_or_default().to_string(),
        spec_hash: label(inspect, labels::SPEC_HASH).unwrap_or_default().to_string(),
        created_at: parse_time(inspect.created.as_deref()).unwrap_or(now),
        state,
        log_path: PathBuf::from(label(inspect, labels::LOG_PATH)?),
    })
}

/// An image name split as a pull wants it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageReference {
    /// Registry and path, without tag or digest.
    pub repository: String,
    /// `latest` when the name has neither (Docker would pull every tag otherwise).
    pub tag_or_digest: String,
    /// Whether the name gave a tag or digest of its own.
    pub explicit: bool,
}

impl ImageReference {
    pub fn parse(image: &str) -> Option<ImageReference> {
        if image.is_empty() || image.chars().any(|c| c.is_whitespace() || c.is_uppercase()) {
            return None;
        }
        if let Some((repository, digest)) = image.split_once('@') {
            // A tag before a digest is ignored by the pull, as Docker does.
            let repository = strip_tag(repository).0;
            return Some(ImageReference {
                repository: repository.to_string(),
                tag_or_digest: digest.to_string(),
                explicit: true,
            });
        }
        let (repository, tag) = strip_tag(image);
        Some(ImageReference {
            repository: repository.to_string(),
            tag_or_digest: tag.unwrap_or("latest").to_string(),
            explicit: tag.is_some(),
        })
    }

    /// The API server's default `imagePullPolicy`: `Always` for `:latest` or no tag.
    pub fn default_policy(&self) -> &'static str {
        if !self.explicit || self.tag_or_digest == "latest" {
            "Always"
        } else {
            "IfNotPresent"
        }
    }
}

/// Splits `name:tag`; a colon before the last `/` is a registry's port, not a tag.
fn strip_tag(image: &str) -> (&str, Option<&str>) {
    let last_part = image.rfind('/').map_or(0, |slash| slash + 1);
    match image[last_part..].rfind(':') {
        Some(colon) => {
            let colon = last_part + colon;
            (&image[..colon], Some(&image[colon + 1..]))
        }
        None => (image, None),
    }
}

/// Failed pulls per pod and image, and how long to wait before the next one (the kubelet's
/// `IsInBackOffSinceUpdate`: from the last failure, 10 s doubling to 5 min).
#[derive(Debug, Default)]
pub struct PullBackoff {
    entries: HashMap<String, (Duration, Instant)>,
}

impl PullBackoff {
    fn max() -> Duration {
        Duration::from_millis(RESTART_BACKOFF_MAX_MS)
    }

    pub fn in_backoff(&self, key: &str, now: Instant) -> bool {
        self.entries
            .get(key)
            .is_some_and(|(delay, failed_at)| now.saturating_duration_since(*failed_at) < *delay)
    }

    pub fn failed(&mut self, key: &str, now: Instant) {
        let initial = Duration::from_millis(RESTART_BACKOFF_INITIAL_MS);
        let delay = match self.entries.get(key) {
            Some((delay, failed_at))
                if now.saturating_duration_since(*failed_at) <= Self::max() * 2 =>
            {
                (*delay * 2).min(Self::max())
            }
            _ => initial,
        };
        if self.entries.len() >= IMAGE_PULL_BACKOFF_ENTRIES_MAX {
            let stale = Self::max() * 2;
            self.entries.retain(|_, (_, at)| now.saturating_duration_since(*at) <= stale);
        }
        if self.entries.len() < IMAGE_PULL_BACKOFF_ENTRIES_MAX || self.entries.contains_key(key) {
            self.entries.insert(key.to_string(), (delay, now));
        }
    }

    pub fn forget(&mut self, key: &str) {
        self.entries.remove(key);
    }
}

/// Copies a container's output from Docker's log into the CRI-format file at `path`, from
/// after the last record already there, until the container ends.
async fn copy_output(docker: &Docker, id: &str, path: &Path) -> std::io::Result<()> {
    let last = last_record_time(path);
    let options = LogsOptions {
        follow: true,
        stdout: true,
        stderr: true,
        timestamps: true,
        since: last.map_or(0, |t| t.as_second().clamp(0, i64::from(i32::MAX)) as i32),
        ..Default::default()
    };
    let mut writer = CriLogWriter::open(path)?;
    let mut stream = docker.logs(id, Some(options));
    while let Some(item) = stream.next().await {
        let (stream_name, message) = match item.map_err(std::io::Error::other)? {
            bollard::container::LogOutput::StdOut { message } => ("stdout", message),
            bollard::container::LogOutput::StdErr { message } => ("stderr", message),
            _ => continue,
        };
        let Some((time, text)) = split_docker_line(&message) else { continue };
        if last.is_some_and(|last| time <= last) {
            continue;
        }
        writer.write_line(time, stream_name, text)?;
    }
    Ok(())
}

/// Splits a line of Docker's log (`<RFC 3339 time> <text>`), as asked with `timestamps`.
pub fn split_docker_line(line: &[u8]) -> Option<(Timestamp, &[u8])> {
    let space = line.iter().position(|b| *b == b' ')?;
    let time = std::str::from_utf8(&line[..space]).ok()?.parse().ok()?;
    Some((time, &line[space + 1..]))
}

/// The time of the last record in a CRI log file (or its rotated predecessor).
fn last_record_time(path: &Path) -> Option<Timestamp> {
    use std::io::{Read, Seek, SeekFrom};
    let read_tail = |path: &Path| -> Option<Timestamp> {
        let mut file = std::fs::File::open(path).ok()?;
        let length = file.metadata().ok()?.len();
        let window = (2 * LOG_LINE_BYTES_MAX + 256) as u64;
        file.seek(SeekFrom::Start(length.saturating_sub(window))).ok()?;
        let mut tail = Vec::new();
        file.read_to_end(&mut tail).ok()?;
        tail.split(|b| *b == b'\n')
            .rev()
            .filter_map(crate::logs::parse_record)
            .find_map(|record| record.time.parse().ok())
    };
    read_tail(path).or_else(|| read_tail(&path.with_extension("log.1")))
}

/// Appends CRI records to a container's log file, rotating it as the process runtime's shim
/// does.
struct CriLogWriter {
    path: PathBuf,
    file: std::fs::File,
    bytes: u64,
}

impl CriLogWriter {
    fn open(path: &Path) -> std::io::Result<CriLogWriter> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        let bytes = file.metadata()?.len();
        Ok(CriLogWriter { path: path.to_path_buf(), file, bytes })
    }

    /// Writes one line of Docker's log: a full record when it ends in a newline, else
    /// partial ones (Docker splits long lines too).
    fn write_line(&mut self, time: Timestamp, stream: &str, text: &[u8]) -> std::io::Result<()> {
        let (text, complete) = match text.strip_suffix(b"\n") {
            Some(line) => (line, true),
            None => (text, false),
        };
        let pieces: Vec<&[u8]> =
            if text.is_empty() { vec![text] } else { text.chunks(LOG_LINE_BYTES_MAX).collect() };
        let count = pieces.len();
        for (index, piece) in pieces.into_iter().enumerate() {
            let partial = !(complete && index + 1 == count);
            self.write_record(time, stream, partial, piece)?;
        }
        Ok(())
    }

    fn write_record(
        &mut self,
        time: Timestamp,
        stream: &str,
        partial: bool,
        text: &[u8],
    ) -> std::io::Result<()> {
        use std::io::Write;
        let tag = if partial { 'P' } else { 'F' };
        let mut line = format!("{time} {stream} {tag} ").into_bytes();
        line.extend_from_slice(text);
        line.push(b'\n');
        if self.bytes + line.len() as u64 > LOG_FILE_BYTES_MAX {
            std::fs::rename(&self.path, self.path.with_extension("log.1"))?;
            *self = CriLogWriter::open(&self.path)?;
        }
        self.file.write_all(&line)?;
        self.bytes += line.len() as u64;
        Ok(())
    }
}

/// The sandbox's executable (x86_64 Linux, static, 129 bytes): `for (;;) pause();`. As PID 1
/// of its container it ignores SIGTERM, so the sandbox is removed with SIGKILL (`docker rm
/// -f`), which is all a process holding namespaces needs.
pub fn pause_binary() -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    const HEADERS: u64 = 64 + 56;
    // mov eax, 34 (pause); syscall; jmp back to the mov.
    const CODE: [u8; 9] = [0xb8, 0x22, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xeb, 0xf7];
    let size = HEADERS + CODE.len() as u64;
    let mut elf = Vec::with_capacity(size as usize);
    // ELF header: 64-bit, little-endian, version 1, System V ABI.
    elf.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf.extend_from_slice(&0x3eu16.to_le_bytes()); // x86-64
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&(BASE + HEADERS).to_le_bytes()); // entry
    elf.extend_from_slice(&64u64.to_le_bytes()); // program headers' offset
    elf.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    elf.extend_from_slice(&0u32.to_le_bytes());
    for half in [64u16, 56, 1, 0, 0, 0] {
        elf.extend_from_slice(&half.to_le_bytes());
    }
    // One loadable, readable and executable segment: the whole file.
    elf.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    elf.extend_from_slice(&5u32.to_le_bytes()); // R + X
    for word in [0, BASE, BASE, size, size, 0x1000] {
        elf.extend_from_slice(&word.to_le_bytes());
    }
    elf.extend_from_slice(&CODE);
    assert_eq!(elf.len() as u64, size);
    elf
}

/// A tar archive holding one executable file, as `docker import` takes it.
pub fn tarball(name: &str, content: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 512;
    assert!(name.len() < 100, "a short name fits the ustar header");
    let mut header = [0u8; BLOCK];
    let mut put = |offset: usize, bytes: &[u8]| {
        header[offset..offset + bytes.len()].copy_from_slice(bytes);
    };
    put(0, name.as_bytes());
    put(100, b"0000755\0");
    put(108, b"0000000\0");
    put(116, b"0000000\0");
    put(124, format!("{:011o}\0", content.len()).as_bytes());
    put(136, b"00000000000\0");
    put(148, b"        ");
    put(156, b"0");
    put(257, b"ustar\0");
    put(263, b"00");
    let checksum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    header[148..156].copy_from_slice(format!("{checksum:06o}\0 ").as_bytes());
    let mut archive = header.to_vec();
    archive.extend_from_slice(content);
    archive.resize(archive.len().div_ceil(BLOCK) * BLOCK + 2 * BLOCK, 0);
    archive
}

fn pause_tarball() -> Vec<u8> {
    tarball("pause", &pause_binary())
}

impl Runtime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn version(&self) -> String {
        format!("docker://{}", self.server_version)
    }

    fn run_sandbox<'a>(&'a self, config: &'a SandboxConfig) -> RuntimeFuture<'a, Sandbox> {
        self.sandbox(config).boxed()
    }

    fn remove_sandbox<'a>(&'a self, pod_uid: &'a str) -> RuntimeFuture<'a, ()> {
        async move {
            for (id, _) in self.list_ids(labels::TYPE_SANDBOX, Some(pod_uid)).await? {
                self.force_remove(&id).await?;
            }
            Ok(())
        }
        .boxed()
    }

    fn create_container<'a>(
        &'a self,
        config: &'a ContainerConfig,
    ) -> RuntimeFuture<'a, ContainerId> {
        self.create(config).boxed()
    }

    fn start_container<'a>(&'a self, id: &'a ContainerId) -> RuntimeFuture<'a, ()> {
        self.start(id).boxed()
    }

    fn stop_container<'a>(&'a self, id: &'a ContainerId, grace: Duration) -> RuntimeFuture<'a, ()> {
        self.stop(id, grace).boxed()
    }

    fn remove_container<'a>(&'a self, id: &'a ContainerId) -> RuntimeFuture<'a, ()> {
        self.remove(id).boxed()
    }

    fn list_containers<'a>(
        &'a self,
        pod_uid: Option<&'a str>,
    ) -> RuntimeFuture<'a, Vec<ContainerStatus>> {
        self.list(pod_uid).boxed()
    }

    fn container_status<'a>(&'a self, id: &'a ContainerId) -> RuntimeFuture<'a, ContainerStatus> {
        self.status(&id.0).boxed()
    }

    fn exec_sync<'a>(
        &'a self,
        id: &'a ContainerId,
        command: &'a [String],
        timeout: Duration,
    ) -> RuntimeFuture<'a, ExecResult> {
        self.exec(id, command, timeout).boxed()
    }

    fn exec_stream<'a>(
        &'a self,
        id: &'a ContainerId,
        request: &'a ExecRequest,
    ) -> RuntimeFuture<'a, ExecSession> {
        self.exec_streaming(id, request).boxed()
    }

    fn image_action<'a>(&'a self, config: &'a ContainerConfig) -> RuntimeFuture<'a, ImageAction> {
        let policy = config.image_pull_policy.as_deref();
        self.image_decision(&config.pod_uid, &config.image, policy).boxed()
    }

    fn pull_image<'a>(&'a self, config: &'a ContainerConfig) -> RuntimeFuture<'a, Option<u64>> {
        self.pull_recorded(&config.pod_uid, &config.image).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_split_into_repository_and_tag_or_digest() {
        let check = |image: &str, repository: &str, tag: &str, policy: &str| {
            let parsed = ImageReference::parse(image).expect(image);
            assert_eq!(
                (parsed.repository.as_str(), parsed.tag_or_digest.as_str()),
                (repository, tag),
                "{image}"
            );
            assert_eq!(parsed.default_policy(), policy, "{image}");
        };
        check("busybox", "busybox", "latest", "Always");
        check("busybox:latest", "busybox", "latest", "Always");
        check("nginx:1.27", "nginx", "1.27", "IfNotPresent");
        check("localhost:5000/app", "localhost:5000/app", "latest", "Always");
        check("localhost:5000/app:v2", "localhost:5000/app", "v2", "IfNotPresent");
        check("r.io/a/b@sha256:abc", "r.io/a/b", "sha256:abc", "IfNotPresent");
        check("r.io/a/b:v1@sha256:abc", "r.io/a/b", "sha256:abc", "IfNotPresent");
        assert!(ImageReference::parse("").is_none());
        assert!(ImageReference::parse("Bad Name").is_none());
    }

    #[test]
    fn failed_pulls_back_off_10s_doubling_to_5_minutes_per_pod_and_image() {
        let mut backoff = PullBackoff::default();
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        assert!(!backoff.in_backoff("p_img", at(0)));
        backoff.failed("p_img", at(0));
        assert!(backoff.in_backoff("p_img", at(9)));
        assert!(!backoff.in_backoff("p_img", at(10)));
        assert!(!backoff.in_backoff("other_img", at(5)), "per pod and image");
        backoff.failed("p_img", at(10));
        assert!(backoff.in_backoff("p_img", at(29)));
        let mut t = 30;
        for _ in 0..10 {
            backoff.failed("p_img", at(t));
            t += 1;
        }
        assert!(backoff.in_backoff("p_img", at(t + 290)));
        assert!(!backoff.in_backoff("p_img", at(t + 300)), "capped at 5 minutes");
        backoff.forget("p_img");
        assert!(!backoff.in_backoff("p_img", at(t)));
    }

    #[test]
    fn cpu_limits_become_quota_and_shares() {
        assert_eq!(cpu_quota_and_shares(500), (50_000, 512));
        assert_eq!(cpu_quota_and_shares(2000), (200_000, 2048));
        assert_eq!(cpu_quota_and_shares(1), (1000, 2), "the kernel's and Docker's minimums");
    }

    #[test]
    fn docker_log_lines_become_cri_records() {
        let (time, text) = split_docker_line(b"2026-11-24T22:39:51.5Z hello world\n").unwrap();
        assert_eq!(time.to_string(), "2026-11-24T22:39:51.5Z");
        assert_eq!(text, b"hello world\n");
        assert!(split_docker_line(b"no-time here").is_none());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut writer = CriLogWriter::open(&path).unwrap();
        writer.write_line(time, "stdout", text).unwrap();
        writer.write_line(time, "stderr", b"no newline").unwrap();
        writer.write_line(time, "stdout", b"\n").unwrap();
        let written = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            written,
            "2026-11-24T22:39:51.5Z stdout F hello world\n\
             2026-11-24T22:39:51.5Z stderr P no newline\n\
             2026-11-24T22:39:51.5Z stdout F \n"
        );
        assert_eq!(last_record_time(&path), Some(time));
    }

    #[test]
    fn the_pause_binary_is_a_static_x86_64_executable_in_a_valid_tarball() {
        let elf = pause_binary();
        assert_eq!(&elf[..4], b"\x7fELF");
        assert_eq!(elf.len(), 129);
        let tar = tarball("pause", &elf);
        assert_eq!(tar.len() % 512, 0);
        assert_eq!(&tar[..5], b"pause");
        let stored: u32 =
            u32::from_str_radix(std::str::from_utf8(&tar[148..154]).unwrap(), 8).unwrap();
        let mut header = tar[..512].to_vec();
        header[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, header.iter().map(|b| u32::from(*b)).sum::<u32>());
        assert_eq!(&tar[512..512 + elf.len()], elf.as_slice());
    }
}
