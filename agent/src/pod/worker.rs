//! One pod's worker: each pass (on a pod change, a probe result change, or every
//! [`POD_SYNC_PERIOD_MS`], the kubelet's PLEG relist period) it lists the pod's containers from
//! the runtime, runs init containers one at a time in order, then the containers, restarts
//! exited ones by `restartPolicy` under the restart back-off, kills containers whose liveness
//! or startup probe failed, and patches `pods/status` when the status changed.
//!
//! Deletion: when the pod carries a `deletionTimestamp`, the worker stops every container
//! (SIGTERM, the pod's `deletionGracePeriodSeconds`, SIGKILL), reports the final status with a
//! terminal phase, and deletes the pod with `gracePeriodSeconds=0` and a uid precondition, as
//! the kubelet does. A pod that vanished from the API (force deletion) is only stopped.
//!
//! Nothing about containers is kept here that the runtime does not also know: restart counts
//! are the containers' attempts, so a restarted agent adopts running containers as they are.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use tokio::sync::{watch, Notify};

use super::env::{self, PodAddresses};
use super::status::{self, ContainerView, PodView, Waiting};
use super::{NodeContext, PodEvents};
use crate::limits::{
    API_RETRY_MS, POD_SYNC_PERIOD_MS, TERMINATION_GRACE_SECONDS_DEFAULT,
    TERMINATION_GRACE_SECONDS_MIN,
};
use crate::probe::{self, ProbeContext};
use crate::runtime::{
    ContainerConfig, ContainerId, ContainerState, ContainerStatus, ImageAction, ResourceLimits,
    RuntimeError, Sandbox, SandboxConfig,
};
use crate::services;

/// A container's observed attempts, oldest first.
type Observed = BTreeMap<String, Vec<ContainerStatus>>;

pub struct Worker {
    context: Arc<NodeContext>,
    uid: String,
    pod: Pod,
    updates: watch::Receiver<Option<Pod>>,
    stop: watch::Receiver<bool>,
    wake: Arc<Notify>,
    events: Arc<PodEvents>,
    probes: HashMap<ContainerId, Option<tokio::task::JoinHandle<()>>>,
    waiting: HashMap<String, Waiting>,
    /// Failure messages already reported as events (not repeated every pass).
    reported_failures: HashMap<String, String>,
    start_time: Timestamp,
    sandbox: Option<Sandbox>,
    reported: Option<serde_json::Value>,
    terminal: bool,
    start_recorded: bool,
}

fn spec_containers(pod: &Pod, init: bool) -> Vec<Container> {
    let spec = pod.spec.as_ref();
    let list = if init {
        spec.and_then(|s| s.init_containers.clone())
    } else {
        spec.map(|s| s.containers.clone())
    };
    list.unwrap_or_default()
}

/// A hash of a container's spec: the runtime records it, and a running container whose
/// recorded hash differs from its spec's is replaced.
fn spec_hash(container: &Container) -> String {
    use sha2::Digest;
    let bytes = serde_json::to_vec(container).expect("JSON");
    format!("{:x}", sha2::Sha256::digest(bytes))[..16].to_string()
}

fn restart_policy(pod: &Pod) -> String {
    pod.spec.as_ref().and_then(|s| s.restart_policy.clone()).unwrap_or_else(|| "Always".into())
}

/// Go's rendering of a whole number of seconds (`10s`, `1m20s`, `5m0s`).
pub fn go_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if seconds < 60 {
        format!("{seconds}s")
    } else {
        format!("{}m{}s", seconds / 60, seconds % 60)
    }
}

/// A past wall-clock time as a monotonic instant (for the back-off's arithmetic).
fn instant_of(at: Timestamp) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    let ago = Timestamp::now().duration_since(at);
    let ago = Duration::try_from(ago).unwrap_or(Duration::ZERO);
    now.checked_sub(ago).unwrap_or(now)
}

fn status_json(status: &PodStatus) -> serde_json::Value {
    let value = serde_json::to_value(status).expect("JSON");
    let keys = [
        "phase",
        "conditions",
        "hostIP",
        "podIP",
        "startTime",
        "containerStatuses",
        "initContainerStatuses",
    ];
    keys.iter().map(|k| (k.to_string(), value.get(*k).cloned().unwrap_or_default())).collect()
}

