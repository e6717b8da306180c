//! etcd's v3 gRPC services over the [`crate::Store`] handle: a thin layer of conversions,
//! status mapping and per-method metrics.
//!
//! **Architecture invariant:** no logic of the data model lives here; every decision is the
//! store's, this layer only translates.

mod cluster;
pub mod convert;
mod kv;
mod lease;
mod maintenance;
pub mod status;
mod watch;

use std::future::Future;
use std::time::Instant;

pub use cluster::ClusterService;
pub use kv::KvService;
pub use lease::LeaseService;
pub use maintenance::MaintenanceService;
pub use watch::WatchService;

use crate::metrics::Metrics;

/// Records the request count by method and code, and the latency, of one gRPC call.
async fn instrument<T>(
    metrics: &Metrics,
    method: &'static str,
    call: impl Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Status> {
    let started = Instant::now();
    let result = call.await;
    let code = match &result {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    };
    metrics.grpc_requests_total.with_label_values(&[method, &format!("{code:?}")]).inc();
    metrics
        .grpc_request_duration_seconds
        .with_label_values(&[method])
        .observe(started.elapsed().as_secs_f64());
    result
}
