//! The `process` runtime: each container is a supervised host process. Images mean:
//! `host` runs `command`/`args` as given; an absolute path is the executable (`command`, when
//! set, replaces it as a Kubernetes command replaces an image's entrypoint); anything else is
//! refused with `ErrImageNeverPull` and a message pointing at the docker runtime. Pods share
//! the node's network (pod IP = node IP: two pods listening on one port collide) unless the
//! agent's bridge pod network made them a network namespace, which containers and execs
//! enter ([`crate::network::netns`]).
//!
//! A container is its main process and its process group: SIGTERM goes to the main process
//! (as Docker's stop does), SIGKILL to the group, and when the main process exits its shim
//! kills what is left of the group, as the end of a PID namespace would.
//!
//! State lives in files under `<root-dir>/containers/<id>/` (id = `<pod uid>_<name>_<attempt>`):
//! `config.json` (the container as created), and the shim's `shim.json`, `pid.json` and
//! `exit.json` (see [`super::shim`]). A container's liveness is its recorded pid with the same
//! kernel start time, so a restarted agent finds running containers again.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::jiff::Timestamp;
use rustix::process::{kill_process, kill_process_group, Pid, Signal};

use super::shim::{self, ExitRecord, PidRecord, ShimSpec};
use super::{
    cgroup, pty, ContainerConfig, ContainerId, ContainerState, ContainerStatus, ExecRequest,
    ExecResult, ExecSession, Runtime, RuntimeError, RuntimeFuture, Sandbox, SandboxConfig,
};
use crate::limits::{
    EXEC_OUTPUT_BYTES_MAX, EXEC_RESIZES_BUFFERED, KILL_CONFIRM_TIMEOUT_MS, SHIM_START_TIMEOUT_MS,
};

const CONFIG_FILE: &str = "config.json";
/// How often a waiting call looks for the shim's records.
const RECORD_POLL: Duration = Duration::from_millis(20);

/// A container as created (`config.json`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Record {
    config: ContainerConfig,
    argv: Vec<String>,
    created_at: Timestamp,
    cgroup: Option<PathBuf>,
}

/// How the `process` runtime is set up.
#[derive(Clone, Debug)]
pub struct ProcessRuntimeConfig {
    /// Container state goes under `<root_dir>/containers`.
    pub root_dir: PathBuf,
    /// The program and arguments that run the shim; the container directory is appended
    /// (`skiff container-shim <dir>`).
    pub shim_command: Vec<OsString>,
}

pub struct ProcessRuntime {
    containers_dir: PathBuf,
    shim_command: Vec<OsString>,
}

impl std::fmt::Debug for ProcessRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessRuntime").field("dir", &self.containers_dir).finish()
    }
}

/// The command line a container runs, from its image, command and args (see module docs).
pub fn resolve_argv(
    image: &str,
    command: &[String],
    args: &[String],
) -> Result<Vec<String>, RuntimeError> {
    let joined = || command.iter().chain(args).cloned().collect::<Vec<_>>();
    match image {
        "host" if command.is_empty() && args.is_empty() => Err(RuntimeError::ImageRefused {
            reason: "CreateContainerError",
            message: "image \"host\" has no entrypoint of its own: set the container's command"
                .into(),
        }),
        "host" => Ok(joined()),
        path if path.starts_with('/') && command.is_empty() => {
            Ok(std::iter::once(path.to_string()).chain(args.iter().cloned()).collect())
        }
        path if path.starts_with('/') => Ok(joined()),
        other => Err(RuntimeError::ImageRefused {
            reason: "ErrImageNeverPull",
            message: format!(
                "Container image \"{other}\" cannot run on the process runtime: it runs `image: \
                 host` (the command as given) or an absolute path to an executable; run this \
                 node's agent with --runtime docker for container images"
            ),
        }),
    }
}

fn io_error(operation: &'static str) -> impl Fn(std::io::Error) -> RuntimeError {
    move |error| RuntimeError::failed(operation, error)
}

impl ProcessRuntime {
    pub fn new(config: ProcessRuntimeConfig) -> Result<ProcessRuntime, RuntimeError> {
        let containers_dir = config.root_dir.join("containers");
        std::fs::create_dir_all(&containers_dir).map_err(io_error("create the state dir"))?;
        if config.shim_command.is_empty() {
            return Err(RuntimeError::failed("configure", "no shim command"));
        }
        Ok(ProcessRuntime { containers_dir, shim_command: config.shim_command })
    }

