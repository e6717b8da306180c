//! The controller manager against a real single master with hollow nodes and the real
//! scheduler: ReplicaSets keep their pods (adopting orphans, replacing deleted pods);
//! Deployments roll out, scale, roll a new template without ever breaking their surge and
//! unavailability bounds (checked continuously), roll back, and recreate.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::watch;

struct Running {
    cluster: common::Cluster,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// A master on `ip` with three hollow nodes, the scheduler and the controller manager.
async fn start(ip: &str) -> Running {
    let cluster = common::start(ip).await;
    let (stop, stopped) = watch::channel(false);
    let registry = prometheus::Registry::new();
    let client = cluster.client.clone();
    let mut tasks = Vec::new();
    let mut hollow = control_plane::hollow::HollowConfig::new("node-", 3);
    hollow.lease_renew = Duration::from_secs(2);
    let (c, s) = (client.clone(), stopped.clone());
    tasks.push(tokio::spawn(async move {
        control_plane::hollow::run(c, hollow, s).await.expect("hollow nodes");
    }));
    let (c, s, r) = (client.clone(), stopped.clone(), registry.clone());
    tasks.push(tokio::spawn(async move {
        let config = control_plane::scheduler::SchedulerConfig::default();
        control_plane::scheduler::run(c, config, &r, s).await;
    }));
    let context = control_plane::controllers::Context::new(
        client,
        control_plane::controllers::ControllerManagerConfig::default(),
        &registry,
    );
    tasks.push(tokio::spawn(control_plane::controllers::run(context, stopped)));
    Running { cluster, stop, tasks }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        self.cluster.stop().await;
    }
}

fn deployment(name: &str, replicas: i32, image: &str, strategy: serde_json::Value) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": image,
                    "resources": {"requests": {"cpu": "10m"}}}]}
            }
        }
    }))
    .expect("deployment")
}

fn revision(rs: &ReplicaSet) -> String {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("deployment.kubernetes.io/revision"))
        .cloned()
        .unwrap_or_default()
}

fn image_of(rs: &ReplicaSet) -> String {
    rs.spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.containers.first().and_then(|c| c.image.clone()))
        .unwrap_or_default()
}

async fn sets_of(client: &kube::Client, app: &str) -> Vec<ReplicaSet> {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    api.list(&ListParams::default().labels(&format!("app={app}"))).await.expect("list").items
}

