//! The agent's metrics, under the kubelet's names so dashboards built for it read them:
//! pods and containers by state, probe results, pod sync latency, runtime operation latencies
//! and errors.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts};

/// Handles to every agent metric (cheap to clone).
#[derive(Clone)]
pub struct Metrics {
    pub running_pods: IntGauge,
    /// Containers by `container_state` (created, running, exited).
    pub containers: IntGaugeVec,
    /// Pods by the phase this agent last reported.
    pub pods_by_phase: IntGaugeVec,
    /// `probe_type`, `result`, `container`, `pod`, `namespace`.
    pub probes: IntCounterVec,
    /// One pod worker pass (`operation`: sync, terminate).
    pub pod_worker_duration: HistogramVec,
    /// Pod creation to all containers running, as seen by this agent.
    pub pod_start_duration: prometheus::Histogram,
    /// Runtime calls by `operation_type`.
    pub runtime_operations_duration: HistogramVec,
    pub runtime_operations_errors: IntCounterVec,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(
    registry: &prometheus::Registry,
    metric: T,
) -> T {
    // Registered twice (two agents sharing one registry in a test): the first one reports.
    let _ = registry.register(Box::new(metric.clone()));
    metric
}

impl Metrics {
    pub fn new(registry: &prometheus::Registry) -> Metrics {
        let latency = vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
        Metrics {
            running_pods: register(
                registry,
                IntGauge::new("kubelet_running_pods", "Pods with a running container")
                    .expect("valid metric"),
            ),
            containers: register(
                registry,
                IntGaugeVec::new(
                    Opts::new("kubelet_running_containers", "Containers by state"),
                    &["container_state"],
                )
                .expect("valid metric"),
            ),
            pods_by_phase: register(
                registry,
                IntGaugeVec::new(
                    Opts::new("skiff_agent_pods", "Pods on this node by reported phase"),
                    &["phase"],
                )
                .expect("valid metric"),
            ),
            probes: register(
                registry,
                IntCounterVec::new(
                    Opts::new("prober_probe_total", "Probe runs by type and result"),
                    &["probe_type", "result", "container", "pod", "namespace"],
                )
                .expect("valid metric"),
            ),
            pod_worker_duration: register(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "kubelet_pod_worker_duration_seconds",
                        "Duration of one pod worker pass",
                    )
                    .buckets(latency.clone()),
                    &["operation"],
                )
                .expect("valid metric"),
            ),
            pod_start_duration: register(
                registry,
                prometheus::Histogram::with_opts(
                    HistogramOpts::new(
                        "kubelet_pod_start_duration_seconds",
                        "Pod creation to all its containers running",
                    )
                    .buckets(latency.clone()),
                )
                .expect("valid metric"),
            ),
            runtime_operations_duration: register(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "kubelet_runtime_operations_duration_seconds",
                        "Duration of runtime operations",
                    )
                    .buckets(latency),
                    &["operation_type"],
                )
                .expect("valid metric"),
            ),
            runtime_operations_errors: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "kubelet_runtime_operations_errors_total",
                        "Failed runtime operations",
                    ),
                    &["operation_type"],
                )
                .expect("valid metric"),
            ),
        }
    }

    /// Times a runtime operation and counts its failure.
    pub async fn timed<T, E>(
        &self,
        operation: &str,
        future: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let started = std::time::Instant::now();
        let result = future.await;
        self.runtime_operations_duration
            .with_label_values(&[operation])
            .observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            self.runtime_operations_errors.with_label_values(&[operation]).inc();
        }
        result
    }
}