    fn dir(&self, id: &ContainerId) -> PathBuf {
        self.containers_dir.join(&id.0)
    }

    /// Pod `pod_uid`'s network namespace (the bridge pod network's), which its containers,
    /// execs and exec probes enter; `None`: they share the host's.
    pub fn pod_netns(&self, pod_uid: &str) -> Option<PathBuf> {
        crate::network::pod_netns(pod_uid)
    }

    /// The network namespace container `id` was started in (its shim spec's).
    fn container_netns(&self, id: &ContainerId) -> Option<PathBuf> {
        shim::read_json::<ShimSpec>(&self.dir(id).join(shim::SPEC_FILE))?.netns
    }

    fn record(&self, id: &ContainerId) -> Result<Record, RuntimeError> {
        shim::read_json(&self.dir(id).join(CONFIG_FILE))
            .ok_or_else(|| RuntimeError::NotFound(id.0.clone()))
    }

    fn status_now(&self, id: &ContainerId) -> Result<ContainerStatus, RuntimeError> {
        let record = self.record(id)?;
        let dir = self.dir(id);
        let state = match shim::read_json::<ExitRecord>(&dir.join(shim::EXIT_FILE)) {
            Some(exit) => exited(exit),
            None => match shim::read_json::<PidRecord>(&dir.join(shim::PID_FILE)) {
                Some(pid) if shim::is_alive(&pid) || shim_alive(&dir) => {
                    ContainerState::Running { started_at: pid.started_at }
                }
                // Both the container and its shim are gone without a record of the end (the
                // machine rebooted, or someone killed the shim).
                Some(pid) => ContainerState::Exited {
                    started_at: Some(pid.started_at),
                    finished_at: Timestamp::now(),
                    exit_code: 137,
                    reason: "ContainerStatusUnknown".into(),
                    message: Some(
                        "The container could not be located when the pod was checked".into(),
                    ),
                    signal: None,
                },
                None => ContainerState::Created,
            },
        };
        let config = record.config;
        Ok(ContainerStatus {
            id: id.clone(),
            pod_uid: config.pod_uid,
            name: config.name,
            attempt: config.attempt,
            image: config.image,
            spec_hash: config.spec_hash,
            created_at: record.created_at,
            state,
            log_path: config.log_path,
        })
    }

    async fn wait_for_exit(&self, id: &ContainerId, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.status_now(id) {
                Ok(status) if status.is_running() => {}
                _ => return true,
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(RECORD_POLL).await;
        }
    }

    async fn start(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        let dir = self.dir(id);
        self.record(id)?;
        let mut command = tokio::process::Command::new(&self.shim_command[0]);
        command.args(&self.shim_command[1..]).arg(&dir);
        let shim_log = std::fs::File::create(dir.join("shim.log")).map_err(io_error("start"))?;
        // Its own process group: a signal to the agent's group (Ctrl-C) does not reach it.
        command.process_group(0).stdin(std::process::Stdio::null());
        command.stdout(std::process::Stdio::null()).stderr(shim_log);
        let mut child = command.spawn().map_err(|e| {
            RuntimeError::failed("start", format!("cannot run the container shim: {e}"))
        })?;
        let shim_pid = child.id().unwrap_or(0) as i32;
        let shim_record = PidRecord {
            pid: shim_pid,
            start_ticks: shim::process_start_ticks(shim_pid).unwrap_or(0),
            started_at: Timestamp::now(),
        };
        let _ = shim::write_json(&dir.join("shim-pid.json"), &shim_record);
        // Reaped here while this agent lives; after an agent restart, by init.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        let deadline = tokio::time::Instant::now() + Duration::from_millis(SHIM_START_TIMEOUT_MS);
        while !dir.join(shim::PID_FILE).exists() && !dir.join(shim::EXIT_FILE).exists() {
            if tokio::time::Instant::now() >= deadline {
                return Err(RuntimeError::Timeout {
                    operation: "start",
                    timeout: Duration::from_millis(SHIM_START_TIMEOUT_MS),
                });
            }
            tokio::time::sleep(RECORD_POLL).await;
        }
        Ok(())
    }

