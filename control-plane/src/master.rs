//! A master's own components beside its API server: the scheduler and the controller manager,
//! each a client of the API server with its own certificate and, by default, active only while
//! it holds its leader election Lease (`kube-system/kube-scheduler`,
//! `kube-system/kube-controller-manager`), so that across several masters exactly one of each
//! acts.

use std::future::Future;

use tokio::sync::watch;

use crate::apiserver::server::RunningApiServer;
use crate::controllers::{self, ControllerManagerConfig};
use crate::leader::{self, Elector, LeaderConfig};
use crate::scheduler::{self, SchedulerConfig};

/// Why the components could not start.
#[derive(Debug, thiserror::Error)]
pub enum ComponentsError {
    #[error("cannot issue a component certificate: {0}")]
    Pki(#[from] crate::pki::PkiError),
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
}

/// How the components run.
#[derive(Clone, Debug)]
pub struct ComponentsConfig {
    /// The master's `--name`: leader identities start with it.
    pub name: String,
    /// Whether to elect leaders (`--leader-elect`); off, every master's components act.
    pub leader_elect: bool,
    pub scheduler: SchedulerConfig,
    pub controllers: ControllerManagerConfig,
}

/// The running components; stop them with [`Components::shutdown`] before the API server.
pub struct Components {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Components {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Components").field("tasks", &self.tasks.len()).finish()
    }
}

impl Components {
    /// Stops the components; leaders release their Leases so a standby takes over at once.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

fn elected<F, Fut>(
    client: kube::Client,
    lease: &str,
    config: &ComponentsConfig,
    registry: &prometheus::Registry,
    stop: watch::Receiver<bool>,
    work: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut(watch::Receiver<bool>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    if !config.leader_elect {
        let mut work = work;
        return tokio::spawn(work(stop));
    }
    let identity = leader::identity(&config.name);
    let elector =
        Elector::new(client, LeaderConfig::new("kube-system", lease, &identity), registry);
    tokio::spawn(elector.run(stop, work))
}

/// Starts the scheduler and the controller manager against `api`, their metrics on its
/// `/metrics`.
pub async fn start(
    api: &RunningApiServer,
    config: ComponentsConfig,
) -> Result<Components, ComponentsError> {
    // The components' roles are bootstrapped by the API server: start them once it is ready,
    // or their first lists are refused and their watches back off for many seconds.
    while !api.server.ready.load(std::sync::atomic::Ordering::Acquire) {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let registry = api.server.metrics.registry().clone();
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();

    let text = api.component_kubeconfig("system:kube-scheduler", &[])?;
    let client = crate::client::from_kubeconfig_text(&text).await?;
    let (scheduler_client, scheduler_config, scheduler_registry) =
        (client.clone(), config.scheduler.clone(), registry.clone());
    tasks.push(elected(
        client,
        "kube-scheduler",
        &config,
        &registry,
        stopped.clone(),
        move |lost| {
            let (client, config, registry) =
                (scheduler_client.clone(), scheduler_config.clone(), scheduler_registry.clone());
            async move { scheduler::run(client, config, &registry, lost).await }
        },
    ));

    let text = api.component_kubeconfig("system:kube-controller-manager", &[])?;
    let client = crate::client::from_kubeconfig_text(&text).await?;
    let context = controllers::Context::new(client.clone(), config.controllers.clone(), &registry);
    tasks.push(elected(
        client,
        "kube-controller-manager",
        &config,
        &registry,
        stopped,
        move |lost| controllers::run(context.clone(), lost),
    ));
    Ok(Components { stop, tasks })
}
