//! The container runtime interface: what the pod workers ask of a runtime, shaped after
//! Kubernetes' CRI (RunPodSandbox, CreateContainer, StartContainer, StopContainer,
//! RemoveContainer, ListContainers, ContainerStatus, ExecSync) so that a `docker` runtime fits
//! the same trait as the `process` one.
//!
//! Contract every runtime keeps:
//! - Containers are identified by a [`ContainerId`] the runtime chooses, and carry the pod uid,
//!   container name and attempt (restart count) they were created with. `list_containers`
//!   finds them again after an agent restart, so the agent adopts what is running instead of
//!   starting duplicates; nothing about a container lives only in the agent's memory.
//! - Container output goes to the log file named in [`ContainerConfig::log_path`], in the CRI
//!   log format (`<RFC 3339 nano time> <stdout|stderr> <F|P> <text>` per line), which the
//!   agent's log server reads. A docker runtime copies Docker's log stream into that file (as
//!   cri-dockerd does).
//! - `stop_container` delivers SIGTERM, waits up to the grace period, then SIGKILLs; exits are
//!   reported with Kubernetes' exit codes (128 + signal for a signal).
//! - An image the runtime cannot run is refused at `create_container` with
//!   [`RuntimeError::ImageRefused`], which the pod worker reports as a waiting reason.

pub mod cgroup;
pub mod docker;
pub mod process;
pub mod pty;
pub mod shim;

use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::jiff::Timestamp;

/// A runtime call's future.
pub type RuntimeFuture<'a, T> = BoxFuture<'a, Result<T, RuntimeError>>;

/// Why a runtime call failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The image cannot run here; `reason` is the waiting reason to report
    /// (`ErrImageNeverPull`-like).
    #[error("{message}")]
    ImageRefused { reason: &'static str, message: String },
    #[error("container {0} not found")]
    NotFound(String),
    #[error("{operation}: {reason}")]
    Failed { operation: &'static str, reason: String },
    #[error("{operation} timed out after {timeout:?}")]
    Timeout { operation: &'static str, timeout: Duration },
}

impl RuntimeError {
    pub fn failed(operation: &'static str, reason: impl std::fmt::Display) -> RuntimeError {
        RuntimeError::Failed { operation, reason: reason.to_string() }
    }
}

/// A runtime's name for one container.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId(pub String);

impl std::fmt::Display for ContainerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a pod's sandbox (its network, shared by its containers) is made from.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    pub pod_uid: String,
    pub namespace: String,
    pub name: String,
    /// The node's address: the pod's address on host networking.
    pub node_ip: String,
}

/// A pod's sandbox as set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sandbox {
    pub pod_ip: String,
    /// Whether the pod shares the node's network namespace.
    pub host_network: bool,
}

/// Resource limits the runtime applies where it can.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResourceLimits {
    pub memory_bytes: Option<u64>,
    pub cpu_millis: Option<u64>,
}

/// One container to create: resolved by the agent from the pod's spec (environment resolved,
/// `$(VAR)` references expanded).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ContainerConfig {
    pub pod_uid: String,
    pub pod_namespace: String,
    pub pod_name: String,
    pub name: String,
    /// The restart count this container starts with (0 for the first).
    pub attempt: u32,
    pub image: String,
    /// The container's `imagePullPolicy` as the spec gives it (`None`: the API server's
    /// default for the image); runtimes without images ignore it.
    #[serde(default)]
    pub image_pull_policy: Option<String>,
    /// `command` (the image's entrypoint when set) and `args`.
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub limits: ResourceLimits,
    /// Where the runtime writes the container's output (CRI log format).
    pub log_path: PathBuf,
    /// A hash of the container's spec: a change means the container must be recreated.
    pub spec_hash: String,
}

/// What a container is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running {
        started_at: Timestamp,
    },
    Exited {
        started_at: Option<Timestamp>,
        finished_at: Timestamp,
        exit_code: i32,
        /// Kubernetes' reason: Completed, Error, OOMKilled, StartError, ContainerStatusUnknown.
        reason: String,
        message: Option<String>,
        signal: Option<i32>,
    },
}

/// A container as the runtime knows it.
#[derive(Clone, Debug)]
pub struct ContainerStatus {
    pub id: ContainerId,
    pub pod_uid: String,
    pub name: String,
    pub attempt: u32,
    pub image: String,
    pub spec_hash: String,
    pub created_at: Timestamp,
    pub state: ContainerState,
    pub log_path: PathBuf,
}

impl ContainerStatus {
    pub fn is_running(&self) -> bool {
        matches!(self.state, ContainerState::Running { .. })
    }
}

