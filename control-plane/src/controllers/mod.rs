//! The controller manager: level-triggered reconcilers built on kube-runtime's watcher,
//! reflector and `Controller`, keyed by object, each driving the cluster toward what its
//! objects declare. One process runs them all; under leader election only one master's runs.
//!
//! Shared here: the manager's configuration and context, metrics, and the Kubernetes rules
//! several controllers apply (label selectors, controller references, pod readiness and
//! availability, pods from templates).

pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod gc;
pub mod nodelifecycle;
pub mod replicaset;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Resource;
use tokio::sync::watch;

use crate::events::Recorder;

/// kube-controller-manager's settings that Skiff honours.
#[derive(Clone, Debug)]
pub struct ControllerManagerConfig {
    /// Name this manager records events under (`source.host`).
    pub host: String,
    /// How long a node's Lease may go unrenewed before the node is marked Unknown
    /// (`--node-monitor-grace-period`, Kubernetes' default 40 s + one 10 s renew period).
    pub node_monitor_grace_period: Duration,
    /// Toleration seconds given to pods for the not-ready and unreachable taints when they
    /// have none (Kubernetes' default 300 s).
    pub default_not_ready_toleration: Duration,
    /// Reconciles of one controller that may run at once.
    pub concurrency: u16,
}

impl Default for ControllerManagerConfig {
    fn default() -> Self {
        ControllerManagerConfig {
            host: "skiff".into(),
            node_monitor_grace_period: Duration::from_secs(50),
            default_not_ready_toleration: Duration::from_secs(300),
            concurrency: crate::limits::CONTROLLER_CONCURRENT_RECONCILES,
        }
    }
}

/// Reconcile counts and durations by controller.
#[derive(Clone)]
pub struct ControllerMetrics {
    reconciles: prometheus::IntCounterVec,
    duration: prometheus::HistogramVec,
}

impl ControllerMetrics {
    fn new(registry: &prometheus::Registry) -> ControllerMetrics {
        let reconciles = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "skiff_controller_reconciles_total",
                "Reconciles run, by controller and result.",
            ),
            &["controller", "result"],
        )
        .expect("valid metric");
        let duration = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new(
                "skiff_controller_reconcile_duration_seconds",
                "Time one reconcile took, by controller.",
            )
            .buckets(prometheus::exponential_buckets(0.000_5, 2.0, 16).expect("buckets")),
            &["controller"],
        )
        .expect("valid metric");
        let _ = registry.register(Box::new(reconciles.clone()));
        let _ = registry.register(Box::new(duration.clone()));
        ControllerMetrics { reconciles, duration }
    }

    /// Counts one reconcile of `controller` that took `seconds`.
    pub fn observe(&self, controller: &str, ok: bool, seconds: f64) {
        let result = if ok { "success" } else { "error" };
        self.reconciles.with_label_values(&[controller, result]).inc();
        self.duration.with_label_values(&[controller]).observe(seconds);
    }
}

/// What every controller gets.
pub struct Context {
    pub client: kube::Client,
    pub recorder: Recorder,
    pub config: ControllerManagerConfig,
    pub metrics: ControllerMetrics,
}

/// Why a reconcile failed; it is retried with back-off.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Invalid(String),
}

impl Context {
    /// The shared context; its metrics and event recorder are registered on `registry` once,
    /// however many times the manager then runs (once per leadership term).
    pub fn new(
        client: kube::Client,
        config: ControllerManagerConfig,
        registry: &prometheus::Registry,
    ) -> Arc<Context> {
        let recorder = Recorder::new(client.clone(), "controller-manager", &config.host, registry);
        Arc::new(Context { client, recorder, config, metrics: ControllerMetrics::new(registry) })
    }
}

/// Runs every controller until `stop` turns true.
pub async fn run(context: Arc<Context>, stop: watch::Receiver<bool>) {
    tracing::info!("controller manager started");
    tokio::join!(
        replicaset::run(context.clone(), stop.clone()),
        deployment::run(context.clone(), stop.clone()),
        daemonset::run(context.clone(), stop.clone()),
        nodelifecycle::run(context.clone(), stop.clone()),
        gc::run(context.clone(), stop.clone()),
        endpoints::run(context.clone(), stop.clone()),
    );
    tracing::info!("controller manager stopped");
}

/// A reflector over every object of `api`: its store, and the stream of touched objects
/// (applied or deleted) that keeps the store current while it is polled, typically as a
/// `Controller` trigger.
pub fn reflect<K>(
    api: kube::Api<K>,
) -> (Store<K>, impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let events = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .touched_objects();
    (store, events)
}

