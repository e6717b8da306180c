//! Pods on this node: one watch of the pods bound here (`fieldSelector=spec.nodeName=<node>`)
//! feeding one worker per pod ([`worker`]), which converges the pod's containers to its spec
//! and reports its status. After the initial list, containers the runtime holds for pods that
//! no longer exist are stopped and removed, and their pod IPs released.
//!
//! **Architecture invariant:** a worker alone acts on its pod's containers; the manager only
//! hands it the newest Pod (a `watch` channel: a slow worker skips intermediate versions, as
//! the kubelet's pod workers do).

pub mod env;
pub mod status;
pub mod worker;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use tokio::sync::watch;

use crate::backoff::Backoff;
use crate::limits::{PODS_MAX, RESTART_BACKOFF_INITIAL_MS, RESTART_BACKOFF_MAX_MS};
use crate::metrics::Metrics;
use crate::network::PodAddressing;
use crate::probe::SharedResults;
use crate::runtime::Runtime;
use crate::services::ServiceCache;
use control_plane::events::{EventType, Recorder};

/// Pod uids by (namespace, name): how the log server finds a pod's files.
pub type PodIndex = Arc<RwLock<HashMap<(String, String), String>>>;

/// What every pod worker shares.
pub struct NodeContext {
    pub client: kube::Client,
    pub node_name: String,
    pub node_ip: String,
    pub root_dir: PathBuf,
    pub runtime: Arc<dyn Runtime>,
    pub metrics: Metrics,
    pub recorder: Arc<Recorder>,
    /// Where pods get their addresses (the node's, or loopback ones of their own).
    pub network: PodAddressing,
    /// Services, for the service environment variables of new containers.
    pub services: ServiceCache,
    pub probe_results: SharedResults,
    pub pods: PodIndex,
    pub backoff: Mutex<Backoff>,
    /// The phase last reported for each pod, by uid (for the pods-by-phase gauge).
    pub phases: Mutex<HashMap<String, String>>,
}

impl NodeContext {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: kube::Client,
        node_name: String,
        node_ip: String,
        root_dir: PathBuf,
        runtime: Arc<dyn Runtime>,
        metrics: Metrics,
        recorder: Arc<Recorder>,
        network: PodAddressing,
        services: ServiceCache,
    ) -> NodeContext {
        NodeContext {
            client,
            node_name,
            node_ip,
            root_dir,
            runtime,
            metrics,
            recorder,
            network,
            services,
            probe_results: SharedResults::default(),
            pods: PodIndex::default(),
            backoff: Mutex::new(Backoff::new(
                Duration::from_millis(RESTART_BACKOFF_INITIAL_MS),
                Duration::from_millis(RESTART_BACKOFF_MAX_MS),
            )),
            phases: Mutex::new(HashMap::new()),
        }
    }

    /// Where a pod's container logs live (the kubelet's `/var/log/pods/<ns>_<name>_<uid>`).
    pub fn pod_log_dir(&self, namespace: &str, name: &str, uid: &str) -> PathBuf {
        self.root_dir.join("pods").join(format!("{namespace}_{name}_{uid}"))
    }
}

/// Records events about one pod (best effort, deduplicated by the recorder).
pub struct PodEvents {
    recorder: Arc<Recorder>,
    reference: ObjectReference,
}

impl PodEvents {
    pub fn new(recorder: Arc<Recorder>, pod: &Pod) -> PodEvents {
        PodEvents { recorder, reference: control_plane::events::reference(pod) }
    }

    pub async fn normal(&self, reason: &str, message: &str) {
        self.recorder.record(&self.reference, EventType::Normal, reason, message).await;
    }

    pub async fn warning(&self, reason: &str, message: &str) {
        self.recorder.record(&self.reference, EventType::Warning, reason, message).await;
    }
}

struct WorkerHandle {
    updates: watch::Sender<Option<Pod>>,
    task: tokio::task::JoinHandle<()>,
}

fn uid_of(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

/// Watches this node's pods and runs their workers until `stop`; containers keep running
/// when the agent stops (a restarted agent adopts them).
pub async fn run(context: Arc<NodeContext>, mut stop: watch::Receiver<bool>) {
    let api: Api<Pod> = Api::all(context.client.clone());
    let selector = format!("spec.nodeName={}", context.node_name);
    let mut events =
        watcher(api, watcher::Config::default().fields(&selector)).default_backoff().boxed();
    let mut workers: HashMap<String, WorkerHandle> = HashMap::new();
    let mut listed: HashSet<String> = HashSet::new();
    loop {
        let event = tokio::select! {
            next = events.try_next() => match next {
                Ok(Some(event)) => event,
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(%error, "pod watch failed; retrying");
                    continue;
                }
            },
            _ = crate::stopped(&mut stop) => break,
        };
        workers.retain(|_, worker| !worker.task.is_finished());
        match event {
            watcher::Event::Init => listed.clear(),
            watcher::Event::InitApply(pod) => {
                listed.insert(uid_of(&pod));
                dispatch(&context, &mut workers, pod, &stop);
            }
            watcher::Event::InitDone => {
                for (uid, worker) in &workers {
                    if !listed.contains(uid) {
                        let _ = worker.updates.send(None);
                    }
                }
                let known: HashSet<String> = workers.keys().cloned().collect();
                // Here, before any later pod is dispatched, so no new pod's address goes.
                context.network.retain(&known);
                tokio::spawn(remove_orphans(context.clone(), known));
            }
            watcher::Event::Apply(pod) => dispatch(&context, &mut workers, pod, &stop),
            watcher::Event::Delete(pod) => {
                if let Some(worker) = workers.get(&uid_of(&pod)) {
                    let _ = worker.updates.send(None);
                }
            }
        }
    }
    // Workers stop with the same signal; wait for them so nothing writes after `run` returns.
    for (_, worker) in workers {
        let _ = worker.task.await;
    }
}

fn dispatch(
    context: &Arc<NodeContext>,
    workers: &mut HashMap<String, WorkerHandle>,
    pod: Pod,
    stop: &watch::Receiver<bool>,
) {
    let uid = uid_of(&pod);
    if let Some(worker) = workers.get(&uid) {
        let _ = worker.updates.send(Some(pod));
        return;
    }
    if workers.len() >= PODS_MAX {
        tracing::warn!(pod = ?pod.metadata.name, "more pods than this node runs; ignored");
        return;
    }
    let (updates, receiver) = watch::channel(Some(pod.clone()));
    let task =
        tokio::spawn(worker::Worker::new(context.clone(), pod, receiver, stop.clone()).run());
    workers.insert(uid, WorkerHandle { updates, task });
}

/// Stops and removes containers whose pods this node no longer has (deleted while the agent
/// was down).
async fn remove_orphans(context: Arc<NodeContext>, known: HashSet<String>) {
    let runtime = &context.runtime;
    let Ok(containers) = runtime.list_containers(None).await else { return };
    let grace = Duration::from_secs(crate::limits::TERMINATION_GRACE_SECONDS_MIN as u64);
    let mut pods = HashSet::new();
    for container in containers.into_iter().filter(|c| !known.contains(&c.pod_uid)) {
        tracing::info!(id = %container.id, "removing the container of a pod that is gone");
        let _ = runtime.stop_container(&container.id, grace).await;
        let _ = runtime.remove_container(&container.id).await;
        pods.insert(container.pod_uid);
    }
    for uid in pods {
        let _ = runtime.remove_sandbox(&uid).await;
    }
}