/// An exec's outcome.
#[derive(Clone, Debug)]
pub struct ExecResult {
    pub exit_code: i32,
    /// stdout and stderr, at most [`crate::limits::EXEC_OUTPUT_BYTES_MAX`].
    pub output: String,
}

/// What `kubectl exec` asks to run: the command and which streams to attach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecRequest {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// A terminal: stdout and stderr merge, stdin is the terminal's input.
    pub tty: bool,
}

/// A terminal size (`kubectl exec -t` sends its window's on the resize channel).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct TerminalSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// A reader of one of an exec's output streams.
pub type ExecOutput = std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>;

/// A running exec: its streams, a way to resize its terminal, and its end.
pub struct ExecSession {
    /// The process's stdin, when asked for; dropping it closes the stream.
    pub stdin: Option<std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>>,
    /// stdout (with stderr merged on a terminal).
    pub stdout: Option<ExecOutput>,
    pub stderr: Option<ExecOutput>,
    /// Terminal sizes to apply (tty sessions); bounded by
    /// [`crate::limits::EXEC_RESIZES_BUFFERED`].
    pub resize: Option<tokio::sync::mpsc::Sender<TerminalSize>>,
    /// The exit code, once the process has ended (after its output is read).
    pub exit: BoxFuture<'static, Result<i32, RuntimeError>>,
}

/// What readying a container's image takes, by its pull policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageAction {
    /// Present, and the policy does not ask for a pull.
    Present,
    /// To be pulled (absent, or `Always`).
    Pull,
}

/// A container runtime (see the module docs for the contract).
pub trait Runtime: Send + Sync {
    /// `process` or `docker`: the scheme of reported container ids (`process://<id>`).
    fn name(&self) -> &'static str;
    /// What the Node reports as `containerRuntimeVersion`.
    fn version(&self) -> String;
    /// Sets up (or finds again) the pod's sandbox.
    fn run_sandbox<'a>(&'a self, config: &'a SandboxConfig) -> RuntimeFuture<'a, Sandbox>;
    /// Tears the sandbox down once its containers are gone.
    fn remove_sandbox<'a>(&'a self, pod_uid: &'a str) -> RuntimeFuture<'a, ()>;
    fn create_container<'a>(
        &'a self,
        config: &'a ContainerConfig,
    ) -> RuntimeFuture<'a, ContainerId>;
    fn start_container<'a>(&'a self, id: &'a ContainerId) -> RuntimeFuture<'a, ()>;
    /// SIGTERM, up to `grace`, then SIGKILL; returns once the exit is recorded.
    fn stop_container<'a>(&'a self, id: &'a ContainerId, grace: Duration) -> RuntimeFuture<'a, ()>;
    /// Forgets a stopped container and deletes its log file.
    fn remove_container<'a>(&'a self, id: &'a ContainerId) -> RuntimeFuture<'a, ()>;
    /// Every container the runtime holds, or those of one pod.
    fn list_containers<'a>(
        &'a self,
        pod_uid: Option<&'a str>,
    ) -> RuntimeFuture<'a, Vec<ContainerStatus>>;
    fn container_status<'a>(&'a self, id: &'a ContainerId) -> RuntimeFuture<'a, ContainerStatus>;
    /// Runs `command` in the container's context (probes), killed after `timeout`.
    fn exec_sync<'a>(
        &'a self,
        id: &'a ContainerId,
        command: &'a [String],
        timeout: Duration,
    ) -> RuntimeFuture<'a, ExecResult>;
    /// Whether `config`'s image must be pulled before `create_container`; refusals
    /// (`ErrImageNeverPull`, `ImagePullBackOff`, `InvalidImageName`) come as
    /// [`RuntimeError::ImageRefused`]. Runtimes without images have every image present.
    fn image_action<'a>(&'a self, _config: &'a ContainerConfig) -> RuntimeFuture<'a, ImageAction> {
        futures::FutureExt::boxed(async { Ok(ImageAction::Present) })
    }
    /// Pulls `config`'s image; its size in bytes when known. A failure is
    /// [`RuntimeError::ImageRefused`] (`ErrImagePull`) and starts the pull back-off.
    fn pull_image<'a>(&'a self, _config: &'a ContainerConfig) -> RuntimeFuture<'a, Option<u64>> {
        futures::FutureExt::boxed(async { Ok(None) })
    }
    /// Starts `request.command` in the running container's context with its streams attached
    /// (`kubectl exec`); the caller owns the session and ends it by dropping it.
    fn exec_stream<'a>(
        &'a self,
        id: &'a ContainerId,
        request: &'a ExecRequest,
    ) -> RuntimeFuture<'a, ExecSession>;
}

/// Which runtime an agent uses (`--runtime`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeKind {
    Process,
    Docker,
}