impl Worker {
    pub fn new(
        context: Arc<NodeContext>,
        pod: Pod,
        updates: watch::Receiver<Option<Pod>>,
        stop: watch::Receiver<bool>,
    ) -> Worker {
        let events = Arc::new(PodEvents::new(context.recorder.clone(), &pod));
        let start_time = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map_or_else(Timestamp::now, |t| t.0);
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let terminal = matches!(phase, Some("Succeeded" | "Failed"));
        Worker {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            context,
            pod,
            updates,
            stop,
            wake: Arc::new(Notify::new()),
            events,
            probes: HashMap::new(),
            waiting: HashMap::new(),
            reported_failures: HashMap::new(),
            start_time,
            sandbox: None,
            reported: None,
            terminal,
            start_recorded: false,
        }
    }

    fn name(&self) -> String {
        self.pod.metadata.name.clone().unwrap_or_default()
    }

    fn namespace(&self) -> String {
        self.pod.metadata.namespace.clone().unwrap_or_default()
    }

    fn index_key(&self) -> (String, String) {
        (self.namespace(), self.name())
    }

    pub async fn run(mut self) {
        self.context.pods.write().expect("pod index").insert(self.index_key(), self.uid.clone());
        loop {
            if *self.stop.borrow() {
                self.stop_probes();
                return;
            }
            let latest = self.updates.borrow_and_update().clone();
            let Some(pod) = latest else {
                // Gone from the API without us (force deletion): stop what runs, quickly.
                let grace = self
                    .pod
                    .metadata
                    .deletion_grace_period_seconds
                    .unwrap_or(TERMINATION_GRACE_SECONDS_MIN);
                self.terminate(grace).await;
                self.clean_up().await;
                return;
            };
            self.pod = pod;
            if self.pod.metadata.deletion_timestamp.is_some() {
                self.finish_deletion().await;
                return;
            }
            let started = std::time::Instant::now();
            if let Err(error) = self.sync().await {
                tracing::warn!(pod = %self.name(), %error, "pod sync failed");
            }
            self.context
                .metrics
                .pod_worker_duration
                .with_label_values(&["sync"])
                .observe(started.elapsed().as_secs_f64());
            let manager_gone = tokio::select! {
                changed = self.updates.changed() => changed.is_err(),
                _ = self.wake.notified() => false,
                _ = tokio::time::sleep(Duration::from_millis(POD_SYNC_PERIOD_MS)) => false,
                _ = crate::stopped(&mut self.stop) => false,
            };
            if manager_gone {
                // The agent stops; containers keep running.
                self.stop_probes();
                return;
            }
        }
    }

    async fn observe(&self) -> Result<Observed, RuntimeError> {
        let runtime = &self.context.runtime;
        let all =
            self.context.metrics.timed("list_containers", runtime.list_containers(Some(&self.uid)));
        let mut observed = Observed::new();
        for container in all.await? {
            observed.entry(container.name.clone()).or_default().push(container);
        }
        Ok(observed)
    }