async fn pods_of(client: &kube::Client, app: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    api.list(&ListParams::default().labels(&format!("app={app}"))).await.expect("list").items
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits until the Deployment reports every replica updated and available at its current
/// generation.
async fn wait_rolled_out(client: &kube::Client, name: &str, replicas: i32) -> Deployment {
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    common::eventually(60, &format!("{name} rolled out with {replicas} replicas"), || {
        let api = api.clone();
        async move {
            let d = api.get(name).await.ok()?;
            let status = d.status.clone()?;
            let done = status.observed_generation >= d.metadata.generation
                && status.updated_replicas == Some(replicas)
                && status.replicas == Some(replicas)
                && status.available_replicas == Some(replicas);
            done.then_some(d)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replica_sets_adopt_orphans_and_replace_deleted_pods() {
    let running = start("127.0.87.1").await;
    let client = running.cluster.client.clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": {"name": "orphan", "labels": {"app": "cache"}},
        "spec": {"containers": [{"name": "main", "image": "cache:1"}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &orphan).await.expect("orphan");
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "cache"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "cache"}},
            "template": {"metadata": {"labels": {"app": "cache"}},
                "spec": {"containers": [{"name": "main", "image": "cache:1"}]}}}
    }))
    .expect("rs");
    let rs = sets.create(&PostParams::default(), &rs).await.expect("create rs");
    let uid = rs.metadata.uid.clone().expect("uid");
    let owned = common::eventually(30, "3 pods owned by the ReplicaSet, all running", || {
        let client = client.clone();
        let uid = uid.clone();
        async move {
            let pods = pods_of(&client, "cache").await;
            let owned: Vec<Pod> = pods
                .into_iter()
                .filter(|p| p.metadata.owner_references.iter().flatten().any(|o| o.uid == uid))
                .collect();
            (owned.len() == 3 && owned.iter().all(is_ready)).then_some(owned)
        }
    })
    .await;
    assert!(
        owned.iter().any(|p| p.metadata.name.as_deref() == Some("orphan")),
        "the orphan was adopted rather than a third pod created"
    );
    // Every pod is bound to one of the hollow nodes.
    for pod in &owned {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        assert!(node.starts_with("node-"), "pod bound to {node:?}");
    }
    let status = common::eventually(30, "status counts", || {
        let sets = sets.clone();
        async move {
            let rs = sets.get("cache").await.ok()?;
            let status = rs.status?;
            (status.ready_replicas == Some(3) && status.available_replicas == Some(3))
                .then_some(status)
        }
    })
    .await;
    assert_eq!(status.replicas, 3);
    assert_eq!(status.observed_generation, rs.metadata.generation);

    // A deleted pod is replaced.
    pods.delete("orphan", &DeleteParams::default()).await.expect("delete");
    common::eventually(30, "a replacement pod", || {
        let client = client.clone();
        async move {
            let pods = pods_of(&client, "cache").await;
            let names: Vec<String> = pods.iter().filter_map(|p| p.metadata.name.clone()).collect();
            (pods.len() == 3 && !names.contains(&"orphan".to_string())).then_some(())
        }
    })
    .await;
    // Scale down to one: two pods go, and no more come back.
    let patch = json!({"spec": {"replicas": 1}});
    sets.patch("cache", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("scale");
    common::eventually(30, "one pod left", || {
        let client = client.clone();
        async move { (pods_of(&client, "cache").await.len() == 1).then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(pods_of(&client, "cache").await.len(), 1);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deployment_rolls_out_within_its_bounds_scales_and_rolls_back() {
    let running = start("127.0.87.2").await;
    let client = running.cluster.client.clone();
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let strategy = json!({"type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}});
    api.create(&PostParams::default(), &deployment("web", 4, "web:1", strategy))
        .await
        .expect("create");
    wait_rolled_out(&client, "web", 4).await;
    let sets = sets_of(&client, "web").await;
    assert_eq!(sets.len(), 1);
    assert_eq!(revision(&sets[0]), "1");
    let first = sets[0].metadata.name.clone().expect("name");
    let hash = sets[0].metadata.labels.as_ref().and_then(|l| l.get("pod-template-hash")).cloned();
    assert_eq!(Some(first.clone()), hash.map(|h| format!("web-{h}")));

    // While the template changes, check the bounds continuously: ReplicaSets never ask for
    // more than replicas + maxSurge pods, and ready pods never fall below replicas -
    // maxUnavailable.
    let checking = Arc::new(AtomicBool::new(true));
    let violations = Arc::new(Mutex::new(Vec::<String>::new()));
    let checker = {
        let (client, checking, violations) = (client.clone(), checking.clone(), violations.clone());
        tokio::spawn(async move {
            let mut samples = 0;
            while checking.load(Ordering::Relaxed) {
                let total: i32 = sets_of(&client, "web")
                    .await
                    .iter()
                    .map(|rs| rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0))
                    .sum();
                let ready = pods_of(&client, "web").await.iter().filter(|p| is_ready(p)).count();
                if total > 5 {
                    violations.lock().expect("lock").push(format!("replicas total {total} > 5"));
                }
                if ready < 3 {
                    violations.lock().expect("lock").push(format!("ready pods {ready} < 3"));
                }
                samples += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            samples
        })
    };
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "main", "image": "web:2"}]}}}});
    api.patch("web", &PatchParams::default(), &Patch::Strategic(&patch)).await.expect("update");
    wait_rolled_out(&client, "web", 4).await;
    checking.store(false, Ordering::Relaxed);
    let samples = checker.await.expect("checker");
    assert!(samples > 5, "the checker sampled the rollout ({samples} samples)");
    let seen = violations.lock().expect("lock").clone();
    assert!(seen.is_empty(), "bounds violated during the rollout: {seen:?}");
    let sets = sets_of(&client, "web").await;
    let by_image: BTreeMap<String, (String, i32)> = sets
        .iter()
        .map(|rs| {
            (image_of(rs), (revision(rs), rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)))
        })
        .collect();
    assert_eq!(by_image["web:1"], ("1".to_string(), 0));
    assert_eq!(by_image["web:2"], ("2".to_string(), 4));
    let pods = pods_of(&client, "web").await;
    assert_eq!(pods.len(), 4);
    assert!(pods.iter().all(|p| {
        p.spec.as_ref().map(|s| s.containers[0].image.as_deref()) == Some(Some("web:2"))
    }));

    // Scale.
    let patch = json!({"spec": {"replicas": 6}});
    api.patch("web", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("scale");
    wait_rolled_out(&client, "web", 6).await;

    // Roll back as `kubectl rollout undo` does: the old template comes back, and its
    // ReplicaSet becomes revision 3.
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "main", "image": "web:1"}]}}}});
    api.patch("web", &PatchParams::default(), &Patch::Strategic(&patch)).await.expect("undo");
    let d = wait_rolled_out(&client, "web", 6).await;
    let sets = sets_of(&client, "web").await;
    assert_eq!(sets.len(), 2, "the first ReplicaSet is reused, not a third created");
    let original = sets.iter().find(|rs| rs.metadata.name.as_deref() == Some(&first)).expect("rs");
    assert_eq!(revision(original), "3");
    assert_eq!(original.spec.as_ref().and_then(|s| s.replicas), Some(6));
    assert_eq!(
        original
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("deployment.kubernetes.io/revision-history")),
        Some(&"1".to_string())
    );
    assert_eq!(
        d.metadata.annotations.as_ref().and_then(|a| a.get("deployment.kubernetes.io/revision")),
        Some(&"3".to_string())
    );
    let conditions = d.status.and_then(|s| s.conditions).unwrap_or_default();
    let progressing = conditions.iter().find(|c| c.type_ == "Progressing").expect("progressing");
    assert_eq!(progressing.reason.as_deref(), Some("NewReplicaSetAvailable"));
    let available = conditions.iter().find(|c| c.type_ == "Available").expect("available");
    assert_eq!(available.status, "True");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recreate_removes_every_old_pod_before_starting_new_ones() {
    let running = start("127.0.87.3").await;
    let client = running.cluster.client.clone();
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &deployment("db", 3, "db:1", json!({"type": "Recreate"})))
        .await
        .expect("create");
    wait_rolled_out(&client, "db", 3).await;
    let mixed = Arc::new(AtomicBool::new(false));
    let checking = Arc::new(AtomicBool::new(true));
    let checker = {
        let (client, checking, mixed) = (client.clone(), checking.clone(), mixed.clone());
        tokio::spawn(async move {
            while checking.load(Ordering::Relaxed) {
                let images: std::collections::BTreeSet<String> = pods_of(&client, "db")
                    .await
                    .iter()
                    .filter_map(|p| p.spec.as_ref()?.containers[0].image.clone())
                    .collect();
                if images.len() > 1 {
                    mixed.store(true, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "main", "image": "db:2"}]}}}});
    api.patch("db", &PatchParams::default(), &Patch::Strategic(&patch)).await.expect("update");
    wait_rolled_out(&client, "db", 3).await;
    checking.store(false, Ordering::Relaxed);
    checker.await.expect("checker");
    assert!(!mixed.load(Ordering::Relaxed), "old and new pods ran at the same time");
    let pods = pods_of(&client, "db").await;
    assert_eq!(pods.len(), 3);
    running.stop().await;
}