    async fn stop(&self, id: &ContainerId, grace: Duration) -> Result<(), RuntimeError> {
        let dir = self.dir(id);
        if !self.status_now(id)?.is_running() {
            return Ok(());
        }
        let Some(record) = shim::read_json::<PidRecord>(&dir.join(shim::PID_FILE)) else {
            return Ok(());
        };
        let Some(group) = Pid::from_raw(record.pid) else { return Ok(()) };
        // As a container runtime: SIGTERM to the container's main process only (its trap
        // decides what its children get), SIGKILL to everything it started.
        if shim::is_alive(&record) {
            let _ = kill_process(group, Signal::TERM);
        }
        if self.wait_for_exit(id, grace).await {
            return Ok(());
        }
        if shim::is_alive(&record) {
            let _ = kill_process_group(group, Signal::KILL);
        }
        if self.wait_for_exit(id, Duration::from_millis(KILL_CONFIRM_TIMEOUT_MS)).await {
            Ok(())
        } else {
            Err(RuntimeError::failed("stop", format!("container {id} survived SIGKILL")))
        }
    }

    async fn exec(
        &self,
        id: &ContainerId,
        argv: &[String],
        timeout: Duration,
    ) -> Result<ExecResult, RuntimeError> {
        let record = self.record(id)?;
        let Some((program, args)) = argv.split_first() else {
            return Err(RuntimeError::failed("exec", "empty command"));
        };
        let mut command = tokio::process::Command::new(program);
        command.args(args).env_clear().envs(record.config.env.iter().cloned());
        if let Some(dir) = &record.config.working_dir {
            command.current_dir(dir);
        }
        command.process_group(0).kill_on_drop(true).stdin(std::process::Stdio::null());
        command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let child = match self.container_netns(id) {
            Some(netns) => crate::network::netns::spawn_in_netns(&mut command, &netns),
            None => command.spawn(),
        };
        let child = child.map_err(|e| RuntimeError::failed("exec", e))?;
        let group = child.id().and_then(|pid| Pid::from_raw(pid as i32));
        match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(Ok(output)) => {
                let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&output.stderr));
                truncate(&mut text, EXEC_OUTPUT_BYTES_MAX);
                Ok(ExecResult { exit_code: output.status.code().unwrap_or(-1), output: text })
            }
            Ok(Err(error)) => Err(RuntimeError::failed("exec", error)),
            Err(_) => {
                if let Some(group) = group {
                    let _ = kill_process_group(group, Signal::KILL);
                }
                Err(RuntimeError::Timeout { operation: "exec", timeout })
            }
        }
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

fn shim_alive(dir: &Path) -> bool {
    shim::read_json::<PidRecord>(&dir.join("shim-pid.json")).is_some_and(|r| shim::is_alive(&r))
}

fn exited(exit: ExitRecord) -> ContainerState {
    ContainerState::Exited {
        started_at: exit.started_at,
        finished_at: exit.finished_at,
        exit_code: exit.exit_code,
        reason: exit.reason,
        message: exit.message,
        signal: exit.signal,
    }
}