    async fn sync(&mut self) -> Result<(), RuntimeError> {
        if self.sandbox.is_none() {
            let config = SandboxConfig {
                pod_uid: self.uid.clone(),
                namespace: self.namespace(),
                name: self.name(),
                node_ip: self.context.node_ip.clone(),
            };
            let runtime = &self.context.runtime;
            let mut sandbox =
                self.context.metrics.timed("run_sandbox", runtime.run_sandbox(&config)).await?;
            let host_network = self.pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
            match self.context.network.pod_ip(&self.uid, &sandbox, host_network) {
                Ok(ip) => sandbox.pod_ip = ip,
                Err(error) => {
                    let message = format!("Failed to create pod sandbox: {error}");
                    self.events.warning("FailedCreatePodSandBox", &message).await;
                    return Err(RuntimeError::failed("allocate the pod IP", error));
                }
            }
            self.sandbox = Some(sandbox);
        }
        self.waiting.clear();
        let observed = self.observe().await?;
        if !self.terminal && self.run_init_containers(&observed).await {
            self.run_containers(&observed).await;
        }
        let observed = self.observe().await?;
        self.manage_probes(&observed);
        let status = self.status(&observed, false);
        if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
            self.terminal = true;
        }
        self.record_start(&status);
        self.report(status).await;
        Ok(())
    }

    /// Runs init containers in order; true once all have succeeded.
    async fn run_init_containers(&mut self, observed: &Observed) -> bool {
        let policy = restart_policy(&self.pod);
        for container in spec_containers(&self.pod, true) {
            let latest = observed.get(&container.name).and_then(|all| all.last());
            match latest.map(|c| &c.state) {
                None => {
                    self.start(&container, 0, observed).await;
                    return false;
                }
                Some(ContainerState::Exited { exit_code: 0, .. }) => continue,
                Some(ContainerState::Exited { .. }) if policy != "Never" => {
                    let latest = latest.expect("matched").clone();
                    self.restart_after_backoff(&container, &latest, observed).await;
                    return false;
                }
                Some(_) => return false,
            }
        }
        true
    }

    async fn run_containers(&mut self, observed: &Observed) {
        let policy = restart_policy(&self.pod);
        for container in spec_containers(&self.pod, false) {
            let latest = observed.get(&container.name).and_then(|all| all.last()).cloned();
            let Some(latest) = latest else {
                self.start(&container, 0, observed).await;
                continue;
            };
            match &latest.state {
                ContainerState::Running { .. } => {
                    let failure = {
                        let results = self.context.probe_results.lock().expect("probe results");
                        results.get(&latest.id).and_then(|r| {
                            r.liveness_failure
                                .as_ref()
                                .map(|_| "liveness")
                                .or(r.startup_failure.as_ref().map(|_| "startup"))
                        })
                    };
                    if let Some(probe) = failure {
                        let message = format!(
                            "Container {} failed {probe} probe, will be restarted",
                            container.name
                        );
                        self.events.normal("Killing", &message).await;
                        self.kill(&latest.id, self.grace_seconds()).await;
                    } else if latest.spec_hash != spec_hash(&container) {
                        // The spec changed in place (a new image): replaced at once, whatever
                        // the restart policy, as the kubelet does.
                        let message = format!(
                            "Container {} definition changed, will be restarted",
                            container.name
                        );
                        self.events.normal("Killing", &message).await;
                        self.kill(&latest.id, self.grace_seconds()).await;
                        self.start(&container, latest.attempt + 1, observed).await;
                    }
                }
                ContainerState::Exited { exit_code, .. } => {
                    let restart = policy == "Always" || (policy == "OnFailure" && *exit_code != 0);
                    if restart {
                        self.restart_after_backoff(&container, &latest, observed).await;
                    }
                }
                ContainerState::Created => {}
            }
        }
    }

    fn grace_seconds(&self) -> i64 {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(TERMINATION_GRACE_SECONDS_DEFAULT)
    }

    async fn kill(&mut self, id: &ContainerId, grace_seconds: i64) {
        if let Some(Some(task)) = self.probes.remove(id) {
            task.abort();
        }
        self.context.probe_results.lock().expect("probe results").remove(id);
        let grace = Duration::from_secs(grace_seconds.max(TERMINATION_GRACE_SECONDS_MIN) as u64);
        let runtime = &self.context.runtime;
        let stop = runtime.stop_container(id, grace);
        if let Err(error) = self.context.metrics.timed("stop_container", stop).await {
            tracing::warn!(%id, %error, "cannot stop container");
        }
    }

    /// The kubelet's `doBackOff`: restart now, or report CrashLoopBackOff until the delay
    /// since the exit has passed.
    async fn restart_after_backoff(
        &mut self,
        container: &Container,
        latest: &ContainerStatus,
        observed: &Observed,
    ) {
        let ContainerState::Exited { finished_at, .. } = &latest.state else { return };
        let key = format!("{}/{}", self.uid, container.name);
        let exited = instant_of(*finished_at);
        let now = tokio::time::Instant::now();
        let delay = {
            let mut backoff = self.context.backoff.lock().expect("backoff");
            if backoff.in_backoff_since(&key, exited.into_std(), now.into_std()) {
                backoff.delay(&key)
            } else {
                backoff.next(&key, exited.into_std());
                None
            }
        };
        if let Some(delay) = delay {
            let pod = format!("{}_{}({})", self.name(), self.namespace(), self.uid);
            let message = format!(
                "back-off {} restarting failed container={} pod={pod}",
                go_duration(delay),
                container.name
            );
            self.waiting
                .insert(container.name.clone(), Waiting::new("CrashLoopBackOff", Some(message)));
            let event =
                format!("Back-off restarting failed container {} in pod {pod}", container.name);
            self.events.warning("BackOff", &event).await;
            return;
        }
        self.start(container, latest.attempt + 1, observed).await;
    }

    /// Holds a container back with a waiting reason; the event is recorded once per message.
    async fn hold(&mut self, container: &str, reason: &str, message: String) {
        self.waiting.insert(container.to_string(), Waiting::new(reason, Some(message.clone())));
        if self.reported_failures.get(container) != Some(&message) {
            self.events.warning("Failed", &message).await;
            self.events.warning("Failed", &format!("Error: {reason}")).await;
            self.reported_failures.insert(container.to_string(), message);
        }
    }

    async fn start(&mut self, container: &Container, attempt: u32, observed: &Observed) {
        let addresses = PodAddresses {
            pod_ip: self.sandbox.as_ref().map_or(String::new(), |s| s.pod_ip.clone()),
            host_ip: self.context.node_ip.clone(),
        };
        let resolved = match services::pod_service_env(&self.context.services, &self.pod).await {
            Ok(services) => {
                let client = &self.context.client;
                env::resolve(client, &self.pod, container, &addresses, &services).await
            }
            Err(message) => Err(message),
        };
        let env = match resolved {
            Ok(env) => env,
            Err(message) => {
                self.hold(&container.name, "CreateContainerConfigError", message).await;
                return;
            }
        };
        let (command, args) = env::expand_command(container, &env);
        let image = container.image.clone().unwrap_or_default();
        let spec_hash = spec_hash(container);
        let log_dir = self.context.pod_log_dir(&self.namespace(), &self.name(), &self.uid);
        let config = ContainerConfig {
            pod_uid: self.uid.clone(),
            pod_namespace: self.namespace(),
            pod_name: self.name(),
            name: container.name.clone(),
            attempt,
            image: image.clone(),
            image_pull_policy: container.image_pull_policy.clone(),
            command,
            args,
            env,
            working_dir: container.working_dir.clone().filter(|d| !d.is_empty()),
            limits: limits_of(container),
            log_path: log_dir.join(&container.name).join(format!("{attempt}.log")),
            spec_hash,
        };
        let runtime = self.context.runtime.clone();
        let metrics = self.context.metrics.clone();
        // The image first, with the kubelet's events: Pulling, then Pulled with the time it
        // took, or Pulled "already present".
        let pulled = match self.ready_image(&config).await {
            Ok(message) => message,
            Err(RuntimeError::ImageRefused { reason, message }) => {
                self.hold(&container.name, reason, message).await;
                return;
            }
            Err(error) => {
                self.hold(&container.name, "ErrImagePull", error.to_string()).await;
                return;
            }
        };
        let id = match metrics.timed("create_container", runtime.create_container(&config)).await {
            Ok(id) => id,
            Err(RuntimeError::ImageRefused { reason, message }) => {
                self.hold(&container.name, reason, message).await;
                return;
            }
            Err(error) => {
                self.hold(&container.name, "CreateContainerError", error.to_string()).await;
                return;
            }
        };
        self.reported_failures.remove(&container.name);
        self.events.normal("Pulled", &pulled).await;
        self.events.normal("Created", &format!("Created container: {}", container.name)).await;
        match metrics.timed("start_container", runtime.start_container(&id)).await {
            Ok(()) => {
                let message = format!("Started container {}", container.name);
                self.events.normal("Started", &message).await;
            }
            Err(error) => {
                self.events.warning("Failed", &format!("Error: {error}")).await;
            }
        }
        // Keep the previous attempt (for `lastState` and `logs --previous`), drop older ones.
        for old in observed.get(&container.name).into_iter().flatten() {
            if old.attempt + 1 < attempt {
                let _ = runtime.remove_container(&old.id).await;
            }
        }
    }

    /// Makes `config`'s image ready as its pull policy says, recording `Pulling`; the
    /// `Pulled` event's message.
    async fn ready_image(&self, config: &ContainerConfig) -> Result<String, RuntimeError> {
        let (runtime, image) = (&self.context.runtime, &config.image);
        if runtime.image_action(config).await? == ImageAction::Present {
            return Ok(format!("Container image \"{image}\" already present on machine"));
        }
        self.events.normal("Pulling", &format!("Pulling image \"{image}\"")).await;
        let started = std::time::Instant::now();
        let size = self.context.metrics.timed("pull_image", runtime.pull_image(config)).await?;
        let took = format!("{:.3}s", started.elapsed().as_secs_f64());
        let mut message =
            format!("Successfully pulled image \"{image}\" in {took} ({took} including waiting).");
        if let Some(size) = size {
            message.push_str(&format!(" Image size: {size} bytes."));
        }
        Ok(message)
    }

    fn probe_context(&self) -> ProbeContext {
        ProbeContext {
            runtime: self.context.runtime.clone(),
            metrics: self.context.metrics.clone(),
            results: self.context.probe_results.clone(),
            wake: self.wake.clone(),
            pod_ip: self
                .sandbox
                .as_ref()
                .map_or(self.context.node_ip.clone(), |s| s.pod_ip.clone()),
            namespace: self.namespace(),
            pod: self.name(),
            events: self.events.clone(),
        }
    }

    /// Starts probes for newly running containers and stops those of ended ones.
    fn manage_probes(&mut self, observed: &Observed) {
        let running: HashMap<ContainerId, (String, Timestamp)> = observed
            .values()
            .filter_map(|all| all.last())
            .filter_map(|c| match c.state {
                ContainerState::Running { started_at } => {
                    Some((c.id.clone(), (c.name.clone(), started_at)))
                }
                _ => None,
            })
            .collect();
        let ended: Vec<ContainerId> =
            self.probes.keys().filter(|id| !running.contains_key(id)).cloned().collect();
        for id in ended {
            if let Some(Some(task)) = self.probes.remove(&id) {
                task.abort();
            }
            self.context.probe_results.lock().expect("probe results").remove(&id);
        }
        let all: Vec<Container> = spec_containers(&self.pod, false);
        for (id, (name, started_at)) in running {
            if self.probes.contains_key(&id) {
                continue;
            }
            let Some(container) = all.iter().find(|c| c.name == name) else { continue };
            let task =
                probe::spawn(container, id.clone(), instant_of(started_at), self.probe_context());
            self.probes.insert(id, task);
        }
    }

    fn stop_probes(&mut self) {
        for (id, task) in self.probes.drain() {
            if let Some(task) = task {
                task.abort();
            }
            self.context.probe_results.lock().expect("probe results").remove(&id);
        }
    }

    fn views(&self, observed: &Observed, init: bool) -> Vec<ContainerView> {
        let results = self.context.probe_results.lock().expect("probe results");
        spec_containers(&self.pod, init)
            .into_iter()
            .map(|container| {
                let attempts = observed.get(&container.name);
                let latest = attempts.and_then(|all| all.last()).cloned();
                let previous = attempts.and_then(|all| all.iter().rev().nth(1)).cloned();
                let probed = latest.as_ref().and_then(|l| results.get(&l.id));
                // Init containers have no probes: they are neither ready nor started-probed.
                let (ready, started) = match (init, probed) {
                    (false, Some(r)) => (r.ready && r.started, r.started),
                    _ => (false, false),
                };
                ContainerView {
                    name: container.name.clone(),
                    image: container.image.clone().unwrap_or_default(),
                    latest,
                    previous,
                    waiting: self.waiting.get(&container.name).cloned(),
                    ready,
                    started,
                }
            })
            .collect()
    }

    fn status(&self, observed: &Observed, final_status: bool) -> PodStatus {
        let init = self.views(observed, true);
        let containers = self.views(observed, false);
        // A deleted pod ends in a terminal phase whatever its restart policy.
        let policy = if final_status { "Never".to_string() } else { restart_policy(&self.pod) };
        let view = PodView {
            init: &init,
            containers: &containers,
            restart_policy: &policy,
            runtime: self.context.runtime.name(),
            host_ip: &self.context.node_ip,
            pod_ip: self.sandbox.as_ref().map(|s| s.pod_ip.as_str()),
            start_time: self.start_time,
            previous: self.pod.status.as_ref(),
            sandbox_ready: self.sandbox.is_some() && !final_status,
            now: Timestamp::now(),
        };
        let mut status = status::pod_status(&view);
        if self.terminal && !final_status {
            status.phase = self.pod.status.as_ref().and_then(|s| s.phase.clone()).or(status.phase);
        }
        status
    }

    fn record_start(&mut self, status: &PodStatus) {
        if self.start_recorded {
            return;
        }
        let all_running = status
            .container_statuses
            .iter()
            .flatten()
            .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()));
        if all_running && status.phase.as_deref() == Some("Running") {
            self.start_recorded = true;
            if let Some(created) = &self.pod.metadata.creation_timestamp {
                let elapsed = Timestamp::now().duration_since(created.0);
                let seconds = elapsed.as_secs_f64().max(0.0);
                self.context.metrics.pod_start_duration.observe(seconds);
            }
        }
    }

    /// Patches `pods/status` when what we would report differs from what we reported last
    /// or from what the API server holds (someone else changed it).
    async fn report(&mut self, status: PodStatus) {
        let ours = status_json(&status);
        let theirs = self.pod.status.as_ref().map(status_json);
        if self.reported.as_ref() == Some(&ours) && theirs.as_ref() == Some(&ours) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.context.client.clone(), &self.namespace());
        let patch = serde_json::json!({"status": &status});
        match api.patch_status(&self.name(), &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(updated) => {
                let phase = status.phase.clone().unwrap_or_default();
                self.context.phases.lock().expect("phases").insert(self.uid.clone(), phase);
                self.reported = Some(ours);
                self.pod.status = updated.status;
            }
            Err(error) => tracing::warn!(pod = %self.name(), %error, "cannot report pod status"),
        }
    }

    /// Stops every container of the pod (SIGTERM, `grace_seconds`, SIGKILL), in parallel.
    async fn terminate(&mut self, grace_seconds: i64) {
        self.stop_probes();
        let Ok(observed) = self.observe().await else { return };
        let running: Vec<ContainerStatus> =
            observed.values().flatten().filter(|c| c.is_running()).cloned().collect();
        let grace = Duration::from_secs(grace_seconds.max(TERMINATION_GRACE_SECONDS_MIN) as u64);
        let context = self.context.clone();
        let events = self.events.clone();
        futures::future::join_all(running.iter().map(|container| {
            let (context, events) = (context.clone(), events.clone());
            async move {
                events.normal("Killing", &format!("Stopping container {}", container.name)).await;
                let stop = context.runtime.stop_container(&container.id, grace);
                if let Err(error) = context.metrics.timed("stop_container", stop).await {
                    tracing::warn!(id = %container.id, %error, "cannot stop container");
                }
            }
        }))
        .await;
    }

    /// The kubelet's side of a graceful deletion.
    async fn finish_deletion(&mut self) {
        let started = std::time::Instant::now();
        let grace =
            self.pod.metadata.deletion_grace_period_seconds.unwrap_or_else(|| self.grace_seconds());
        self.terminate(grace).await;
        if let Ok(observed) = self.observe().await {
            self.waiting.clear();
            let status = self.status(&observed, true);
            self.report(status).await;
        }
        let api: Api<Pod> = Api::namespaced(self.context.client.clone(), &self.namespace());
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        loop {
            match api.delete(&self.name(), &params).await {
                Ok(_) => break,
                Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => break,
                Err(error) => {
                    tracing::warn!(pod = %self.name(), %error, "cannot delete pod; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(API_RETRY_MS)) => {}
                        _ = crate::stopped(&mut self.stop) => return,
                    }
                }
            }
        }
        self.context
            .metrics
            .pod_worker_duration
            .with_label_values(&["terminate"])
            .observe(started.elapsed().as_secs_f64());
        self.clean_up().await;
    }

    /// Forgets the pod: its containers, logs, sandbox, back-off and index entry.
    async fn clean_up(&mut self) {
        let runtime = self.context.runtime.clone();
        if let Ok(observed) = self.observe().await {
            for container in observed.values().flatten() {
                let _ = runtime.remove_container(&container.id).await;
            }
            let mut backoff = self.context.backoff.lock().expect("backoff");
            for name in observed.keys() {
                backoff.forget(&format!("{}/{name}", self.uid));
            }
        }
        let _ = runtime.remove_sandbox(&self.uid).await;
        self.context.network.release(&self.uid);
        self.context.phases.lock().expect("phases").remove(&self.uid);
        let dir = self.context.pod_log_dir(&self.namespace(), &self.name(), &self.uid);
        let _ = std::fs::remove_dir_all(dir);
        let mut index = self.context.pods.write().expect("pod index");
        if index.get(&self.index_key()) == Some(&self.uid) {
            index.remove(&self.index_key());
        }
    }
}

/// Limits the runtime applies (memory in bytes, CPU in millicores).
fn limits_of(container: &Container) -> ResourceLimits {
    use control_plane::quantity::Quantity;
    let limits = container.resources.as_ref().and_then(|r| r.limits.as_ref());
    let get = |name: &str| {
        limits.and_then(|l| l.get(name)).and_then(|q| Quantity::parse(&q.0).ok()).map(|q| q.0)
    };
    ResourceLimits {
        memory_bytes: get("memory").map(|thousandths| (thousandths / 1000).max(0) as u64),
        cpu_millis: get("cpu").map(|thousandths| thousandths.max(0) as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_delays_print_as_go_durations() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(80)), "1m20s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
    }

    #[test]
    fn limits_are_bytes_and_millicores() {
        let container: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}}
        }))
        .unwrap();
        let limits = limits_of(&container);
        assert_eq!(limits.memory_bytes, Some(64 * 1024 * 1024));
        assert_eq!(limits.cpu_millis, Some(500));
    }
}