/// Waits, within `CONTROLLER_CACHE_SYNC_TIMEOUT_MS`, for a reflector store's first list: a
/// reconcile acting on a cache that has not loaded would take missing objects for gone.
pub async fn loaded<K>(store: &Store<K>, what: &str) -> Result<(), ReconcileError>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let limit = Duration::from_millis(crate::limits::CONTROLLER_CACHE_SYNC_TIMEOUT_MS);
    tokio::time::timeout(limit, store.wait_until_ready())
        .await
        .map_err(|_| ReconcileError::Invalid(format!("the {what} cache did not load")))?
        .map_err(|_| ReconcileError::Invalid(format!("the {what} cache stopped")))
}

/// Resolves when `stop` turns true (or its sender is gone).
pub async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Whether `labels` satisfy `selector` (matchLabels and matchExpressions ANDed). An empty
/// selector matches everything, as in Kubernetes' LabelSelectorAsSelector.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok =
        selector.match_labels.iter().flatten().all(|(key, value)| labels.get(key) == Some(value));
    labels_ok
        && selector.match_expressions.iter().flatten().all(|requirement| {
            let values = requirement.values.as_deref().unwrap_or_default();
            let value = labels.get(&requirement.key);
            match requirement.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// Whether a selector selects nothing at all (`{}` selects everything in Kubernetes, but a
/// controller with an empty selector would adopt every pod: the API refuses those).
pub fn selector_is_empty(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
        && selector.match_expressions.as_ref().is_none_or(Vec::is_empty)
}

/// The owner reference marked `controller: true`, if any.
pub fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.iter().flatten().find(|r| r.controller == Some(true))
}

/// A controller reference to `owner` for objects it creates.
pub fn owner_reference<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A pod for `template`, named `<prefix><random>` by the server, owned by `owner`.
pub fn pod_from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    generate_name: &str,
    owner: OwnerReference,
) -> Pod {
    let template_meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: template_meta.labels,
            annotations: template_meta.annotations,
            finalizers: template_meta.finalizers,
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Not finished (Succeeded/Failed) and not being deleted: counts toward replicas.
pub fn pod_is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// When the pod's Ready condition turned True, if it is True.
pub fn pod_ready_since(pod: &Pod) -> Option<Option<k8s_openapi::jiff::Timestamp>> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let ready = conditions.iter().find(|c| c.type_ == "Ready")?;
    (ready.status == "True").then(|| ready.last_transition_time.as_ref().map(|t| t.0))
}

/// Ready (the Ready condition is True).
pub fn pod_is_ready(pod: &Pod) -> bool {
    pod_ready_since(pod).is_some()
}

/// Ready for at least `min_ready_seconds` at `now`.
pub fn pod_is_available(
    pod: &Pod,
    min_ready_seconds: i32,
    now: k8s_openapi::jiff::Timestamp,
) -> bool {
    match pod_ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(since)) => {
            let ready_for = now.duration_since(since).as_secs();
            ready_for >= i64::from(min_ready_seconds)
        }
    }
}

/// The object's namespace and name, for logs and keys.
pub fn key_of(meta: &ObjectMeta) -> String {
    format!("{}/{}", meta.namespace.as_deref().unwrap_or(""), meta.name.as_deref().unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn expression(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn selectors_and_labels_and_expressions() {
        let selector = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                expression("tier", "In", &["front", "edge"]),
                expression("canary", "DoesNotExist", &[]),
            ]),
        };
        assert!(selector_matches(&selector, &labels(&[("app", "web"), ("tier", "edge")])));
        assert!(!selector_matches(&selector, &labels(&[("app", "web"), ("tier", "back")])));
        assert!(!selector_matches(&selector, &labels(&[("app", "web")])));
        assert!(!selector_matches(
            &selector,
            &labels(&[("app", "web"), ("tier", "front"), ("canary", "1")])
        ));
        assert!(!selector_matches(&selector, &labels(&[("app", "db"), ("tier", "front")])));
        let not_in = LabelSelector {
            match_expressions: Some(vec![expression("env", "NotIn", &["prod"])]),
            ..LabelSelector::default()
        };
        assert!(selector_matches(&not_in, &labels(&[])));
        assert!(selector_matches(&not_in, &labels(&[("env", "dev")])));
        assert!(!selector_matches(&not_in, &labels(&[("env", "prod")])));
        assert!(selector_is_empty(&LabelSelector::default()));
        assert!(!selector_is_empty(&not_in));
    }

    #[test]
    fn availability_needs_ready_for_min_ready_seconds() {
        use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let since: k8s_openapi::jiff::Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
        let pod = Pod {
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(since)),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        };
        let later = |s: i64| since + k8s_openapi::jiff::SignedDuration::from_secs(s);
        assert!(pod_is_ready(&pod));
        assert!(pod_is_available(&pod, 0, since));
        assert!(!pod_is_available(&pod, 10, later(9)));
        assert!(pod_is_available(&pod, 10, later(10)));
        assert!(!pod_is_available(&Pod::default(), 0, since));
    }
}
