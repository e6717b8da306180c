//! The scheduler: assigns each pending pod to a node and binds it through `pods/binding`, as
//! kube-scheduler's default profile does.
//!
//! - `model`: what scheduling reads of pods and nodes, converted once from the wire types
//!   (requests with init containers and overhead, parsed selectors, tolerations, the taints a
//!   node's Ready condition implies).
//! - `core`: the pure algorithm (filters, scores, node sampling, the unschedulable message).
//! - `cache`: nodes with what their pods use, updated incrementally, and assumed pods.
//! - `queue`: the active, backoff and unschedulable queues, with time passed in.
//! - `driver`: the one task that feeds watch events to the cache and queue, runs the
//!   algorithm and starts bounded binding and reporting tasks; `metrics`: its Prometheus
//!   series.
//!
//! **Architecture invariant:** `model`, `core`, `cache` and `queue` do no I/O and read no
//! clock; only `driver` talks to the API server.

pub mod cache;
pub mod core;
mod driver;
mod metrics;
pub mod model;
pub mod queue;

use std::time::Duration;

use crate::limits::{
    SCHEDULER_BINDINGS_IN_FLIGHT_MAX, SCHEDULER_POD_BACKOFF_INITIAL_MS,
    SCHEDULER_POD_BACKOFF_MAX_MS, SCHEDULER_UNSCHEDULABLE_MAX_MS,
};

/// The scheduler's settings; `Default` gives kube-scheduler's defaults.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Pods whose `spec.schedulerName` is this (or unset) are scheduled; also the events'
    /// component and the metrics' `profile`.
    pub scheduler_name: String,
    /// The events' source host (the master's name).
    pub host: String,
    /// Share of the nodes to find feasible before scoring; 0 is kube-scheduler's adaptive
    /// default (every node below 100 nodes, then from 50% down to 5%, never fewer than 100).
    pub percentage_of_nodes_to_score: u32,
    /// Bindings in flight at once.
    pub bindings_in_flight_max: usize,
    pub pod_backoff_initial: Duration,
    pub pod_backoff_max: Duration,
    /// The longest an unschedulable pod waits before it is tried again without a cluster
    /// change.
    pub unschedulable_max: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> SchedulerConfig {
        SchedulerConfig {
            scheduler_name: "default-scheduler".into(),
            host: "skiff".into(),
            percentage_of_nodes_to_score: 0,
            bindings_in_flight_max: SCHEDULER_BINDINGS_IN_FLIGHT_MAX,
            pod_backoff_initial: Duration::from_millis(SCHEDULER_POD_BACKOFF_INITIAL_MS),
            pod_backoff_max: Duration::from_millis(SCHEDULER_POD_BACKOFF_MAX_MS),
            unschedulable_max: Duration::from_millis(SCHEDULER_UNSCHEDULABLE_MAX_MS),
        }
    }
}

/// Runs the scheduler until `stop` turns true (or its sender is dropped). Each call starts
/// from nothing (fresh watches, cache and queue, metrics registered on `registry`) and, when
/// it returns, has stopped every task it started and unregistered its metrics, so it can be
/// called again each time leadership is won.
pub async fn run(
    client: kube::Client,
    config: SchedulerConfig,
    registry: &prometheus::Registry,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let config =
        SchedulerConfig { bindings_in_flight_max: config.bindings_in_flight_max.max(1), ..config };
    tracing::info!(scheduler = %config.scheduler_name, "scheduler starting");
    driver::Driver::new(client, config, registry).run(stop).await;
}