/// Streaming exec (`kubectl exec`): the command runs as the container's processes do (its
/// environment, working directory and cgroups), on a new pty when a terminal is asked for.
impl ProcessRuntime {
    async fn exec_streaming(
        &self,
        id: &ContainerId,
        request: &ExecRequest,
    ) -> Result<ExecSession, RuntimeError> {
        let failed = |e: std::io::Error| RuntimeError::failed("exec", e);
        let record = self.record(id)?;
        if !self.status_now(id)?.is_running() {
            return Err(RuntimeError::failed("exec", format!("container {id} is not running")));
        }
        let Some((program, args)) = request.command.split_first() else {
            return Err(RuntimeError::failed("exec", "empty command"));
        };
        let mut command = if request.tty {
            pty::terminal_session(program)
        } else {
            tokio::process::Command::new(program)
        };
        command.args(args).env_clear().envs(record.config.env.iter().cloned());
        if let Some(dir) = &record.config.working_dir {
            command.current_dir(dir);
        }
        command.kill_on_drop(true);
        let mut pty_leader = None;
        if request.tty {
            let pty = pty::Pty::open().map_err(failed)?;
            let clone = |fd: &std::os::fd::OwnedFd| fd.try_clone().map_err(failed);
            command.stdin(clone(&pty.follower)?);
            command.stdout(clone(&pty.follower)?);
            command.stderr(clone(&pty.follower)?);
            pty_leader = Some(pty.leader);
        } else {
            let piped = |wanted: bool| {
                if wanted {
                    std::process::Stdio::piped()
                } else {
                    std::process::Stdio::null()
                }
            };
            command.stdin(piped(request.stdin));
            command.stdout(piped(request.stdout));
            command.stderr(piped(request.stderr));
            command.process_group(0);
        }
        // In the pod's network namespace, as its containers (bridge pod network).
        let spawned = match self.container_netns(id) {
            Some(netns) => crate::network::netns::spawn_in_netns(&mut command, &netns),
            None => command.spawn(),
        };
        let mut child = spawned
            .map_err(|e| RuntimeError::failed("exec", format!("cannot run {program:?}: {e}")))?;
        // The command's own descriptors of the follower are closed with `command`.
        drop(command);
        // The exec joins the container's cgroups, so its limits count it (just after it
        // starts: the workspace forbids the `unsafe` of doing it before exec).
        if let (Some(pid), Some(spec)) =
            (child.id(), shim::read_json::<ShimSpec>(&self.dir(id).join(shim::SPEC_FILE)))
        {
            for dir in spec.cgroup.iter().chain(&spec.extra_cgroups) {
                if let Err(error) = std::fs::write(dir.join("cgroup.procs"), pid.to_string()) {
                    tracing::debug!(%error, cgroup = %dir.display(), "exec not moved to cgroup");
                }
            }
        }
        let mut session = ExecSession {
            stdin: None,
            stdout: None,
            stderr: None,
            resize: None,
            exit: futures::future::pending().boxed(),
        };
        if let Some(leader) = pty_leader {
            let reader =
                pty::LeaderReader::new(leader.try_clone().map_err(failed)?).map_err(failed)?;
            session.stdout = Some(Box::pin(reader));
            if request.stdin {
                let writer =
                    pty::leader_writer(leader.try_clone().map_err(failed)?).map_err(failed)?;
                session.stdin = Some(Box::pin(writer));
            }
            let (sender, mut sizes) = tokio::sync::mpsc::channel(EXEC_RESIZES_BUFFERED);
            tokio::spawn(async move {
                while let Some(size) = sizes.recv().await {
                    if let Err(error) = pty::resize(&leader, size) {
                        tracing::debug!(%error, "terminal resize failed");
                    }
                }
            });
            session.resize = Some(sender);
        } else {
            session.stdin = child.stdin.take().map(|w| Box::pin(w) as _);
            session.stdout = child.stdout.take().map(|r| Box::pin(r) as _);
            session.stderr = child.stderr.take().map(|r| Box::pin(r) as _);
        }
        session.exit = async move {
            let status = child.wait().await.map_err(|e| RuntimeError::failed("exec", e))?;
            use std::os::unix::process::ExitStatusExt;
            Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
        }
        .boxed();
        Ok(session)
    }
}

