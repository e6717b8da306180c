//! The scheduler's Prometheus metrics, under kube-scheduler's names. They are registered when
//! a run starts and unregistered when it ends, so a scheduler that loses and regains
//! leadership registers afresh (counters then restart from zero, which Prometheus treats as a
//! counter reset).

use prometheus::core::Collector;
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts};

/// Result label values of attempts.
pub const SCHEDULED: &str = "scheduled";
pub const UNSCHEDULABLE: &str = "unschedulable";
pub const ERROR: &str = "error";

/// kube-scheduler's buckets for its latency histograms: 1 ms doubling to about 16 s.
fn latency_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.001, 2.0, 15).expect("valid buckets")
}

pub struct Metrics {
    profile: String,
    pub attempts: IntCounterVec,
    pub pending_pods: IntGaugeVec,
    pub attempt_duration: HistogramVec,
    pub algorithm_duration: Histogram,
    pub binding_duration: Histogram,
    pub cache_size: IntGaugeVec,
    pub in_flight: IntGaugeVec,
    registry: prometheus::Registry,
    /// Positions in `collectors()` of the metrics this run registered.
    registered: Vec<usize>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("profile", &self.profile).finish()
    }
}

impl Metrics {
    /// Creates the metrics for scheduler `profile` and registers them on `registry`.
    pub fn register(registry: &prometheus::Registry, profile: &str) -> Metrics {
        let attempts = IntCounterVec::new(
            Opts::new(
                "scheduler_schedule_attempts_total",
                "Number of attempts to schedule pods, by the result.",
            ),
            &["result", "profile"],
        )
        .expect("valid metric");
        let pending_pods = IntGaugeVec::new(
            Opts::new("scheduler_pending_pods", "Number of pending pods, by the queue type."),
            &["queue"],
        )
        .expect("valid metric");
        let attempt_duration = HistogramVec::new(
            HistogramOpts::new(
                "scheduler_scheduling_attempt_duration_seconds",
                "Scheduling attempt latency in seconds (algorithm + binding).",
            )
            .buckets(latency_buckets()),
            &["result", "profile"],
        )
        .expect("valid metric");
        let algorithm_duration = Histogram::with_opts(
            HistogramOpts::new(
                "scheduler_scheduling_algorithm_duration_seconds",
                "Scheduling algorithm latency in seconds.",
            )
            .buckets(latency_buckets()),
        )
        .expect("valid metric");
        let binding_duration = Histogram::with_opts(
            HistogramOpts::new(
                "scheduler_binding_duration_seconds",
                "Binding latency in seconds (the pods/binding request).",
            )
            .buckets(latency_buckets()),
        )
        .expect("valid metric");
        let cache_size = IntGaugeVec::new(
            Opts::new(
                "scheduler_cache_size",
                "Number of nodes, pods and assumed (bound, not yet confirmed) pods in the \
                 scheduler cache.",
            ),
            &["type"],
        )
        .expect("valid metric");
        let in_flight = IntGaugeVec::new(
            Opts::new(
                "scheduler_goroutines",
                "Number of running API calls of the scheduler, by operation.",
            ),
            &["operation"],
        )
        .expect("valid metric");
        let mut metrics = Metrics {
            profile: profile.to_string(),
            attempts,
            pending_pods,
            attempt_duration,
            algorithm_duration,
            binding_duration,
            cache_size,
            in_flight,
            registry: registry.clone(),
            registered: Vec::new(),
        };
        for (index, collector) in metrics.collectors().into_iter().enumerate() {
            match registry.register(collector) {
                Ok(()) => metrics.registered.push(index),
                // Another scheduler run in this process holds the names; this one still
                // counts, just unexported.
                Err(error) => tracing::warn!(%error, "cannot register a scheduler metric"),
            }
        }
        metrics
    }

    /// Handles on every metric (clones share the metric's state and descriptors).
    fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.attempts.clone()),
            Box::new(self.pending_pods.clone()),
            Box::new(self.attempt_duration.clone()),
            Box::new(self.algorithm_duration.clone()),
            Box::new(self.binding_duration.clone()),
            Box::new(self.cache_size.clone()),
            Box::new(self.in_flight.clone()),
        ]
    }

    /// Counts an attempt's result and observes its duration.
    pub fn attempt(&self, result: &str, seconds: f64) {
        self.attempts.with_label_values(&[result, &self.profile]).inc();
        self.attempt_duration.with_label_values(&[result, &self.profile]).observe(seconds);
    }
}

impl Drop for Metrics {
    fn drop(&mut self) {
        for (index, collector) in self.collectors().into_iter().enumerate() {
            if self.registered.contains(&index) {
                let _ = self.registry.unregister(collector);
            }
        }
    }
}
