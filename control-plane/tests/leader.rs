//! Lease-based leader election against a real API server: of several candidates exactly one
//! leads at any moment (checked continuously); a leader that stops releases the Lease and a
//! standby takes over at once; a leader that dies without releasing is replaced once its
//! Lease expires; the Lease records holder and transitions as Kubernetes' does.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use tokio::sync::watch;

use control_plane::leader::{Elector, LeaderConfig};

struct Candidate {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// A candidate whose work counts how many are active and records each term's start.
fn candidate(
    client: &kube::Client,
    identity: &str,
    active: &Arc<AtomicUsize>,
    most: &Arc<AtomicUsize>,
    terms: &Arc<AtomicUsize>,
) -> Candidate {
    let mut config = LeaderConfig::new("kube-system", "test-leader", identity);
    config.lease_duration = Duration::from_secs(3);
    config.renew_deadline = Duration::from_secs(2);
    config.retry_period = Duration::from_millis(300);
    let elector = Elector::new(client.clone(), config, &prometheus::Registry::new());
    let (stop, stopped) = watch::channel(false);
    let (active, most, terms) = (active.clone(), most.clone(), terms.clone());
    let task = tokio::spawn(elector.run(stopped, move |mut lost| {
        let (active, most, terms) = (active.clone(), most.clone(), terms.clone());
        async move {
            let now = active.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            terms.fetch_add(1, Ordering::SeqCst);
            let _ = lost.wait_for(|l| *l).await;
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }));
    Candidate { stop, task }
}

async fn holder(api: &Api<Lease>) -> Option<String> {
    api.get_opt("test-leader").await.ok()??.spec?.holder_identity.filter(|h| !h.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_leader_at_a_time_with_handover_and_expiry() {
    let cluster = common::start("127.0.91.1").await;
    let client = cluster.client.clone();
    let api: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let active = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let terms = Arc::new(AtomicUsize::new(0));
    let mut candidates: Vec<(String, Candidate)> = ["a", "b", "c"]
        .iter()
        .map(|id| (id.to_string(), candidate(&client, id, &active, &most, &terms)))
        .collect();

    let first = common::eventually(20, "a first leader", || {
        let api = api.clone();
        async move { holder(&api).await }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(active.load(Ordering::SeqCst), 1, "exactly one candidate leads");
    assert_eq!(holder(&api).await.as_deref(), Some(first.as_str()), "the leader keeps renewing");

    // A graceful stop releases the Lease: another candidate leads well before it would
    // have expired.
    let index = candidates.iter().position(|(id, _)| *id == first).expect("leader");
    let (_, leader) = candidates.remove(index);
    let _ = leader.stop.send(true);
    leader.task.await.expect("leader stops");
    let second = common::eventually(2, "a quick handover after release", || {
        let (api, first) = (api.clone(), first.clone());
        async move { holder(&api).await.filter(|h| *h != first) }
    })
    .await;

    // A leader that dies (its task aborted, nothing released) is replaced after its Lease
    // expires.
    let index = candidates.iter().position(|(id, _)| *id == second).expect("leader");
    let (_, leader) = candidates.remove(index);
    leader.task.abort();
    let _ = leader.task.await;
    // Its work ends too: the aborted elector dropped the sender it watches.
    let third = common::eventually(10, "the last candidate after expiry", || {
        let (api, second) = (api.clone(), second.clone());
        async move { holder(&api).await.filter(|h| *h != second) }
    })
    .await;
    assert_eq!(third, candidates[0].0);
    let lease = api.get("test-leader").await.expect("lease");
    let spec = lease.spec.expect("spec");
    assert_eq!(spec.lease_transitions, Some(2), "two changes of holder");
    assert_eq!(spec.lease_duration_seconds, Some(3));
    assert!(spec.acquire_time.is_some() && spec.renew_time.is_some());
    assert_eq!(most.load(Ordering::SeqCst), 1, "never two leaders at once");
    assert_eq!(terms.load(Ordering::SeqCst), 3);
    for (_, candidate) in candidates {
        let _ = candidate.stop.send(true);
        let _ = candidate.task.await;
    }
    cluster.stop().await;
}