async fn exists<K>(api: &Api<K>, name: &str) -> bool
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name).await.expect("get").is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cascading_deletion_background_foreground_and_orphan() {
    let running = start("127.0.87.4").await;
    let client = running.cluster.client.clone();
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let strategy = json!({"type": "RollingUpdate"});
    for name in ["bg", "fg", "keep"] {
        api.create(&PostParams::default(), &deployment(name, 2, "app:1", strategy.clone()))
            .await
            .expect("create");
    }
    for name in ["bg", "fg", "keep"] {
        wait_rolled_out(&client, name, 2).await;
    }

    // Background: the Deployment goes at once, then its ReplicaSet and pods.
    api.delete("bg", &DeleteParams::background()).await.expect("delete bg");
    assert!(!exists(&api, "bg").await);
    common::eventually(30, "bg's ReplicaSet and pods collected", || {
        let client = client.clone();
        async move {
            let gone =
                sets_of(&client, "bg").await.is_empty() && pods_of(&client, "bg").await.is_empty();
            gone.then_some(())
        }
    })
    .await;

    // Foreground: the Deployment stays (with a deletionTimestamp) until its dependents are
    // gone, then goes.
    api.delete("fg", &DeleteParams::foreground()).await.expect("delete fg");
    let marked = api.get_opt("fg").await.expect("get");
    if let Some(marked) = marked {
        assert!(marked.metadata.deletion_timestamp.is_some());
        assert!(marked.metadata.finalizers.iter().flatten().any(|f| f == "foregroundDeletion"));
    }
    common::eventually(30, "fg and its dependents gone", || {
        let (client, api) = (client.clone(), api.clone());
        async move {
            let gone = !exists(&api, "fg").await
                && sets_of(&client, "fg").await.is_empty()
                && pods_of(&client, "fg").await.is_empty();
            gone.then_some(())
        }
    })
    .await;

    // Orphan: the Deployment goes, its ReplicaSet and pods stay, no longer owned.
    api.delete("keep", &DeleteParams::orphan()).await.expect("delete keep");
    common::eventually(30, "keep gone, its ReplicaSet orphaned", || {
        let (client, api) = (client.clone(), api.clone());
        async move {
            if exists(&api, "keep").await {
                return None;
            }
            let sets = sets_of(&client, "keep").await;
            (sets.len() == 1
                && sets[0].metadata.owner_references.as_ref().is_none_or(Vec::is_empty))
            .then_some(())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(pods_of(&client, "keep").await.len(), 2, "orphaned pods are kept");
    assert_eq!(
        sets.list(&ListParams::default().labels("app=keep")).await.expect("list").items.len(),
        1
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn endpoints_follow_ready_pods_of_a_service() {
    use k8s_openapi::api::core::v1::{Endpoints, Service};
    let running = start("127.0.87.5").await;
    let client = running.cluster.client.clone();
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &deployment("svc", 2, "web:1", json!({"type": "Recreate"})))
        .await
        .expect("create");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "svc", "labels": {"tier": "front"}},
        "spec": {"selector": {"app": "svc"}, "ports": [{"name": "http", "port": 80,
            "targetPort": 8080}]}
    }))
    .expect("service");
    services.create(&PostParams::default(), &service).await.expect("service");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let ips_of = |e: &Endpoints| -> Vec<String> {
        e.subsets
            .iter()
            .flatten()
            .flat_map(|s| s.addresses.iter().flatten())
            .map(|a| a.ip.clone())
            .collect()
    };
    let found = common::eventually(30, "endpoints listing both pods", || {
        let endpoints = endpoints.clone();
        async move {
            let e = endpoints.get_opt("svc").await.ok()??;
            (ips_of(&e).len() == 2).then_some(e)
        }
    })
    .await;
    let mut pod_ips: Vec<String> = pods_of(&client, "svc")
        .await
        .iter()
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .collect();
    pod_ips.sort();
    assert_eq!(ips_of(&found), pod_ips);
    let port = &found.subsets.as_ref().expect("subsets")[0].ports.as_ref().expect("ports")[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("http"), 8080));
    assert_eq!(
        found.metadata.labels.as_ref().and_then(|l| l.get("tier")).map(String::as_str),
        Some("front")
    );

    let patch = json!({"spec": {"replicas": 3}});
    api.patch("svc", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("scale");
    common::eventually(30, "endpoints listing three pods", || {
        let endpoints = endpoints.clone();
        async move { (ips_of(&endpoints.get_opt("svc").await.ok()??).len() == 3).then_some(()) }
    })
    .await;
    services.delete("svc", &DeleteParams::default()).await.expect("delete service");
    common::eventually(30, "endpoints removed with the service", || {
        let endpoints = endpoints.clone();
        async move { endpoints.get_opt("svc").await.ok()?.is_none().then_some(()) }
    })
    .await;
    running.stop().await;
}
