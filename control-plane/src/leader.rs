//! Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does, so
//! that exactly one scheduler and one controller manager are active across masters.
//!
//! A candidate acquires the Lease when it is free or when the holder's renewals have stopped
//! for `lease_duration`. Expiry is judged by the candidate's own clock from when it last saw the
//! Lease change, never by comparing clocks across machines. Every write is a compare-and-swap on
//! the Lease's resourceVersion, so two candidates cannot both win. A leader that cannot renew
//! within `renew_deadline` stops its work before the Lease can expire, so there is never a
//! moment when two leaders act, as long as clocks tick at similar rates. On shutdown the leader
//! releases the Lease so a standby takes over at once.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::watch;

/// Where the Lease is and how it is held.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    pub namespace: String,
    pub name: String,
    /// Who we are: the master's `--name` and a unique suffix.
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaderConfig {
    /// Kubernetes' defaults: lease 15 s, renew deadline 10 s, retry every 2 s.
    pub fn new(namespace: &str, name: &str, identity: &str) -> LeaderConfig {
        LeaderConfig {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// A unique identity for a process of master `name`: `<name>_<random>`, as Kubernetes
/// components use `<hostname>_<uuid>`.
pub fn identity(name: &str) -> String {
    format!("{name}_{}", uuid::Uuid::new_v4())
}

/// What the candidate last saw of the Lease and when it saw it change.
struct Observed {
    holder: String,
    renew_time: Option<MicroTime>,
    at: Instant,
}

/// A candidate for one Lease.
pub struct Elector {
    api: Api<Lease>,
    config: LeaderConfig,
    observed: Option<Observed>,
    status: prometheus::IntGauge,
}

impl std::fmt::Debug for Elector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Elector").field("config", &self.config).finish()
    }
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

impl Elector {
    /// A candidate; `leader_election_master_status{name}` on `registry` is 1 while it leads.
    pub fn new(
        client: kube::Client,
        config: LeaderConfig,
        registry: &prometheus::Registry,
    ) -> Elector {
        let status = prometheus::IntGauge::with_opts(
            prometheus::Opts::new(
                "leader_election_master_status",
                "1 while this process holds the named leader election Lease.",
            )
            .const_label("name", config.name.clone()),
        )
        .expect("valid metric");
        let _ = registry.register(Box::new(status.clone()));
        Elector { api: Api::namespaced(client, &config.namespace), config, observed: None, status }
    }

    /// Campaigns until `stop` turns true; while leading, runs `work` with a receiver that
    /// turns true when leadership is lost (or on stop), and waits for it to return before
    /// campaigning again.
    pub async fn run<F, Fut>(mut self, mut stop: watch::Receiver<bool>, mut work: F)
    where
        F: FnMut(watch::Receiver<bool>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        loop {
            // Campaign.
            loop {
                if *stop.borrow() {
                    return;
                }
                match self.try_acquire_or_renew().await {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(error) => {
                        tracing::debug!(lease = %self.config.name, %error, "cannot acquire lease")
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(self.config.retry_period) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
            tracing::info!(lease = %self.config.name, identity = %self.config.identity,
                "became leader");
            self.status.set(1);
            let (lost, lost_rx) = watch::channel(false);
            let mut task = tokio::spawn(work(lost_rx));
            let mut last_renew = Instant::now();
            let stopping = loop {
                tokio::select! {
                    _ = tokio::time::sleep(self.config.retry_period) => {}
                    _ = stop.wait_for(|s| *s) => break true,
                    _ = &mut task => {
                        tracing::warn!(lease = %self.config.name, "leader work ended early");
                        break false;
                    }
                }
                match self.try_acquire_or_renew().await {
                    Ok(true) => last_renew = Instant::now(),
                    Ok(false) => {
                        tracing::warn!(lease = %self.config.name, "lease taken by another");
                        break false;
                    }
                    Err(error) => {
                        tracing::warn!(lease = %self.config.name, %error, "cannot renew lease")
                    }
                }
                if last_renew.elapsed() > self.config.renew_deadline {
                    tracing::warn!(lease = %self.config.name, "renew deadline passed");
                    break false;
                }
            };
            let _ = lost.send(true);
            if !task.is_finished() {
                // Work must stop before another leader may start: give it until the Lease
                // could expire elsewhere, then abort it.
                let grace = self.config.lease_duration.saturating_sub(self.config.renew_deadline);
                if tokio::time::timeout(grace, &mut task).await.is_err() {
                    task.abort();
                }
            }
            self.status.set(0);
            tracing::info!(lease = %self.config.name, "stopped leading");
            if stopping {
                self.release().await;
                return;
            }
        }
    }

    /// Takes or renews the Lease; `Ok(false)` when another holder's Lease is still valid or a
    /// concurrent write won.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let me = self.config.identity.clone();
        let duration_seconds = self.config.lease_duration.as_secs() as i32;
        let current = match self.api.get_opt(&self.config.name).await? {
            Some(lease) => lease,
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(me.clone()),
                        lease_duration_seconds: Some(duration_seconds),
                        acquire_time: Some(now()),
                        renew_time: Some(now()),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                return match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                    Err(error) => Err(error),
                };
            }
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let changed = match &self.observed {
            Some(seen) => seen.holder != holder || seen.renew_time != spec.renew_time,
            None => true,
        };
        if changed {
            self.observed = Some(Observed {
                holder: holder.clone(),
                renew_time: spec.renew_time.clone(),
                at: Instant::now(),
            });
        }
        let held_by_other = !holder.is_empty() && holder != me;
        if held_by_other {
            let seen_at = self.observed.as_ref().map_or_else(Instant::now, |seen| seen.at);
            let their_duration = spec
                .lease_duration_seconds
                .map_or(self.config.lease_duration, |s| Duration::from_secs(s.max(0) as u64));
            if seen_at.elapsed() < their_duration {
                return Ok(false);
            }
        }
        let mut lease = current;
        let taking_over = holder != me;
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(me),
            lease_duration_seconds: Some(duration_seconds),
            acquire_time: if taking_over { Some(now()) } else { spec.acquire_time.clone() },
            renew_time: Some(now()),
            lease_transitions: Some(spec.lease_transitions.unwrap_or(0) + i32::from(taking_over)),
            ..spec
        });
        match self.api.replace(&self.config.name, &PostParams::default(), &lease).await {
            Ok(written) => {
                let spec = written.spec.unwrap_or_default();
                self.observed = Some(Observed {
                    holder: spec.holder_identity.unwrap_or_default(),
                    renew_time: spec.renew_time,
                    at: Instant::now(),
                });
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Gives the Lease up (empty holder, 1 s duration) so a standby need not wait for expiry.
    async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await else { return };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        lease.spec = Some(LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            renew_time: Some(now()),
            ..spec
        });
        match self.api.replace(&self.config.name, &PostParams::default(), &lease).await {
            Ok(_) => tracing::info!(lease = %self.config.name, "released lease"),
            Err(error) => tracing::warn!(lease = %self.config.name, %error, "cannot release"),
        }
    }
}