impl Runtime for ProcessRuntime {
    fn name(&self) -> &'static str {
        "process"
    }

    fn version(&self) -> String {
        format!("process://{}", env!("CARGO_PKG_VERSION"))
    }

    /// Containers share the host's network namespace: the sandbox's address is the node's
    /// (the agent's pod network may give the pod a loopback address of its own instead, or a
    /// network namespace on its bridge, which `create_container` then puts containers in).
    /// A bridge pod's namespace whose path holds none in this agent's mount namespace (the
    /// agent that bound it ran in another) is bound again from a running container of the pod.
    fn run_sandbox<'a>(&'a self, config: &'a SandboxConfig) -> RuntimeFuture<'a, Sandbox> {
        async move {
            let uid = &config.pod_uid;
            let lost = self.pod_netns(uid).filter(|path| !crate::network::netns::is_netns(path));
            if lost.is_some() {
                let prefix = format!("{uid}_");
                let entries = std::fs::read_dir(&self.containers_dir).into_iter().flatten();
                let running = entries.flatten().filter_map(|entry| {
                    entry.file_name().to_str()?.starts_with(&prefix).then_some(())?;
                    let pid = shim::read_json::<PidRecord>(&entry.path().join(shim::PID_FILE))?;
                    let exited = entry.path().join(shim::EXIT_FILE).exists();
                    (!exited && shim::is_alive(&pid)).then_some(pid.pid)
                });
                for pid in running.take(1) {
                    let reattach = || crate::network::iproute::reattach_netns(uid, pid);
                    if let Err(error) = crate::network::blocking(reattach) {
                        tracing::warn!(%error, uid, "cannot find the pod's network namespace");
                    }
                }
            }
            Ok(Sandbox { pod_ip: config.node_ip.clone(), host_network: true })
        }
        .boxed()
    }

    fn remove_sandbox<'a>(&'a self, _pod_uid: &'a str) -> RuntimeFuture<'a, ()> {
        async move { Ok(()) }.boxed()
    }

    fn create_container<'a>(
        &'a self,
        config: &'a ContainerConfig,
    ) -> RuntimeFuture<'a, ContainerId> {
        async move {
            let argv = resolve_argv(&config.image, &config.command, &config.args)?;
            let id = ContainerId(format!("{}_{}_{}", config.pod_uid, config.name, config.attempt));
            let dir = self.dir(&id);
            if dir.exists() {
                return Err(RuntimeError::failed("create", format!("container {id} exists")));
            }
            std::fs::create_dir_all(&dir).map_err(io_error("create"))?;
            if let Some(parent) = config.log_path.parent() {
                std::fs::create_dir_all(parent).map_err(io_error("create the log dir"))?;
            }
            let cgroups = cgroup::prepare(&id.0, &config.limits);
            let cgroup = cgroups.as_ref().map(|c| c.primary.clone());
            let spec = ShimSpec {
                argv: argv.clone(),
                env: config.env.clone(),
                working_dir: config.working_dir.clone(),
                log_path: config.log_path.clone(),
                cgroup: cgroup.clone(),
                extra_cgroups: cgroups.map(|c| c.extra).unwrap_or_default(),
                netns: self.pod_netns(&config.pod_uid),
            };
            shim::write_json(&dir.join(shim::SPEC_FILE), &spec).map_err(io_error("create"))?;
            let record =
                Record { config: config.clone(), argv, created_at: Timestamp::now(), cgroup };
            shim::write_json(&dir.join(CONFIG_FILE), &record).map_err(io_error("create"))?;
            Ok(id)
        }
        .boxed()
    }

    fn start_container<'a>(&'a self, id: &'a ContainerId) -> RuntimeFuture<'a, ()> {
        self.start(id).boxed()
    }

    fn stop_container<'a>(&'a self, id: &'a ContainerId, grace: Duration) -> RuntimeFuture<'a, ()> {
        self.stop(id, grace).boxed()
    }

    fn remove_container<'a>(&'a self, id: &'a ContainerId) -> RuntimeFuture<'a, ()> {
        async move {
            if let Ok(record) = self.record(id) {
                let log = &record.config.log_path;
                let _ = std::fs::remove_file(log);
                let _ = std::fs::remove_file(log.with_extension("log.1"));
            }
            cgroup::remove(&id.0);
            match std::fs::remove_dir_all(self.dir(id)) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    Err(RuntimeError::failed("remove", error))
                }
                _ => Ok(()),
            }
        }
        .boxed()
    }

    fn list_containers<'a>(
        &'a self,
        pod_uid: Option<&'a str>,
    ) -> RuntimeFuture<'a, Vec<ContainerStatus>> {
        async move {
            let entries =
                std::fs::read_dir(&self.containers_dir).map_err(io_error("list containers"))?;
            let prefix = pod_uid.map(|uid| format!("{uid}_"));
            let mut found = Vec::new();
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if prefix.as_ref().is_some_and(|p| !name.starts_with(p.as_str())) {
                    continue;
                }
                // A directory without a readable config is a creation cut short: skipped.
                if let Ok(status) = self.status_now(&ContainerId(name)) {
                    found.push(status);
                }
            }
            found.sort_by(|a, b| (&a.name, a.attempt).cmp(&(&b.name, b.attempt)));
            Ok(found)
        }
        .boxed()
    }

    fn container_status<'a>(&'a self, id: &'a ContainerId) -> RuntimeFuture<'a, ContainerStatus> {
        async move { self.status_now(id) }.boxed()
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn images_name_the_host_or_an_executable_and_nothing_else() {
        let cmd = strings(&["/bin/sh", "-c"]);
        let args = strings(&["echo hi"]);
        assert_eq!(
            resolve_argv("host", &cmd, &args).unwrap(),
            strings(&["/bin/sh", "-c", "echo hi"])
        );
        assert_eq!(
            resolve_argv("/bin/echo", &[], &args).unwrap(),
            strings(&["/bin/echo", "echo hi"])
        );
        assert_eq!(resolve_argv("/bin/echo", &cmd, &[]).unwrap(), cmd, "command replaces it");
        let refused = resolve_argv("nginx:1.27", &[], &[]).unwrap_err();
        match refused {
            RuntimeError::ImageRefused { reason, message } => {
                assert_eq!(reason, "ErrImageNeverPull");
                assert!(message.contains("--runtime docker"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(resolve_argv("host", &[], &[]).is_err());
    }
}
